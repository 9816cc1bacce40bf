"""Undecryptable messages are never lost silently: failure events, records and retry requests.

* A relay corrupts (forges) one sealed envelope: the recipient's app gets a failure event
  with a reason, the recipient sends libsignal's retry request, the sender sends the content
  again, and the recipient's app sees the message exactly once.
* A sealed envelope whose certificate does not validate against the pinned trust root is
  recorded with its ciphertext and a reason (no retry: the sender is not authenticated).
* The sender's rule for a retry request: archive the session only when the request names the
  session's current sending ratchet key; ignore requests for another device; resend a
  content at most MAX_RESENDS times.
* The failure record and the sent-content record are bounded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from pathlib import Path
from unittest import mock

from client_harness import new_client, run, with_relay
from hostile_relay import EnvelopeForger

from securemsg.client import Client
from securemsg.client.client import MAX_RESENDS
from securemsg.client.store import (
    FAILURE_TTL_MS,
    MAX_FAILURES,
    MAX_SENT_RECORDS,
    SENT_RECORD_TTL_MS,
    ClientStore,
)
from securemsg.crypto.curve25519 import KeyPair
from securemsg.crypto.rng import SystemRng
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.identity_and_prekeys import IdentityKeyPair
from securemsg.relay.server import RelayServer
from securemsg.relay.service import Outcome, Session
from securemsg.relay_protocol import frames as rf
from securemsg.wire.content import DecryptionErrorMessage, plaintext_content_for


async def _pair(relay: RelayServer, tmp_path: Path) -> tuple[Client, Client]:
    alice = await new_client(relay, tmp_path / "alice.db")
    bob = await new_client(relay, tmp_path / "bob.db")
    alice.add_contact(bob.contact_card)
    bob.add_contact(alice.contact_card)
    await alice.send_text(bob.aci, "first")
    got = await bob.receive(timeout=10)
    assert got is not None and got.text == "first"
    return alice, bob


async def _until(check: object, attempts: int = 400) -> None:
    for _ in range(attempts):  # bounded in count, not a timed assertion
        if callable(check) and check():
            return
        await asyncio.sleep(0.025)
    raise AssertionError("condition not reached")


def test_a_corrupted_sealed_envelope_is_retried_and_seen_exactly_once(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        alice, bob = await _pair(relay, tmp_path)
        try:
            forger = EnvelopeForger(relay, bob.aci, (alice.aci, alice.device_id))
            ts = await alice.send_text(bob.aci, "second")
            assert forger.forged == 1
            failure = await bob.receive_failure(timeout=10)
            assert failure is not None
            assert failure.reason == "invalid-message" and failure.sealed
            assert (failure.sender_aci, failure.sender_device) == (alice.aci, alice.device_id)
            assert failure.sent_timestamp == ts and "authentication" in failure.description
            got = await bob.receive(timeout=10)  # Alice answered the retry request
            assert got is not None and got.text == "second" and got.sealed
            assert got.sender_aci == alice.aci and got.sent_timestamp == ts
            assert await bob.receive(timeout=0.5) is None  # exactly once
            assert await bob.receive_failure(timeout=0.1) is None  # one event per failure
            (record,) = bob.failures()
            assert record.retry == "sent" and bob.errors == 1
            assert alice.store.sent_resends(bob.aci, ts) == 1
            # The sessions still work both ways.
            await bob.send_text(alice.aci, "all good?")
            back = await alice.receive(timeout=10)
            assert back is not None and back.text == "all good?"
            await alice.send_text(bob.aci, "third")
            again = await bob.receive(timeout=10)
            assert again is not None and again.text == "third"
        finally:
            await alice.close()
            await bob.close()

    run(with_relay(tmp_path, body))


def test_receiving_never_reads_the_recorded_ciphertexts(tmp_path: Path) -> None:
    """The failure record keeps up to MAX_FAILURES ciphertexts of up to 256 KiB each; the
    receive path used to load all of them after every batch and for every new failure (a
    sender could make each undecryptable envelope cost a ~125 MiB read). Recording a failure
    and sending its retry request now query only the columns they need."""

    async def body(relay: RelayServer) -> None:
        alice, bob = await _pair(relay, tmp_path)
        try:
            forger = EnvelopeForger(relay, bob.aci, (alice.aci, alice.device_id), times=2)
            texts = []
            reads_every_body = AssertionError("the receive path read every recorded ciphertext")
            with mock.patch.object(ClientStore, "failures", side_effect=reads_every_body):
                await alice.send_text(bob.aci, "one")
                await alice.send_text(bob.aci, "two")
                assert forger.forged == 2
                while len(texts) < 2 and (got := await bob.receive(timeout=10)) is not None:
                    texts.append(got.text)
            assert sorted(texts) == ["one", "two"]  # both retried and resent
            assert [r.retry for r in bob.failures()] == ["sent", "sent"]
        finally:
            await alice.close()
            await bob.close()

    run(with_relay(tmp_path, body))


def test_a_corrupted_identified_envelope_is_retried_too(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        alice, bob = await _pair(relay, tmp_path)
        try:
            await bob.send_text(alice.aci, "reply")  # Alice now sends SignalMessages
            assert await alice.receive(timeout=10) is not None
            service = relay.service
            real = service.handle
            corrupted: list[int] = []

            def handle(session: Session, frame: rf.ClientFrame, now: int) -> Outcome:
                b = frame.body
                if isinstance(b, rf.SendMessage) and not corrupted:
                    corrupted.append(b.timestamp)
                    bad = tuple(  # the last byte of a SignalMessage is its MAC's
                        dataclasses.replace(m, body=m.body[:-1] + bytes((m.body[-1] ^ 1,)))
                        for m in b.messages
                    )
                    frame = dataclasses.replace(frame, body=dataclasses.replace(b, messages=bad))
                return real(session, frame, now)

            service.handle = handle  # type: ignore[method-assign]
            ts = await alice.send_text(bob.aci, "identified, then damaged", sealed=False)
            assert corrupted == [ts]
            failure = await bob.receive_failure(timeout=10)
            assert failure is not None and failure.reason == "invalid-message"
            assert not failure.sealed and failure.sender_aci == alice.aci
            got = await bob.receive(timeout=10)
            assert got is not None and got.text == "identified, then damaged"
            assert got.sealed  # the resend went sealed: Alice holds Bob's access key
            assert await bob.receive(timeout=0.5) is None
        finally:
            await alice.close()
            await bob.close()

    run(with_relay(tmp_path, body))


def test_a_certificate_from_another_trust_root_is_recorded_not_lost(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        alice, bob = await _pair(relay, tmp_path)
        try:
            forger = EnvelopeForger(relay, bob.aci, (alice.aci, alice.device_id), other_root=True)
            ts = await alice.send_text(bob.aci, "under another root")
            failure = await bob.receive_failure(timeout=10)
            assert failure is not None and failure.reason == "certificate-untrusted"
            assert "trust root" in failure.description
            assert failure.retry == "impossible"  # the sender is not authenticated
            assert failure.sender_aci is None and failure.sent_timestamp == ts
            (row,) = bob.store.failures()
            assert row.body == forger.bodies[0]  # the ciphertext is kept, not lost
            await _until(lambda: not relay.service.store.pending(uuid.UUID(bob.aci).bytes, 1))
            assert await bob.receive(timeout=0.3) is None
            assert alice.store.sent_resends(bob.aci, ts) == 0
        finally:
            await alice.close()
            await bob.close()

    run(with_relay(tmp_path, body))


def test_the_sender_archives_only_when_the_ratchet_key_is_its_current_one(
    tmp_path: Path,
) -> None:
    async def body(relay: RelayServer) -> None:
        alice, bob = await _pair(relay, tmp_path)
        try:
            await bob.send_text(alice.aci, "reply")  # Alice's sending chain turns over
            assert await alice.receive(timeout=10) is not None
            ts = await alice.send_text(bob.aci, "keep me")
            assert await bob.receive(timeout=10) is not None
            bob_at_alice = ProtocolAddress(bob.aci, bob.device_id)
            alice_at_bob = ProtocolAddress(alice.aci, alice.device_id)

            def alice_session() -> tuple[bytes, int]:
                record = alice.store.load_session(bob_at_alice)
                assert record is not None and record.current is not None
                return record.current.alice_base_key, len(record.previous_sessions)

            async def ask(request: DecryptionErrorMessage, expect_resends: int) -> None:
                assert await bob._send_plaintext(alice_at_bob, plaintext_content_for(request))
                await _until(lambda: alice.store.sent_resends(bob.aci, ts) == expect_resends)
                await _until(lambda: not alice.store.resend_pending())

            # Another ratchet key: resent on the same session.
            base, archived = alice_session()
            other = KeyPair.generate(SystemRng()).public_key
            await ask(DecryptionErrorMessage.new(ts, alice.device_id, other), 1)
            assert alice_session() == (base, archived)
            # Our current sending ratchet key: archived, resent on a new session.
            record = alice.store.load_session(bob_at_alice)
            assert record is not None and record.current is not None
            current = record.current.ratchet.sender_chain.ratchet_key_pair.public_key
            await ask(DecryptionErrorMessage.new(ts, alice.device_id, current), 2)
            new_base, new_archived = alice_session()
            assert new_base != base and new_archived == archived + 1
            # Bob's app saw "keep me" once: both resends were deduplicated.
            assert await bob.receive(timeout=0.5) is None
            # Another device's request is ignored; the resend count is bounded.
            await ask(DecryptionErrorMessage.new(ts, alice.device_id + 1), 2)
            for _ in range(MAX_RESENDS + 2):
                await ask(DecryptionErrorMessage.new(ts, alice.device_id), MAX_RESENDS)
            assert alice.store.sent_resends(bob.aci, ts) == MAX_RESENDS
            # The new session works both ways.
            await alice.send_text(bob.aci, "new session")
            got = await bob.receive(timeout=10)
            assert got is not None and got.text == "new session"
            await bob.send_text(alice.aci, "and back")
            back = await alice.receive(timeout=10)
            assert back is not None and back.text == "and back"
        finally:
            await alice.close()
            await bob.close()

    run(with_relay(tmp_path, body))


def _memory_store() -> ClientStore:
    rng = SystemRng()
    return ClientStore.open_client(":memory:", IdentityKeyPair.generate(rng), 7)


def test_the_failure_record_is_bounded_in_count_and_age() -> None:
    store = _memory_store()
    now = 1_800_000_000_000

    def add(i: int, at: int) -> None:
        store.failure_add(
            envelope_id=i.to_bytes(16, "big"),
            recorded_at=at,
            server_timestamp=at,
            sent_timestamp=at,
            envelope_type=6,
            sealed=True,
            sender=None,
            sender_device=None,
            reason="sealed-unopenable",
            retry="impossible",
            retry_request=None,
            body=b"x",
        )

    for i in range(MAX_FAILURES + 7):
        add(i, now)
    rows = store.failures()
    assert len(rows) == MAX_FAILURES
    assert rows[0].envelope_id == (7).to_bytes(16, "big")  # the oldest went first
    add(10_000, now + FAILURE_TTL_MS + 1)  # everything older than the TTL goes
    assert [r.envelope_id for r in store.failures()] == [(10_000).to_bytes(16, "big")]
    store.close()


def test_the_sent_record_is_bounded_and_expires() -> None:
    store = _memory_store()
    now = 1_800_000_000_000
    with store.transaction():
        for i in range(MAX_SENT_RECORDS + 5):
            store.sent_add("peer", i, b"content", now + i, None)
    assert store.sent_get("peer", 4, now + 10) is None  # dropped: the oldest five
    kept = store.sent_get("peer", 5, now + 10)
    assert kept is not None and kept.content == b"content"
    assert store.sent_get("peer", 5, now + 5 + SENT_RECORD_TTL_MS + 1) is None  # expired
    store.close()
