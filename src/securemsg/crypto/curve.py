"""Curve25519 keys, X25519 and XEdDSA as libsignal does them (INTERFACE STUB)."""

from __future__ import annotations

from securemsg.crypto.rng import Rng

DJB_TYPE = 0x05


class PublicKey:
    """A Curve25519 public key. ``to_bytes()`` is libsignal's 33-byte ``0x05 || u`` form.

    Immutable, hashable, compares by value (constant time not needed: public).
    """

    __slots__ = ("_raw",)

    def __init__(self, raw: bytes) -> None:  # raw = 32-byte u coordinate
        self._raw = raw

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicKey:
        """Parse ``0x05 || u``; wrong type/length -> InvalidKeyError (trailing bytes tolerated)."""
        raise NotImplementedError

    @classmethod
    def from_raw(cls, raw: bytes) -> PublicKey:
        """From a bare 32-byte u coordinate."""
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        raise NotImplementedError

    @property
    def raw(self) -> bytes:
        return self._raw

    def verify(self, message: bytes, signature: bytes) -> None:
        """XEdDSA verify; raises InvalidSignatureError."""
        raise NotImplementedError

    def is_canonical(self) -> bool:
        """libsignal's base-key check: u < 2^255-19 and the point is torsion-free."""
        raise NotImplementedError


class PrivateKey:
    """A Curve25519 private key (32 bytes, clamped). ``repr`` never shows the key."""

    __slots__ = ("_raw",)

    def __init__(self, raw: bytes) -> None:
        self._raw = raw

    @classmethod
    def generate(cls, rng: Rng) -> PrivateKey:
        raise NotImplementedError

    @classmethod
    def from_bytes(cls, data: bytes) -> PrivateKey:
        """32 bytes -> clamped key; wrong length -> InvalidKeyError."""
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        raise NotImplementedError

    def public_key(self) -> PublicKey:
        raise NotImplementedError

    def agree(self, their: PublicKey) -> bytes:
        """X25519; an all-zero result -> InvalidKeyError."""
        raise NotImplementedError

    def sign(self, message: bytes, rng: Rng) -> bytes:
        """XEdDSA signature (64 bytes), libsignal flavour."""
        raise NotImplementedError


class KeyPair:
    """A private key with its public key (computed once)."""

    __slots__ = ("private_key", "public_key")

    def __init__(self, private_key: PrivateKey, public_key: PublicKey) -> None:
        self.private_key = private_key
        self.public_key = public_key

    @classmethod
    def generate(cls, rng: Rng) -> KeyPair:
        raise NotImplementedError
