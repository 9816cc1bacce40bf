"""The shared module-lattice core (K-PKE of FIPS 203 / Kyber round 3), vectorised with numpy.

Theory of operation
-------------------
Kyber round 3 and ML-KEM share the IND-CPA layer: polynomials in R_q = Z_q[X]/(X^256 + 1) with
q = 3329, the matrix sampled from SHAKE128(rho || j || i), centred-binomial noise from SHAKE256,
an NTT, compression and ByteEncode. Only the hashing around it differs (see ``kyber1024`` and
``mlkem768``), so this module holds just the lattice arithmetic.

Cost here is Python -> numpy call overhead, not arithmetic, so everything is written to touch all
polynomials of an operation at once with as few numpy calls as possible:

* **Split layout.** A polynomial is kept as an array ``(2, 128)``: row 0 the even coefficients,
  row 1 the odd ones; a vector of ``k`` polynomials is ``(k, 2, 128)``. Kyber's NTT is
  incomplete: ``NTT(f)`` holds ``f mod (X^2 - g_i)`` for the 128 roots ``g_i = zeta^(2*br7(i)+1)``
  of ``X^128 + 1``, i.e. ``(f_even(g_i), f_odd(g_i))``. In the split layout the NTT is therefore
  one 128x128 Vandermonde matrix applied to every row at once, and the inverse NTT is its inverse
  ``W[i, n] = 128^-1 * g_i^-n``. Both are single float64 matrix products (all intermediate values
  are integers below 2^53, so float64 is exact), reduced mod q afterwards (:func:`reduce`).
* **Base multiplication** (products in the NTT domain) of a k x k matrix with a vector is one
  broadcast multiply and one sum over a stacked copy of the vector ``[y_e, g*y_o | y_o, y_e]``.
* **SampleNTT** parses a generous SHAKE128 output for every matrix entry at once: each 3-byte
  group is read through an unaligned strided ``uint32`` view and its two 12-bit halves are
  moved into the two ``uint16`` halves of a word, and the first 256 accepted values of each
  row are picked with a cumulative sum. If some row is short (probability far below 2^-100
  with 4 blocks per entry), the whole matrix is re-sampled with more output.
* **CBD_2** adds adjacent bit pairs of every noise byte with shifts and masks (no table).
* **Reduction mod q and Compress_d** multiply and shift (Barrett) instead of dividing by q.
* **ByteEncode_d** packs g consecutive values into one int64 word with two tiny matrix products
  and keeps the word's low bytes (d = 11 falls back to single bits and ``packbits``);
  ByteDecode_12 is the SampleNTT parser.
* numpy is slow on arrays whose innermost axis is tiny (length 2), so layouts and broadcasts
  are arranged to keep a long axis innermost.

What runs on secrets here (SPQR's ML-KEM-768 encapsulation, the portable Kyber1024 route,
``KyberKeyPair.secret_key_bytes``) is written without secret-dependent indexing, branches or
divisions: the noise comes from SHAKE-256 (hashlib, i.e. OpenSSL), CBD_2 is shifts, masks and
adds, the NTT and base products are float64 matrix products and element-wise multiplies of
integers (exact, never subnormal), reduction mod q and Compress_d are multiply-and-shift, and
Decompress_1 is a multiply. Every numpy call works on whole arrays whose shapes depend only on
the parameter set, so the sequence of operations does not depend on secret values. That is a
property of this code, not a constant-time guarantee: numpy and BLAS make no timing promises
(their kernels may pick SIMD or scalar paths by alignment and size, never by value as far as
we know), and CPython allocates and frees the intermediate arrays. SampleNTT's rejection
sampling and ByteDecode_12 work on public data (rho, the encapsulation key) and do branch.
Inputs here are assumed well-formed: length and range checks belong to the callers.
"""

from __future__ import annotations

import hashlib
from typing import Final, cast

import numpy as np
import numpy.typing as npt

__all__ = [
    "Q",
    "REDUCE_BOUND",
    "IntArray",
    "UInt16Array",
    "FloatArray",
    "sample_matrix",
    "sample_noise",
    "ntt",
    "intt",
    "reduce",
    "stack_for_mul",
    "matvec",
    "decode12",
    "encode_bits",
    "cbd2",
    "compress",
    "decompress1",
    "to_natural",
    "from_natural",
    "encrypt_u",
    "encrypt_v",
]

IntArray = npt.NDArray[np.int64]
UInt16Array = npt.NDArray[np.uint16]
FloatArray = npt.NDArray[np.float64]

Q: Final = 3329
_ZETA: Final = 17
_N: Final = 256
_HALF: Final = 128
_BLOCK: Final = 168  # SHAKE128 rate
_SAMPLE_BYTES: Final = 4 * _BLOCK  # 224 triples -> 448 candidates per entry (need 256)


def _bitrev7(i: int) -> int:
    return int(f"{i:07b}"[::-1], 2)


def _tables() -> tuple[FloatArray, FloatArray, FloatArray]:
    gammas = [pow(_ZETA, 2 * _bitrev7(i) + 1, Q) for i in range(_HALF)]
    g = np.array(gammas, dtype=np.int64)
    g_inv = np.array([pow(x, Q - 2, Q) for x in gammas], dtype=np.int64)
    # V[n, i] = g_i^n ; W[i, n] = 128^-1 * g_i^-n  (so that f_hat = f @ V, f = f_hat @ W).
    v = np.empty((_HALF, _HALF), dtype=np.int64)
    w = np.empty((_HALF, _HALF), dtype=np.int64)
    row = np.ones(_HALF, dtype=np.int64)
    col = np.full(_HALF, pow(_HALF, Q - 2, Q), dtype=np.int64)
    for n in range(_HALF):
        v[n] = row
        w[:, n] = col
        row = row * g % Q
        col = col * g_inv % Q
    return v.astype(np.float64), w.astype(np.float64), g.astype(np.float64)


_V, _W, _GAMMA = _tables()
_PICK: Final = np.array([[0, 1], [1, 0]], dtype=np.intp)
_FACTOR: Final = np.stack([np.stack([np.ones(_HALF), _GAMMA]), np.ones((2, _HALF))])[:, :, None]


# --- arithmetic on secrets: no table indexed by data, no division ---------------------------
#
# Barrett-style division by q. For 0 <= y < _DIV_Q_LIMIT, floor(y / q) == (y * _DIV_Q_M) >> 43
# with _DIV_Q_M = ceil(2^43 / q): writing e = _DIV_Q_M * q - 2^43 (= 2113),
# y * _DIV_Q_M / 2^43 = y / q + y * e / (q * 2^43), and y * e < 2^43 makes the added term
# smaller than 1/q, which cannot carry y / q (a multiple of 1/q) past the next integer. So the
# quotient is exact for y < 2^43 / e (~2^31.95); y * _DIV_Q_M must also fit in int64, which
# bounds y by 2^63 / _DIV_Q_M (~2^31.7): _DIV_Q_LIMIT is the smaller of the two (> 2^31.6).
_DIV_Q_SHIFT: Final = 43
_DIV_Q_M: Final = -(-(1 << _DIV_Q_SHIFT) // Q)  # 2642262849
_DIV_Q_LIMIT: Final = min(
    (1 << _DIV_Q_SHIFT) // (_DIV_Q_M * Q - (1 << _DIV_Q_SHIFT)), ((1 << 63) - 1) // _DIV_Q_M
)

#: :func:`reduce` is exact for integer-valued inputs with ``|x| < REDUCE_BOUND``. Every caller
#: stays far below: the largest inputs are unreduced :func:`matvec` sums, ``< 2k * q^3 < 2^39``.
REDUCE_BOUND: Final = 1 << 40
_FOLD_BITS: Final = 24
_FOLD_MASK: Final = (1 << _FOLD_BITS) - 1
_FOLD_MUL: Final = (1 << _FOLD_BITS) % Q  # 2^24 = 2385 (mod q)
_REDUCE_OFFSET: Final = -(-REDUCE_BOUND // Q) * Q  # a multiple of q >= 2^40


# numpy scalars of the operand dtype: binary operations with them skip the conversion and
# type resolution a Python int costs on every call.
_I_DIV_Q_M: Final = np.int64(_DIV_Q_M)
_I_DIV_Q_SHIFT: Final = np.int64(_DIV_Q_SHIFT)
_I_Q: Final = np.int64(Q)
_I_HALF_Q: Final = np.int64(Q // 2)
_I_REDUCE_OFFSET: Final = np.int64(_REDUCE_OFFSET)
_I_FOLD_BITS: Final = np.int64(_FOLD_BITS)
_I_FOLD_MASK: Final = np.int64(_FOLD_MASK)
_I_FOLD_MUL: Final = np.int64(_FOLD_MUL)
_U8: Final = {n: np.uint8(n) for n in (1, 2, 3, 4, 6, 0x55)}


def _div_q(y: IntArray) -> IntArray:
    """``floor(y / q)`` for int64 ``0 <= y < _DIV_Q_LIMIT`` (> 2^31) by a multiply and a shift."""
    out: IntArray = y * _I_DIV_Q_M
    out >>= _I_DIV_Q_SHIFT
    return out


def cbd2(octets: npt.NDArray[np.uint8]) -> FloatArray:
    """SamplePolyCBD_2 (FIPS 203 Algorithm 8) of (count, 128) bytes -> (count, 2, 128).

    Byte ``j`` gives coefficients ``2j`` (low nibble) and ``2j+1`` (high nibble), each
    ``b0 + b1 - b2 - b3`` of its nibble's bits. Bit operations on whole arrays: adding the bits
    of adjacent pairs (``(x & 0x55) + ((x >> 1) & 0x55)``) leaves the four 2-bit pair sums in
    place, and each coefficient is the difference of two of them. No table, no branch.
    """
    u1, u2, u3, u4, u6, u55 = (_U8[n] for n in (1, 2, 3, 4, 6, 0x55))
    pairs = octets >> u1
    pairs &= u55
    pairs += octets & u55  # each 2-bit field: a pair's bit count (0..2); no carries
    out = np.empty((octets.shape[0], 2, _HALF), dtype=np.float64)
    # Masked fields are <= 3, so their int8 views are exact and the differences fit.
    even_plus = (pairs & u3).view(np.int8)
    even_minus = ((pairs >> u2) & u3).view(np.int8)
    np.subtract(even_plus, even_minus, out=out[:, 0], casting="unsafe")
    odd_plus = ((pairs >> u4) & u3).view(np.int8)
    odd_minus = (pairs >> u6).view(np.int8)
    np.subtract(odd_plus, odd_minus, out=out[:, 1], casting="unsafe")
    return out


_LOW12: Final = np.uint32(0x00000FFF)
_HIGH12: Final = np.uint32(0x0FFF0000)
_SHIFT4: Final = np.uint32(4)
_BIT_SHIFTS: Final = {d: np.arange(d, dtype=np.int64) for d in (11,)}
_BYTE_SHIFTS: Final = np.arange(8, dtype=np.int64)


def _parse12(buf: bytes, count: int) -> UInt16Array:
    """The first ``2 * count`` 12-bit little-endian values of ``buf`` (``3 * count + 1`` bytes).

    Each 3-byte group is read as an unaligned little-endian uint32 (hence the one spare byte);
    its two 12-bit halves are moved into the two uint16 halves of a word, so that viewing the
    words as uint16 yields the values in order.
    """
    x = np.ndarray((count,), dtype="<u4", buffer=buf, strides=(3,)).copy()
    words = (x & _LOW12) | ((x << _SHIFT4) & _HIGH12)
    return words.view("<u2")


def sample_matrix(rho: bytes, k: int, transpose: bool) -> UInt16Array:
    """The matrix A_hat (or its transpose) in the NTT domain, shape (k, k, 2, 128).

    Entry [i][j] of A_hat is SampleNTT(rho || j || i); with ``transpose`` entry [i][j] is
    SampleNTT(rho || i || j), i.e. the matrix used by encryption.
    """
    rows = k * k
    size = _SAMPLE_BYTES
    while True:
        if transpose:
            seeds = [rho + bytes((i, j)) for i in range(k) for j in range(k)]
        else:
            seeds = [rho + bytes((j, i)) for i in range(k) for j in range(k)]
        seeds.append(b"\0")  # spare byte for the last unaligned 4-byte read
        buf = b"".join([hashlib.shake_128(s).digest(size) for s in seeds[:-1]] + seeds[-1:])
        cand = _parse12(buf, rows * size // 3).reshape(rows, -1)
        ok = cand < Q
        picked = cand[ok & (ok.cumsum(axis=1, dtype=np.int32) <= _N)]
        if picked.size == rows * _N:
            out: UInt16Array = picked.reshape(k, k, _HALF, 2).transpose(0, 1, 3, 2)
            return out
        size += 2 * _BLOCK  # astronomically unlikely with the default size


def sample_noise(seed: bytes, first: int, count: int) -> FloatArray:
    """CBD_2 polynomials from PRF(seed, first), ..., PRF(seed, first+count-1): (count, 2, 128)."""
    buf = b"".join(
        [hashlib.shake_256(seed + bytes((first + n,))).digest(128) for n in range(count)]
    )
    return cbd2(np.frombuffer(buf, dtype=np.uint8).reshape(count, _HALF))


def ntt(x: FloatArray | IntArray) -> IntArray:
    """NTT of (..., 2, 128) polynomials, reduced to [0, q). Contiguous input is fastest."""
    return reduce((x.reshape(-1, _HALF) @ _V).reshape(x.shape))


def intt(x: FloatArray | IntArray) -> FloatArray:
    """Inverse NTT of reduced (..., 2, 128) NTT-domain values (result NOT reduced)."""
    out = x.reshape(-1, _HALF) @ _W
    return cast(FloatArray, out.reshape(x.shape))


def reduce(x: FloatArray | IntArray) -> IntArray:
    """Integer-valued array with ``|x| < REDUCE_BOUND`` -> int64 in [0, q), without division.

    An offset (a multiple of q) makes ``x`` non-negative (below 2^41 + q), one fold
    ``y = hi * 2^24 + lo -> hi * (2^24 mod q) + lo`` brings it below
    ``(2^17 + 1) * 2385 + 2^24 < 2^29``, and :func:`_div_q` removes the remaining multiples of q.
    """
    y: IntArray = x.astype(np.int64)
    y += _I_REDUCE_OFFSET
    hi = y >> _I_FOLD_BITS
    hi *= _I_FOLD_MUL
    y &= _I_FOLD_MASK
    y += hi
    quotient = _div_q(y)
    quotient *= _I_Q
    y -= quotient
    return y


def stack_for_mul(y_hat: IntArray) -> FloatArray:
    """Precompute the operand of :func:`matvec` from an NTT-domain vector (k, 2, 128).

    Returns (2[out], 2[a], k, 128) with [out][a] = [[y_e, g*y_o], [y_o, y_e]]: the even output
    coefficient of a base product is ``a_e*y_e + a_o*g*y_o``, the odd one ``a_e*y_o + a_o*y_e``.
    """
    picked = np.take(y_hat.transpose(1, 0, 2), _PICK, axis=0)
    return cast(FloatArray, picked * _FACTOR)


def matvec(mat: UInt16Array | IntArray, stacked: FloatArray) -> FloatArray:
    """sum_j mat[i][j] o y[j] in the NTT domain (unreduced but exact): (rows, 2, 128).

    ``mat`` is (rows, k, 2, 128) with values in [0, q); ``stacked`` from :func:`stack_for_mul`.
    Values stay below 2k * q^3 < 2^53, so float64 is exact.
    """
    rows = mat.shape[0]
    prod = mat.transpose(0, 2, 1, 3)[:, None] * stacked
    return cast(FloatArray, prod.reshape(rows, 2, -1, _HALF).sum(axis=2))


def decode12(data: bytes, count: int) -> UInt16Array:
    """ByteDecode_12 of ``data`` into ``count`` polynomials (count, 2, 128); values may be >= q."""
    vals = _parse12(data + b"\0", len(data) // 3)
    out: UInt16Array = vals.reshape(count, _HALF, 2).transpose(0, 2, 1)
    return out


def to_natural(x: IntArray) -> IntArray:
    """(..., 2, 128) split layout -> (..., 256) natural coefficient order (a copy)."""
    out: IntArray = np.ascontiguousarray(np.swapaxes(x, -1, -2)).reshape(*x.shape[:-2], _N)
    return out


def from_natural(x: IntArray) -> IntArray:
    """(..., 256) natural order -> (..., 2, 128) split layout (a view)."""
    out: IntArray = np.swapaxes(x.reshape(*x.shape[:-1], _HALF, 2), -1, -2)
    return out


def _word_packer(d: int) -> tuple[int, int, IntArray, IntArray]:
    """Group size g (values per word), bytes per group, weights for even/odd values."""
    g = next(g for g in (2, 4, 8) if (g * d) % 8 == 0)
    weights = np.array([1 << (d * i) for i in range(g)], dtype=np.int64)
    return g, g * d // 8, weights[0::2], weights[1::2]


_PACKERS: Final = {d: _word_packer(d) for d in (1, 4, 5, 10, 12)}


def encode_bits(x: IntArray, d: int) -> bytes:
    """ByteEncode_d of split-layout values in [0, 2^d): polynomials in order, natural order.

    For d in {1, 4, 5, 10, 12} every group of g consecutive coefficients (g*d <= 64 bits, a
    whole number of bytes) is combined into one little-endian int64 word by two small matrix
    products (even and odd coefficients); the low bytes of the words are the encoding.
    Other d (11) go through single bits and ``packbits``.
    """
    packer = _PACKERS.get(d)
    if packer is None:
        nat = to_natural(x).reshape(-1)
        bits = ((nat >> _BIT_SHIFTS[d][:, None]) & 1).astype(np.uint8)
        return np.packbits(bits.T, bitorder="little").tobytes()
    g, nbytes, w_even, w_odd = packer
    h = g // 2
    words = x[..., 0, :].reshape(-1, h) @ w_even + x[..., 1, :].reshape(-1, h) @ w_odd
    return words.astype("<i8").view(np.uint8).reshape(-1, 8)[:, :nbytes].tobytes()


def compress(x: IntArray, d: int) -> IntArray:
    """Compress_d of values in [0, q), d <= 11: round(2^d / q * x) mod 2^d.

    ``round(2^d x / q) = floor((2^d x + (q-1)/2) / q)`` (q is odd, so no ties), and the
    dividend is below ``2^11 * q + q < 2^23``, inside :func:`_div_q`'s exact range: one
    multiply and one shift instead of a division by q (whose time depends on the dividend).
    """
    y = x << np.int64(d)
    y += _I_HALF_Q
    out = _div_q(y)
    out &= np.int64((1 << d) - 1)
    return out


def decompress1(m: bytes) -> IntArray:
    """Decompress_1(ByteDecode_1(m)) of a 32-byte message, split layout (2, 128)."""
    # Shifts and masks: numpy's unpackbits reads a table indexed by the (secret) byte.
    octets = np.frombuffer(m, dtype=np.uint8).astype(np.int64)
    bits = (octets[:, None] >> _BYTE_SHIFTS) & 1
    out: IntArray = bits.reshape(_HALF, 2).T * ((Q + 1) // 2)
    return out


def encrypt_u(
    rho: bytes, r: bytes, k: int, du: int
) -> tuple[bytes, IntArray, FloatArray, FloatArray]:
    """First half of K-PKE.Encrypt: everything that needs only rho and the coins r.

    Returns ``(c1, y_hat, e2, stacked)``: c1 = ByteEncode_du(Compress_du(u)),
    y_hat = NTT(y) reduced (k, 2, 128), e2 (2, 128) in [-2, 2], and the
    :func:`stack_for_mul` form of y_hat for :func:`encrypt_v`.
    """
    a_t = sample_matrix(rho, k, transpose=True)
    noise = sample_noise(r, 0, 2 * k + 1)  # y, e1, e2 (contiguous, so y is too)
    y_hat = ntt(noise[:k])
    stacked = stack_for_mul(y_hat)
    u = reduce(intt(reduce(matvec(a_t, stacked))) + noise[k : 2 * k])
    return encode_bits(compress(u, du), du), y_hat, noise[2 * k], stacked


def encrypt_v(
    t_hat: UInt16Array | IntArray, stacked: FloatArray, e2: FloatArray | IntArray, m: bytes, dv: int
) -> bytes:
    """Second half of K-PKE.Encrypt: c2 = ByteEncode_dv(Compress_dv(v)) from t_hat (k, 2, 128)."""
    acc = matvec(t_hat[None], stacked)[0]
    v = reduce(intt(reduce(acc)) + e2 + decompress1(m))
    return encode_bits(compress(v, dv), dv)
