"""Sender keys: one symmetric chain per group member, signed messages, out-of-order delivery.

Theory of operation
-------------------
A member who wants to talk in a group (identified by a *distribution id*) creates a chain:
a 31-bit ``chain_id``, a random 32-byte chain key at iteration 0 and a fresh signing key pair.
The :class:`~securemsg.wire.messages.SenderKeyDistributionMessage` (sent to each member over
1:1 sessions) hands out the chain key, its iteration and the public signing key.

Per message (libsignal ``rust/protocol/src/sender_keys.rs``)::

    seed      = HMAC-SHA256(chain_key, 0x01)
    next key  = HMAC-SHA256(chain_key, 0x02)
    okm(48)   = HKDF-SHA256(salt = none, ikm = seed, info = "WhisperGroup")
    iv, key   = okm[0:16], okm[16:48]          # AES-256-CBC / PKCS#7

A :class:`SenderKeyRecord` keeps up to ``max_sender_key_states`` (5) chains for one (sender,
distribution id), newest first; decryption picks the chain by ``chain_id``, checks the
signature *before* touching keys, then walks the chain forward (at most ``max_forward_jumps``),
keeping skipped keys as seeds (at most ``max_message_keys``, oldest dropped).

Everything here is pure and immutable: :func:`sender_key_encrypt` / :func:`sender_key_decrypt`
return the new record next to their result and never modify their input, so a failed decrypt
changes nothing (compute, then commit). The recipes in :mod:`securemsg.groups` load and save.
The classes are slotted dataclasses, not frozen ones (a frozen dataclass costs four times as
much to build, and each message builds three of them); nothing assigns to their fields.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from securemsg.crypto.curve25519 import PrivateKey, PublicKey
from securemsg.crypto.primitives import (
    aes_256_cbc_decrypt,
    aes_256_cbc_encrypt,
    hkdf_sha256,
    hmac_sha256,
)
from securemsg.crypto.rng import Rng
from securemsg.errors import (
    DecodeError,
    DuplicateMessageError,
    InvalidKeyError,
    InvalidMessageError,
    MessageGapTooLargeError,
    NoSessionError,
    StorageError,
    UnsupportedVersionError,
)
from securemsg.limits import DEFAULT_LIMITS, Limits
from securemsg.records.sender_key_storage import (
    StoredSenderKeyState,
    decode_sender_key_record,
    encode_sender_key_record,
)
from securemsg.wire.messages import (
    SENDERKEY_MESSAGE_CURRENT_VERSION,
    SenderKeyDistributionMessage,
    SenderKeyMessage,
)

__all__ = [
    "SenderKeyRecord",
    "SenderKeyState",
    "SenderMessageKey",
    "create_distribution",
    "process_distribution",
    "sender_key_decrypt",
    "sender_key_encrypt",
]

_MESSAGE_KEY_SEED = b"\x01"
_CHAIN_KEY_SEED = b"\x02"
_WHISPER_GROUP = b"WhisperGroup"
_UINT32_MAX = 0xFFFFFFFF


@dataclass(slots=True)
class SenderMessageKey:
    """The AES key and IV for one iteration (derived from its 32-byte seed)."""

    iteration: int
    iv: bytes = field(repr=False)
    cipher_key: bytes = field(repr=False)

    @classmethod
    def from_seed(cls, iteration: int, seed: bytes) -> SenderMessageKey:
        okm = hkdf_sha256(seed, None, _WHISPER_GROUP, 48)
        return cls(iteration, okm[:16], okm[16:48])


@dataclass(slots=True)
class SenderKeyState:
    """One chain of one sender (immutable).

    Attributes:
        message_version: 3.
        chain_id: the chain id (31 bits for chains we create).
        chain_iteration: the iteration ``chain_key`` belongs to (next to be used).
        chain_key: the current 32-byte chain key.
        signing_public: the chain's signature key.
        signing_private: its private half (only for our own chain).
        message_keys: skipped keys, iteration -> seed, oldest first.
    """

    message_version: int
    chain_id: int
    chain_iteration: int
    chain_key: bytes = field(repr=False)
    signing_public: PublicKey = field(repr=False)
    signing_private: PrivateKey | None = field(repr=False)
    message_keys: dict[int, bytes] = field(repr=False)


def _to_stored(s: SenderKeyState) -> StoredSenderKeyState:
    return StoredSenderKeyState(
        s.message_version,
        s.chain_id,
        s.chain_iteration,
        s.chain_key,
        s.signing_public.to_bytes(),
        b"" if s.signing_private is None else s.signing_private.to_bytes(),
        tuple(s.message_keys.items()),
    )


def _from_stored(s: StoredSenderKeyState) -> SenderKeyState:
    try:
        public = PublicKey.from_bytes(s.signing_public)
        private = PrivateKey.from_bytes(s.signing_private) if s.signing_private else None
    except (DecodeError, InvalidKeyError):
        raise DecodeError("sender key record: invalid signing key") from None
    return SenderKeyState(
        s.message_version or SENDERKEY_MESSAGE_CURRENT_VERSION,
        s.chain_id,
        s.chain_iteration,
        s.chain_key,
        public,
        private,
        dict(s.message_keys),
    )


@dataclass(slots=True)
class SenderKeyRecord:
    """Every chain kept for one (sender, distribution id), newest first (immutable).

    Persisted through the store as :meth:`to_bytes` (``proto/sender_key.proto``).
    """

    states: tuple[SenderKeyState, ...] = ()

    def to_bytes(self) -> bytes:
        """Serialize (versioned)."""
        return encode_sender_key_record([_to_stored(s) for s in self.states])

    @classmethod
    def from_bytes(cls, data: bytes) -> SenderKeyRecord:
        """Parse a stored record.

        Raises:
            UnsupportedVersionError: unknown record version.
            DecodeError: corrupt bytes.
        """
        return cls(tuple(_from_stored(s) for s in decode_sender_key_record(data)))

    def state_for_chain_id(self, chain_id: int) -> SenderKeyState | None:
        """The chain with that id, or None."""
        for s in self.states:
            if s.chain_id == chain_id:
                return s
        return None

    def with_state(self, state: SenderKeyState, limits: Limits = DEFAULT_LIMITS) -> SenderKeyRecord:
        """Add a chain in front (libsignal ``add_sender_key_state``).

        A chain with the same id *and* signing key is kept as it is (moved to the front, so a
        repeated distribution message cannot rewind it); chains with the same id but another
        key are dropped; the oldest chains are dropped beyond ``max_sender_key_states``.
        """
        existing = None
        for s in self.states:
            if s.chain_id == state.chain_id and s.signing_public == state.signing_public:
                existing = s
                break
        rest = [s for s in self.states if s.chain_id != state.chain_id]
        keep = max(limits.max_sender_key_states - 1, 0)
        return SenderKeyRecord((existing or state, *rest[:keep]))

    def _replace(self, old: SenderKeyState, new: SenderKeyState) -> SenderKeyRecord:
        return SenderKeyRecord(tuple(new if s is old else s for s in self.states))


def _next_chain_key(chain_key: bytes) -> bytes:
    return hmac_sha256(chain_key, _CHAIN_KEY_SEED)


def _message_seed(chain_key: bytes) -> bytes:
    return hmac_sha256(chain_key, _MESSAGE_KEY_SEED)


def create_distribution(
    record: SenderKeyRecord | None, distribution_id: uuid.UUID, rng: Rng
) -> tuple[SenderKeyDistributionMessage, SenderKeyRecord]:
    """Our distribution message for a group, creating our chain if there is none.

    Returns:
        (the message, the record to store; the same record if it already existed).

    Raises:
        NoSessionError: the existing record has no state (corrupt or empty).
    """
    if record is None or not record.states:
        chain_id = int.from_bytes(rng.random_bytes(4), "little") >> 1
        signing = PrivateKey.generate(rng)
        state = SenderKeyState(
            SENDERKEY_MESSAGE_CURRENT_VERSION,
            chain_id,
            0,
            rng.random_bytes(32),
            signing.public_key(),
            signing,
            {},
        )
        record = SenderKeyRecord().with_state(state)
    state = record.states[0]
    message = SenderKeyDistributionMessage.new(
        distribution_id=distribution_id,
        chain_id=state.chain_id,
        iteration=state.chain_iteration,
        chain_key=state.chain_key,
        signing_key=state.signing_public,
        message_version=state.message_version,
    )
    return message, record


def process_distribution(
    record: SenderKeyRecord | None,
    message: SenderKeyDistributionMessage,
    limits: Limits = DEFAULT_LIMITS,
) -> SenderKeyRecord:
    """The record after accepting another member's distribution message."""
    state = SenderKeyState(
        message.message_version,
        message.chain_id,
        message.iteration,
        message.chain_key,
        message.signing_key,
        None,
        {},
    )
    return (record or SenderKeyRecord()).with_state(state, limits)


def sender_key_encrypt(
    record: SenderKeyRecord, distribution_id: uuid.UUID, plaintext: bytes, rng: Rng
) -> tuple[SenderKeyMessage, SenderKeyRecord]:
    """Encrypt and sign with our newest chain; returns (message, advanced record).

    Raises:
        NoSessionError: the record has no chain, or it is not ours (no private signing key).
        StorageError: the chain is exhausted (iteration would overflow u32).
    """
    if not record.states:
        raise NoSessionError("no sender key state for this distribution id")
    state = record.states[0]
    if state.signing_private is None:
        raise NoSessionError("sender key state has no private signing key")
    if state.chain_iteration >= _UINT32_MAX:
        raise StorageError("sender chain is too long")
    key = SenderMessageKey.from_seed(state.chain_iteration, _message_seed(state.chain_key))
    ciphertext = aes_256_cbc_encrypt(key.cipher_key, key.iv, plaintext)
    message = SenderKeyMessage.new(
        distribution_id=distribution_id,
        chain_id=state.chain_id,
        iteration=state.chain_iteration,
        ciphertext=ciphertext,
        signing_key=state.signing_private,
        rng=rng,
        message_version=state.message_version,
    )
    new_state = SenderKeyState(
        state.message_version,
        state.chain_id,
        state.chain_iteration + 1,
        _next_chain_key(state.chain_key),
        state.signing_public,
        state.signing_private,
        state.message_keys,
    )
    return message, record._replace(state, new_state)


def sender_key_decrypt(
    record: SenderKeyRecord, message: SenderKeyMessage, limits: Limits = DEFAULT_LIMITS
) -> tuple[bytes, SenderKeyRecord]:
    """Verify and decrypt a group message; returns (plaintext, advanced record).

    Steps: find the chain by ``chain_id``; check the version; verify the signature; take a
    stored skipped key or walk the chain forward (bounded); decrypt. The input record is never
    modified, so any error leaves the caller's state as it was.

    Raises:
        NoSessionError: no chain with that id.
        UnsupportedVersionError: the message version differs from the chain's.
        InvalidSignatureError: not signed by the chain's signing key.
        DuplicateMessageError: that iteration was already decrypted.
        MessageGapTooLargeError: more than ``max_forward_jumps`` ahead of the chain.
        InvalidMessageError: the ciphertext does not decrypt (bad padding).
    """
    state = record.state_for_chain_id(message.chain_id)
    if state is None:
        raise NoSessionError("no sender key state for this chain id")
    if message.message_version != state.message_version:
        raise UnsupportedVersionError("sender key message version", message.message_version)
    message.verify_signature(state.signing_public)

    iteration = message.iteration
    current = state.chain_iteration
    message_keys = state.message_keys
    chain_key = state.chain_key
    if iteration < current:
        seed = message_keys.get(iteration)
        if seed is None:
            raise DuplicateMessageError("sender key message already received", iteration)
        message_keys = dict(message_keys)
        del message_keys[iteration]
        new_iteration = current
    else:
        gap = iteration - current
        if gap > limits.max_forward_jumps:
            raise MessageGapTooLargeError("sender key message too far ahead", gap)
        if iteration >= _UINT32_MAX:
            raise InvalidMessageError("sender key chain is too long")
        if gap:
            message_keys = dict(message_keys)
            for i in range(current, iteration):
                message_keys[i] = _message_seed(chain_key)
                chain_key = _next_chain_key(chain_key)
            excess = len(message_keys) - limits.max_message_keys
            if excess > 0:
                for old in list(message_keys)[:excess]:
                    del message_keys[old]
        seed = _message_seed(chain_key)
        chain_key = _next_chain_key(chain_key)
        new_iteration = iteration + 1
    key = SenderMessageKey.from_seed(iteration, seed)
    plaintext = aes_256_cbc_decrypt(key.cipher_key, key.iv, message.ciphertext)
    new_state = SenderKeyState(
        state.message_version,
        state.chain_id,
        new_iteration,
        chain_key,
        state.signing_public,
        state.signing_private,
        message_keys,
    )
    return plaintext, record._replace(state, new_state)
