"""Benchmarks: sender-key group encrypt, decrypt and round trip (100 B), through the recipes.

Run: ``pytest benchmarks/bench_groups.py --benchmark-only``. No assertions on time.
"""

from __future__ import annotations

import uuid
from typing import Any

from securemsg import groups
from securemsg.crypto.rng import DeterministicRng
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.identity_and_prekeys import IdentityKeyPair
from securemsg.store.memory import InMemoryProtocolStore

Benchmark = Any
_RNG = DeterministicRng(b"bench_groups")
_ALICE = ProtocolAddress("alice", 1)
_PT = b"a" * 100


def _pair() -> tuple[InMemoryProtocolStore, InMemoryProtocolStore, uuid.UUID]:
    a = InMemoryProtocolStore(IdentityKeyPair.generate(_RNG), 1)
    b = InMemoryProtocolStore(IdentityKeyPair.generate(_RNG), 2)
    dist = uuid.UUID(bytes=_RNG.random_bytes(16))
    skdm = groups.create_sender_key_distribution_message(_ALICE, dist, a, rng=_RNG)
    groups.process_sender_key_distribution_message(_ALICE, skdm, b)
    return a, b, dist


def test_group_encrypt(benchmark: Benchmark) -> None:
    a, _b, dist = _pair()
    benchmark(groups.group_encrypt, _ALICE, dist, _PT, a, rng=_RNG)


def test_group_round_trip(benchmark: Benchmark) -> None:
    a, b, dist = _pair()

    def rt() -> bytes:
        m = groups.group_encrypt(_ALICE, dist, _PT, a, rng=_RNG)
        return groups.group_decrypt(m.to_bytes(), _ALICE, b)

    assert benchmark(rt) == _PT


def test_group_decrypt_after_gap_of_1000(benchmark: Benchmark) -> None:
    """Worst common case: a message 1000 ahead (1000 skipped keys derived and stored)."""

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        a, b, dist = _pair()
        for _ in range(1000):
            groups.group_encrypt(_ALICE, dist, _PT, a, rng=_RNG)
        m = groups.group_encrypt(_ALICE, dist, _PT, a, rng=_RNG)
        return (m.to_bytes(), _ALICE, b), {}

    benchmark.pedantic(groups.group_decrypt, setup=setup, rounds=10)
