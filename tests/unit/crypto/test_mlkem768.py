"""ML-KEM-768 with SPQR's incremental split agrees with FIPS 203 (OpenSSL and kyber-py)."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import mlkem
from hypothesis import given, settings
from hypothesis import strategies as st
from kyber_py.ml_kem import ML_KEM_768

from securemsg.crypto import mlkem768 as m768
from securemsg.crypto.mlkem768 import EncapsState, MlKem768KeyPair, encaps1, encaps2
from securemsg.crypto.rng import DeterministicRng
from securemsg.errors import DecodeError, InvalidKeyError, SecureMsgError


def _encaps(kp: MlKem768KeyPair, m: bytes) -> tuple[bytes, bytes, bytes]:
    ct1, state, ss = encaps1(kp.header, m)
    m768.validate_ek_vector(kp.header, kp.ek_vector)
    return ct1, encaps2(state, kp.ek_vector), ss


def test_keys_from_seed_match_openssl_and_have_fips203_layout() -> None:
    rnd = random.Random(1)
    for _ in range(200):
        seed = rnd.randbytes(64)
        kp = MlKem768KeyPair.from_seed(seed)
        ek = mlkem.MLKEM768PrivateKey.from_seed_bytes(seed).public_key().public_bytes_raw()
        assert kp.encapsulation_key == ek
        assert kp.ek_vector == ek[:1152]
        assert kp.header == ek[1152:] + hashlib.sha3_256(ek).digest()
        assert kp.seed == seed


def test_keys_from_seed_match_kyber_py_key_derive() -> None:
    rnd = random.Random(2)
    for _ in range(10):
        seed = rnd.randbytes(64)
        ek, dk = ML_KEM_768.key_derive(seed)
        kp = MlKem768KeyPair.from_seed(seed)
        assert kp.encapsulation_key == ek
        assert kp.header == dk[2304:2368]  # dk[2304:2336] || dk[2336:2368]


def test_openssl_decapsulates_incremental_ciphertexts() -> None:
    rnd = random.Random(3)
    for _ in range(200):
        kp = MlKem768KeyPair.from_seed(rnd.randbytes(64))
        ct1, ct2, ss = _encaps(kp, rnd.randbytes(32))
        assert len(ct1) == 960 and len(ct2) == 128 and len(ss) == 32
        private = mlkem.MLKEM768PrivateKey.from_seed_bytes(kp.seed)
        assert private.decapsulate(ct1 + ct2) == ss
        assert kp.decapsulate(ct1, ct2) == ss


def test_incremental_encaps_equals_fips203_encaps_internal() -> None:
    rnd = random.Random(4)
    for _ in range(25):
        kp = MlKem768KeyPair.from_seed(rnd.randbytes(64))
        m = rnd.randbytes(32)
        ct1, ct2, ss = _encaps(kp, m)
        k_ref, c_ref = ML_KEM_768._encaps_internal(kp.encapsulation_key, m)
        assert (ct1 + ct2, ss) == (c_ref, k_ref)


def test_encaps1_uses_only_the_header() -> None:
    kp = MlKem768KeyPair.from_seed(bytes(range(64)))
    m = bytes(32)
    first = encaps1(kp.header, m)
    again = encaps1(kp.header, m)
    assert first[0] == again[0] and first[2] == again[2]
    assert first[1] == again[1]


def test_decapsulation_rejects_tampered_ciphertext_implicitly() -> None:
    kp = MlKem768KeyPair.from_seed(bytes(64))
    ct1, ct2, ss = _encaps(kp, bytes(32))
    bad = bytes([ct2[0] ^ 1]) + ct2[1:]
    rejected = kp.decapsulate(ct1, bad)
    assert rejected != ss
    assert rejected == hashlib.shake_256(kp.seed[32:] + ct1 + bad).digest(32)  # J(z || c)


def test_ek_vector_with_wrong_hash_is_rejected() -> None:
    kp = MlKem768KeyPair.from_seed(bytes(64))
    other = MlKem768KeyPair.from_seed(b"\x01" + bytes(63))
    with pytest.raises(InvalidKeyError):
        m768.validate_ek_vector(kp.header, other.ek_vector)
    with pytest.raises(InvalidKeyError):
        m768.validate_ek_vector(kp.header, kp.ek_vector[:-1])


def test_ek_vector_with_out_of_range_coefficient_is_rejected() -> None:
    kp = MlKem768KeyPair.from_seed(bytes(64))
    ev = bytearray(kp.ek_vector)
    ev[0] = 0xFF
    ev[1] |= 0x0F  # first 12-bit value = 4095 >= q
    rho = kp.header[:32]
    header = rho + hashlib.sha3_256(bytes(ev) + rho).digest()  # hash matches: only the range fails
    with pytest.raises(InvalidKeyError):
        m768.validate_ek_vector(header, bytes(ev))
    _, state, _ = encaps1(header, bytes(32))
    with pytest.raises(InvalidKeyError):
        encaps2(state, bytes(ev))


def _pack12(a: int, b: int) -> bytes:
    return bytes([a & 0xFF, (a >> 8) | (b & 0x0F) << 4, b >> 4])


@pytest.mark.parametrize(("value", "ok"), [(3328, True), (3329, False), (4095, False)])
def test_ek_vector_modulus_check_boundary(value: int, ok: bool) -> None:
    ev = _pack12(3328, 0) * 383 + _pack12(0, value)
    rho = bytes(32)
    header = rho + hashlib.sha3_256(ev + rho).digest()
    if ok:
        m768.validate_ek_vector(header, ev)
    else:
        with pytest.raises(InvalidKeyError):
            m768.validate_ek_vector(header, ev)


def test_encaps_state_round_trips_in_libcrux_layout() -> None:
    rnd = random.Random(5)
    kp = MlKem768KeyPair.from_seed(rnd.randbytes(64))
    m = rnd.randbytes(32)
    ct1, state, ss = encaps1(kp.header, m)
    data = state.to_bytes()
    assert len(data) == 2080
    assert data[-32:] == m
    vals = np.frombuffer(data[:2048], dtype="<i2")
    assert np.abs(vals[:768]).max() <= 1664 and np.abs(vals[768:]).max() <= 2
    restored = EncapsState.from_bytes(data)
    assert restored.to_bytes() == data
    assert encaps2(restored, kp.ek_vector) == encaps2(state, kp.ek_vector)
    assert kp.decapsulate(ct1, encaps2(restored, kp.ek_vector)) == ss
    assert "<secret>" in repr(state)


def test_encaps_state_in_byte_swapped_libcrux_1275_form_is_read() -> None:
    kp = MlKem768KeyPair.from_seed(bytes(64))
    _, state, _ = encaps1(kp.header, bytes(range(32)))
    data = state.to_bytes()
    swapped = np.frombuffer(data[:2048], dtype="<i2").astype(">i2").tobytes() + data[2048:]
    assert EncapsState.from_bytes(swapped).to_bytes() == data


@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes(2079),
        bytes(2081),
        (1665).to_bytes(2, "little", signed=True) + bytes(2078),  # NTT(y) out of range
        bytes(1536) + (3).to_bytes(2, "little") + bytes(542),  # e2 out of range, both orders
    ],
)
def test_encaps_state_from_bytes_rejects_bad_input(data: bytes) -> None:
    with pytest.raises(DecodeError):
        EncapsState.from_bytes(data)


def test_bad_lengths_raise_typed_errors() -> None:
    kp = MlKem768KeyPair.from_seed(bytes(64))
    with pytest.raises(InvalidKeyError):
        MlKem768KeyPair.from_seed(bytes(63))
    with pytest.raises(DecodeError):
        encaps1(kp.header[:63], bytes(32))
    with pytest.raises(DecodeError):
        kp.decapsulate(bytes(959), bytes(128))
    assert "<secret>" in repr(kp)


def test_generate_uses_rng() -> None:
    a = MlKem768KeyPair.generate(DeterministicRng(b"k"))
    b = MlKem768KeyPair.generate(DeterministicRng(b"k"))
    assert a.encapsulation_key == b.encapsulation_key


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=0, max_size=2200))
def test_encaps_state_from_arbitrary_bytes_parses_or_decode_error(data: bytes) -> None:
    try:
        state = EncapsState.from_bytes(data)
    except DecodeError:
        return
    assert len(state.to_bytes()) == 2080


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=2048, max_size=2048), st.binary(min_size=32, max_size=32))
def test_encaps_state_in_range_round_trips(raw: bytes, m: bytes) -> None:
    vals = np.frombuffer(raw, dtype="<u2").astype(np.int64)
    y = vals[:768] % 3329 - 1664
    e2 = vals[768:] % 5 - 2
    data = np.concatenate([y, e2]).astype("<i2").tobytes() + m
    assert EncapsState.from_bytes(data).to_bytes() == data


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=0, max_size=1200), st.binary(min_size=0, max_size=70))
def test_validate_arbitrary_ek_vector_only_raises_invalid_key(ev: bytes, header: bytes) -> None:
    try:
        m768.validate_ek_vector(header, ev)
    except InvalidKeyError:
        return
    raise AssertionError("random bytes cannot match the header hash")


@settings(max_examples=50, deadline=None)
@given(st.binary(min_size=64, max_size=64), st.binary(min_size=1152, max_size=1152))
def test_encaps_with_arbitrary_header_and_ek_vector(header: bytes, ev: bytes) -> None:
    ct1, state, ss = encaps1(header, bytes(32))
    assert len(ct1) == 960 and len(ss) == 32
    try:
        ct2 = encaps2(state, ev)
    except SecureMsgError as exc:
        assert isinstance(exc, InvalidKeyError)
    else:
        assert len(ct2) == 128


def test_matrix_sampling_retries_with_more_output_when_a_row_is_short(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from securemsg.crypto import _lattice

    rho = bytes(range(32))
    expected = _lattice.sample_matrix(rho, 3, transpose=True).copy()
    monkeypatch.setattr(_lattice, "_SAMPLE_BYTES", 2 * 168)  # 224 candidates < 256: must retry
    assert np.array_equal(_lattice.sample_matrix(rho, 3, transpose=True), expected)
