"""Curve25519 keys, X25519 agreement and XEdDSA signatures exactly as libsignal does them.

Theory of operation
-------------------
A public key is the 32-byte Montgomery ``u`` coordinate; on the wire it is ``0x05 || u``
(libsignal's ``KeyType::Djb``), trailing bytes after the 33rd tolerated as libsignal does. A
private key is 32 bytes, clamped on load. Agreement is X25519 (libsodium); an all-zero result
is refused.

Signatures are XEdDSA in libsignal's flavour (``rust/core/src/curve/curve25519.rs``), which
differs from the XEdDSA paper: the private scalar is *not* negated to force the Edwards sign
bit to 0; the sign bit of ``A = a·B`` travels in the top bit of ``sig[63]`` instead::

    a = clamped key mod L        A = a·B (compressed Edwards)     sign = A[31] & 0x80
    r = SHA-512(0xFE || 0xFF*31 || key || M || Z64) mod L          R = r·B
    h = SHA-512(R || A || M) mod L     s = h·a + r mod L     sig = R || s, sig[63] |= sign

No scalar is negated: libsignal carries the sign of ``A`` in the signature instead.

Constant time: the secret-dependent work of signing is libsodium's (the fixed-base
multiplications ``a·B`` and ``r·B``, the reductions mod L and ``h·a + r`` with
``crypto_core_ed25519_scalar_*``) and hashlib's SHA-512. Python only slices and concatenates the
resulting byte strings and copies the public sign bit of ``A``; the one branch is libsodium
refusing a zero nonce (probability 2^-252). ``a`` and ``A`` are computed at the first signature
and kept on the :class:`PrivateKey` object, never in a module-level cache. X25519 is libsodium.

Verification maps ``u`` to Edwards ``y = (u-1)/(u+1)`` with the sign from the signature,
clears that bit of ``s``, refuses ``s`` with any of its top 3 bits set, reduces ``s`` mod L
(libsignal accepts ``L <= s < 2^253``) and checks ``encode(s·B - h·A) == R`` (cofactorless).

Speed: the libsodium Ed25519 verifier computes that very equation, so after reducing ``s`` we
hand it ``R || s`` and the Edwards encoding of ``A`` (its ``y`` is LRU-cached per key: one
field inversion). libsodium additionally refuses small-order ``A`` or ``R`` encodings, which
libsignal accepts if the equation holds. When libsodium says no, an ``A`` of prime order
leaves only ``R`` = identity to decide (two libsodium multiplications); an ``A`` with a
torsion component (only a hostile key) takes the exact pure-Python :func:`_verify_slow`
(a few milliseconds).
"""

from __future__ import annotations

from functools import lru_cache
from hashlib import sha512
from hmac import compare_digest

import nacl.exceptions
from nacl.bindings import (
    crypto_core_ed25519_is_valid_point,
    crypto_core_ed25519_scalar_add,
    crypto_core_ed25519_scalar_mul,
    crypto_core_ed25519_scalar_reduce,
    crypto_scalarmult,
    crypto_scalarmult_base,
    crypto_scalarmult_ed25519_base_noclamp,
    crypto_scalarmult_ed25519_noclamp,
    crypto_sign_open,
)

from securemsg.crypto.rng import Rng
from securemsg.errors import InvalidKeyError, InvalidSignatureError

__all__ = ["DJB_TYPE", "KeyPair", "PrivateKey", "PublicKey"]

DJB_TYPE = 0x05
_OBJECT_NEW = object.__new__

_P = 2**255 - 19
_L = 2**252 + 27742317777372353535851937790883648493
_MASK255 = (1 << 255) - 1
_SIGN_PREFIX = b"\xfe" + b"\xff" * 31
_IDENTITY = b"\x01" + bytes(31)
_Y_MINUS_ONE = (_P - 1).to_bytes(32, "little")
_BAD_SIGNATURE = "signature verification failed"

#: Encodings of the 8 points of order dividing 8, top (sign) bit cleared. libsodium's verifier
#: refuses these as ``A`` or ``R``; libsignal does not, so they take the exact slow path.
_SMALL_ORDER_MASKED = frozenset(
    bytes.fromhex(h)
    for h in (
        "0000000000000000000000000000000000000000000000000000000000000000",
        "0100000000000000000000000000000000000000000000000000000000000000",
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    )
)


def _clamp(raw: bytes) -> bytes:
    return bytes((raw[0] & 248,)) + raw[1:31] + bytes(((raw[31] & 127) | 64,))


def _masked(enc: bytes) -> bytes:
    return enc[:31] + bytes((enc[31] & 0x7F,))


# The two LRU caches below are keyed by public values only (a peer's Montgomery ``u``, an
# Edwards point encoding): no private key, nor anything derived from one, reaches them.
@lru_cache(maxsize=4096)
def _edwards_y(raw: bytes) -> bytes | None:
    """Edwards ``y = (u-1)/(u+1)`` (canonical, sign bit 0) for a Montgomery ``u``; ``None`` if
    ``u = -1`` (the birational map's exceptional point). ``u``'s top bit is ignored and ``u``
    is reduced mod p, as curve25519-dalek's ``FieldElement::from_bytes`` does.

    Public input only (a public key's ``u``)."""
    u = (int.from_bytes(raw, "little") & _MASK255) % _P
    if u == _P - 1:
        return None
    return ((u - 1) * pow(u + 1, -1, _P) % _P).to_bytes(32, "little")


@lru_cache(maxsize=4096)
def _in_prime_subgroup(enc: bytes) -> bool:
    """On the curve, not small order, and in the prime-order subgroup (libsodium).

    Public input only (the Edwards form of a public key)."""
    return bool(crypto_core_ed25519_is_valid_point(enc))


_ZERO32 = bytes(32)


def _reduce64(wide: bytes) -> bytes:
    """A 64-byte little-endian integer mod L, 32 bytes (libsodium, constant time)."""
    return crypto_core_ed25519_scalar_reduce(wide)


def _mul_add(h: bytes, a: bytes, r: bytes) -> bytes:
    """``h·a + r mod L`` of 32-byte scalars (libsodium, constant time)."""
    return crypto_core_ed25519_scalar_add(crypto_core_ed25519_scalar_mul(h, a), r)


def _base_mult(scalar: bytes) -> bytes:
    """``scalar·B`` (Edwards encoding) for a reduced scalar; the identity for 0, which
    libsodium refuses (a nonce ``r = 0`` has probability 2^-252)."""
    try:
        return crypto_scalarmult_ed25519_base_noclamp(scalar)
    except nacl.exceptions.RuntimeError:
        return _IDENTITY


def _identity_r_holds(a_enc: bytes, s: int, message: bytes) -> bool:
    """Whether ``s·B == h·A`` for ``R`` = identity and ``A`` of prime order."""
    h = int.from_bytes(sha512(_IDENTITY + a_enc + message).digest(), "little") % _L
    # 0 < s, h < L and A, B of order L: neither product is the identity unless the scalar is 0
    sb = crypto_scalarmult_ed25519_base_noclamp(s.to_bytes(32, "little")) if s else _IDENTITY
    ha = crypto_scalarmult_ed25519_noclamp(h.to_bytes(32, "little"), a_enc) if h else _IDENTITY
    return compare_digest(sb, ha)


class PublicKey:
    """A Curve25519 public key. ``to_bytes()`` is libsignal's 33-byte ``0x05 || u`` form.

    Immutable, hashable, compares by value (public data: no constant-time comparison needed).
    """

    __slots__ = ("_raw", "_serialized")

    def __init__(self, raw: bytes) -> None:  # raw = 32-byte u coordinate, unchecked
        self._raw = raw
        # The 33-byte form is built once: it is serialized several times per message
        # (wire encoding, MAC inputs, identity comparisons in the stores).
        self._serialized = b"\x05" + raw

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicKey:
        """Parse libsignal's serialized form ``0x05 || u(32)``.

        Bytes after the 33rd are ignored, as libsignal does (it logs a warning).

        Raises:
            InvalidKeyError: empty input, a type byte other than ``0x05``, or fewer than 32
                key bytes.
        """
        if not data:
            raise InvalidKeyError("no key type identifier")
        if data[0] != DJB_TYPE:
            raise InvalidKeyError("bad key type")
        if len(data) < 33:
            raise InvalidKeyError("bad key length")
        if type(data) is bytes and len(data) == 33:
            # The usual case (every received ratchet key): keep the input as the serialized
            # form instead of rebuilding it.
            key: PublicKey = _OBJECT_NEW(cls)
            key._raw = data[1:]
            key._serialized = data
            return key
        return cls(bytes(data[1:33]))

    @classmethod
    def from_raw(cls, raw: bytes) -> PublicKey:
        """From a bare 32-byte ``u`` coordinate.

        Raises:
            InvalidKeyError: ``raw`` is not exactly 32 bytes.
        """
        if len(raw) != 32:
            raise InvalidKeyError("bad key length")
        return cls(bytes(raw))

    def to_bytes(self) -> bytes:
        """The 33-byte serialized form ``0x05 || u``."""
        return self._serialized

    @property
    def raw(self) -> bytes:
        """The bare 32-byte ``u`` coordinate."""
        return self._raw

    def verify(self, message: bytes, signature: bytes) -> None:
        """Verify a libsignal XEdDSA signature over ``message``.

        Accepts exactly what libsignal's ``verify_signature`` accepts.

        Raises:
            InvalidSignatureError: the signature is not 64 bytes or does not verify.
        """
        if len(signature) != 64:
            raise InvalidSignatureError(_BAD_SIGNATURE)
        y = _edwards_y(self._raw)
        top = signature[63]
        if y is None or top & 0x60:  # (s[31] & 0x7F) & 0xE0 != 0
            raise InvalidSignatureError(_BAD_SIGNATURE)
        # The sign bit goes on y, except for y = -1 whose x = 0 has no negative root.
        a_enc = y[:31] + bytes((y[31] | 0x80,)) if top & 0x80 and y != _Y_MINUS_ONE else y
        s = int.from_bytes(signature[32:], "little") & _MASK255
        r_enc = signature[:32]
        if s >= _L:
            s %= _L
        try:
            crypto_sign_open(r_enc + s.to_bytes(32, "little") + message, a_enc)
            return
        except nacl.exceptions.BadSignatureError:
            pass
        # libsodium also refuses small-order A or R encodings, which libsignal does not.
        if _masked(a_enc) in _SMALL_ORDER_MASKED or not _in_prime_subgroup(a_enc):
            # A key with a torsion component (only a hostile peer makes one): exact, slow.
            if _verify_slow(self._raw, message, signature):
                return
        elif r_enc == _IDENTITY and _identity_r_holds(a_enc, s, message):
            # With A of prime order, s·B - h·A is too, and the only small-order point
            # there is the identity: R = identity is the one case left to decide.
            return
        raise InvalidSignatureError(_BAD_SIGNATURE)

    def is_canonical(self) -> bool:
        """libsignal's check on an incoming base key: ``u < 2^255 - 19`` (top bit clear) and
        the Edwards point (sign 0) exists and is torsion-free (in the prime-order subgroup)."""
        u = int.from_bytes(self._raw, "little")
        if u >= _P:
            return False
        y = _edwards_y(self._raw)
        # For points reachable from u, libsodium's "valid point" (on curve, not small
        # order, in the main subgroup) is exactly "exists and torsion-free": the identity,
        # the one torsion-free small-order point, has no finite u.
        return y is not None and _in_prime_subgroup(y)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PublicKey):
            return NotImplemented
        return self._raw == other._raw

    def __hash__(self) -> int:
        return hash(self._raw)

    def __repr__(self) -> str:
        return "PublicKey(<32 bytes>)"


class PrivateKey:
    """A Curve25519 private key (32 bytes, clamped). ``repr`` never shows the key."""

    __slots__ = ("_ed_pub", "_public", "_raw", "_scalar")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != 32:
            raise InvalidKeyError("bad private key length")
        self._raw = _clamp(raw)
        self._public: PublicKey | None = None
        # XEdDSA's ``a = key mod L`` and ``A = a·B``, computed at the first signature and kept
        # on this object only (one scalar and one point per key: bounded by construction).
        self._ed_pub: bytes | None = None
        self._scalar: bytes | None = None

    @classmethod
    def generate(cls, rng: Rng) -> PrivateKey:
        """A fresh key from 32 bytes of ``rng`` (clamped)."""
        return cls(rng.random_bytes(32))

    @classmethod
    def from_bytes(cls, data: bytes) -> PrivateKey:
        """Load 32 bytes and clamp them, as libsignal does.

        Raises:
            InvalidKeyError: ``data`` is not exactly 32 bytes.
        """
        if len(data) != 32:
            raise InvalidKeyError("bad private key length")
        return cls(bytes(data))

    def to_bytes(self) -> bytes:
        """The 32 clamped key bytes (secret)."""
        return self._raw

    def public_key(self) -> PublicKey:
        """The X25519 public key ``u = key·9`` (computed once)."""
        pub = self._public
        if pub is None:
            pub = self._public = PublicKey(crypto_scalarmult_base(self._raw))
        return pub

    def agree(self, their: PublicKey) -> bytes:
        """X25519 with ``their`` public key; 32 bytes.

        Raises:
            InvalidKeyError: the shared secret is all zeros (a small-order public key).
        """
        try:
            shared = crypto_scalarmult(self._raw, their.raw)
        except nacl.exceptions.RuntimeError:
            # libsodium returns -1 exactly when the result would be all zeros.
            raise InvalidKeyError("invalid key agreement") from None
        if compare_digest(shared, bytes(32)):
            raise InvalidKeyError("invalid key agreement")
        return shared

    def sign(self, message: bytes, rng: Rng) -> bytes:
        """XEdDSA signature (64 bytes) over ``message``, libsignal flavour.

        Draws 64 bytes from ``rng`` for the nonce.
        """
        a = self._scalar
        a_enc = self._ed_pub
        if a is None or a_enc is None:
            a = self._scalar = _reduce64(self._raw + _ZERO32)  # never 0 once clamped
            a_enc = self._ed_pub = crypto_scalarmult_ed25519_base_noclamp(a)
        z = rng.random_bytes(64)
        r = _reduce64(sha512(_SIGN_PREFIX + self._raw + message + z).digest())
        r_enc = _base_mult(r)
        h = _reduce64(sha512(r_enc + a_enc + message).digest())
        s = _mul_add(h, a, r)
        # s < L < 2^253: its top bit is free for the (public) sign bit of A.
        return r_enc + s[:31] + bytes((s[31] | (a_enc[31] & 0x80),))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PrivateKey):
            return NotImplemented
        return compare_digest(self._raw, other._raw)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "PrivateKey(<secret>)"


class KeyPair:
    """A private key with its public key (computed once)."""

    __slots__ = ("private_key", "public_key")

    def __init__(self, private_key: PrivateKey, public_key: PublicKey) -> None:
        self.private_key = private_key
        self.public_key = public_key

    @classmethod
    def generate(cls, rng: Rng) -> KeyPair:
        """A fresh key pair from 32 bytes of ``rng``."""
        private_key = PrivateKey.generate(rng)
        return cls(private_key, private_key.public_key())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KeyPair):
            return NotImplemented
        return self.private_key == other.private_key and self.public_key == other.public_key

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "KeyPair(<secret>)"


# --- exact, slow reference path (hostile small-order cases only) -----------------------------

_D = -121665 * pow(121666, -1, _P) % _P
_D2 = 2 * _D % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)

_Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z


def _recover_x(y: int, sign: int) -> int | None:
    """x with x^2 = (y^2-1)/(d y^2+1) and parity ``sign`` (x = 0 stays 0); None if none."""
    num = (y * y - 1) % _P
    den = (_D * y * y + 1) % _P
    x2 = num * pow(den, -1, _P) % _P
    x = pow(x2, (_P + 3) // 8, _P)
    if (x * x - x2) % _P:
        x = x * _SQRT_M1 % _P
        if (x * x - x2) % _P:
            return None
    if (x & 1) != sign:
        x = (_P - x) % _P
    return x


def _add(p: _Point, q: _Point) -> _Point:
    x1, y1, z1, t1 = p
    x2, y2, z2, t2 = q
    a = (y1 - x1) * (y2 - x2) % _P
    b = (y1 + x1) * (y2 + x2) % _P
    c = t1 * _D2 * t2 % _P
    d = 2 * z1 * z2 % _P
    e, f, g, hh = b - a, d - c, d + c, b + a
    return (e * f % _P, g * hh % _P, f * g % _P, e * hh % _P)


def _mul(k: int, p: _Point) -> _Point:
    q: _Point = (0, 1, 1, 0)
    while k:
        if k & 1:
            q = _add(q, p)
        p = _add(p, p)
        k >>= 1
    return q


def _encode(p: _Point) -> bytes:
    x, y, z, _ = p
    zi = pow(z, -1, _P)
    x = x * zi % _P
    y = y * zi % _P
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


_BY = 4 * pow(5, -1, _P) % _P
_BX = _recover_x(_BY, 0) or 0
_BASE: _Point = (_BX, _BY, 1, _BX * _BY % _P)


def _verify_slow(raw: bytes, message: bytes, signature: bytes) -> bool:
    """libsignal's ``verify_signature`` step by step in Python integers (milliseconds)."""
    y_enc = _edwards_y(raw)
    if y_enc is None:
        return False
    y = int.from_bytes(y_enc, "little")
    x = _recover_x(y, signature[63] >> 7)
    if x is None:
        return False
    a_point: _Point = (x, y, 1, x * y % _P)
    a_enc = _encode(a_point)
    s = int.from_bytes(signature[32:], "little") & _MASK255
    if s >> 253:
        return False
    h = int.from_bytes(sha512(signature[:32] + a_enc + message).digest(), "little") % _L
    neg_a: _Point = ((_P - a_point[0]) % _P, a_point[1], 1, (_P - a_point[3]) % _P)
    check = _add(_mul(s % _L, _BASE), _mul(h, neg_a))
    return compare_digest(_encode(check), signature[:32])
