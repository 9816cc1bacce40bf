"""The reference relay: WebSocket server, prekey directory, mailboxes, sealed sender.

Theory of operation
-------------------
:mod:`securemsg.relay.store` holds everything durable behind the ``RelayStore`` protocol
(SQLite by default); :mod:`securemsg.relay.service` is the request logic (authentication,
authorization, directory, mailboxes, certificates), synchronous and network-free;
:mod:`securemsg.relay.server` puts it on a WebSocket; :mod:`securemsg.relay.disclosure`
reports everything held about one account. The protocol is in docs/relay-protocol.md.
"""

from __future__ import annotations

from securemsg.relay.server import RelayServer
from securemsg.relay.service import RelayConfig
from securemsg.relay.store import RelayStore, SqliteRelayStore

__all__ = ["RelayConfig", "RelayServer", "RelayStore", "SqliteRelayStore"]
