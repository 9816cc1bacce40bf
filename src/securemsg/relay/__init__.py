"""The reference relay: WebSocket server, prekey directory, mailboxes, sealed sender.

Theory of operation
-------------------
:mod:`securemsg.relay.store` holds everything durable behind the ``RelayStore`` protocol
(SQLite by default); :mod:`securemsg.relay.service` is the request logic (authentication,
authorization, directory, mailboxes, certificates), synchronous and network-free;
:mod:`securemsg.relay.server` puts it on a WebSocket; :mod:`securemsg.relay.disclosure`
reports everything held about one account. The protocol is in docs/relay-protocol.md.
Also here: :mod:`.pgstore` (the PostgreSQL ``RelayStore``), :mod:`.cluster` (several relay
processes on one PostgreSQL database), :mod:`.kt` and :mod:`.kt_store` (the key-transparency
directory the relay serves) and :mod:`.filescan` (searching database files for residue).

Not here: the protocol's frames as bytes (:mod:`securemsg.relay_protocol`) and anything a
client does (:mod:`securemsg.client`). The relay holds no client key.
"""

from __future__ import annotations

from securemsg.relay.server import RelayServer
from securemsg.relay.service import RelayConfig
from securemsg.relay.store import RelayStore, SqliteRelayStore

__all__ = ["RelayConfig", "RelayServer", "RelayStore", "SqliteRelayStore"]
