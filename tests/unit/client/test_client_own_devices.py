"""Every message on every device: the recipient's devices, and our own other devices through
sync transcripts (Signal's SyncMessage.Sent), each exactly once."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

from client_harness import new_client, run, with_relay
from linked_device_harness import add_device

from securemsg.client import Client, ReceivedMessage
from securemsg.client.store import ClientStore
from securemsg.crypto.rng import SystemRng
from securemsg.protocol.identity_and_prekeys import IdentityKeyPair
from securemsg.relay.server import RelayServer
from securemsg.relay.service import Outcome, Session
from securemsg.relay_protocol import frames as rf
from securemsg.wire.content import Content, SentTranscript


async def _drain(client: Client, timeout: float = 0.5) -> list[ReceivedMessage]:
    got = []
    for _ in range(50):
        m = await client.receive(timeout=timeout)
        if m is None:
            break
        got.append(m)
    return got


def _texts(messages: list[ReceivedMessage]) -> list[str]:
    return [m.text for m in messages]


def test_one_to_one_reaches_every_device_and_our_other_devices(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "a1.db")
        bob = await new_client(relay, tmp_path / "b1.db")
        alice2 = await add_device(alice, relay, tmp_path / "a2.db", 2)
        bob2 = await add_device(bob, relay, tmp_path / "b2.db", 2)
        try:
            alice.add_contact(bob.contact_card)
            ts = await alice.send_text(bob.aci, "hello bob")
            for device in (bob, bob2):
                got = await _drain(device)
                assert _texts(got) == ["hello bob"]
                assert got[0].sender_aci == alice.aci and got[0].sender_device == 1
                assert got[0].sealed and not got[0].transcript
                assert got[0].sent_timestamp == ts
            got = await _drain(alice2)
            assert _texts(got) == ["hello bob"]
            transcript = got[0]
            assert transcript.transcript and transcript.destination_aci == bob.aci
            assert transcript.sender_aci == alice.aci and transcript.sender_device == 1
            assert transcript.sent_timestamp == ts
            assert transcript.sender_devices == 2
            assert await _drain(alice) == []

            # Bob answers from his second device: Bob's first device gets the transcript,
            # both of Alice's devices the message, and they can tell Bob's devices apart.
            await bob2.send_text(alice.aci, "hi from the laptop")
            for device in (alice, alice2):
                got = await _drain(device)
                assert _texts(got) == ["hi from the laptop"]
                assert got[0].sender_device == 2 and not got[0].transcript
                assert got[0].sender_devices == 2
            got = await _drain(bob)
            assert _texts(got) == ["hi from the laptop"]
            assert got[0].transcript and got[0].sender_device == 2
            assert got[0].destination_aci == alice.aci
            assert await _drain(bob2) == []
        finally:
            for c in (alice, alice2, bob, bob2):
                await c.close()

    run(with_relay(tmp_path, body), timeout=120)


def test_an_account_alone_sends_no_transcript(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "a1.db")
        bob = await new_client(relay, tmp_path / "b1.db")
        asked = []
        real = relay.service.handle

        def counting(session: Session, frame: rf.ClientFrame, now: int) -> Outcome:
            if isinstance(frame.body, rf.GetDevices):
                asked.append(frame.body.aci)
            return real(session, frame, now)

        relay.service.handle = counting  # type: ignore[method-assign]
        try:
            alice.add_contact(bob.contact_card)
            await alice.send_text(bob.aci, "one")
            await alice.send_text(bob.aci, "one more")
            assert _texts(await _drain(bob)) == ["one", "one more"]
            assert alice.store.sync_pending() == []
            assert await _drain(alice) == []
            assert len(asked) == 1  # the device list is asked once, not on every send
            # A device linked later gets the transcripts of what is sent from then on.
            alice2 = await add_device(alice, relay, tmp_path / "a2.db", 2)
            try:
                await alice.send_text(bob.aci, "two")
                assert _texts(await _drain(alice2)) == ["two"]
                assert _texts(await _drain(bob)) == ["two"]
            finally:
                await alice2.close()
        finally:
            await alice.close()
            await bob.close()

    run(with_relay(tmp_path, body), timeout=120)


def test_group_messages_reach_every_device_and_transcripts_our_others(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "a1.db")
        bob = await new_client(relay, tmp_path / "b1.db")
        carol = await new_client(relay, tmp_path / "c1.db")
        alice2 = await add_device(alice, relay, tmp_path / "a2.db", 2)
        bob2 = await add_device(bob, relay, tmp_path / "b2.db", 2)
        clients = [alice, alice2, bob, bob2, carol]
        try:
            for x in (alice, bob, carol):
                for y in (alice, bob, carol):
                    if x is not y:
                        x.add_contact(y.contact_card)
            for c in (alice2, bob2):
                c.add_contact(carol.contact_card)
            alice2.add_contact(bob.contact_card)
            bob2.add_contact(alice.contact_card)
            group = alice.create_group("trio", [bob.aci, carol.aci])
            await alice.send_group_text(group, "to the group")
            for device in (bob, bob2, carol):
                got = await _drain(device)
                assert _texts(got) == ["to the group"]
                assert got[0].group_id == group and got[0].group_title == "trio"
            got = await _drain(alice2)
            assert _texts(got) == ["to the group"] and got[0].transcript
            assert got[0].group_id == group and got[0].destination_aci is None
            assert alice2.groups() == alice.groups()

            # Alice's second device sends to the group it learned from the transcript.
            await alice2.send_group_text(group, "from the laptop")
            for device in (bob, bob2, carol):
                got = await _drain(device)
                assert _texts(got) == ["from the laptop"]
                assert got[0].sender_device == 2
            got = await _drain(alice)
            assert _texts(got) == ["from the laptop"] and got[0].transcript

            # A new device of a member gets the sender key before the next group message.
            carol2 = await add_device(carol, relay, tmp_path / "c2.db", 2)
            clients.append(carol2)
            await alice.send_group_text(group, "welcome, new device")
            for device in (bob, bob2, carol, carol2):
                got = await _drain(device)
                assert _texts(got) == ["welcome, new device"], device.address
            assert _texts(await _drain(alice2)) == ["welcome, new device"]
            for device in clients:
                assert device.failures() == [], device.address
        finally:
            for c in clients:
                await c.close()

    run(with_relay(tmp_path, body), timeout=180)


def test_a_transcript_from_another_account_is_refused(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "a1.db")
        mallory = await new_client(relay, tmp_path / "m1.db")
        try:
            mallory.add_contact(alice.contact_card)
            # Mallory claims Alice sent Carol something: a transcript only our own account
            # may send us.
            forged = Content(
                7, sync_sent=SentTranscript(mallory.aci, 7, Content(7, "I never said that"))
            )
            await mallory._send_content(alice.aci, forged)
            failure = await alice.receive_failure(timeout=5)
            assert failure is not None and failure.reason == "invalid-content"
            assert failure.sender_aci == mallory.aci
            assert await _drain(alice) == []
            assert alice.store.inbox_count("message") == 0
        finally:
            await alice.close()
            await mallory.close()

    run(with_relay(tmp_path, body), timeout=120)


def test_a_removed_member_device_does_not_keep_our_group_sender_key(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "a1.db")
        bob = await new_client(relay, tmp_path / "b1.db")
        bob2 = await add_device(bob, relay, tmp_path / "b2.db", 2)
        clients = [alice, bob, bob2]
        try:
            alice.add_contact(bob.contact_card)
            bob.add_contact(alice.contact_card)
            group = alice.create_group("pair", [bob.aci])
            await alice.send_group_text(group, "before")
            for device in (bob, bob2):
                assert _texts(await _drain(device)) == ["before"]
            distribution = uuid.UUID(bytes=group)
            old = alice.store.load_sender_key(alice.address, distribution)
            assert old is not None
            old_chain = old.states[0].chain_id
            await bob.unlink(2)  # Bob's laptop is gone, with Alice's sender key in it
            await alice.send_group_text(group, "after")
            assert _texts(await _drain(bob)) == ["after"]
            new = alice.store.load_sender_key(alice.address, distribution)
            assert new is not None and len(new.states) == 1
            assert new.states[0].chain_id != old_chain  # a new chain: the old one is useless
            assert not alice.store.group_key_sent(group, bob.aci, 2)
            assert alice.store.group_key_sent(group, bob.aci, 1)
            # A second message needs no new key and no new distribution.
            await alice.send_group_text(group, "again")
            assert _texts(await _drain(bob)) == ["again"]
            again = alice.store.load_sender_key(alice.address, distribution)
            assert again is not None and again.states[0].chain_id == new.states[0].chain_id
            assert bob.failures() == []
        finally:
            for c in clients:
                await c.close()

    run(with_relay(tmp_path, body), timeout=120)


def test_an_older_database_gains_the_transcript_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    store = ClientStore.open_client(path, IdentityKeyPair.generate(SystemRng()), 7)
    store.inbox_add(
        envelope_id=b"e" * 16,
        server_timestamp=2,
        kind="message",
        sealed=True,
        sender="someone",
        sender_device=1,
        sent_timestamp=1,
        body="from before",
    )
    store.close()
    with sqlite3.connect(path) as db:  # as an older release left it
        db.execute("ALTER TABLE client_inbox DROP COLUMN destination")
        db.execute("DROP TABLE client_sync_pending")
    store = ClientStore.open_client(path)
    try:
        (row,) = store.inbox_pending()
        assert row.body == "from before" and row.destination is None
        assert store.sync_pending() == []
    finally:
        store.close()
