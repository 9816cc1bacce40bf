"""KEM benchmarks: Kyber1024 round 3 (PQXDH) and incremental ML-KEM-768 (SPQR).

Run: ``pytest benchmarks/bench_kem.py --benchmark-columns=median,mean,stddev,rounds``.
"""

from __future__ import annotations

import os
from typing import Any

from securemsg.crypto import mlkem768 as m768
from securemsg.crypto.kyber1024 import KyberBackend, KyberKeyPair
from securemsg.crypto.rng import DeterministicRng, SystemRng

RNG = SystemRng()
KYBER = KyberKeyPair.generate(RNG)
KYBER_CT = KYBER.public_key.encapsulate(RNG)[1]
MLKEM = m768.MlKem768KeyPair.generate(RNG)
M = os.urandom(32)
_CT1, STATE, _ = m768.encaps1(MLKEM.header, M)
CT2 = m768.encaps2(STATE, MLKEM.ek_vector)


def test_kyber1024_keygen(benchmark: Any) -> None:
    benchmark(KyberKeyPair.generate, RNG)


def test_kyber1024_encaps(benchmark: Any) -> None:
    """The production route (OpenSSL ML-KEM-1024 + SHAKE-256)."""
    benchmark(KYBER.public_key.encapsulate, RNG, KyberBackend.OPENSSL)


def test_kyber1024_encaps_deterministic_numpy(benchmark: Any) -> None:
    """The portable route (numpy lattice core), as deterministic vectors run it."""
    rng = DeterministicRng(b"bench")
    benchmark(KYBER.public_key.encapsulate, rng, KyberBackend.PORTABLE)


def test_kyber1024_decaps(benchmark: Any) -> None:
    benchmark(KYBER.decapsulate, KYBER_CT)


def test_mlkem768_keygen(benchmark: Any) -> None:
    benchmark(m768.MlKem768KeyPair.generate, RNG)


def test_mlkem768_encaps1(benchmark: Any) -> None:
    benchmark(m768.encaps1, MLKEM.header, M)


def test_mlkem768_validate_ek_vector(benchmark: Any) -> None:
    benchmark(m768.validate_ek_vector, MLKEM.header, MLKEM.ek_vector)


def test_mlkem768_encaps2(benchmark: Any) -> None:
    benchmark(m768.encaps2, STATE, MLKEM.ek_vector)


def test_mlkem768_encaps1_plus_encaps2(benchmark: Any) -> None:
    header, ek_vector = MLKEM.header, MLKEM.ek_vector

    def both() -> bytes:
        ct1, state, _ = m768.encaps1(header, M)
        return ct1 + m768.encaps2(state, ek_vector)

    benchmark(both)


def test_mlkem768_decaps(benchmark: Any) -> None:
    benchmark(MLKEM.decapsulate, _CT1, CT2)


def test_mlkem768_encaps_state_round_trip(benchmark: Any) -> None:
    benchmark(lambda: m768.EncapsState.from_bytes(STATE.to_bytes()))
