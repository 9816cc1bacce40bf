"""Load: 50 concurrent SDK clients on one relay over loopback, 200 messages each.

25 pairs; each side of a pair sends 200 numbered messages to the other while receiving
(10,000 messages in all); odd pairs send sealed (sealed sender v1 on unauthenticated
connections), even pairs identified. The application must see every message exactly once and
in order per sender, and at the end every relay mailbox is empty (every envelope was
acknowledged) and no client recorded an undecryptable envelope.

Bounded: an overall timeout, bounded waits; nothing is timed or asserted about speed (the
throughput is reported by benchmarks/bench_relay.py). The relay and client databases live on
a tmpfs (``/dev/shm``) when there is one: with ``synchronous=FULL`` on a disk, one fsync per
commit makes this minutes long instead of seconds; durability is tested elsewhere.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from integration_harness import introduce, new_client, run

from securemsg.client import Client
from securemsg.relay.server import RelayServer

PAIRS = 25
MESSAGES = 200
LOAD_TIMEOUT_S = 300.0


async def _load(tmp: Path) -> None:
    async with RelayServer(tmp / "relay.db") as relay:
        clients: list[Client] = []
        try:
            for i in range(2 * PAIRS):
                clients.append(await new_client(relay, tmp / f"c{i}.db", batch=2, low_water=1))
            pairs = [(clients[2 * p], clients[2 * p + 1]) for p in range(PAIRS)]
            for p, (a, b) in enumerate(pairs):
                if p % 2:
                    introduce(a, b)

            async def send(src: Client, dst: Client, sealed: bool) -> None:
                for n in range(MESSAGES):
                    await src.send_text(dst.aci, f"{src.aci} #{n}", sealed=sealed)

            async def receive(dst: Client, src: Client) -> list[str]:
                got: list[str] = []
                while len(got) < MESSAGES:
                    m = await dst.receive(timeout=60)
                    assert m is not None, f"lost: {dst.aci} has {len(got)} of {MESSAGES}"
                    assert m.sender_aci == src.aci
                    got.append(m.text)
                return got

            tasks = []
            for p, (a, b) in enumerate(pairs):
                sealed = p % 2 == 1
                tasks += [send(a, b, sealed), send(b, a, sealed)]
            receivers = [receive(b, a) for a, b in pairs] + [receive(a, b) for a, b in pairs]
            results = await asyncio.gather(*receivers, *tasks)
            received = results[: len(receivers)]
            senders = [a for a, _ in pairs] + [b for _, b in pairs]
            for src, texts in zip(senders, received, strict=True):
                assert texts == [f"{src.aci} #{n}" for n in range(MESSAGES)]  # once, in order
            for c in clients:  # nothing more arrives: zero delivered twice
                assert await c.receive(timeout=0.01) is None
                assert c.errors == 0
                assert c.store.inbox_count("message") == MESSAGES
            store = relay.service.store
            for c in clients:
                aci = uuid.UUID(c.aci).bytes
                for _ in range(500):  # the last acks may still be on their way (bounded)
                    if not store.pending(aci, 1):
                        break
                    await asyncio.sleep(0.02)
                assert store.pending(aci, 1) == []
        finally:
            for c in clients:
                await c.close()


def test_fifty_clients_two_hundred_messages_each_none_lost_none_twice(fast_tmp: Path) -> None:
    run(_load(fast_tmp), timeout=LOAD_TIMEOUT_S)
