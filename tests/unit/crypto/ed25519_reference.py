"""A deliberately plain, independent edwards25519 / XEdDSA reference for the tests.

Affine coordinates and Python integers only: slow (milliseconds per scalar multiplication)
and obviously correct, written straight from RFC 7748 / RFC 8032 and libsignal's description
of its XEdDSA variant (``rust/core/src/curve/curve25519.rs``). Not used by the library.
"""

from __future__ import annotations

import hashlib

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)

Point = tuple[int, int]  # affine (x, y); identity = (0, 1)
IDENTITY: Point = (0, 1)


def inv(x: int) -> int:
    return pow(x, -1, P)


def x_from_y(y: int, sign: int) -> int | None:
    """RFC 8032 5.1.3 square root, but x = 0 with sign 1 is kept (as curve25519-dalek does)."""
    xx = (y * y - 1) * inv(D * y * y + 1) % P
    x = pow(xx, (P + 3) // 8, P)
    if (x * x - xx) % P != 0:
        x = x * SQRT_M1 % P
    if (x * x - xx) % P != 0:
        return None
    if x % 2 != sign:
        x = (P - x) % P
    return x


def add(p: Point, q: Point) -> Point:
    (x1, y1), (x2, y2) = p, q
    t = D * x1 * x2 * y1 * y2 % P
    x3 = (x1 * y2 + x2 * y1) * inv(1 + t) % P
    y3 = (y1 * y2 + x1 * x2) * inv(1 - t) % P
    return (x3, y3)


def neg(p: Point) -> Point:
    return ((P - p[0]) % P, p[1])


def mul(k: int, p: Point) -> Point:
    result = IDENTITY
    for bit in bin(k)[2:]:
        result = add(result, result)
        if bit == "1":
            result = add(result, p)
    return result


def encode(p: Point) -> bytes:
    x, y = p
    return (y + ((x & 1) << 255)).to_bytes(32, "little")


def decode(data: bytes) -> Point | None:
    y = int.from_bytes(data, "little") & ((1 << 255) - 1)
    if y >= P:
        return None
    x = x_from_y(y, data[31] >> 7)
    return None if x is None else (x, y)


BASE: Point = (x_from_y(4 * inv(5) % P, 0) or 0, 4 * inv(5) % P)


def u_to_edwards(u_bytes: bytes, sign: int) -> Point | None:
    """curve25519-dalek's MontgomeryPoint::to_edwards."""
    u = (int.from_bytes(u_bytes, "little") & ((1 << 255) - 1)) % P
    if u == P - 1:
        return None
    y = (u - 1) * inv(u + 1) % P
    x = x_from_y(y, sign)
    return None if x is None else (x, y)


def edwards_to_u(p: Point) -> bytes:
    y = p[1]
    return ((1 + y) * inv(1 - y) % P).to_bytes(32, "little")


def x25519(k: bytes, u: bytes) -> bytes:
    """RFC 7748 Montgomery ladder."""
    kk = bytearray(k)
    kk[0] &= 248
    kk[31] &= 127
    kk[31] |= 64
    n = int.from_bytes(kk, "little")
    x1 = (int.from_bytes(u, "little") & ((1 << 255) - 1)) % P
    x2, z2, x3, z3, swap = 1, 0, x1, 1, 0
    for t in reversed(range(255)):
        bit = (n >> t) & 1
        swap ^= bit
        if swap:
            x2, x3, z2, z3 = x3, x2, z3, z2
        swap = bit
        a, b = (x2 + z2) % P, (x2 - z2) % P
        aa, bb = a * a % P, b * b % P
        e = (aa - bb) % P
        c, d = (x3 + z3) % P, (x3 - z3) % P
        da, cb = d * a % P, c * b % P
        x3 = (da + cb) ** 2 % P
        z3 = x1 * (da - cb) ** 2 % P
        x2 = aa * bb % P
        z2 = e * (aa + 121665 * e) % P
    if swap:
        x2, z2 = x3, z3
    return (x2 * pow(z2, P - 2, P) % P).to_bytes(32, "little")


def sha512_int(data: bytes) -> int:
    return int.from_bytes(hashlib.sha512(data).digest(), "little")


def xeddsa_sign(private: bytes, message: bytes, z: bytes) -> bytes:
    """libsignal's calculate_signature for an already clamped ``private``."""
    a = int.from_bytes(private, "little") % L
    cap_a = encode(mul(a, BASE))
    r = sha512_int(b"\xfe" + b"\xff" * 31 + private + message + z) % L
    cap_r = encode(mul(r, BASE))
    h = sha512_int(cap_r + cap_a + message) % L
    s = (h * a + r) % L
    sig = bytearray(cap_r + s.to_bytes(32, "little"))
    sig[63] = (sig[63] & 0x7F) | (cap_a[31] & 0x80)
    return bytes(sig)


def xeddsa_verify(public_u: bytes, message: bytes, signature: bytes) -> bool:
    """libsignal's verify_signature."""
    if len(signature) != 64:
        return False
    point = u_to_edwards(public_u, signature[63] >> 7)
    if point is None:
        return False
    s_bytes = bytearray(signature[32:])
    s_bytes[31] &= 0x7F
    if s_bytes[31] & 0xE0:
        return False
    h = sha512_int(signature[:32] + encode(point) + message) % L
    s = int.from_bytes(s_bytes, "little") % L
    check = add(mul(s, BASE), neg(mul(h, point)))
    return encode(check) == signature[:32]


def small_order_points() -> list[Point]:
    """The 8 points of order dividing 8."""
    # L·Q is in the torsion subgroup for any curve point Q; keep the first of order exactly 8.
    y = 2
    while True:
        x = x_from_y(y, 0)
        if x is not None:
            t8 = mul(L, (x, y))
            if mul(4, t8) != IDENTITY:
                break
        y += 1
    pts = [mul(k, t8) for k in range(8)]
    assert len(set(pts)) == 8 and mul(8, t8) == IDENTITY
    return pts
