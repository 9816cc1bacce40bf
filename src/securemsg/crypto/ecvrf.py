"""ECVRF-EDWARDS25519-SHA512-TAI (RFC 9381, suite 0x03), as AKD's ``whatsapp_v1`` uses it.

Group operations run in libsodium through pynacl (point addition, subtraction and
scalar multiplication on the prime-order subgroup). Only one step is pure Python: deciding
whether a 32-byte hash is the encoding of a curve point (RFC 8032 §5.1.3) for RFC 9381's
try-and-increment, because candidate points need not lie in the prime-order subgroup and
libsodium's scalar multiplication refuses those. The cofactor is then cleared by three
doublings.

Proof layout: ``Gamma (32) || c (16, little-endian) || s (32, little-endian)`` = 80 bytes. The
output beta is ``SHA-512(0x03 || 0x03 || 8*Gamma || 0x00)``; AKD's node label is ``beta[:32]``.

Deviation from RFC 9381, on purpose and as AKD does: ``s`` is reduced modulo L instead of
rejecting ``s >= L`` (a proof AKD accepts must verify here too). Stricter than AKD, and
harmless for honest proofs: Gamma must be a canonical encoding of a point in the prime-order
subgroup. See docs/key-transparency.md.
"""

from __future__ import annotations

import hashlib

from nacl import bindings as _nb
from nacl.exceptions import RuntimeError as _NaclRuntimeError

from securemsg.errors import KeyTransparencyDecodeError, KeyTransparencyProofError, UsageError

__all__ = [
    "PROOF_LENGTH",
    "VrfPrivateKey",
    "VrfPublicKey",
    "proof_to_hash",
]

PROOF_LENGTH = 80
_SUITE = b"\x03"
_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)
_IDENTITY = b"\x01" + bytes(31)


def _is_curve_point(encoded: bytes) -> bool:
    """RFC 8032 §5.1.3 decoding: True when ``encoded`` is a canonical point encoding."""
    y = int.from_bytes(encoded, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    if y >= _P:
        return False
    yy = y * y % _P
    u = (yy - 1) % _P
    v = (_D * yy + 1) % _P
    v3 = v * v % _P * v % _P
    x = u * v3 % _P * pow(u * v3 % _P * v3 % _P * v % _P, (_P - 5) // 8, _P) % _P
    vxx = v * x % _P * x % _P
    if vxx == u:
        pass
    elif vxx == (-u) % _P:
        x = x * _SQRT_M1 % _P
    else:
        return False
    return not (x == 0 and sign == 1)


def _times8(point: bytes) -> bytes:
    doubled = point
    for _ in range(3):
        doubled = _nb.crypto_core_ed25519_add(doubled, doubled)
    return doubled


def _mul(scalar: int, point: bytes) -> bytes:
    """``scalar * point`` for a point in the prime-order subgroup (identity for 0)."""
    scalar %= _L
    if scalar == 0:
        return _IDENTITY
    return _nb.crypto_scalarmult_ed25519_noclamp(scalar.to_bytes(32, "little"), point)


def _mul_base(scalar: int) -> bytes:
    scalar %= _L
    if scalar == 0:
        return _IDENTITY
    return _nb.crypto_scalarmult_ed25519_base_noclamp(scalar.to_bytes(32, "little"))


def _encode_to_curve(public_key: bytes, alpha: bytes) -> bytes:
    """RFC 9381 §5.4.1.1 try-and-increment: H, in the prime-order subgroup."""
    prefix = _SUITE + b"\x01" + public_key + alpha
    for ctr in range(256):
        candidate = hashlib.sha512(prefix + bytes((ctr, 0))).digest()[:32]
        if not _is_curve_point(candidate):
            continue
        cleared = _times8(candidate)
        if cleared != _IDENTITY:
            return cleared
    raise KeyTransparencyProofError("VRF: no curve point for this input", "vrf")  # pragma: no cover


def _challenge(public_key: bytes, h: bytes, gamma: bytes, u: bytes, v: bytes) -> bytes:
    data = _SUITE + b"\x02" + public_key + h + gamma + u + v + b"\x00"
    return hashlib.sha512(data).digest()[:16]


def proof_to_hash(proof: bytes) -> bytes:
    """beta (64 bytes) of a proof whose Gamma decodes; does not verify the proof."""
    gamma = _decode_gamma(proof)
    return hashlib.sha512(_SUITE + b"\x03" + _times8(gamma) + b"\x00").digest()


def _decode_gamma(proof: bytes) -> bytes:
    if len(proof) != PROOF_LENGTH:
        raise KeyTransparencyDecodeError("VRF proof must be 80 bytes", "decode")
    gamma = proof[:32]
    if not _nb.crypto_core_ed25519_is_valid_point(gamma):
        raise KeyTransparencyProofError("VRF proof: Gamma is not a valid point", "vrf")
    return gamma


class VrfPublicKey:
    """A VRF public key (a canonical Ed25519 point of prime order, not of small order)."""

    __slots__ = ("_bytes", "_verified")

    #: How many verified (input, proof) pairs a key remembers (verification is deterministic;
    #: a client re-checking the same proofs, e.g. while monitoring, pays once).
    VERIFIED_CACHE_SIZE = 4096

    def __init__(self, encoded: bytes) -> None:
        if len(encoded) != 32:
            raise KeyTransparencyDecodeError("VRF public key must be 32 bytes", "decode")
        if not _nb.crypto_core_ed25519_is_valid_point(encoded):
            raise KeyTransparencyDecodeError("VRF public key is not a valid point", "decode")
        self._bytes = bytes(encoded)
        self._verified: dict[bytes, bytes] = {}

    def __bytes__(self) -> bytes:
        return self._bytes

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VrfPublicKey) and other._bytes == self._bytes

    def __hash__(self) -> int:
        return hash(self._bytes)

    def verify(self, alpha: bytes, proof: bytes) -> bytes:
        """Verify ``proof`` for input ``alpha``; return beta (64 bytes).

        Raises:
            KeyTransparencyDecodeError: the proof is not 80 bytes.
            KeyTransparencyProofError: the proof does not verify (reason ``"vrf"``).
        """
        memo_key = len(alpha).to_bytes(8, "big") + alpha + proof
        beta = self._verified.get(memo_key)
        if beta is not None:
            return beta
        gamma = _decode_gamma(proof)
        c = int.from_bytes(proof[32:48], "little")
        s = int.from_bytes(proof[48:80], "little") % _L  # AKD reduces s instead of rejecting
        pk = self._bytes
        h = _encode_to_curve(pk, alpha)
        try:
            u = _nb.crypto_core_ed25519_sub(_mul_base(s), _mul(c, pk))
            v = _nb.crypto_core_ed25519_sub(_mul(s, h), _mul(c, gamma))
        except _NaclRuntimeError as exc:  # pragma: no cover - points were validated above
            raise KeyTransparencyProofError("VRF proof does not verify", "vrf") from exc
        if _challenge(pk, h, gamma, u, v) != proof[32:48]:
            raise KeyTransparencyProofError("VRF proof does not verify", "vrf")
        beta = hashlib.sha512(_SUITE + b"\x03" + _times8(gamma) + b"\x00").digest()
        if len(self._verified) >= self.VERIFIED_CACHE_SIZE:
            self._verified.pop(next(iter(self._verified)))
        self._verified[memo_key] = beta
        return beta


class VrfPrivateKey:
    """A VRF private key: a 32-byte Ed25519 seed, expanded as RFC 8032 does."""

    __slots__ = ("_nonce_key", "_public", "_seed", "_x")

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise UsageError("a VRF private key is a 32-byte seed")
        digest = hashlib.sha512(seed).digest()
        lower = bytearray(digest[:32])
        lower[0] &= 248
        lower[31] &= 63
        lower[31] |= 64
        self._seed = bytes(seed)
        self._x = int.from_bytes(lower, "little")
        self._nonce_key = digest[32:]
        self._public = VrfPublicKey(_mul_base(self._x))

    @property
    def public_key(self) -> VrfPublicKey:
        return self._public

    def seed_bytes(self) -> bytes:
        """The 32-byte seed (secret; AKD derives the commitment key from it)."""
        return self._seed

    def prove(self, alpha: bytes) -> bytes:
        """The 80-byte proof for ``alpha`` (deterministic, RFC 8032-style nonce)."""
        pk = bytes(self._public)
        h = _encode_to_curve(pk, alpha)
        k = int.from_bytes(hashlib.sha512(self._nonce_key + h).digest(), "little") % _L
        gamma = _mul(self._x, h)
        c_bytes = _challenge(pk, h, gamma, _mul_base(k), _mul(k, h))
        c = int.from_bytes(c_bytes, "little")
        s = (k + c * self._x) % _L
        return gamma + c_bytes + s.to_bytes(32, "little")

    def hash(self, alpha: bytes) -> bytes:
        """beta (64 bytes) for ``alpha`` without building a proof (cheaper)."""
        gamma = _mul(self._x, _encode_to_curve(bytes(self._public), alpha))
        return hashlib.sha512(_SUITE + b"\x03" + _times8(gamma) + b"\x00").digest()
