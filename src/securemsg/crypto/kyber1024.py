"""Kyber1024 round 3 as libsignal 0.103.0 uses it for PQXDH.

Theory of operation
-------------------
Serialized forms carry libsignal's key-type byte 0x08: public key ``0x08 || ByteEncode12(t_hat)
|| rho`` (1569 bytes), ciphertext ``0x08 || c1(1408) || c2(160)`` (1569 bytes). The lattice layer
(K-PKE) of Kyber round 3 and ML-KEM-1024 is identical; only the hashing around it differs
(FIPS 203, section 1.3). So the fast route realises round 3 over OpenSSL's ML-KEM-1024:

* **Key generation** is ML-KEM-1024 ``KeyGen_internal(d, z)`` from a 64-byte seed ``d || z``
  (``cryptography``'s ``from_seed_bytes``). Round 3 would expand ``G(d)`` instead of
  ``G(d || 4)``, which only changes *which* key pair a seed yields; the key format is the same
  and the seed never leaves this object, so peers cannot tell.
* **Encapsulation**: OpenSSL returns ``(K, c)`` with ``(K, r) = G(m || H(pk))`` for a random
  ``m``. That is precisely round 3's ``(K_bar, r) = G(m' || H(pk))`` with ``m' = m`` (round 3
  draws ``m' = H(m)``, which is just as uniform). The round-3 shared secret is
  ``SHAKE256(K_bar || SHA3-256(c), 32)``.
* **Decapsulation**: OpenSSL decrypts ``m''``, re-derives ``(K'', r'') = G(m'' || H(pk))``,
  re-encrypts and compares: the same check as round 3. For a valid ciphertext it returns
  ``K_bar`` and we output ``SHAKE256(K_bar || SHA3-256(c), 32)``.

  *Invalid ciphertexts* (implicit rejection): OpenSSL returns ``J(z || c) = SHAKE256(z || c, 32)``
  and we output ``SHAKE256(J(z || c) || SHA3-256(c), 32)``. That is the formula libsignal's
  libcrux Kyber variant was observed to use (tests/unit/crypto/test_kyber1024.py pins it), but
  it is **not** the round-3 reference value ``SHAKE256(z || SHA3-256(c), 32)`` (e.g.
  ``kyber-py``). Rejection values never reach the wire between honest peers: a rejected
  ciphertext only yields a key nobody else has.
* **Two encapsulation routes**, a named choice (:class:`~securemsg.crypto.backend.KyberBackend`):
  ``OPENSSL`` (production, the default) is the route above; ``PORTABLE`` runs the round-3
  algorithm on the numpy lattice core with ``m`` from the caller's rng (``m' = SHA3-256(m)``;
  ``(K_bar, r) = SHA3-512(m' || H(pk))``; ``ss = SHAKE256(K_bar || H(c), 32)``), so a
  deterministic rng gives reproducible vectors. The route is the ``backend`` argument of
  :meth:`KyberPublicKey.encapsulate` if given, else the rng's ``kyber_backend``
  (``SystemRng``: ``OPENSSL``; ``DeterministicRng``: ``PORTABLE`` unless constructed with
  ``kyber_backend=KyberBackend.OPENSSL``). Both routes share ``K-PKE.Encrypt``: for the same
  ``m'`` the portable core yields OpenSSL's ciphertext and ``K_bar`` byte for byte (tested by
  recovering OpenSSL's ``m`` with the secret key). Key generation and decapsulation have one
  route, OpenSSL's, whatever the choice.
"""

from __future__ import annotations

import hashlib
from typing import Final

from cryptography.hazmat.primitives.asymmetric import mlkem

from securemsg.crypto import _lattice as lat
from securemsg.crypto.backend import KyberBackend
from securemsg.crypto.rng import Rng
from securemsg.errors import InvalidKeyError, UsageError

__all__ = [
    "CIPHERTEXT_LENGTH",
    "KYBER_KEY_TYPE",
    "KyberBackend",
    "KyberKeyPair",
    "KyberPublicKey",
    "PUBLIC_KEY_LENGTH",
    "SECRET_KEY_LENGTH",
    "SEED_LENGTH",
    "SHARED_SECRET_LENGTH",
]

KYBER_KEY_TYPE: Final = 0x08
PUBLIC_KEY_LENGTH: Final = 1569
CIPHERTEXT_LENGTH: Final = 1569
SECRET_KEY_LENGTH: Final = 3169
SHARED_SECRET_LENGTH: Final = 32
SEED_LENGTH: Final = 64

_K: Final = 4
_DU: Final = 11
_DV: Final = 5
_T_BYTES: Final = 1536
_TYPE: Final = bytes((KYBER_KEY_TYPE,))


def _round3_secret(k_bar: bytes, ciphertext: bytes) -> bytes:
    return hashlib.shake_256(k_bar + hashlib.sha3_256(ciphertext).digest()).digest(32)


class KyberPublicKey:
    """A Kyber1024 public key (value object: ``==`` and ``hash`` by bytes)."""

    __slots__ = ("_h", "_openssl", "_raw")

    def __init__(self, raw: bytes, openssl: mlkem.MLKEM1024PublicKey) -> None:
        self._raw = raw  # 1568 bytes, without the type byte
        self._openssl = openssl
        self._h: bytes | None = None

    @classmethod
    def from_bytes(cls, data: bytes) -> KyberPublicKey:
        """Parse ``0x08 || ByteEncode12(t_hat)(1536) || rho(32)``.

        Raises:
            InvalidKeyError: wrong length or type byte, or a coefficient >= q (modulus check).
        """
        if not isinstance(data, bytes | bytearray | memoryview) or len(data) != PUBLIC_KEY_LENGTH:
            raise InvalidKeyError("Kyber1024 public key must be 1569 bytes")
        data = bytes(data)
        if data[0] != KYBER_KEY_TYPE:
            raise InvalidKeyError("Kyber1024 public key has the wrong key type byte")
        raw = data[1:]
        try:
            openssl = mlkem.MLKEM1024PublicKey.from_public_bytes(raw)
        except ValueError as exc:
            raise InvalidKeyError("Kyber1024 public key fails the modulus check") from exc
        return cls(raw, openssl)

    def to_bytes(self) -> bytes:
        """``0x08 || pk`` (1569 bytes)."""
        return _TYPE + self._raw

    @property
    def _hash(self) -> bytes:
        if self._h is None:
            self._h = hashlib.sha3_256(self._raw).digest()
        return self._h

    def encapsulate(self, rng: Rng, backend: KyberBackend | None = None) -> tuple[bytes, bytes]:
        """Kyber1024 round-3 encapsulation.

        Args:
            rng: the randomness of the ``PORTABLE`` route (32 bytes for ``m``); the
                ``OPENSSL`` route reads nothing from it (OpenSSL draws ``m`` itself).
            backend: the route; ``None`` takes ``rng.kyber_backend`` (``OPENSSL`` for an rng
                that names none). See :class:`~securemsg.crypto.backend.KyberBackend`.

        Returns:
            ``(shared_secret(32), ciphertext(1569, with 0x08))``.
        """
        if backend is None:
            backend = getattr(rng, "kyber_backend", KyberBackend.OPENSSL)
        if backend is KyberBackend.OPENSSL:
            k_bar, ct = self._openssl.encapsulate()
            return _round3_secret(k_bar, ct), _TYPE + ct
        if backend is KyberBackend.PORTABLE:
            return self._encapsulate_round3(rng.random_bytes(32))
        raise UsageError(f"unknown Kyber backend {backend!r}")

    def _encapsulate_round3(self, m: bytes) -> tuple[bytes, bytes]:
        """The round-3 algorithm on the numpy core (``m`` is hashed first, as in round 3)."""
        m_prime = hashlib.sha3_256(m).digest()
        k_bar, ct = self._encapsulate_internal(m_prime)
        return _round3_secret(k_bar, ct), _TYPE + ct

    def _encapsulate_internal(self, m_prime: bytes) -> tuple[bytes, bytes]:
        """``(K_bar, c)`` for the 32-byte message ``m'`` on the numpy core: FIPS 203
        ``ML-KEM.Encaps_internal`` (= round 3 after its hash of ``m``), the computation
        OpenSSL's encapsulation performs for the ``m`` it draws."""
        g = hashlib.sha3_512(m_prime + self._hash).digest()
        c1, _y_hat, e2, stacked = lat.encrypt_u(self._raw[_T_BYTES:], g[32:], _K, _DU)
        t_hat = lat.decode12(self._raw[:_T_BYTES], _K)
        return g[:32], c1 + lat.encrypt_v(t_hat, stacked, e2, m_prime, _DV)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, KyberPublicKey):
            return NotImplemented
        return self._raw == other._raw

    def __hash__(self) -> int:
        return hash(self._raw)

    def __repr__(self) -> str:
        return f"KyberPublicKey({self._hash[:4].hex()}…)"


class KyberKeyPair:
    """A Kyber1024 key pair. The secret is kept as the 64-byte seed ``d || z``; ``repr`` never
    shows it."""

    __slots__ = ("_private", "_public", "_seed")

    def __init__(self, seed: bytes, private: mlkem.MLKEM1024PrivateKey) -> None:
        self._seed = seed
        self._private = private
        pub = private.public_key()
        self._public = KyberPublicKey(pub.public_bytes_raw(), pub)

    @classmethod
    def generate(cls, rng: Rng) -> KyberKeyPair:
        """A fresh key pair from 64 bytes of ``rng`` (deterministic for a deterministic rng)."""
        return cls.from_seed(rng.random_bytes(SEED_LENGTH))

    @classmethod
    def from_seed(cls, seed: bytes) -> KyberKeyPair:
        """The key pair of a 64-byte seed ``d || z``.

        Raises:
            InvalidKeyError: ``seed`` is not 64 bytes.
        """
        if not isinstance(seed, bytes | bytearray | memoryview) or len(seed) != SEED_LENGTH:
            raise InvalidKeyError("Kyber1024 seed must be 64 bytes")
        seed = bytes(seed)
        return cls(seed, mlkem.MLKEM1024PrivateKey.from_seed_bytes(seed))

    @property
    def seed(self) -> bytes:
        """The 64-byte secret seed ``d || z``."""
        return self._seed

    @property
    def public_key(self) -> KyberPublicKey:
        """The public key."""
        return self._public

    def secret_key_bytes(self) -> bytes:
        """libsignal's serialized Kyber1024 secret key: ``0x08 || dk`` (3169 bytes).

        ``dk = ByteEncode12(s_hat)(1536) || pk(1568) || SHA3-256(pk)(32) || z(32)``: the round-3
        secret-key layout, which is also FIPS 203's ML-KEM-1024 decapsulation key. ``s_hat`` is
        recomputed from the seed with the numpy lattice core (OpenSSL exports only the seed);
        ``libsignal``'s ``KEMSecretKey.deserialize`` accepts the result and decapsulates with it.
        The output is secret: handle it like the seed.
        """
        sigma = hashlib.sha3_512(self._seed[:32] + bytes((_K,))).digest()[32:]  # G(d || k)
        s_hat = lat.ntt(lat.sample_noise(sigma, 0, _K))
        raw = self._public._raw
        return b"".join(
            (_TYPE, lat.encode_bits(s_hat, 12), raw, self._public._hash, self._seed[32:])
        )

    def decapsulate(self, ciphertext: bytes) -> bytes:
        """``0x08 || c`` (1569 bytes) -> 32-byte round-3 shared secret.

        Raises:
            InvalidKeyError: wrong length or type byte.
        """
        if (
            not isinstance(ciphertext, bytes | bytearray | memoryview)
            or len(ciphertext) != CIPHERTEXT_LENGTH
        ):
            raise InvalidKeyError("Kyber1024 ciphertext must be 1569 bytes")
        ciphertext = bytes(ciphertext)
        if ciphertext[0] != KYBER_KEY_TYPE:
            raise InvalidKeyError("Kyber1024 ciphertext has the wrong key type byte")
        ct = ciphertext[1:]
        try:
            k_bar = self._private.decapsulate(ct)
        except ValueError as exc:  # pragma: no cover - the length was checked
            raise InvalidKeyError("Kyber1024 ciphertext refused") from exc
        return _round3_secret(k_bar, ct)

    def __repr__(self) -> str:
        return f"KyberKeyPair(public={self._public!r}, secret=<hidden>)"
