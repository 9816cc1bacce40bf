"""The client SDK against an embedded relay: registration, 1:1 sealed messaging, groups."""

from __future__ import annotations

from pathlib import Path

import pytest
from client_harness import new_client, run, with_relay

from securemsg.errors import SealedDeliveryRefused
from securemsg.relay.server import RelayServer


def test_register_and_one_to_one_both_ways(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "alice.db")
        bob = await new_client(relay, tmp_path / "bob.db")
        assert alice.registered and alice.connected
        alice.add_contact(bob.contact_card)
        await alice.send_text(bob.aci, "hi bob")
        got = await bob.receive(timeout=10)
        assert got is not None
        assert (got.text, got.sender_aci, got.sealed) == ("hi bob", alice.aci, True)
        # Bob learned Alice's access key from the message: the reply is sealed too.
        await bob.send_text(alice.aci, "hi alice")
        back = await alice.receive(timeout=10)
        assert back is not None
        assert (back.text, back.sender_aci, back.sealed) == ("hi alice", bob.aci, True)
        for i in range(3):
            await alice.send_text(bob.aci, f"m{i}")
        texts = [m.text for m in [await bob.receive(timeout=10) for _ in range(3)] if m]
        assert texts == ["m0", "m1", "m2"]
        assert await bob.receive(timeout=0.2) is None
        await alice.close()
        await bob.close()

    run(with_relay(tmp_path, body))


def test_first_contact_without_access_key_is_identified_only_when_allowed(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "alice.db")
        bob = await new_client(relay, tmp_path / "bob.db")
        with pytest.raises(SealedDeliveryRefused) as refused:
            await alice.send_text(bob.aci, "not like this")
        assert refused.value.reason == "no-access-key"
        await alice.send_text(bob.aci, "hello stranger", allow_identified=True)
        assert not alice.last_send_sealed
        first = await bob.receive(timeout=10)
        assert first is not None and first.text == "hello stranger" and not first.sealed
        await bob.send_text(alice.aci, "hello back")
        reply = await alice.receive(timeout=10)
        assert reply is not None and reply.sealed
        await alice.send_text(bob.aci, "now sealed")
        third = await bob.receive(timeout=10)
        assert third is not None and third.sealed and third.sender_aci == alice.aci
        await alice.close()
        await bob.close()

    run(with_relay(tmp_path, body))


def test_group_message_reaches_every_member_once(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        a = await new_client(relay, tmp_path / "a.db")
        b = await new_client(relay, tmp_path / "b.db")
        c = await new_client(relay, tmp_path / "c.db")
        for x in (a, b, c):
            for y in (a, b, c):
                if x is not y:
                    x.add_contact(y.contact_card)
        group = a.create_group("friends", [b.aci, c.aci])
        await a.send_group_text(group, "hello group")
        await a.send_group_text(group, "second")
        for member in (b, c):
            got = [await member.receive(timeout=10) for _ in range(2)]
            assert [m.text for m in got if m] == ["hello group", "second"]
            assert all(m and m.group_id == group and m.group_title == "friends" for m in got)
            assert all(m and m.sender_aci == a.aci and m.sealed for m in got)
            assert await member.receive(timeout=0.2) is None
        # A member who learned the group from the first message can answer in it.
        assert [g[0] for g in b.groups()] == [group]
        await b.send_group_text(group, "reply from b")
        for member in (a, c):
            got1 = await member.receive(timeout=10)
            assert got1 is not None and got1.text == "reply from b" and got1.group_id == group
        for x in (a, b, c):
            await x.close()

    run(with_relay(tmp_path, body))


def test_group_send_without_access_keys_goes_identified_only_when_allowed(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        a = await new_client(relay, tmp_path / "a.db")
        b = await new_client(relay, tmp_path / "b.db")
        group = a.create_group("no keys", [b.aci])
        with pytest.raises(SealedDeliveryRefused):
            await a.send_group_text(group, "not like this")
        assert a.store.get_session_device_ids(b.aci) == []  # nothing was even prepared
        await a.send_group_text(group, "identified group message", allow_identified=True)
        got = await b.receive(timeout=10)
        assert got is not None and got.text == "identified group message"
        assert got.group_id == group and not got.sealed
        await a.close()
        await b.close()

    run(with_relay(tmp_path, body))
