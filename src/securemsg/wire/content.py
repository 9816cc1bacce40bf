"""Codec for the client's application content (``proto/content.proto``, ours) and its padding.

Theory of operation
-------------------
The client SDK never encrypts a bare string: it encrypts a versioned :class:`Content` (text,
the sender's timestamp, an optional :class:`GroupContext` and an optional sender-key
distribution message), serialized and then *padded* so that ciphertext lengths reveal only a
coarse size class. The padding is Signal's: the serialized bytes, one ``0x80`` byte, then
zeros up to the next multiple of :data:`PADDING_BLOCK` (160) bytes. :func:`unpad` strips the
zeros and the ``0x80`` marker; a buffer without the marker is refused.

``encode_content(c)`` gives the *unpadded* protobuf bytes and :func:`encode_padded_content` the
padded plaintext the cipher takes; :func:`decode_padded_content` reverses the latter. Every
decoder raises :class:`~securemsg.errors.DecodeError` (or
:class:`~securemsg.errors.UnsupportedVersionError` for a version other than 1) on hostile
bytes, never a protobuf or Unicode exception.

Sync transcripts
----------------
A message one device of an account sends is also sent, as a *transcript*, to the account's
other devices so every device shows the conversation: Signal's ``SyncMessage.Sent`` (field
numbers from Signal's ``SignalService.proto``) in :attr:`Content.sync_sent`
(:class:`SentTranscript`: the recipient's ACI for a 1:1 message, the sent timestamp, the
sent :class:`Content`, and which recipients got it sealed). A content carrying a transcript
carries nothing else of its own (no text, group or sender key), and the content inside a
transcript cannot carry another transcript; the decoder refuses both.

Retry requests
--------------
:class:`DecryptionErrorMessage` is libsignal's retry request (``proto/wire.proto``, Signal's
field numbers), byte-compatible with libsignal 0.103.0. A recipient that cannot decrypt a
message sends it to the message's sender inside a
:class:`~securemsg.wire.messages.PlaintextContent`: ``0xC0 || Content{field 8 = DEM} || 0x80``
(Signal's service ``Content``, not ours: :func:`plaintext_content_for` and
:func:`decryption_error_from_plaintext`). It is unencrypted by design (the session may be
what is broken) and carries no message content: the failed message's timestamp, the
original sender's device id and, for a 1:1 message, the ratchet key it was sent with.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError as _ProtoDecodeError

from securemsg._proto import content_pb2, wire_pb2
from securemsg.crypto.curve25519 import PublicKey
from securemsg.errors import DecodeError, UnsupportedVersionError, UsageError
from securemsg.wire.messages import (
    CiphertextMessageType,
    PlaintextContent,
    PreKeySignalMessage,
    SignalMessage,
)

__all__ = [
    "ACCESS_KEY_LENGTH",
    "CONTENT_VERSION",
    "GROUP_ID_LENGTH",
    "MAX_CONTENT_TIMESTAMP",
    "MAX_GROUP_MEMBERS",
    "PADDING_BLOCK",
    "Content",
    "SentTranscript",
    "DecryptionErrorMessage",
    "GroupContext",
    "decode_content",
    "decode_padded_content",
    "decryption_error_from_plaintext",
    "encode_content",
    "encode_padded_content",
    "pad",
    "plaintext_content_for",
    "unpad",
]

#: Current layout version of ``Content``.
CONTENT_VERSION = 1
#: Padded plaintexts are a multiple of this many bytes (Signal's block).
PADDING_BLOCK = 160
#: A group id is 16 bytes (it doubles as the sender-key distribution id).
GROUP_ID_LENGTH = 16
#: An unidentified-access key is 16 bytes.
ACCESS_KEY_LENGTH = 16
#: Most members a group context may list (a sanity bound on hostile input).
MAX_GROUP_MEMBERS = 1000

_MARKER = 0x80
_U64_MAX = 2**64 - 1
#: Largest timestamp a Content (or a transcript) may carry: Unix milliseconds fit in a signed
#: 64-bit integer (what every store, SQLite included, keeps), so a larger one is refused
#: when decoded instead of failing when stored.
MAX_CONTENT_TIMESTAMP = 2**63 - 1
_U32_MAX = 2**32 - 1


@dataclass(frozen=True, slots=True)
class GroupContext:
    """Which group a message belongs to.

    Attributes:
        group_id: 16 bytes; also the sender-key distribution id of the group.
        title: the group's display name.
        members: ACI strings of every member (the creator included), each in canonical form
            (``str(uuid.UUID(aci))``).
    """

    group_id: bytes
    title: str
    members: tuple[str, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.group_id, bytes) or len(self.group_id) != GROUP_ID_LENGTH:
            raise UsageError("group_id must be 16 bytes")
        if not isinstance(self.title, str):
            raise UsageError("group title must be a str")
        if not isinstance(self.members, tuple) or not all(isinstance(m, str) for m in self.members):
            raise UsageError("group members must be a tuple of str")
        if len(self.members) > MAX_GROUP_MEMBERS:
            raise UsageError("too many group members")
        if not all(_is_canonical_aci(m) for m in self.members):
            raise UsageError("group members must be ACIs (canonical UUID strings)")


@dataclass(frozen=True, slots=True)
class SentTranscript:
    """A transcript of a message one of our own devices sent (Signal's ``SyncMessage.Sent``).

    Attributes:
        destination: the recipient's ACI string for a 1:1 message; None for a group message
            (the group is in ``message.group``).
        timestamp: the sent message's timestamp (Unix ms; its id).
        message: the content that was sent (never itself a transcript).
        unidentified: ``(recipient ACI, went sealed)`` per recipient.
    """

    destination: str | None
    timestamp: int
    message: Content
    unidentified: tuple[tuple[str, bool], ...] = ()

    def __post_init__(self) -> None:
        if self.destination is not None and not isinstance(self.destination, str):
            raise UsageError("destination must be a str or None")
        if type(self.timestamp) is not int or not 0 <= self.timestamp <= MAX_CONTENT_TIMESTAMP:
            raise UsageError("timestamp must be 0..2^63-1 (Unix ms)")
        if not isinstance(self.message, Content):
            raise UsageError("message must be a Content")
        if self.message.sync_sent is not None:
            raise UsageError("a transcript cannot hold another transcript")
        if not isinstance(self.unidentified, tuple) or not all(
            isinstance(u, tuple)
            and len(u) == 2
            and isinstance(u[0], str)
            and isinstance(u[1], bool)
            for u in self.unidentified
        ):
            raise UsageError("unidentified must be a tuple of (str, bool)")
        if len(self.unidentified) > MAX_GROUP_MEMBERS:
            raise UsageError("too many recipients in a transcript")


@dataclass(frozen=True, slots=True)
class Content:
    """One message from one device, before padding and encryption.

    Attributes:
        timestamp: the sender's clock, Unix milliseconds (also the sender's message id).
        text: the message text, or None (e.g. a message that only distributes a sender key).
        group: the group context of a group message (or of an SKDM), else None.
        sender_key_distribution: a serialized SenderKeyDistributionMessage, or None.
        access_key: the sender's 16-byte unidentified-access key (so the recipient can answer
            with sealed sender), or None.
        sync_sent: a transcript of a message another device of our own account sent, or
            None; a content with one has no text, group or sender key of its own.
    """

    timestamp: int
    text: str | None = field(default=None, repr=False)  # message text: never in a repr
    group: GroupContext | None = None
    sender_key_distribution: bytes | None = field(default=None, repr=False)
    access_key: bytes | None = field(default=None, repr=False)
    sync_sent: SentTranscript | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if type(self.timestamp) is not int or not 0 <= self.timestamp <= MAX_CONTENT_TIMESTAMP:
            raise UsageError("timestamp must be 0..2^63-1 (Unix ms)")
        if self.text is not None and not isinstance(self.text, str):
            raise UsageError("text must be a str or None")
        if self.group is not None and not isinstance(self.group, GroupContext):
            raise UsageError("group must be a GroupContext or None")
        skdm = self.sender_key_distribution
        if skdm is not None and not isinstance(skdm, bytes):
            raise UsageError("sender_key_distribution must be bytes or None")
        key = self.access_key
        if key is not None and (not isinstance(key, bytes) or len(key) != ACCESS_KEY_LENGTH):
            raise UsageError("access_key must be 16 bytes or None")
        if self.sync_sent is not None:
            if not isinstance(self.sync_sent, SentTranscript):
                raise UsageError("sync_sent must be a SentTranscript or None")
            if self.text is not None or self.group is not None or skdm is not None:
                raise UsageError("a transcript content carries no text, group or sender key")


def pad(data: bytes) -> bytes:
    """Append ``0x80`` and zeros up to the next multiple of :data:`PADDING_BLOCK` bytes.

    Raises:
        UsageError: ``data`` is not bytes.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise UsageError("data must be bytes")
    raw = bytes(data)
    total = -(-(len(raw) + 1) // PADDING_BLOCK) * PADDING_BLOCK
    return raw + b"\x80" + bytes(total - len(raw) - 1)


def unpad(data: bytes) -> bytes:
    """Strip trailing zeros and the ``0x80`` marker added by :func:`pad`.

    Any length is accepted (Signal's senders pad to ``160 * k - 1``), but the last non-zero
    byte must be the marker.

    Raises:
        DecodeError: not bytes, or no ``0x80`` marker before the trailing zeros.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("padded content must be bytes")
    raw = bytes(data)
    stripped = raw.rstrip(b"\x00")
    if not stripped or stripped[-1] != _MARKER:
        raise DecodeError("bad content padding")
    return stripped[:-1]


def _fill(pb: content_pb2.Content, content: Content) -> None:
    pb.version = CONTENT_VERSION
    pb.timestamp = content.timestamp
    try:  # protobuf refuses a str that is not UTF-8 encodable (a lone surrogate) on assignment
        if content.text is not None:
            pb.text = content.text
        if content.group is not None:
            pb.group.id = content.group.group_id
            pb.group.title = content.group.title
            pb.group.members.extend(content.group.members)
        sent = content.sync_sent
        if sent is not None:
            out = pb.sync_message.sent
            if sent.destination is not None:
                out.destination_service_id = sent.destination
            out.timestamp = sent.timestamp
            _fill(out.message, sent.message)
            for aci, unidentified in sent.unidentified:
                out.unidentified_status.add(destination_service_id=aci, unidentified=unidentified)
    except UnicodeEncodeError:
        raise UsageError("content is not serializable (invalid text?)") from None
    if content.sender_key_distribution is not None:
        pb.sender_key_distribution = content.sender_key_distribution
    if content.access_key is not None:
        pb.access_key = content.access_key


def encode_content(content: Content) -> bytes:
    """Serialize ``content`` (unpadded) with the current version.

    Raises:
        UsageError: ``content`` is not a :class:`Content`.
    """
    if not isinstance(content, Content):
        raise UsageError("content must be a Content")
    pb = content_pb2.Content()
    _fill(pb, content)
    return pb.SerializeToString()


def _is_canonical_aci(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def _aci_text(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise DecodeError("content: an invalid ACI") from None


def _from_pb(pb: content_pb2.Content, *, nested: bool) -> Content:
    if pb.version != CONTENT_VERSION:
        raise UnsupportedVersionError("content: unknown version", pb.version)
    if pb.timestamp > MAX_CONTENT_TIMESTAMP:
        raise DecodeError("content: timestamp out of range")
    group: GroupContext | None = None
    if pb.HasField("group"):
        if len(pb.group.id) != GROUP_ID_LENGTH:
            raise DecodeError("content: group id must be 16 bytes")
        if len(pb.group.members) > MAX_GROUP_MEMBERS:
            raise DecodeError("content: too many group members")
        members = tuple(_aci_text(m) for m in pb.group.members)
        group = GroupContext(bytes(pb.group.id), pb.group.title, members)
    access_key: bytes | None = None
    if pb.HasField("access_key"):
        if len(pb.access_key) != ACCESS_KEY_LENGTH:
            raise DecodeError("content: access key must be 16 bytes")
        access_key = bytes(pb.access_key)
    transcript: SentTranscript | None = None
    if pb.HasField("sync_message"):
        if nested:
            raise DecodeError("content: a transcript inside a transcript")
        sent = pb.sync_message.sent
        if not pb.sync_message.HasField("sent") or not sent.HasField("message"):
            raise DecodeError("content: a sync message without a sent transcript")
        if pb.HasField("text") or group is not None or pb.HasField("sender_key_distribution"):
            raise DecodeError("content: a transcript with text, group or sender key beside it")
        if len(sent.unidentified_status) > MAX_GROUP_MEMBERS:
            raise DecodeError("content: too many recipients in a transcript")
        if sent.timestamp > MAX_CONTENT_TIMESTAMP:
            raise DecodeError("content: transcript timestamp out of range")
        transcript = SentTranscript(
            destination=_aci_text(sent.destination_service_id)
            if sent.HasField("destination_service_id")
            else None,
            timestamp=sent.timestamp,
            message=_from_pb(sent.message, nested=True),
            unidentified=tuple(
                (_aci_text(u.destination_service_id), bool(u.unidentified))
                for u in sent.unidentified_status
            ),
        )
    return Content(
        timestamp=pb.timestamp,
        text=pb.text if pb.HasField("text") else None,
        group=group,
        sender_key_distribution=bytes(pb.sender_key_distribution)
        if pb.HasField("sender_key_distribution")
        else None,
        access_key=access_key,
        sync_sent=transcript,
    )


def decode_content(data: bytes) -> Content:
    """Parse unpadded ``Content`` bytes.

    Raises:
        UnsupportedVersionError: the version is not 1 (of the content or of a transcript's).
        DecodeError: not bytes, bad protobuf, invalid UTF-8, a bad group context, or a bad
            transcript (nested, beside text/group/sender key, or naming an invalid ACI).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("content must be bytes")
    pb = content_pb2.Content()
    try:
        pb.ParseFromString(bytes(data))
    except _ProtoDecodeError:
        raise DecodeError("content: invalid protobuf") from None
    return _from_pb(pb, nested=False)


def encode_padded_content(content: Content) -> bytes:
    """``pad(encode_content(content))``: the plaintext handed to the cipher.

    Raises:
        UsageError: ``content`` is not a :class:`Content`.
    """
    return pad(encode_content(content))


def decode_padded_content(data: bytes) -> Content:
    """``decode_content(unpad(data))``: a decrypted plaintext back to :class:`Content`.

    Raises:
        DecodeError: bad padding or bad content (UnsupportedVersionError for another version).
    """
    return decode_content(unpad(data))


@dataclass(frozen=True, slots=True)
class DecryptionErrorMessage:
    """libsignal's retry request for a message that could not be decrypted.

    Attributes:
        ratchet_key: the sender ratchet key of the failed 1:1 message (None for a sender-key
            message). The original sender compares it with its session's current sending
            ratchet key to decide whether that session is the broken one.
        timestamp: the failed message's timestamp (Unix ms; the sender's message id).
        device_id: the device that sent the failed message.
        serialized: the exact protobuf bytes.
    """

    ratchet_key: PublicKey | None
    timestamp: int
    device_id: int
    serialized: bytes = field(repr=False)

    @classmethod
    def new(
        cls, timestamp: int, device_id: int, ratchet_key: PublicKey | None = None
    ) -> DecryptionErrorMessage:
        """Build one from its fields (the protobuf is written in field-number order, as
        libsignal's prost writes it: ratchet key, timestamp, device id).

        Raises:
            UsageError: timestamp not a u64, device id not a u32, or a bad ratchet key type.
        """
        if type(timestamp) is not int or not 0 <= timestamp <= _U64_MAX:
            raise UsageError("timestamp must be a u64 (Unix ms)")
        if type(device_id) is not int or not 0 <= device_id <= _U32_MAX:
            raise UsageError("device_id must be a u32")
        if ratchet_key is not None and not isinstance(ratchet_key, PublicKey):
            raise UsageError("ratchet_key must be a PublicKey or None")
        pb = wire_pb2.DecryptionErrorMessage(timestamp=timestamp, device_id=device_id)
        if ratchet_key is not None:
            pb.ratchet_key = ratchet_key.to_bytes()
        return cls(ratchet_key, timestamp, device_id, pb.SerializeToString())

    @classmethod
    def for_original(
        cls,
        original: bytes,
        original_type: CiphertextMessageType,
        original_timestamp: int,
        original_sender_device_id: int,
    ) -> DecryptionErrorMessage:
        """The retry request for a message that failed to decrypt (libsignal's
        ``DecryptionErrorMessage::for_original``).

        The ratchet key is read from the original SignalMessage (``WHISPER``) or from the
        SignalMessage inside the PreKeySignalMessage (``PREKEY``); a ``SENDERKEY`` message
        has none.

        Raises:
            UsageError: ``PLAINTEXT`` (it was never encrypted) or an unknown type.
            DecodeError: the original bytes do not parse as their type (no request can be
                built from them).
        """
        if original_type == CiphertextMessageType.WHISPER:
            key: PublicKey | None = SignalMessage.from_bytes(original).ratchet_key
        elif original_type == CiphertextMessageType.PREKEY:
            key = PreKeySignalMessage.from_bytes(original).message.ratchet_key
        elif original_type == CiphertextMessageType.SENDERKEY:
            key = None
        else:
            raise UsageError("no retry request for plaintext content: it is not encrypted")
        return cls.new(original_timestamp, original_sender_device_id, key)

    @classmethod
    def from_bytes(cls, data: bytes) -> DecryptionErrorMessage:
        """Parse the protobuf as libsignal does (timestamp required, device id defaults to 0).

        Raises:
            DecodeError: not bytes, bad protobuf, or no timestamp.
            InvalidKeyError: the ratchet key is not a valid public key.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise DecodeError("decryption error message must be bytes")
        raw = bytes(data)
        pb = wire_pb2.DecryptionErrorMessage()
        try:
            pb.ParseFromString(raw)
        except _ProtoDecodeError:
            raise DecodeError("decryption error message: invalid protobuf") from None
        if not pb.HasField("timestamp"):
            raise DecodeError("decryption error message without a timestamp")
        key = PublicKey.from_bytes(pb.ratchet_key) if pb.HasField("ratchet_key") else None
        return cls(key, pb.timestamp, pb.device_id, raw)

    def to_bytes(self) -> bytes:
        """The exact protobuf bytes."""
        return self.serialized


def plaintext_content_for(message: DecryptionErrorMessage) -> PlaintextContent:
    """Wrap a retry request as libsignal's ``PlaintextContent::from(DecryptionErrorMessage)``:
    ``0xC0 || Content{decryption_error_message} || 0x80``.

    Raises:
        UsageError: ``message`` is not a :class:`DecryptionErrorMessage`.
    """
    if not isinstance(message, DecryptionErrorMessage):
        raise UsageError("message must be a DecryptionErrorMessage")
    body = wire_pb2.ServiceContent(decryption_error_message=message.serialized)
    return PlaintextContent.from_content(body.SerializeToString())


def decryption_error_from_plaintext(content: PlaintextContent) -> DecryptionErrorMessage:
    """The retry request inside a :class:`~securemsg.wire.messages.PlaintextContent` (what
    libsignal's ``DecryptionErrorMessage.extractFromSerializedBody`` reads from its body).

    Raises:
        DecodeError: no ``0x80`` boundary at the end, bad protobuf, or no retry request in it.
        InvalidKeyError: the ratchet key is not a valid public key.
    """
    if not isinstance(content, PlaintextContent):
        raise DecodeError("not a PlaintextContent")
    body = content.body
    if not body or body[-1] != _MARKER:
        raise DecodeError("plaintext content without its boundary byte")
    pb = wire_pb2.ServiceContent()
    try:
        pb.ParseFromString(body[:-1])
    except _ProtoDecodeError:
        raise DecodeError("plaintext content: invalid protobuf") from None
    if not pb.HasField("decryption_error_message"):
        raise DecodeError("plaintext content holds no decryption error message")
    return DecryptionErrorMessage.from_bytes(pb.decryption_error_message)
