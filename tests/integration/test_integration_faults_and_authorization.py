"""Faults and authorization through the real client SDK over loopback.

Covered here: a relay restart in the middle of a conversation (envelopes queued, and envelopes
pushed but not yet acknowledged, at the moment it stops) loses nothing and shows nothing twice;
a client process killed with SIGKILL between committing messages and acknowledging them gets
them again and the application sees each exactly once; prekey exhaustion through the SDK
(new sessions fall back to the signed and last-resort Kyber prekeys, which survive their use);
an SDK client cannot register over another account's keys nor authenticate as it, so it
cannot read its mailbox.

Covered elsewhere (not repeated):

* registration, 1:1 both ways, first contact identified then sealed, groups over SSv2, group
  fallback to identified: tests/unit/client/test_client_messaging.py (and the demo-sized run of
  test_integration_privacy_and_disclosure.py);
* crash simulated in-process, offline queueing, prekey top-up, signed-prekey rotation,
  reconnect after restart: tests/unit/client/test_client_delivery.py;
* malformed / oversized / text / unknown frames, forged, replayed and repeated
  authentication, unauthenticated connections limited to sealed sends, a device acking another
  device's messages, device-list mismatches, bundle rate limits, fuzzed frames never changing
  the database: tests/unit/relay/test_relay_hostile_and_authorization.py;
* one-time prekeys handed out at most once under concurrent fetches, fallback bundles at the
  store level: tests/unit/relay/test_relay_store_contract.py.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import pytest
from integration_harness import introduce, new_client, receive_n, run, until

from securemsg.client import Client
from securemsg.client.connection import RelayConnection
from securemsg.errors import RelayError
from securemsg.relay.server import RelayServer
from securemsg.relay_protocol.frames import StatusCode

CHILD = Path(__file__).with_name("integration_crash_child.py")


def test_relay_restart_mid_conversation_loses_nothing_and_repeats_nothing(tmp_path: Path) -> None:
    async def body() -> None:
        relay = RelayServer(tmp_path / "relay.db")
        await relay.start()
        port = relay.port
        alice = await new_client(relay, tmp_path / "alice.db")
        bob = await new_client(relay, tmp_path / "bob.db")
        introduce(alice, bob)
        await alice.send_text(bob.aci, "before 0")
        assert await receive_n(bob, 1) == ["before 0"]
        await bob.send_text(alice.aci, "reply 0")
        assert await receive_n(alice, 1) == ["reply 0"]

        # Bob's next acks are "still on their way" when the relay goes down.
        withheld: list[bytes] = []

        async def no_ack(conn: RelayConnection, envelope_ids: tuple[bytes, ...]) -> None:
            withheld.extend(envelope_ids)  # one ack per committed batch

        bob._ack = no_ack  # type: ignore[method-assign]
        await alice.send_text(bob.aci, "in flight 1")
        await alice.send_text(bob.aci, "in flight 2", sealed=False)
        await until(lambda: len(withheld) == 2)
        assert await receive_n(bob, 1) == ["in flight 1"]  # the app took one of the two
        await bob.close()
        await alice.send_text(bob.aci, "queued 3")  # Bob offline: waits in the mailbox
        await relay.stop()

        await relay.start(port=port)
        await until(lambda: alice.connected, attempts=1000)
        bob = await Client.open(tmp_path / "bob.db")
        await bob.connect()
        await bob.sync()
        assert await receive_n(bob, 2) == ["in flight 2", "queued 3"]
        assert await bob.receive(timeout=0.3) is None  # "in flight 1" is not shown again
        await bob.send_text(alice.aci, "after restart")  # the ratchets kept going
        assert await receive_n(alice, 1) == ["after restart"]
        await alice.send_text(bob.aci, "and back")
        assert await receive_n(bob, 1) == ["and back"]
        store = relay.service.store
        await until(lambda: not store.pending(uuid.UUID(bob.aci).bytes, 1))
        await until(lambda: not store.pending(uuid.UUID(alice.aci).bytes, 1))
        assert bob.store.inbox_count("message") == 5 and bob.errors == 0
        await alice.close()
        await bob.close()
        await relay.stop()

    run(body())


def test_client_killed_between_commit_and_ack_sees_each_message_once(tmp_path: Path) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            alice = await new_client(relay, tmp_path / "alice.db")
            bob = await new_client(relay, tmp_path / "bob.db")
            introduce(alice, bob)
            bob_aci = bob.aci
            await bob.close()  # its process will be the child
            await alice.send_text(bob_aci, "first: the app sees it before the kill")
            await alice.send_text(bob_aci, "second: committed, not yet shown, then kill")

            child = await asyncio.create_subprocess_exec(
                sys.executable,
                str(CHILD),
                str(tmp_path / "bob.db"),
                relay.url,
                stdout=asyncio.subprocess.PIPE,
            )
            assert child.stdout is not None
            lines: list[str] = []
            try:
                async with asyncio.timeout(60):
                    while not lines or lines[-1] != "READY":
                        line = await child.stdout.readline()
                        assert line, f"child ended early: {lines}"
                        lines.append(line.decode().strip())
            finally:
                child.kill()  # SIGKILL: no close, no ack, no cleanup
                await child.wait()
            assert "APP first: the app sees it before the kill" in lines
            assert sum(line.startswith("COMMITTED") for line in lines) == 2
            store = relay.service.store
            assert len(store.pending(uuid.UUID(bob_aci).bytes, 1)) == 2  # never acknowledged

            bob = await Client.open(tmp_path / "bob.db")
            await bob.connect()
            await bob.sync()
            got = await bob.receive(timeout=10)
            assert got is not None and got.text.startswith("second:")
            assert await bob.receive(timeout=0.3) is None  # the first is not shown again
            await until(lambda: not store.pending(uuid.UUID(bob_aci).bytes, 1))
            assert bob.store.inbox_count("message") == 2 and bob.errors == 0
            await alice.send_text(bob_aci, "third: the session survived the kill")
            assert await receive_n(bob, 1) == ["third: the session survived the kill"]
            await bob.close()
            await alice.close()

    run(body())


def test_prekey_exhaustion_falls_back_to_signed_and_last_resort_keys(tmp_path: Path) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            bob = await new_client(relay, tmp_path / "bob.db", batch=2, low_water=0)
            last_resort = bob.store.get_kyber_pre_key_ids(last_resort=True)
            senders = [await new_client(relay, tmp_path / f"s{i}.db") for i in range(4)]
            for i, s in enumerate(senders):  # two take the one-time keys, two fall back
                await s.send_text(bob.aci, f"hello {i}", allow_identified=True)
                assert await receive_n(bob, 1) == [f"hello {i}"]
            counts = await bob.prekey_counts()
            assert (counts.ec_count, counts.kyber_count) == (0, 0)  # low water 0: no top-up
            assert bob.store.get_pre_key_ids() == []  # used one-time keys are deleted
            assert bob.store.get_kyber_pre_key_ids(last_resort=False) == []
            assert bob.store.get_kyber_pre_key_ids(last_resort=True) == last_resort  # kept
            for i, s in enumerate(senders):  # every session, one-time or fallback, works
                await bob.send_text(s.aci, f"reply {i}")
                assert await receive_n(s, 1) == [f"reply {i}"]
            assert bob.errors == 0
            for c in (bob, *senders):
                await c.close()

    run(body())


def test_sdk_cannot_take_over_another_account_or_read_its_mailbox(tmp_path: Path) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            alice = await new_client(relay, tmp_path / "alice.db")
            bob = await new_client(relay, tmp_path / "bob.db")
            bob_aci = bob.aci
            await bob.close()
            await alice.send_text(bob_aci, "for bob only", allow_identified=True)

            # Mallory: the same ACI, her own identity key (the relay stores no password).
            mallory = await Client.create(
                tmp_path / "mallory.db", relay.url, relay.trust_root_public, aci=bob_aci
            )
            with pytest.raises(RelayError) as info:
                await mallory.register()  # would replace Bob's keys
            assert info.value.code == StatusCode.CONFLICT
            mallory.store.set_meta("registered", 1)  # pretend, and try to log in as Bob
            with pytest.raises(RelayError) as info:
                await mallory.connect()
            assert info.value.code == StatusCode.UNAUTHENTICATED
            assert mallory.store.inbox_count() == 0
            await mallory.close()
            # Bob's mailbox and keys are intact: he gets his message, and new sessions to him
            # still use his identity key.
            bob = await Client.open(tmp_path / "bob.db")
            await bob.connect()
            assert await receive_n(bob, 1) == ["for bob only"]
            carol = await new_client(relay, tmp_path / "carol.db")
            await carol.send_text(bob_aci, "new session to the real bob", allow_identified=True)
            assert await receive_n(bob, 1) == ["new session to the real bob"]
            for c in (alice, bob, carol):
                await c.close()

    run(body())
