"""GF(2^16) arithmetic for the SPQR erasure code (SPQR ``src/encoding/gf.rs``).

Theory of operation: the field is GF(2)[x] / (x^16 + x^12 + x^3 + x + 1) (modulus 0x1100B);
elements are ints 0..65535 in polynomial basis. Addition is XOR. Multiplication uses log/exp
tables built once at import from a generator of the multiplicative group (found by search,
checked to have order 65535); :func:`mul_slow` is the carry-less reference used by tests.
"""

from __future__ import annotations

from typing import Final

__all__ = ["EXP", "LOG", "MODULUS", "ORDER", "inv", "mul", "mul_slow"]

MODULUS: Final = 0x1100B
ORDER: Final = 0xFFFF  # size of the multiplicative group


def mul_slow(a: int, b: int) -> int:
    """Carry-less product of ``a`` and ``b`` reduced mod 0x1100B (reference)."""
    r = 0
    while b:
        if b & 1:
            r ^= a
        b >>= 1
        a <<= 1
        if a & 0x10000:
            a ^= MODULUS
    return r


def _tables() -> tuple[list[int], list[int]]:
    for g in range(2, 0x10000):
        exp = [0] * (2 * ORDER + 2)
        log = [0] * 0x10000
        x = 1
        ok = True
        for i in range(ORDER):
            if x == 1 and i:
                ok = False
                break
            exp[i] = x
            log[x] = i
            x = mul_slow(x, g)
        if ok and x == 1:
            for i in range(ORDER, 2 * ORDER + 2):
                exp[i] = exp[i - ORDER]
            return exp, log
    raise AssertionError("no generator")  # pragma: no cover


#: EXP[i] = g^i for 0 <= i < 2*ORDER+2 (doubled so EXP[LOG[a] + LOG[b]] needs no reduction).
#: LOG[a] for a != 0 (LOG[0] is meaningless: callers test for zero).
EXP, LOG = _tables()


def mul(a: int, b: int) -> int:
    """Field product."""
    if a == 0 or b == 0:
        return 0
    return EXP[LOG[a] + LOG[b]]


def inv(a: int) -> int:
    """Multiplicative inverse (``a`` must be non-zero)."""
    if a == 0:
        raise ZeroDivisionError("GF(2^16) inverse of 0")
    return EXP[ORDER - LOG[a]]
