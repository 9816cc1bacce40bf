"""HKDF/HMAC-SHA256 and AES-256 CBC/CTR/GCM-SIV: known answers, round trips, typed errors."""

from __future__ import annotations

import contextlib
import hashlib
import hmac

import pytest
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from hypothesis import given, settings
from hypothesis import strategies as st

from securemsg.crypto import primitives
from securemsg.crypto.primitives import (
    aes_256_cbc_decrypt,
    aes_256_cbc_encrypt,
    aes_256_ctr,
    aes_256_gcm_siv_decrypt,
    aes_256_gcm_siv_encrypt,
    constant_time_eq,
    hkdf_sha256,
    hmac_sha256,
    hmac_sha256_pair,
)
from securemsg.errors import InvalidMessageError, UsageError

h = bytes.fromhex
keys = st.binary(min_size=32, max_size=32)
ivs = st.binary(min_size=16, max_size=16)
nonces = st.binary(min_size=12, max_size=12)

# RFC 5869 appendix A.1-A.3 (SHA-256): (ikm, salt, info, length, okm)
RFC5869 = [
    (
        h("0b" * 22),
        h("000102030405060708090a0b0c"),
        h("f0f1f2f3f4f5f6f7f8f9"),
        42,
        h("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"),
    ),
    (
        bytes(range(0x00, 0x50)),
        bytes(range(0x60, 0xB0)),
        bytes(range(0xB0, 0x100)),
        82,
        h(
            "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
            "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
            "cc30c58179ec3e87c14c01d5c1f3434f1d87"
        ),
    ),
    (
        h("0b" * 22),
        b"",
        b"",
        42,
        h("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"),
    ),
]


@pytest.mark.parametrize(("ikm", "salt", "info", "length", "okm"), RFC5869)
def test_hkdf_matches_rfc5869_vectors(
    ikm: bytes, salt: bytes, info: bytes, length: int, okm: bytes
) -> None:
    assert hkdf_sha256(ikm, salt, info, length) == okm


def test_hkdf_none_salt_means_32_zero_bytes() -> None:
    ikm = h("0b" * 22)
    assert hkdf_sha256(ikm, None, b"", 42) == RFC5869[2][4]
    assert hkdf_sha256(ikm, None, b"x", 80) == hkdf_sha256(ikm, bytes(32), b"x", 80)


def _hkdf_by_the_book(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    prk = hmac.digest(salt, ikm, "sha256")
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes((i,)), "sha256")
        out += block
        i += 1
    return out[:length]


@settings(max_examples=100)
@given(
    ikm=st.binary(max_size=100),
    salt=st.binary(max_size=100),
    info=st.binary(max_size=100),
    length=st.integers(1, 300),
)
def test_hkdf_agrees_with_a_textbook_implementation(
    ikm: bytes, salt: bytes, info: bytes, length: int
) -> None:
    assert hkdf_sha256(ikm, salt, info, length) == _hkdf_by_the_book(ikm, salt, info, length)


@settings(max_examples=100)
@given(ikm=st.binary(max_size=100), info=st.binary(max_size=100), length=st.integers(1, 200))
def test_hkdf_without_salt_agrees_with_the_textbook_zero_salt(
    ikm: bytes, info: bytes, length: int
) -> None:
    assert hkdf_sha256(ikm, None, info, length) == _hkdf_by_the_book(ikm, bytes(32), info, length)


@pytest.mark.parametrize("length", [1, 31, 32, 33, 63, 64, 65, 80, 95, 96, 97, 128])
@pytest.mark.parametrize("salt", [None, b"", bytes(32), b"s" * 32, b"s" * 63, b"s" * 64, b"s" * 65])
def test_hkdf_hashlib_route_boundaries_agree_with_the_textbook(
    length: int, salt: bytes | None
) -> None:
    """Outputs up to 96 bytes with salts up to a block take the hashlib route; the rest don't."""
    ikm, info = b"\x0b" * 22, b"WhisperMessageKeys"
    expected = _hkdf_by_the_book(ikm, bytes(32) if salt is None else salt, info, length)
    assert hkdf_sha256(ikm, salt, info, length) == expected


def test_hkdf_longest_output_agrees_with_the_textbook() -> None:
    n = 255 * 32
    assert hkdf_sha256(b"ikm", b"salt", b"info", n) == _hkdf_by_the_book(
        b"ikm", b"salt", b"info", n
    )


@settings(max_examples=100)
@given(key=st.binary(max_size=150), a=st.binary(max_size=80), b=st.binary(max_size=80))
def test_hmac_pair_is_two_hmacs(key: bytes, a: bytes, b: bytes) -> None:
    assert hmac_sha256_pair(key, a, b) == (hmac_sha256(key, a), hmac_sha256(key, b))


@pytest.mark.parametrize("length", [0, -1, 255 * 32 + 1])
def test_hkdf_rejects_out_of_range_length(length: int) -> None:
    with pytest.raises(UsageError):
        hkdf_sha256(b"k", None, b"", length)


def test_hmac_matches_rfc4231_vectors() -> None:
    assert hmac_sha256(h("0b" * 20), b"Hi There") == h(
        "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
    )
    # test case 6: a key longer than the block size is hashed first
    assert hmac_sha256(
        h("aa" * 131), b"Test Using Larger Than Block-Size Key - Hash Key First"
    ) == h("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")


@settings(max_examples=200)
@given(key=st.binary(max_size=150), data=st.binary(max_size=200))
def test_hmac_agrees_with_stdlib(key: bytes, data: bytes) -> None:
    assert hmac_sha256(key, data) == hmac.new(key, data, hashlib.sha256).digest()


def test_constant_time_eq() -> None:
    assert constant_time_eq(b"abc", b"abc")
    assert not constant_time_eq(b"abc", b"abd")
    assert not constant_time_eq(b"abc", b"ab")
    assert constant_time_eq(b"", b"")


# NIST SP 800-38A, F.2.5 (CBC-AES256) and F.5.5 (CTR-AES256), first two blocks
NIST_KEY = h("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4")
NIST_PT = h("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51")


def test_aes_cbc_matches_nist_vector_and_pads_a_full_block() -> None:
    iv = h("000102030405060708090a0b0c0d0e0f")
    ct = aes_256_cbc_encrypt(NIST_KEY, iv, NIST_PT)
    assert ct[:32] == h("f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d")
    assert len(ct) == 48  # block-aligned input gets a whole block of padding
    assert aes_256_cbc_decrypt(NIST_KEY, iv, ct) == NIST_PT


def test_aes_ctr_matches_nist_vector() -> None:
    counter = h("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
    assert aes_256_ctr(NIST_KEY, counter, NIST_PT) == h(
        "601ec313775789a5b7a7f504bbf3d228f443e3ca4d62b59aca84e990cacaf5c5"
    )


@settings(max_examples=100)
@given(key=keys, iv=ivs, pt=st.binary(max_size=100))
def test_aes_cbc_round_trip_and_matches_pkcs7(key: bytes, iv: bytes, pt: bytes) -> None:
    ct = aes_256_cbc_encrypt(key, iv, pt)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(pt) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    assert ct == enc.update(padded) + enc.finalize()
    assert aes_256_cbc_decrypt(key, iv, ct) == pt


@settings(max_examples=150)
@given(key=keys, iv=ivs, ct=st.binary(max_size=80))
def test_aes_cbc_decrypt_of_arbitrary_bytes_returns_or_raises_invalid_message(
    key: bytes, iv: bytes, ct: bytes
) -> None:
    try:
        pt = aes_256_cbc_decrypt(key, iv, ct)
    except InvalidMessageError:
        return
    assert aes_256_cbc_encrypt(key, iv, pt) == ct


@pytest.mark.parametrize("ct_len", [0, 1, 15, 17, 31])
def test_aes_cbc_decrypt_rejects_bad_lengths(ct_len: int) -> None:
    with pytest.raises(InvalidMessageError):
        aes_256_cbc_decrypt(bytes(32), bytes(16), bytes(ct_len))


def test_aes_cbc_decrypt_rejects_bad_padding() -> None:
    key, iv = bytes(range(32)), bytes(16)
    for last in (0, 17, 255):
        block = bytes(15) + bytes((last,))
        ct = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor().update(block)
        with pytest.raises(InvalidMessageError):
            aes_256_cbc_decrypt(key, iv, ct)
    # right length byte, wrong filler
    block = bytes(13) + b"\x02\x03\x03"
    ct = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor().update(block)
    with pytest.raises(InvalidMessageError):
        aes_256_cbc_decrypt(key, iv, ct)


def test_aes_cbc_tampered_last_block_is_rejected_or_changes_plaintext() -> None:
    key, iv, pt = bytes(range(32)), bytes(range(16)), b"attack at dawn!!"
    ct = bytearray(aes_256_cbc_encrypt(key, iv, pt))
    ct[-1] ^= 1
    with contextlib.suppress(InvalidMessageError):
        assert aes_256_cbc_decrypt(key, iv, bytes(ct)) != pt


@pytest.mark.parametrize(
    ("key", "iv"), [(bytes(31), bytes(16)), (bytes(32), bytes(15)), (bytes(16), bytes(16))]
)
def test_aes_cbc_bad_key_or_iv_is_a_usage_error(key: bytes, iv: bytes) -> None:
    with pytest.raises(UsageError):
        aes_256_cbc_encrypt(key, iv, b"x")
    with pytest.raises(UsageError):
        aes_256_cbc_decrypt(key, iv, bytes(16))


@settings(max_examples=100)
@given(key=keys, counter=ivs, data=st.binary(max_size=100))
def test_aes_ctr_is_its_own_inverse(key: bytes, counter: bytes, data: bytes) -> None:
    ct = aes_256_ctr(key, counter, data)
    assert len(ct) == len(data)
    assert aes_256_ctr(key, counter, ct) == data


def test_aes_ctr_bad_counter_is_a_usage_error() -> None:
    with pytest.raises(UsageError):
        aes_256_ctr(bytes(32), bytes(12), b"x")


def test_aes_gcm_siv_matches_rfc8452_vectors() -> None:
    key, nonce = b"\x01" + bytes(31), b"\x03" + bytes(11)  # RFC 8452 appendix C.2
    assert aes_256_gcm_siv_encrypt(key, nonce, b"") == h("07f5f4169bbf55a8400cd47ea6fd400f")
    assert aes_256_gcm_siv_encrypt(key, nonce, b"\x01" + bytes(7)) == h(
        "c2ef328e5c71c83b843122130f7364b761e0b97427e3df28"
    )


@settings(max_examples=100)
@given(key=keys, nonce=nonces, pt=st.binary(max_size=100), aad=st.binary(max_size=40))
def test_aes_gcm_siv_round_trip(key: bytes, nonce: bytes, pt: bytes, aad: bytes) -> None:
    ct = aes_256_gcm_siv_encrypt(key, nonce, pt, aad)
    assert len(ct) == len(pt) + 16
    assert ct == AESGCMSIV(key).encrypt(nonce, pt, aad)
    assert aes_256_gcm_siv_decrypt(key, nonce, ct, aad) == pt


@settings(max_examples=100)
@given(
    key=keys,
    nonce=nonces,
    pt=st.binary(max_size=64),
    bit=st.integers(min_value=0),
)
def test_aes_gcm_siv_any_flipped_bit_is_rejected(
    key: bytes, nonce: bytes, pt: bytes, bit: int
) -> None:
    ct = bytearray(aes_256_gcm_siv_encrypt(key, nonce, pt, b"aad"))
    bit %= 8 * len(ct)
    ct[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(InvalidMessageError):
        aes_256_gcm_siv_decrypt(key, nonce, bytes(ct), b"aad")


def test_aes_gcm_siv_rejects_wrong_aad_nonce_and_short_input() -> None:
    key, nonce = bytes(range(32)), bytes(12)
    ct = aes_256_gcm_siv_encrypt(key, nonce, b"hello", b"aad")
    with pytest.raises(InvalidMessageError):
        aes_256_gcm_siv_decrypt(key, nonce, ct, b"other")
    with pytest.raises(InvalidMessageError):
        aes_256_gcm_siv_decrypt(key, b"\x01" + bytes(11), ct, b"aad")
    for n in (0, 15):
        with pytest.raises(InvalidMessageError):
            aes_256_gcm_siv_decrypt(key, nonce, bytes(n))
    with pytest.raises(UsageError):
        aes_256_gcm_siv_encrypt(key, bytes(16), b"x")


def test_cipher_route_is_the_public_api_when_a_shortcut_misbehaves(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def raising(key: bytes, iv: bytes) -> object:
        raise AttributeError("a changed cryptography")

    def wrong(key: bytes, iv: bytes) -> tuple[object, object]:
        return primitives._public_args(bytes(32), iv)  # another key: other bytes out

    for broken in (raising, wrong):
        monkeypatch.setattr(primitives, "_prebuilt_args", broken)
        args, _enc, _dec = primitives._pick_cipher_route()
        assert args is primitives._public_args


@pytest.mark.parametrize("kind", [bytearray, memoryview])
@pytest.mark.parametrize("salt", [None, b"s" * 32])
def test_hkdf_takes_any_bytes_like_input(kind: type, salt: bytes | None) -> None:
    ikm, info = b"k" * 32, b"WhisperMessageKeys"
    expected = hkdf_sha256(ikm, salt, info, 80)
    wrapped_salt = None if salt is None else kind(salt)
    assert hkdf_sha256(kind(ikm), wrapped_salt, kind(info), 80) == expected
