"""Group messaging recipes over a store: sender-key distribution, group encrypt/decrypt.

Theory of operation
-------------------
Each function is load -> pure core (:mod:`securemsg.protocol.sender_keys`) -> save, inside one
``store.transaction()``: the new record is computed first and written only when the operation
succeeded, so an error leaves the store unchanged. The store holds
:class:`~securemsg.protocol.sender_keys.SenderKeyRecord` values (immutable: a new record is
stored after each step, the loaded one is never modified), keyed by (sender address,
distribution id); for our own chain the "sender" is our own address. The memory store keeps
the objects, so a group message costs no record (de)serialization; the SQLite store keeps
bytes and a decoded copy of the newest record per key. libsignal vocabulary and semantics
(``group_cipher.rs``).
"""

from __future__ import annotations

import uuid

from securemsg.crypto.rng import Rng
from securemsg.errors import NoSessionError, StorageError, UsageError
from securemsg.limits import DEFAULT_LIMITS, Limits
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.sender_keys import (
    SenderKeyRecord,
    create_distribution,
    process_distribution,
    sender_key_decrypt,
    sender_key_encrypt,
)
from securemsg.store.base import ProtocolStore
from securemsg.wire.messages import SenderKeyDistributionMessage, SenderKeyMessage

__all__ = [
    "create_sender_key_distribution_message",
    "group_decrypt",
    "group_encrypt",
    "process_sender_key_distribution_message",
]


def _check(address: object, distribution_id: object | None = None) -> None:
    if not isinstance(address, ProtocolAddress):
        raise UsageError("address must be a ProtocolAddress")
    if distribution_id is not None and not isinstance(distribution_id, uuid.UUID):
        raise UsageError("distribution_id must be a uuid.UUID")


def _load(
    store: ProtocolStore, sender: ProtocolAddress, distribution_id: uuid.UUID
) -> SenderKeyRecord | None:
    record = store.load_sender_key(sender, distribution_id)
    if record is not None and not isinstance(record, SenderKeyRecord):
        raise StorageError("the store returned something other than a SenderKeyRecord")
    return record


def create_sender_key_distribution_message(
    sender: ProtocolAddress, distribution_id: uuid.UUID, store: ProtocolStore, *, rng: Rng
) -> SenderKeyDistributionMessage:
    """Our distribution message for ``distribution_id``; creates (and stores) our chain if
    there is none yet. ``sender`` is our own address.

    Raises:
        UsageError: bad argument types.
        StorageError: the stored record is corrupt or the store failed.
    """
    _check(sender, distribution_id)
    with store.transaction():
        record = _load(store, sender, distribution_id)
        message, new_record = create_distribution(record, distribution_id, rng)
        if new_record is not record:
            store.store_sender_key(sender, distribution_id, new_record)
    return message


def process_sender_key_distribution_message(
    sender: ProtocolAddress,
    message: SenderKeyDistributionMessage | bytes,
    store: ProtocolStore,
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> None:
    """Accept a member's distribution message (bytes are parsed first).

    Raises:
        DecodeError, UnsupportedVersionError, InvalidKeyError: malformed message bytes.
        StorageError: the stored record is corrupt or the store failed.
    """
    _check(sender)
    if not isinstance(message, SenderKeyDistributionMessage):
        message = SenderKeyDistributionMessage.from_bytes(message)
    with store.transaction():
        record = _load(store, sender, message.distribution_id)
        new_record = process_distribution(record, message, limits)
        store.store_sender_key(sender, message.distribution_id, new_record)


def group_encrypt(
    sender: ProtocolAddress,
    distribution_id: uuid.UUID,
    plaintext: bytes,
    store: ProtocolStore,
    *,
    rng: Rng,
) -> SenderKeyMessage:
    """Encrypt for the group with our chain (``sender`` is our own address).

    Raises:
        NoSessionError: no chain of ours for that distribution id (create a distribution
            message first).
        StorageError: corrupt record or store failure.
    """
    _check(sender, distribution_id)
    with store.transaction():
        record = _load(store, sender, distribution_id)
        if record is None:
            raise NoSessionError("no sender key state for this distribution id")
        message, new_record = sender_key_encrypt(record, distribution_id, plaintext, rng)
        store.store_sender_key(sender, distribution_id, new_record)
    return message


def group_decrypt(
    message: bytes | SenderKeyMessage,
    sender: ProtocolAddress,
    store: ProtocolStore,
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> bytes:
    """Decrypt a group message from ``sender``; the store changes only on success.

    Raises:
        DecodeError, UnsupportedVersionError: malformed message.
        NoSessionError: no chain from that sender for the message's distribution/chain id.
        InvalidSignatureError: signed by another key.
        DuplicateMessageError, MessageGapTooLargeError, InvalidMessageError: see
            :func:`~securemsg.protocol.sender_keys.sender_key_decrypt`.
        StorageError: corrupt record or store failure.
    """
    _check(sender)
    if not isinstance(message, SenderKeyMessage):
        message = SenderKeyMessage.from_bytes(message)
    with store.transaction():
        record = _load(store, sender, message.distribution_id)
        if record is None:
            raise NoSessionError("no sender key state for this distribution id")
        plaintext, new_record = sender_key_decrypt(record, message, limits)
        store.store_sender_key(sender, message.distribution_id, new_record)
    return plaintext
