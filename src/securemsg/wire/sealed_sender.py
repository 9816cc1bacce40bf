"""Sealed-sender bytes: certificates, the inner content (USMC) and the v1/v2 envelopes.

Theory of operation
-------------------
Protobuf parts (``proto/sealed_sender.proto``, libsignal's field numbers):
``ServerCertificate{certificate, signature}`` wrapping ``Certificate{id, key}``;
``SenderCertificate{certificate, signature}`` wrapping ``Certificate{senderE164, uuid (string
or bytes), senderDevice, expires, identityKey, signer (embedded server cert or id)}``;
``UnidentifiedSenderMessage.Message`` (the USMC) and the v1 envelope
``0x11 || UnidentifiedSenderMessage{ephemeralPublic, encryptedStatic, encryptedMessage}``.

Hand-framed parts (sealed sender v2, libsignal ``rust/protocol/src/sealed_sender.rs``)::

    sent     0x23 || varint(n) || { ServiceId(17) || {dev u8 || reg u16 BE (0x8000 = more)}+
                                     || C(32) || AT(16) }*  || excluded {ServiceId(17) || 0x00}*
                  || E(32) || AES-GCM-SIV ciphertext       (0x22: 16-byte ACI uuids instead)
    received 0x22 || C(32) || AT(16) || E(32) || ciphertext

This module moves bytes only: decoders return plain values (bytes, ints, strings) and check
framing, required fields and lengths; key objects and signatures are the protocol layer's.
Every decoder raises only :class:`~securemsg.errors.DecodeError` or its subclass
:class:`~securemsg.errors.UnsupportedVersionError` on hostile input.

Known difference: an unknown ``contentHint`` value is kept by libsignal (``Unknown(n)``) but is
dropped by the proto2 closed enum here (read as the default); the USMC bytes themselves are
never re-encoded, so nothing on the wire changes.

Sealed sender lives in three modules, one per layer:

* :mod:`securemsg.sealed_sender` -- the recipes over a store (what an application calls);
* :mod:`securemsg.protocol.sealed_sender` -- the cryptography (certificates, sealing and
  unsealing, pure: no store);
* :mod:`securemsg.wire.sealed_sender` -- the bytes (protobuf and hand-framed v2 formats).
This module is the third: the bytes only, no cryptography.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError as _ProtoDecodeError

from securemsg._proto import sealed_sender_pb2
from securemsg.errors import DecodeError, UnsupportedVersionError

__all__ = [
    "SEALED_SENDER_V1_VERSION",
    "SEALED_SENDER_V2_SERVICE_ID_VERSION",
    "SEALED_SENDER_V2_UUID_VERSION",
    "ReceivedV2Fields",
    "SenderCertificateFields",
    "SentV2Fields",
    "SentV2Recipient",
    "ServerCertificateFields",
    "UsmcFields",
    "V1EnvelopeFields",
    "decode_envelope_version",
    "decode_received_v2",
    "decode_sender_certificate",
    "decode_sent_v2",
    "decode_server_certificate",
    "decode_usmc",
    "decode_v1_envelope",
    "encode_sender_certificate",
    "encode_server_certificate",
    "encode_usmc",
    "encode_v1_envelope",
    "encode_varint",
    "wrap_certificate",
]

SEALED_SENDER_V1_VERSION = 0x11
SEALED_SENDER_V2_UUID_VERSION = 0x22
SEALED_SENDER_V2_SERVICE_ID_VERSION = 0x23

MESSAGE_KEY_LENGTH = 32
AUTH_TAG_LENGTH = 16
RAW_PUBLIC_KEY_LENGTH = 32
_SERVICE_ID_LENGTH = 17
_UUID_LENGTH = 16
_MAX_DEVICE_ID = 127
_REGISTRATION_ID_MASK = 0x3FFF
_HAS_MORE = 0x8000
_USMC_TYPES = frozenset((1, 2, 7, 8))


def _bytes(data: object, what: str) -> bytes:
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise DecodeError(what + " must be bytes")


def _parse(pb: object, data: bytes, what: str) -> None:
    try:
        pb.ParseFromString(data)  # type: ignore[attr-defined]
    except _ProtoDecodeError:
        raise DecodeError(what + ": invalid protobuf") from None


# --- certificates -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerCertificateFields:
    """A parsed ServerCertificate. ``serialized`` is the exact outer bytes."""

    serialized: bytes = field(repr=False)
    certificate: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    key_id: int
    key: bytes = field(repr=False)


def encode_server_certificate(key_id: int, key: bytes) -> bytes:
    """The inner ``ServerCertificate.Certificate`` bytes (to be signed)."""
    return sealed_sender_pb2.ServerCertificate.Certificate(id=key_id, key=key).SerializeToString()


def wrap_certificate(certificate: bytes, signature: bytes) -> bytes:
    """The outer ``{certificate, signature}`` (same layout for server and sender certs)."""
    return sealed_sender_pb2.ServerCertificate(
        certificate=certificate, signature=signature
    ).SerializeToString()


def decode_server_certificate(data: bytes) -> ServerCertificateFields:
    """Parse a ServerCertificate; id, key, certificate and signature are required.

    Raises:
        DecodeError: malformed.
    """
    data = _bytes(data, "ServerCertificate")
    pb = sealed_sender_pb2.ServerCertificate()
    _parse(pb, data, "ServerCertificate")
    if not (pb.HasField("certificate") and pb.HasField("signature")):
        raise DecodeError("ServerCertificate: missing field")
    inner = sealed_sender_pb2.ServerCertificate.Certificate()
    _parse(inner, pb.certificate, "ServerCertificate.Certificate")
    if not (inner.HasField("id") and inner.HasField("key")):
        raise DecodeError("ServerCertificate.Certificate: missing field")
    return ServerCertificateFields(data, pb.certificate, pb.signature, inner.id, inner.key)


@dataclass(frozen=True, slots=True)
class SenderCertificateFields:
    """A parsed SenderCertificate. ``signer`` is embedded ServerCertificate bytes or an id."""

    serialized: bytes = field(repr=False)
    certificate: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    sender_uuid: str
    sender_e164: str | None
    sender_device_id: int
    expiration: int
    identity_key: bytes = field(repr=False)
    signer: bytes | int = field(repr=False)


def encode_sender_certificate(
    *,
    sender_uuid: str,
    sender_e164: str | None,
    sender_device_id: int,
    expiration: int,
    identity_key: bytes,
    signer: bytes,
) -> bytes:
    """The inner ``SenderCertificate.Certificate`` bytes (uuidString + embedded signer)."""
    pb = sealed_sender_pb2.SenderCertificate.Certificate()
    if sender_e164 is not None:
        pb.senderE164 = sender_e164
    pb.senderDevice = sender_device_id
    pb.expires = expiration
    pb.identityKey = identity_key
    pb.certificate = signer
    pb.uuidString = sender_uuid
    return pb.SerializeToString()


def decode_sender_certificate(data: bytes) -> SenderCertificateFields:
    """Parse a SenderCertificate (libsignal's required fields and device-id range).

    Raises:
        DecodeError: malformed, missing field, device id not in 1..127, bad uuid bytes, a
            string field that is not UTF-8.
    """
    data = _bytes(data, "SenderCertificate")
    pb = sealed_sender_pb2.SenderCertificate()
    _parse(pb, data, "SenderCertificate")
    if not (pb.HasField("certificate") and pb.HasField("signature")):
        raise DecodeError("SenderCertificate: missing field")
    c = sealed_sender_pb2.SenderCertificate.Certificate()
    _parse(c, pb.certificate, "SenderCertificate.Certificate")
    if not (c.HasField("senderDevice") and c.HasField("expires") and c.HasField("identityKey")):
        raise DecodeError("SenderCertificate.Certificate: missing field")
    if not 1 <= c.senderDevice <= _MAX_DEVICE_ID:
        raise DecodeError("SenderCertificate: invalid device id")
    which_signer = c.WhichOneof("signer")
    signer: bytes | int
    if which_signer == "certificate":
        signer = c.certificate
    elif which_signer == "id":
        signer = c.id
    else:
        raise DecodeError("SenderCertificate.Certificate: missing signer")
    which_uuid = c.WhichOneof("senderUuid")
    if which_uuid == "uuidString":
        sender_uuid = c.uuidString
    elif which_uuid == "uuidBytes":
        if len(c.uuidBytes) != _UUID_LENGTH:
            raise DecodeError("SenderCertificate: bad uuid bytes")
        sender_uuid = str(uuid.UUID(bytes=c.uuidBytes))
    else:
        raise DecodeError("SenderCertificate.Certificate: missing sender uuid")
    e164 = c.senderE164 if c.HasField("senderE164") else None
    # proto2 string fields are not checked for UTF-8 by the parser: invalid bytes come back as
    # ``bytes``, which is the peer's fault, not a reason for a type error further on.
    if not isinstance(sender_uuid, str) or not isinstance(e164, str | None):
        raise DecodeError("SenderCertificate: a string field is not UTF-8")
    return SenderCertificateFields(
        data,
        pb.certificate,
        pb.signature,
        sender_uuid,
        e164,
        c.senderDevice,
        c.expires,
        c.identityKey,
        signer,
    )


# --- USMC and the v1 envelope -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UsmcFields:
    """A parsed USMC. ``msg_type`` is the *proto* value (PreKey = 1)."""

    msg_type: int
    sender_certificate: bytes = field(repr=False)
    content: bytes = field(repr=False)
    content_hint: int
    group_id: bytes | None


def encode_usmc(
    msg_type: int,
    sender_certificate: bytes,
    content: bytes,
    content_hint: int,
    group_id: bytes | None,
) -> bytes:
    """Serialize (fields in number order; hint 0 and an empty group id are omitted)."""
    pb = sealed_sender_pb2.UnidentifiedSenderMessage.Message(
        type=msg_type,  # type: ignore[arg-type]
        senderCertificate=sender_certificate,
        content=content,
    )
    if content_hint:
        pb.contentHint = content_hint  # type: ignore[assignment]
    if group_id:
        pb.groupId = group_id
    return pb.SerializeToString()


def decode_usmc(data: bytes) -> UsmcFields:
    """Parse a USMC (type, sender certificate and content are required).

    Raises:
        DecodeError: malformed or a required field missing / unknown type.
    """
    data = _bytes(data, "UnidentifiedSenderMessageContent")
    pb = sealed_sender_pb2.UnidentifiedSenderMessage.Message()
    _parse(pb, data, "UnidentifiedSenderMessageContent")
    if not (pb.HasField("type") and pb.HasField("senderCertificate") and pb.HasField("content")):
        raise DecodeError("UnidentifiedSenderMessageContent: missing field")
    if int(pb.type) not in _USMC_TYPES:
        raise DecodeError("UnidentifiedSenderMessageContent: unknown type")
    return UsmcFields(
        int(pb.type),
        pb.senderCertificate,
        pb.content,
        int(pb.contentHint) if pb.HasField("contentHint") else 0,
        pb.groupId if pb.HasField("groupId") else None,
    )


@dataclass(frozen=True, slots=True)
class V1EnvelopeFields:
    ephemeral_public: bytes
    encrypted_static: bytes = field(repr=False)
    encrypted_message: bytes = field(repr=False)


def encode_v1_envelope(
    ephemeral_public: bytes, encrypted_static: bytes, encrypted_message: bytes
) -> bytes:
    """``0x11 || UnidentifiedSenderMessage``."""
    pb = sealed_sender_pb2.UnidentifiedSenderMessage(
        ephemeralPublic=ephemeral_public,
        encryptedStatic=encrypted_static,
        encryptedMessage=encrypted_message,
    )
    return bytes((SEALED_SENDER_V1_VERSION,)) + pb.SerializeToString()


def decode_envelope_version(data: bytes) -> int:
    """The major version of a received envelope: 1 (nibble 0 or 1) or 2.

    Raises:
        DecodeError: empty. UnsupportedVersionError: any other major version.
    """
    data = _bytes(data, "sealed sender message")
    if not data:
        raise DecodeError("sealed sender message is empty")
    major = data[0] >> 4
    if major in (0, 1):
        return 1
    if major == 2:
        return 2
    raise UnsupportedVersionError("unknown sealed sender version", major)


def decode_v1_envelope(data: bytes) -> V1EnvelopeFields:
    """Parse a v1 envelope (after :func:`decode_envelope_version` said 1).

    Raises:
        DecodeError: malformed or a field missing.
    """
    data = _bytes(data, "sealed sender v1 message")
    pb = sealed_sender_pb2.UnidentifiedSenderMessage()
    _parse(pb, data[1:], "UnidentifiedSenderMessage")
    if not (
        pb.HasField("ephemeralPublic")
        and pb.HasField("encryptedStatic")
        and pb.HasField("encryptedMessage")
    ):
        raise DecodeError("UnidentifiedSenderMessage: missing field")
    return V1EnvelopeFields(pb.ephemeralPublic, pb.encryptedStatic, pb.encryptedMessage)


# --- sealed sender v2 ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReceivedV2Fields:
    encrypted_message_key: bytes = field(repr=False)
    authentication_tag: bytes = field(repr=False)
    ephemeral_public: bytes
    ciphertext: bytes = field(repr=False)


def decode_received_v2(data: bytes) -> ReceivedV2Fields:
    """Parse a received v2 message (major version 2).

    Raises:
        DecodeError: shorter than the 81-byte prefix.
    """
    data = _bytes(data, "sealed sender v2 message")
    end = 1 + MESSAGE_KEY_LENGTH + AUTH_TAG_LENGTH + RAW_PUBLIC_KEY_LENGTH
    if len(data) < end:
        raise DecodeError("sealed sender v2 message too short")
    c_end = 1 + MESSAGE_KEY_LENGTH
    at_end = c_end + AUTH_TAG_LENGTH
    return ReceivedV2Fields(data[1:c_end], data[c_end:at_end], data[at_end:end], data[end:])


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128 (protobuf varint)."""
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _decode_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    for i in range(10):
        if pos + i >= len(data):
            raise DecodeError("sealed sender v2: truncated varint")
        b = data[pos + i]
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            if result > 0xFFFFFFFFFFFFFFFF:
                raise DecodeError("sealed sender v2: varint overflow")
            return result, pos + i + 1
        shift += 7
    raise DecodeError("sealed sender v2: varint too long")


@dataclass(slots=True)
class SentV2Recipient:
    """One recipient of a sent v2 message: ``service_id`` is the 17-byte fixed-width form.
    ``devices`` is [(device id, registration id)]; empty (and no key material) = excluded."""

    service_id: bytes
    devices: list[tuple[int, int]]
    c_and_at: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SentV2Fields:
    version: int
    recipients: dict[bytes, SentV2Recipient] = field(repr=False)
    shared_bytes: bytes = field(repr=False)  # E(32) || ciphertext


def decode_sent_v2(data: bytes) -> SentV2Fields:
    """Parse a whole sent v2 message before any per-recipient work (libsignal
    ``SealedSenderV2SentMessage::parse``): recipients in order, repeated service ids merged
    (their devices appended; the first key material kept), excluded ones with no devices.

    Raises:
        UnsupportedVersionError: first byte not 0x22 / 0x23.
        DecodeError: truncated, bad varint, unknown service-id kind, device id 0 after other
            devices or above 127, a recipient both excluded and included, or fewer than 32
            shared bytes left.
    """
    data = _bytes(data, "sealed sender v2 sent message")
    if not data:
        raise DecodeError("sealed sender v2 sent message is empty")
    version = data[0]
    if version not in (SEALED_SENDER_V2_UUID_VERSION, SEALED_SENDER_V2_SERVICE_ID_VERSION):
        raise UnsupportedVersionError("unknown sealed sender sent version", version)
    count, pos = _decode_varint(data, 1)
    if count > 0xFFFFFFFF:
        raise DecodeError("sealed sender v2: recipient count too large")
    n = len(data)
    recipients: dict[bytes, SentV2Recipient] = {}
    key_len = MESSAGE_KEY_LENGTH + AUTH_TAG_LENGTH
    for _ in range(count):
        if version == SEALED_SENDER_V2_UUID_VERSION:
            if pos + _UUID_LENGTH > n:
                raise DecodeError("sealed sender v2: truncated")
            sid = b"\x00" + data[pos : pos + _UUID_LENGTH]
            pos += _UUID_LENGTH
        else:
            if pos + _SERVICE_ID_LENGTH > n:
                raise DecodeError("sealed sender v2: truncated")
            sid = data[pos : pos + _SERVICE_ID_LENGTH]
            if sid[0] > 1:
                raise DecodeError("sealed sender v2: unknown service id kind")
            pos += _SERVICE_ID_LENGTH
        devices: list[tuple[int, int]] = []
        while True:
            if pos >= n:
                raise DecodeError("sealed sender v2: truncated")
            device = data[pos]
            pos += 1
            if device == 0:
                if devices:
                    raise DecodeError("sealed sender v2: device id 0 after devices")
                break
            if device > _MAX_DEVICE_ID:
                raise DecodeError("sealed sender v2: invalid device id")
            if pos + 2 > n:
                raise DecodeError("sealed sender v2: truncated")
            reg = (data[pos] << 8) | data[pos + 1]
            pos += 2
            devices.append((device, reg & _REGISTRATION_ID_MASK))
            if not reg & _HAS_MORE:
                break
        c_and_at = b""
        if devices:
            if pos + key_len > n:
                raise DecodeError("sealed sender v2: truncated")
            c_and_at = data[pos : pos + key_len]
            pos += key_len
        existing = recipients.get(sid)
        if existing is not None:
            if not existing.devices or not devices:
                raise DecodeError("sealed sender v2: recipient redundantly encoded as empty")
            existing.devices.extend(devices)
        else:
            recipients[sid] = SentV2Recipient(sid, devices, c_and_at)
    if n - pos < RAW_PUBLIC_KEY_LENGTH:
        raise DecodeError("sealed sender v2: truncated shared part")
    return SentV2Fields(version, recipients, data[pos:])
