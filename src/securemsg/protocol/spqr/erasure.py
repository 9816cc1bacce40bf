"""Systematic Reed-Solomon erasure code over GF(2^16), 32-byte chunks (SPQR ``polynomial.rs``).

Theory of operation: a payload of L bytes (L a multiple of 32) is n = L/32 rows of 16
big-endian 16-bit words. Lane j (0..15) is the polynomial P_j of degree < n through the points
(t, word j of row t), t = 0..n-1. Chunk i is (P_0(i), ..., P_15(i)) as BE16 words, so chunks
0..n-1 are the payload itself and i >= n are parity. Any n distinct chunk indices determine
the payload.

Evaluation uses the barycentric Lagrange form in the log domain: for points S,
``P(x) = l(x) * sum_s w_s * y_s / (x - s)`` with ``l(x) = prod (x - s)`` and
``w_s = 1 / prod_{m != s} (s - m)`` (minus is XOR). The weights for S = {0..n-1} are
precomputed for the payload sizes SPQR uses (n = 3, 5, 30, 36) and cached for others.

Speed: a parity chunk costs n x 16 field products. The encoder computes parity chunks in
batches of :data:`_BATCH` consecutive indices with the numpy kernel
(:mod:`securemsg.crypto._gf16_kernel`), kept in a :class:`_Parity` object shared by the
encoder's successors and memoised per payload in a small LRU (the payload is always data
that is sent on the wire: a header, an encapsulation key or a ciphertext), so a state that is
reloaded from bytes on every message does not recompute the batch. The decoder evaluates all
missing systematic chunks in one kernel call. :func:`_eval_rows` is the pure-Python reference
the tests compare against.

:class:`Encoder` and :class:`Decoder` are immutable: ``next_chunk`` and ``add`` return new
objects; adding a chunk is O(1), interpolation only happens in :meth:`Decoder.decode`.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from contextlib import suppress
from typing import Final

from securemsg.crypto._gf16_kernel import Gf16Kernel
from securemsg.errors import InternalError
from securemsg.protocol.spqr.gf16 import EXP, LOG, ORDER

__all__ = ["CHUNK_LENGTH", "Decoder", "Encoder", "evaluate"]

CHUNK_LENGTH: Final = 32
_WORDS: Final = struct.Struct(">16H")
_EMPTY: Final[Mapping[int, bytes]] = {}
_KERNEL: Final = Gf16Kernel(EXP, LOG)
_BATCH: Final = 64  # parity chunks computed per kernel call (~2 us each amortised)
_LRU_SIZE: Final = 16


def _log_weights(xs: Sequence[int]) -> list[int]:
    """log of the barycentric weights w_s = 1 / prod_{m != s} (s ^ m)."""
    out = []
    for s in xs:
        acc = 0
        for m in xs:
            if m != s:
                acc += LOG[s ^ m]
        out.append((-acc) % ORDER)
    return out


_SYSTEMATIC_WEIGHTS: dict[int, list[int]] = {n: _log_weights(range(n)) for n in (3, 5, 30, 36)}


def _systematic_weights(n: int) -> list[int]:
    w = _SYSTEMATIC_WEIGHTS.get(n)
    if w is None:
        w = _log_weights(range(n))
        _SYSTEMATIC_WEIGHTS[n] = w
    return w


def _eval_rows(
    xs: Sequence[int], logw: Sequence[int], rows: Sequence[Sequence[int]], x: int
) -> tuple[int, ...]:
    """Evaluate the 16 lane polynomials through (xs[k], rows[k][j]) at x (x not in xs)."""
    exp = EXP
    log = LOG
    logl = 0
    for s in xs:
        logl += log[x ^ s]
    out = [0] * 16
    for k, s in enumerate(xs):
        lw = (logl + logw[k] - log[x ^ s]) % ORDER
        row = rows[k]
        for j in range(16):
            y = row[j]
            if y:
                out[j] ^= exp[lw + log[y]]
    return tuple(out)


def evaluate(payload: bytes, x: int) -> bytes:
    """Chunk ``x`` (0..65535) of ``payload`` (reference entry point for tests)."""
    return Encoder(payload, x).next_chunk()[2]


class _Parity:
    """Parity chunks of one payload, computed a batch at a time (a memo shared by encoders).

    The current batch is one ``(start, stop, block)`` tuple replaced in a single assignment, so
    a reader never pairs one batch's bounds with another batch's bytes.
    """

    __slots__ = ("_batch", "_logrows", "n")

    def __init__(self, payload: bytes) -> None:
        self.n = len(payload) // CHUNK_LENGTH
        self._logrows = _KERNEL.log_rows(payload)
        self._batch: tuple[int, int, bytes] = (0, 0, b"")

    def chunk(self, x: int) -> bytes:
        """Chunk ``x`` (n <= x <= 65535)."""
        start, stop, block = self._batch
        if not start <= x < stop:
            n = self.n
            start, stop = x, min(x + _BATCH, 0x10000)
            block = _KERNEL.evaluate(
                range(n), _systematic_weights(n), self._logrows, range(start, stop)
            )
            self._batch = (start, stop, block)
        off = (x - start) * CHUNK_LENGTH
        return block[off : off + CHUNK_LENGTH]


_PARITY_LRU: dict[bytes, _Parity] = {}
_object_new = object.__new__


def _parity_for(payload: bytes) -> _Parity:
    p = _PARITY_LRU.pop(payload, None)
    if p is None:
        p = _Parity(payload)
        if len(_PARITY_LRU) >= _LRU_SIZE:
            with suppress(KeyError, RuntimeError, StopIteration):  # evicted by another thread
                del _PARITY_LRU[next(iter(_PARITY_LRU))]
    _PARITY_LRU[payload] = p  # most recently used last
    return p


class Encoder:
    """Chunks of one payload, in counter order (immutable).

    Attributes:
        payload: the bytes being sent.
        next_index: counter of the next chunk; the wire index is ``next_index % 65536``.
    """

    __slots__ = ("_parity", "n", "next_index", "payload")

    payload: bytes
    next_index: int
    n: int
    _parity: _Parity | None

    def __init__(
        self,
        payload: bytes,
        next_index: int = 0,
        _parity: _Parity | None = None,
    ) -> None:
        if not payload or len(payload) % CHUNK_LENGTH:
            raise InternalError("erasure payload must be a non-empty multiple of 32 bytes")
        self.payload = payload
        self.next_index = next_index
        self.n = len(payload) // CHUNK_LENGTH
        self._parity = _parity

    def __repr__(self) -> str:
        return f"Encoder(n={self.n}, next_index={self.next_index})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Encoder):
            return NotImplemented
        return self.payload == other.payload and self.next_index == other.next_index

    __hash__ = None  # type: ignore[assignment]

    def next_chunk(self) -> tuple[Encoder, int, bytes]:
        """Returns (advanced encoder, wire chunk index, 32 chunk bytes)."""
        counter = self.next_index
        x = counter & 0xFFFF
        parity = self._parity
        if x < self.n:
            data = self.payload[x * CHUNK_LENGTH : (x + 1) * CHUNK_LENGTH]
        else:
            if parity is None:
                parity = _parity_for(self.payload)
            data = parity.chunk(x)
        # The successor is built without __init__: its payload was validated when this
        # encoder was made (one encoder per sent message, so this is on the hot path).
        succ: Encoder = _object_new(Encoder)
        succ.payload = self.payload
        succ.next_index = (counter + 1) & 0xFFFFFFFF
        succ.n = self.n
        succ._parity = parity
        return succ, x, data


class Decoder:
    """Collects chunks of one payload of known length (immutable).

    Attributes:
        length: payload bytes expected.
        chunks: chunk index -> 32 bytes, as stored by the spqr rules (see :meth:`add`).
    """

    __slots__ = ("chunks", "length", "n")

    length: int
    n: int
    chunks: Mapping[int, bytes]

    def __init__(self, length: int, chunks: Mapping[int, bytes] = _EMPTY) -> None:
        if length <= 0 or length % CHUNK_LENGTH:
            raise InternalError("erasure payload must be a non-empty multiple of 32 bytes")
        self.length = length
        self.n = length // CHUNK_LENGTH
        self.chunks = chunks

    def __repr__(self) -> str:
        return f"Decoder(n={self.n}, have={len(self.chunks)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Decoder):
            return NotImplemented
        return self.length == other.length and dict(self.chunks) == dict(other.chunks)

    __hash__ = None  # type: ignore[assignment]

    @property
    def complete(self) -> bool:
        return len(self.chunks) >= self.n

    def add(self, index: int, data: bytes) -> Decoder:
        """Store chunk ``index`` if it is systematic or fewer than n chunks are held
        (a repeated index replaces the stored data)."""
        if index < self.n or len(self.chunks) < self.n:
            chunks = dict(self.chunks)
            chunks[index] = data
            return Decoder(self.length, chunks)
        return self

    def decode(self) -> bytes | None:
        """The payload once n distinct chunks are held, else None."""
        n = self.n
        chunks = self.chunks
        if len(chunks) < n:
            return None
        missing = [t for t in range(n) if t not in chunks]
        if not missing:
            return b"".join(chunks[t] for t in range(n))
        xs = sorted(chunks)[:n]
        logrows = _KERNEL.log_rows(b"".join([chunks[x] for x in xs]))
        logw = _KERNEL.log_weights(xs)
        block = _KERNEL.evaluate(xs, logw, logrows, missing)
        found = {t: block[k * CHUNK_LENGTH : (k + 1) * CHUNK_LENGTH] for k, t in enumerate(missing)}
        return b"".join([chunks[t] if t in chunks else found[t] for t in range(n)])
