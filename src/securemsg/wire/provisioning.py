"""Provisioning bytes: Signal's ``ProvisionEnvelope`` and ``ProvisionMessage`` protobufs.

Theory of operation
-------------------
``proto/provisioning.proto`` has Signal's field numbers (Signal-Android
``lib/libsignal-service/src/main/protowire/Provisioning.proto``)::

    ProvisionEnvelope { publicKey = 1 (0x05 || u), body = 2 (the provisioning ciphertext) }
    ProvisionMessage  { aciIdentityKeyPublic = 1, aciIdentityKeyPrivate = 2, number = 3,
                        provisioningCode = 4, userAgent = 5, profileKey = 6, readReceipts = 7,
                        aci = 8, provisioningVersion = 9, pni = 10, pniIdentityKeyPublic = 11,
                        pniIdentityKeyPrivate = 12, masterKey = 13, ephemeralBackupKey = 14,
                        accountEntropyPool = 15, mediaRootBackupKey = 16, aciBinary = 17,
                        pniBinary = 18, authCredentialSalt = 19,
                        securemsg: accessKey = 1001, trustRoot = 1002, relayUrl = 1003 }

This module moves bytes only: :class:`ProvisionMessageFields` holds plain values (``None`` for
an absent field) and the codecs check framing and UTF-8. Which fields are required and how long
each must be is :mod:`securemsg.provisioning`'s business. Decoders raise only
:class:`~securemsg.errors.DecodeError`. Unknown fields are skipped (a newer Signal may add some).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.message import DecodeError as _ProtoDecodeError

from securemsg._proto import provisioning_pb2
from securemsg.errors import DecodeError, UsageError

__all__ = [
    "PROVISIONING_VERSION_CURRENT",
    "ProvisionEnvelopeFields",
    "ProvisionMessageFields",
    "decode_provision_envelope",
    "decode_provision_message",
    "encode_provision_envelope",
    "encode_provision_message",
]

#: Signal's ``ProvisioningVersion.CURRENT`` (``TABLET_SUPPORT``).
PROVISIONING_VERSION_CURRENT = 1

_BYTES_FIELDS = (
    "aciIdentityKeyPublic",
    "aciIdentityKeyPrivate",
    "pniIdentityKeyPublic",
    "pniIdentityKeyPrivate",
    "profileKey",
    "masterKey",
    "ephemeralBackupKey",
    "mediaRootBackupKey",
    "aciBinary",
    "pniBinary",
    "authCredentialSalt",
    "securemsgAccessKey",
    "securemsgTrustRoot",
)
_STRING_FIELDS = (
    "aci",
    "pni",
    "number",
    "provisioningCode",
    "userAgent",
    "accountEntropyPool",
    "securemsgRelayUrl",
)


@dataclass(frozen=True, slots=True)
class ProvisionEnvelopeFields:
    """A parsed ProvisionEnvelope (``None``: the field was absent)."""

    public_key: bytes | None
    body: bytes | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class ProvisionMessageFields:
    """Every field of a ProvisionMessage, by its protobuf name; ``None`` when absent.

    Holds private keys: ``repr`` shows none of the values.
    """

    aciIdentityKeyPublic: bytes | None = field(default=None, repr=False)
    aciIdentityKeyPrivate: bytes | None = field(default=None, repr=False)
    pniIdentityKeyPublic: bytes | None = field(default=None, repr=False)
    pniIdentityKeyPrivate: bytes | None = field(default=None, repr=False)
    aci: str | None = field(default=None, repr=False)
    pni: str | None = field(default=None, repr=False)
    number: str | None = field(default=None, repr=False)
    provisioningCode: str | None = field(default=None, repr=False)
    userAgent: str | None = field(default=None, repr=False)
    profileKey: bytes | None = field(default=None, repr=False)
    readReceipts: bool | None = field(default=None, repr=False)
    provisioningVersion: int | None = field(default=None, repr=False)
    masterKey: bytes | None = field(default=None, repr=False)
    ephemeralBackupKey: bytes | None = field(default=None, repr=False)
    accountEntropyPool: str | None = field(default=None, repr=False)
    mediaRootBackupKey: bytes | None = field(default=None, repr=False)
    aciBinary: bytes | None = field(default=None, repr=False)
    pniBinary: bytes | None = field(default=None, repr=False)
    authCredentialSalt: bytes | None = field(default=None, repr=False)
    securemsgAccessKey: bytes | None = field(default=None, repr=False)
    securemsgTrustRoot: bytes | None = field(default=None, repr=False)
    securemsgRelayUrl: str | None = field(default=None, repr=False)


def _input(data: object, what: str) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise DecodeError(what + " must be bytes")


def _parse(pb: object, data: bytes, what: str) -> None:
    try:
        pb.ParseFromString(data)  # type: ignore[attr-defined]
    except _ProtoDecodeError:
        raise DecodeError(what + ": invalid protobuf") from None
    except (ValueError, RecursionError):  # pragma: no cover - depends on the protobuf runtime
        raise DecodeError(what + ": invalid protobuf") from None


def encode_provision_envelope(public_key: bytes, body: bytes) -> bytes:
    """The ProvisionEnvelope bytes (both fields set)."""
    return provisioning_pb2.ProvisionEnvelope(publicKey=public_key, body=body).SerializeToString()


def decode_provision_envelope(data: bytes) -> ProvisionEnvelopeFields:
    """Parse a ProvisionEnvelope; absent fields come back as ``None``.

    Raises:
        DecodeError: not bytes, or not a protobuf.
    """
    data = _input(data, "ProvisionEnvelope")
    pb = provisioning_pb2.ProvisionEnvelope()
    _parse(pb, data, "ProvisionEnvelope")
    return ProvisionEnvelopeFields(
        pb.publicKey if pb.HasField("publicKey") else None,
        pb.body if pb.HasField("body") else None,
    )


def encode_provision_message(fields: ProvisionMessageFields) -> bytes:
    """The ProvisionMessage bytes; ``None`` fields are left out.

    Raises:
        UsageError: a field of the wrong type.
    """
    pb = provisioning_pb2.ProvisionMessage()
    for name in _BYTES_FIELDS:
        value = getattr(fields, name)
        if value is not None:
            if not isinstance(value, bytes):
                raise UsageError(name + " must be bytes")
            setattr(pb, name, value)
    for name in _STRING_FIELDS:
        value = getattr(fields, name)
        if value is not None:
            if not isinstance(value, str):
                raise UsageError(name + " must be a str")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise UsageError(name + " is not encodable as UTF-8") from None
            setattr(pb, name, value)
    if fields.readReceipts is not None:
        pb.readReceipts = bool(fields.readReceipts)
    if fields.provisioningVersion is not None:
        version = fields.provisioningVersion
        if type(version) is not int or not 0 <= version <= 0xFFFFFFFF:
            raise UsageError("provisioningVersion out of range")
        pb.provisioningVersion = version
    return pb.SerializeToString()


def decode_provision_message(data: bytes) -> ProvisionMessageFields:
    """Parse a ProvisionMessage into its fields (``None`` when absent).

    Raises:
        DecodeError: not bytes, not a protobuf, or a string field that is not UTF-8.
    """
    data = _input(data, "ProvisionMessage")
    pb = provisioning_pb2.ProvisionMessage()
    _parse(pb, data, "ProvisionMessage")
    values: dict[str, object] = {}
    for name in _BYTES_FIELDS:
        if pb.HasField(name):
            values[name] = bytes(getattr(pb, name))
    for name in _STRING_FIELDS:
        if pb.HasField(name):
            value: object = getattr(pb, name)
            # A proto2 string that is not UTF-8 comes back as bytes from the upb runtime.
            if not isinstance(value, str):
                raise DecodeError("ProvisionMessage: " + name + " is not UTF-8")
            values[name] = value
    if pb.HasField("readReceipts"):
        values["readReceipts"] = pb.readReceipts
    if pb.HasField("provisioningVersion"):
        values["provisioningVersion"] = pb.provisioningVersion
    return ProvisionMessageFields(**values)  # type: ignore[arg-type]
