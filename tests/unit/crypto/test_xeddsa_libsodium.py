"""XEdDSA signing does its scalar arithmetic in libsodium and keeps no secret-derived module state.

The signature bytes are fixed by the known answers in ``test_xeddsa.py`` and the libsignal
interop run; here: the scalar operations go through libsodium's ``crypto_core_ed25519_scalar_*``,
agree with exact integer arithmetic on edge values, and the Edwards public point of a private
key lives on the key object (never in a module global, never in ``repr``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from ed25519_reference import L, xeddsa_sign

import securemsg.crypto.curve25519 as curve
from securemsg.crypto.curve25519 import KeyPair, PrivateKey
from securemsg.crypto.rng import DeterministicRng

_SCALAR_OPS = (
    "crypto_core_ed25519_scalar_reduce",
    "crypto_core_ed25519_scalar_mul",
    "crypto_core_ed25519_scalar_add",
)


class _Z:
    deterministic = True

    def __init__(self, z: bytes) -> None:
        self.z = z

    def random_bytes(self, n: int) -> bytes:
        return self.z[:n]


def test_signing_uses_libsodium_scalar_arithmetic(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: dict[str, int] = {}

    def spy(name: str, fn: Callable[..., bytes]) -> Callable[..., bytes]:
        def wrapped(*args: Any) -> bytes:
            calls[name] = calls.get(name, 0) + 1
            return fn(*args)

        return wrapped

    for name in _SCALAR_OPS:
        monkeypatch.setattr(curve, name, spy(name, getattr(curve, name)))
    key = PrivateKey.from_bytes(bytes(range(32)))
    sig = key.sign(b"message", _Z(bytes(64)))
    key.public_key().verify(b"message", sig)
    assert all(calls.get(name, 0) >= 1 for name in _SCALAR_OPS), calls


@pytest.mark.parametrize(
    "raw",
    [
        bytes(32),  # clamps to 2^254: the smallest clamped key
        b"\xff" * 32,  # clamps to the largest: 2^255 - 8
        L.to_bytes(32, "little"),
        (2 * L).to_bytes(32, "little"),
        bytes(range(32)),
    ],
)
@pytest.mark.parametrize("z", [bytes(64), b"\xff" * 64, bytes(range(64))])
def test_edge_keys_and_nonces_match_exact_integer_arithmetic(raw: bytes, z: bytes) -> None:
    message = b"edge" + raw[:4]
    key = PrivateKey.from_bytes(raw)
    assert key.sign(message, _Z(z)) == xeddsa_sign(key.to_bytes(), message, z)


def test_scalar_helpers_equal_integer_arithmetic_on_edge_values() -> None:
    edges = [0, 1, 2, L - 2, L - 1, L, L + 1, 2**252, 2**253 - 1, 2**256 - 1, 2**512 - 1]
    for x in edges:
        assert curve._reduce64(x.to_bytes(64, "little")) == (x % L).to_bytes(32, "little")
    reduced = [0, 1, 2, L - 2, L - 1, 2**252 - 1]
    for h in reduced:
        for a in reduced:
            for r in reduced:
                got = curve._mul_add(*(v.to_bytes(32, "little") for v in (h, a, r)))
                assert got == ((h * a + r) % L).to_bytes(32, "little")


def test_ed_public_point_is_on_the_key_object_not_in_module_globals() -> None:
    rng = DeterministicRng(b"no globals")
    pairs = [KeyPair.generate(rng) for _ in range(4)]
    points = []
    for pair in pairs:
        pair.private_key.sign(b"m", rng)
        a_enc = pair.private_key._ed_pub
        assert a_enc is not None and len(a_enc) == 32
        points.append(a_enc)
        assert a_enc.hex() not in repr(pair.private_key) and a_enc.hex() not in repr(pair)
    secrets = [p.private_key.to_bytes() for p in pairs]
    tags = [hashlib.sha256(s).digest() for s in secrets]
    needles = set(points) | set(secrets) | set(tags)
    for name, value in vars(curve).items():
        if isinstance(value, dict):
            held = _bytes_in(value) | _bytes_in(value.values())
            found = needles & held
            assert not found, f"curve.{name} holds key-derived bytes"


def _bytes_in(values: Any) -> set[bytes]:
    return {v for v in values if isinstance(v, bytes)}


def test_reloading_a_key_recomputes_the_same_point() -> None:
    key = PrivateKey.from_bytes(bytes(range(1, 33)))
    sig = key.sign(b"x", _Z(bytes(64)))
    again = PrivateKey.from_bytes(key.to_bytes())
    assert again._ed_pub is None
    assert again.sign(b"x", _Z(bytes(64))) == sig
    assert again._ed_pub == key._ed_pub


def test_a_zero_nonce_gives_the_identity_as_r() -> None:
    """libsodium refuses 0·B; a nonce r = 0 (probability 2^-252) must still sign as before."""
    assert curve._base_mult(bytes(32)) == b"\x01" + bytes(31)
