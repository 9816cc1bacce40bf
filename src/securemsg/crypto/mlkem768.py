"""ML-KEM-768 (FIPS 203) with the incremental split SPQR needs (INTERFACE STUB).

See shared spqr-facts §7: header = rho || H(ek) (64 B), ek_vector (1152 B), ct1 (960 B),
ct2 (128 B); ek = ek_vector || rho.
"""

from __future__ import annotations

HEADER_LENGTH = 64
EK_VECTOR_LENGTH = 1152
CT1_LENGTH = 960
CT2_LENGTH = 128
DK_LENGTH = 2400
SEED_LENGTH = 64


class MlKem768KeyPair:
    """A key pair from a 64-byte seed d||z (repr hides secrets)."""

    @classmethod
    def from_seed(cls, seed: bytes) -> MlKem768KeyPair:
        raise NotImplementedError

    @property
    def seed(self) -> bytes:
        raise NotImplementedError

    @property
    def header(self) -> bytes:
        """rho || SHA3-256(ek), 64 bytes."""
        raise NotImplementedError

    @property
    def ek_vector(self) -> bytes:
        raise NotImplementedError

    @property
    def encapsulation_key(self) -> bytes:
        """ek = ek_vector || rho (1184 bytes)."""
        raise NotImplementedError

    def decapsulate(self, ct1: bytes, ct2: bytes) -> bytes:
        """FIPS 203 Decaps(dk, ct1||ct2) -> 32-byte K (implicit rejection on bad ct)."""
        raise NotImplementedError


class EncapsState:
    """What Encaps1 keeps for Encaps2 (secret!). ``to_bytes``/``from_bytes`` for session storage."""

    def to_bytes(self) -> bytes:
        raise NotImplementedError

    @classmethod
    def from_bytes(cls, data: bytes) -> EncapsState:
        raise NotImplementedError


def encaps1(header: bytes, m: bytes) -> tuple[bytes, EncapsState, bytes]:
    """Return (ct1, state, shared_secret K). ``m`` = 32 fresh random bytes."""
    raise NotImplementedError


def validate_ek_vector(header: bytes, ek_vector: bytes) -> None:
    """Check H(ek_vector||rho) == header[32:] and the FIPS 203 modulus check; raise InvalidKeyError."""
    raise NotImplementedError


def encaps2(state: EncapsState, ek_vector: bytes) -> bytes:
    """Return ct2 (128 bytes). Call validate_ek_vector first."""
    raise NotImplementedError
