"""``KyberKeyPair.secret_key_bytes()``: libsignal's serialized Kyber1024 secret key.

The form is ``0x08 || dk`` with the round-3 layout ``s_hat(1536) || pk(1568) || H(pk)(32) ||
z(32)`` (the same as FIPS 203's ML-KEM-1024 ``dk``). Checked here against two independent
implementations: kyber-py's ML-KEM-1024 ``KeyGen_internal(d, z)`` gives the same ``dk`` for our
seed, and kyber-py's round-3 Kyber1024 decapsulates our ciphertexts with it to our shared
secret. That libsignal itself accepts and decapsulates with it is
``tests/interop/test_vectors_interop.py``.
"""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st
from kyber_py.kyber import Kyber1024
from kyber_py.ml_kem import ML_KEM_1024

from securemsg.crypto.kyber1024 import SECRET_KEY_LENGTH, KyberKeyPair
from securemsg.crypto.rng import DeterministicRng, SystemRng


@settings(max_examples=10, deadline=None)
@given(st.binary(min_size=64, max_size=64))
def test_secret_key_is_the_fips203_dk_of_the_seed(seed: bytes) -> None:
    pair = KyberKeyPair.from_seed(seed)
    sk = pair.secret_key_bytes()
    assert len(sk) == SECRET_KEY_LENGTH == 3169 and sk[0] == 0x08
    ek, dk = ML_KEM_1024._keygen_internal(seed[:32], seed[32:])
    assert sk[1:] == dk
    pk = pair.public_key.to_bytes()[1:]
    assert ek == pk
    assert sk[1 + 1536 : 1 + 1536 + 1568] == pk
    assert sk[-64:-32] == hashlib.sha3_256(pk).digest()
    assert sk[-32:] == seed[32:]


def test_round3_reference_decapsulates_our_ciphertexts_with_it() -> None:
    rng = DeterministicRng(b"secret-key-form")
    for deterministic in (True, False):
        enc_rng = rng if deterministic else SystemRng()
        for _ in range(5):
            pair = KyberKeyPair.generate(rng)
            dk = pair.secret_key_bytes()[1:]
            ss, ct = pair.public_key.encapsulate(enc_rng)
            assert Kyber1024.decaps(dk, ct[1:]) == ss


def test_kyber_py_round3_ciphertexts_decapsulate_to_the_same_secret() -> None:
    pair = KyberKeyPair.generate(DeterministicRng(b"secret-key-form-2"))
    for _ in range(5):
        ss, c = Kyber1024.encaps(pair.public_key.to_bytes()[1:])
        assert pair.decapsulate(b"\x08" + c) == ss


def test_repr_does_not_leak_the_secret_key() -> None:
    pair = KyberKeyPair.generate(DeterministicRng(b"repr"))
    sk = pair.secret_key_bytes()
    assert sk[1:9].hex() not in repr(pair) and pair.seed[:8].hex() not in repr(pair)
