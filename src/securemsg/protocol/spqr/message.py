"""The ``pq_ratchet`` field of a SignalMessage: SPQR V1 framing (SPQR ``src/lib.rs``).

Theory of operation: every encrypted message carries exactly one SPQR message::

    0x01 || varint(epoch >= 1) || varint(index < 2**32) || type(0..6)
         || [varint(chunk_index <= 65535) || data(32)]    (types Hdr, Ek, EkCt1Ack, Ct1, Ct2)
         || [anything]                                     (ignored: room for future versions)

varints are unsigned LEB128 of at most 10 bytes; non-minimal encodings are accepted, encoders
emit the minimal form. This module only frames bytes; it knows nothing about braid states.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final, NamedTuple

from securemsg.errors import DecodeError, UnsupportedVersionError

__all__ = [
    "CHUNK_LENGTH",
    "MessageType",
    "SpqrMessage",
    "decode_message",
    "encode_message",
    "encode_varint",
]

VERSION_V1: Final = 1
CHUNK_LENGTH: Final = 32
_MAX_VARINT_BYTES: Final = 10
_U64_MASK: Final = (1 << 64) - 1
_U32_MAX: Final = 0xFFFFFFFF


class MessageType(IntEnum):
    """The payload type byte (the framing table above)."""

    NONE = 0
    HDR = 1
    EK = 2
    EK_CT1_ACK = 3
    CT1_ACK = 4
    CT1 = 5
    CT2 = 6


_CHUNKED: Final = frozenset(
    (MessageType.HDR, MessageType.EK, MessageType.EK_CT1_ACK, MessageType.CT1, MessageType.CT2)
)
_CHUNKED_INTS: Final = frozenset(int(t) for t in _CHUNKED)
_TYPES: Final = tuple(MessageType)


class SpqrMessage(NamedTuple):
    """A parsed ``pq_ratchet`` value (immutable).

    Attributes:
        epoch: the sender's SCKA epoch (>= 1).
        key_index: the sender's SPQR chain index (key of chain epoch ``epoch - 1``).
        type: the payload type.
        chunk_index: the erasure-code chunk number, or None for unchunked types.
        chunk: the 32 chunk bytes, or None for unchunked types.
    """

    epoch: int
    key_index: int
    type: MessageType
    chunk_index: int | None = None
    chunk: bytes | None = None


_ONE_BYTE: Final = tuple(bytes((i,)) for i in range(0x80))


_tuple_new = tuple.__new__


def encode_varint(value: int) -> bytes:
    """Minimal unsigned LEB128 of a u64."""
    # Fast paths for the one- and two-byte forms (epochs, chunk indices, most key indices).
    if value < 0x80:
        return _ONE_BYTE[value]
    if value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _varint(data: bytes, at: int) -> tuple[int, int]:
    """Decode a varint at ``at``; return (value mod 2**64, next offset).

    The forms of one to three bytes (every value below 2**21: epochs, chunk indices and the key
    indices of all but very long chains) are decoded without a loop.
    """
    n = len(data)
    if at + 2 < n:
        b0 = data[at]
        if b0 < 0x80:
            return b0, at + 1
        b1 = data[at + 1]
        if b1 < 0x80:
            return (b0 & 0x7F) | (b1 << 7), at + 2
        b2 = data[at + 2]
        if b2 < 0x80:
            return (b0 & 0x7F) | ((b1 & 0x7F) << 7) | (b2 << 14), at + 3
    end = min(n, at + _MAX_VARINT_BYTES)
    value = 0
    shift = 0
    i = at
    while i < end:
        b = data[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value & _U64_MASK, i
        shift += 7
    raise DecodeError("pq_ratchet: truncated or overlong varint")


def encode_message(
    epoch: int,
    index: int,
    mtype: MessageType,
    chunk_index: int | None = None,
    chunk: bytes | None = None,
) -> bytes:
    """Frame one SPQR message (minimal varints, no trailing bytes)."""
    if chunk is None or chunk_index is None:
        return b"".join((b"\x01", encode_varint(epoch), encode_varint(index), _ONE_BYTE[mtype]))
    return b"".join(
        (
            b"\x01",
            encode_varint(epoch),
            encode_varint(index),
            _ONE_BYTE[mtype],
            encode_varint(chunk_index),
            chunk,
        )
    )


def decode_message(data: bytes) -> SpqrMessage:
    """Parse a ``pq_ratchet`` value.

    Raises:
        UnsupportedVersionError: empty input (SPQR "V0") or a first byte other than 0x01.
        DecodeError: truncated input, epoch 0, index >= 2**32, unknown type,
            chunk index > 65535 or fewer than 32 chunk bytes.
    """
    if not data:
        raise UnsupportedVersionError("pq_ratchet: empty (no SPQR) is refused", 0)
    if data[0] != VERSION_V1:
        raise UnsupportedVersionError("pq_ratchet: unknown version", data[0])
    # One-byte varints are read inline (the usual epoch, short chains); the rest by _varint.
    n = len(data)
    if n > 1 and data[1] < 0x80:
        epoch, at = data[1], 2
    else:
        epoch, at = _varint(data, 1)
    if epoch == 0:
        raise DecodeError("pq_ratchet: epoch 0")
    if at < n and data[at] < 0x80:
        index, at = data[at], at + 1
    else:
        index, at = _varint(data, at)
    if index > _U32_MAX:
        raise DecodeError("pq_ratchet: index does not fit 32 bits")
    if at >= n:
        raise DecodeError("pq_ratchet: missing type")
    t = data[at]
    if t > 6:
        raise DecodeError("pq_ratchet: unknown payload type")
    at += 1
    mtype = _TYPES[t]
    if t not in _CHUNKED_INTS:
        return _tuple_new(SpqrMessage, (epoch, index, mtype, None, None))
    if at < n and data[at] < 0x80:
        chunk_index, at = data[at], at + 1
    else:
        chunk_index, at = _varint(data, at)
    end = at + CHUNK_LENGTH
    if end > n or chunk_index > 0xFFFF:
        raise DecodeError("pq_ratchet: bad chunk")
    # tuple.__new__ skips the NamedTuple's Python-level __new__ (once per received message).
    return _tuple_new(SpqrMessage, (epoch, index, mtype, chunk_index, bytes(data[at:end])))
