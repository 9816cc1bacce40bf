"""The relay protocol's frames as typed values (``proto/relay.proto``).

Theory of operation
-------------------
A client and the relay exchange one protobuf frame per binary WebSocket message: a
:class:`ClientFrame` (a request id and one request) upstream, and downstream a
:class:`Response`, an :class:`Envelope` push, the connection's :class:`Challenge` or a
:class:`QueueEmpty` marker. This module turns those frames into frozen dataclasses and back,
so that ``relay/`` and ``client/`` never touch the generated protobuf module (this module is
its only importer).

Decoding is strict about *format* and leaves *meaning* to the caller: every fixed-size field
(ACI 16 bytes, access key 16, nonce 32, envelope id 16, EC key 33, Kyber key 1569, signature
64) is length-checked, a frame over :data:`MAX_FRAME_SIZE` is refused, and any protobuf error
becomes :class:`~securemsg.errors.DecodeError`. A request type this version does not know
decodes to ``ClientFrame(request_id, None)`` so the relay can answer it by id. Whether a key
really is a curve point, whether a device exists, whether a signature verifies: the relay's
job. Encoders check argument types and raise :class:`~securemsg.errors.UsageError`.

The proof-of-possession message is :func:`auth_message` (the same for Register and
Authenticate): ``"securemsg-relay-auth-v1" || nonce || aci || device_id (u32 big-endian)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, TypeAlias

from google.protobuf.message import DecodeError as _ProtoDecodeError

from securemsg._proto import relay_pb2
from securemsg.errors import DecodeError, UsageError

__all__ = [
    "ACCESS_KEY_LENGTH",
    "ACI_LENGTH",
    "AUTH_CONTEXT",
    "EC_KEY_LENGTH",
    "ENVELOPE_ID_LENGTH",
    "KYBER_KEY_LENGTH",
    "MAX_FRAME_SIZE",
    "MAX_LINKING_CODE",
    "MAX_REGISTRATION_TOKEN",
    "PROVISIONING_ADDRESS_LENGTH",
    "MAX_TIMESTAMP",
    "NONCE_LENGTH",
    "PROTOCOL_VERSION",
    "SIGNATURE_LENGTH",
    "Ack",
    "Authenticate",
    "Bundles",
    "Challenge",
    "ClientFrame",
    "DeviceBundle",
    "DeviceInfo",
    "DeviceRemoved",
    "Devices",
    "Envelope",
    "EnvelopeType",
    "FetchBundles",
    "GetDevices",
    "GetLinkingCode",
    "GetPreKeyCounts",
    "GetSenderCertificate",
    "GetServerTrustRoot",
    "KtAppendOnly",
    "KtAppendOnlyResult",
    "KtCosign",
    "KtCosignature",
    "KtGetHeads",
    "KtGetKeys",
    "KtHead",
    "KtHeads",
    "KtHistory",
    "KtKeys",
    "KtLookup",
    "KtProofResult",
    "LinkingCode",
    "MAX_KT_COSIGNATURES",
    "MAX_KT_HEADS",
    "MAX_KT_APPEND_ONLY_EPOCHS",
    "MismatchedDevices",
    "OneTimePreKey",
    "OpenProvisioning",
    "OutgoingMessage",
    "PreKeyCounts",
    "ProvisionEnvelope",
    "ProvisioningAddress",
    "QueueEmpty",
    "RecipientAccess",
    "Register",
    "Registered",
    "RemoveDevice",
    "Request",
    "Response",
    "ResponseBody",
    "RotateSignedPreKey",
    "SendMessage",
    "SendMultiRecipient",
    "SendProvisioning",
    "SendResult",
    "SendSealed",
    "SenderCertificateResponse",
    "SetAccessKey",
    "ServerFrame",
    "ServerTrustRoot",
    "SignedPreKey",
    "StatusCode",
    "UploadPreKeys",
    "auth_message",
    "decode_client_frame",
    "decode_server_frame",
    "encode_client_frame",
    "encode_server_frame",
    "request_id_of",
]

#: The relay protocol version this code speaks.
PROTOCOL_VERSION = 1
#: Largest frame (one WebSocket message) either side accepts, in bytes. Bounds memory per
#: frame; 1 MiB holds a registration with 100 one-time Kyber prekeys or a 256 KiB message
#: fanned out to a few devices.
MAX_FRAME_SIZE = 1 << 20
#: Domain separation prefix of the proof-of-possession signature.
AUTH_CONTEXT = b"securemsg-relay-auth-v1"

#: Largest client timestamp the relay accepts (it stores them as signed 64-bit integers).
MAX_TIMESTAMP = (1 << 63) - 1
#: Longest registration token a Register may carry, in bytes.
MAX_REGISTRATION_TOKEN = 256
#: Longest linking code (GetLinkingCode / Register.linking_code), in bytes of ASCII.
MAX_LINKING_CODE = 64
#: Length of a provisioning address chosen by the relay.
PROVISIONING_ADDRESS_LENGTH = 16

#: Most signed heads in one KtHeads answer.
MAX_KT_HEADS = 256
#: Most auditor cosignatures carried (and stored) per epoch head.
MAX_KT_COSIGNATURES = 16
#: Most epochs one KtAppendOnly request may span.
MAX_KT_APPEND_ONLY_EPOCHS = 16
#: Length of a signed epoch head (securemsg.kt.heads.SIGNED_HEAD_LENGTH).
KT_SIGNED_HEAD_LENGTH = 144
KT_KEY_LENGTH = 32

ACI_LENGTH = 16
ACCESS_KEY_LENGTH = 16
NONCE_LENGTH = 32
ENVELOPE_ID_LENGTH = 16
EC_KEY_LENGTH = 33
KYBER_KEY_LENGTH = 1569
SIGNATURE_LENGTH = 64
_U32 = 0xFFFFFFFF
_U64 = 0xFFFFFFFFFFFFFFFF


class StatusCode(IntEnum):
    """A response's status (an unknown code on the wire decodes as ``INTERNAL``)."""

    OK = 0
    BAD_REQUEST = 1
    UNAUTHENTICATED = 2
    FORBIDDEN = 3
    NOT_FOUND = 4
    RATE_LIMITED = 5
    CONFLICT = 6
    TOO_LARGE = 7
    INTERNAL = 8


class EnvelopeType(IntEnum):
    """What an envelope's body is (Signal's envelope type numbers)."""

    UNKNOWN = 0
    CIPHERTEXT = 1
    PREKEY_BUNDLE = 3
    UNIDENTIFIED_SENDER = 6
    SENDERKEY_MESSAGE = 7
    PLAINTEXT_CONTENT = 8


def auth_message(nonce: bytes, aci: bytes, device_id: int) -> bytes:
    """The bytes a device signs to prove possession of its identity key.

    Raises:
        UsageError: wrong nonce or ACI length, device id not a u32.
    """
    _check_bytes(nonce, NONCE_LENGTH, "nonce")
    _check_bytes(aci, ACI_LENGTH, "aci")
    _check_u32(device_id, "device_id")
    return AUTH_CONTEXT + bytes(nonce) + bytes(aci) + device_id.to_bytes(4, "big")


# ------------------------------------------------------------------------------------------
# Value types


@dataclass(frozen=True, slots=True)
class SignedPreKey:
    """A signed prekey (EC 33 bytes or Kyber 1569 bytes) with the identity's signature."""

    id: int
    public_key: bytes = field(repr=False)
    signature: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class OneTimePreKey:
    """A one-time EC prekey (33 bytes)."""

    id: int
    public_key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Authenticate:
    """Proof of possession: ``signature`` over :func:`auth_message` for this connection."""

    aci: bytes
    device_id: int
    signature: bytes = field(repr=False)
    protocol_version: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class Register:
    """Create an account device (and authenticate the connection as it)."""

    aci: bytes
    device_id: int
    registration_id: int
    identity_key: bytes = field(repr=False)
    signed_pre_key: SignedPreKey
    last_resort_kyber_pre_key: SignedPreKey
    pre_keys: tuple[OneTimePreKey, ...]
    kyber_pre_keys: tuple[SignedPreKey, ...]
    unidentified_access_key: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    protocol_version: int = PROTOCOL_VERSION
    registration_token: bytes = field(default=b"", repr=False)
    #: The one-time code from the account's primary (GetLinkingCode); required for every
    #: device but an account's first. With it, ``device_id`` 0 asks for the next free id.
    linking_code: str = field(default="", repr=False)


@dataclass(frozen=True, slots=True)
class UploadPreKeys:
    """Add one-time prekeys; optionally replace the signed / last-resort Kyber prekey."""

    pre_keys: tuple[OneTimePreKey, ...] = ()
    kyber_pre_keys: tuple[SignedPreKey, ...] = ()
    signed_pre_key: SignedPreKey | None = None
    last_resort_kyber_pre_key: SignedPreKey | None = None


@dataclass(frozen=True, slots=True)
class GetPreKeyCounts:
    """Ask how many one-time prekeys this device has left."""


@dataclass(frozen=True, slots=True)
class RotateSignedPreKey:
    """Replace the signed prekey (and optionally the last-resort Kyber prekey)."""

    signed_pre_key: SignedPreKey
    last_resort_kyber_pre_key: SignedPreKey | None = None


@dataclass(frozen=True, slots=True)
class FetchBundles:
    """Fetch prekey bundles of ``aci``'s device ``device_id`` (0 = every device)."""

    aci: bytes
    device_id: int = 0


@dataclass(frozen=True, slots=True)
class GetDevices:
    """Ask for the device list (ids and registration ids) of an account: the caller's own
    (``access_key`` empty) or one whose access key the caller holds."""

    aci: bytes
    access_key: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One device's copy of a message."""

    device_id: int
    registration_id: int
    type: int
    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SendMessage:
    """Identified send to every current device of ``destination_aci``."""

    destination_aci: bytes
    timestamp: int
    messages: tuple[OutgoingMessage, ...]


@dataclass(frozen=True, slots=True)
class SendSealed:
    """Sealed (unidentified) send, gated by the recipient's access key."""

    destination_aci: bytes
    access_key: bytes = field(repr=False)
    timestamp: int = 0
    messages: tuple[OutgoingMessage, ...] = ()


@dataclass(frozen=True, slots=True)
class RecipientAccess:
    """The access key for one recipient of a multi-recipient send."""

    aci: bytes
    access_key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SendMultiRecipient:
    """A sealed sender v2 sent message for the relay to split."""

    payload: bytes = field(repr=False)
    access: tuple[RecipientAccess, ...] = ()
    timestamp: int = 0


@dataclass(frozen=True, slots=True)
class Ack:
    """Acknowledge (delete) delivered envelopes by id."""

    ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class SetAccessKey:
    """Replace the authenticated account's unidentified-access key (16 bytes)."""

    access_key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class GetSenderCertificate:
    """Ask for a sender certificate for the authenticated device."""


@dataclass(frozen=True, slots=True)
class GetServerTrustRoot:
    """Ask for the trust root public key and the server certificate."""


@dataclass(frozen=True, slots=True)
class OpenProvisioning:
    """Ask for a provisioning address (unauthenticated connections only)."""


@dataclass(frozen=True, slots=True)
class GetLinkingCode:
    """Ask for a one-time linking code for this account (primary device only)."""


@dataclass(frozen=True, slots=True)
class SendProvisioning:
    """Deliver a provisioning envelope (opaque bytes) to the connection waiting on
    ``address``."""

    address: bytes
    envelope: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class RemoveDevice:
    """Remove another device of the caller's account (primary device only)."""

    device_id: int


@dataclass(frozen=True, slots=True)
class KtGetKeys:
    """Ask for the directory's VRF public key and head-signing public key."""


@dataclass(frozen=True, slots=True)
class KtGetHeads:
    """Ask for the signed heads after ``since_epoch`` (at most :data:`MAX_KT_HEADS`)."""

    since_epoch: int


@dataclass(frozen=True, slots=True)
class KtLookup:
    """Ask for the lookup proof of an account's identity key at the latest epoch."""

    aci: bytes


@dataclass(frozen=True, slots=True)
class KtHistory:
    """Ask for the complete key history of the caller's own account."""

    aci: bytes


@dataclass(frozen=True, slots=True)
class KtAppendOnly:
    """Ask for the append-only proof from ``from_epoch`` to ``to_epoch``."""

    from_epoch: int
    to_epoch: int


@dataclass(frozen=True, slots=True)
class KtCosign:
    """An auditor's cosignature of the head of ``epoch``."""

    epoch: int
    auditor_key: bytes
    signature: bytes = field(repr=False)


Request: TypeAlias = (
    Authenticate
    | Register
    | UploadPreKeys
    | GetPreKeyCounts
    | RotateSignedPreKey
    | FetchBundles
    | GetDevices
    | SendMessage
    | SendSealed
    | SendMultiRecipient
    | Ack
    | GetSenderCertificate
    | GetServerTrustRoot
    | SetAccessKey
    | KtGetKeys
    | KtGetHeads
    | KtLookup
    | KtHistory
    | KtAppendOnly
    | KtCosign
    | OpenProvisioning
    | GetLinkingCode
    | SendProvisioning
    | RemoveDevice
)


@dataclass(frozen=True, slots=True)
class ClientFrame:
    """A request with its id. ``body`` is None for a request type this version does not know."""

    request_id: int
    body: Request | None


@dataclass(frozen=True, slots=True)
class PreKeyCounts:
    """One-time prekeys left (the last-resort Kyber key is not counted)."""

    ec_count: int
    kyber_count: int


@dataclass(frozen=True, slots=True)
class DeviceBundle:
    """One device's published keys, as handed out by the directory."""

    device_id: int
    registration_id: int
    identity_key: bytes = field(repr=False)
    signed_pre_key: SignedPreKey = field(repr=False)
    pre_key: OneTimePreKey | None = field(repr=False)
    kyber_pre_key: SignedPreKey = field(repr=False)
    kyber_last_resort: bool = False


@dataclass(frozen=True, slots=True)
class Bundles:
    """The bundles of a FetchBundles request."""

    bundles: tuple[DeviceBundle, ...]


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A device id and its current registration id."""

    device_id: int
    registration_id: int


@dataclass(frozen=True, slots=True)
class Devices:
    """An account's identity key and devices."""

    identity_key: bytes = field(repr=False)
    devices: tuple[DeviceInfo, ...] = ()


@dataclass(frozen=True, slots=True)
class MismatchedDevices:
    """How a send's device list differs from the recipient's current devices."""

    aci: bytes
    missing_devices: tuple[int, ...] = ()
    extra_devices: tuple[int, ...] = ()
    stale_devices: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class SendResult:
    """The body of a send's response (``mismatched`` set with status CONFLICT)."""

    mismatched: tuple[MismatchedDevices, ...] = ()


@dataclass(frozen=True, slots=True)
class SenderCertificateResponse:
    """A serialized SenderCertificate."""

    certificate: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ServerTrustRoot:
    """The relay's trust root public key and its server certificate."""

    public_key: bytes
    server_certificate: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class KtKeys:
    """The directory's public keys (32 bytes each)."""

    vrf_public_key: bytes
    head_public_key: bytes


@dataclass(frozen=True, slots=True)
class KtCosignature:
    """An auditor's Ed25519 cosignature of an epoch head."""

    auditor_key: bytes
    signature: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class KtHead:
    """A signed epoch head (144 bytes) and its auditor cosignatures."""

    signed_head: bytes
    cosignatures: tuple[KtCosignature, ...] = ()


@dataclass(frozen=True, slots=True)
class KtHeads:
    """Consecutive signed heads, oldest first, and the latest epoch."""

    heads: tuple[KtHead, ...]
    latest_epoch: int


@dataclass(frozen=True, slots=True)
class KtProofResult:
    """A lookup or history proof and the head it is against; or ``pending``."""

    proof: bytes = field(repr=False)
    head: KtHead | None
    pending: bool = False


@dataclass(frozen=True, slots=True)
class KtAppendOnlyResult:
    """An encoded AKD append-only proof."""

    proof: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ProvisioningAddress:
    """A provisioning address (16 bytes) and when it expires (Unix ms)."""

    address: bytes
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class LinkingCode:
    """A one-time linking code and when it expires (Unix ms)."""

    code: str = field(repr=False)
    expires_at_ms: int = 0


@dataclass(frozen=True, slots=True)
class Registered:
    """The device id a Register created (the assigned one when it asked for 0)."""

    device_id: int


ResponseBody: TypeAlias = (
    PreKeyCounts
    | Bundles
    | Devices
    | SendResult
    | SenderCertificateResponse
    | ServerTrustRoot
    | KtKeys
    | KtHeads
    | KtProofResult
    | KtAppendOnlyResult
    | ProvisioningAddress
    | LinkingCode
    | Registered
)


@dataclass(frozen=True, slots=True)
class Response:
    """The answer to one request."""

    request_id: int
    code: StatusCode
    message: str = ""
    body: ResponseBody | None = None


@dataclass(frozen=True, slots=True)
class Envelope:
    """A queued message pushed to its recipient device."""

    id: bytes
    type: int
    source_aci: bytes | None
    source_device_id: int
    client_timestamp: int
    server_timestamp: int
    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Challenge:
    """The connection's nonce, sent first."""

    nonce: bytes
    protocol_version: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class QueueEmpty:
    """Every message queued before authentication has been pushed."""


@dataclass(frozen=True, slots=True)
class ProvisionEnvelope:
    """A provisioning envelope pushed to the connection that opened ``address``."""

    address: bytes
    envelope: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class DeviceRemoved:
    """This device was removed from its account; the relay closes the connection next."""


ServerFrame: TypeAlias = (
    Response | Envelope | Challenge | QueueEmpty | ProvisionEnvelope | DeviceRemoved
)


# ------------------------------------------------------------------------------------------
# Checks


def _check_bytes(value: object, length: int | None, what: str) -> None:
    if not isinstance(value, bytes | bytearray):
        raise UsageError(what + " must be bytes")
    if length is not None and len(value) != length:
        raise UsageError(what + " has the wrong length")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_u32(value: object, what: str) -> None:
    if not _is_int(value) or not 0 <= value <= _U32:  # type: ignore[operator]
        raise UsageError(what + " must be a u32")


def _check_u64(value: object, what: str) -> None:
    if not _is_int(value) or not 0 <= value <= _U64:  # type: ignore[operator]
        raise UsageError(what + " must be a u64")


def _check_code(code: object) -> str:
    if not isinstance(code, str):
        raise UsageError("linking code must be a str")
    if not code.isascii() or len(code) > MAX_LINKING_CODE:
        raise UsageError("linking code must be at most MAX_LINKING_CODE ASCII characters")
    return code


def _get_code(value: str) -> str:
    if not value.isascii() or len(value) > MAX_LINKING_CODE:
        raise DecodeError("linking code is too long or not ASCII")
    return str(value)


def _need(value: bytes, length: int, what: str) -> bytes:
    if len(value) != length:
        raise DecodeError(what + " has the wrong length")
    return bytes(value)


def _need_key(value: bytes, what: str) -> bytes:
    if len(value) not in (EC_KEY_LENGTH, KYBER_KEY_LENGTH):
        raise DecodeError(what + " has the wrong length")
    return bytes(value)


# ------------------------------------------------------------------------------------------
# Encoding


def _put_signed(pb: Any, key: SignedPreKey) -> None:
    if not isinstance(key, SignedPreKey):
        raise UsageError("expected a SignedPreKey")
    _check_u32(key.id, "prekey id")
    _check_bytes(key.public_key, None, "public key")
    _check_bytes(key.signature, None, "signature")
    pb.id = key.id
    pb.public_key = bytes(key.public_key)
    pb.signature = bytes(key.signature)


def _put_one_time(pb: Any, key: OneTimePreKey) -> None:
    if not isinstance(key, OneTimePreKey):
        raise UsageError("expected a OneTimePreKey")
    _check_u32(key.id, "prekey id")
    _check_bytes(key.public_key, None, "public key")
    pb.id = key.id
    pb.public_key = bytes(key.public_key)


def _put_outgoing(pb: Any, messages: Sequence[OutgoingMessage]) -> None:
    for m in messages:
        if not isinstance(m, OutgoingMessage):
            raise UsageError("expected OutgoingMessage values")
        _check_u32(m.device_id, "device_id")
        _check_u32(m.registration_id, "registration_id")
        _check_u32(m.type, "type")
        _check_bytes(m.body, None, "body")
        pb.add(
            device_id=int(m.device_id),
            registration_id=int(m.registration_id),
            type=int(m.type),
            body=bytes(m.body),
        )


def _encode_request(pb: Any, body: Request) -> None:
    if isinstance(body, Authenticate):
        _check_bytes(body.aci, ACI_LENGTH, "aci")
        _check_u32(body.device_id, "device_id")
        _check_bytes(body.signature, None, "signature")
        _check_u32(body.protocol_version, "protocol_version")
        a = pb.authenticate
        a.aci, a.device_id, a.signature = bytes(body.aci), body.device_id, bytes(body.signature)
        a.protocol_version = body.protocol_version
    elif isinstance(body, Register):
        r = pb.register
        _check_bytes(body.aci, ACI_LENGTH, "aci")
        _check_u32(body.device_id, "device_id")
        _check_u32(body.registration_id, "registration_id")
        _check_bytes(body.identity_key, None, "identity_key")
        _check_bytes(body.unidentified_access_key, None, "unidentified_access_key")
        _check_bytes(body.signature, None, "signature")
        _check_u32(body.protocol_version, "protocol_version")
        _check_bytes(body.registration_token, None, "registration_token")
        if len(body.registration_token) > MAX_REGISTRATION_TOKEN:
            raise UsageError("registration_token is too long")
        r.aci, r.device_id, r.registration_id = (
            bytes(body.aci),
            body.device_id,
            body.registration_id,
        )
        r.identity_key = bytes(body.identity_key)
        _put_signed(r.signed_pre_key, body.signed_pre_key)
        _put_signed(r.last_resort_kyber_pre_key, body.last_resort_kyber_pre_key)
        for k in body.pre_keys:
            _put_one_time(r.pre_keys.add(), k)
        for sk in body.kyber_pre_keys:
            _put_signed(r.kyber_pre_keys.add(), sk)
        r.unidentified_access_key = bytes(body.unidentified_access_key)
        r.signature = bytes(body.signature)
        r.protocol_version = body.protocol_version
        r.registration_token = bytes(body.registration_token)
        r.linking_code = _check_code(body.linking_code)
    elif isinstance(body, UploadPreKeys):
        u = pb.upload_pre_keys
        u.SetInParent()
        for k in body.pre_keys:
            _put_one_time(u.pre_keys.add(), k)
        for sk in body.kyber_pre_keys:
            _put_signed(u.kyber_pre_keys.add(), sk)
        if body.signed_pre_key is not None:
            _put_signed(u.signed_pre_key, body.signed_pre_key)
        if body.last_resort_kyber_pre_key is not None:
            _put_signed(u.last_resort_kyber_pre_key, body.last_resort_kyber_pre_key)
    elif isinstance(body, GetPreKeyCounts):
        pb.get_pre_key_counts.SetInParent()
    elif isinstance(body, RotateSignedPreKey):
        rot = pb.rotate_signed_pre_key
        _put_signed(rot.signed_pre_key, body.signed_pre_key)
        if body.last_resort_kyber_pre_key is not None:
            _put_signed(rot.last_resort_kyber_pre_key, body.last_resort_kyber_pre_key)
    elif isinstance(body, FetchBundles):
        _check_bytes(body.aci, ACI_LENGTH, "aci")
        _check_u32(body.device_id, "device_id")
        pb.fetch_bundles.aci = bytes(body.aci)
        pb.fetch_bundles.device_id = body.device_id
    elif isinstance(body, GetDevices):
        _check_bytes(body.aci, ACI_LENGTH, "aci")
        if body.access_key:
            _check_bytes(body.access_key, ACCESS_KEY_LENGTH, "access_key")
        pb.get_devices.aci = bytes(body.aci)
        pb.get_devices.access_key = bytes(body.access_key)
    elif isinstance(body, SendMessage):
        _check_bytes(body.destination_aci, ACI_LENGTH, "destination_aci")
        _check_u64(body.timestamp, "timestamp")
        s = pb.send_message
        s.destination_aci, s.timestamp = bytes(body.destination_aci), body.timestamp
        s.SetInParent()
        _put_outgoing(s.messages, body.messages)
    elif isinstance(body, SendSealed):
        _check_bytes(body.destination_aci, ACI_LENGTH, "destination_aci")
        _check_bytes(body.access_key, ACCESS_KEY_LENGTH, "access_key")
        _check_u64(body.timestamp, "timestamp")
        ss = pb.send_sealed
        ss.destination_aci, ss.access_key = bytes(body.destination_aci), bytes(body.access_key)
        ss.timestamp = body.timestamp
        _put_outgoing(ss.messages, body.messages)
    elif isinstance(body, SendMultiRecipient):
        _check_bytes(body.payload, None, "payload")
        _check_u64(body.timestamp, "timestamp")
        mr = pb.send_multi_recipient
        mr.payload, mr.timestamp = bytes(body.payload), body.timestamp
        for acc in body.access:
            if not isinstance(acc, RecipientAccess):
                raise UsageError("expected RecipientAccess values")
            _check_bytes(acc.aci, ACI_LENGTH, "aci")
            _check_bytes(acc.access_key, ACCESS_KEY_LENGTH, "access_key")
            mr.access.add(aci=bytes(acc.aci), access_key=bytes(acc.access_key))
    elif isinstance(body, Ack):
        pb.ack.SetInParent()
        for i in body.ids:
            _check_bytes(i, ENVELOPE_ID_LENGTH, "envelope id")
            pb.ack.ids.append(bytes(i))
    elif isinstance(body, GetSenderCertificate):
        pb.get_sender_certificate.SetInParent()
    elif isinstance(body, GetServerTrustRoot):
        pb.get_server_trust_root.SetInParent()
    elif isinstance(body, SetAccessKey):
        _check_bytes(body.access_key, ACCESS_KEY_LENGTH, "access_key")
        pb.set_access_key.access_key = bytes(body.access_key)
    elif isinstance(body, OpenProvisioning):
        pb.open_provisioning.SetInParent()
    elif isinstance(body, GetLinkingCode):
        pb.get_linking_code.SetInParent()
    elif isinstance(body, SendProvisioning):
        _check_bytes(body.address, PROVISIONING_ADDRESS_LENGTH, "address")
        _check_bytes(body.envelope, None, "envelope")
        pb.send_provisioning.address = bytes(body.address)
        pb.send_provisioning.envelope = bytes(body.envelope)
    elif isinstance(body, RemoveDevice):
        _check_u32(body.device_id, "device_id")
        pb.remove_device.device_id = body.device_id
        pb.remove_device.SetInParent()
    else:
        _encode_kt_request(pb, body)


def _encode_kt_request(pb: Any, body: Request) -> None:
    if isinstance(body, KtGetKeys):
        pb.kt_get_keys.SetInParent()
    elif isinstance(body, KtGetHeads):
        _check_u64(body.since_epoch, "since_epoch")
        pb.kt_get_heads.since_epoch = body.since_epoch
        pb.kt_get_heads.SetInParent()
    elif isinstance(body, KtLookup):
        _check_bytes(body.aci, ACI_LENGTH, "aci")
        pb.kt_lookup.aci = bytes(body.aci)
    elif isinstance(body, KtHistory):
        _check_bytes(body.aci, ACI_LENGTH, "aci")
        pb.kt_history.aci = bytes(body.aci)
    elif isinstance(body, KtAppendOnly):
        _check_u64(body.from_epoch, "from_epoch")
        _check_u64(body.to_epoch, "to_epoch")
        pb.kt_append_only.from_epoch = body.from_epoch
        pb.kt_append_only.to_epoch = body.to_epoch
        pb.kt_append_only.SetInParent()
    elif isinstance(body, KtCosign):
        _check_u64(body.epoch, "epoch")
        _check_bytes(body.auditor_key, KT_KEY_LENGTH, "auditor_key")
        _check_bytes(body.signature, SIGNATURE_LENGTH, "signature")
        c = pb.kt_cosign
        c.epoch, c.auditor_key, c.signature = body.epoch, bytes(body.auditor_key), body.signature
    else:
        raise UsageError("unknown request type")


def encode_client_frame(frame: ClientFrame) -> bytes:
    """Serialize a client frame.

    Raises:
        UsageError: a field of the wrong type or length, or ``body`` None / not a request.
    """
    if not isinstance(frame, ClientFrame) or frame.body is None:
        raise UsageError("expected a ClientFrame with a request")
    _check_u64(frame.request_id, "request_id")
    pb = relay_pb2.ClientFrame(request_id=frame.request_id)
    try:
        _encode_request(pb, frame.body)
    except (TypeError, ValueError):
        raise UsageError("client frame field of the wrong type or range") from None
    data: bytes = pb.SerializeToString()
    if len(data) > MAX_FRAME_SIZE:
        raise UsageError("frame larger than MAX_FRAME_SIZE")
    return data


def _put_bundle(pb: Any, b: DeviceBundle) -> None:
    pb.device_id, pb.registration_id = b.device_id, b.registration_id
    pb.identity_key = bytes(b.identity_key)
    _put_signed(pb.signed_pre_key, b.signed_pre_key)
    if b.pre_key is not None:
        _put_one_time(pb.pre_key, b.pre_key)
    _put_signed(pb.kyber_pre_key, b.kyber_pre_key)
    pb.kyber_last_resort = b.kyber_last_resort


def _encode_response(pb: Any, r: Response) -> None:
    _check_u64(r.request_id, "request_id")
    pb.request_id = r.request_id
    pb.status.code = int(StatusCode(r.code))
    pb.status.message = str(r.message)
    body = r.body
    if body is None:
        return
    if isinstance(body, PreKeyCounts):
        pb.pre_key_counts.ec_count = body.ec_count
        pb.pre_key_counts.kyber_count = body.kyber_count
    elif isinstance(body, Bundles):
        pb.bundles.SetInParent()
        for b in body.bundles:
            _put_bundle(pb.bundles.bundles.add(), b)
    elif isinstance(body, Devices):
        pb.devices.identity_key = bytes(body.identity_key)
        for d in body.devices:
            pb.devices.devices.add(device_id=d.device_id, registration_id=d.registration_id)
    elif isinstance(body, SendResult):
        pb.send_result.SetInParent()
        for m in body.mismatched:
            pb.send_result.mismatched.add(
                aci=bytes(m.aci),
                missing_devices=list(m.missing_devices),
                extra_devices=list(m.extra_devices),
                stale_devices=list(m.stale_devices),
            )
    elif isinstance(body, SenderCertificateResponse):
        pb.sender_certificate.certificate = bytes(body.certificate)
    elif isinstance(body, ServerTrustRoot):
        pb.trust_root.public_key = bytes(body.public_key)
        pb.trust_root.server_certificate = bytes(body.server_certificate)
    elif isinstance(body, KtKeys):
        _check_bytes(body.vrf_public_key, KT_KEY_LENGTH, "vrf_public_key")
        _check_bytes(body.head_public_key, KT_KEY_LENGTH, "head_public_key")
        pb.kt_keys.vrf_public_key = bytes(body.vrf_public_key)
        pb.kt_keys.head_public_key = bytes(body.head_public_key)
    elif isinstance(body, KtHeads):
        if len(body.heads) > MAX_KT_HEADS:
            raise UsageError("too many heads")
        _check_u64(body.latest_epoch, "latest_epoch")
        pb.kt_heads.SetInParent()
        pb.kt_heads.latest_epoch = body.latest_epoch
        for h in body.heads:
            _put_kt_head(pb.kt_heads.heads.add(), h)
    elif isinstance(body, KtProofResult):
        pb.kt_proof.SetInParent()
        pb.kt_proof.proof = bytes(body.proof)
        pb.kt_proof.pending = bool(body.pending)
        if body.head is not None:
            _put_kt_head(pb.kt_proof.head, body.head)
    elif isinstance(body, KtAppendOnlyResult):
        pb.kt_append_only.SetInParent()
        pb.kt_append_only.proof = bytes(body.proof)
    elif isinstance(body, ProvisioningAddress):
        _check_bytes(body.address, PROVISIONING_ADDRESS_LENGTH, "address")
        _check_u64(body.expires_at_ms, "expires_at_ms")
        pb.provisioning_address.address = bytes(body.address)
        pb.provisioning_address.expires_at_ms = body.expires_at_ms
    elif isinstance(body, LinkingCode):
        _check_u64(body.expires_at_ms, "expires_at_ms")
        pb.linking_code.code = _check_code(body.code)
        pb.linking_code.expires_at_ms = body.expires_at_ms
        pb.linking_code.SetInParent()
    elif isinstance(body, Registered):
        _check_u32(body.device_id, "device_id")
        pb.registered.device_id = body.device_id
        pb.registered.SetInParent()
    else:
        raise UsageError("unknown response body type")


def _put_kt_head(pb: Any, head: KtHead) -> None:
    if not isinstance(head, KtHead):
        raise UsageError("expected a KtHead")
    _check_bytes(head.signed_head, KT_SIGNED_HEAD_LENGTH, "signed head")
    if len(head.cosignatures) > MAX_KT_COSIGNATURES:
        raise UsageError("too many cosignatures")
    pb.signed_head = bytes(head.signed_head)
    for c in head.cosignatures:
        _check_bytes(c.auditor_key, KT_KEY_LENGTH, "auditor_key")
        _check_bytes(c.signature, SIGNATURE_LENGTH, "signature")
        pb.cosignatures.add(auditor_key=bytes(c.auditor_key), signature=bytes(c.signature))


def encode_server_frame(frame: ServerFrame) -> bytes:
    """Serialize a server frame.

    Raises:
        UsageError: not a server frame, or a field of the wrong type or range.
    """
    pb = relay_pb2.ServerFrame()
    try:
        if isinstance(frame, Response):
            _encode_response(pb.response, frame)
        elif isinstance(frame, Envelope):
            _check_bytes(frame.id, ENVELOPE_ID_LENGTH, "envelope id")
            e = pb.push
            e.id = bytes(frame.id)
            e.type = int(frame.type)  # type: ignore[assignment]  # open enum: any int
            if frame.source_aci is not None:
                _check_bytes(frame.source_aci, ACI_LENGTH, "source_aci")
                e.source_aci = bytes(frame.source_aci)
            e.source_device_id = frame.source_device_id
            e.client_timestamp = frame.client_timestamp
            e.server_timestamp = frame.server_timestamp
            e.body = bytes(frame.body)
        elif isinstance(frame, Challenge):
            _check_bytes(frame.nonce, NONCE_LENGTH, "nonce")
            pb.challenge.nonce = bytes(frame.nonce)
            pb.challenge.protocol_version = frame.protocol_version
        elif isinstance(frame, QueueEmpty):
            pb.queue_empty.SetInParent()
        elif isinstance(frame, ProvisionEnvelope):
            _check_bytes(frame.address, PROVISIONING_ADDRESS_LENGTH, "address")
            _check_bytes(frame.envelope, None, "envelope")
            pb.provision.address = bytes(frame.address)
            pb.provision.envelope = bytes(frame.envelope)
        elif isinstance(frame, DeviceRemoved):
            pb.device_removed.SetInParent()
        else:
            raise UsageError("expected a server frame")
    except (TypeError, ValueError):
        raise UsageError("server frame field of the wrong type or range") from None
    data: bytes = pb.SerializeToString()
    return data


# ------------------------------------------------------------------------------------------
# Decoding


def _parse(pb: Any, data: object, what: str) -> None:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(what + " must be bytes")
    if len(data) > MAX_FRAME_SIZE:
        raise DecodeError(what + " is larger than MAX_FRAME_SIZE")
    try:
        pb.ParseFromString(bytes(data))
    except _ProtoDecodeError:
        raise DecodeError(what + ": invalid protobuf") from None


def _get_signed(pb: Any, what: str) -> SignedPreKey:
    return SignedPreKey(
        int(pb.id),
        _need_key(pb.public_key, what + " public key"),
        _need(pb.signature, SIGNATURE_LENGTH, what + " signature"),
    )


def _get_opt_signed(parent: Any, name: str, what: str) -> SignedPreKey | None:
    return _get_signed(getattr(parent, name), what) if parent.HasField(name) else None


def _get_one_time(pb: Any) -> OneTimePreKey:
    return OneTimePreKey(int(pb.id), _need(pb.public_key, EC_KEY_LENGTH, "prekey public key"))


def _token(value: bytes) -> bytes:
    if len(value) > MAX_REGISTRATION_TOKEN:
        raise DecodeError("registration token is too long")
    return bytes(value)


def _get_outgoing(items: Any) -> tuple[OutgoingMessage, ...]:
    return tuple(
        OutgoingMessage(int(m.device_id), int(m.registration_id), int(m.type), bytes(m.body))
        for m in items
    )


def _decode_request(pb: Any, kind: str) -> Request:
    if kind == "authenticate":
        a = pb.authenticate
        return Authenticate(
            _need(a.aci, ACI_LENGTH, "aci"),
            int(a.device_id),
            _need(a.signature, SIGNATURE_LENGTH, "signature"),
            int(a.protocol_version),
        )
    if kind == "register":
        r = pb.register
        if not (r.HasField("signed_pre_key") and r.HasField("last_resort_kyber_pre_key")):
            raise DecodeError("Register: missing prekey")
        return Register(
            aci=_need(r.aci, ACI_LENGTH, "aci"),
            device_id=int(r.device_id),
            registration_id=int(r.registration_id),
            identity_key=_need(r.identity_key, EC_KEY_LENGTH, "identity key"),
            signed_pre_key=_get_signed(r.signed_pre_key, "signed prekey"),
            last_resort_kyber_pre_key=_get_signed(r.last_resort_kyber_pre_key, "Kyber prekey"),
            pre_keys=tuple(_get_one_time(k) for k in r.pre_keys),
            kyber_pre_keys=tuple(_get_signed(k, "Kyber prekey") for k in r.kyber_pre_keys),
            unidentified_access_key=_need(
                r.unidentified_access_key, ACCESS_KEY_LENGTH, "access key"
            ),
            signature=_need(r.signature, SIGNATURE_LENGTH, "signature"),
            protocol_version=int(r.protocol_version),
            registration_token=_token(r.registration_token),
            linking_code=_get_code(r.linking_code),
        )
    if kind == "upload_pre_keys":
        u = pb.upload_pre_keys
        return UploadPreKeys(
            pre_keys=tuple(_get_one_time(k) for k in u.pre_keys),
            kyber_pre_keys=tuple(_get_signed(k, "Kyber prekey") for k in u.kyber_pre_keys),
            signed_pre_key=_get_opt_signed(u, "signed_pre_key", "signed prekey"),
            last_resort_kyber_pre_key=_get_opt_signed(
                u, "last_resort_kyber_pre_key", "Kyber prekey"
            ),
        )
    if kind == "get_pre_key_counts":
        return GetPreKeyCounts()
    if kind == "rotate_signed_pre_key":
        rot = pb.rotate_signed_pre_key
        if not rot.HasField("signed_pre_key"):
            raise DecodeError("RotateSignedPreKey: missing signed prekey")
        return RotateSignedPreKey(
            _get_signed(rot.signed_pre_key, "signed prekey"),
            _get_opt_signed(rot, "last_resort_kyber_pre_key", "Kyber prekey"),
        )
    if kind == "fetch_bundles":
        f = pb.fetch_bundles
        return FetchBundles(_need(f.aci, ACI_LENGTH, "aci"), int(f.device_id))
    if kind == "get_devices":
        g = pb.get_devices
        key = _need(g.access_key, ACCESS_KEY_LENGTH, "access key") if g.access_key else b""
        return GetDevices(_need(g.aci, ACI_LENGTH, "aci"), key)
    if kind == "send_message":
        s = pb.send_message
        return SendMessage(
            _need(s.destination_aci, ACI_LENGTH, "destination aci"),
            int(s.timestamp),
            _get_outgoing(s.messages),
        )
    if kind == "send_sealed":
        ss = pb.send_sealed
        return SendSealed(
            _need(ss.destination_aci, ACI_LENGTH, "destination aci"),
            _need(ss.access_key, ACCESS_KEY_LENGTH, "access key"),
            int(ss.timestamp),
            _get_outgoing(ss.messages),
        )
    if kind == "send_multi_recipient":
        mr = pb.send_multi_recipient
        return SendMultiRecipient(
            bytes(mr.payload),
            tuple(
                RecipientAccess(
                    _need(a.aci, ACI_LENGTH, "aci"),
                    _need(a.access_key, ACCESS_KEY_LENGTH, "access key"),
                )
                for a in mr.access
            ),
            int(mr.timestamp),
        )
    if kind == "ack":
        return Ack(tuple(_need(i, ENVELOPE_ID_LENGTH, "envelope id") for i in pb.ack.ids))
    if kind == "get_sender_certificate":
        return GetSenderCertificate()
    if kind == "get_server_trust_root":
        return GetServerTrustRoot()
    if kind == "set_access_key":
        return SetAccessKey(_need(pb.set_access_key.access_key, ACCESS_KEY_LENGTH, "access key"))
    if kind == "open_provisioning":
        return OpenProvisioning()
    if kind == "get_linking_code":
        return GetLinkingCode()
    if kind == "send_provisioning":
        sp = pb.send_provisioning
        return SendProvisioning(
            _need(sp.address, PROVISIONING_ADDRESS_LENGTH, "provisioning address"),
            bytes(sp.envelope),
        )
    if kind == "remove_device":
        return RemoveDevice(int(pb.remove_device.device_id))
    if kind == "kt_get_keys":
        return KtGetKeys()
    if kind == "kt_get_heads":
        return KtGetHeads(int(pb.kt_get_heads.since_epoch))
    if kind == "kt_lookup":
        return KtLookup(_need(pb.kt_lookup.aci, ACI_LENGTH, "aci"))
    if kind == "kt_history":
        return KtHistory(_need(pb.kt_history.aci, ACI_LENGTH, "aci"))
    if kind == "kt_append_only":
        a = pb.kt_append_only
        return KtAppendOnly(int(a.from_epoch), int(a.to_epoch))
    if kind == "kt_cosign":
        c = pb.kt_cosign
        return KtCosign(
            int(c.epoch),
            _need(c.auditor_key, KT_KEY_LENGTH, "auditor key"),
            _need(c.signature, SIGNATURE_LENGTH, "signature"),
        )
    raise DecodeError("unknown request")  # pragma: no cover - every oneof member is handled


def decode_client_frame(data: bytes) -> ClientFrame:
    """Parse one client frame.

    A frame whose request type this version does not know (or that has none) decodes to
    ``ClientFrame(request_id, None)``.

    Raises:
        DecodeError: not bytes, over :data:`MAX_FRAME_SIZE`, bad protobuf, or a field of the
            wrong length / a required field missing.
    """
    pb = relay_pb2.ClientFrame()
    _parse(pb, data, "ClientFrame")
    kind = pb.WhichOneof("body")
    if kind is None:
        return ClientFrame(int(pb.request_id), None)
    return ClientFrame(int(pb.request_id), _decode_request(pb, kind))


def request_id_of(data: bytes) -> int:
    """The request id of a client frame, or 0 if even that cannot be read (never raises)."""
    pb = relay_pb2.ClientFrame()
    try:
        _parse(pb, data, "ClientFrame")
    except DecodeError:
        return 0
    return int(pb.request_id)


def _get_bundle(pb: Any) -> DeviceBundle:
    if not (pb.HasField("signed_pre_key") and pb.HasField("kyber_pre_key")):
        raise DecodeError("DeviceBundle: missing prekey")
    return DeviceBundle(
        device_id=int(pb.device_id),
        registration_id=int(pb.registration_id),
        identity_key=_need(pb.identity_key, EC_KEY_LENGTH, "identity key"),
        signed_pre_key=_get_signed(pb.signed_pre_key, "signed prekey"),
        pre_key=_get_one_time(pb.pre_key) if pb.HasField("pre_key") else None,
        kyber_pre_key=_get_signed(pb.kyber_pre_key, "Kyber prekey"),
        kyber_last_resort=bool(pb.kyber_last_resort),
    )


def _get_kt_head(pb: Any) -> KtHead:
    if len(pb.cosignatures) > MAX_KT_COSIGNATURES:
        raise DecodeError("KtHead: too many cosignatures")
    return KtHead(
        _need(pb.signed_head, KT_SIGNED_HEAD_LENGTH, "signed head"),
        tuple(
            KtCosignature(
                _need(c.auditor_key, KT_KEY_LENGTH, "auditor key"),
                _need(c.signature, SIGNATURE_LENGTH, "cosignature"),
            )
            for c in pb.cosignatures
        ),
    )


def _decode_response(pb: Any) -> Response:
    try:
        code = StatusCode(int(pb.status.code))
    except ValueError:
        code = StatusCode.INTERNAL
    kind = pb.WhichOneof("body")
    body: ResponseBody | None = None
    if kind == "pre_key_counts":
        body = PreKeyCounts(int(pb.pre_key_counts.ec_count), int(pb.pre_key_counts.kyber_count))
    elif kind == "bundles":
        body = Bundles(tuple(_get_bundle(b) for b in pb.bundles.bundles))
    elif kind == "devices":
        body = Devices(
            _need(pb.devices.identity_key, EC_KEY_LENGTH, "identity key"),
            tuple(DeviceInfo(int(d.device_id), int(d.registration_id)) for d in pb.devices.devices),
        )
    elif kind == "send_result":
        body = SendResult(
            tuple(
                MismatchedDevices(
                    _need(m.aci, ACI_LENGTH, "aci"),
                    tuple(int(x) for x in m.missing_devices),
                    tuple(int(x) for x in m.extra_devices),
                    tuple(int(x) for x in m.stale_devices),
                )
                for m in pb.send_result.mismatched
            )
        )
    elif kind == "sender_certificate":
        body = SenderCertificateResponse(bytes(pb.sender_certificate.certificate))
    elif kind == "trust_root":
        body = ServerTrustRoot(
            _need(pb.trust_root.public_key, EC_KEY_LENGTH, "trust root"),
            bytes(pb.trust_root.server_certificate),
        )
    elif kind == "kt_keys":
        body = KtKeys(
            _need(pb.kt_keys.vrf_public_key, KT_KEY_LENGTH, "VRF key"),
            _need(pb.kt_keys.head_public_key, KT_KEY_LENGTH, "head key"),
        )
    elif kind == "kt_heads":
        if len(pb.kt_heads.heads) > MAX_KT_HEADS:
            raise DecodeError("KtHeads: too many heads")
        body = KtHeads(
            tuple(_get_kt_head(h) for h in pb.kt_heads.heads), int(pb.kt_heads.latest_epoch)
        )
    elif kind == "kt_proof":
        p = pb.kt_proof
        body = KtProofResult(
            bytes(p.proof), _get_kt_head(p.head) if p.HasField("head") else None, bool(p.pending)
        )
    elif kind == "kt_append_only":
        body = KtAppendOnlyResult(bytes(pb.kt_append_only.proof))
    elif kind == "provisioning_address":
        pa = pb.provisioning_address
        body = ProvisioningAddress(
            _need(pa.address, PROVISIONING_ADDRESS_LENGTH, "provisioning address"),
            int(pa.expires_at_ms),
        )
    elif kind == "linking_code":
        body = LinkingCode(_get_code(pb.linking_code.code), int(pb.linking_code.expires_at_ms))
    elif kind == "registered":
        body = Registered(int(pb.registered.device_id))
    return Response(int(pb.request_id), code, str(pb.status.message), body)


def decode_server_frame(data: bytes) -> ServerFrame:
    """Parse one server frame.

    Raises:
        DecodeError: not bytes, over :data:`MAX_FRAME_SIZE`, bad protobuf, an empty or
            unknown frame, or a field of the wrong length.
    """
    pb = relay_pb2.ServerFrame()
    _parse(pb, data, "ServerFrame")
    kind = pb.WhichOneof("body")
    if kind == "response":
        return _decode_response(pb.response)
    if kind == "push":
        e = pb.push
        if e.client_timestamp > MAX_TIMESTAMP or e.server_timestamp > MAX_TIMESTAMP:
            raise DecodeError("envelope timestamp out of range")
        return Envelope(
            id=_need(e.id, ENVELOPE_ID_LENGTH, "envelope id"),
            type=int(e.type),
            source_aci=_need(e.source_aci, ACI_LENGTH, "source aci") if e.source_aci else None,
            source_device_id=int(e.source_device_id),
            client_timestamp=int(e.client_timestamp),
            server_timestamp=int(e.server_timestamp),
            body=bytes(e.body),
        )
    if kind == "challenge":
        return Challenge(
            _need(pb.challenge.nonce, NONCE_LENGTH, "nonce"), int(pb.challenge.protocol_version)
        )
    if kind == "queue_empty":
        return QueueEmpty()
    if kind == "provision":
        return ProvisionEnvelope(
            _need(pb.provision.address, PROVISIONING_ADDRESS_LENGTH, "provisioning address"),
            bytes(pb.provision.envelope),
        )
    if kind == "device_removed":
        return DeviceRemoved()
    raise DecodeError("ServerFrame: empty or unknown frame")
