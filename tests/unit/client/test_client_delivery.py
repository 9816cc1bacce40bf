"""Delivery guarantees and key upkeep: ack after commit, prekey top-up, rotation, reconnect."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from client_harness import BATCH, LOW_WATER, new_client, run, with_relay

from securemsg.client import Client
from securemsg.client.connection import RelayConnection
from securemsg.relay.server import RelayServer


class SimulatedCrash(Exception):
    """Stands for the process dying between the inbox commit and the ack."""


async def _until(predicate: object, attempts: int = 200) -> None:
    for _ in range(attempts):  # bounded wait, not a timing assertion
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


def test_crash_between_commit_and_ack_is_seen_once(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "alice.db")
        bob = await new_client(relay, tmp_path / "bob.db")
        bob_aci = bob.aci

        async def crash(conn: RelayConnection, envelope_id: bytes) -> None:
            raise SimulatedCrash

        bob._ack = crash  # type: ignore[method-assign]
        await alice.send_text(bob_aci, "exactly once", allow_identified=True)
        await _until(lambda: bob.store.inbox_count("message") == 1)
        queued = relay.service.store.pending(uuid.UUID(bob_aci).bytes, 1)
        assert len(queued) == 1  # committed on the client, not acknowledged to the relay
        await bob.close()  # the "crash": no ack was sent

        bob2 = await Client.open(tmp_path / "bob.db", prekey_batch=BATCH)
        await bob2.connect()
        await bob2.sync()  # the relay pushed the envelope again; it is in the inbox already
        await _until(lambda: not relay.service.store.pending(uuid.UUID(bob_aci).bytes, 1))
        first = await bob2.receive(timeout=5)
        assert first is not None and first.text == "exactly once"
        assert await bob2.receive(timeout=0.3) is None
        assert bob2.store.inbox_count() == 1
        await bob2.close()
        await alice.close()

    run(with_relay(tmp_path, body))


def test_messages_queued_while_offline_arrive_on_connect(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "alice.db")
        bob = await new_client(relay, tmp_path / "bob.db")
        alice.add_contact(bob.contact_card)
        await bob.close()
        for i in range(3):
            await alice.send_text(bob.aci, f"offline {i}")
        bob = await Client.open(tmp_path / "bob.db", prekey_batch=BATCH)
        await bob.connect()
        await bob.sync()
        texts = [m.text for m in [await bob.receive(timeout=5) for _ in range(3)] if m]
        assert texts == ["offline 0", "offline 1", "offline 2"]
        await alice.close()
        await bob.close()

    run(with_relay(tmp_path, body))


def test_one_time_prekeys_are_topped_up_after_use(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        bob = await new_client(relay, tmp_path / "bob.db")
        assert (await bob.prekey_counts()).ec_count == BATCH
        senders = [await new_client(relay, tmp_path / f"s{i}.db") for i in range(BATCH - 1)]
        for s in senders:  # each new session consumes one EC and one Kyber one-time prekey
            await s.send_text(bob.aci, "hi", allow_identified=True)
        for _ in senders:
            assert await bob.receive(timeout=10) is not None
        counts = None
        for _ in range(100):  # bounded: the top-up runs after the queue drained
            counts = await bob.prekey_counts()
            if counts.ec_count >= LOW_WATER and counts.kyber_count >= LOW_WATER:
                break
            await asyncio.sleep(0.05)
        assert counts is not None
        assert counts.ec_count == 1 + BATCH and counts.kyber_count == 1 + BATCH
        for c in (bob, *senders):
            await c.close()

    run(with_relay(tmp_path, body))


def test_signed_prekey_rotates_with_age_and_new_sessions_still_work(tmp_path: Path) -> None:
    now = [1_700_000_000_000]

    async def body(relay: RelayServer) -> None:
        bob = await new_client(relay, tmp_path / "bob.db", clock=lambda: now[0])
        before = bob.store.get_signed_pre_key_ids()
        await bob.maintain_keys()
        assert bob.store.get_signed_pre_key_ids() == before  # young: no rotation
        now[0] += 3 * 24 * 3600 * 1000
        await bob.maintain_keys()
        after = bob.store.get_signed_pre_key_ids()
        assert len(after) == 2 and after[0] == before[0]  # the old one is kept for stragglers
        alice = await new_client(relay, tmp_path / "alice.db")
        await alice.send_text(bob.aci, "after rotation", allow_identified=True)
        got = await bob.receive(timeout=10)
        assert got is not None and got.text == "after rotation"
        await alice.close()
        await bob.close()

    run(with_relay(tmp_path, body))


def test_client_reconnects_after_relay_restart(tmp_path: Path) -> None:
    async def body() -> None:
        relay = RelayServer(tmp_path / "relay.db")
        await relay.start()
        port = relay.port
        alice = await new_client(relay, tmp_path / "alice.db")
        bob = await new_client(relay, tmp_path / "bob.db")
        await relay.stop()
        await _until(lambda: not bob.connected)
        await relay.start(port=port)
        await _until(lambda: bob.connected and alice.connected, attempts=500)
        await alice.send_text(bob.aci, "after restart", allow_identified=True)
        got = await bob.receive(timeout=10)
        assert got is not None and got.text == "after restart"
        await alice.close()
        await bob.close()
        await relay.stop()

    run(body())
