"""The batched (numpy kernel) parity and decode paths agree with the pure-Python reference."""

from __future__ import annotations

import os

from hypothesis import given, settings
from hypothesis import strategies as st

from securemsg.protocol.spqr import erasure
from securemsg.protocol.spqr.erasure import Decoder, Encoder


def _reference(payload: bytes, x: int) -> bytes:
    n = len(payload) // 32
    rows = list(erasure._WORDS.iter_unpack(payload))
    return erasure._WORDS.pack(
        *erasure._eval_rows(range(n), erasure._systematic_weights(n), rows, x)
    )


@settings(max_examples=50, deadline=None)
@given(st.sampled_from([32, 96, 160, 960, 1152]), st.integers(0, 0xFFFF), st.integers(0, 40))
def test_parity_chunks_match_reference_across_batches(length: int, start: int, count: int) -> None:
    payload = os.urandom(length)
    n = length // 32
    enc = Encoder(payload, start)
    for _ in range(count):
        enc, x, data = enc.next_chunk()
        expect = payload[x * 32 : (x + 1) * 32] if x < n else _reference(payload, x)
        assert data == expect


def test_reloaded_encoder_continues_identically() -> None:
    payload = os.urandom(1152)
    a = Encoder(payload, 36)
    for _ in range(50):
        a, x, data = a.next_chunk()
        b = Encoder(payload, x)  # as if reloaded from its record mid-epoch
        assert b.next_chunk()[2] == data


@settings(max_examples=30, deadline=None)
@given(st.sampled_from([96, 960, 1152]), st.randoms(use_true_random=False))
def test_decode_from_parity_matches_reference(length: int, rnd) -> None:  # type: ignore[no-untyped-def]
    payload = os.urandom(length)
    n = length // 32
    picks = rnd.sample(range(0x10000), n)
    dec = Decoder(length)
    for x in picks:
        dec = dec.add(x, payload[x * 32 : (x + 1) * 32] if x < n else _reference(payload, x))
    assert dec.decode() == payload
