"""ML-KEM-768 (FIPS 203) with the incremental split SPQR needs.

Theory of operation
-------------------
SPQR (libsignal's post-quantum ratchet) sends an ML-KEM-768 encapsulation key in two parts and
encapsulates in two steps (SPQR ``src/incremental_mlkem768.rs``, libcrux's "incremental" ML-KEM):

* ``header`` (64 B) = ``rho || H(ek)`` and ``ek_vector`` (1152 B) = ``ByteEncode12(t_hat)``,
  where the FIPS 203 encapsulation key is ``ek = ek_vector || rho``.
* :func:`encaps1` needs only the header: ``(K, r) = G(m || H(ek))``, the matrix from ``rho``
  and the noise from ``r`` give ``ct1`` = FIPS 203 ``c1`` (960 B); ``K`` is the shared secret.
  It keeps ``NTT(y)``, ``e2`` and ``m`` in an :class:`EncapsState`.
* :func:`validate_ek_vector` checks a received ``ek_vector`` against the header (hash and the
  FIPS 203 modulus check); :func:`encaps2` then yields ``ct2`` = FIPS 203 ``c2`` (128 B).
* ``ct1 || ct2`` is exactly ``ML-KEM.Encaps_internal(ek, m)``'s ciphertext, so the key owner
  decapsulates with plain FIPS 203 Decaps (done by OpenSSL via ``cryptography``).

Key generation and decapsulation use ``cryptography``'s ML-KEM-768 (OpenSSL) from the 64-byte
seed ``d || z``; the two encapsulation halves use the numpy lattice core in ``_lattice``.
"""

from __future__ import annotations

import hashlib
from typing import Final

import numpy as np
from cryptography.hazmat.primitives.asymmetric import mlkem

from securemsg.crypto import _lattice as lat
from securemsg.crypto.rng import Rng
from securemsg.errors import DecodeError, InvalidKeyError, UsageError

__all__ = [
    "CT1_LENGTH",
    "CT2_LENGTH",
    "DK_LENGTH",
    "EK_LENGTH",
    "EK_VECTOR_LENGTH",
    "ENCAPS_STATE_LENGTH",
    "EncapsState",
    "HEADER_LENGTH",
    "MlKem768KeyPair",
    "SEED_LENGTH",
    "SHARED_SECRET_LENGTH",
    "encaps1",
    "encaps2",
    "validate_ek_vector",
]

HEADER_LENGTH: Final = 64
EK_VECTOR_LENGTH: Final = 1152
EK_LENGTH: Final = 1184
CT1_LENGTH: Final = 960
CT2_LENGTH: Final = 128
DK_LENGTH: Final = 2400
SEED_LENGTH: Final = 64
SHARED_SECRET_LENGTH: Final = 32
MESSAGE_LENGTH: Final = 32
ENCAPS_STATE_LENGTH: Final = 2080

_K: Final = 3
_DU: Final = 10
_DV: Final = 4
_Y_BYTES: Final = _K * 256 * 2  # 1536
_E2_BYTES: Final = 256 * 2  # 512


class MlKem768KeyPair:
    """An ML-KEM-768 key pair from a 64-byte seed ``d || z`` (``repr`` hides secrets)."""

    __slots__ = ("_ek", "_header", "_private", "_seed")

    def __init__(self, seed: bytes, private: mlkem.MLKEM768PrivateKey) -> None:
        self._seed = seed
        self._private = private
        self._ek = private.public_key().public_bytes_raw()
        self._header = self._ek[EK_VECTOR_LENGTH:] + hashlib.sha3_256(self._ek).digest()

    @classmethod
    def from_seed(cls, seed: bytes) -> MlKem768KeyPair:
        """FIPS 203 ``ML-KEM.KeyGen_internal(d, z)`` from ``seed = d || z``.

        Raises:
            InvalidKeyError: ``seed`` is not 64 bytes.
        """
        if not isinstance(seed, bytes | bytearray | memoryview) or len(seed) != SEED_LENGTH:
            raise InvalidKeyError("ML-KEM-768 seed must be 64 bytes")
        seed = bytes(seed)
        return cls(seed, mlkem.MLKEM768PrivateKey.from_seed_bytes(seed))

    @classmethod
    def generate(cls, rng: Rng) -> MlKem768KeyPair:
        """A fresh key pair from 64 bytes of ``rng``."""
        return cls.from_seed(rng.random_bytes(SEED_LENGTH))

    @property
    def seed(self) -> bytes:
        """The 64-byte secret seed ``d || z``."""
        return self._seed

    @property
    def header(self) -> bytes:
        """``rho || SHA3-256(ek)``, 64 bytes."""
        return self._header

    @property
    def ek_vector(self) -> bytes:
        """``ByteEncode12(t_hat)``, 1152 bytes."""
        return self._ek[:EK_VECTOR_LENGTH]

    @property
    def encapsulation_key(self) -> bytes:
        """``ek = ek_vector || rho`` (1184 bytes)."""
        return self._ek

    def decapsulate(self, ct1: bytes, ct2: bytes) -> bytes:
        """FIPS 203 ``Decaps(dk, ct1 || ct2)`` -> 32-byte K (implicit rejection on a bad ct).

        Raises:
            DecodeError: ``ct1`` is not 960 bytes or ``ct2`` not 128 bytes.
        """
        if len(ct1) != CT1_LENGTH or len(ct2) != CT2_LENGTH:
            raise DecodeError("ML-KEM-768 ciphertext parts have the wrong length")
        try:
            return self._private.decapsulate(bytes(ct1) + bytes(ct2))
        except ValueError as exc:  # pragma: no cover - lengths were checked
            raise DecodeError("ML-KEM-768 ciphertext refused") from exc

    def __repr__(self) -> str:
        return "MlKem768KeyPair(<secret>)"


class EncapsState:
    """What :func:`encaps1` keeps for :func:`encaps2` (secret: it determines the shared secret).

    Serialized (:meth:`to_bytes`) in libsignal/libcrux's 2080-byte layout: ``NTT(y)`` as 3 x 256
    signed 16-bit little-endian values centred in [-1664, 1664], ``e2`` as 256 i16 LE in [-2, 2],
    then ``m`` (32 bytes).
    """

    __slots__ = ("_e2", "_m", "_stacked", "_y_hat")

    def __init__(self, y_hat: lat.IntArray, e2: lat.FloatArray | lat.IntArray, m: bytes) -> None:
        self._y_hat = y_hat  # (3, 2, 128) in [0, q)
        self._e2 = e2  # (2, 128) in [-2, 2]
        self._m = m
        self._stacked: lat.FloatArray | None = None

    def _operand(self) -> lat.FloatArray:
        if self._stacked is None:
            self._stacked = lat.stack_for_mul(self._y_hat)
        return self._stacked

    def to_bytes(self) -> bytes:
        """The 2080-byte libcrux layout (see the class docstring)."""
        y = lat.to_natural(self._y_hat)
        y = y - lat.Q * (y > lat.Q // 2)  # centred, without a per-element select
        e2 = lat.to_natural(np.asarray(self._e2, dtype=np.int64))
        return y.astype("<i2").tobytes() + e2.astype("<i2").tobytes() + self._m

    @classmethod
    def from_bytes(cls, data: bytes) -> EncapsState:
        """Parse :meth:`to_bytes` output.

        States written by libcrux before its fix for cryspen/libcrux#1275 hold big-endian i16
        values; like ``spqr``, such a state is recognised by its out-of-range ``e2`` and read
        byte-swapped.

        Raises:
            DecodeError: wrong length or a value out of range.
        """
        if not isinstance(data, bytes | bytearray | memoryview) or len(data) != ENCAPS_STATE_LENGTH:
            raise DecodeError("ML-KEM-768 encapsulation state must be 2080 bytes")
        data = bytes(data)
        vals = np.frombuffer(data, dtype="<i2", count=(_Y_BYTES + _E2_BYTES) // 2).astype(np.int64)
        if np.abs(vals[_Y_BYTES // 2 :]).max() > 2:
            vals = np.frombuffer(data, dtype=">i2", count=(_Y_BYTES + _E2_BYTES) // 2).astype(
                np.int64
            )
            if np.abs(vals[_Y_BYTES // 2 :]).max() > 2:
                raise DecodeError("ML-KEM-768 encapsulation state: e2 out of range")
        y = vals[: _Y_BYTES // 2]
        if np.abs(y).max() > lat.Q // 2:
            raise DecodeError("ML-KEM-768 encapsulation state: NTT(y) out of range")
        y_hat = lat.from_natural((y + lat.Q * (y < 0)).reshape(_K, 256))  # into [0, q)
        e2 = lat.from_natural(vals[_Y_BYTES // 2 :])
        return cls(np.ascontiguousarray(y_hat), e2, data[_Y_BYTES + _E2_BYTES :])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, EncapsState):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "EncapsState(<secret>)"


def encaps1(header: bytes, m: bytes) -> tuple[bytes, EncapsState, bytes]:
    """First encapsulation step from the 64-byte header only.

    Args:
        header: ``rho || H(ek)`` (64 bytes).
        m: 32 fresh random bytes (used as is, FIPS 203).

    Returns:
        ``(ct1, state, shared_secret)``: ct1 is 960 bytes, the secret K 32 bytes.

    Raises:
        DecodeError: ``header`` is not 64 bytes.
        UsageError: ``m`` is not 32 bytes.
    """
    if len(header) != HEADER_LENGTH:
        raise DecodeError("ML-KEM-768 header must be 64 bytes")
    if len(m) != MESSAGE_LENGTH:
        raise UsageError("ML-KEM-768 encapsulation randomness must be 32 bytes")
    header = bytes(header)
    m = bytes(m)
    g = hashlib.sha3_512(m + header[32:]).digest()
    ct1, y_hat, e2, stacked = lat.encrypt_u(header[:32], g[32:], _K, _DU)
    state = EncapsState(y_hat, e2, m)
    state._stacked = stacked
    return ct1, state, g[:32]


def _decode_ek_vector(ek_vector: bytes) -> lat.UInt16Array:
    if len(ek_vector) != EK_VECTOR_LENGTH:
        raise InvalidKeyError("ML-KEM-768 ek_vector must be 1152 bytes")
    t_hat = lat.decode12(bytes(ek_vector), _K)
    if t_hat.max() >= lat.Q:
        raise InvalidKeyError("ML-KEM-768 ek_vector fails the modulus check")
    return t_hat


def validate_ek_vector(header: bytes, ek_vector: bytes) -> None:
    """Check ``H(ek_vector || rho) == header[32:]`` and the FIPS 203 modulus check.

    Raises:
        InvalidKeyError: wrong lengths, hash mismatch or a 12-bit value >= q.
    """
    if len(header) != HEADER_LENGTH or len(ek_vector) != EK_VECTOR_LENGTH:
        raise InvalidKeyError("ML-KEM-768 header or ek_vector has the wrong length")
    ek = bytes(ek_vector) + bytes(header[:32])
    if hashlib.sha3_256(ek).digest() != bytes(header[32:]):
        raise InvalidKeyError("ML-KEM-768 ek_vector does not match the header")
    _decode_ek_vector(ek_vector)


def encaps2(state: EncapsState, ek_vector: bytes) -> bytes:
    """Second encapsulation step: ``ct2`` (128 bytes). Call :func:`validate_ek_vector` first.

    Raises:
        InvalidKeyError: ``ek_vector`` has the wrong length or fails the modulus check.
    """
    t_hat = _decode_ek_vector(ek_vector)
    return lat.encrypt_v(t_hat, state._operand(), state._e2, state._m, _DV)
