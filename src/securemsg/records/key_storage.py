"""Storage codecs for identity and prekey records and prekey bundles (``proto/storage.proto``).

Theory of operation
-------------------
These are *our* formats (libsignal does not define a portable one for bundles, and we keep the
Kyber prekey as its 64-byte seed). This module only moves bytes: each codec turns a small
``*Fields`` value of plain bytes and integers into protobuf bytes and back, checking the
version and every length. Building key objects (and the ``InvalidKeyError`` a bad key type byte
gives) is left to :mod:`securemsg.protocol.identity_and_prekeys`, which must not import ``_proto``.

Versioning: every record carries ``version = 1`` (:data:`RECORD_VERSION`); a decoder refuses any
other value with :class:`~securemsg.errors.UnsupportedVersionError`. Decoders raise only
:class:`~securemsg.errors.DecodeError` (or that subclass). A store that reads a corrupt record
should translate it to :class:`~securemsg.errors.StorageError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.message import DecodeError as _ProtoDecodeError

from securemsg._proto import storage_pb2
from securemsg.errors import DecodeError, UnsupportedVersionError, UsageError

__all__ = [
    "RECORD_VERSION",
    "IdentityKeyPairFields",
    "KyberPreKeyRecordFields",
    "PreKeyBundleFields",
    "PreKeyRecordFields",
    "SignedPreKeyRecordFields",
    "decode_identity_key_pair",
    "decode_kyber_pre_key_record",
    "decode_pre_key_bundle",
    "decode_pre_key_record",
    "decode_signed_pre_key_record",
    "encode_identity_key_pair",
    "encode_kyber_pre_key_record",
    "encode_pre_key_bundle",
    "encode_pre_key_record",
    "encode_signed_pre_key_record",
]

#: Current layout version of every record in storage.proto.
RECORD_VERSION = 1

EC_PUBLIC_KEY_LENGTH = 33
EC_PRIVATE_KEY_LENGTH = 32
SIGNATURE_LENGTH = 64
KYBER_SEED_LENGTH = 64
KYBER_PUBLIC_KEY_LENGTH = 1569
_UINT32_MAX = 0xFFFFFFFF
_UINT64_MAX = 0xFFFFFFFFFFFFFFFF


@dataclass(frozen=True, slots=True)
class IdentityKeyPairFields:
    public_key: bytes
    private_key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class PreKeyRecordFields:
    id: int
    public_key: bytes
    private_key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SignedPreKeyRecordFields:
    id: int
    timestamp: int
    public_key: bytes
    private_key: bytes = field(repr=False)
    signature: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class KyberPreKeyRecordFields:
    id: int
    timestamp: int
    seed: bytes = field(repr=False)
    signature: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class PreKeyBundleFields:
    registration_id: int
    device_id: int
    pre_key_id: int | None
    pre_key_public: bytes | None
    signed_pre_key_id: int
    signed_pre_key_public: bytes
    signed_pre_key_signature: bytes
    identity_key: bytes
    kyber_pre_key_id: int
    kyber_pre_key_public: bytes
    kyber_pre_key_signature: bytes


def _check_int(value: int, maximum: int, what: str) -> None:
    if type(value) is not int or not 0 <= value <= maximum:
        raise UsageError(what + " out of range")


def _check_len(value: bytes, length: int, what: str) -> None:
    if len(value) != length:
        raise UsageError(what + " has the wrong length")


def _parse(message: object, data: bytes, what: str) -> None:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise UsageError(what + " expects bytes")
    try:
        message.ParseFromString(bytes(data))  # type: ignore[attr-defined]
    except _ProtoDecodeError:
        raise DecodeError(what + ": invalid protobuf") from None
    version = message.version  # type: ignore[attr-defined]
    if version != RECORD_VERSION:
        raise UnsupportedVersionError(what + ": unsupported record version", version=version)


def _need_len(value: bytes, length: int, what: str) -> bytes:
    if len(value) != length:
        raise DecodeError(what + " has the wrong length")
    return value


# -- identity key pair --------------------------------------------------------------------


def encode_identity_key_pair(fields: IdentityKeyPairFields) -> bytes:
    """Serialize an identity key pair.

    Raises:
        UsageError: a key has the wrong length.
    """
    _check_len(fields.public_key, EC_PUBLIC_KEY_LENGTH, "public_key")
    _check_len(fields.private_key, EC_PRIVATE_KEY_LENGTH, "private_key")
    pb = storage_pb2.IdentityKeyPairStructure(
        version=RECORD_VERSION, public_key=fields.public_key, private_key=fields.private_key
    )
    return bytes(pb.SerializeToString())


def decode_identity_key_pair(data: bytes) -> IdentityKeyPairFields:
    """Parse an identity key pair record.

    Raises:
        UnsupportedVersionError: the record version is not 1.
        DecodeError: bad protobuf or wrong key lengths.
    """
    pb = storage_pb2.IdentityKeyPairStructure()
    _parse(pb, data, "IdentityKeyPair")
    return IdentityKeyPairFields(
        _need_len(pb.public_key, EC_PUBLIC_KEY_LENGTH, "IdentityKeyPair public key"),
        _need_len(pb.private_key, EC_PRIVATE_KEY_LENGTH, "IdentityKeyPair private key"),
    )


# -- one-time prekey ----------------------------------------------------------------------


def encode_pre_key_record(fields: PreKeyRecordFields) -> bytes:
    """Serialize a one-time prekey record.

    Raises:
        UsageError: id out of u32 range or a key has the wrong length.
    """
    _check_int(fields.id, _UINT32_MAX, "id")
    _check_len(fields.public_key, EC_PUBLIC_KEY_LENGTH, "public_key")
    _check_len(fields.private_key, EC_PRIVATE_KEY_LENGTH, "private_key")
    pb = storage_pb2.PreKeyRecordStructure(
        version=RECORD_VERSION,
        id=fields.id,
        public_key=fields.public_key,
        private_key=fields.private_key,
    )
    return bytes(pb.SerializeToString())


def decode_pre_key_record(data: bytes) -> PreKeyRecordFields:
    """Parse a one-time prekey record.

    Raises:
        UnsupportedVersionError: the record version is not 1.
        DecodeError: bad protobuf or wrong key lengths.
    """
    pb = storage_pb2.PreKeyRecordStructure()
    _parse(pb, data, "PreKeyRecord")
    return PreKeyRecordFields(
        pb.id,
        _need_len(pb.public_key, EC_PUBLIC_KEY_LENGTH, "PreKeyRecord public key"),
        _need_len(pb.private_key, EC_PRIVATE_KEY_LENGTH, "PreKeyRecord private key"),
    )


# -- signed prekey ------------------------------------------------------------------------


def encode_signed_pre_key_record(fields: SignedPreKeyRecordFields) -> bytes:
    """Serialize a signed prekey record.

    Raises:
        UsageError: id/timestamp out of range or a key/signature has the wrong length.
    """
    _check_int(fields.id, _UINT32_MAX, "id")
    _check_int(fields.timestamp, _UINT64_MAX, "timestamp")
    _check_len(fields.public_key, EC_PUBLIC_KEY_LENGTH, "public_key")
    _check_len(fields.private_key, EC_PRIVATE_KEY_LENGTH, "private_key")
    _check_len(fields.signature, SIGNATURE_LENGTH, "signature")
    pb = storage_pb2.SignedPreKeyRecordStructure(
        version=RECORD_VERSION,
        id=fields.id,
        timestamp=fields.timestamp,
        public_key=fields.public_key,
        private_key=fields.private_key,
        signature=fields.signature,
    )
    return bytes(pb.SerializeToString())


def decode_signed_pre_key_record(data: bytes) -> SignedPreKeyRecordFields:
    """Parse a signed prekey record.

    Raises:
        UnsupportedVersionError: the record version is not 1.
        DecodeError: bad protobuf or wrong key/signature lengths.
    """
    pb = storage_pb2.SignedPreKeyRecordStructure()
    _parse(pb, data, "SignedPreKeyRecord")
    return SignedPreKeyRecordFields(
        pb.id,
        pb.timestamp,
        _need_len(pb.public_key, EC_PUBLIC_KEY_LENGTH, "SignedPreKeyRecord public key"),
        _need_len(pb.private_key, EC_PRIVATE_KEY_LENGTH, "SignedPreKeyRecord private key"),
        _need_len(pb.signature, SIGNATURE_LENGTH, "SignedPreKeyRecord signature"),
    )


# -- Kyber prekey -------------------------------------------------------------------------


def encode_kyber_pre_key_record(fields: KyberPreKeyRecordFields) -> bytes:
    """Serialize a Kyber prekey record (seed only).

    Raises:
        UsageError: id/timestamp out of range or seed/signature has the wrong length.
    """
    _check_int(fields.id, _UINT32_MAX, "id")
    _check_int(fields.timestamp, _UINT64_MAX, "timestamp")
    _check_len(fields.seed, KYBER_SEED_LENGTH, "seed")
    _check_len(fields.signature, SIGNATURE_LENGTH, "signature")
    pb = storage_pb2.KyberPreKeyRecordStructure(
        version=RECORD_VERSION,
        id=fields.id,
        timestamp=fields.timestamp,
        seed=fields.seed,
        signature=fields.signature,
    )
    return bytes(pb.SerializeToString())


def decode_kyber_pre_key_record(data: bytes) -> KyberPreKeyRecordFields:
    """Parse a Kyber prekey record.

    Raises:
        UnsupportedVersionError: the record version is not 1.
        DecodeError: bad protobuf or wrong seed/signature lengths.
    """
    pb = storage_pb2.KyberPreKeyRecordStructure()
    _parse(pb, data, "KyberPreKeyRecord")
    return KyberPreKeyRecordFields(
        pb.id,
        pb.timestamp,
        _need_len(pb.seed, KYBER_SEED_LENGTH, "KyberPreKeyRecord seed"),
        _need_len(pb.signature, SIGNATURE_LENGTH, "KyberPreKeyRecord signature"),
    )


# -- prekey bundle ------------------------------------------------------------------------


def encode_pre_key_bundle(fields: PreKeyBundleFields) -> bytes:
    """Serialize a prekey bundle.

    Raises:
        UsageError: an id out of range, a key or signature of the wrong length, or exactly
            one of ``pre_key_id`` / ``pre_key_public`` given.
    """
    for value, what in (
        (fields.registration_id, "registration_id"),
        (fields.device_id, "device_id"),
        (fields.signed_pre_key_id, "signed_pre_key_id"),
        (fields.kyber_pre_key_id, "kyber_pre_key_id"),
    ):
        _check_int(value, _UINT32_MAX, what)
    if (fields.pre_key_id is None) != (fields.pre_key_public is None):
        raise UsageError("pre_key_id and pre_key_public go together")
    _check_len(fields.signed_pre_key_public, EC_PUBLIC_KEY_LENGTH, "signed_pre_key_public")
    _check_len(fields.signed_pre_key_signature, SIGNATURE_LENGTH, "signed_pre_key_signature")
    _check_len(fields.identity_key, EC_PUBLIC_KEY_LENGTH, "identity_key")
    _check_len(fields.kyber_pre_key_public, KYBER_PUBLIC_KEY_LENGTH, "kyber_pre_key_public")
    _check_len(fields.kyber_pre_key_signature, SIGNATURE_LENGTH, "kyber_pre_key_signature")
    pb = storage_pb2.PreKeyBundleStructure(
        version=RECORD_VERSION,
        registration_id=fields.registration_id,
        device_id=fields.device_id,
        signed_pre_key_id=fields.signed_pre_key_id,
        signed_pre_key_public=fields.signed_pre_key_public,
        signed_pre_key_signature=fields.signed_pre_key_signature,
        identity_key=fields.identity_key,
        kyber_pre_key_id=fields.kyber_pre_key_id,
        kyber_pre_key_public=fields.kyber_pre_key_public,
        kyber_pre_key_signature=fields.kyber_pre_key_signature,
    )
    if fields.pre_key_id is not None and fields.pre_key_public is not None:
        _check_int(fields.pre_key_id, _UINT32_MAX, "pre_key_id")
        _check_len(fields.pre_key_public, EC_PUBLIC_KEY_LENGTH, "pre_key_public")
        pb.pre_key_id = fields.pre_key_id
        pb.pre_key_public = fields.pre_key_public
    return bytes(pb.SerializeToString())


def decode_pre_key_bundle(data: bytes) -> PreKeyBundleFields:
    """Parse a prekey bundle.

    Raises:
        UnsupportedVersionError: the record version is not 1.
        DecodeError: bad protobuf, a key or signature of the wrong length, or a one-time
            prekey id without its key (or the reverse).
    """
    pb = storage_pb2.PreKeyBundleStructure()
    _parse(pb, data, "PreKeyBundle")
    pre_key_id: int | None
    pre_key_public: bytes | None
    if pb.HasField("pre_key_id"):
        pre_key_id = pb.pre_key_id
        pre_key_public = _need_len(pb.pre_key_public, EC_PUBLIC_KEY_LENGTH, "PreKeyBundle prekey")
    elif pb.pre_key_public:
        raise DecodeError("PreKeyBundle: prekey without an id")
    else:
        pre_key_id = pre_key_public = None
    return PreKeyBundleFields(
        registration_id=pb.registration_id,
        device_id=pb.device_id,
        pre_key_id=pre_key_id,
        pre_key_public=pre_key_public,
        signed_pre_key_id=pb.signed_pre_key_id,
        signed_pre_key_public=_need_len(
            pb.signed_pre_key_public, EC_PUBLIC_KEY_LENGTH, "PreKeyBundle signed prekey"
        ),
        signed_pre_key_signature=_need_len(
            pb.signed_pre_key_signature, SIGNATURE_LENGTH, "PreKeyBundle signed prekey signature"
        ),
        identity_key=_need_len(pb.identity_key, EC_PUBLIC_KEY_LENGTH, "PreKeyBundle identity key"),
        kyber_pre_key_id=pb.kyber_pre_key_id,
        kyber_pre_key_public=_need_len(
            pb.kyber_pre_key_public, KYBER_PUBLIC_KEY_LENGTH, "PreKeyBundle Kyber prekey"
        ),
        kyber_pre_key_signature=_need_len(
            pb.kyber_pre_key_signature, SIGNATURE_LENGTH, "PreKeyBundle Kyber prekey signature"
        ),
    )
