"""A group as we know it changes only by our own devices.

securemsg groups are fixed when created (there is no membership change in the SDK), but every
group message carries its GroupContext, and a member's message used to overwrite the stored
member list and title: one member could drop another and add an outsider, who then got the
sender key and every later message. A known group's context must now match what we hold
(else the message is refused as invalid, and nothing changes), and every member must be a
valid ACI.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from client_harness import introduce, new_client, run, with_relay

from securemsg._proto import content_pb2
from securemsg.errors import DecodeError
from securemsg.relay.server import RelayServer
from securemsg.wire.content import CONTENT_VERSION, Content, GroupContext, decode_content


def test_a_group_member_that_is_not_an_aci_is_a_decode_error() -> None:
    pb = content_pb2.Content(version=CONTENT_VERSION, timestamp=1, text="hi")
    pb.group.id = bytes(16)
    pb.group.title = "t"
    pb.group.members.extend([str(uuid.uuid4()), "not an aci"])
    with pytest.raises(DecodeError):
        decode_content(pb.SerializeToString())


def test_a_member_cannot_rewrite_a_group_in_another_members_store(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        names = ("alice", "bob", "carol", "eve")
        alice, bob, carol, eve = [await new_client(relay, tmp_path / f"{n}.db") for n in names]
        clients = (alice, bob, carol, eve)
        try:
            introduce(*clients)
            gid = alice.create_group("family", [bob.aci, carol.aci])
            await alice.send_group_text(gid, "hello family")
            for c in (bob, carol):
                m = await c.receive(timeout=10)
                assert m is not None and m.text == "hello family"
            before = [g for g in alice.groups() if g[0] == gid]
            # Bob, a member, sends Alice a context that drops Carol and adds Eve
            members = tuple(sorted({alice.aci, bob.aci, eve.aci}))
            rewrite = Content(
                await bob._anext_timestamp(),
                "see the new list",
                GroupContext(gid, "family", members),
                access_key=bob._access_key,
            )
            await bob._send_content(alice.aci, rewrite)
            for _ in range(100):
                if alice.failures():
                    break
                await asyncio.sleep(0.05)
            assert [f.reason for f in alice.failures()] == ["invalid-content"]
            assert [g for g in alice.groups() if g[0] == gid] == before
            await alice.send_group_text(gid, "private family news")
            m = await carol.receive(timeout=10)
            assert m is not None and m.text == "private family news"
            assert await eve.receive(timeout=2) is None
        finally:
            for c in clients:
                await c.close()

    run(with_relay(tmp_path, body), timeout=120)
