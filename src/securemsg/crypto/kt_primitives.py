"""The primitives key transparency needs besides the VRF (crypto/ecvrf.py): BLAKE3, the hash
of AKD's ``whatsapp_v1`` configuration, and Ed25519 for signing epoch heads.

Kept here because crypto/ is the only layer that imports crypto libraries (see
docs/architecture.md).
"""

from __future__ import annotations

from blake3 import blake3
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from securemsg.errors import UsageError

__all__ = ["Ed25519SigningKey", "blake3_hash", "ed25519_verify"]


def blake3_hash(data: bytes) -> bytes:
    """BLAKE3 with the default 32-byte output."""
    return blake3(data).digest()


class Ed25519SigningKey:
    """An Ed25519 signing key from a 32-byte seed (RFC 8032)."""

    __slots__ = ("_key",)

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise UsageError("an Ed25519 signing key is a 32-byte seed")
        self._key = SigningKey(bytes(seed))

    def __repr__(self) -> str:
        return "Ed25519SigningKey(<secret>)"

    @property
    def public_key(self) -> bytes:
        return bytes(self._key.verify_key)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte signature of ``message``."""
        return bytes(self._key.sign(message).signature)


def ed25519_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    try:
        VerifyKey(bytes(public_key)).verify(message, bytes(signature))
    except (BadSignatureError, ValueError):
        return False
    return True
