"""Where the protocol's state lives: the store interfaces and the two shipped implementations.

See :mod:`securemsg.store.base` for the contracts, :mod:`securemsg.store.memory` for the
in-memory reference store and :mod:`securemsg.store.sqlite` for the persistent one.
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
