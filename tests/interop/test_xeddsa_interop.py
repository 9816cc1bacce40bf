"""XEdDSA signatures agree between securemsg and libsignal, in both directions.

Each side verifies >= 1000 random signatures made by the other, and both give the same verdict on
mutated signatures. libsignal's verifier is the reference: it reduces ``s`` mod L and only
rejects when one of the top three bits of ``s`` is set, so ``s + L`` (which stays below 2^253 for
almost every ``s``) is ACCEPTED by libsignal 0.103.0 while ``s + 2L`` is rejected. securemsg must
give the same verdicts, otherwise a signature one side accepts would be refused by the other.
"""

from __future__ import annotations

import random

import pytest
from peer_client import LibsignalPeer

from securemsg.crypto.curve25519 import PrivateKey, PublicKey
from securemsg.crypto.rng import DeterministicRng
from securemsg.errors import InvalidSignatureError

pytestmark = pytest.mark.interop

N_SIGNATURES = 1000
N_NEGATIVE = 150  # signatures per direction run through every mutation below
L = 2**252 + 27742317777372353535851937790883648493


def securemsg_verifies(public: bytes, message: bytes, signature: bytes) -> bool:
    """securemsg's verdict; anything but InvalidSignatureError escaping is a bug."""
    try:
        PublicKey.from_bytes(public).verify(message, signature)
    except InvalidSignatureError:
        return False
    return True


def random_message(rnd: random.Random) -> bytes:
    return rnd.randbytes(rnd.choice([0, 1, 32, 33, rnd.randrange(0, 300)]))


def _s_and_sign_bit(signature: bytes) -> tuple[int, int]:
    s = int.from_bytes(signature[32:], "little") & ((1 << 255) - 1)
    return s, signature[63] & 0x80


def _with_s(signature: bytes, s: int, sign_bit: int) -> bytes:
    encoded = bytearray(s.to_bytes(32, "little"))
    encoded[31] = (encoded[31] & 0x7F) | sign_bit
    return signature[:32] + bytes(encoded)


def flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


MUTATIONS = (
    "flipped bit in R",
    "flipped bit in s",
    "flipped sign bit",
    "flipped bit in message",
    "extended message",
    "wrong public key",
    "s + 2L (bits above 2^253)",
    "all-zero signature",
)


def mutate(
    name: str, rnd: random.Random, pub: bytes, msg: bytes, sig: bytes, other_pub: bytes
) -> tuple[bytes, bytes, bytes]:
    """Applies one of MUTATIONS; every one must make both implementations reject."""
    match name:
        case "flipped bit in R":
            return pub, msg, flip_bit(sig, rnd.randrange(0, 256))
        case "flipped bit in s":  # the 255 bits of s, not the sign bit
            return pub, msg, flip_bit(sig, 256 + rnd.randrange(0, 255))
        case "flipped sign bit":
            return pub, msg, flip_bit(sig, 511)
        case "flipped bit in message":
            return pub, flip_bit(msg, rnd.randrange(0, 8 * len(msg))) if msg else b"\x00", sig
        case "extended message":
            return pub, msg + b"\x00", sig
        case "wrong public key":
            return other_pub, msg, sig
        case "s + 2L (bits above 2^253)":
            s, sign_bit = _s_and_sign_bit(sig)
            return pub, msg, _with_s(sig, s + 2 * L, sign_bit)
        case "all-zero signature":
            return pub, msg, bytes(64)
    raise AssertionError(name)


def _assert_both_reject_mutations(
    peer: LibsignalPeer,
    signed: list[tuple[bytes, bytes, bytes]],
    other_public: bytes,
    seed: int,
) -> None:
    rnd = random.Random(seed)
    cases: list[tuple[str, bytes, bytes, bytes]] = []
    for pub, msg, sig in signed:
        for name in MUTATIONS:
            cases.append((name, *mutate(name, rnd, pub, msg, sig, other_public)))
    libsignal = peer.verify_many([(p, m, s) for _, p, m, s in cases])
    for (name, pub, msg, sig), lib_ok in zip(cases, libsignal, strict=True):
        assert not lib_ok, f"libsignal accepted a signature with {name}"
        assert not securemsg_verifies(pub, msg, sig), f"securemsg accepted a signature with {name}"


def _assert_s_plus_l_verdicts_agree(
    peer: LibsignalPeer, signed: list[tuple[bytes, bytes, bytes]]
) -> None:
    cases = []
    for pub, msg, sig in signed:
        s, sign_bit = _s_and_sign_bit(sig)
        cases.append((pub, msg, _with_s(sig, s + L, sign_bit), s + L < 2**253))
    libsignal = peer.verify_many([(p, m, s) for p, m, s, _ in cases])
    for (pub, msg, sig, below_2_253), lib_ok in zip(cases, libsignal, strict=True):
        # The fact this test documents: libsignal reduces s mod L.
        assert lib_ok == below_2_253
        assert securemsg_verifies(pub, msg, sig) == lib_ok, (
            "securemsg and libsignal disagree on a non-canonical s = s + L "
            f"(libsignal {'accepts' if lib_ok else 'rejects'} it)"
        )


@pytest.fixture(scope="module")
def securemsg_signed() -> list[tuple[bytes, bytes, bytes]]:
    """N_SIGNATURES (public, message, signature) made by securemsg, each with a fresh key."""
    rng = DeterministicRng(b"xeddsa-interop/securemsg")
    rnd = random.Random(1)
    out = []
    for _ in range(N_SIGNATURES):
        key = PrivateKey.generate(rng)
        message = random_message(rnd)
        out.append((key.public_key().to_bytes(), message, key.sign(message, rng)))
    return out


@pytest.fixture(scope="module")
def libsignal_signed(libsignal_peer: LibsignalPeer) -> list[tuple[bytes, bytes, bytes, bytes]]:
    """N_SIGNATURES (public, private, message, signature) made by libsignal."""
    rnd = random.Random(2)
    keys = libsignal_peer.generate_keypairs(N_SIGNATURES)
    messages = [random_message(rnd) for _ in keys]
    signatures = libsignal_peer.sign_many(
        [(priv, msg) for (_, priv), msg in zip(keys, messages, strict=True)]
    )
    return [
        (pub, priv, msg, sig)
        for (pub, priv), msg, sig in zip(keys, messages, signatures, strict=True)
    ]


def test_libsignal_verifies_securemsg_signatures(
    libsignal_peer: LibsignalPeer, securemsg_signed: list[tuple[bytes, bytes, bytes]]
) -> None:
    verdicts = libsignal_peer.verify_many(securemsg_signed)
    rejected = [i for i, ok in enumerate(verdicts) if not ok]
    assert rejected == [], f"libsignal rejected {len(rejected)} securemsg signatures"
    # and securemsg agrees with itself
    assert all(securemsg_verifies(*case) for case in securemsg_signed[:100])


def test_securemsg_verifies_libsignal_signatures(
    libsignal_signed: list[tuple[bytes, bytes, bytes, bytes]],
) -> None:
    rejected = [
        i
        for i, (pub, _, msg, sig) in enumerate(libsignal_signed)
        if not securemsg_verifies(pub, msg, sig)
    ]
    assert rejected == [], f"securemsg rejected {len(rejected)} libsignal signatures"


def test_public_keys_derived_from_libsignal_private_keys_match(
    libsignal_signed: list[tuple[bytes, bytes, bytes, bytes]],
) -> None:
    for pub, priv, _, _ in libsignal_signed[:200]:
        assert PrivateKey.from_bytes(priv).public_key().to_bytes() == pub


def test_libsignal_verifies_securemsg_signatures_with_libsignal_keys(
    libsignal_peer: LibsignalPeer,
    libsignal_signed: list[tuple[bytes, bytes, bytes, bytes]],
) -> None:
    """securemsg signs with private keys libsignal generated (its clamping/encoding)."""
    rng = DeterministicRng(b"xeddsa-interop/foreign-keys")
    cases = []
    for pub, priv, msg, _ in libsignal_signed[:200]:
        cases.append((pub, msg, PrivateKey.from_bytes(priv).sign(msg, rng)))
    assert all(libsignal_peer.verify_many(cases))


def test_both_reject_mutated_securemsg_signatures(
    libsignal_peer: LibsignalPeer, securemsg_signed: list[tuple[bytes, bytes, bytes]]
) -> None:
    _assert_both_reject_mutations(
        libsignal_peer, securemsg_signed[:N_NEGATIVE], securemsg_signed[-1][0], seed=3
    )


def test_both_reject_mutated_libsignal_signatures(
    libsignal_peer: LibsignalPeer,
    libsignal_signed: list[tuple[bytes, bytes, bytes, bytes]],
) -> None:
    signed = [(pub, msg, sig) for pub, _, msg, sig in libsignal_signed[:N_NEGATIVE]]
    _assert_both_reject_mutations(libsignal_peer, signed, libsignal_signed[-1][0], seed=4)


def test_non_canonical_s_plus_l_verdicts_match_libsignal(
    libsignal_peer: LibsignalPeer,
    securemsg_signed: list[tuple[bytes, bytes, bytes]],
    libsignal_signed: list[tuple[bytes, bytes, bytes, bytes]],
) -> None:
    _assert_s_plus_l_verdicts_agree(libsignal_peer, securemsg_signed[:N_NEGATIVE])
    _assert_s_plus_l_verdicts_agree(
        libsignal_peer, [(p, m, s) for p, _, m, s in libsignal_signed[:N_NEGATIVE]]
    )


def test_both_reject_truncated_and_extended_signatures(
    libsignal_peer: LibsignalPeer, securemsg_signed: list[tuple[bytes, bytes, bytes]]
) -> None:
    pub, msg, sig = securemsg_signed[0]
    for bad in (sig[:63], sig + b"\x00", b""):
        assert libsignal_peer.verify_many([(pub, msg, bad)]) == [False]
        assert not securemsg_verifies(pub, msg, bad)
