#!/usr/bin/env python3
"""Generate tests/vectors/session_vectors.json: PQXDH derivations and a recorded conversation.

Everything is drawn from :class:`securemsg.crypto.rng.DeterministicRng` (Kyber encapsulation
is deterministic with it), so running this again reproduces the file byte for byte; the test
``test_session_vectors.py`` checks that and, independently, rebuilds the recipient from the
private keys in the file and decrypts every recorded message. The same data can be fed to
libsignal through the interop peer (import Bob's keys, decrypt Alice's messages).

Usage: ``python tests/vectors/generate_session_vectors.py`` (writes the JSON next to itself).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from securemsg import cipher
from securemsg.crypto.curve25519 import KeyPair
from securemsg.crypto.kyber1024 import KyberKeyPair
from securemsg.crypto.rng import DeterministicRng
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.identity_and_prekeys import (
    IdentityKeyPair,
    KyberPreKeyRecord,
    PreKeyBundle,
    PreKeyRecord,
    SignedPreKeyRecord,
)
from securemsg.protocol.pqxdh import pqxdh_accept, pqxdh_initiate
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.wire.messages import PreKeySignalMessage

OUT = Path(__file__).with_name("session_vectors.json")
NOW = 1_760_000_000_000
ALICE = ProtocolAddress("9d0652a3-dcc3-4d11-975f-74d61598733f", 1)
BOB = ProtocolAddress("796abedb-ca4e-4f18-8803-1fde5b921f9f", 1)
# (sender, plaintext): Alice's first two are PreKey messages, then the conversation alternates.
SCRIPT = [
    ("alice", b"Hello Bob, this is PQXDH."),
    ("alice", b"A second PreKey message."),
    ("bob", b"Hi Alice: my first reply."),
    ("alice", b"Now a plain SignalMessage."),
    ("alice", b""),
    ("bob", b"x" * 100),
    ("bob", bytes(range(256))),
    ("alice", b"last"),
]


def _pqxdh_case(seed: bytes, with_opk: bool) -> dict[str, Any]:
    rng = DeterministicRng(seed)
    ik_a, ek_a, ik_b, spk_b, opk_b = (KeyPair.generate(rng) for _ in range(5))
    kyber_b = KyberKeyPair.generate(rng)
    ct, keys = pqxdh_initiate(
        our_identity_private=ik_a.private_key,
        our_base_private=ek_a.private_key,
        their_identity=ik_b.public_key,
        their_signed_pre_key=spk_b.public_key,
        their_one_time_pre_key=opk_b.public_key if with_opk else None,
        their_kyber_pre_key=kyber_b.public_key,
        rng=rng,
    )
    accepted = pqxdh_accept(
        our_identity_private=ik_b.private_key,
        our_signed_pre_key_private=spk_b.private_key,
        our_one_time_pre_key_private=opk_b.private_key if with_opk else None,
        our_kyber_key_pair=kyber_b,
        their_identity=ik_a.public_key,
        their_base_key=ek_a.public_key,
        kyber_ciphertext=ct,
    )
    assert accepted == keys
    return {
        "comment": "PQXDH " + ("with" if with_opk else "without") + " a one-time prekey",
        "result": "valid",
        "alice_identity_private": ik_a.private_key.to_bytes().hex(),
        "alice_base_private": ek_a.private_key.to_bytes().hex(),
        "bob_identity_private": ik_b.private_key.to_bytes().hex(),
        "bob_signed_pre_key_private": spk_b.private_key.to_bytes().hex(),
        "bob_one_time_pre_key_private": opk_b.private_key.to_bytes().hex() if with_opk else None,
        "bob_kyber_seed": kyber_b.seed.hex(),
        "bob_kyber_public": kyber_b.public_key.to_bytes().hex(),
        "kyber_ciphertext": ct.hex(),
        "kyber_shared_secret": kyber_b.decapsulate(ct).hex(),
        "root_key": keys.root_key.hex(),
        "chain_key": keys.chain_key.hex(),
        "spqr_auth_key": keys.spqr_auth_key.hex(),
    }


def _conversation() -> dict[str, Any]:
    rng_a, rng_b = DeterministicRng(b"vectors alice"), DeterministicRng(b"vectors bob")
    ik_a, ik_b = IdentityKeyPair.generate(rng_a), IdentityKeyPair.generate(rng_b)
    reg_a, reg_b = 1234, 5678
    alice = InMemoryProtocolStore(ik_a, reg_a)
    bob = InMemoryProtocolStore(ik_b, reg_b)
    spk = SignedPreKeyRecord.generate(11, ik_b, NOW, rng_b)
    kpk = KyberPreKeyRecord.generate(22, ik_b, NOW, rng_b)
    opk = PreKeyRecord.generate(33, rng_b)
    bob.save_signed_pre_key(spk.id, spk)
    bob.save_kyber_pre_key(kpk.id, kpk)
    bob.save_pre_key(opk.id, opk)
    bundle = PreKeyBundle(
        registration_id=reg_b,
        device_id=BOB.device_id,
        pre_key_id=opk.id,
        pre_key_public=opk.public_key,
        signed_pre_key_id=spk.id,
        signed_pre_key_public=spk.public_key,
        signed_pre_key_signature=spk.signature,
        identity_key=ik_b.identity_key,
        kyber_pre_key_id=kpk.id,
        kyber_pre_key_public=kpk.public_key,
        kyber_pre_key_signature=kpk.signature,
    )
    cipher.process_prekey_bundle(bundle, BOB, alice, now=NOW, rng=rng_a, local_address=ALICE)
    parties = {"alice": (alice, ALICE, rng_a), "bob": (bob, BOB, rng_b)}
    messages = []
    for sender, text in SCRIPT:
        store, address, rng = parties[sender]
        receiver = "bob" if sender == "alice" else "alice"
        r_store, r_address, r_rng = parties[receiver]
        msg = cipher.message_encrypt(
            text, r_address, store, now=NOW, rng=rng, local_address=address
        )
        kind = "prekey" if isinstance(msg, PreKeySignalMessage) else "whisper"
        mtype = 3 if kind == "prekey" else 2
        out = cipher.message_decrypt(
            msg.to_bytes(), mtype, address, r_store, now=NOW, rng=r_rng, local_address=r_address
        )  # type: ignore[arg-type]
        assert out == text
        messages.append(
            {
                "sender": sender,
                "type": mtype,
                "kind": kind,
                "plaintext": text.hex(),
                "ciphertext": msg.to_bytes().hex(),
                "result": "valid",
            }
        )
    return {
        "comment": "Alice starts a session from Bob's bundle and they talk. Decrypt in order.",
        "now_ms": NOW,
        "alice_address": {"name": ALICE.name, "device_id": ALICE.device_id},
        "bob_address": {"name": BOB.name, "device_id": BOB.device_id},
        "alice_identity_private": ik_a.private_key.to_bytes().hex(),
        "alice_registration_id": reg_a,
        "bob_identity_private": ik_b.private_key.to_bytes().hex(),
        "bob_registration_id": reg_b,
        "bob_signed_pre_key": {
            "id": spk.id,
            "timestamp": spk.timestamp,
            "private": spk.key_pair.private_key.to_bytes().hex(),
            "signature": spk.signature.hex(),
        },
        "bob_kyber_pre_key": {
            "id": kpk.id,
            "timestamp": kpk.timestamp,
            "seed": kpk.key_pair.seed.hex(),
            "public": kpk.public_key.to_bytes().hex(),
            "signature": kpk.signature.hex(),
        },
        "bob_one_time_pre_key": {
            "id": opk.id,
            "private": opk.key_pair.private_key.to_bytes().hex(),
        },
        "messages": messages,
    }


def _invalid_cases(conversation: dict[str, Any]) -> list[dict[str, Any]]:
    """Mutations of Alice's first PreKey message that a fresh Bob must refuse (and stay fresh)."""
    first = conversation["messages"][0]
    data = bytes.fromhex(first["ciphertext"])
    cases = [
        (
            "last byte (in the Kyber ciphertext) flipped",
            data[:-1] + bytes((data[-1] ^ 1,)),
            "InvalidMessageError",
        ),
        ("truncated by one byte", data[:-1], "DecodeError"),
        ("version 5", bytes((0x54,)) + data[1:], "UnsupportedVersionError"),
        ("version 3 (X3DH)", bytes((0x34,)) + data[1:], "UnsupportedVersionError"),
        ("empty", b"", "DecodeError"),
    ]
    return [
        {
            "comment": comment,
            "type": 3,
            "ciphertext": bad.hex(),
            "result": "invalid",
            "error": error,
        }
        for comment, bad, error in cases
    ]


def build_vectors() -> dict[str, Any]:
    """Compute the whole vector file (deterministic)."""
    conversation = _conversation()
    return {
        "description": (
            "securemsg 1:1 session known-answer vectors (libsignal 0.103.0 wire format): "
            "PQXDH key derivations and a recorded PQXDH + Double Ratchet + SPQR conversation. "
            "Generated by tests/vectors/generate_session_vectors.py with DeterministicRng."
        ),
        "pqxdh": [_pqxdh_case(b"pqxdh vector 1", True), _pqxdh_case(b"pqxdh vector 2", False)],
        "conversation": conversation,
        "invalid": _invalid_cases(conversation),
    }


def render(vectors: dict[str, Any]) -> str:
    return json.dumps(vectors, indent=1, sort_keys=True) + "\n"


def main() -> int:
    OUT.write_text(render(build_vectors()))
    print("wrote", OUT, file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
