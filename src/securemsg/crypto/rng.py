"""Randomness as a parameter (sans-IO): every function that needs random bytes takes an ``rng``.

:class:`SystemRng` reads the operating system's CSPRNG. :class:`DeterministicRng` is an
expandable SHAKE-256 stream from a seed, **for known-answer vectors and tests only**: anything
encrypted with it is predictable by whoever knows the seed.
"""

from __future__ import annotations

import hashlib
import os
from typing import Protocol, runtime_checkable

from securemsg.crypto.backend import KyberBackend

__all__ = ["DeterministicRng", "Rng", "SystemRng"]


@runtime_checkable
class Rng(Protocol):
    """A source of random bytes."""

    #: True only for test/vector generators (the stream is reproducible from a seed).
    deterministic: bool

    #: Which implementation encapsulates to Kyber1024 keys with this rng (see
    #: :class:`~securemsg.crypto.backend.KyberBackend`); an explicit ``backend`` argument to
    #: ``KyberPublicKey.encapsulate`` wins. An rng without this attribute gets ``OPENSSL``.
    kyber_backend: KyberBackend

    def random_bytes(self, n: int) -> bytes:
        """Return ``n`` random bytes."""
        ...


class SystemRng:
    """The operating system's CSPRNG (``os.urandom``)."""

    __slots__ = ()
    deterministic = False
    kyber_backend = KyberBackend.OPENSSL

    def random_bytes(self, n: int) -> bytes:
        return os.urandom(n)


class DeterministicRng:
    """A reproducible byte stream from a seed. Tests and known-answer vectors only.

    The stream is SHAKE-256(seed || BE64(block)) for block = 0, 1, ..., 4096 bytes each, read
    in order, so the same seed and the same sequence of calls give the same bytes.

    ``kyber_backend`` picks the Kyber1024 encapsulation route for keys this rng encapsulates
    to. The default, ``PORTABLE``, takes the encapsulation randomness from this stream, so a
    whole run (vectors included) is reproducible. ``OPENSSL`` runs the production route:
    key generation still takes its seed from this stream (both routes share it), but OpenSSL
    draws each encapsulation's randomness itself, so Kyber ciphertexts and the secrets derived
    from them differ from run to run (this rng's stream does not: the OpenSSL route reads
    nothing from it).
    """

    __slots__ = ("_block", "_buffer", "_seed", "kyber_backend")
    deterministic = True
    _BLOCK = 4096

    def __init__(self, seed: bytes, *, kyber_backend: KyberBackend = KyberBackend.PORTABLE) -> None:
        self.kyber_backend = kyber_backend
        self._seed = bytes(seed)
        self._block = 0
        self._buffer = b""

    def random_bytes(self, n: int) -> bytes:
        while len(self._buffer) < n:
            data = self._seed + self._block.to_bytes(8, "big")
            self._buffer += hashlib.shake_256(data).digest(self._BLOCK)
            self._block += 1
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out
