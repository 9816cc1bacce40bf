"""Batched GF(2^16) Lagrange evaluation for the SPQR erasure code (numpy kernel).

Theory of operation: :mod:`securemsg.protocol.spqr.erasure` evaluates 16 lane polynomials,
given by their values on n points, at many other points (parity chunks when encoding, missing
systematic chunks when decoding). In pure Python that is n x 16 table lookups per chunk, each a
Python-level operation on a large list of boxed ints (cache-unfriendly). Here the same
barycentric formula runs on ``uint16``/``int64`` arrays, for a whole batch of points at once:

    P_j(x) = sum_k EXP[ log l(x) + log w_k - LOG[x ^ s_k] + LOG[y_kj] ]   (sum is XOR)

Zero values are handled without masks: their log is mapped to a sentinel index into a tail of
the EXP table that holds zeros. This module lives in ``crypto/`` only because the layering rule
(tests/unit/test_layering.py) allows numpy nowhere else; it holds no key material and knows
nothing about SPQR. The field tables are passed in by the caller (``protocol/spqr/gf16.py``
owns the field definition), so there is one source of truth for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["Gf16Kernel"]

_ORDER = 0xFFFF


class Gf16Kernel:
    """GF(2^16) tables as arrays and the batched evaluation built on them."""

    __slots__ = ("_exp", "_log", "_zero_log")

    def __init__(self, exp: Sequence[int], log: Sequence[int]) -> None:
        """Build from the field's tables (``exp`` at least 2*ORDER long, ``log`` 65536 long)."""
        # EXP indices reached: lw (< ORDER) + LOG[y] (< ORDER) for y != 0, or lw + sentinel for 0.
        zero_log = 2 * _ORDER
        table = np.zeros(3 * _ORDER + 1, dtype=np.uint16)
        table[: 2 * _ORDER] = np.asarray(exp[: 2 * _ORDER], dtype=np.uint16)
        self._exp = table
        logs = np.asarray(log, dtype=np.int32)
        logs[0] = zero_log
        self._log = logs
        self._zero_log = zero_log

    def log_rows(self, payload: bytes) -> Any:
        """n x 16 array of LOG of the big-endian words of ``payload`` (sentinel for zero)."""
        words = np.frombuffer(payload, dtype=">u2").reshape(-1, 16)
        return self._log[words]

    def log_weights(self, xs: Sequence[int]) -> Any:
        """log of the barycentric weights 1 / prod_{m != s} (s ^ m) for distinct points xs."""
        s = np.asarray(xs, dtype=np.int32)
        d = self._log[s[:, None] ^ s[None, :]]
        np.fill_diagonal(d, 0)
        return (-d.sum(axis=1, dtype=np.int64)) % _ORDER

    def evaluate(self, xs: Sequence[int], logw: Any, logrows: Any, targets: Sequence[int]) -> bytes:
        """Chunks at ``targets`` (none of them in ``xs``), concatenated, 32 bytes each.

        Args:
            xs: the n distinct points the lanes are known at.
            logw: :meth:`log_weights` of ``xs`` (any int sequence/array of length n).
            logrows: :meth:`log_rows` of the n known chunks, in ``xs`` order.
            targets: points to evaluate at.
        """
        s = np.asarray(xs, dtype=np.int32)
        t = np.asarray(targets, dtype=np.int32)
        logd = self._log[s[:, None] ^ t[None, :]]  # n x B, never the zero sentinel
        logl = logd.sum(axis=0, dtype=np.int64)
        lw = (logl[None, :] + np.asarray(logw, dtype=np.int64)[:, None] - logd) % _ORDER
        # int32 indices (all < 3 * ORDER): half the memory traffic of int64 for the gather.
        # Layout n x B x 16: the XOR runs over the leading axis, on contiguous B x 16 slabs
        # viewed as uint64 (4 words at a time), ~8x faster than reducing a middle axis.
        terms = np.take(self._exp, lw.astype(np.int32)[:, :, None] + logrows[:, None, :])
        out = np.bitwise_xor.reduce(terms.view(np.uint64), axis=0).view(np.uint16)
        data: bytes = out.astype(">u2").tobytes()
        return data
