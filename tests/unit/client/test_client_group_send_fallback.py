"""A storm of refused anonymous sends does not stop everybody's group messages.

The relay charges refused unauthenticated multi-recipient sends to one relay-wide budget (it
cannot tell anonymous senders apart); while a storm has spent it, every sealed sender v2
upload gets RATE_LIMITED, so one hostile client stopped every account's group messages. The
client now falls back to sealed sender v1, one SendSealed per member (not charged to that
budget): still sealed, the same sender-key message, every member device reached once.
"""

from __future__ import annotations

from pathlib import Path

from client_harness import introduce, new_client, run, with_relay

from securemsg.relay.server import RelayServer
from securemsg.relay.service import Outcome, Session
from securemsg.relay_protocol import frames as rf


def test_group_messages_go_sealed_one_member_at_a_time_while_uploads_are_refused(
    tmp_path: Path,
) -> None:
    async def body(relay: RelayServer) -> None:
        names = ("alice", "bob", "carol")
        alice, bob, carol = [await new_client(relay, tmp_path / f"{n}.db") for n in names]
        clients = (alice, bob, carol)
        try:
            introduce(*clients)
            gid = alice.create_group("g", [bob.aci, carol.aci])
            await alice.send_group_text(gid, "before the storm")
            for c in (bob, carol):
                m = await c.receive(timeout=10)
                assert m is not None and m.text == "before the storm"
            real = relay.service.handle
            identified: list[object] = []

            def handle(session: Session, frame: rf.ClientFrame, now: int) -> Outcome:
                if isinstance(frame.body, rf.SendMultiRecipient):  # the budget is spent
                    return Outcome(
                        rf.Response(
                            frame.request_id, rf.StatusCode.RATE_LIMITED, "too many refused sends"
                        )
                    )
                if isinstance(frame.body, rf.SendMessage) and session.aci is not None:
                    identified.append(frame.body)
                return real(session, frame, now)

            relay.service.handle = handle  # type: ignore[method-assign]
            await alice.send_group_text(gid, "during the storm")
            for c in (bob, carol):
                m = await c.receive(timeout=10)
                assert m is not None and m.text == "during the storm" and m.sealed
                assert await c.receive(timeout=0.5) is None  # once
            assert identified == []  # nothing went identified
        finally:
            for c in clients:
                await c.close()

    run(with_relay(tmp_path, body), timeout=120)
