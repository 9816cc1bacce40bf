"""Identity keys, prekeys and prekey bundles.

Theory of operation
-------------------
An account has one long-term :class:`IdentityKeyPair` (Curve25519) and a
:func:`generate_registration_id`. To let others start sessions while it is offline it publishes
prekeys: one-time EC prekeys (:class:`PreKeyRecord`), a signed EC prekey
(:class:`SignedPreKeyRecord`) and a signed Kyber1024 prekey (:class:`KyberPreKeyRecord`). The
signatures are XEdDSA by the identity key over the *serialized* public key (``0x05 || spk`` and
``0x08 || kyber_pk``), as libsignal signs them. A :class:`PreKeyBundle` is the public half as a
peer fetches it; :meth:`PreKeyBundle.verify_signatures` must pass before PQXDH uses it.

``*Record`` objects hold private keys and are persisted with ``to_bytes`` / ``from_bytes``
(the codecs are in :mod:`securemsg.records.key_storage`; formats are versioned). ``repr``
never shows a private key or seed. All randomness comes from the ``rng`` argument.

Decoders raise :class:`~securemsg.errors.DecodeError` (malformed bytes, unsupported record
version) or :class:`~securemsg.errors.InvalidKeyError` (a key with a bad type byte).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from securemsg.crypto.curve25519 import KeyPair, PrivateKey, PublicKey
from securemsg.crypto.kyber1024 import KyberKeyPair, KyberPublicKey
from securemsg.crypto.primitives import constant_time_eq
from securemsg.crypto.rng import Rng
from securemsg.errors import DecodeError, UsageError
from securemsg.limits import MAX_DEVICE_ID, REGISTRATION_ID_MASK
from securemsg.records import key_storage as codec

__all__ = [
    "IdentityKey",
    "IdentityKeyPair",
    "KyberPreKeyRecord",
    "PreKeyBundle",
    "PreKeyRecord",
    "SignedPreKeyRecord",
    "generate_registration_id",
]

_ALTERNATE_IDENTITY_PREFIX = b"\xff" * 32 + b"Signal_PNI_Signature"

#: How many peers' identity agreements an :class:`IdentityKeyPair` remembers.
STATIC_AGREEMENTS_MAX = 4096
_UINT32_MAX = 0xFFFFFFFF
_UINT64_MAX = 0xFFFFFFFFFFFFFFFF


def _check_uint(value: int, maximum: int, what: str) -> None:
    if type(value) is not int or not 0 <= value <= maximum:
        raise UsageError(what + " out of range")


@dataclass(frozen=True, slots=True)
class IdentityKey:
    """A user's public identity: a Curve25519 public key. Compares and hashes by value.

    Attributes:
        public_key: the underlying public key.
    """

    public_key: PublicKey

    @classmethod
    def from_bytes(cls, data: bytes) -> IdentityKey:
        """Parse ``0x05 || u`` (33 bytes).

        Raises:
            InvalidKeyError: bad type byte or length.
        """
        return cls(PublicKey.from_bytes(data))

    def to_bytes(self) -> bytes:
        """The 33-byte serialized key."""
        return self.public_key.to_bytes()

    def verify_alternate_identity(self, other: IdentityKey, signature: bytes) -> None:
        """Check that ``other`` (e.g. a PNI identity) was vouched for by this identity.

        Raises:
            InvalidSignatureError: the signature does not verify.
        """
        self.public_key.verify(_ALTERNATE_IDENTITY_PREFIX + other.to_bytes(), signature)


@dataclass(frozen=True, slots=True, eq=False)
class IdentityKeyPair:
    """Our long-term identity key pair. ``repr`` shows only the public half.

    Attributes:
        identity_key: the public identity.
        private_key: the private key.
    """

    identity_key: IdentityKey
    private_key: PrivateKey = field(repr=False)
    # DH(our identity, their identity) per peer identity (their raw public key -> 32 bytes):
    # sealed sender v2 needs it for every message to or from that peer. It lives on the
    # object that owns the private key and dies with it; never serialized. Bounded.
    _agreements: dict[bytes, bytes] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    @classmethod
    def generate(cls, rng: Rng) -> IdentityKeyPair:
        """A fresh random identity."""
        pair = KeyPair.generate(rng)
        return cls(IdentityKey(pair.public_key), pair.private_key)

    @property
    def public_key(self) -> PublicKey:
        """The identity's public key."""
        return self.identity_key.public_key

    def static_agreement(self, theirs: PublicKey) -> bytes:
        """``private_key.agree(theirs)``, remembered on this key pair (at most
        ``STATIC_AGREEMENTS_MAX`` peers; the memo is emptied when full).

        Raises:
            InvalidKeyError: an all-zero Diffie-Hellman result (never remembered).
        """
        memo = self._agreements
        raw = theirs.raw
        shared = memo.get(raw)
        if shared is None:
            shared = self.private_key.agree(theirs)
            if len(memo) >= STATIC_AGREEMENTS_MAX:
                memo.clear()
            memo[raw] = shared
        return shared

    def sign(self, message: bytes, rng: Rng) -> bytes:
        """XEdDSA signature (64 bytes) with the identity key."""
        return self.private_key.sign(message, rng)

    def sign_alternate_identity(self, other: IdentityKey, rng: Rng) -> bytes:
        """Vouch for ``other`` (see :meth:`IdentityKey.verify_alternate_identity`)."""
        return self.private_key.sign(_ALTERNATE_IDENTITY_PREFIX + other.to_bytes(), rng)

    def to_bytes(self) -> bytes:
        """Serialize (contains the private key: store it safely)."""
        return codec.encode_identity_key_pair(
            codec.IdentityKeyPairFields(self.identity_key.to_bytes(), self.private_key.to_bytes())
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> IdentityKeyPair:
        """Parse a stored identity key pair.

        Raises:
            DecodeError: malformed record (UnsupportedVersionError for another version).
            InvalidKeyError: the public key has a bad type byte.
        """
        f = codec.decode_identity_key_pair(data)
        return cls(IdentityKey.from_bytes(f.public_key), PrivateKey.from_bytes(f.private_key))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IdentityKeyPair):
            return NotImplemented
        return constant_time_eq(self.to_bytes(), other.to_bytes())

    def __hash__(self) -> int:
        return hash(self.identity_key)


def generate_registration_id(rng: Rng) -> int:
    """A random registration id in 1..0x3FFF (14 bits, as sealed sender v2 needs)."""
    while True:
        value = int.from_bytes(rng.random_bytes(2), "big") & REGISTRATION_ID_MASK
        if value:
            return value


@dataclass(frozen=True, slots=True, eq=False)
class PreKeyRecord:
    """A one-time EC prekey with its private key.

    Attributes:
        id: the prekey id (u32).
        key_pair: the key pair.
    """

    id: int
    key_pair: KeyPair = field(repr=False)

    @classmethod
    def generate(cls, id: int, rng: Rng) -> PreKeyRecord:
        """A fresh one-time prekey.

        Raises:
            UsageError: ``id`` is not a u32.
        """
        _check_uint(id, _UINT32_MAX, "prekey id")
        return cls(id, KeyPair.generate(rng))

    @property
    def public_key(self) -> PublicKey:
        """The public half."""
        return self.key_pair.public_key

    def to_bytes(self) -> bytes:
        """Serialize (contains the private key)."""
        return codec.encode_pre_key_record(
            codec.PreKeyRecordFields(
                self.id, self.key_pair.public_key.to_bytes(), self.key_pair.private_key.to_bytes()
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> PreKeyRecord:
        """Parse a stored record.

        Raises:
            DecodeError: malformed record.
            InvalidKeyError: bad public key.
        """
        f = codec.decode_pre_key_record(data)
        return cls(
            f.id, KeyPair(PrivateKey.from_bytes(f.private_key), PublicKey.from_bytes(f.public_key))
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PreKeyRecord):
            return NotImplemented
        return constant_time_eq(self.to_bytes(), other.to_bytes())

    def __hash__(self) -> int:
        return hash(self.id)


@dataclass(frozen=True, slots=True, eq=False)
class SignedPreKeyRecord:
    """A signed EC prekey with its private key.

    Attributes:
        id: the signed prekey id (u32).
        timestamp: creation time, Unix milliseconds.
        key_pair: the key pair.
        signature: XEdDSA by the identity key over ``0x05 || public key``.
    """

    id: int
    timestamp: int
    key_pair: KeyPair = field(repr=False)
    signature: bytes = field(repr=False)

    @classmethod
    def generate(
        cls, id: int, identity_key_pair: IdentityKeyPair, timestamp: int, rng: Rng
    ) -> SignedPreKeyRecord:
        """A fresh signed prekey, signed by ``identity_key_pair``.

        Raises:
            UsageError: ``id`` is not a u32 or ``timestamp`` not a u64.
        """
        _check_uint(id, _UINT32_MAX, "signed prekey id")
        _check_uint(timestamp, _UINT64_MAX, "timestamp")
        pair = KeyPair.generate(rng)
        signature = identity_key_pair.sign(pair.public_key.to_bytes(), rng)
        return cls(id, timestamp, pair, signature)

    @property
    def public_key(self) -> PublicKey:
        """The public half."""
        return self.key_pair.public_key

    def to_bytes(self) -> bytes:
        """Serialize (contains the private key)."""
        return codec.encode_signed_pre_key_record(
            codec.SignedPreKeyRecordFields(
                self.id,
                self.timestamp,
                self.key_pair.public_key.to_bytes(),
                self.key_pair.private_key.to_bytes(),
                self.signature,
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedPreKeyRecord:
        """Parse a stored record.

        Raises:
            DecodeError: malformed record.
            InvalidKeyError: bad public key.
        """
        f = codec.decode_signed_pre_key_record(data)
        pair = KeyPair(PrivateKey.from_bytes(f.private_key), PublicKey.from_bytes(f.public_key))
        return cls(f.id, f.timestamp, pair, f.signature)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SignedPreKeyRecord):
            return NotImplemented
        return constant_time_eq(self.to_bytes(), other.to_bytes())

    def __hash__(self) -> int:
        return hash(self.id)


@dataclass(frozen=True, slots=True, eq=False)
class KyberPreKeyRecord:
    """A signed Kyber1024 prekey with its secret (kept as the 64-byte seed).

    Attributes:
        id: the Kyber prekey id (u32).
        timestamp: creation time, Unix milliseconds.
        key_pair: the Kyber key pair.
        signature: XEdDSA by the identity key over ``0x08 || public key``.
    """

    id: int
    timestamp: int
    key_pair: KyberKeyPair = field(repr=False)
    signature: bytes = field(repr=False)

    @classmethod
    def generate(
        cls, id: int, identity_key_pair: IdentityKeyPair, timestamp: int, rng: Rng
    ) -> KyberPreKeyRecord:
        """A fresh Kyber prekey, signed by ``identity_key_pair``.

        Raises:
            UsageError: ``id`` is not a u32 or ``timestamp`` not a u64.
        """
        _check_uint(id, _UINT32_MAX, "Kyber prekey id")
        _check_uint(timestamp, _UINT64_MAX, "timestamp")
        pair = KyberKeyPair.generate(rng)
        signature = identity_key_pair.sign(pair.public_key.to_bytes(), rng)
        return cls(id, timestamp, pair, signature)

    @property
    def public_key(self) -> KyberPublicKey:
        """The public half."""
        return self.key_pair.public_key

    def to_bytes(self) -> bytes:
        """Serialize (contains the seed)."""
        return codec.encode_kyber_pre_key_record(
            codec.KyberPreKeyRecordFields(
                self.id, self.timestamp, self.key_pair.seed, self.signature
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> KyberPreKeyRecord:
        """Parse a stored record (recomputes the key pair from the seed).

        Raises:
            DecodeError: malformed record.
        """
        f = codec.decode_kyber_pre_key_record(data)
        return cls(f.id, f.timestamp, KyberKeyPair.from_seed(f.seed), f.signature)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KyberPreKeyRecord):
            return NotImplemented
        return constant_time_eq(self.to_bytes(), other.to_bytes())

    def __hash__(self) -> int:
        return hash(self.id)


@dataclass(frozen=True, slots=True, eq=False)
class PreKeyBundle:
    """A peer's published keys, as needed to start a PQXDH session.

    Attributes:
        registration_id: the peer's registration id.
        device_id: the peer's device id (1..127).
        pre_key_id: one-time prekey id, or None if the peer ran out.
        pre_key_public: one-time prekey, or None (together with ``pre_key_id``).
        signed_pre_key_id: signed prekey id.
        signed_pre_key_public: signed prekey.
        signed_pre_key_signature: identity's XEdDSA over ``0x05 || signed prekey``.
        identity_key: the peer's identity.
        kyber_pre_key_id: Kyber prekey id.
        kyber_pre_key_public: Kyber1024 public key.
        kyber_pre_key_signature: identity's XEdDSA over ``0x08 || Kyber key``.

    Raises:
        UsageError: on construction, if the device id is not 1..127, an id is out of range, or
            exactly one of ``pre_key_id`` / ``pre_key_public`` is None.
    """

    registration_id: int
    device_id: int
    pre_key_id: int | None
    pre_key_public: PublicKey | None
    signed_pre_key_id: int
    signed_pre_key_public: PublicKey
    signed_pre_key_signature: bytes = field(repr=False)
    identity_key: IdentityKey = field(repr=False)
    kyber_pre_key_id: int
    kyber_pre_key_public: KyberPublicKey = field(repr=False)
    kyber_pre_key_signature: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if type(self.device_id) is not int or not 1 <= self.device_id <= MAX_DEVICE_ID:
            raise UsageError("device id must be an integer in 1..127")
        _check_uint(self.registration_id, _UINT32_MAX, "registration_id")
        _check_uint(self.signed_pre_key_id, _UINT32_MAX, "signed_pre_key_id")
        _check_uint(self.kyber_pre_key_id, _UINT32_MAX, "kyber_pre_key_id")
        if (self.pre_key_id is None) != (self.pre_key_public is None):
            raise UsageError("pre_key_id and pre_key_public go together")
        if self.pre_key_id is not None:
            _check_uint(self.pre_key_id, _UINT32_MAX, "pre_key_id")
        if not isinstance(self.kyber_pre_key_public, KyberPublicKey):
            raise UsageError("a Kyber prekey is required (PQXDH)")

    def verify_signatures(self) -> None:
        """Check both prekey signatures against the bundle's identity key.

        Raises:
            InvalidSignatureError: either signature does not verify.
        """
        identity = self.identity_key.public_key
        identity.verify(self.signed_pre_key_public.to_bytes(), self.signed_pre_key_signature)
        identity.verify(self.kyber_pre_key_public.to_bytes(), self.kyber_pre_key_signature)

    def to_bytes(self) -> bytes:
        """Serialize (public material only)."""
        return codec.encode_pre_key_bundle(
            codec.PreKeyBundleFields(
                registration_id=self.registration_id,
                device_id=self.device_id,
                pre_key_id=self.pre_key_id,
                pre_key_public=None
                if self.pre_key_public is None
                else self.pre_key_public.to_bytes(),
                signed_pre_key_id=self.signed_pre_key_id,
                signed_pre_key_public=self.signed_pre_key_public.to_bytes(),
                signed_pre_key_signature=self.signed_pre_key_signature,
                identity_key=self.identity_key.to_bytes(),
                kyber_pre_key_id=self.kyber_pre_key_id,
                kyber_pre_key_public=self.kyber_pre_key_public.to_bytes(),
                kyber_pre_key_signature=self.kyber_pre_key_signature,
            )
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> PreKeyBundle:
        """Parse a bundle (signatures are not checked: call :meth:`verify_signatures`).

        Raises:
            DecodeError: malformed bytes, unsupported version, device id not in 1..127.
            InvalidKeyError: a key has a bad type byte.
        """
        f = codec.decode_pre_key_bundle(data)
        if not 1 <= f.device_id <= MAX_DEVICE_ID:
            raise DecodeError("PreKeyBundle: device id out of range")
        return cls(
            registration_id=f.registration_id,
            device_id=f.device_id,
            pre_key_id=f.pre_key_id,
            pre_key_public=None
            if f.pre_key_public is None
            else PublicKey.from_bytes(f.pre_key_public),
            signed_pre_key_id=f.signed_pre_key_id,
            signed_pre_key_public=PublicKey.from_bytes(f.signed_pre_key_public),
            signed_pre_key_signature=f.signed_pre_key_signature,
            identity_key=IdentityKey.from_bytes(f.identity_key),
            kyber_pre_key_id=f.kyber_pre_key_id,
            kyber_pre_key_public=KyberPublicKey.from_bytes(f.kyber_pre_key_public),
            kyber_pre_key_signature=f.kyber_pre_key_signature,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PreKeyBundle):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    def __hash__(self) -> int:
        return hash((self.registration_id, self.device_id, self.signed_pre_key_id))
