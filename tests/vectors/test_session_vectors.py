"""Known-answer vectors for 1:1 sessions (tests/vectors/session_vectors.json).

1. Regenerating the file with the generator reproduces it exactly (our code did not drift).
2. Independently of the generator's state: the PQXDH outputs are recomputed from the private
   keys in the file (mirror DHs, Kyber decapsulation, HKDF), and a fresh recipient rebuilt
   from Bob's private keys decrypts Alice's recorded PreKey messages and refuses the invalid
   cases without storing anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from generate_session_vectors import OUT, build_vectors, render

from securemsg import cipher, errors
from securemsg.crypto.curve25519 import KeyPair, PrivateKey
from securemsg.crypto.kyber1024 import KyberKeyPair
from securemsg.crypto.primitives import hkdf_sha256
from securemsg.crypto.rng import DeterministicRng
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.identity_and_prekeys import (
    IdentityKey,
    IdentityKeyPair,
    KyberPreKeyRecord,
    PreKeyRecord,
    SignedPreKeyRecord,
)
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.wire.messages import CiphertextMessageType

VECTORS: dict[str, Any] = json.loads(Path(OUT).read_text())


def _priv(hex_key: str) -> PrivateKey:
    return PrivateKey.from_bytes(bytes.fromhex(hex_key))


def _pair(hex_key: str) -> KeyPair:
    p = _priv(hex_key)
    return KeyPair(p, p.public_key())


def test_generator_reproduces_the_file() -> None:
    assert render(build_vectors()) == Path(OUT).read_text()


@pytest.mark.parametrize("case", VECTORS["pqxdh"], ids=lambda c: c["comment"])
def test_pqxdh_outputs_recomputed_from_private_keys(case: dict[str, Any]) -> None:
    ik_a, ek_a = _pair(case["alice_identity_private"]), _pair(case["alice_base_private"])
    ik_b, spk_b = _pair(case["bob_identity_private"]), _pair(case["bob_signed_pre_key_private"])
    kyber = KyberKeyPair.from_seed(bytes.fromhex(case["bob_kyber_seed"]))
    assert kyber.public_key.to_bytes().hex() == case["bob_kyber_public"]
    ct = bytes.fromhex(case["kyber_ciphertext"])
    ss = kyber.decapsulate(ct)
    assert ss.hex() == case["kyber_shared_secret"]
    opk = case["bob_one_time_pre_key_private"]
    secret = (
        b"\xff" * 32
        + spk_b.private_key.agree(ik_a.public_key)
        + ik_b.private_key.agree(ek_a.public_key)
        + spk_b.private_key.agree(ek_a.public_key)
        + (b"" if opk is None else _priv(opk).agree(ek_a.public_key))
        + ss
    )
    okm = hkdf_sha256(secret, None, b"WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024", 96)
    assert okm.hex() == case["root_key"] + case["chain_key"] + case["spqr_auth_key"]
    assert len(ct) == 1569 and ct[0] == 0x08


def _fresh_bob() -> tuple[InMemoryProtocolStore, ProtocolAddress, ProtocolAddress]:
    c = VECTORS["conversation"]
    ik = _pair(c["bob_identity_private"])
    store = InMemoryProtocolStore(
        IdentityKeyPair(IdentityKey(ik.public_key), ik.private_key), c["bob_registration_id"]
    )
    spk = c["bob_signed_pre_key"]
    store.save_signed_pre_key(
        spk["id"],
        SignedPreKeyRecord(
            spk["id"], spk["timestamp"], _pair(spk["private"]), bytes.fromhex(spk["signature"])
        ),
    )
    kpk = c["bob_kyber_pre_key"]
    store.save_kyber_pre_key(
        kpk["id"],
        KyberPreKeyRecord(
            kpk["id"],
            kpk["timestamp"],
            KyberKeyPair.from_seed(bytes.fromhex(kpk["seed"])),
            bytes.fromhex(kpk["signature"]),
        ),
    )
    opk = c["bob_one_time_pre_key"]
    store.save_pre_key(opk["id"], PreKeyRecord(opk["id"], _pair(opk["private"])))
    alice = ProtocolAddress(c["alice_address"]["name"], c["alice_address"]["device_id"])
    bob = ProtocolAddress(c["bob_address"]["name"], c["bob_address"]["device_id"])
    return store, alice, bob


def test_fresh_recipient_decrypts_the_recorded_prekey_messages() -> None:
    store, alice, bob = _fresh_bob()
    prekey_messages = [m for m in VECTORS["conversation"]["messages"] if m["kind"] == "prekey"]
    assert len(prekey_messages) == 2
    for m in prekey_messages:
        out = cipher.message_decrypt(
            bytes.fromhex(m["ciphertext"]),
            CiphertextMessageType(m["type"]),
            alice,
            store,
            now=VECTORS["conversation"]["now_ms"],
            rng=DeterministicRng(b"replay"),
            local_address=bob,
        )
        assert out.hex() == m["plaintext"]


@pytest.mark.parametrize("case", VECTORS["invalid"], ids=lambda c: c["comment"])
def test_invalid_cases_are_refused_and_store_nothing(case: dict[str, Any]) -> None:
    store, alice, bob = _fresh_bob()
    with pytest.raises(getattr(errors, case["error"])):
        cipher.message_decrypt(
            bytes.fromhex(case["ciphertext"]),
            CiphertextMessageType(case["type"]),
            alice,
            store,
            now=VECTORS["conversation"]["now_ms"],
            rng=DeterministicRng(b"replay"),
            local_address=bob,
        )
    assert store.load_session(alice) is None
    store.get_pre_key(VECTORS["conversation"]["bob_one_time_pre_key"]["id"])
