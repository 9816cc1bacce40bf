"""MismatchedDevices (missing / extra / stale) for the recipient's account and our own:
sessions are started, archived or renewed and the send is tried again, a bounded number of
times, without losing or duplicating a message."""

from __future__ import annotations

from pathlib import Path

import pytest
from changing_devices import DeviceListChanger
from client_harness import new_client, run, with_relay
from linked_device_harness import add_device

from securemsg.client import Client, ReceivedMessage
from securemsg.errors import RelayError
from securemsg.protocol.address import ProtocolAddress
from securemsg.relay.server import RelayServer
from securemsg.relay_protocol.frames import StatusCode


async def _drain(client: Client, timeout: float = 0.5) -> list[str]:
    got: list[ReceivedMessage] = []
    for _ in range(50):
        m = await client.receive(timeout=timeout)
        if m is None:
            break
        got.append(m)
    return [m.text for m in got]


def _current(client: Client, aci: str, device: int) -> bool:
    record = client.store.load_session(ProtocolAddress(aci, device))
    return record is not None and record.current is not None


def test_a_new_device_of_the_recipient_is_found_and_sent_to_once(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "a1.db")
        bob = await new_client(relay, tmp_path / "b1.db")
        bob2 = await add_device(bob, relay, tmp_path / "b2.db", 2)
        changer = DeviceListChanger(relay, bob.aci)
        changer.hidden = {2}  # not linked yet, as far as the relay's lists go
        try:
            alice.add_contact(bob.contact_card)
            await alice.send_text(bob.aci, "one")
            assert changer.sends[bob.aci] == 1
            changer.hidden = set()  # linked now
            await alice.send_text(bob.aci, "two")
            assert changer.sends[bob.aci] == 3  # refused once (missing 2), then accepted
            assert await _drain(bob) == ["one", "two"]
            assert await _drain(bob2) == ["two"]
        finally:
            for c in (alice, bob, bob2):
                await c.close()

    run(with_relay(tmp_path, body), timeout=120)


def test_a_removed_device_is_archived_and_gets_nothing_new(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "a1.db")
        bob = await new_client(relay, tmp_path / "b1.db")
        bob2 = await add_device(bob, relay, tmp_path / "b2.db", 2)
        changer = DeviceListChanger(relay, bob.aci)
        try:
            alice.add_contact(bob.contact_card)
            await alice.send_text(bob.aci, "one")
            assert _current(alice, bob.aci, 2)
            changer.hidden = {2}  # unlinked
            await alice.send_text(bob.aci, "two")
            assert changer.sends[bob.aci] == 3
            record = alice.store.load_session(ProtocolAddress(bob.aci, 2))
            assert record is not None and record.current is None  # archived, not deleted
            assert len(record.previous_sessions) == 1
            await alice.send_text(bob.aci, "three")
            assert changer.sends[bob.aci] == 4  # no mismatch any more
            assert await _drain(bob) == ["one", "two", "three"]
            assert await _drain(bob2) == ["one"]
        finally:
            for c in (alice, bob, bob2):
                await c.close()

    run(with_relay(tmp_path, body), timeout=120)


def test_a_stale_device_gets_a_new_session(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "a1.db")
        bob = await new_client(relay, tmp_path / "b1.db")
        changer = DeviceListChanger(relay, bob.aci)
        try:
            alice.add_contact(bob.contact_card)
            await alice.send_text(bob.aci, "one")
            changer.stale = {1: 4242}
            with pytest.raises(RelayError) as info:  # the list keeps saying stale
                await alice.send_text(bob.aci, "lost in a loop")
            assert info.value.code == StatusCode.CONFLICT
            assert changer.sends[bob.aci] == 1 + 3  # bounded: three attempts, no more
            changer.stale = {}
            await alice.send_text(bob.aci, "two")
            assert await _drain(bob) == ["one", "two"]
        finally:
            for c in (alice, bob):
                await c.close()

    run(with_relay(tmp_path, body), timeout=120)


def test_a_device_list_that_keeps_changing_is_given_up_after_bounded_tries(
    tmp_path: Path,
) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "a1.db")
        bob = await new_client(relay, tmp_path / "b1.db")
        bob2 = await add_device(bob, relay, tmp_path / "b2.db", 2)
        changer = DeviceListChanger(relay, bob.aci)
        try:
            alice.add_contact(bob.contact_card)
            await alice.send_text(bob.aci, "one")
            changer.flip = 2  # every lookup: device 2 gone, back, gone, ...
            with pytest.raises(RelayError) as info:
                await alice.send_text(bob.aci, "never delivered")
            assert info.value.code == StatusCode.CONFLICT
            assert changer.sends[bob.aci] == 1 + 3
            changer.flip = None
            await alice.send_text(bob.aci, "two")
            assert await _drain(bob) == ["one", "two"]
            assert await _drain(bob2) == ["one", "two"]
        finally:
            for c in (alice, bob, bob2):
                await c.close()

    run(with_relay(tmp_path, body), timeout=120)


def test_our_own_device_list_changes_are_repaired_for_transcripts(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "a1.db")
        bob = await new_client(relay, tmp_path / "b1.db")
        alice2 = await add_device(alice, relay, tmp_path / "a2.db", 2)
        alice3 = await add_device(alice, relay, tmp_path / "a3.db", 3)
        changer = DeviceListChanger(relay, alice.aci)
        changer.hidden = {3}
        try:
            alice.add_contact(bob.contact_card)
            await alice.send_text(bob.aci, "one")
            assert changer.sends[alice.aci] == 1  # the transcript, to device 2
            changer.hidden = {2}  # device 2 unlinked, device 3 linked
            await alice.send_text(bob.aci, "two")
            assert changer.sends[alice.aci] == 3
            assert not _current(alice, alice.aci, 2) and _current(alice, alice.aci, 3)
            assert await _drain(alice2) == ["one"]
            assert await _drain(alice3) == ["two"]
            assert await _drain(bob) == ["one", "two"]
            assert alice.store.sync_pending() == []
        finally:
            for c in (alice, alice2, alice3, bob):
                await c.close()

    run(with_relay(tmp_path, body), timeout=120)
