"""1:1 encryption recipes: load from the store, run the pure core, save (libsignal vocabulary).

Theory of operation
-------------------
Every function here has the same three steps (libsignal ``session.rs`` +
``session_management.rs``):

1. **Load** what the step needs from the :class:`~securemsg.store.base.ProtocolStore` (one
   ``load_session`` per message; identity and prekey lookups where the step needs them).
2. **Compute** with the pure protocol core (:mod:`securemsg.protocol.pqxdh`,
   :mod:`~securemsg.protocol.session_state`, :mod:`~securemsg.protocol.session_record`), which
   returns new values and never mutates what was loaded.
3. **Commit** every write of the step inside one ``store.transaction()``: the session record,
   the identity (trust on first use) and, for a PreKey message, the consumed prekeys.

Any exception before step 3 leaves the store exactly as it was; an exception inside step 3 is
rolled back by the store. So for every error raised here: *nothing changed*.

Trust: the identity of the peer is checked with ``is_trusted_identity`` — for Sending in
:func:`process_prekey_bundle` and :func:`message_encrypt`, for Receiving in
:func:`decrypt_prekey_message` (before any work) and :func:`decrypt_signal_message` (after
decryption, as libsignal does) — and saved on success.

``now`` is Unix time in milliseconds; ``rng`` an :class:`~securemsg.crypto.rng.Rng`.
"""

from __future__ import annotations

from securemsg.crypto.curve25519 import KeyPair, PublicKey
from securemsg.crypto.primitives import constant_time_eq
from securemsg.crypto.rng import Rng
from securemsg.errors import (
    InvalidMessageError,
    NoSessionError,
    UntrustedIdentityError,
    UsageError,
)
from securemsg.limits import DEFAULT_LIMITS, MAX_PLAINTEXT_LENGTH, Limits
from securemsg.protocol.address import ProtocolAddress, serialize_addresses
from securemsg.protocol.identity_and_prekeys import IdentityKey, PreKeyBundle
from securemsg.protocol.pqxdh import pqxdh_accept, pqxdh_initiate
from securemsg.protocol.session_record import SessionRecord
from securemsg.protocol.session_state import (
    SESSION_VERSION,
    PendingPreKey,
    initialize_initiator_session,
    initialize_recipient_session,
    is_self_session,
)
from securemsg.store.base import Direction, ProtocolStore
from securemsg.wire.messages import CiphertextMessageType, PreKeySignalMessage, SignalMessage

__all__ = [
    "decrypt_prekey_message",
    "decrypt_signal_message",
    "message_decrypt",
    "message_encrypt",
    "process_prekey_bundle",
]

_WHISPER = CiphertextMessageType.WHISPER
_PREKEY = CiphertextMessageType.PREKEY
_SENDING = Direction.SENDING
_RECEIVING = Direction.RECEIVING


def _check_common(remote_address: object, now: object, local_address: object) -> None:
    if not isinstance(remote_address, ProtocolAddress):
        raise UsageError("remote_address must be a ProtocolAddress")
    if not isinstance(local_address, ProtocolAddress):
        raise UsageError("local_address must be a ProtocolAddress")
    if type(now) is not int or now < 0:
        raise UsageError("now must be a non-negative int (Unix milliseconds)")


def _untrusted(address: ProtocolAddress, identity: IdentityKey) -> UntrustedIdentityError:
    return UntrustedIdentityError(
        "identity key of " + str(address) + " is not trusted", str(address), identity
    )


def _check_trust_and_commit(
    store: ProtocolStore,
    remote_address: ProtocolAddress,
    their_identity: IdentityKey,
    direction: Direction,
    new_record: SessionRecord,
) -> None:
    """The common last step: refuse an untrusted identity, else commit the session.

    The identity is saved with the session, in one transaction, when it is new or changed;
    on an established session it is already saved, and the session is the only write.
    """
    if not store.is_trusted_identity(remote_address, their_identity, direction):
        raise _untrusted(remote_address, their_identity)
    if store.get_identity(remote_address) == their_identity:
        store.store_session(remote_address, new_record)
        return
    with store.transaction():
        store.save_identity(remote_address, their_identity)
        store.store_session(remote_address, new_record)


def process_prekey_bundle(
    bundle: PreKeyBundle,
    remote_address: ProtocolAddress,
    store: ProtocolStore,
    *,
    now: int,
    rng: Rng,
    local_address: ProtocolAddress,
    limits: Limits = DEFAULT_LIMITS,
) -> None:
    """Start a session with ``remote_address`` from its published prekey bundle (PQXDH).

    The new session becomes current (an existing one is archived). Until the peer answers,
    :func:`message_encrypt` produces PreKeySignalMessages.

    Args:
        bundle: the peer's prekey bundle.
        remote_address: the peer.
        store: our protocol store.
        now: Unix time in milliseconds (the session's creation time).
        rng: randomness for the base key, Kyber encapsulation and ratchet key.
        local_address: our own address (for the self-session rule). Required, as in
            libsignal.
        limits: protocol limits.

    Raises:
        UntrustedIdentityError: the bundle's identity differs from the one we trust.
        InvalidSignatureError: a prekey signature does not verify.
        InvalidKeyError: a key in the bundle is unusable (all-zero DH).
        UsageError: bad arguments.
        StorageError: the store failed (nothing was written).
    """
    _check_common(remote_address, now, local_address)
    if not isinstance(bundle, PreKeyBundle):
        raise UsageError("bundle must be a PreKeyBundle")
    their_identity = bundle.identity_key
    if not store.is_trusted_identity(remote_address, their_identity, _SENDING):
        raise _untrusted(remote_address, their_identity)
    bundle.verify_signatures()

    record = store.load_session(remote_address) or SessionRecord()
    our_identity = store.get_identity_key_pair()
    our_identity_bytes = our_identity.identity_key.to_bytes()
    their_identity_bytes = their_identity.to_bytes()
    self_session = is_self_session(
        our_identity_bytes, their_identity_bytes, local_address, remote_address
    )
    base = KeyPair.generate(rng)
    kyber_ciphertext, keys = pqxdh_initiate(
        our_identity_private=our_identity.private_key,
        our_base_private=base.private_key,
        their_identity=their_identity.public_key,
        their_signed_pre_key=bundle.signed_pre_key_public,
        their_one_time_pre_key=bundle.pre_key_public,
        their_kyber_pre_key=bundle.kyber_pre_key_public,
        rng=rng,
    )
    state = initialize_initiator_session(
        keys,
        our_identity=our_identity_bytes,
        their_identity=their_identity_bytes,
        our_base_key=base.public_key,
        their_signed_pre_key=bundle.signed_pre_key_public,
        rng=rng,
        self_session=self_session,
        limits=limits,
    )
    pending = PendingPreKey(
        pre_key_id=bundle.pre_key_id,
        signed_pre_key_id=bundle.signed_pre_key_id,
        base_key=base.public_key,
        kyber_pre_key_id=bundle.kyber_pre_key_id,
        kyber_ciphertext=kyber_ciphertext,
        timestamp_ms=now,
    )
    state = state.with_pending(pending).with_registration_ids(
        store.get_local_registration_id(), bundle.registration_id
    )
    new_record = record.promote_state(state, limits)
    with store.transaction():
        store.save_identity(remote_address, their_identity)
        store.store_session(remote_address, new_record)


def message_encrypt(
    plaintext: bytes,
    remote_address: ProtocolAddress,
    store: ProtocolStore,
    *,
    now: int,
    rng: Rng,
    local_address: ProtocolAddress,
    limits: Limits = DEFAULT_LIMITS,
) -> PreKeySignalMessage | SignalMessage:
    """Encrypt ``plaintext`` for ``remote_address`` on the current session.

    While the session is unacknowledged (we started it and got no reply yet) the result is a
    PreKeySignalMessage repeating the PQXDH data; its inner message carries the address binding
    when both addresses are ServiceIds. Afterwards it is a SignalMessage.

    Args:
        plaintext: the message (at most ``MAX_PLAINTEXT_LENGTH`` bytes).
        remote_address: the peer.
        store: our protocol store.
        now: Unix time in milliseconds.
        rng: randomness for SPQR.
        local_address: our own address (for the address binding). Required, as in
            libsignal.
        limits: protocol limits.

    Returns:
        The message to send (``.to_bytes()``, type from its class).

    Raises:
        NoSessionError: no session, or an unacknowledged one older than 30 days.
        UntrustedIdentityError: the session's identity is no longer trusted.
        UsageError: bad arguments.
        StorageError: the store failed (nothing was written).
    """
    _check_common(remote_address, now, local_address)
    if type(plaintext) is not bytes:
        if not isinstance(plaintext, bytearray | memoryview):
            raise UsageError("plaintext must be bytes")
        plaintext = bytes(plaintext)
    if len(plaintext) > MAX_PLAINTEXT_LENGTH:
        raise UsageError("plaintext too long")

    record = store.load_session(remote_address)
    state = None if record is None else record.current
    if record is None or state is None:
        raise NoSessionError("no session with " + str(remote_address))
    pending = state.pending
    if pending is None:
        new_state, message = state.encrypt(plaintext, rng)
        result: PreKeySignalMessage | SignalMessage = message
    else:
        if state.is_stale(now, limits):
            raise NoSessionError("unacknowledged session with " + str(remote_address) + " too old")
        addresses = serialize_addresses(local_address, remote_address)
        new_state, message = state.encrypt(plaintext, rng, addresses)
        result = PreKeySignalMessage.new(
            message_version=state.version,
            registration_id=state.local_registration_id,
            pre_key_id=pending.pre_key_id,
            signed_pre_key_id=pending.signed_pre_key_id,
            kyber_pre_key_id=pending.kyber_pre_key_id,
            kyber_ciphertext=pending.kyber_ciphertext,
            base_key=pending.base_key,
            identity_key=PublicKey.from_bytes(state.local_identity),
            message=message,
        )

    _check_trust_and_commit(
        store, remote_address, state.remote_identity_key, _SENDING, record.with_current(new_state)
    )
    return result


def message_decrypt(
    ciphertext: bytes,
    message_type: CiphertextMessageType,
    remote_address: ProtocolAddress,
    store: ProtocolStore,
    *,
    now: int,
    rng: Rng,
    local_address: ProtocolAddress,
    limits: Limits = DEFAULT_LIMITS,
) -> bytes:
    """Parse and decrypt a WHISPER (2) or PREKEY (3) message from ``remote_address``.

    Raises:
        UsageError: another message type, or bad arguments.
        DecodeError: the bytes do not parse (UnsupportedVersionError for a version other than 4).
        InvalidKeyError: a key in the message is malformed.
        everything :func:`decrypt_prekey_message` / :func:`decrypt_signal_message` raise.
    """
    if message_type == _WHISPER:
        _check_common(remote_address, now, local_address)
        message = SignalMessage.from_bytes(ciphertext)
        return _decrypt_whisper(message, remote_address, store, rng, local_address, limits)
    if message_type == _PREKEY:
        return decrypt_prekey_message(
            PreKeySignalMessage.from_bytes(ciphertext),
            remote_address,
            store,
            now=now,
            rng=rng,
            local_address=local_address,
            limits=limits,
        )
    raise UsageError("message_decrypt handles WHISPER and PREKEY messages only")


def decrypt_signal_message(
    message: SignalMessage,
    remote_address: ProtocolAddress,
    store: ProtocolStore,
    *,
    now: int,
    rng: Rng,
    local_address: ProtocolAddress,
    limits: Limits = DEFAULT_LIMITS,
) -> bytes:
    """Decrypt a SignalMessage with the current session or an archived one (then promoted).

    Raises:
        NoSessionError: no session with ``remote_address``.
        DuplicateMessageError: the message was already decrypted.
        MessageGapTooLargeError: the counter is too far ahead.
        InvalidMessageError: no session could authenticate and decrypt it.
        UntrustedIdentityError: the session's identity is no longer trusted.
        UsageError: bad arguments.
        StorageError: the store failed.
    """
    _check_common(remote_address, now, local_address)
    if not isinstance(message, SignalMessage):
        raise UsageError("message must be a SignalMessage")
    return _decrypt_whisper(message, remote_address, store, rng, local_address, limits)


def _decrypt_whisper(
    message: SignalMessage,
    remote_address: ProtocolAddress,
    store: ProtocolStore,
    rng: Rng,
    local_address: ProtocolAddress,
    limits: Limits,
) -> bytes:
    """:func:`decrypt_signal_message` after its argument checks."""
    record = store.load_session(remote_address)
    if record is None:
        raise NoSessionError("no session with " + str(remote_address))
    new_record, plaintext = record.decrypt(
        message, rng, remote_address=remote_address, local_address=local_address, limits=limits
    )
    state = new_record.current
    if state is None:  # pragma: no cover - a successful decrypt always leaves a current session
        raise InvalidMessageError("decryption failed")
    _check_trust_and_commit(
        store, remote_address, state.remote_identity_key, _RECEIVING, new_record
    )
    return plaintext


def decrypt_prekey_message(
    message: PreKeySignalMessage,
    remote_address: ProtocolAddress,
    store: ProtocolStore,
    *,
    now: int,
    rng: Rng,
    local_address: ProtocolAddress,
    limits: Limits = DEFAULT_LIMITS,
) -> bytes:
    """Accept a PQXDH session from a PreKeySignalMessage (or find it again) and decrypt.

    A repeated PreKey message (same base key) reuses — and if archived, promotes — its session;
    a new one runs PQXDH as the recipient, archives the current session, and consumes the
    prekeys: the one-time EC prekey is removed and ``mark_kyber_pre_key_used`` is called, all
    in the transaction that stores the session.

    Raises:
        UntrustedIdentityError: the sender's identity differs from the one we trust.
        InvalidPreKeyError: a prekey it names is unknown or already used (or a replay).
        InvalidKeyError: the base key is not canonical, a DH is all zeros, or the Kyber
            ciphertext is malformed.
        DuplicateMessageError: the embedded message was already decrypted.
        InvalidMessageError: the embedded message does not authenticate or decrypt, or a
            repeated PreKey message names another identity than its session's.
        UsageError: bad arguments.
        StorageError: the store failed.
    """
    _check_common(remote_address, now, local_address)
    if not isinstance(message, PreKeySignalMessage):
        raise UsageError("message must be a PreKeySignalMessage")
    their_identity = IdentityKey(message.identity_key)
    if not store.is_trusted_identity(remote_address, their_identity, _RECEIVING):
        raise _untrusted(remote_address, their_identity)

    record = store.load_session(remote_address) or SessionRecord()
    base_key_bytes = message.base_key.to_bytes()
    matched = record.promote_matching_session(message.message_version, base_key_bytes, limits)
    consumed = False
    if matched is not None:
        # The outer PreKey fields are not MACed: the identity they name must be the one the
        # matched session authenticates (its MAC covers it), or an attacker could have an
        # unauthenticated identity saved.
        cur = matched.current
        if cur is None or not constant_time_eq(
            cur.remote_identity, message.identity_key.to_bytes()
        ):
            raise InvalidMessageError("decryption failed")
        record = matched
    else:
        if message.message_version != SESSION_VERSION:
            raise InvalidMessageError("unsupported PreKey message version")
        signed = store.get_signed_pre_key(message.signed_pre_key_id)
        kyber = store.get_kyber_pre_key(message.kyber_pre_key_id)
        one_time = None if message.pre_key_id is None else store.get_pre_key(message.pre_key_id)
        our_identity = store.get_identity_key_pair()
        our_identity_bytes = our_identity.identity_key.to_bytes()
        their_identity_bytes = their_identity.to_bytes()
        keys = pqxdh_accept(
            our_identity_private=our_identity.private_key,
            our_signed_pre_key_private=signed.key_pair.private_key,
            our_one_time_pre_key_private=None
            if one_time is None
            else one_time.key_pair.private_key,
            our_kyber_key_pair=kyber.key_pair,
            their_identity=message.identity_key,
            their_base_key=message.base_key,
            kyber_ciphertext=message.kyber_ciphertext,
        )
        state = initialize_recipient_session(
            keys,
            our_identity=our_identity_bytes,
            their_identity=their_identity_bytes,
            their_base_key=message.base_key,
            our_signed_pre_key_pair=signed.key_pair,
            self_session=is_self_session(
                our_identity_bytes, their_identity_bytes, local_address, remote_address
            ),
            limits=limits,
        ).with_registration_ids(store.get_local_registration_id(), message.registration_id)
        record = record.promote_state(state, limits)
        consumed = True

    new_record, plaintext = record.decrypt(
        message.message,
        rng,
        remote_address=remote_address,
        local_address=local_address,
        prekey=True,
        limits=limits,
    )
    with store.transaction():
        store.save_identity(remote_address, their_identity)
        if consumed:
            store.mark_kyber_pre_key_used(
                message.kyber_pre_key_id, message.signed_pre_key_id, message.base_key
            )
            if message.pre_key_id is not None:
                store.remove_pre_key(message.pre_key_id)
        store.store_session(remote_address, new_record)
    return plaintext
