"""Symmetric primitives over ``cryptography`` (INTERFACE STUB: the crypto helper fills this in)."""

from __future__ import annotations


def hkdf_sha256(ikm: bytes, salt: bytes | None, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF-SHA256. ``salt=None`` means 32 zero bytes."""
    raise NotImplementedError


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    """HMAC-SHA256, 32 bytes."""
    raise NotImplementedError


def constant_time_eq(a: bytes, b: bytes) -> bool:
    """The one constant-time comparator of the project."""
    raise NotImplementedError


def aes_256_cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """AES-256-CBC with PKCS#7 padding."""
    raise NotImplementedError


def aes_256_cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """Inverse of :func:`aes_256_cbc_encrypt`. Bad length/padding -> InvalidMessageError."""
    raise NotImplementedError


def aes_256_ctr(key: bytes, counter_block: bytes, data: bytes) -> bytes:
    """AES-256-CTR (encrypt == decrypt) from a 16-byte initial counter block."""
    raise NotImplementedError


def aes_256_gcm_siv_encrypt(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
    """AES-256-GCM-SIV; returns ciphertext || tag(16)."""
    raise NotImplementedError


def aes_256_gcm_siv_decrypt(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes = b"") -> bytes:
    """Inverse; a bad tag -> InvalidMessageError."""
    raise NotImplementedError
