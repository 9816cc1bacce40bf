"""Kyber1024 round 3 as libsignal 0.103.0 uses it for PQXDH (INTERFACE STUB).

Serialized forms carry libsignal's key-type byte 0x08: public key 1569 bytes, ciphertext 1569.
"""

from __future__ import annotations

from securemsg.crypto.rng import Rng

KYBER_KEY_TYPE = 0x08
PUBLIC_KEY_LENGTH = 1569
CIPHERTEXT_LENGTH = 1569
SHARED_SECRET_LENGTH = 32


class KyberPublicKey:
    @classmethod
    def from_bytes(cls, data: bytes) -> KyberPublicKey:
        """0x08 || 1568 bytes; anything else -> InvalidKeyError."""
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        raise NotImplementedError

    def encapsulate(self, rng: Rng) -> tuple[bytes, bytes]:
        """Return ``(shared_secret(32), ciphertext(1569, with 0x08))``."""
        raise NotImplementedError


class KyberKeyPair:
    """Secret kept as the 64-byte seed d||z; ``repr`` never shows it."""

    @classmethod
    def generate(cls, rng: Rng) -> KyberKeyPair:
        raise NotImplementedError

    @classmethod
    def from_seed(cls, seed: bytes) -> KyberKeyPair:
        raise NotImplementedError

    @property
    def seed(self) -> bytes:
        raise NotImplementedError

    @property
    def public_key(self) -> KyberPublicKey:
        raise NotImplementedError

    def decapsulate(self, ciphertext: bytes) -> bytes:
        """ciphertext with the 0x08 byte -> 32-byte shared secret; bad length/type -> InvalidKeyError."""
        raise NotImplementedError
