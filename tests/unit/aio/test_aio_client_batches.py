"""Client SDK: received envelopes are committed in batches, each acknowledged after its commit."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from securemsg.client import Client
from securemsg.client.connection import RelayConnection
from securemsg.relay.server import RelayServer

BACKLOG = 20


def test_a_backlog_is_committed_in_one_batch_then_acknowledged_once(tmp_path: Path) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            kw: dict[str, Any] = {"prekey_batch": 4}
            alice = await Client.create(tmp_path / "a.db", relay.url, relay.trust_root_public, **kw)
            bob = await Client.create(tmp_path / "b.db", relay.url, relay.trust_root_public, **kw)
            await alice.register()
            await bob.register()
            await bob.close()
            for i in range(BACKLOG):
                await alice.send_text(bob.aci, f"m{i}", sealed=False, allow_identified=True)
            bob = await Client.open(tmp_path / "b.db")

            acks: list[tuple[int, int]] = []  # (ids in the Ack, messages committed by then)
            original_ack = bob._ack

            async def recording_ack(conn: RelayConnection, ids: tuple[bytes, ...]) -> None:
                committed = bob.store.inbox_count("message")
                acks.append((len(ids), committed))
                await original_ack(conn, ids)

            bob._ack = recording_ack  # type: ignore[method-assign]
            original_pump = bob._pump_loop

            async def pump_after_backlog(conn: RelayConnection) -> None:
                # Let the whole backlog (and the queue-empty marker) arrive first, so that the
                # first batch is all of it: the test does not depend on network timing.
                for _ in range(1000):  # bounded: 10 s
                    if conn.pushes.qsize() >= BACKLOG + 1:
                        break
                    await asyncio.sleep(0.01)
                await original_pump(conn)

            bob._pump_loop = pump_after_backlog  # type: ignore[method-assign]
            await bob.connect()
            texts = []
            for _ in range(BACKLOG):
                message = await bob.receive(timeout=30)
                assert message is not None
                texts.append(message.text)
            assert texts == [f"m{i}" for i in range(BACKLOG)]
            await bob.sync()  # the backlog, its ack included, was handled
            assert acks[0] == (BACKLOG, BACKLOG)  # one Ack for the batch, after its commit
            assert sum(n for n, _ in acks) == BACKLOG
            pending = relay.service.store.pending(bytes.fromhex(bob.aci.replace("-", "")), 1)
            assert not pending
            await bob.close()
            await alice.close()

    async def bounded() -> None:
        async with asyncio.timeout(120):
            await body()

    asyncio.run(bounded())
