"""The store interfaces: what the protocol needs to remember, one ``typing.Protocol`` per concern.

Theory of operation
-------------------
The protocol core is pure: it never reads or writes state by itself. ``cipher.py`` loads what a
step needs from a store, runs the pure core, and saves the result. This module says what a store
must do for that to be safe; :mod:`securemsg.store.memory` and :mod:`securemsg.store.sqlite` are
the two implementations shipped with the library, and an application may bring its own.

The concerns (after libsignal ``rust/protocol/src/storage/traits.rs``):

* :class:`IdentityKeyStore` -- our own identity key pair and registration id, and the identity
  keys of everybody we talk to, trusted on first use (TOFU).
* :class:`PreKeyStore`, :class:`SignedPreKeyStore`, :class:`KyberPreKeyStore` -- our private
  prekeys, looked up by id when a PreKey message arrives. Kyber prekeys come in two kinds:
  *one-time* keys (deleted when used) and *last-resort* keys (reused; the store rejects a replay
  of the same (Kyber id, signed prekey id, base key) triple).
* :class:`SessionStore` -- one :class:`~securemsg.protocol.session_record.SessionRecord` per
  remote (name, device id); sessions can be removed and listed per name.
* :class:`SenderKeyStore` -- one :class:`~securemsg.protocol.sender_keys.SenderKeyRecord` per
  (sender, distribution id), for groups.
* :class:`ProtocolStore` -- all of the above plus :meth:`ProtocolStore.transaction`, which makes
  everything written inside it commit atomically or not at all.

:class:`PreKeyInventory` is an optional extra (prekey ids, counts, removal) that the client SDK
uses to keep the server's prekey supply topped up; both shipped stores implement it, and
:class:`ManagedProtocolStore` names the combination.

Contracts every implementation keeps
------------------------------------
* **Records are values.** Protocol code never mutates a record it got from a store or handed
  to one; it builds a new record and stores that (compute, then commit). An implementation may
  therefore keep the very objects it was given (the in-memory store does) or their serialized
  bytes (the SQLite store does).
* **Missing prekeys** raise :class:`~securemsg.errors.InvalidPreKeyError` (the peer named a key
  we do not have); every other lookup returns ``None`` for "absent".
* **Failures** of the medium (I/O, locking, a stored record that no longer decodes) raise
  :class:`~securemsg.errors.StorageError`, never a peer error: corrupt local state is not the
  peer's fault.
* **Atomicity.** A method that raises has changed nothing. Inside :meth:`ProtocolStore.transaction`,
  an exception that leaves the ``with`` block undoes everything written in that block.
* Stores are **not thread-safe**: use one from one thread (the async client does), and never
  ``await`` inside a transaction.
"""

from __future__ import annotations

import enum
import uuid
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Protocol

from securemsg.errors import UsageError
from securemsg.limits import REGISTRATION_ID_MASK

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

__all__ = [
    "Direction",
    "IdentityKeyStore",
    "KyberPreKeyStore",
    "ManagedProtocolStore",
    "PreKeyInventory",
    "PreKeyStore",
    "ProtocolStore",
    "SenderKeyStore",
    "SessionStore",
    "SignedPreKeyStore",
]


class Direction(enum.Enum):
    """Which side of a message we are on when asking whether an identity is trusted."""

    #: We are about to encrypt to the address.
    SENDING = 0
    #: We have received a message from the address.
    RECEIVING = 1


class IdentityKeyStore(Protocol):
    """Our identity, and the remembered identities of remote addresses.

    Identities are kept per :class:`~securemsg.protocol.address.ProtocolAddress` (name and device
    id), but trusted per *account* (name): every device of an account holds the account's one
    identity key. Trust is *trust on first use*: an account we have never seen is trusted, and
    from then on only the key first saved for it is, on every device id of that account (also
    one never seen before), until the application saves a different one (after the user
    compared safety numbers), which then becomes the key of the whole account. (Trusting a new
    device id on first use with any key would let whoever announces devices, such as a relay,
    add a device of its own to a contact.)

    How :mod:`securemsg.cipher` uses it: for every message it asks :meth:`is_trusted_identity`
    (the place for an application's own policy). A new session saves the identity in the same
    transaction as the session; a message on an existing session calls :meth:`save_identity`
    (again in one transaction with the session) only if :meth:`get_identity` does not already
    return that key.
    """

    def get_identity_key_pair(self) -> IdentityKeyPair:
        """Return our own identity key pair (the one the store was created with).

        Raises:
            StorageError: the stored key pair cannot be read or does not decode.
        """
        ...

    def get_local_registration_id(self) -> int:
        """Return our registration id (14 bits), fixed for the lifetime of the store.

        Raises:
            StorageError: the store cannot be read.
        """
        ...

    def save_identity(self, address: ProtocolAddress, identity_key: IdentityKey) -> bool:
        """Remember ``identity_key`` as the trusted identity of ``address`` and of every other
        device of its account (``address.name``).

        Returns:
            True if this replaced a *different* key already saved for the account; False if the
            account was new or the same key was saved again.

        Raises:
            StorageError: the store failed; nothing was saved.
        """
        ...

    def is_trusted_identity(
        self, address: ProtocolAddress, identity_key: IdentityKey, direction: Direction
    ) -> bool:
        """Say whether ``identity_key`` may be used for ``address`` (trust on first use).

        Returns True if no identity is known for the account (``address.name``, any device) or
        every known one equals ``identity_key``; False if a different key is known for any
        device of the account. ``direction`` lets an application
        apply a stricter rule to one side (e.g. refuse to send until the user confirmed a
        change); the shipped stores treat both directions alike. Saves nothing.

        Raises:
            StorageError: the store failed.
        """
        ...

    def get_identity(self, address: ProtocolAddress) -> IdentityKey | None:
        """Return the identity key saved for ``address``, or None if there is none.

        Raises:
            StorageError: the store failed or the saved key does not decode.
        """
        ...


class PreKeyStore(Protocol):
    """Our one-time Curve25519 prekeys, by id. A prekey is removed once a session used it."""

    def get_pre_key(self, pre_key_id: int) -> PreKeyRecord:
        """Return the prekey with this id.

        Raises:
            InvalidPreKeyError: there is no such prekey (never had it, or already used).
            StorageError: the store failed or the record does not decode.
        """
        ...

    def save_pre_key(self, pre_key_id: int, record: PreKeyRecord) -> None:
        """Store ``record`` under ``pre_key_id``, replacing any record with that id.

        Raises:
            UsageError: ``pre_key_id`` is not an unsigned 32-bit integer.
            StorageError: the store failed; nothing was saved.
        """
        ...

    def remove_pre_key(self, pre_key_id: int) -> None:
        """Delete the prekey with this id. Removing an absent id does nothing.

        Raises:
            StorageError: the store failed; nothing was removed.
        """
        ...


class SignedPreKeyStore(Protocol):
    """Our signed Curve25519 prekeys, by id. They are rotated by the client, never consumed."""

    def get_signed_pre_key(self, signed_pre_key_id: int) -> SignedPreKeyRecord:
        """Return the signed prekey with this id.

        Raises:
            InvalidPreKeyError: there is no such signed prekey.
            StorageError: the store failed or the record does not decode.
        """
        ...

    def save_signed_pre_key(self, signed_pre_key_id: int, record: SignedPreKeyRecord) -> None:
        """Store ``record`` under ``signed_pre_key_id``, replacing any record with that id.

        Raises:
            UsageError: the id is not an unsigned 32-bit integer.
            StorageError: the store failed; nothing was saved.
        """
        ...


class KyberPreKeyStore(Protocol):
    """Our signed Kyber1024 prekeys, by id: one-time keys and last-resort keys.

    A *one-time* Kyber prekey is deleted as soon as a PreKey message used it. A *last-resort*
    key stays (it is what the server hands out when the one-time supply ran dry), so the same
    key may legitimately start many sessions; what must not happen twice is the same
    (Kyber prekey id, signed prekey id, base key) triple, which would be a replayed PreKey
    message. The store remembers every triple used with a last-resort key and refuses a repeat.
    """

    def get_kyber_pre_key(self, kyber_pre_key_id: int) -> KyberPreKeyRecord:
        """Return the Kyber prekey with this id (one-time or last-resort).

        Raises:
            InvalidPreKeyError: there is no such Kyber prekey (never had it, or a one-time key
                that was already used).
            StorageError: the store failed or the record does not decode.
        """
        ...

    def save_kyber_pre_key(
        self, kyber_pre_key_id: int, record: KyberPreKeyRecord, *, last_resort: bool = False
    ) -> None:
        """Store ``record`` under ``kyber_pre_key_id``, replacing any record with that id.

        Args:
            kyber_pre_key_id: the id the server publishes with the key.
            record: the key pair, timestamp and signature.
            last_resort: True for a last-resort key (kept after use), False for a one-time key.

        Raises:
            UsageError: the id is not an unsigned 32-bit integer.
            StorageError: the store failed; nothing was saved.
        """
        ...

    def mark_kyber_pre_key_used(
        self, kyber_pre_key_id: int, signed_pre_key_id: int, base_key: PublicKey
    ) -> None:
        """Record that a PreKey message used this Kyber prekey with this signed prekey and base key.

        A one-time key is deleted. A last-resort key is kept, and the triple
        ``(kyber_pre_key_id, signed_pre_key_id, base_key)`` is remembered; seeing the same
        triple again raises. Call it in the same transaction that stores the new session.

        Raises:
            InvalidPreKeyError: no such Kyber prekey, or the triple was already used with this
                last-resort key (a replayed PreKey message). Nothing changes.
            StorageError: the store failed; nothing changes.
        """
        ...


class SessionStore(Protocol):
    """One session record per remote (name, device id).

    Records are values: protocol code builds a new record and stores it rather than mutating
    the one it loaded, so a store may hand out the object it holds.
    """

    def load_session(self, address: ProtocolAddress) -> SessionRecord | None:
        """Return the session record for ``address``, or None if there is none.

        Raises:
            StorageError: the store failed or the stored record does not decode.
        """
        ...

    def store_session(self, address: ProtocolAddress, record: SessionRecord) -> None:
        """Store ``record`` as the session record for ``address``, replacing any previous one.

        Raises:
            StorageError: the store failed; the previous record is unchanged.
        """
        ...

    def remove_session(self, address: ProtocolAddress) -> None:
        """Delete the session record for ``address``, if any.

        Raises:
            StorageError: the store failed; nothing was removed.
        """
        ...

    def get_session_device_ids(self, name: str) -> list[int]:
        """Return the device ids for which a session with ``name`` is stored, ascending.

        Raises:
            StorageError: the store failed.
        """
        ...


class SenderKeyStore(Protocol):
    """Group sender-key records, one per (sender address, distribution id).

    Records are :class:`~securemsg.protocol.sender_keys.SenderKeyRecord` values, as sessions
    are: the group recipes build a new record and store it rather than mutating the one they
    loaded, so a store may hand out the object it holds (the memory store does; the SQLite
    store keeps ``to_bytes()`` and decodes on load).
    """

    def store_sender_key(
        self, sender: ProtocolAddress, distribution_id: uuid.UUID, record: SenderKeyRecord
    ) -> None:
        """Store ``record`` for ``(sender, distribution_id)``, replacing any previous one.

        Raises:
            UsageError: ``record`` is not a SenderKeyRecord or ``distribution_id`` is not a UUID.
            StorageError: the store failed; the previous record is unchanged.
        """
        ...

    def load_sender_key(
        self, sender: ProtocolAddress, distribution_id: uuid.UUID
    ) -> SenderKeyRecord | None:
        """Return the record for ``(sender, distribution_id)``, or None if there is none.

        Raises:
            UsageError: ``distribution_id`` is not a UUID.
            StorageError: the store failed or the stored record does not decode.
        """
        ...


class ProtocolStore(
    IdentityKeyStore,
    PreKeyStore,
    SignedPreKeyStore,
    KyberPreKeyStore,
    SessionStore,
    SenderKeyStore,
    Protocol,
):
    """Every store concern, plus atomic transactions. This is what ``cipher.py`` takes."""

    def transaction(self) -> AbstractContextManager[None]:
        """Group writes so that they commit together or not at all.

        Use as ``with store.transaction(): ...``. If the block exits with an exception, every
        write made inside it is undone and the exception propagates; otherwise the writes are
        committed (durably, for a persistent store) when the outermost block exits. A nested
        ``transaction()`` joins the enclosing one: its writes commit only with the outer block,
        and an exception escaping the inner block undoes just the inner block's writes.
        Reads inside the block see the block's own writes.

        Raises:
            StorageError: beginning or committing failed; nothing from the block was kept.
        """
        ...


class PreKeyInventory(Protocol):
    """Listing, counting and removing our prekeys: what a client needs to refill the server.

    Optional for a store passed to ``cipher.py``; implemented by both shipped stores.
    Ids are returned in ascending order.
    """

    def get_pre_key_ids(self) -> list[int]:
        """Return the ids of all stored one-time prekeys.

        Raises:
            StorageError: the store failed.
        """
        ...

    def count_pre_keys(self) -> int:
        """Return how many one-time prekeys are stored.

        Raises:
            StorageError: the store failed.
        """
        ...

    def get_signed_pre_key_ids(self) -> list[int]:
        """Return the ids of all stored signed prekeys.

        Raises:
            StorageError: the store failed.
        """
        ...

    def remove_signed_pre_key(self, signed_pre_key_id: int) -> None:
        """Delete a signed prekey (after rotation). Removing an absent id does nothing.

        Raises:
            StorageError: the store failed; nothing was removed.
        """
        ...

    def get_kyber_pre_key_ids(self, *, last_resort: bool | None = None) -> list[int]:
        """Return the ids of stored Kyber prekeys.

        Args:
            last_resort: None for all, True for last-resort keys only, False for one-time only.

        Raises:
            StorageError: the store failed.
        """
        ...

    def count_kyber_pre_keys(self, *, last_resort: bool | None = None) -> int:
        """Return how many Kyber prekeys are stored (filtered as in :meth:`get_kyber_pre_key_ids`).

        Raises:
            StorageError: the store failed.
        """
        ...

    def is_last_resort_kyber_pre_key(self, kyber_pre_key_id: int) -> bool:
        """Say whether the stored Kyber prekey with this id is a last-resort key.

        Raises:
            InvalidPreKeyError: there is no such Kyber prekey.
            StorageError: the store failed.
        """
        ...

    def remove_kyber_pre_key(self, kyber_pre_key_id: int) -> None:
        """Delete a Kyber prekey and forget the triples used with it. Absent id: no-op.

        Raises:
            StorageError: the store failed; nothing was removed.
        """
        ...


class ManagedProtocolStore(ProtocolStore, PreKeyInventory, Protocol):
    """A :class:`ProtocolStore` that also offers the :class:`PreKeyInventory` (for the client)."""


_U32_MAX = 0xFFFF_FFFF


def _check_key_id(value: int, what: str) -> int:
    """Return ``value`` if it is an unsigned 32-bit integer, else raise UsageError (internal)."""
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _U32_MAX:
        raise UsageError(what + " must be an int in 0..2**32-1")
    return int(value)


def _lookup_id(value: object) -> int:
    """``value`` if it is a u32 key id, else -1: an id no store holds, so lookups say "absent"."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _U32_MAX:
        return int(value)
    return -1


def _check_registration_id(value: int) -> int:
    """Return ``value`` if it is a 14-bit registration id, else raise UsageError (internal)."""
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not 0 <= value <= REGISTRATION_ID_MASK
    ):
        raise UsageError("registration_id must be an int in 0..0x3FFF")
    return int(value)


_record_types: dict[str, type] = {}


def _sender_key_record_type() -> type:
    """The SenderKeyRecord class, imported on first use (base.py imports no protocol code)."""
    cls = _record_types.get("sender_key")
    if cls is None:
        from securemsg.protocol.sender_keys import SenderKeyRecord

        cls = _record_types["sender_key"] = SenderKeyRecord
    return cls


def _check_sender_key_args(distribution_id: uuid.UUID, record: object = None) -> None:
    """Raise UsageError unless ``distribution_id`` is a UUID and ``record`` (when given) a
    SenderKeyRecord (internal)."""
    if type(distribution_id) is not uuid.UUID and not isinstance(distribution_id, uuid.UUID):
        raise UsageError("distribution_id must be a uuid.UUID")
    if record is not None and not isinstance(record, _sender_key_record_type()):
        raise UsageError("sender key record must be a SenderKeyRecord")
