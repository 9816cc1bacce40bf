"""A staging store: run the unchanged sync recipes against in-memory copies, commit once (internal).

Theory of operation
-------------------
:class:`StagingStore` implements :class:`~securemsg.store.base.ProtocolStore` for the length of
one operation or one batch. Reads come from a *source*: a sync store (read through, then
cached), or, with no source, only what was handed in with :meth:`StagingStore.provide` (the
async recipes load that from an async store); a read of something not provided raises
:class:`NotLoaded`, which the async adapter answers by loading it and running the recipe again.
Writes never reach the source: they are kept in an overlay that later reads see, and
:meth:`StagingStore.writes` hands them out as :data:`StoreWrite` values, coalesced (the last
session per address, ...), to be applied in ONE transaction of the real store
(:func:`apply_writes`, or an async store's ``commit``).

Per-message isolation in a batch: :meth:`StagingStore.checkpoint` and
:meth:`StagingStore.rollback` undo the overlay writes of one failed message, so the next
message is computed against the state the previous successful ones produced.
``transaction()`` is the same undo, as a context manager (the recipes use it).

Consumed prekeys: a removed one-time prekey is gone for the rest of the batch; a Kyber prekey
marked used twice with the same (Kyber id, signed id, base key) triple is refused in the batch.
Whether a Kyber prekey is one-time or last-resort is known only to the real store, so a
one-time Kyber key used by two messages of one batch is refused at commit time
(:class:`~securemsg.errors.InvalidPreKeyError` from the commit): the batch recipes then fall
back to one transaction per message.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from securemsg.errors import InvalidPreKeyError, UsageError
from securemsg.store.base import Direction, _check_sender_key_args

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
    from securemsg.store.base import ProtocolStore

__all__ = [
    "MarkKyberPreKeyUsed",
    "NotLoaded",
    "RemovePreKey",
    "RemoveSession",
    "SaveIdentity",
    "StagingStore",
    "StoreSenderKey",
    "StoreSession",
    "StoreWrite",
    "apply_writes",
]


# -- the writes an operation commits ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SaveIdentity:
    """``save_identity(address, identity_key)``."""

    address: ProtocolAddress
    identity_key: IdentityKey

    def apply(self, store: ProtocolStore) -> None:
        """Apply this write to a sync store."""
        store.save_identity(self.address, self.identity_key)


@dataclass(frozen=True, slots=True)
class StoreSession:
    """``store_session(address, record)``."""

    address: ProtocolAddress
    record: SessionRecord

    def apply(self, store: ProtocolStore) -> None:
        """Apply this write to a sync store."""
        store.store_session(self.address, self.record)


@dataclass(frozen=True, slots=True)
class StoreSenderKey:
    """``store_sender_key(sender, distribution_id, record)``."""

    sender: ProtocolAddress
    distribution_id: uuid.UUID
    record: SenderKeyRecord

    def apply(self, store: ProtocolStore) -> None:
        """Apply this write to a sync store."""
        store.store_sender_key(self.sender, self.distribution_id, self.record)


@dataclass(frozen=True, slots=True)
class RemovePreKey:
    """``remove_pre_key(pre_key_id)`` (a one-time prekey a PreKey message consumed)."""

    pre_key_id: int

    def apply(self, store: ProtocolStore) -> None:
        """Apply this write to a sync store."""
        store.remove_pre_key(self.pre_key_id)


@dataclass(frozen=True, slots=True)
class MarkKyberPreKeyUsed:
    """``mark_kyber_pre_key_used(kyber_pre_key_id, signed_pre_key_id, base_key)``.

    May be refused by the real store (a one-time key already used, or a replayed triple of a
    last-resort key): :class:`~securemsg.errors.InvalidPreKeyError`, and the whole commit is
    undone.
    """

    kyber_pre_key_id: int
    signed_pre_key_id: int
    base_key: PublicKey

    def apply(self, store: ProtocolStore) -> None:
        """Apply this write to a sync store."""
        store.mark_kyber_pre_key_used(self.kyber_pre_key_id, self.signed_pre_key_id, self.base_key)


@dataclass(frozen=True, slots=True)
class RemoveSession:
    """``remove_session(address)``."""

    address: ProtocolAddress

    def apply(self, store: ProtocolStore) -> None:
        """Apply this write to a sync store."""
        store.remove_session(self.address)


#: One write of a staged operation; :func:`apply_writes` applies a sequence in one transaction.
StoreWrite = (
    SaveIdentity
    | StoreSession
    | RemoveSession
    | StoreSenderKey
    | RemovePreKey
    | MarkKyberPreKeyUsed
)


def apply_writes(store: ProtocolStore, writes: Sequence[StoreWrite]) -> None:
    """Apply ``writes`` to a sync store in ONE ``store.transaction()``: all or nothing.

    Raises:
        InvalidPreKeyError: the store refused a Kyber prekey use (nothing was written).
        StorageError: the store failed (nothing was written).
    """
    if not writes:
        return
    with store.transaction():
        for write in writes:
            write.apply(store)


# -- the staging store ---------------------------------------------------------------------------


class NotLoaded(BaseException):
    """A staging store without a source was asked for something not provided (internal).

    A ``BaseException``, so that no ``except Exception`` in a recipe can swallow it. ``kind``
    names the read (``"session"``, ``"identity"``, ``"trust"``, ``"pre_key"``,
    ``"signed_pre_key"``, ``"kyber_pre_key"``, ``"sender_key"``, ``"identity_key_pair"``,
    ``"registration_id"``, ``"session_device_ids"``) and ``args`` are the arguments of the
    matching store method.
    """

    def __init__(self, kind: str, args: tuple[Any, ...]) -> None:
        super().__init__(kind)
        self.kind = kind
        self.args_ = args


_ABSENT: Final = object()
_NO_SOURCE: Final = "no source"


def _addr(address: ProtocolAddress) -> tuple[str, int]:
    return (address.name, address.device_id)


class StagingStore:
    """A :class:`~securemsg.store.base.ProtocolStore` whose writes wait for one commit (internal).

    Args:
        source: the sync store to read through, or None to read only what :meth:`provide` gave.
    """

    __slots__ = (
        "_cache",
        "_ikp",
        "_marks",
        "_overlay",
        "_reg_id",
        "_removed",
        "_source",
        "_undo",
    )

    def __init__(self, source: ProtocolStore | None = None) -> None:
        self._source = source
        self._ikp: IdentityKeyPair | None = None
        self._reg_id: int | None = None
        # What the source said, per (kind, key); a prekey the source does not hold is None.
        self._cache: dict[tuple[str, Any], Any] = {}
        # Staged writes: ("identity"|"session"|"sender_key", key) -> the write; the last
        # identity staged for an account also under ("account_identity", name).
        self._overlay: dict[tuple[str, Any], StoreWrite] = {}
        self._removed: dict[int, None] = {}
        self._marks: list[MarkKyberPreKeyUsed] = []
        # Undo log: (overlay key, previous write or _ABSENT) / ("removed", id) / ("mark", None).
        self._undo: list[tuple[Any, Any]] = []

    # -- staging control --------------------------------------------------------------------

    def checkpoint(self) -> int:
        """A mark to :meth:`rollback` to."""
        return len(self._undo)

    def rollback(self, mark: int) -> None:
        """Undo every staged write made after ``mark``."""
        undo = self._undo
        while len(undo) > mark:
            key, previous = undo.pop()
            if key == "removed":
                del self._removed[previous]
            elif key == "mark":
                self._marks.pop()
            elif previous is _ABSENT:
                del self._overlay[key]
            else:
                self._overlay[key] = previous

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Writes inside the block are undone if it raises (they commit later, with the batch)."""
        mark = len(self._undo)
        try:
            yield
        except BaseException:
            self.rollback(mark)
            raise

    def provide(self, kind: str, args: tuple[Any, ...], value: Any) -> None:
        """Hand in the answer of the read a :class:`NotLoaded` asked for."""
        if kind == "identity_key_pair":
            self._ikp = value
        elif kind == "registration_id":
            self._reg_id = value
        else:
            self._cache[(kind, self._key(kind, args))] = value

    def writes(self) -> list[StoreWrite]:
        """The staged writes, coalesced, in the order they are applied.

        Kyber prekey uses first (the only writes a store may refuse), then consumed one-time
        prekeys, identities, sessions and sender keys.
        """
        out: list[StoreWrite] = list(self._marks)
        out.extend(RemovePreKey(i) for i in self._removed)
        for kind in ("identity", "session", "sender_key"):
            out.extend(w for (k, _), w in self._overlay.items() if k == kind)
        return out

    @property
    def dirty(self) -> bool:
        """True if anything is staged."""
        return bool(self._undo)

    @staticmethod
    def _key(kind: str, args: tuple[Any, ...]) -> Any:
        if kind in ("session", "identity"):
            return _addr(args[0])
        if kind == "trust":
            address, identity_key, direction = args
            return (*_addr(address), identity_key.to_bytes(), direction)
        if kind == "sender_key":
            return (*_addr(args[0]), args[1].bytes)
        return args[0]

    def _read(self, kind: str, args: tuple[Any, ...]) -> Any:
        key = (kind, self._key(kind, args))
        cache = self._cache
        if key in cache:
            return cache[key]
        source = self._source
        if source is None:
            raise NotLoaded(kind, args)
        value: Any
        if kind == "session":
            value = source.load_session(*args)
        elif kind == "identity":
            value = source.get_identity(*args)
        elif kind == "trust":
            value = source.is_trusted_identity(*args)
        elif kind == "sender_key":
            value = source.load_sender_key(*args)
        elif kind == "session_device_ids":
            value = source.get_session_device_ids(*args)
        else:
            getter = {
                "pre_key": source.get_pre_key,
                "signed_pre_key": source.get_signed_pre_key,
                "kyber_pre_key": source.get_kyber_pre_key,
            }[kind]
            try:
                value = getter(*args)
            except InvalidPreKeyError:
                value = None
        cache[key] = value
        return value

    def _stage(self, key: tuple[str, Any], write: StoreWrite) -> None:
        overlay = self._overlay
        self._undo.append((key, overlay.get(key, _ABSENT)))
        overlay[key] = write

    # -- IdentityKeyStore -----------------------------------------------------------------

    def get_identity_key_pair(self) -> IdentityKeyPair:
        """Our identity key pair."""
        if self._ikp is None:
            if self._source is None:
                raise NotLoaded("identity_key_pair", ())
            self._ikp = self._source.get_identity_key_pair()
        return self._ikp

    def get_local_registration_id(self) -> int:
        """Our registration id."""
        if self._reg_id is None:
            if self._source is None:
                raise NotLoaded("registration_id", ())
            self._reg_id = self._source.get_local_registration_id()
        return self._reg_id

    def save_identity(self, address: ProtocolAddress, identity_key: IdentityKey) -> bool:
        """Stage saving ``identity_key`` for ``address``; True if it replaces a different key."""
        previous = self.get_identity(address)
        write = SaveIdentity(address, identity_key)
        self._stage(("identity", _addr(address)), write)
        # Also under the account, for is_trusted_identity (writes() does not emit this kind).
        self._stage(("account_identity", address.name), write)
        return previous is not None and previous != identity_key

    def is_trusted_identity(
        self, address: ProtocolAddress, identity_key: IdentityKey, direction: Direction
    ) -> bool:
        """The source's answer; for an account with an identity staged in this batch (on any
        of its devices), that key only (trust is per account, as in the stores)."""
        staged = self._overlay.get(("account_identity", address.name))
        if staged is not None:
            assert isinstance(staged, SaveIdentity)
            return bool(staged.identity_key == identity_key)
        return bool(self._read("trust", (address, identity_key, direction)))

    def get_identity(self, address: ProtocolAddress) -> IdentityKey | None:
        """The identity saved (or staged) for ``address``."""
        staged = self._overlay.get(("identity", _addr(address)))
        if staged is not None:
            assert isinstance(staged, SaveIdentity)
            return staged.identity_key
        value: IdentityKey | None = self._read("identity", (address,))
        return value

    # -- prekeys ----------------------------------------------------------------------------

    def get_pre_key(self, pre_key_id: int) -> PreKeyRecord:
        """The one-time prekey; consumed in this batch or missing -> InvalidPreKeyError."""
        if pre_key_id in self._removed:
            raise InvalidPreKeyError("no prekey with that id")
        value: PreKeyRecord | None = self._read("pre_key", (pre_key_id,))
        if value is None:
            raise InvalidPreKeyError("no prekey with that id")
        return value

    def save_pre_key(self, pre_key_id: int, record: PreKeyRecord) -> None:
        """Not available while staging (no recipe saves prekeys)."""
        raise UsageError("saving prekeys is not part of a staged operation")

    def remove_pre_key(self, pre_key_id: int) -> None:
        """Stage removing a one-time prekey."""
        if isinstance(pre_key_id, int) and pre_key_id not in self._removed:
            self._removed[pre_key_id] = None
            self._undo.append(("removed", pre_key_id))

    def get_signed_pre_key(self, signed_pre_key_id: int) -> SignedPreKeyRecord:
        """The signed prekey; missing -> InvalidPreKeyError."""
        value: SignedPreKeyRecord | None = self._read("signed_pre_key", (signed_pre_key_id,))
        if value is None:
            raise InvalidPreKeyError("no signed prekey with that id")
        return value

    def save_signed_pre_key(self, signed_pre_key_id: int, record: SignedPreKeyRecord) -> None:
        """Not available while staging (no recipe saves prekeys)."""
        raise UsageError("saving prekeys is not part of a staged operation")

    def get_kyber_pre_key(self, kyber_pre_key_id: int) -> KyberPreKeyRecord:
        """The Kyber prekey; missing -> InvalidPreKeyError."""
        value: KyberPreKeyRecord | None = self._read("kyber_pre_key", (kyber_pre_key_id,))
        if value is None:
            raise InvalidPreKeyError("no Kyber prekey with that id")
        return value

    def save_kyber_pre_key(
        self, kyber_pre_key_id: int, record: KyberPreKeyRecord, *, last_resort: bool = False
    ) -> None:
        """Not available while staging (no recipe saves prekeys)."""
        raise UsageError("saving prekeys is not part of a staged operation")

    def mark_kyber_pre_key_used(
        self, kyber_pre_key_id: int, signed_pre_key_id: int, base_key: PublicKey
    ) -> None:
        """Stage the use; the same triple twice in one batch -> InvalidPreKeyError."""
        self.get_kyber_pre_key(kyber_pre_key_id)
        mark = MarkKyberPreKeyUsed(kyber_pre_key_id, signed_pre_key_id, base_key)
        raw = bytes(base_key.raw)
        for m in self._marks:
            if (
                m.kyber_pre_key_id == kyber_pre_key_id
                and m.signed_pre_key_id == signed_pre_key_id
                and bytes(m.base_key.raw) == raw
            ):
                raise InvalidPreKeyError("Kyber prekey replayed with the same base key")
        self._marks.append(mark)
        self._undo.append(("mark", None))

    # -- sessions and sender keys ---------------------------------------------------------------

    def load_session(self, address: ProtocolAddress) -> SessionRecord | None:
        """The staged session for ``address``, else the source's."""
        staged = self._overlay.get(("session", _addr(address)))
        if staged is not None:
            if isinstance(staged, RemoveSession):
                return None
            assert isinstance(staged, StoreSession)
            return staged.record
        value: SessionRecord | None = self._read("session", (address,))
        return value

    def store_session(self, address: ProtocolAddress, record: SessionRecord) -> None:
        """Stage the session record for ``address``."""
        self._stage(("session", _addr(address)), StoreSession(address, record))

    def remove_session(self, address: ProtocolAddress) -> None:
        """Stage the removal of the session record for ``address``."""
        self._stage(("session", _addr(address)), RemoveSession(address))

    def get_session_device_ids(self, name: str) -> list[int]:
        """The source's device ids for ``name``, with the staged stores and removals applied."""
        ids = set(self._read("session_device_ids", (name,)))
        for (kind, key), write in self._overlay.items():
            if kind == "session" and key[0] == name:
                if isinstance(write, RemoveSession):
                    ids.discard(key[1])
                else:
                    ids.add(key[1])
        return sorted(ids)

    def store_sender_key(
        self, sender: ProtocolAddress, distribution_id: uuid.UUID, record: SenderKeyRecord
    ) -> None:
        """Stage the sender-key record for ``(sender, distribution_id)``."""
        _check_sender_key_args(distribution_id, record)
        key = ("sender_key", (*_addr(sender), distribution_id.bytes))
        self._stage(key, StoreSenderKey(sender, distribution_id, record))

    def load_sender_key(
        self, sender: ProtocolAddress, distribution_id: uuid.UUID
    ) -> SenderKeyRecord | None:
        """The staged sender-key record, else the source's."""
        _check_sender_key_args(distribution_id)
        staged = self._overlay.get(("sender_key", (*_addr(sender), distribution_id.bytes)))
        if staged is not None:
            assert isinstance(staged, StoreSenderKey)
            return staged.record
        value: SenderKeyRecord | None = self._read("sender_key", (sender, distribution_id))
        return value


if TYPE_CHECKING:

    def _conforms(store: StagingStore) -> ProtocolStore:
        return store
