"""The in-memory reference store: plain dicts, an undo log for transactions.

Theory of operation
-------------------
:class:`InMemoryProtocolStore` implements every interface of :mod:`securemsg.store.base` with
one dict per concern. Records are kept as the objects handed in (the records-are-values
contract of :mod:`securemsg.store.base` makes that safe), so a load costs a dict lookup and
nothing is serialized: this is the store for tests, vectors and benchmarks. Nothing survives
the process; use :class:`securemsg.store.sqlite.SqliteProtocolStore` for that.

Transactions: every write goes through :meth:`InMemoryProtocolStore._put` or
:meth:`InMemoryProtocolStore._pop`, which, while a transaction is open, append
``(table, key, previous value)`` to an undo log. An exception leaving a ``transaction()``
block replays the log backwards down to where that block started; leaving the outermost block
normally just drops the log. Nested blocks therefore join the outer one, and an inner block
that fails undoes only its own writes.

Not thread-safe; use from one thread and do not ``await`` inside a transaction.
"""

from __future__ import annotations

import uuid
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar

from securemsg.errors import InvalidPreKeyError
from securemsg.store.base import (
    Direction,
    _check_key_id,
    _check_registration_id,
    _check_sender_key_args,
    _lookup_id,
)

if TYPE_CHECKING:
    from securemsg.crypto.curve25519 import PublicKey
    from securemsg.protocol.address import ProtocolAddress
    from securemsg.protocol.identity_and_prekeys import (
        IdentityKey,
        IdentityKeyPair,
        KyberPreKeyRecord,
        PreKeyRecord,
        SignedPreKeyRecord,
    )
    from securemsg.protocol.sender_keys import SenderKeyRecord
    from securemsg.protocol.session_record import SessionRecord
    from securemsg.store.base import ManagedProtocolStore

__all__ = ["InMemoryProtocolStore"]

_K = TypeVar("_K")
_V = TypeVar("_V")

_MISSING: Final = object()

_AddressKey = tuple[str, int]


def _addr(address: ProtocolAddress) -> _AddressKey:
    return (address.name, address.device_id)


class InMemoryProtocolStore:
    """A complete :class:`~securemsg.store.base.ProtocolStore` (and prekey inventory) in memory.

    Args:
        identity_key_pair: our identity, returned by :meth:`get_identity_key_pair`.
        registration_id: our 14-bit registration id.

    Raises:
        UsageError: ``registration_id`` is not in 0..0x3FFF.
    """

    __slots__ = (
        "_account_identities",
        "_depth",
        "_identities",
        "_identity_key_pair",
        "_kyber_pre_keys",
        "_kyber_seen",
        "_pre_keys",
        "_registration_id",
        "_sender_keys",
        "_sessions",
        "_signed_pre_keys",
        "_undo",
    )

    def __init__(self, identity_key_pair: IdentityKeyPair, registration_id: int) -> None:
        self._registration_id = _check_registration_id(registration_id)
        self._identity_key_pair = identity_key_pair
        self._identities: dict[_AddressKey, IdentityKey] = {}
        #: name -> the account's key (every entry of that name in ``_identities`` holds it)
        self._account_identities: dict[str, IdentityKey] = {}
        self._pre_keys: dict[int, PreKeyRecord] = {}
        self._signed_pre_keys: dict[int, SignedPreKeyRecord] = {}
        # kyber id -> (record, last_resort)
        self._kyber_pre_keys: dict[int, tuple[KyberPreKeyRecord, bool]] = {}
        # (kyber id, signed prekey id, base key bytes) used with a last-resort key
        self._kyber_seen: dict[tuple[int, int, bytes], None] = {}
        self._sessions: dict[_AddressKey, SessionRecord] = {}
        self._sender_keys: dict[tuple[str, int, uuid.UUID], SenderKeyRecord] = {}
        self._depth = 0
        self._undo: list[tuple[dict[Any, Any], object, object]] = []

    def __repr__(self) -> str:
        return (
            f"InMemoryProtocolStore(registration_id={self._registration_id}, "
            f"sessions={len(self._sessions)}, identities={len(self._identities)})"
        )

    # -- undo-logged primitives ------------------------------------------------------------

    def _put(self, table: dict[_K, _V], key: _K, value: _V) -> None:
        if self._depth:
            self._undo.append((table, key, table.get(key, _MISSING)))
        table[key] = value

    def _pop(self, table: dict[_K, _V], key: _K) -> None:
        if key not in table:
            return
        if self._depth:
            self._undo.append((table, key, table[key]))
        del table[key]

    def _rollback_to(self, mark: int) -> None:
        undo = self._undo
        while len(undo) > mark:
            table, key, old = undo.pop()
            if old is _MISSING:
                table.pop(key, None)
            else:
                table[key] = old

    def transaction(self) -> AbstractContextManager[None]:
        """Group writes atomically (see :meth:`securemsg.store.base.ProtocolStore.transaction`)."""
        return _Transaction(self)

    # -- IdentityKeyStore --------------------------------------------------------------------

    def get_identity_key_pair(self) -> IdentityKeyPair:
        """Return our identity key pair."""
        return self._identity_key_pair

    def get_local_registration_id(self) -> int:
        """Return our registration id."""
        return self._registration_id

    def save_identity(self, address: ProtocolAddress, identity_key: IdentityKey) -> bool:
        """Trust ``identity_key`` for ``address`` and the rest of its account; True if it
        replaced a different key of the account."""
        name = address.name
        known = self._account_identities.get(name)
        if known is not None and known.public_key == identity_key.public_key:
            if _addr(address) not in self._identities:
                self._put(self._identities, _addr(address), identity_key)
            return False
        if known is not None:  # the account has one key: its other devices' entries follow
            for key in [k for k in self._identities if k[0] == name]:
                self._put(self._identities, key, identity_key)
        self._put(self._identities, _addr(address), identity_key)
        self._put(self._account_identities, name, identity_key)
        return known is not None

    def is_trusted_identity(
        self, address: ProtocolAddress, identity_key: IdentityKey, direction: Direction
    ) -> bool:
        """Trust on first use, per account: no key known for ``address.name`` (any device) or
        the same key -> True; a different key -> False."""
        known = self._account_identities.get(address.name)
        return known is None or known is identity_key or known.public_key == identity_key.public_key

    def get_identity(self, address: ProtocolAddress) -> IdentityKey | None:
        """Return the identity saved for ``address``, or None."""
        return self._identities.get(_addr(address))

    # -- PreKeyStore ---------------------------------------------------------------------

    def get_pre_key(self, pre_key_id: int) -> PreKeyRecord:
        """Return the prekey; missing -> InvalidPreKeyError."""
        try:
            return self._pre_keys[_lookup_id(pre_key_id)]
        except KeyError:
            raise InvalidPreKeyError("no prekey with that id") from None

    def save_pre_key(self, pre_key_id: int, record: PreKeyRecord) -> None:
        """Store a one-time prekey."""
        self._put(self._pre_keys, _check_key_id(pre_key_id, "pre_key_id"), record)

    def remove_pre_key(self, pre_key_id: int) -> None:
        """Delete a one-time prekey (absent: no-op)."""
        self._pop(self._pre_keys, _lookup_id(pre_key_id))

    # -- SignedPreKeyStore ---------------------------------------------------------------

    def get_signed_pre_key(self, signed_pre_key_id: int) -> SignedPreKeyRecord:
        """Return the signed prekey; missing -> InvalidPreKeyError."""
        try:
            return self._signed_pre_keys[_lookup_id(signed_pre_key_id)]
        except KeyError:
            raise InvalidPreKeyError("no signed prekey with that id") from None

    def save_signed_pre_key(self, signed_pre_key_id: int, record: SignedPreKeyRecord) -> None:
        """Store a signed prekey."""
        key = _check_key_id(signed_pre_key_id, "signed_pre_key_id")
        self._put(self._signed_pre_keys, key, record)

    # -- KyberPreKeyStore ----------------------------------------------------------------

    def get_kyber_pre_key(self, kyber_pre_key_id: int) -> KyberPreKeyRecord:
        """Return the Kyber prekey; missing -> InvalidPreKeyError."""
        try:
            return self._kyber_pre_keys[_lookup_id(kyber_pre_key_id)][0]
        except KeyError:
            raise InvalidPreKeyError("no Kyber prekey with that id") from None

    def save_kyber_pre_key(
        self, kyber_pre_key_id: int, record: KyberPreKeyRecord, *, last_resort: bool = False
    ) -> None:
        """Store a one-time (default) or last-resort Kyber prekey."""
        key = _check_key_id(kyber_pre_key_id, "kyber_pre_key_id")
        self._put(self._kyber_pre_keys, key, (record, bool(last_resort)))

    def mark_kyber_pre_key_used(
        self, kyber_pre_key_id: int, signed_pre_key_id: int, base_key: PublicKey
    ) -> None:
        """Consume a one-time key, or remember the triple for a last-resort key."""
        kyber_id = _lookup_id(kyber_pre_key_id)
        signed_id = _lookup_id(signed_pre_key_id)
        entry = self._kyber_pre_keys.get(kyber_id)
        if entry is None or signed_id < 0:
            raise InvalidPreKeyError("no Kyber prekey with that id")
        if not entry[1]:
            self._pop(self._kyber_pre_keys, kyber_id)
            return
        triple = (kyber_id, signed_id, bytes(base_key.raw))
        if triple in self._kyber_seen:
            raise InvalidPreKeyError("last-resort Kyber prekey replayed with the same base key")
        self._put(self._kyber_seen, triple, None)

    # -- SessionStore --------------------------------------------------------------------

    def load_session(self, address: ProtocolAddress) -> SessionRecord | None:
        """Return the session record for ``address``, or None."""
        return self._sessions.get(_addr(address))

    def store_session(self, address: ProtocolAddress, record: SessionRecord) -> None:
        """Store the session record for ``address`` (kept as the object given)."""
        self._put(self._sessions, _addr(address), record)

    # -- SenderKeyStore ------------------------------------------------------------------

    def store_sender_key(
        self, sender: ProtocolAddress, distribution_id: uuid.UUID, record: SenderKeyRecord
    ) -> None:
        """Store the sender-key record for ``(sender, distribution_id)`` (kept as given)."""
        _check_sender_key_args(distribution_id, record)
        self._put(self._sender_keys, (sender.name, sender.device_id, distribution_id), record)

    def load_sender_key(
        self, sender: ProtocolAddress, distribution_id: uuid.UUID
    ) -> SenderKeyRecord | None:
        """Return the sender-key record for ``(sender, distribution_id)``, or None."""
        _check_sender_key_args(distribution_id)
        return self._sender_keys.get((sender.name, sender.device_id, distribution_id))

    # -- PreKeyInventory -----------------------------------------------------------------

    def get_pre_key_ids(self) -> list[int]:
        """Ids of the stored one-time prekeys, ascending."""
        return sorted(self._pre_keys)

    def count_pre_keys(self) -> int:
        """Number of stored one-time prekeys."""
        return len(self._pre_keys)

    def get_signed_pre_key_ids(self) -> list[int]:
        """Ids of the stored signed prekeys, ascending."""
        return sorted(self._signed_pre_keys)

    def remove_signed_pre_key(self, signed_pre_key_id: int) -> None:
        """Delete a signed prekey (absent: no-op)."""
        self._pop(self._signed_pre_keys, _lookup_id(signed_pre_key_id))

    def get_kyber_pre_key_ids(self, *, last_resort: bool | None = None) -> list[int]:
        """Ids of the stored Kyber prekeys (all, last-resort only, or one-time only)."""
        return sorted(
            k
            for k, (_, lr) in self._kyber_pre_keys.items()
            if last_resort is None or lr == last_resort
        )

    def count_kyber_pre_keys(self, *, last_resort: bool | None = None) -> int:
        """Number of stored Kyber prekeys (filtered like :meth:`get_kyber_pre_key_ids`)."""
        if last_resort is None:
            return len(self._kyber_pre_keys)
        return len(self.get_kyber_pre_key_ids(last_resort=last_resort))

    def is_last_resort_kyber_pre_key(self, kyber_pre_key_id: int) -> bool:
        """Whether the stored Kyber prekey is a last-resort key; missing -> InvalidPreKeyError."""
        try:
            return self._kyber_pre_keys[_lookup_id(kyber_pre_key_id)][1]
        except KeyError:
            raise InvalidPreKeyError("no Kyber prekey with that id") from None

    def remove_kyber_pre_key(self, kyber_pre_key_id: int) -> None:
        """Delete a Kyber prekey and the triples remembered for it (absent: no-op)."""
        kyber_id = _lookup_id(kyber_pre_key_id)
        self._pop(self._kyber_pre_keys, kyber_id)
        for triple in [t for t in self._kyber_seen if t[0] == kyber_id]:
            self._pop(self._kyber_seen, triple)

    def remove_session(self, address: ProtocolAddress) -> None:
        """Delete the session record for ``address`` (absent: no-op)."""
        self._pop(self._sessions, _addr(address))

    def get_session_device_ids(self, name: str) -> list[int]:
        """Device ids with a stored session for ``name``, ascending."""
        return sorted(device for (n, device) in self._sessions if n == name)


if TYPE_CHECKING:

    def _conforms(store: InMemoryProtocolStore) -> ManagedProtocolStore:
        return store


class _Transaction:
    """The context manager of :meth:`InMemoryProtocolStore.transaction` (a plain class: it is
    entered twice per message, and a ``@contextmanager`` generator costs ~1.5 us more)."""

    __slots__ = ("_mark", "_store")

    def __init__(self, store: InMemoryProtocolStore) -> None:
        self._store = store
        self._mark = 0

    def __enter__(self) -> None:
        store = self._store
        self._mark = len(store._undo)
        store._depth += 1

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        store = self._store
        try:
            if exc_type is not None:
                store._rollback_to(self._mark)
        finally:
            store._depth -= 1
            if store._depth == 0:
                store._undo.clear()
