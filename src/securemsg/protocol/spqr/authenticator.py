"""The braid authenticator (SPQR ``src/authenticator.rs``): MACs over ML-KEM header, ciphertext.

Theory of operation: both parties start from zero keys and immediately ``update(1, auth_key)``
with the PQXDH ``auth_key``. Each completed epoch e feeds its secret with ``update(e, secret)``
(send_ct right after Encaps1, send_ek right after Decaps), so both sides hold the same keys
after every epoch. The header of epoch e is MACed with the keys current when it is sent; the
ciphertext of epoch e with the keys after ``update(e, secret_e)``.
"""

from __future__ import annotations

from typing import Final

from securemsg.crypto.primitives import constant_time_eq, hkdf_sha256, hmac_sha256
from securemsg.errors import InvalidMessageError

__all__ = ["MAC_LENGTH", "Authenticator"]

MAC_LENGTH: Final = 32
_UPDATE: Final = b"Signal_PQCKA_V1_MLKEM768:Authenticator Update"
_HDR: Final = b"Signal_PQCKA_V1_MLKEM768:ekheader"
_CT: Final = b"Signal_PQCKA_V1_MLKEM768:ciphertext"
_ZERO32: Final = bytes(32)


class Authenticator:
    """Immutable (root_key, mac_key) pair. ``repr`` hides the keys."""

    __slots__ = ("mac_key", "root_key")

    root_key: bytes
    mac_key: bytes

    def __init__(self, root_key: bytes, mac_key: bytes) -> None:
        self.root_key = root_key
        self.mac_key = mac_key

    def __repr__(self) -> str:
        return "Authenticator(<secret>)"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Authenticator):
            return NotImplemented
        same_root = constant_time_eq(self.root_key, other.root_key)
        return constant_time_eq(self.mac_key, other.mac_key) and same_root

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def initial(cls, auth_key: bytes) -> Authenticator:
        """Zero keys followed by ``update(1, auth_key)``."""
        return cls(_ZERO32, _ZERO32).update(1, auth_key)

    def update(self, epoch: int, key: bytes) -> Authenticator:
        o = hkdf_sha256(self.root_key + key, None, _UPDATE + epoch.to_bytes(8, "big"), 64)
        return Authenticator(o[:32], o[32:])

    def mac_hdr(self, epoch: int, header: bytes) -> bytes:
        return hmac_sha256(self.mac_key, _HDR + epoch.to_bytes(8, "big") + header)

    def mac_ct(self, epoch: int, ct: bytes) -> bytes:
        return hmac_sha256(self.mac_key, _CT + epoch.to_bytes(8, "big") + ct)

    def verify_hdr(self, epoch: int, header: bytes, mac: bytes) -> None:
        """Raises InvalidMessageError if ``mac`` is not the header MAC."""
        if not constant_time_eq(self.mac_hdr(epoch, header), mac):
            raise InvalidMessageError("SPQR: MAC verification failed")

    def verify_ct(self, epoch: int, ct: bytes, mac: bytes) -> None:
        """Raises InvalidMessageError if ``mac`` is not the ciphertext MAC."""
        if not constant_time_eq(self.mac_ct(epoch, ct), mac):
            raise InvalidMessageError("SPQR: MAC verification failed")
