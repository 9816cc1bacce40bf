"""The named choice of implementation for Kyber1024 (PQXDH) encapsulation.

Only Kyber1024 *encapsulation* has two implementations. Everything else about the KEMs has one:

* Kyber1024 key generation (from a 64-byte seed) and decapsulation: OpenSSL's ML-KEM-1024
  through ``cryptography`` plus hashlib's SHAKE-256/SHA3 for the round-3 wrapping.
* ML-KEM-768 (SPQR) key generation and decapsulation: OpenSSL; its two-step encapsulation:
  always the numpy lattice core (OpenSSL has no split encapsulation).
"""

from __future__ import annotations

import enum

__all__ = ["KyberBackend"]


class KyberBackend(enum.Enum):
    """Who performs Kyber1024 encapsulation (:meth:`KyberPublicKey.encapsulate`).

    ``OPENSSL``
        The production route and the default: OpenSSL's ML-KEM-1024 encapsulation, which draws
        the 32-byte message ``m`` from OpenSSL's own CSPRNG (``cryptography`` offers no way to
        pass it in), then SHAKE-256 for the round-3 shared secret. Not reproducible.
    ``PORTABLE``
        The numpy lattice core (:mod:`securemsg.crypto._lattice`) running the round-3
        algorithm with ``m`` drawn from the caller's rng: reproducible for a deterministic
        rng, hence the route of known-answer vectors. Slower.

    Both produce ciphertexts any round-3 Kyber1024 implementation decapsulates; for the same
    ``m`` their lattice cores give the same bytes (tested).
    """

    OPENSSL = "openssl"
    PORTABLE = "portable"
