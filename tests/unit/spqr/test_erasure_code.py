"""GF(2^16) field laws and the systematic polynomial erasure code (protocol/spqr/erasure.py)."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from securemsg.protocol.spqr import gf16
from securemsg.protocol.spqr.erasure import Decoder, Encoder, evaluate

elem = st.integers(0, 0xFFFF)
nonzero = st.integers(1, 0xFFFF)


@settings(max_examples=200)
@given(elem, elem, elem)
def test_field_laws(a: int, b: int, c: int) -> None:
    mul = gf16.mul
    assert mul(a, b) == gf16.mul_slow(a, b) == mul(b, a)
    assert mul(mul(a, b), c) == mul(a, mul(b, c))
    assert mul(a, b ^ c) == mul(a, b) ^ mul(a, c)
    assert mul(a, 1) == a and mul(a, 0) == 0


@settings(max_examples=200)
@given(nonzero)
def test_inverses(a: int) -> None:
    assert gf16.mul(a, gf16.inv(a)) == 1


def test_modulus_reduction() -> None:
    # x^15 * x = x^16 = x^12 + x^3 + x + 1
    assert gf16.mul_slow(0x8000, 2) == 0x100B


def _chunks(payload: bytes, count: int) -> list[tuple[int, bytes]]:
    enc, out = Encoder(payload), []
    for _ in range(count):
        enc, i, d = enc.next_chunk()
        out.append((i, d))
    return out


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([96, 160, 960, 1152]), st.randoms(use_true_random=False))
def test_any_n_subset_reconstructs_and_fewer_do_not(length: int, rnd) -> None:  # type: ignore[no-untyped-def]
    payload = os.urandom(length)
    n = length // 32
    chunks = _chunks(payload, n + 12)
    subset = rnd.sample(chunks, n)
    dec = Decoder(length)
    for i, d in subset[:-1]:
        dec = dec.add(i, d)
        assert dec.decode() is None
    dec = dec.add(*subset[-1])
    assert dec.decode() == payload


def test_systematic_chunks_are_the_payload_and_duplicates_do_not_count() -> None:
    payload = os.urandom(160)
    chunks = _chunks(payload, 5)
    assert [i for i, _ in chunks] == [0, 1, 2, 3, 4]
    assert b"".join(d for _, d in chunks) == payload
    dec = Decoder(160)
    for _ in range(3):
        dec = dec.add(*chunks[0])
    assert not dec.complete


def test_parity_is_polynomial_evaluation() -> None:
    # n = 1: every chunk equals the payload (constant polynomials)
    p = os.urandom(32)
    assert evaluate(p, 7) == p and evaluate(p, 65535) == p
    # n = 2, lane j: P(x) = y0 + x*(y0 ^ y1) (line through (0,y0), (1,y1))
    p = os.urandom(64)
    y0 = int.from_bytes(p[0:2], "big")
    y1 = int.from_bytes(p[32:34], "big")
    assert int.from_bytes(evaluate(p, 5)[0:2], "big") == y0 ^ gf16.mul(5, y0 ^ y1)


def test_counter_wraps_to_systematic_after_65536() -> None:
    p = os.urandom(96)
    _enc, i, d = Encoder(p, 65536 + 1).next_chunk()
    assert i == 1 and d == p[32:64]
