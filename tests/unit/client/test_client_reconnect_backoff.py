"""A relay that accepts the device and drops the connection at once is not hammered.

The reconnect delay started again at 0.1 s after every successful authentication, so such a
relay (or a proxy in front of it) saw about ten logins a second, for ever. A connection that
drops soon after it came up now doubles the next reconnect's first delay (with jitter, up to a
minute); one that lasted resets it. The bound below is an upper one: a slower machine only
logs in less often.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from client_harness import new_client, run, with_relay

from securemsg.errors import RelayError
from securemsg.relay.server import RelayServer
from securemsg.relay.service import Outcome, Session
from securemsg.relay_protocol import frames as rf


def test_a_relay_that_drops_every_connection_sees_backed_off_logins(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        bob = await new_client(relay, tmp_path / "bob.db")
        try:
            await bob.connect()
            logins = 0
            real = relay.service.handle

            def handle(session: Session, frame: rf.ClientFrame, now: int) -> Outcome:
                nonlocal logins
                if isinstance(frame.body, rf.Authenticate):
                    logins += 1
                out = real(session, frame, now)
                if isinstance(frame.body, rf.GetPreKeyCounts):  # the first request after login
                    return Outcome(
                        rf.Response(frame.request_id, rf.StatusCode.INTERNAL, "bye"), close=True
                    )
                return out

            relay.service.handle = handle  # type: ignore[method-assign]
            with contextlib.suppress(RelayError):  # this connection is dropped
                await bob.prekey_counts()
            await asyncio.sleep(6)
            assert 1 <= logins <= 10, logins  # without backoff: about 60
        finally:
            await bob.close()

    run(with_relay(tmp_path, body), timeout=60)
