"""Curve25519 keys and X25519 agreement: parsing, clamping, agreement, canonical-key check."""

from __future__ import annotations

import pytest
from ed25519_reference import BASE, L, P, add, edwards_to_u, mul, small_order_points, x25519
from hypothesis import given, settings
from hypothesis import strategies as st

from securemsg.crypto.curve25519 import KeyPair, PrivateKey, PublicKey
from securemsg.crypto.rng import DeterministicRng
from securemsg.errors import DecodeError, InvalidKeyError

h = bytes.fromhex
seeds = st.binary(min_size=1, max_size=16)

# RFC 7748 section 6.1
RFC_ALICE = h("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
RFC_ALICE_PUB = h("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
RFC_BOB = h("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
RFC_BOB_PUB = h("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
RFC_SHARED = h("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")


def _u(n: int) -> bytes:
    return n.to_bytes(32, "little")


def test_rfc7748_agreement_vector() -> None:
    alice, bob = PrivateKey.from_bytes(RFC_ALICE), PrivateKey.from_bytes(RFC_BOB)
    assert alice.public_key().raw == RFC_ALICE_PUB
    assert bob.public_key().raw == RFC_BOB_PUB
    assert alice.agree(PublicKey.from_raw(RFC_BOB_PUB)) == RFC_SHARED
    assert bob.agree(PublicKey.from_raw(RFC_ALICE_PUB)) == RFC_SHARED


def test_libsignal_agreement_vector() -> None:
    # rust/core/src/curve/curve25519.rs test_agreement
    alice = PrivateKey.from_bytes(
        h("c806439dc9d2c476ffed8f2580c0888d58ab406bf7ae3698879021b96bb4bf59")
    )
    bob = PrivateKey.from_bytes(
        h("b03b34c33a1c44f225b662d2bf4859b8135411fa7b0386d45fb75dc5b91b4466")
    )
    alice_pub = h("1bb75966f2e93a3691dfff942bb2a466a1c08b8d78ca3f4d6df8b8bfa2e4ee28")
    bob_pub = h("653614993d2b15ee9e5fd3d86ce719ef4ec1daae1886a87b3f5fa9565a27a22f")
    shared = h("325f239328941ced6e673b86ba41017448e99b649a9c3806c1dd7ca4c477e629")
    assert alice.public_key().raw == alice_pub
    assert bob.public_key().raw == bob_pub
    assert alice.agree(PublicKey.from_raw(bob_pub)) == shared
    assert bob.agree(PublicKey.from_raw(alice_pub)) == shared


@settings(max_examples=50)
@given(seed=seeds)
def test_agreement_is_symmetric_and_matches_a_montgomery_ladder(seed: bytes) -> None:
    rng = DeterministicRng(seed)
    a, b = KeyPair.generate(rng), KeyPair.generate(rng)
    shared = a.private_key.agree(b.public_key)
    assert shared == b.private_key.agree(a.public_key)
    assert shared == x25519(a.private_key.to_bytes(), b.public_key.raw)
    assert a.public_key.raw == x25519(a.private_key.to_bytes(), _u(9))


def _small_order_us() -> list[bytes]:
    us = {_u(0), _u(1)}  # u = 0 (order 2), u = 1 (order 4, on the twist)
    for pt in small_order_points():
        if pt[1] != 1:  # the identity has no finite u
            us.add(edwards_to_u(pt))
    out = set(us)
    for u in us:
        n = int.from_bytes(u, "little")
        if n + P < 2**255:
            out.add(_u(n + P))  # non-canonical encoding of the same u (top bit is masked)
        out.add(_u(n | (1 << 255)))  # top bit is ignored
    return sorted(out)


@pytest.mark.parametrize("u", _small_order_us())
def test_agreement_with_a_small_order_point_is_rejected(u: bytes) -> None:
    key = PrivateKey.generate(DeterministicRng(b"small-order"))
    with pytest.raises(InvalidKeyError):
        key.agree(PublicKey.from_raw(u))


def test_public_key_parsing_accepts_type_5_and_tolerates_trailing_bytes() -> None:
    raw = bytes(range(1, 33))
    key = PublicKey.from_bytes(b"\x05" + raw)
    assert key.raw == raw
    assert key.to_bytes() == b"\x05" + raw
    assert PublicKey.from_bytes(b"\x05" + raw + b"trailing") == key
    assert PublicKey.from_raw(raw) == key
    assert hash(PublicKey.from_raw(raw)) == hash(key)
    assert key != PublicKey.from_raw(bytes(32))
    assert raw.hex() not in repr(key)


@pytest.mark.parametrize(
    "data",
    [b"", b"\x05", b"\x05" + bytes(31), b"\x08" + bytes(32), b"\x00" + bytes(32), bytes(33)],
)
def test_public_key_parsing_rejects_bad_type_or_length(data: bytes) -> None:
    with pytest.raises(InvalidKeyError):
        PublicKey.from_bytes(data)


@pytest.mark.parametrize("n", [0, 31, 33])
def test_public_key_from_raw_rejects_bad_length(n: int) -> None:
    with pytest.raises(InvalidKeyError):
        PublicKey.from_raw(bytes(n))


@settings(max_examples=200)
@given(
    data=st.one_of(st.binary(max_size=40), st.binary(min_size=32, max_size=32).map(b"\x05".__add__))
)
def test_public_key_from_arbitrary_bytes_parses_or_raises_typed_error(data: bytes) -> None:
    try:
        key = PublicKey.from_bytes(data)
    except (InvalidKeyError, DecodeError):
        return
    assert key.to_bytes() == data[:33]
    key.is_canonical()  # never raises


def test_private_key_is_clamped_on_load_and_hidden_in_repr() -> None:
    key = PrivateKey.from_bytes(b"\xff" * 32)
    assert key.to_bytes() == b"\xf8" + b"\xff" * 30 + b"\x7f"
    assert PrivateKey.from_bytes(key.to_bytes()) == key
    assert "ff" not in repr(key) and "ff" not in repr(KeyPair(key, key.public_key()))
    assert PrivateKey.from_bytes(bytes(32)).to_bytes() == bytes(31) + b"\x40"


@pytest.mark.parametrize("n", [0, 31, 33, 64])
def test_private_key_rejects_bad_length(n: int) -> None:
    with pytest.raises(InvalidKeyError):
        PrivateKey.from_bytes(bytes(n))


def test_key_generation_is_reproducible_with_a_deterministic_rng() -> None:
    a = KeyPair.generate(DeterministicRng(b"seed"))
    b = KeyPair.generate(DeterministicRng(b"seed"))
    assert a == b
    assert a.public_key == a.private_key.public_key()
    assert a != KeyPair.generate(DeterministicRng(b"other"))


@settings(max_examples=30)
@given(seed=seeds)
def test_generated_public_keys_are_canonical(seed: bytes) -> None:
    assert KeyPair.generate(DeterministicRng(seed)).public_key.is_canonical()


def test_is_canonical_rejects_out_of_range_small_order_torsion_and_twist() -> None:
    good = KeyPair.generate(DeterministicRng(b"c")).public_key.raw
    n = int.from_bytes(good, "little")
    assert PublicKey.from_raw(good).is_canonical()
    # top bit set: same point, but not the canonical encoding
    assert not PublicKey.from_raw(_u(n | (1 << 255))).is_canonical()
    # u >= p
    for big in (P, P + 1, P + 18, 2**255 - 1):
        assert not PublicKey.from_raw(_u(big)).is_canonical()
    # u = p - 1 = -1 is the exceptional point of the birational map
    assert not PublicKey.from_raw(_u(P - 1)).is_canonical()
    # small order
    for u in _small_order_us():
        assert not PublicKey.from_raw(u).is_canonical()
    # a valid point plus torsion: on the curve, canonical u, but not torsion-free
    a = int.from_bytes(PrivateKey.generate(DeterministicRng(b"t")).to_bytes(), "little") % L
    for t in small_order_points():
        if t[1] != 1:
            assert not PublicKey.from_raw(edwards_to_u(add(mul(a, BASE), t))).is_canonical()
    # u = 2 is on the twist: no Edwards point
    assert x25519(_u(9), _u(2)) and not PublicKey.from_raw(_u(2)).is_canonical()
