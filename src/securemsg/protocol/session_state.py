"""One session's working state and the triple ratchet over it (Double Ratchet + SPQR).

Theory of operation
-------------------
The middle of the three layers (libsignal ``ratchet.rs`` + ``triple_ratchet.rs``). A
:class:`SessionState` holds everything one session needs: protocol version, both identity keys,
the :class:`~securemsg.protocol.double_ratchet.RatchetState`, the SPQR state, the PQXDH base key
that names the session (``alice_base_key``), registration ids, and — for an initiator whose
first message was not answered yet — the :class:`PendingPreKey` data repeated in every
PreKey message.

States of a session::

    initiator:  created (pending PreKey data) --first decrypted reply--> acknowledged
    recipient:  created from a PreKey message (never pending)

:func:`initialize_initiator_session` / :func:`initialize_recipient_session` build a session from
:class:`~securemsg.protocol.pqxdh.HandshakeKeys` exactly as libsignal does (Alice: fresh sending
ratchet key, ``create_chain`` with SPK_B, receiver chain for SPK_B; Bob: his first ratchet key
pair *is* the signed prekey). :meth:`SessionState.encrypt` and :meth:`SessionState.decrypt` are
values-in, values-out: they return ``(new_state, result)`` and never modify ``self``; decrypt
returns only after the MAC verified and the plaintext exists (compute, then commit).

Per message (libsignal ``rust/protocol/src/session_cipher.rs``): exactly one ``spqr_send`` per
encrypt (also for every repeated PreKey message), ``spqr_recv`` per decrypt; message keys =
HKDF(salt = SPQR key, seed, "WhisperMessageKeys"); AES-256-CBC; 8-byte MAC over sender
identity || receiver identity || message. This layer does not know records, stores or trust.
"""

from __future__ import annotations

import enum

from securemsg.crypto.curve25519 import KeyPair, PrivateKey, PublicKey
from securemsg.crypto.primitives import (
    aes_256_cbc_decrypt,
    aes_256_cbc_encrypt,
    constant_time_eq,
)
from securemsg.crypto.rng import Rng
from securemsg.errors import (
    DecodeError,
    InvalidKeyError,
    InvalidMessageError,
    StorageError,
    UnsupportedVersionError,
)
from securemsg.limits import DEFAULT_LIMITS, Limits
from securemsg.protocol.address import ProtocolAddress, serialize_addresses
from securemsg.protocol.double_ratchet import (
    RatchetState,
    ReceiverChain,
    SenderChain,
    message_keys,
    root_step,
)
from securemsg.protocol.identity_and_prekeys import IdentityKey
from securemsg.protocol.pqxdh import HandshakeKeys
from securemsg.protocol.spqr import (
    SpqrDirection,
    SpqrState,
    spqr_initial_state,
    spqr_recv,
    spqr_send,
)
from securemsg.records.session_storage import (
    StoredChain,
    StoredPendingPreKey,
    StoredSession,
)
from securemsg.wire.messages import SignalMessage

__all__ = [
    "SESSION_VERSION",
    "PendingPreKey",
    "SessionState",
    "initialize_initiator_session",
    "initialize_recipient_session",
    "is_self_session",
]

#: The only session version we create or accept (PQXDH + SPQR).
SESSION_VERSION = 4


class PendingPreKey:
    """What an unacknowledged initiator repeats in every PreKeySignalMessage."""

    __slots__ = (
        "base_key",
        "kyber_ciphertext",
        "kyber_pre_key_id",
        "pre_key_id",
        "signed_pre_key_id",
        "timestamp_ms",
    )

    def __init__(
        self,
        *,
        pre_key_id: int | None,
        signed_pre_key_id: int,
        base_key: PublicKey,
        kyber_pre_key_id: int,
        kyber_ciphertext: bytes,
        timestamp_ms: int,
    ) -> None:
        self.pre_key_id = pre_key_id
        self.signed_pre_key_id = signed_pre_key_id
        self.base_key = base_key
        self.kyber_pre_key_id = kyber_pre_key_id
        self.kyber_ciphertext = kyber_ciphertext
        self.timestamp_ms = timestamp_ms

    def __repr__(self) -> str:
        return (
            "PendingPreKey(pre_key_id="
            + str(self.pre_key_id)
            + ", signed_pre_key_id="
            + str(self.signed_pre_key_id)
            + ", kyber_pre_key_id="
            + str(self.kyber_pre_key_id)
            + ")"
        )


def is_self_session(
    local_identity: bytes,
    remote_identity: bytes,
    local_address: ProtocolAddress,
    remote_address: ProtocolAddress,
) -> bool:
    """libsignal's ``is_same_account``: same identity key and same ServiceId on both ends."""
    if local_identity != remote_identity:
        return False
    ours = local_address.service_id()
    return ours is not None and ours == remote_address.service_id()


class _Keep(enum.Enum):
    """``_evolve``'s default for a field whose new value may be None: keep the old one."""

    KEEP = enum.auto()


class SessionState:
    """The working state of one session. A value: operations return new states.

    Attributes:
        version: the session (protocol) version, 4.
        local_identity: our identity key, serialized (33 bytes).
        remote_identity: the peer's identity key, serialized (33 bytes).
        ratchet: the Double Ratchet state.
        spqr: the SPQR state.
        alice_base_key: the initiator's PQXDH base key, serialized (names the session).
        pending: unacknowledged PreKey data (initiator until the first reply), else None.
        local_registration_id: ours.
        remote_registration_id: the peer's.
    """

    __slots__ = (
        "_remote_identity_key",
        "alice_base_key",
        "local_identity",
        "local_registration_id",
        "pending",
        "ratchet",
        "remote_identity",
        "remote_registration_id",
        "spqr",
        "version",
    )

    def __init__(
        self,
        version: int,
        local_identity: bytes,
        remote_identity: bytes,
        ratchet: RatchetState,
        spqr: SpqrState,
        alice_base_key: bytes,
        pending: PendingPreKey | None,
        local_registration_id: int,
        remote_registration_id: int,
        remote_identity_key: IdentityKey | None = None,
    ) -> None:
        self.version = version
        self.local_identity = local_identity
        self.remote_identity = remote_identity
        self.ratchet = ratchet
        self.spqr = spqr
        self.alice_base_key = alice_base_key
        self.pending = pending
        self.local_registration_id = local_registration_id
        self.remote_registration_id = remote_registration_id
        self._remote_identity_key = remote_identity_key

    @property
    def remote_identity_key(self) -> IdentityKey:
        """The peer's identity key as an object (parsed once, then shared by later states).

        Raises:
            StorageError: the stored key does not parse (only possible for a corrupt state:
                local state, never the peer's fault).
        """
        key = self._remote_identity_key
        if key is None:
            try:
                key = IdentityKey(PublicKey.from_bytes(self.remote_identity))
            except InvalidKeyError:
                raise StorageError("stored remote identity key is invalid") from None
            self._remote_identity_key = key
        return key

    def __repr__(self) -> str:
        return (
            "SessionState(version="
            + str(self.version)
            + ", "
            + repr(self.ratchet)
            + ", pending="
            + ("yes" if self.pending is not None else "no")
            + ")"
        )

    # ---------------------------------------------------------------------------- variations

    def _evolve(
        self,
        *,
        ratchet: RatchetState | None = None,
        spqr: SpqrState | None = None,
        pending: PendingPreKey | _Keep | None = _Keep.KEEP,
        local_registration_id: int | None = None,
        remote_registration_id: int | None = None,
    ) -> SessionState:
        """A copy with the given fields changed (the only way a session state changes).

        The session's identity (version, both identity keys, ``alice_base_key``) never changes;
        the parsed remote identity key is shared with the copy.
        """
        return SessionState(
            self.version,
            self.local_identity,
            self.remote_identity,
            self.ratchet if ratchet is None else ratchet,
            self.spqr if spqr is None else spqr,
            self.alice_base_key,
            self.pending if pending is _Keep.KEEP else pending,
            self.local_registration_id if local_registration_id is None else local_registration_id,
            self.remote_registration_id
            if remote_registration_id is None
            else remote_registration_id,
            self._remote_identity_key,
        )

    def with_registration_ids(self, local: int, remote: int) -> SessionState:
        """A copy with the given registration ids."""
        return self._evolve(local_registration_id=local, remote_registration_id=remote)

    def with_pending(self, pending: PendingPreKey | None) -> SessionState:
        """A copy with other unacknowledged PreKey data (None: acknowledged)."""
        return self._evolve(pending=pending)

    def is_stale(self, now: int, limits: Limits = DEFAULT_LIMITS) -> bool:
        """True if the session is unacknowledged and older than the limit (``now`` in ms)."""
        p = self.pending
        return p is not None and p.timestamp_ms + limits.max_unacknowledged_session_age * 1000 < now

    # ----------------------------------------------------------------------------- messages

    def encrypt(
        self, plaintext: bytes, rng: Rng, addresses: bytes | None = None
    ) -> tuple[SessionState, SignalMessage]:
        """Encrypt one message on the sender chain.

        Args:
            plaintext: the message body.
            rng: randomness for SPQR.
            addresses: the 36-byte address binding to put in the message, or None.

        Returns:
            ``(advanced_state, message)``; ``self`` is unchanged.
        """
        spqr_state, pq_msg, pq_key = spqr_send(self.spqr, rng)
        ratchet = self.ratchet
        seed, counter, new_ratchet = ratchet.send()
        cipher_key, mac_key, iv = message_keys(seed, pq_key)
        message = SignalMessage.new(
            message_version=self.version,
            mac_key=mac_key,
            sender_identity=self.local_identity,
            receiver_identity=self.remote_identity,
            ratchet_key=ratchet.sender_chain.ratchet_key_pair.public_key,
            counter=counter,
            previous_counter=ratchet.previous_counter,
            ciphertext=aes_256_cbc_encrypt(cipher_key, iv, plaintext),
            pq_ratchet=pq_msg,
            addresses=addresses,
        )
        return self._evolve(ratchet=new_ratchet, spqr=spqr_state), message

    def decrypt(
        self,
        message: SignalMessage,
        rng: Rng,
        *,
        remote_address: ProtocolAddress,
        local_address: ProtocolAddress,
        limits: Limits = DEFAULT_LIMITS,
    ) -> tuple[SessionState, bytes]:
        """Decrypt one message with this session.

        Returns ``(advanced_state, plaintext)`` only after the MAC verified and the plaintext
        decrypted; the advanced state is acknowledged (no pending PreKey data).

        Raises:
            DuplicateMessageError: the message key was already used.
            MessageGapTooLargeError: the counter is too far ahead.
            InvalidMessageError: SPQR, MAC, address binding or decryption failed.
            InvalidKeyError: the peer's ratchet key gives an all-zero DH.
        """
        self_session = self.local_identity == self.remote_identity and is_self_session(
            self.local_identity, self.remote_identity, local_address, remote_address
        )
        seed, new_ratchet = self.ratchet.receive(
            message.ratchet_key,
            message.counter,
            rng,
            max_forward_jumps=None if self_session else limits.max_forward_jumps,
            max_message_keys=limits.max_message_keys,
            max_receiver_chains=limits.max_receiver_chains,
        )
        try:
            spqr_state, pq_key = spqr_recv(self.spqr, message.pq_ratchet)
        except DecodeError:
            raise InvalidMessageError("decryption failed") from None
        cipher_key, mac_key, iv = message_keys(seed, pq_key)
        if not message.verify_mac(self.remote_identity, self.local_identity, mac_key):
            raise InvalidMessageError("decryption failed")
        if message.addresses is not None and not _addresses_match(
            message.addresses, remote_address, local_address
        ):
            raise InvalidMessageError("decryption failed")
        plaintext = aes_256_cbc_decrypt(cipher_key, iv, message.ciphertext)
        return self._evolve(ratchet=new_ratchet, spqr=spqr_state, pending=None), plaintext

    # ------------------------------------------------------------------------------ storage

    def to_stored(self) -> StoredSession:
        """The plain-data form for :mod:`securemsg.records.session_storage`."""
        r = self.ratchet
        sc = r.sender_chain
        pending = self.pending
        return StoredSession(
            session_version=self.version,
            local_identity_public=self.local_identity,
            remote_identity_public=self.remote_identity,
            root_key=r.root_key,
            previous_counter=r.previous_counter,
            sender_chain=StoredChain(
                sc.ratchet_key_pair.public_key.to_bytes(),
                sc.ratchet_key_pair.private_key.to_bytes(),
                sc.chain_key,
                sc.index,
            ),
            receiver_chains=[
                StoredChain(
                    c.ratchet_key.to_bytes(),
                    b"",
                    c.chain_key,
                    c.index,
                    list(c.skipped.items())[::-1],
                )
                for c in r.receiver_chains
            ],
            pending_pre_key=None
            if pending is None
            else StoredPendingPreKey(
                pre_key_id=pending.pre_key_id,
                signed_pre_key_id=pending.signed_pre_key_id,
                base_key=pending.base_key.to_bytes(),
                timestamp_ms=pending.timestamp_ms,
                kyber_pre_key_id=pending.kyber_pre_key_id,
                kyber_ciphertext=pending.kyber_ciphertext,
            ),
            remote_registration_id=self.remote_registration_id,
            local_registration_id=self.local_registration_id,
            alice_base_key=self.alice_base_key,
            pq_ratchet_state=self.spqr.to_bytes(),
        )

    @classmethod
    def from_stored(cls, s: StoredSession) -> SessionState:
        """Rebuild a session from its stored form, checking every length and key.

        Raises:
            DecodeError: a field is missing, has the wrong length or does not decode.
            UnsupportedVersionError: the session version is not 4.
        """
        if s.session_version != SESSION_VERSION:
            raise UnsupportedVersionError("unsupported stored session version", s.session_version)
        try:
            _check_public(s.local_identity_public)
            _check_public(s.remote_identity_public)
            _check_public(s.alice_base_key)
            _check_len(s.root_key, 32)
            sc = s.sender_chain
            if sc is None:
                raise DecodeError("stored session has no sender chain")
            _check_len(sc.chain_key, 32)
            sender_chain = SenderChain(
                KeyPair(
                    PrivateKey.from_bytes(sc.ratchet_private_key),
                    PublicKey.from_bytes(sc.ratchet_key),
                ),
                sc.chain_key,
                sc.index,
            )
            receiver_chains = []
            for c in s.receiver_chains:
                _check_len(c.chain_key, 32)
                skipped: dict[int, bytes] = {}
                for index, seed in reversed(c.message_keys):
                    _check_len(seed, 32)
                    skipped[index] = seed
                receiver_chains.append(
                    ReceiverChain(
                        PublicKey.from_bytes(c.ratchet_key), c.chain_key, c.index, skipped
                    )
                )
            pending: PendingPreKey | None = None
            p = s.pending_pre_key
            if p is not None:
                pending = PendingPreKey(
                    pre_key_id=p.pre_key_id,
                    signed_pre_key_id=p.signed_pre_key_id,
                    base_key=PublicKey.from_bytes(p.base_key),
                    kyber_pre_key_id=p.kyber_pre_key_id,
                    kyber_ciphertext=p.kyber_ciphertext,
                    timestamp_ms=p.timestamp_ms,
                )
        except InvalidKeyError as exc:
            raise DecodeError("stored session holds an invalid key") from exc
        spqr = SpqrState.from_bytes(s.pq_ratchet_state)
        ratchet = RatchetState(s.root_key, sender_chain, tuple(receiver_chains), s.previous_counter)
        return cls(
            s.session_version,
            s.local_identity_public,
            s.remote_identity_public,
            ratchet,
            spqr,
            s.alice_base_key,
            pending,
            s.local_registration_id,
            s.remote_registration_id,
        )


def _check_len(value: bytes, n: int) -> None:
    if len(value) != n:
        raise DecodeError("stored session field has the wrong length")


def _check_public(value: bytes) -> None:
    _check_len(value, 33)
    PublicKey.from_bytes(value)


def _addresses_match(received: bytes, sender: ProtocolAddress, recipient: ProtocolAddress) -> bool:
    """libsignal ``verify_mac_with_addresses``: a present binding must equal ours, both halves
    (sender and recipient)."""
    full = serialize_addresses(sender, recipient)
    return full is not None and constant_time_eq(full, received)


# ------------------------------------------------------------------------------ initialization


def initialize_initiator_session(
    keys: HandshakeKeys,
    *,
    our_identity: bytes,
    their_identity: bytes,
    our_base_key: PublicKey,
    their_signed_pre_key: PublicKey,
    rng: Rng,
    self_session: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> SessionState:
    """Alice's session after PQXDH (libsignal ``initialize_alice_session``).

    A fresh sending ratchet key RA; ``(root', send_ck) = create_chain(root, SPK_B, RA)``; a
    receiver chain for SPK_B with the PQXDH chain key; SPQR direction A2B. The caller adds the
    pending PreKey data and registration ids.

    Raises:
        InvalidKeyError: the DH with the signed prekey is all zeros.
    """
    sending = KeyPair.generate(rng)
    root, send_ck = root_step(keys.root_key, their_signed_pre_key, sending.private_key)
    spqr = spqr_initial_state(
        keys.spqr_auth_key, SpqrDirection.A2B, limits=limits, self_session=self_session
    )
    ratchet = RatchetState(
        root,
        SenderChain(sending, send_ck, 0),
        (ReceiverChain(their_signed_pre_key, keys.chain_key, 0),),
        0,
    )
    return SessionState(
        SESSION_VERSION,
        our_identity,
        their_identity,
        ratchet,
        spqr,
        our_base_key.to_bytes(),
        None,
        0,
        0,
    )


def initialize_recipient_session(
    keys: HandshakeKeys,
    *,
    our_identity: bytes,
    their_identity: bytes,
    their_base_key: PublicKey,
    our_signed_pre_key_pair: KeyPair,
    self_session: bool = False,
    limits: Limits = DEFAULT_LIMITS,
) -> SessionState:
    """Bob's session after PQXDH (libsignal ``initialize_bob_session``).

    His first sending ratchet key pair is the signed prekey, with the PQXDH chain key; the root
    key is the PQXDH root key; no receiver chain yet; SPQR direction B2A.
    """
    spqr = spqr_initial_state(
        keys.spqr_auth_key, SpqrDirection.B2A, limits=limits, self_session=self_session
    )
    ratchet = RatchetState(
        keys.root_key, SenderChain(our_signed_pre_key_pair, keys.chain_key, 0), (), 0
    )
    return SessionState(
        SESSION_VERSION,
        our_identity,
        their_identity,
        ratchet,
        spqr,
        their_base_key.to_bytes(),
        None,
        0,
        0,
    )
