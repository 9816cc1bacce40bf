"""The numpy lattice core on secrets: CBD by bit operations, no division, exact results.

Known answers were computed with the earlier table/division code and an independent FIPS 203
Algorithm 8 loop; the new code must give the same bytes. A recording ``ndarray`` subclass
shows which numpy operations touch the (secret) data: no division, remainder or table lookup.
"""

from __future__ import annotations

import hashlib
import random
from fractions import Fraction
from typing import Any, ClassVar

import numpy as np
import pytest

from securemsg.crypto import _lattice as lat

Q = lat.Q
_DIVISIONS = {"floor_divide", "remainder", "divmod", "true_divide", "fmod"}
_LOOKUPS = {"take", "choose", "take_along_axis", "put", "searchsorted"}

# sample_noise(bytes(range(32)), 0, 3): natural-order coefficients, first 16 and SHA-256 of all
# 256 as int8.
_CBD_KAT = [
    (
        [-1, 0, 1, 1, -2, 1, 0, 0, -1, 1, -1, -1, -2, 0, 1, -1],
        "df18890b497afc8feb3ec21823551446aa303acac5d10f71f11c0207103be8ea",
    ),
    (
        [0, 2, -1, 1, 2, 1, 1, 2, 0, 1, 0, 0, 0, 0, -1, 1],
        "436e640e9d6530f5711dff77a1415691e8c9b75b36943ba00515f7509c1248e2",
    ),
    (
        [0, -1, -1, -2, 0, -1, 0, 0, 1, 0, -1, -1, -1, -1, -1, 0],
        "27a92c244e7db2f92858916dd8eb7848fd75d14f68444fcd1de0ecb92f07e6d8",
    ),
]

# Compress_d of [0, 1, 832, 833, 1664, 1665, 2496, 2497, 3328], and SHA-256 of Compress_d over
# all of [0, q) as little-endian uint16.
_COMPRESS_POINTS = [0, 1, 832, 833, 1664, 1665, 2496, 2497, 3328]
_COMPRESS_KAT = {
    1: (
        [0, 0, 0, 1, 1, 1, 1, 0, 0],
        "9e5c7458c962378a1bb60561cf4cff9aa32d6a0e3f5aa3008b2f939c81356c63",
    ),
    4: (
        [0, 0, 4, 4, 8, 8, 12, 12, 0],
        "9d68d42993040d9e45002317989fb3abecb3c6c3c51fbe471053929ef0e24d41",
    ),
    5: (
        [0, 0, 8, 8, 16, 16, 24, 24, 0],
        "a8891887488c93eccc380265be4a01f4dc2165cb7687013a6cb40f47ca8ab668",
    ),
    10: (
        [0, 0, 256, 256, 512, 512, 768, 768, 0],
        "b32707254c9946cd739ff102f870f3a6e7ddbe3175088c2dcbfa4c6901e4651c",
    ),
    11: (
        [0, 1, 512, 512, 1024, 1024, 1536, 1536, 2047],
        "676ee64fbd84b6960f04118df698dead5ae4d93493bbe904f4483b9a1be0d8bc",
    ),
}


class _Recorder(np.ndarray):  # type: ignore[type-arg]
    """An ndarray that logs every ufunc and array function applied to it."""

    log: ClassVar[list[str]] = []

    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        _Recorder.log.append(ufunc.__name__)
        args = [x.view(np.ndarray) if isinstance(x, _Recorder) else x for x in inputs]
        if "out" in kwargs:
            kwargs["out"] = tuple(
                o.view(np.ndarray) if isinstance(o, _Recorder) else o for o in kwargs["out"]
            )
        result = getattr(ufunc, method)(*args, **kwargs)
        return result.view(_Recorder) if isinstance(result, np.ndarray) else result

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        _Recorder.log.append(func.__name__)
        return super().__array_function__(func, types, args, kwargs)

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, np.ndarray) or (
            isinstance(key, tuple) and any(isinstance(k, np.ndarray) for k in key)
        ):
            _Recorder.log.append("fancy-index")
        return super().__getitem__(key)


def _recorded(x: np.ndarray) -> _Recorder:  # type: ignore[type-arg]
    _Recorder.log.clear()
    return x.view(_Recorder)


def _cbd2_reference(octets: bytes) -> list[int]:
    """FIPS 203 Algorithm 8 (SamplePolyCBD_2), bit by bit."""
    bits = [(octets[i // 8] >> (i % 8)) & 1 for i in range(8 * len(octets))]
    return [
        bits[4 * i] + bits[4 * i + 1] - bits[4 * i + 2] - bits[4 * i + 3]
        for i in range(len(octets) * 2)
    ]


def _noise_natural(seed: bytes, first: int, count: int) -> list[list[int]]:
    out = lat.sample_noise(seed, first, count)
    return [row.tolist() for row in lat.to_natural(out.astype(np.int64))]


def test_cbd2_known_answers() -> None:
    for row, (head, digest) in zip(_noise_natural(bytes(range(32)), 0, 3), _CBD_KAT, strict=True):
        assert row[:16] == head
        assert hashlib.sha256(np.array(row, dtype=np.int8).tobytes()).hexdigest() == digest


def test_cbd2_equals_fips203_algorithm_8_for_every_byte_value() -> None:
    octets = bytes(range(256)) * 2
    got = lat.to_natural(lat.cbd2(np.frombuffer(octets, dtype=np.uint8).reshape(4, 128)))
    assert got.reshape(-1).tolist() == _cbd2_reference(octets)


def test_cbd2_equals_the_reference_on_prf_output() -> None:
    rnd = random.Random(203)
    for _ in range(20):
        seed, first = rnd.randbytes(32), rnd.randrange(250)
        prf = [hashlib.shake_256(seed + bytes((first + n,))).digest(128) for n in range(3)]
        assert _noise_natural(seed, first, 3) == [_cbd2_reference(b) for b in prf]


def test_cbd2_uses_no_lookup_and_no_division() -> None:
    octets = np.frombuffer(bytes(range(128)) * 2, dtype=np.uint8).reshape(2, 128)
    lat.cbd2(_recorded(octets))
    assert _Recorder.log, "the recorder saw nothing"
    assert not set(_Recorder.log) & (_DIVISIONS | _LOOKUPS | {"fancy-index"}), _Recorder.log


@pytest.mark.parametrize("d", sorted(_COMPRESS_KAT))
def test_compress_known_answers(d: int) -> None:
    points, digest = _COMPRESS_KAT[d]
    assert lat.compress(np.array(_COMPRESS_POINTS, dtype=np.int64), d).tolist() == points
    every = lat.compress(np.arange(Q, dtype=np.int64), d)
    assert hashlib.sha256(every.astype("<u2").tobytes()).hexdigest() == digest


@pytest.mark.parametrize("d", [1, 4, 5, 10, 11])
def test_compress_is_exact_rational_rounding_for_every_x(d: int) -> None:
    """Compress_d(x) = round(2^d * x / q) mod 2^d (ties cannot occur: q is odd)."""
    got = lat.compress(np.arange(Q, dtype=np.int64), d).tolist()
    want = [int(Fraction(x << d, Q) + Fraction(1, 2)) % (1 << d) for x in range(Q)]
    assert got == want


def test_compress_uses_no_division() -> None:
    lat.compress(_recorded(np.arange(Q, dtype=np.int64)), 10)
    assert _Recorder.log and not set(_Recorder.log) & _DIVISIONS, _Recorder.log


def test_barrett_quotient_is_exact_over_the_range_callers_use() -> None:
    """floor(y / q) by multiply-and-shift for every y below 2^29 (callers stay below that),
    in chunks, and at the top of the proven range."""
    assert lat._DIV_Q_LIMIT > 1 << 31
    step = 1 << 24
    for start in range(0, 1 << 29, step):
        y = np.arange(start, start + step, dtype=np.int64)
        assert np.array_equal(lat._div_q(y), y // Q)
    top = np.arange(lat._DIV_Q_LIMIT - (1 << 20), lat._DIV_Q_LIMIT, dtype=np.int64)
    assert np.array_equal(lat._div_q(top), top // Q)


def test_reduce_equals_remainder_on_its_whole_input_range() -> None:
    rnd = np.random.default_rng(3329)
    bound = lat.REDUCE_BOUND
    edges = np.array(
        [-bound + 1, -bound + 2, -Q - 1, -Q, -1, 0, 1, Q - 1, Q, Q + 1, bound - 2, bound - 1],
        dtype=np.int64,
    )
    x = np.concatenate([edges, rnd.integers(-bound + 1, bound, size=200_000, dtype=np.int64)])
    assert np.array_equal(lat.reduce(x), x % Q)
    assert np.array_equal(lat.reduce(x.astype(np.float64)), x % Q)


def test_reduce_and_ntt_use_no_division() -> None:
    x = np.arange(-512, 512, dtype=np.int64).reshape(4, 2, 128)
    lat.reduce(_recorded(x))
    assert _Recorder.log and not set(_Recorder.log) & _DIVISIONS, _Recorder.log
    lat.ntt(_recorded(x))
    assert _Recorder.log and not set(_Recorder.log) & _DIVISIONS, _Recorder.log


def test_decompress1_known_answer() -> None:
    m = bytes([0b10100101]) + bytes(30) + b"\x80"
    got = lat.to_natural(lat.decompress1(m)).tolist()
    want = [1665 * ((m[i // 8] >> (i % 8)) & 1) for i in range(256)]
    assert got == want
    assert got[:8] == [1665, 0, 1665, 0, 0, 1665, 0, 1665] and got[255] == 1665


def test_decompress1_reads_no_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy's unpackbits indexes a 256-entry table by the byte: the message is secret."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("table-driven bit unpacking on a secret")

    monkeypatch.setattr(np, "unpackbits", refuse)
    m = bytes(range(32))
    got = lat.to_natural(lat.decompress1(m)).tolist()
    assert got == [1665 * ((m[i // 8] >> (i % 8)) & 1) for i in range(256)]
