"""Codec for scannable safety numbers (``proto/fingerprint.proto``, libsignal's field numbers).

Theory of operation
-------------------
A scannable fingerprint is ``CombinedFingerprints{version, local{content}, remote{content}}``,
the bytes a QR code carries. This module only moves bytes: :func:`encode_combined` builds the
protobuf, :func:`decode_combined` parses it into plain values. Missing fields decode to
``None`` so the caller can reproduce libsignal's rules (a missing version compares as 0).
Decoding hostile bytes raises only :class:`~securemsg.errors.DecodeError`.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import DecodeError as _ProtoDecodeError

from securemsg._proto import fingerprint_pb2
from securemsg.errors import DecodeError

__all__ = ["CombinedFingerprintFields", "decode_combined", "encode_combined"]


@dataclass(frozen=True, slots=True)
class CombinedFingerprintFields:
    """Plain contents of a ``CombinedFingerprints`` message (None = field absent)."""

    version: int | None
    local: bytes | None
    remote: bytes | None


def encode_combined(version: int, local: bytes, remote: bytes) -> bytes:
    """Serialize, fields in field-number order (as libsignal's prost does)."""
    pb = fingerprint_pb2.CombinedFingerprints(version=version)
    pb.local_fingerprint.content = local
    pb.remote_fingerprint.content = remote
    return pb.SerializeToString()


def decode_combined(data: bytes) -> CombinedFingerprintFields:
    """Parse a ``CombinedFingerprints``.

    Raises:
        DecodeError: not bytes or not a valid protobuf.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise DecodeError("scannable fingerprint must be bytes")
    pb = fingerprint_pb2.CombinedFingerprints()
    try:
        pb.ParseFromString(bytes(data))
    except _ProtoDecodeError:
        raise DecodeError("scannable fingerprint: invalid protobuf") from None
    local = (
        pb.local_fingerprint.content
        if pb.HasField("local_fingerprint") and pb.local_fingerprint.HasField("content")
        else None
    )
    remote = (
        pb.remote_fingerprint.content
        if pb.HasField("remote_fingerprint") and pb.remote_fingerprint.HasField("content")
        else None
    )
    return CombinedFingerprintFields(pb.version if pb.HasField("version") else None, local, remote)
