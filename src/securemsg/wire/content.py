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
"""

from __future__ import annotations

from dataclasses import dataclass, field

from securemsg._proto import content_pb2
from securemsg.errors import DecodeError, UnsupportedVersionError, UsageError

__all__ = [
    "ACCESS_KEY_LENGTH",
    "CONTENT_VERSION",
    "GROUP_ID_LENGTH",
    "MAX_GROUP_MEMBERS",
    "PADDING_BLOCK",
    "Content",
    "GroupContext",
    "decode_content",
    "decode_padded_content",
    "encode_content",
    "encode_padded_content",
    "pad",
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


@dataclass(frozen=True, slots=True)
class GroupContext:
    """Which group a message belongs to.

    Attributes:
        group_id: 16 bytes; also the sender-key distribution id of the group.
        title: the group's display name.
        members: ACI strings of every member (the creator included).
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
    """

    timestamp: int
    text: str | None = None
    group: GroupContext | None = None
    sender_key_distribution: bytes | None = field(default=None, repr=False)
    access_key: bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if type(self.timestamp) is not int or not 0 <= self.timestamp <= _U64_MAX:
            raise UsageError("timestamp must be a u64 (Unix ms)")
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


def encode_content(content: Content) -> bytes:
    """Serialize ``content`` (unpadded) with the current version.

    Raises:
        UsageError: ``content`` is not a :class:`Content`.
    """
    if not isinstance(content, Content):
        raise UsageError("content must be a Content")
    pb = content_pb2.Content(version=CONTENT_VERSION, timestamp=content.timestamp)
    if content.text is not None:
        pb.text = content.text
    if content.group is not None:
        pb.group.id = content.group.group_id
        pb.group.title = content.group.title
        pb.group.members.extend(content.group.members)
    if content.sender_key_distribution is not None:
        pb.sender_key_distribution = content.sender_key_distribution
    if content.access_key is not None:
        pb.access_key = content.access_key
    try:
        return pb.SerializeToString()
    except Exception:  # e.g. a lone surrogate in a str field
        raise UsageError("content is not serializable (invalid text?)") from None


def decode_content(data: bytes) -> Content:
    """Parse unpadded ``Content`` bytes.

    Raises:
        UnsupportedVersionError: the version is not 1.
        DecodeError: not bytes, bad protobuf, invalid UTF-8, or a bad group context.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError("content must be bytes")
    pb = content_pb2.Content()
    try:
        pb.ParseFromString(bytes(data))
    except Exception:
        raise DecodeError("content: invalid protobuf") from None
    if pb.version != CONTENT_VERSION:
        raise UnsupportedVersionError("content: unknown version", pb.version)
    group: GroupContext | None = None
    if pb.HasField("group"):
        if len(pb.group.id) != GROUP_ID_LENGTH:
            raise DecodeError("content: group id must be 16 bytes")
        if len(pb.group.members) > MAX_GROUP_MEMBERS:
            raise DecodeError("content: too many group members")
        group = GroupContext(bytes(pb.group.id), pb.group.title, tuple(pb.group.members))
    access_key: bytes | None = None
    if pb.HasField("access_key"):
        if len(pb.access_key) != ACCESS_KEY_LENGTH:
            raise DecodeError("content: access key must be 16 bytes")
        access_key = bytes(pb.access_key)
    return Content(
        timestamp=pb.timestamp,
        text=pb.text if pb.HasField("text") else None,
        group=group,
        sender_key_distribution=bytes(pb.sender_key_distribution)
        if pb.HasField("sender_key_distribution")
        else None,
        access_key=access_key,
    )


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
