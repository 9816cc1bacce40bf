"""The two KEM routes agree byte for byte: OpenSSL (production) and the numpy lattice core.

OpenSSL draws the encapsulation message ``m`` itself, so the comparison recovers ``m`` from
OpenSSL's ciphertext with the secret key (K-PKE.Decrypt, written here from the lattice
helpers) and runs the portable core with it: the ciphertext and ``K_bar`` must be OpenSSL's.
Key generation is compared the same way: the numpy K-PKE.KeyGen of a seed must produce the
encapsulation key OpenSSL derives from that seed.
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import mlkem

from securemsg.crypto import _lattice as lat
from securemsg.crypto import kyber1024, mlkem768
from securemsg.crypto.backend import KyberBackend
from securemsg.crypto.kyber1024 import KyberKeyPair
from securemsg.crypto.rng import DeterministicRng, SystemRng
from securemsg.errors import UsageError

Q = lat.Q
_PARAMS = {3: (10, 4), 4: (11, 5)}  # k -> (du, dv)


def _decode_bits(data: bytes, d: int, count: int) -> lat.IntArray:
    """ByteDecode_d into (count, 2, 128) split layout (test helper: public data)."""
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
    vals = bits.reshape(-1, d) @ (1 << np.arange(d, dtype=np.int64))
    return lat.from_natural(vals.reshape(count, 256))


def _decompress(y: lat.IntArray, d: int) -> lat.IntArray:
    """Decompress_d(y) = round(q * y / 2^d) by multiply and shift."""
    out: lat.IntArray = (y * Q + (1 << (d - 1))) >> d
    return out


def _keygen(d: bytes, k: int) -> tuple[bytes, lat.IntArray]:
    """FIPS 203 K-PKE.KeyGen(d) on the numpy core: (ek, s_hat)."""
    g = hashlib.sha3_512(d + bytes((k,))).digest()
    rho, sigma = g[:32], g[32:]
    a_hat = lat.sample_matrix(rho, k, transpose=False)
    noise = lat.sample_noise(sigma, 0, 2 * k)
    s_hat, e_hat = lat.ntt(noise[:k]), lat.ntt(noise[k:])
    t_hat = lat.reduce(lat.reduce(lat.matvec(a_hat, lat.stack_for_mul(s_hat))) + e_hat)
    return lat.encode_bits(t_hat, 12) + rho, s_hat


def _decrypt(s_hat: lat.IntArray, c: bytes, k: int) -> bytes:
    """FIPS 203 K-PKE.Decrypt on the numpy core: the message m of ciphertext c."""
    du, dv = _PARAMS[k]
    u = _decompress(_decode_bits(c[: 32 * du * k], du, k), du)
    v = _decompress(_decode_bits(c[32 * du * k :], dv, 1)[0], dv)
    su = lat.matvec(s_hat[None], lat.stack_for_mul(lat.ntt(u)))[0]
    w = lat.reduce(v - lat.intt(lat.reduce(su)))
    return lat.encode_bits(lat.compress(w, 1), 1)


@pytest.mark.parametrize("k", [3, 4])
def test_numpy_keygen_equals_openssl_keygen(k: int) -> None:
    rnd = random.Random(k)
    make = mlkem.MLKEM768PrivateKey if k == 3 else mlkem.MLKEM1024PrivateKey
    for _ in range(5):
        seed = rnd.randbytes(64)
        ek, _s_hat = _keygen(seed[:32], k)
        assert ek == make.from_seed_bytes(seed).public_key().public_bytes_raw()


def test_kyber1024_openssl_and_portable_cores_give_identical_bytes() -> None:
    rnd = random.Random(1024)
    for _ in range(10):
        seed = rnd.randbytes(64)
        kp = KyberKeyPair.from_seed(seed)
        _ek, s_hat = _keygen(seed[:32], 4)
        ss, ct = kp.public_key.encapsulate(SystemRng(), KyberBackend.OPENSSL)
        m = _decrypt(s_hat, ct[1:], 4)
        k_bar, c = kp.public_key._encapsulate_internal(m)
        assert c == ct[1:]
        assert kyber1024._round3_secret(k_bar, c) == ss == kp.decapsulate(ct)


def test_mlkem768_openssl_and_incremental_numpy_encapsulation_give_identical_bytes() -> None:
    rnd = random.Random(768)
    for _ in range(10):
        seed = rnd.randbytes(64)
        kp = mlkem768.MlKem768KeyPair.from_seed(seed)
        _ek, s_hat = _keygen(seed[:32], 3)
        public = mlkem.MLKEM768PublicKey.from_public_bytes(kp.encapsulation_key)
        k_openssl, ct = public.encapsulate()
        m = _decrypt(s_hat, ct, 3)
        ct1, state, k_numpy = mlkem768.encaps1(kp.header, m)
        assert ct1 + mlkem768.encaps2(state, kp.ek_vector) == ct
        assert k_numpy == k_openssl


def test_route_is_the_argument_then_the_rngs_choice() -> None:
    kp = KyberKeyPair.from_seed(bytes(range(64)))
    pk = kp.public_key
    portable = pk.encapsulate(DeterministicRng(b"m"))
    assert portable == pk.encapsulate(DeterministicRng(b"m", kyber_backend=KyberBackend.PORTABLE))
    assert portable == pk.encapsulate(
        DeterministicRng(b"m", kyber_backend=KyberBackend.OPENSSL), KyberBackend.PORTABLE
    )
    # The OpenSSL route reads nothing from the rng and is not reproducible.
    rng = DeterministicRng(b"m", kyber_backend=KyberBackend.OPENSSL)
    first, second = pk.encapsulate(rng), pk.encapsulate(rng)
    assert first != second and portable not in (first, second)
    assert rng.random_bytes(32) == DeterministicRng(b"m").random_bytes(32)
    for ss, ct in (portable, first, second):
        assert kp.decapsulate(ct) == ss
    assert SystemRng().kyber_backend is KyberBackend.OPENSSL


def test_an_rng_that_names_no_route_gets_openssl() -> None:
    class Bare:
        deterministic = True

        def random_bytes(self, n: int) -> bytes:
            raise AssertionError("the OpenSSL route draws no bytes from the rng")

    kp = KyberKeyPair.from_seed(bytes(64))
    ss, ct = kp.public_key.encapsulate(Bare())  # type: ignore[arg-type]
    assert kp.decapsulate(ct) == ss


def test_unknown_backend_is_a_usage_error() -> None:
    pk = KyberKeyPair.from_seed(bytes(64)).public_key
    with pytest.raises(UsageError):
        pk.encapsulate(SystemRng(), "openssl")  # type: ignore[arg-type]
