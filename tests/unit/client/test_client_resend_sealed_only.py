"""A resend answers a retry request the way the original send was allowed to go.

``send_text(..., allow_identified=False)`` on a client created with ``allow_identified=True``
is the per-call way to say "this one goes sealed or not at all" (``send_group_text`` too).
A retry request in an identified ``PLAINTEXT_CONTENT`` envelope is unauthenticated
(``PlaintextContent`` carries no MAC and the envelope's source is whatever the relay says),
so a hostile relay can forge one "from" the recipient naming the message's timestamp (which
it saw in the ``SendSealed`` frame) and then refuse the sealed resend. The per-call choice is
stored with the sent record and honoured on resend: such a resend is recorded as not resent
(reason ``sealed-refused``) and never goes identified, whatever the client-wide setting.

A retry request can only cause a resend to the account the content was sent to, and only if
it names a device the content was sent to.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

from client_harness import new_client, run, with_relay

from securemsg.client import Client
from securemsg.client.store import SentRecord
from securemsg.relay.server import RelayServer
from securemsg.relay.service import Outcome, Session
from securemsg.relay_protocol import frames as rf
from securemsg.wire.content import DecryptionErrorMessage, plaintext_content_for

_Handler = Callable[[Session, rf.ClientFrame, int], Outcome]


def _refuse_sealed_to(relay: RelayServer, aci: str) -> tuple[_Handler, list[rf.SendMessage]]:
    """Make the relay refuse sealed sends to ``aci`` and record identified ones; returns the
    real handler and the list of identified sends seen."""
    service = relay.service
    real = service.handle
    identified: list[rf.SendMessage] = []
    target = uuid.UUID(aci).bytes

    def handle(session: Session, frame: rf.ClientFrame, now: int) -> Outcome:
        b = frame.body
        if isinstance(b, rf.SendSealed) and b.destination_aci == target:
            return Outcome(rf.Response(frame.request_id, rf.StatusCode.UNAUTHENTICATED, "no"))
        if isinstance(b, rf.SendMultiRecipient):
            return Outcome(rf.Response(frame.request_id, rf.StatusCode.UNAUTHENTICATED, "no"))
        if isinstance(b, rf.SendMessage) and b.destination_aci == target:
            identified.append(b)
        return real(session, frame, now)

    service.handle = handle  # type: ignore[method-assign]
    return real, identified


async def _forge_retry_request(
    relay: RelayServer, real: _Handler, to: Client, as_aci: str, as_device: int, ts: int
) -> None:
    """The relay forges an identified retry request for ``ts`` from ``as_aci.as_device`` (no
    ratchet key needed) and pushes it to ``to``'s live connection."""
    request = DecryptionErrorMessage.new(ts, to.device_id)
    forged = rf.SendMessage(
        uuid.UUID(to.aci).bytes,
        ts + 1,
        (
            rf.OutgoingMessage(
                to.device_id,
                to.store.get_local_registration_id(),
                rf.EnvelopeType.PLAINTEXT_CONTENT,
                plaintext_content_for(request).to_bytes(),
            ),
        ),
    )
    as_sender = Session(nonce=bytes(32), aci=uuid.UUID(as_aci).bytes, device_id=as_device)
    outcome = await relay.call(
        lambda s: real(as_sender, rf.ClientFrame(1, forged), 1_800_000_000_000)
    )
    assert outcome.response.code == rf.StatusCode.OK, outcome.response
    relay._deliver(outcome.queued)


async def _settled(client: Client, recipient: str, ts: int) -> SentRecord:
    """Wait (bounded) until the resend asked for was handled; the sent record then."""
    for _ in range(400):
        sent = client.store.sent_get(recipient, ts, client._now())
        if sent is not None and sent.resend_status is not None:
            return sent
        await asyncio.sleep(0.05)
    raise AssertionError("the retry request was not handled")


async def _handled_requests(client: Client) -> int:
    """How many retry requests ``client`` has taken from its inbox (bounded wait for one)."""
    for _ in range(400):
        rows = client.store._fetchall(
            "SELECT COUNT(*) FROM client_inbox WHERE kind = 'retry-request'"
        )
        if rows[0][0]:
            return int(rows[0][0])
        await asyncio.sleep(0.05)
    return 0


def test_a_forged_retry_request_does_not_resend_a_sealed_only_message_identified(
    tmp_path: Path,
) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "alice.db", allow_identified=True)
        bob = await new_client(relay, tmp_path / "bob.db")
        try:
            alice.add_contact(bob.contact_card)
            bob.add_contact(alice.contact_card)
            ts = await alice.send_text(bob.aci, "sealed or nothing", allow_identified=False)
            got = await bob.receive(timeout=10)
            assert got is not None and got.sealed

            real, identified = _refuse_sealed_to(relay, bob.aci)
            await _forge_retry_request(relay, real, alice, bob.aci, bob.device_id, ts)
            sent = await _settled(alice, bob.aci, ts)
            assert alice.store.sent_resends(bob.aci, ts) >= 1  # the request was acted on
            assert sent.sealed_only
            assert sent.resend_status == "sealed-refused"  # recorded as not resent
            assert not identified, (
                "the message sent with allow_identified=False was resent identified"
                f" ({len(identified)} identified SendMessage to the recipient)"
            )
        finally:
            await alice.close()
            await bob.close()

    run(with_relay(tmp_path, body))


def test_a_forged_retry_request_does_not_resend_a_sealed_only_group_message_identified(
    tmp_path: Path,
) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "alice.db", allow_identified=True)
        bob = await new_client(relay, tmp_path / "bob.db")
        try:
            alice.add_contact(bob.contact_card)
            bob.add_contact(alice.contact_card)
            group = alice.create_group("g", [bob.aci])
            ts = await alice.send_group_text(group, "group, sealed only", allow_identified=False)
            got = await bob.receive(timeout=10)
            assert got is not None and got.sealed and got.group_id == group

            real, identified = _refuse_sealed_to(relay, bob.aci)
            await _forge_retry_request(relay, real, alice, bob.aci, bob.device_id, ts)
            sent = await _settled(alice, bob.aci, ts)
            assert sent.sealed_only and sent.resend_status == "sealed-refused"
            assert not identified
        finally:
            await alice.close()
            await bob.close()

    run(with_relay(tmp_path, body))


def test_a_resend_of_a_message_allowed_identified_may_go_identified(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "alice.db")  # client-wide: sealed only
        bob = await new_client(relay, tmp_path / "bob.db")
        try:
            alice.add_contact(bob.contact_card)
            bob.add_contact(alice.contact_card)
            ts = await alice.send_text(bob.aci, "identified is fine", allow_identified=True)
            assert await bob.receive(timeout=10) is not None

            real, identified = _refuse_sealed_to(relay, bob.aci)
            await _forge_retry_request(relay, real, alice, bob.aci, bob.device_id, ts)
            sent = await _settled(alice, bob.aci, ts)
            assert not sent.sealed_only
            assert sent.resend_status == "resent"
            assert len(identified) == 1
        finally:
            await alice.close()
            await bob.close()

    run(with_relay(tmp_path, body))


def test_a_retry_request_resends_only_to_the_account_and_device_sent_to(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "alice.db", allow_identified=True)
        bob = await new_client(relay, tmp_path / "bob.db")
        carol = await new_client(relay, tmp_path / "carol.db")
        try:
            alice.add_contact(bob.contact_card)
            bob.add_contact(alice.contact_card)
            ts = await alice.send_text(bob.aci, "for bob's device 1")
            assert await bob.receive(timeout=10) is not None
            sent = alice.store.sent_get(bob.aci, ts, alice._now())
            assert sent is not None and sent.devices == (bob.device_id,)

            real = relay.service.handle
            # Another account names the timestamp: nothing was sent to it at that time.
            await _forge_retry_request(relay, real, alice, carol.aci, carol.device_id, ts)
            assert await _handled_requests(alice) == 1
            # The right account, a device the content was never sent to.
            await _forge_retry_request(relay, real, alice, bob.aci, 7, ts)
            for _ in range(400):
                if await _handled_requests(alice) == 2:
                    break
                await asyncio.sleep(0.05)
            assert await _handled_requests(alice) == 2
            assert alice.store.resend_pending() == []
            assert alice.store.sent_resends(bob.aci, ts) == 0
            assert alice.store.sent_get(carol.aci, ts, alice._now()) is None
        finally:
            await alice.close()
            await bob.close()
            await carol.close()

    run(with_relay(tmp_path, body))


def test_a_sent_record_from_an_older_database_counts_as_sealed_only(tmp_path: Path) -> None:
    from securemsg.client.store import ClientStore
    from securemsg.crypto.rng import SystemRng
    from securemsg.protocol.identity_and_prekeys import IdentityKeyPair

    path = tmp_path / "old.db"
    store = ClientStore.open_client(path, IdentityKeyPair.generate(SystemRng()), 7)
    with store.transaction():  # the table as an older version created it
        store._exec("DROP TABLE client_sent")
        store._exec(
            "CREATE TABLE client_sent (recipient TEXT NOT NULL, timestamp INTEGER NOT NULL,"
            " sent_at INTEGER NOT NULL, group_id BLOB, content BLOB NOT NULL,"
            " resends INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (recipient, timestamp))"
            " WITHOUT ROWID"
        )
        store._exec("INSERT INTO client_sent VALUES ('a', 5, 100, NULL, x'00', 0)")
    store.close()
    store = ClientStore.open_client(path)
    try:
        old = store.sent_get("a", 5, 100)
        assert old is not None and old.sealed_only and old.devices is None
        store.sent_add("b", 6, b"\x01", 100, None, sealed_only=False, devices=[2, 1])
        new = store.sent_get("b", 6, 100)
        assert new is not None and not new.sealed_only and new.devices == (1, 2)
        store.sent_set_resend_status("b", 6, "resent")
        assert store.sent_get("b", 6, 100).resend_status == "resent"  # type: ignore[union-attr]
    finally:
        store.close()
