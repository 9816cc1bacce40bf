"""Micro-benchmarks of the crypto hot path: X25519, XEdDSA, HKDF, HMAC, AES-CBC.

Run: ``pytest benchmarks/bench_curve.py --benchmark-only``. No assertions on time.
"""

from __future__ import annotations

from typing import Any

from securemsg.crypto.curve25519 import KeyPair, PrivateKey, PublicKey
from securemsg.crypto.primitives import (
    aes_256_cbc_decrypt,
    aes_256_cbc_encrypt,
    hkdf_sha256,
    hmac_sha256,
)
from securemsg.crypto.rng import DeterministicRng, SystemRng

Benchmark = Any  # pytest-benchmark's fixture

_RNG = DeterministicRng(b"bench_curve")
_ALICE = KeyPair.generate(_RNG)
_BOB = KeyPair.generate(_RNG)
_MESSAGE = b"\x05" + _BOB.public_key.raw  # a signed prekey, as libsignal signs it
_SIGNATURE = _ALICE.private_key.sign(_MESSAGE, _RNG)


def test_x25519_keygen(benchmark: Benchmark) -> None:
    rng = SystemRng()
    benchmark(KeyPair.generate, rng)


def test_x25519_agree(benchmark: Benchmark) -> None:
    result = benchmark(_ALICE.private_key.agree, _BOB.public_key)
    assert result == _BOB.private_key.agree(_ALICE.public_key)


def test_x25519_agree_fresh_objects(benchmark: Benchmark) -> None:
    """Agreement from serialized keys, as the ratchet does after loading a record."""
    priv, pub = _ALICE.private_key.to_bytes(), _BOB.public_key.to_bytes()
    benchmark(lambda: PrivateKey.from_bytes(priv).agree(PublicKey.from_bytes(pub)))


def test_xeddsa_sign(benchmark: Benchmark) -> None:
    rng = SystemRng()
    signature = benchmark(_ALICE.private_key.sign, _MESSAGE, rng)
    _ALICE.public_key.verify(_MESSAGE, signature)


def test_xeddsa_sign_fresh_key(benchmark: Benchmark) -> None:
    """Sign with a key loaded from bytes each time (pays for A = a·B as well)."""
    rng, serialized = SystemRng(), _ALICE.private_key.to_bytes()
    benchmark(lambda: PrivateKey.from_bytes(serialized).sign(_MESSAGE, rng))


def test_xeddsa_verify(benchmark: Benchmark) -> None:
    benchmark(_ALICE.public_key.verify, _MESSAGE, _SIGNATURE)


def test_xeddsa_verify_fresh_key(benchmark: Benchmark) -> None:
    """Verify with a key parsed from bytes each time (its Edwards y is LRU-cached)."""
    serialized = _ALICE.public_key.to_bytes()
    benchmark(lambda: PublicKey.from_bytes(serialized).verify(_MESSAGE, _SIGNATURE))


def test_hkdf_80_bytes(benchmark: Benchmark) -> None:
    seed, salt = bytes(range(32)), bytes(range(32, 64))
    out = benchmark(hkdf_sha256, seed, salt, b"WhisperMessageKeys", 80)
    assert len(out) == 80


def test_hmac_32_bytes(benchmark: Benchmark) -> None:
    benchmark(hmac_sha256, bytes(range(32)), b"\x02" * 32)


def test_aes_cbc_100_bytes_encrypt_decrypt(benchmark: Benchmark) -> None:
    key, iv, plaintext = bytes(range(32)), bytes(16), bytes(100)

    def round_trip() -> bytes:
        return aes_256_cbc_decrypt(key, iv, aes_256_cbc_encrypt(key, iv, plaintext))

    assert benchmark(round_trip) == plaintext
