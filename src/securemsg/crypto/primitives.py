"""Symmetric primitives: HKDF/HMAC-SHA256, AES-256-CBC/CTR/GCM-SIV (hazardous, low level).

Theory of operation: thin, allocation-light wrappers that sit on the hot path of every
message (a Double Ratchet step is one HKDF, two HMACs, one AES-CBC and one MAC). Each one was
timed against its alternatives on this code base (see ``benchmarks/bench_curve.py``) and the
fastest correct route was kept:

* HMAC-SHA256 is the RFC 2104 construction over :mod:`hashlib` with the pad XOR done by
  ``bytes.translate`` (~1.6 us), which beats both ``hmac.digest`` and ``cryptography``'s HMAC
  object for short inputs.
* HKDF-SHA256 for outputs of at most three blocks (96 bytes; every per-message derivation)
  is extract+expand over that HMAC, with precomputed hash states for the all-zero salt. In
  place, inside a round trip, it beats ``cryptography``'s Rust HKDF, whose constructor runs ABC
  ``isinstance`` checks (~0.6 us per round trip); longer outputs and salts over one block use
  the Rust HKDF. Both routes are pinned by the RFC 5869 vectors and a textbook implementation
  in the tests, at every block and salt-length boundary.
* AES-CBC contexts are created with ``cryptography``'s Rust constructors
  (``create_encryption_ctx`` / ``create_decryption_ctx``) directly, from ``AES``/``CBC``
  argument objects built without their constructors' checks: ``Cipher(...).encryptor()``
  adds ~1.5 us of Python-level checks (ABC ``isinstance``, mode/IV validation) per message,
  and this module validates key and IV lengths itself. Neither shortcut is public API, so each
  is used only if an import-time self-test gets the public route's bytes; otherwise the public
  ``Cipher`` route is used. PKCS#7 padding is done in Python (one concatenation) instead of
  through a padding context.
* Large inputs (>= 4 KiB) are MACed with :func:`hmac_sha256_parts` (hash updates over the
  pieces, no concatenated copy of the body).

Timing: the hashing and AES are OpenSSL's (constant time). The HMAC key pads are made with
``bytes.translate`` through a 256-byte table indexed by the key bytes: a secret-indexed lookup,
kept because the C alternatives (``hmac.digest``, an XOR of integers) cost two to three times
as much per HMAC on the message hot path. PKCS#7 unpadding branches on the pad length, after the
MAC has authenticated the ciphertext.

Everything here is a primitive: no versioning, no framing. Arguments that the *caller* controls
(key and IV lengths) raise :class:`~securemsg.errors.UsageError`; ciphertext that came from a
peer and does not authenticate or unpad raises :class:`~securemsg.errors.InvalidMessageError`
with no further detail (no padding oracle).
"""

from __future__ import annotations

import hmac as _hmac
from collections.abc import Iterable
from hashlib import sha256 as _sha256
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCMSIV
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from securemsg.errors import InvalidMessageError, UsageError


def _public_enc(algorithm: Any, mode: Any) -> Any:
    return Cipher(algorithm, mode).encryptor()


def _public_dec(algorithm: Any, mode: Any) -> Any:
    return Cipher(algorithm, mode).decryptor()


def _public_args(key: bytes, iv: bytes) -> tuple[Any, Any]:
    return algorithms.AES(key), modes.CBC(iv)


_object_new = object.__new__
_AES = algorithms.AES
_CBC = modes.CBC


def _prebuilt_args(key: bytes, iv: bytes) -> tuple[Any, Any]:
    # The same objects without their constructors' argument checks (type and size checks that
    # our callers have already made): seven fewer Python calls per message and direction.
    algorithm = _object_new(_AES)
    algorithm.key = key
    mode = _object_new(_CBC)
    mode._initialization_vector = iv
    return algorithm, mode


def _pick_cipher_route() -> tuple[Any, Any, Any]:
    """How AES-CBC contexts are built: ``(args, create_encryptor, create_decryptor)``.

    Per message, building ``Cipher(AES(key), CBC(iv)).encryptor()`` costs more than the AES
    itself. Where this ``cryptography`` allows, the context comes from the Rust constructors
    behind ``Cipher`` and the argument objects are built without re-checking what the callers
    checked. Neither is public API, so each shortcut is used only if it produces the same
    bytes as the public route on a test block (and raises nothing); else the public route.
    """
    key, iv, block = bytes(range(32)), bytes(range(16)), bytes(range(16, 32))
    public_ct = _public_enc(*_public_args(key, iv)).update(block)
    enc, dec = _public_enc, _public_dec
    try:
        from cryptography.hazmat.bindings._rust import openssl as rust_openssl

        r_enc = rust_openssl.ciphers.create_encryption_ctx
        r_dec = rust_openssl.ciphers.create_decryption_ctx
        ct = r_enc(*_public_args(key, iv)).update(block)
        if ct == public_ct and r_dec(*_public_args(key, iv)).update(ct) == block:
            enc, dec = r_enc, r_dec
    except Exception:  # pragma: no cover - another cryptography version
        pass
    try:
        ct = enc(*_prebuilt_args(key, iv)).update(block)
        if ct == public_ct and dec(*_prebuilt_args(key, iv)).update(ct) == block:
            return _prebuilt_args, enc, dec
    except Exception:  # pragma: no cover - another cryptography version
        pass
    return _public_args, enc, dec  # pragma: no cover


_aes_cbc, _create_enc, _create_dec = _pick_cipher_route()


__all__ = [
    "aes_256_cbc_decrypt",
    "aes_256_cbc_encrypt",
    "aes_256_ctr",
    "aes_256_gcm_siv_decrypt",
    "aes_256_gcm_siv_encrypt",
    "constant_time_eq",
    "hkdf_sha256",
    "hmac_sha256",
    "hmac_sha256_pair",
    "hmac_sha256_parts",
]

_SHA256 = SHA256()
_ZERO_SALT = bytes(32)
_BLOCK = 64  # SHA-256 block size
_PAD36 = bytes(x ^ 0x36 for x in range(256))
_PAD5C = bytes(x ^ 0x5C for x in range(256))
_HKDF_MAX = 255 * 32
_ZERO_SALT_INNER = _sha256(bytes(_BLOCK).translate(_PAD36))
_ZERO_SALT_OUTER = _sha256(bytes(_BLOCK).translate(_PAD5C))
_PKCS7 = tuple(bytes((n,)) * n for n in range(17))


def hkdf_sha256(ikm: bytes, salt: bytes | None, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF-SHA256 (extract then expand).

    Args:
        ikm: input keying material.
        salt: extract salt; ``None`` means 32 zero bytes (the RFC's default for SHA-256).
        info: context string.
        length: bytes of output, 1..8160.

    Returns:
        ``length`` bytes of output keying material.

    Raises:
        UsageError: ``length`` out of range.
    """
    if not 0 < length <= _HKDF_MAX:
        raise UsageError("HKDF output length out of range")
    if length > 96 or (salt is not None and len(salt) > _BLOCK):
        return HKDF(_SHA256, length, _ZERO_SALT if salt is None else salt, info).derive(ikm)
    # The per-message sizes (at most three output blocks): RFC 5869 over hashlib, which takes
    # fewer Python-to-C calls than cryptography's HKDF object. The all-zero salt has constant
    # pads, so its extract hash states are precomputed and copied.
    if salt is None:
        inner = _ZERO_SALT_INNER.copy()
        inner.update(ikm)
        outer = _ZERO_SALT_OUTER.copy()
        outer.update(inner.digest())
        k = outer.digest() + _ZERO_SALT  # PRK, zero-padded to the block size
    else:
        s = bytes(salt) + bytes(_BLOCK - len(salt))  # bytes(): a memoryview salt too
        k = _sha256(s.translate(_PAD5C) + _sha256(s.translate(_PAD36) + ikm).digest()).digest()
        k += _ZERO_SALT
    ipad = k.translate(_PAD36)
    opad = k.translate(_PAD5C)
    t1 = _sha256(opad + _sha256(ipad + info + b"\x01").digest()).digest()
    if length <= 32:
        return t1 if length == 32 else t1[:length]
    t2 = _sha256(opad + _sha256(ipad + t1 + info + b"\x02").digest()).digest()
    if length <= 64:
        return t1 + t2 if length == 64 else (t1 + t2)[:length]
    t3 = _sha256(opad + _sha256(ipad + t2 + info + b"\x03").digest()).digest()
    return (t1 + t2 + t3)[:length]


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104) of ``data`` under ``key``; 32 bytes."""
    if len(key) > _BLOCK:
        key = _sha256(key).digest()
    k = key.ljust(_BLOCK, b"\0")
    return _sha256(k.translate(_PAD5C) + _sha256(k.translate(_PAD36) + data).digest()).digest()


def hmac_sha256_pair(key: bytes, data1: bytes, data2: bytes) -> tuple[bytes, bytes]:
    """``(HMAC-SHA256(key, data1), HMAC-SHA256(key, data2))``, padding the key only once.

    The Double Ratchet chain step takes two HMACs under one chain key (seeds ``0x01`` and
    ``0x02``); sharing the padded key saves two ``translate`` calls and a function call.
    """
    if len(key) > _BLOCK:
        key = _sha256(key).digest()
    k = key.ljust(_BLOCK, b"\0")
    ipad = k.translate(_PAD36)
    opad = k.translate(_PAD5C)
    return (
        _sha256(opad + _sha256(ipad + data1).digest()).digest(),
        _sha256(opad + _sha256(ipad + data2).digest()).digest(),
    )


def hmac_sha256_parts(key: bytes, parts: Iterable[bytes | memoryview]) -> bytes:
    """HMAC-SHA256 of the concatenation of ``parts``, without building it (for large inputs)."""
    if len(key) > _BLOCK:
        key = _sha256(key).digest()
    k = key.ljust(_BLOCK, b"\0")
    inner = _sha256(k.translate(_PAD36))
    for part in parts:
        inner.update(part)
    return _sha256(k.translate(_PAD5C) + inner.digest()).digest()


def constant_time_eq(a: bytes, b: bytes) -> bool:
    """The one constant-time comparator of the project (``hmac.compare_digest``).

    Time depends only on the lengths, not the contents; different lengths compare unequal.
    """
    return _hmac.compare_digest(a, b)


def _check_key(key: bytes) -> None:
    if len(key) != 32:
        raise UsageError("AES-256 key must be 32 bytes")


def aes_256_cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """AES-256-CBC with PKCS#7 padding (always at least one byte of padding).

    Raises:
        UsageError: the key is not 32 bytes or the IV not 16 bytes.
    """
    if len(key) != 32 or len(iv) != 16:
        _check_key(key)
        raise UsageError("AES-CBC IV must be 16 bytes")
    padded = plaintext + _PKCS7[16 - (len(plaintext) & 15)]
    out: bytes = _create_enc(*_aes_cbc(key, iv)).update(padded)
    return out


def aes_256_cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """Inverse of :func:`aes_256_cbc_encrypt`.

    Raises:
        UsageError: the key is not 32 bytes or the IV not 16 bytes.
        InvalidMessageError: the ciphertext is empty, not a multiple of 16 bytes, or its
            padding is wrong (one undifferentiated error: no padding oracle).
    """
    if len(key) != 32 or len(iv) != 16:
        _check_key(key)
        raise UsageError("AES-CBC IV must be 16 bytes")
    n = len(ciphertext)
    if n == 0 or n & 15:
        raise InvalidMessageError("invalid ciphertext")
    padded: bytes = _create_dec(*_aes_cbc(key, iv)).update(ciphertext)
    pad = padded[-1]
    if not 0 < pad <= 16 or not _hmac.compare_digest(padded[n - pad :], _PKCS7[pad]):
        raise InvalidMessageError("invalid ciphertext")
    return padded[: n - pad]


def aes_256_ctr(key: bytes, counter_block: bytes, data: bytes) -> bytes:
    """AES-256-CTR (encrypt == decrypt); the 16-byte counter block increments big-endian.

    Raises:
        UsageError: the key is not 32 bytes or the counter block not 16 bytes.
    """
    _check_key(key)
    if len(counter_block) != 16:
        raise UsageError("AES-CTR counter block must be 16 bytes")
    return Cipher(algorithms.AES(key), modes.CTR(counter_block)).encryptor().update(data)


def aes_256_gcm_siv_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
    """AES-256-GCM-SIV (RFC 8452); returns ``ciphertext || tag(16)``.

    Raises:
        UsageError: the key is not 32 bytes or the nonce not 12 bytes.
    """
    _check_key(key)
    if len(nonce) != 12:
        raise UsageError("AES-GCM-SIV nonce must be 12 bytes")
    return AESGCMSIV(key).encrypt(nonce, plaintext, aad)


def aes_256_gcm_siv_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes = b"") -> bytes:
    """Inverse of :func:`aes_256_gcm_siv_encrypt`.

    Raises:
        UsageError: the key is not 32 bytes or the nonce not 12 bytes.
        InvalidMessageError: the tag does not verify or the input is shorter than a tag.
    """
    _check_key(key)
    if len(nonce) != 12:
        raise UsageError("AES-GCM-SIV nonce must be 12 bytes")
    if len(ciphertext) < 16:
        raise InvalidMessageError("invalid ciphertext")
    try:
        return AESGCMSIV(key).decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        raise InvalidMessageError("invalid ciphertext") from None
