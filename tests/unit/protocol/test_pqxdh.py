"""PQXDH: both sides derive the same keys, the derivation is libsignal's, bad keys are refused."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from securemsg.crypto.curve25519 import KeyPair, PublicKey
from securemsg.crypto.kyber1024 import KyberKeyPair
from securemsg.crypto.primitives import hkdf_sha256
from securemsg.crypto.rng import DeterministicRng
from securemsg.errors import InvalidKeyError
from securemsg.protocol.pqxdh import (
    PQXDH_INFO,
    HandshakeKeys,
    derive_handshake_keys,
    pqxdh_accept,
    pqxdh_initiate,
)

P = 2**255 - 19


@dataclass
class Keys:
    rng: DeterministicRng
    ik_a: KeyPair
    ek_a: KeyPair
    ik_b: KeyPair
    spk_b: KeyPair
    opk_b: KeyPair
    kyber_b: KyberKeyPair


def _keys(seed: bytes) -> Keys:
    rng = DeterministicRng(seed)
    pairs = [KeyPair.generate(rng) for _ in range(5)]
    return Keys(rng, *pairs, KyberKeyPair.generate(rng))


def _run(k: Keys, with_opk: bool) -> tuple[bytes, HandshakeKeys, HandshakeKeys]:
    ik_a, ek_a, ik_b, spk_b, opk_b = k.ik_a, k.ek_a, k.ik_b, k.spk_b, k.opk_b
    kyber_b = k.kyber_b
    ct, alice = pqxdh_initiate(
        our_identity_private=ik_a.private_key,
        our_base_private=ek_a.private_key,
        their_identity=ik_b.public_key,
        their_signed_pre_key=spk_b.public_key,
        their_one_time_pre_key=opk_b.public_key if with_opk else None,
        their_kyber_pre_key=kyber_b.public_key,
        rng=k.rng,
    )
    bob = pqxdh_accept(
        our_identity_private=ik_b.private_key,
        our_signed_pre_key_private=spk_b.private_key,
        our_one_time_pre_key_private=opk_b.private_key if with_opk else None,
        our_kyber_key_pair=kyber_b,
        their_identity=ik_a.public_key,
        their_base_key=ek_a.public_key,
        kyber_ciphertext=ct,
    )
    return ct, alice, bob


@pytest.mark.parametrize("with_opk", [True, False])
def test_initiator_and_recipient_agree(with_opk: bool) -> None:
    ct, alice, bob = _run(_keys(b"agree"), with_opk)
    assert len(ct) == 1569 and ct[0] == 0x08
    assert alice == bob
    assert len(alice.root_key) == len(alice.chain_key) == len(alice.spqr_auth_key) == 32
    assert len({alice.root_key, alice.chain_key, alice.spqr_auth_key}) == 3


def test_one_time_prekey_changes_the_secret() -> None:
    _, with_opk, _ = _run(_keys(b"same"), True)
    _, without, _ = _run(_keys(b"same"), False)
    assert with_opk != without


@pytest.mark.parametrize("with_opk", [True, False])
def test_derivation_is_the_documented_concatenation(with_opk: bool) -> None:
    k = _keys(b"derive")
    ct, alice, _ = _run(k, with_opk)
    ik_a, ek_a, ik_b, spk_b, opk_b = k.ik_a, k.ek_a, k.ik_b, k.spk_b, k.opk_b
    kyber_b = k.kyber_b
    secret = (
        b"\xff" * 32
        + ik_a.private_key.agree(spk_b.public_key)
        + ek_a.private_key.agree(ik_b.public_key)
        + ek_a.private_key.agree(spk_b.public_key)
        + (ek_a.private_key.agree(opk_b.public_key) if with_opk else b"")
        + kyber_b.decapsulate(ct)
    )
    okm = hkdf_sha256(secret, bytes(32), b"WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024", 96)
    assert PQXDH_INFO == b"WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024"
    assert (alice.root_key, alice.chain_key, alice.spqr_auth_key) == (
        okm[:32],
        okm[32:64],
        okm[64:],
    )
    assert derive_handshake_keys(secret) == alice


def test_non_canonical_base_key_is_refused_before_any_work() -> None:
    k = _keys(b"canon")
    kyber_b, ik_a, ik_b, spk_b = k.kyber_b, k.ik_a, k.ik_b, k.spk_b
    bad = PublicKey.from_raw((P + 9).to_bytes(32, "little"))  # u >= p: not canonical
    with pytest.raises(InvalidKeyError):
        pqxdh_accept(
            our_identity_private=ik_b.private_key,
            our_signed_pre_key_private=spk_b.private_key,
            our_one_time_pre_key_private=None,
            our_kyber_key_pair=kyber_b,
            their_identity=ik_a.public_key,
            their_base_key=bad,
            kyber_ciphertext=b"\x08" + bytes(1568),
        )


def test_malformed_kyber_ciphertext_is_an_invalid_key() -> None:
    k = _keys(b"ct")
    kyber_b, ik_a, ek_a, ik_b, spk_b = k.kyber_b, k.ik_a, k.ek_a, k.ik_b, k.spk_b
    for ct in (b"", b"\x08" + bytes(100), b"\x07" + bytes(1568)):
        with pytest.raises(InvalidKeyError):
            pqxdh_accept(
                our_identity_private=ik_b.private_key,
                our_signed_pre_key_private=spk_b.private_key,
                our_one_time_pre_key_private=None,
                our_kyber_key_pair=kyber_b,
                their_identity=ik_a.public_key,
                their_base_key=ek_a.public_key,
                kyber_ciphertext=ct,
            )


def test_handshake_keys_never_print_secrets() -> None:
    _, keys, _ = _run(_keys(b"repr"), True)
    text = repr(keys)
    for secret in (keys.root_key, keys.chain_key, keys.spqr_auth_key):
        assert secret.hex() not in text
        assert repr(secret) not in text
