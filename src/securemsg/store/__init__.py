"""Where the protocol's state lives: the store interfaces and the two shipped implementations.

See :mod:`securemsg.store.base` for the contracts, :mod:`securemsg.store.memory` for the
in-memory reference store and :mod:`securemsg.store.sqlite` for the persistent one;
:mod:`securemsg.store.staging` stages an operation's writes, and
:mod:`securemsg.store.sqlite_base` is the SQLite plumbing (opening, pragmas, file modes,
transactions, schema versions) that the relay's and the client's databases share too.
Not here: the bytes of the stored records (:mod:`securemsg.records`) and the async stores
(:mod:`securemsg.aio`).
"""

from __future__ import annotations

from securemsg.store.base import (
    Direction,
    IdentityKeyStore,
    KyberPreKeyStore,
    ManagedProtocolStore,
    PreKeyInventory,
    PreKeyStore,
    ProtocolStore,
    SenderKeyStore,
    SessionStore,
    SignedPreKeyStore,
)
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.store.sqlite import SqliteProtocolStore

__all__ = [
    "Direction",
    "IdentityKeyStore",
    "InMemoryProtocolStore",
    "KyberPreKeyStore",
    "ManagedProtocolStore",
    "PreKeyInventory",
    "PreKeyStore",
    "ProtocolStore",
    "SenderKeyStore",
    "SessionStore",
    "SignedPreKeyStore",
    "SqliteProtocolStore",
]
