"""Kyber1024 round 3 (libsignal's PQXDH KEM) agrees with the kyber-py round-3 reference."""

from __future__ import annotations

import copy
import hashlib
import os
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kyber_py.kyber import Kyber1024

from securemsg.crypto.kyber1024 import KyberBackend, KyberKeyPair, KyberPublicKey
from securemsg.crypto.rng import DeterministicRng, SystemRng
from securemsg.errors import InvalidKeyError

TYPE = b"\x08"


class _SeededRng:
    """An rng with reproducible bytes that names the OpenSSL encapsulation route."""

    deterministic = False
    kyber_backend = KyberBackend.OPENSSL

    def __init__(self, seed: int) -> None:
        self._rnd = random.Random(seed)

    def random_bytes(self, n: int) -> bytes:
        return self._rnd.randbytes(n)


def test_we_encapsulate_to_kyber_py_keys_openssl_route() -> None:
    rng = SystemRng()
    for _ in range(100):
        pk, sk = Kyber1024.keygen()
        ss, ct = KyberPublicKey.from_bytes(TYPE + pk).encapsulate(rng)
        assert len(ss) == 32 and len(ct) == 1569 and ct[0] == 8
        assert Kyber1024.decaps(sk, ct[1:]) == ss


def test_kyber_py_encapsulates_to_our_keys() -> None:
    rng = _SeededRng(7)
    for _ in range(100):
        kp = KyberKeyPair.generate(rng)
        pk = kp.public_key.to_bytes()
        assert len(pk) == 1569 and pk[0] == 8
        ss, c = Kyber1024.encaps(pk[1:])
        assert kp.decapsulate(TYPE + c) == ss


def test_deterministic_route_equals_round3_reference_bit_for_bit() -> None:
    rnd = random.Random(8)
    for _ in range(20):
        pk, sk = Kyber1024.keygen()
        seed = rnd.randbytes(16)
        ss, ct = KyberPublicKey.from_bytes(TYPE + pk).encapsulate(DeterministicRng(seed))
        m = DeterministicRng(seed).random_bytes(32)
        ss_ref, c_ref = _replay_kyber(m).encaps(pk)  # kyber-py draws m itself: replay ours
        assert (ss, ct) == (ss_ref, TYPE + c_ref)
        assert Kyber1024.decaps(sk, ct[1:]) == ss


def _replay_kyber(m: bytes) -> Any:
    """kyber-py's Kyber1024 with its randomness replaced by ``m`` (for one encapsulation)."""
    kyber = copy.copy(Kyber1024)
    kyber.random_bytes = lambda n: m[:n]  # type: ignore[attr-defined]
    return kyber


def test_deterministic_route_is_reproducible_and_both_routes_decapsulate() -> None:
    kp = KyberKeyPair.generate(DeterministicRng(b"key"))
    again = KyberKeyPair.generate(DeterministicRng(b"key"))
    assert kp.public_key == again.public_key and kp.seed == again.seed
    first = kp.public_key.encapsulate(DeterministicRng(b"enc"))
    assert first == kp.public_key.encapsulate(DeterministicRng(b"enc"))
    assert kp.decapsulate(first[1]) == first[0]
    ss, ct = kp.public_key.encapsulate(SystemRng())
    assert kp.decapsulate(ct) == ss


def test_invalid_ciphertext_uses_libcrux_rejection_value() -> None:
    kp = KyberKeyPair.from_seed(bytes(range(64)))
    ss, ct = kp.public_key.encapsulate(SystemRng())
    bad = ct[:-1] + bytes([ct[-1] ^ 0x10])
    c = bad[1:]
    z = kp.seed[32:]
    rejected = kp.decapsulate(bad)
    assert rejected != ss
    sha = hashlib.sha3_256(c).digest()
    assert rejected == hashlib.shake_256(hashlib.shake_256(z + c).digest(32) + sha).digest(32)
    # ...which differs from the round-3 reference value SHAKE256(z || H(c)):
    assert rejected != hashlib.shake_256(z + sha).digest(32)


def test_public_key_round_trips_and_compares_by_value() -> None:
    kp = KyberKeyPair.from_seed(bytes(64))
    data = kp.public_key.to_bytes()
    parsed = KyberPublicKey.from_bytes(data)
    assert parsed == kp.public_key and hash(parsed) == hash(kp.public_key)
    assert parsed.to_bytes() == data
    assert kp.seed.hex() not in repr(kp) and "hidden" in repr(kp)


@pytest.mark.parametrize(
    "mutate",
    [
        lambda b: b[:-1],
        lambda b: b + b"\x00",
        lambda b: b"\x05" + b[1:],
        lambda b: b"\x0a" + b[1:],
        lambda b: b[:1] + b"\xff\xff" + b[3:],  # first coefficient 4095 >= q
    ],
)
def test_bad_public_keys_raise_invalid_key(mutate: object) -> None:
    data = KyberKeyPair.from_seed(bytes(64)).public_key.to_bytes()
    with pytest.raises(InvalidKeyError):
        KyberPublicKey.from_bytes(mutate(data))  # type: ignore[operator]


def test_bad_ciphertexts_and_seeds_raise_invalid_key() -> None:
    kp = KyberKeyPair.from_seed(bytes(64))
    _, ct = kp.public_key.encapsulate(SystemRng())
    for bad in (ct[:-1], ct + b"\x00", b"\x07" + ct[1:], b""):
        with pytest.raises(InvalidKeyError):
            kp.decapsulate(bad)
    with pytest.raises(InvalidKeyError):
        KyberKeyPair.from_seed(bytes(32))


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(st.binary(max_size=1600), st.binary(min_size=1568, max_size=1568).map(TYPE.__add__))
)
def test_public_key_from_arbitrary_bytes_parses_or_invalid_key(data: bytes) -> None:
    try:
        key = KyberPublicKey.from_bytes(data)
    except InvalidKeyError:
        return
    assert key.to_bytes() == data


_KP = KyberKeyPair.from_seed(os.urandom(64))


@settings(max_examples=100, deadline=None)
@given(
    st.one_of(st.binary(max_size=1600), st.binary(min_size=1568, max_size=1568).map(TYPE.__add__))
)
def test_decapsulate_arbitrary_bytes_gives_secret_or_invalid_key(data: bytes) -> None:
    try:
        ss = _KP.decapsulate(data)
    except InvalidKeyError:
        return
    assert len(ss) == 32
