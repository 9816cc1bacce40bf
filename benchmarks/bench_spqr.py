"""SPQR costs: steady-state send+recv (chain step), the epoch-completing message, erasure code.

Run: ``pytest benchmarks/bench_spqr.py --benchmark-only``.
"""

from __future__ import annotations

import os

from securemsg.crypto.rng import DeterministicRng
from securemsg.protocol.spqr import (
    SpqrDirection,
    SpqrState,
    spqr_initial_state,
    spqr_recv,
    spqr_send,
)
from securemsg.protocol.spqr.erasure import Decoder, Encoder

AUTH = bytes(range(32))


def _pair() -> tuple[SpqrState, SpqrState]:
    return (
        spqr_initial_state(AUTH, SpqrDirection.A2B),
        spqr_initial_state(AUTH, SpqrDirection.B2A),
    )


def test_steady_state_send_recv(benchmark):  # type: ignore[no-untyped-def]
    """B sends None in no_header_received: pure chain step + framing on both sides."""
    a, b = _pair()
    rng = DeterministicRng(b"bench")
    box = [b, a]

    def step() -> None:
        b, a = box
        b, msg, _ = spqr_send(b, rng)
        a, _ = spqr_recv(a, msg)
        box[0], box[1] = b, a

    benchmark(step)


def _until_last_ct2() -> tuple[SpqrState, bytes]:
    a, b = _pair()
    rng = DeterministicRng(b"epoch")
    while True:
        a, m, _ = spqr_send(a, rng)
        b, _ = spqr_recv(b, m)
        b_next, m, _ = spqr_send(b, rng)
        if a.state_name == "ek_sent_ct1_received" and len(a.braid.receiving_ct2.chunks) == 4:  # type: ignore[union-attr]
            return a, m
        b = b_next
        a, _ = spqr_recv(a, m)


def test_epoch_completing_recv(benchmark):  # type: ignore[no-untyped-def]
    """The message whose ct2 chunk completes the epoch: decode + Decaps + MAC + Add Epoch."""
    a, m = _until_last_ct2()
    benchmark(spqr_recv, a, m)


def test_encaps1_send(benchmark):  # type: ignore[no-untyped-def]
    """send_ct's first Ct1 send: Encaps1 + authenticator update + Add Epoch."""
    a, b = _pair()
    rng = DeterministicRng(b"e1")
    for _ in range(3):
        a, m, _ = spqr_send(a, rng)
        b, _ = spqr_recv(b, m)
    assert b.state_name == "header_received"
    benchmark(spqr_send, b, rng)


def test_encoder_parity_chunk_ek(benchmark):  # type: ignore[no-untyped-def]
    enc = Encoder(os.urandom(1152), 36)
    benchmark(enc.next_chunk)


def test_decoder_add_chunk(benchmark):  # type: ignore[no-untyped-def]
    dec = Decoder(1152)
    for i in range(20):
        dec = dec.add(i, os.urandom(32))
    benchmark(dec.add, 50, os.urandom(32))


def test_decoder_all_parity_ek(benchmark):  # type: ignore[no-untyped-def]
    p = os.urandom(1152)
    enc, dec = Encoder(p, 36), Decoder(1152)
    for _ in range(36):
        enc, i, d = enc.next_chunk()
        dec = dec.add(i, d)
    assert benchmark(dec.decode) == p
