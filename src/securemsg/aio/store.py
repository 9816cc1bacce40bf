"""The async store interfaces, mirroring :mod:`securemsg.store.base` one coroutine per method.

Theory of operation
-------------------
An async store answers the same questions as a sync one (see :mod:`securemsg.store.base` for
each method's contract: missing prekeys raise ``InvalidPreKeyError``, other absent things are
``None``, failures of the medium are ``StorageError``, a method that raises changed nothing),
but every method is a coroutine, so a store backed by a disk, a database server or a keychain
can do its I/O without blocking the event loop.

Transactions are replaced by ONE coroutine, :meth:`AsyncProtocolStore.commit`: the async
recipes (:mod:`securemsg.aio.recipes`) await the loads they need, run the unchanged sync core
on in-memory copies, and hand every write of the operation (or of a whole batch) to ``commit``,
which applies them all in one transaction or none of them (compute, then commit). No
transaction is ever held open across an ``await``.

:class:`AsyncStoreAdapter` makes any sync :class:`~securemsg.store.base.ProtocolStore` whose
calls do not block (the in-memory store) an async one;
:class:`~securemsg.aio.sqlite.AsyncSqliteProtocolStore` is the durable one.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from securemsg.store.base import Direction
from securemsg.store.staging import StoreWrite, apply_writes

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
    "AsyncIdentityKeyStore",
    "AsyncKyberPreKeyStore",
    "AsyncPreKeyStore",
    "AsyncProtocolStore",
    "AsyncSenderKeyStore",
    "AsyncSessionStore",
    "AsyncSignedPreKeyStore",
    "AsyncStoreAdapter",
]

_T = TypeVar("_T")


class AsyncIdentityKeyStore(Protocol):
    """:class:`securemsg.store.base.IdentityKeyStore`, async."""

    async def get_identity_key_pair(self) -> IdentityKeyPair:
        """Our identity key pair."""
        ...

    async def get_local_registration_id(self) -> int:
        """Our registration id."""
        ...

    async def save_identity(self, address: ProtocolAddress, identity_key: IdentityKey) -> bool:
        """Trust ``identity_key`` for ``address``; True if it replaced a different key."""
        ...

    async def is_trusted_identity(
        self, address: ProtocolAddress, identity_key: IdentityKey, direction: Direction
    ) -> bool:
        """Whether ``identity_key`` may be used for ``address``."""
        ...

    async def get_identity(self, address: ProtocolAddress) -> IdentityKey | None:
        """The identity saved for ``address``, or None."""
        ...


class AsyncPreKeyStore(Protocol):
    """:class:`securemsg.store.base.PreKeyStore`, async."""

    async def get_pre_key(self, pre_key_id: int) -> PreKeyRecord:
        """The prekey; missing -> InvalidPreKeyError."""
        ...

    async def save_pre_key(self, pre_key_id: int, record: PreKeyRecord) -> None:
        """Store a one-time prekey."""
        ...

    async def remove_pre_key(self, pre_key_id: int) -> None:
        """Delete a one-time prekey (absent: no-op)."""
        ...


class AsyncSignedPreKeyStore(Protocol):
    """:class:`securemsg.store.base.SignedPreKeyStore`, async."""

    async def get_signed_pre_key(self, signed_pre_key_id: int) -> SignedPreKeyRecord:
        """The signed prekey; missing -> InvalidPreKeyError."""
        ...

    async def save_signed_pre_key(self, signed_pre_key_id: int, record: SignedPreKeyRecord) -> None:
        """Store a signed prekey."""
        ...


class AsyncKyberPreKeyStore(Protocol):
    """:class:`securemsg.store.base.KyberPreKeyStore`, async."""

    async def get_kyber_pre_key(self, kyber_pre_key_id: int) -> KyberPreKeyRecord:
        """The Kyber prekey; missing -> InvalidPreKeyError."""
        ...

    async def save_kyber_pre_key(
        self, kyber_pre_key_id: int, record: KyberPreKeyRecord, *, last_resort: bool = False
    ) -> None:
        """Store a one-time (default) or last-resort Kyber prekey."""
        ...

    async def mark_kyber_pre_key_used(
        self, kyber_pre_key_id: int, signed_pre_key_id: int, base_key: PublicKey
    ) -> None:
        """Consume a one-time key, or remember the triple of a last-resort key."""
        ...


class AsyncSessionStore(Protocol):
    """:class:`securemsg.store.base.SessionStore`, async."""

    async def load_session(self, address: ProtocolAddress) -> SessionRecord | None:
        """The session record for ``address``, or None."""
        ...

    async def store_session(self, address: ProtocolAddress, record: SessionRecord) -> None:
        """Store the session record for ``address``."""
        ...

    async def remove_session(self, address: ProtocolAddress) -> None:
        """Delete the session record for ``address``, if any."""
        ...

    async def get_session_device_ids(self, name: str) -> list[int]:
        """The device ids for which a session with ``name`` is stored, ascending."""
        ...


class AsyncSenderKeyStore(Protocol):
    """:class:`securemsg.store.base.SenderKeyStore`, async."""

    async def store_sender_key(
        self, sender: ProtocolAddress, distribution_id: uuid.UUID, record: SenderKeyRecord
    ) -> None:
        """Store the sender-key record for ``(sender, distribution_id)``."""
        ...

    async def load_sender_key(
        self, sender: ProtocolAddress, distribution_id: uuid.UUID
    ) -> SenderKeyRecord | None:
        """The sender-key record for ``(sender, distribution_id)``, or None."""
        ...


class AsyncProtocolStore(
    AsyncIdentityKeyStore,
    AsyncPreKeyStore,
    AsyncSignedPreKeyStore,
    AsyncKyberPreKeyStore,
    AsyncSessionStore,
    AsyncSenderKeyStore,
    Protocol,
):
    """Every async store concern, plus :meth:`commit`. This is what the async recipes take."""

    async def commit(self, writes: Sequence[StoreWrite]) -> None:
        """Apply ``writes`` in order, in ONE transaction: all of them durably, or none.

        ``writes`` are :class:`~securemsg.store.staging.StoreWrite` values (save an identity,
        store or remove a session, store a sender key, remove a prekey, mark a Kyber prekey
        used); each has an ``apply(sync_store)`` method, and
        :func:`~securemsg.store.staging.apply_writes` applies a sequence to a sync store inside
        its ``transaction()``.

        Raises:
            InvalidPreKeyError: a Kyber prekey use was refused (nothing was written).
            StorageError: the store failed (nothing was written).
        """
        ...


class AsyncStoreAdapter:
    """An :class:`AsyncProtocolStore` over a sync store whose calls never block (in memory).

    Every coroutine calls the sync method directly, on the event loop: use it for the
    in-memory store or a test double, never for a store that does I/O (use
    :class:`~securemsg.aio.sqlite.AsyncSqliteProtocolStore` for SQLite).
    """

    __slots__ = ("__weakref__", "store")

    def __init__(self, store: ProtocolStore) -> None:
        """Wrap ``store`` (kept as :attr:`store`)."""
        self.store = store

    def __repr__(self) -> str:
        return f"AsyncStoreAdapter({self.store!r})"

    async def get_identity_key_pair(self) -> IdentityKeyPair:
        """See :meth:`AsyncIdentityKeyStore.get_identity_key_pair`."""
        return await self._call(self.store.get_identity_key_pair)

    async def get_local_registration_id(self) -> int:
        """See :meth:`AsyncIdentityKeyStore.get_local_registration_id`."""
        return await self._call(self.store.get_local_registration_id)

    async def save_identity(self, address: ProtocolAddress, identity_key: IdentityKey) -> bool:
        """See :meth:`AsyncIdentityKeyStore.save_identity`."""
        return await self._call(self.store.save_identity, address, identity_key)

    async def is_trusted_identity(
        self, address: ProtocolAddress, identity_key: IdentityKey, direction: Direction
    ) -> bool:
        """See :meth:`AsyncIdentityKeyStore.is_trusted_identity`."""
        return await self._call(self.store.is_trusted_identity, address, identity_key, direction)

    async def get_identity(self, address: ProtocolAddress) -> IdentityKey | None:
        """See :meth:`AsyncIdentityKeyStore.get_identity`."""
        return await self._call(self.store.get_identity, address)

    async def get_pre_key(self, pre_key_id: int) -> PreKeyRecord:
        """See :meth:`AsyncPreKeyStore.get_pre_key`."""
        return await self._call(self.store.get_pre_key, pre_key_id)

    async def save_pre_key(self, pre_key_id: int, record: PreKeyRecord) -> None:
        """See :meth:`AsyncPreKeyStore.save_pre_key`."""
        await self._call(self.store.save_pre_key, pre_key_id, record)

    async def remove_pre_key(self, pre_key_id: int) -> None:
        """See :meth:`AsyncPreKeyStore.remove_pre_key`."""
        await self._call(self.store.remove_pre_key, pre_key_id)

    async def get_signed_pre_key(self, signed_pre_key_id: int) -> SignedPreKeyRecord:
        """See :meth:`AsyncSignedPreKeyStore.get_signed_pre_key`."""
        return await self._call(self.store.get_signed_pre_key, signed_pre_key_id)

    async def save_signed_pre_key(self, signed_pre_key_id: int, record: SignedPreKeyRecord) -> None:
        """See :meth:`AsyncSignedPreKeyStore.save_signed_pre_key`."""
        await self._call(self.store.save_signed_pre_key, signed_pre_key_id, record)

    async def get_kyber_pre_key(self, kyber_pre_key_id: int) -> KyberPreKeyRecord:
        """See :meth:`AsyncKyberPreKeyStore.get_kyber_pre_key`."""
        return await self._call(self.store.get_kyber_pre_key, kyber_pre_key_id)

    async def save_kyber_pre_key(
        self, kyber_pre_key_id: int, record: KyberPreKeyRecord, *, last_resort: bool = False
    ) -> None:
        """See :meth:`AsyncKyberPreKeyStore.save_kyber_pre_key`."""
        await self._call(
            self.store.save_kyber_pre_key, kyber_pre_key_id, record, last_resort=last_resort
        )

    async def mark_kyber_pre_key_used(
        self, kyber_pre_key_id: int, signed_pre_key_id: int, base_key: PublicKey
    ) -> None:
        """See :meth:`AsyncKyberPreKeyStore.mark_kyber_pre_key_used`."""
        await self._call(
            self.store.mark_kyber_pre_key_used, kyber_pre_key_id, signed_pre_key_id, base_key
        )

    async def load_session(self, address: ProtocolAddress) -> SessionRecord | None:
        """See :meth:`AsyncSessionStore.load_session`."""
        return await self._call(self.store.load_session, address)

    async def store_session(self, address: ProtocolAddress, record: SessionRecord) -> None:
        """See :meth:`AsyncSessionStore.store_session`."""
        await self._call(self.store.store_session, address, record)

    async def remove_session(self, address: ProtocolAddress) -> None:
        """See :meth:`AsyncSessionStore.remove_session`."""
        await self._call(self.store.remove_session, address)

    async def get_session_device_ids(self, name: str) -> list[int]:
        """See :meth:`AsyncSessionStore.get_session_device_ids`."""
        return await self._call(self.store.get_session_device_ids, name)

    async def store_sender_key(
        self, sender: ProtocolAddress, distribution_id: uuid.UUID, record: SenderKeyRecord
    ) -> None:
        """See :meth:`AsyncSenderKeyStore.store_sender_key`."""
        await self._call(self.store.store_sender_key, sender, distribution_id, record)

    async def load_sender_key(
        self, sender: ProtocolAddress, distribution_id: uuid.UUID
    ) -> SenderKeyRecord | None:
        """See :meth:`AsyncSenderKeyStore.load_sender_key`."""
        return await self._call(self.store.load_sender_key, sender, distribution_id)

    async def commit(self, writes: Sequence[StoreWrite]) -> None:
        """See :meth:`AsyncProtocolStore.commit`."""
        await self._call(apply_writes, self.store, writes)

    async def _call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run one sync store call (here directly; a subclass may run it elsewhere)."""
        return fn(*args, **kwargs)


if TYPE_CHECKING:

    def _conforms(store: AsyncStoreAdapter) -> AsyncProtocolStore:
        return store
