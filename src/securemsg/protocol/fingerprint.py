"""Safety numbers: displayable (60 digits) and scannable (protobuf) fingerprints.

Theory of operation
-------------------
Each side's fingerprint is an iterated SHA-512 over its identity key and a stable identifier
(libsignal ``rust/protocol/src/fingerprint.rs``)::

    h = SHA-512(0x00 0x00 || key(33) || stable_id || key(33))
    repeat iterations - 1 times:  h = SHA-512(h || key(33))

*Displayable*: the first 30 bytes of ``h`` as six 5-byte big-endian numbers mod 100000, each
zero-padded to 5 digits; the two 30-digit strings are concatenated smaller-first, so both
parties see the same 60 digits. *Scannable*: ``CombinedFingerprints{version, local = h[:32],
remote = h[:32] of the peer}``. Comparing a scanned code swaps local and remote, checks the
version first and compares in constant time.

This module is pure: it knows keys and identifiers, nothing about stores or sessions.
Verification raises :class:`~securemsg.errors.FingerprintError` (``reason`` ``"mismatch"`` or
``"version"``); it never returns a bool that could be ignored.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from securemsg.crypto.primitives import constant_time_eq
from securemsg.errors import DecodeError, FingerprintError, UsageError
from securemsg.protocol.identity_and_prekeys import IdentityKey
from securemsg.wire.fingerprint import decode_combined, encode_combined

__all__ = [
    "DEFAULT_ITERATIONS",
    "DisplayableFingerprint",
    "Fingerprint",
    "ScannableFingerprint",
]

#: Iterations libsignal's tests and Signal's apps use.
DEFAULT_ITERATIONS = 5200
_MAX_ITERATIONS = 1_000_000
_SCANNABLE_LENGTH = 32
_VERSION_PREFIX = b"\x00\x00"


def _iterated_hash(iterations: int, stable_id: bytes, key: IdentityKey) -> bytes:
    key_bytes = key.to_bytes()
    h = hashlib.sha512(_VERSION_PREFIX + key_bytes + stable_id + key_bytes).digest()
    sha512 = hashlib.sha512
    for _ in range(iterations - 1):
        h = sha512(h + key_bytes).digest()
    return h


def _digits(h: bytes) -> str:
    return "".join(f"{int.from_bytes(h[i : i + 5], 'big') % 100_000:05d}" for i in range(0, 30, 5))


@dataclass(frozen=True, slots=True)
class DisplayableFingerprint:
    """The 60-digit safety number both parties see.

    Attributes:
        local: our 30 digits.
        remote: their 30 digits.
    """

    local: str
    remote: str

    def __str__(self) -> str:
        if self.local < self.remote:
            return self.local + self.remote
        return self.remote + self.local


@dataclass(frozen=True, slots=True)
class ScannableFingerprint:
    """The QR-code form: a version and the first 32 bytes of each side's hash.

    Attributes:
        version: caller-chosen scannable version (Signal uses 1 and 2).
        local_fingerprint: our 32 bytes.
        remote_fingerprint: their 32 bytes.
    """

    version: int
    local_fingerprint: bytes = field(repr=False)
    remote_fingerprint: bytes = field(repr=False)

    def to_bytes(self) -> bytes:
        """The ``CombinedFingerprints`` protobuf, byte-identical to libsignal's."""
        return encode_combined(self.version, self.local_fingerprint, self.remote_fingerprint)

    @classmethod
    def from_bytes(cls, data: bytes) -> ScannableFingerprint:
        """Parse a scanned code.

        Raises:
            DecodeError: bad protobuf, or the version or a fingerprint is missing.
        """
        fields = decode_combined(data)
        if fields.version is None or fields.local is None or fields.remote is None:
            raise DecodeError("scannable fingerprint: missing field")
        return cls(fields.version, fields.local, fields.remote)

    def compare(self, scanned: bytes) -> None:
        """Check a code scanned from the other party's screen.

        Their ``local`` must equal our ``remote`` and vice versa (constant time).

        Raises:
            FingerprintError: ``reason="version"`` if the versions differ (a missing version
                counts as 0, like libsignal), ``reason="mismatch"`` if the keys differ.
            DecodeError: the scanned bytes are not a valid protobuf or lack a fingerprint.
        """
        fields = decode_combined(scanned)
        theirs = 0 if fields.version is None else fields.version
        if theirs != self.version:
            raise FingerprintError("fingerprint version mismatch", "version")
        if fields.local is None or fields.remote is None:
            raise DecodeError("scannable fingerprint: missing field")
        same_a = constant_time_eq(fields.local, self.remote_fingerprint)
        same_b = constant_time_eq(fields.remote, self.local_fingerprint)
        if not (same_a and same_b):
            raise FingerprintError("safety numbers do not match", "mismatch")


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """Both forms of the safety number between a local and a remote identity.

    Attributes:
        displayable: the 60-digit form.
        scannable: the QR-code form.
    """

    displayable: DisplayableFingerprint
    scannable: ScannableFingerprint

    @classmethod
    def create(
        cls,
        *,
        version: int,
        iterations: int,
        local_id: bytes,
        local_key: IdentityKey,
        remote_id: bytes,
        remote_key: IdentityKey,
    ) -> Fingerprint:
        """Compute the safety number (libsignal ``Fingerprint::new``).

        Args:
            version: scannable version written into the QR code (a u32).
            iterations: hash iterations, 2..1_000_000 (Signal uses :data:`DEFAULT_ITERATIONS`).
            local_id: our stable identifier bytes (e.g. an E.164 or ACI bytes).
            local_key: our identity key.
            remote_id: their stable identifier bytes.
            remote_key: their identity key.

        Raises:
            UsageError: iterations out of range, version not a u32, ids not bytes.
        """
        if type(iterations) is not int or not 1 < iterations <= _MAX_ITERATIONS:
            raise UsageError("fingerprint iterations must be in 2..1000000")
        if type(version) is not int or not 0 <= version <= 0xFFFFFFFF:
            raise UsageError("fingerprint version must be a u32")
        if not isinstance(local_id, (bytes, bytearray)) or not isinstance(
            remote_id, (bytes, bytearray)
        ):
            raise UsageError("fingerprint identifiers must be bytes")
        local = _iterated_hash(iterations, bytes(local_id), local_key)
        remote = _iterated_hash(iterations, bytes(remote_id), remote_key)
        return cls(
            DisplayableFingerprint(_digits(local), _digits(remote)),
            ScannableFingerprint(version, local[:_SCANNABLE_LENGTH], remote[:_SCANNABLE_LENGTH]),
        )

    def display_string(self) -> str:
        """The 60 digits."""
        return str(self.displayable)
