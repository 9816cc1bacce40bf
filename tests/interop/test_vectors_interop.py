"""libsignal 0.103.0 checks securemsg's known-answer vectors and its Kyber1024 secret-key form.

1. **Foreign verifier for the vectors.** ``tests/vectors/session_vectors.json`` was produced by
   securemsg alone (DeterministicRng). Here a libsignal party is rebuilt from the private keys in
   the file: Bob's identity key pair and registration id, his one-time and signed prekeys, and
   his Kyber prekey, whose secret half is handed over in libsignal's own form
   (``KyberKeyPair.secret_key_bytes()``, ``0x08 || dk``). The real libsignal then decrypts
   Alice's recorded PreKey messages to the recorded plaintexts, and refuses every ``invalid``
   case without consuming a prekey. (The later Whisper messages hang on securemsg Bob's ratchet
   randomness, which libsignal cannot replay; regeneration checks those.)
2. **Kyber1024 round-3 agreement with libsignal through PQXDH**, both directions, asserted
   explicitly: libsignal decapsulates securemsg's Kyber ciphertexts (our PreKey message to a
   libsignal bundle decrypts) and securemsg decapsulates libsignal's (libsignal's PreKey message
   to our bundle decrypts); a PreKey message whose Kyber ciphertext is altered is refused, so the
   Kyber secret really is part of the agreement. Every session scenario of the interop kit
   (``test_kit_suite_libsignal.py``) exercises the same path in both roles, and
   ``test_session_interop.py`` on each encapsulation route; this file makes the Kyber agreement
   claim visible in one place.
3. ``secret_key_bytes()`` is accepted by ``KEMSecretKey.deserialize`` (byte-identical
   re-serialization) and decapsulates in libsignal: a Kyber prekey imported from securemsg's raw
   keys serves a PQXDH session that securemsg initiates with OpenSSL's random encapsulation.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from peer_client import (
    PREKEY,
    LibsignalPeer,
    PeerCallError,
    b64,
    bundle_from_json,
    bundle_to_json,
    unb64,
)

from securemsg import cipher
from securemsg.crypto.curve25519 import PrivateKey
from securemsg.crypto.kyber1024 import SECRET_KEY_LENGTH, KyberKeyPair
from securemsg.crypto.rng import DeterministicRng, SystemRng
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.identity_and_prekeys import (
    IdentityKeyPair,
    KyberPreKeyRecord,
    PreKeyBundle,
    SignedPreKeyRecord,
    generate_registration_id,
)
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.wire.messages import CiphertextMessageType, PreKeySignalMessage

pytestmark = pytest.mark.interop

VECTORS_FILE = Path(__file__).resolve().parents[1] / "vectors" / "session_vectors.json"
VECTORS: dict[str, Any] = json.loads(VECTORS_FILE.read_text())
CONV: dict[str, Any] = VECTORS["conversation"]
NOW = int(time.time() * 1000)


def _public_of(private_hex: str) -> str:
    return b64(PrivateKey.from_bytes(bytes.fromhex(private_hex)).public_key().to_bytes())


def _libsignal_bob(peer: LibsignalPeer) -> str:
    """A libsignal party holding exactly Bob's keys from the vector file; returns its label."""
    label = f"vec-bob-{uuid.uuid4()}"
    peer.call(
        "create_party",
        party=label,
        name=CONV["bob_address"]["name"],
        device_id=CONV["bob_address"]["device_id"],
        registration_id=CONV["bob_registration_id"],
        identity_private=b64(bytes.fromhex(CONV["bob_identity_private"])),
    )
    opk, spk, kpk = (
        CONV["bob_one_time_pre_key"],
        CONV["bob_signed_pre_key"],
        CONV["bob_kyber_pre_key"],
    )
    kyber = KyberKeyPair.from_seed(bytes.fromhex(kpk["seed"]))
    assert kyber.public_key.to_bytes().hex() == kpk["public"]
    imported = peer.call(
        "import_raw_keys",
        party=label,
        pre_keys=[
            {
                "id": opk["id"],
                "public": _public_of(opk["private"]),
                "private": b64(bytes.fromhex(opk["private"])),
            }
        ],
        signed_pre_keys=[
            {
                "id": spk["id"],
                "timestamp": spk["timestamp"],
                "public": _public_of(spk["private"]),
                "private": b64(bytes.fromhex(spk["private"])),
                "signature": b64(bytes.fromhex(spk["signature"])),
            }
        ],
        kyber_pre_keys=[
            {
                "id": kpk["id"],
                "timestamp": kpk["timestamp"],
                "public": b64(kyber.public_key.to_bytes()),
                "secret": b64(kyber.secret_key_bytes()),
                "signature": b64(bytes.fromhex(kpk["signature"])),
            }
        ],
    )
    assert imported == {
        "pre_keys": [opk["id"]],
        "signed_pre_keys": [spk["id"]],
        "kyber_pre_keys": [kpk["id"]],
    }
    return label


def _alice_remote(label: str) -> dict[str, Any]:
    a = CONV["alice_address"]
    return {"party": label, "remote_name": a["name"], "remote_device": a["device_id"]}


def _prekey_messages() -> list[dict[str, Any]]:
    return [m for m in CONV["messages"] if m["kind"] == "prekey"]


# -- 1. the vectors through libsignal -----------------------------------------------------------


def test_libsignal_decrypts_the_recorded_prekey_messages(libsignal_peer: LibsignalPeer) -> None:
    label = _libsignal_bob(libsignal_peer)
    messages = _prekey_messages()
    assert len(messages) == 2 and all(m["sender"] == "alice" for m in messages)
    for m in messages:
        assert m["type"] == PREKEY
        r = libsignal_peer.call(
            "decrypt",
            type=m["type"],
            body=b64(bytes.fromhex(m["ciphertext"])),
            **_alice_remote(label),
        )
        assert unb64(r["plaintext"]).hex() == m["plaintext"]
    facts = libsignal_peer.call("session_facts", **_alice_remote(label))
    assert facts["exists"] and facts["session_version"] == 4
    assert unb64(facts["remote_identity_key"]) == bytes.fromhex(_alice_identity_public_hex())
    assert facts["remote_registration_id"] == CONV["alice_registration_id"]
    assert facts["has_pq_ratchet_state"]
    # The one-time prekey was consumed by libsignal, as securemsg consumes it.
    assert libsignal_peer.call("export_records", party=label)["pre_keys"] == {}


def _alice_identity_public_hex() -> str:
    return (
        PrivateKey.from_bytes(bytes.fromhex(CONV["alice_identity_private"]))
        .public_key()
        .to_bytes()
        .hex()
    )


@pytest.mark.parametrize("case", VECTORS["invalid"], ids=lambda c: c["comment"])
def test_libsignal_refuses_the_invalid_cases_and_consumes_nothing(
    libsignal_peer: LibsignalPeer, case: dict[str, Any]
) -> None:
    label = _libsignal_bob(libsignal_peer)
    with pytest.raises(PeerCallError):
        libsignal_peer.call(
            "decrypt",
            type=case["type"],
            body=b64(bytes.fromhex(case["ciphertext"])),
            **_alice_remote(label),
        )
    assert not libsignal_peer.call("session_facts", **_alice_remote(label))["exists"]
    records = libsignal_peer.call("export_records", party=label)
    assert list(records["pre_keys"]) == [str(CONV["bob_one_time_pre_key"]["id"])]
    # Nothing was used up: the recorded first message still decrypts afterwards.
    first = _prekey_messages()[0]
    r = libsignal_peer.call(
        "decrypt",
        type=first["type"],
        body=b64(bytes.fromhex(first["ciphertext"])),
        **_alice_remote(label),
    )
    assert unb64(r["plaintext"]).hex() == first["plaintext"]


# -- 2. Kyber1024 agreement with libsignal through PQXDH ------------------------------------------


def _securemsg_party(seed: bytes, name: str) -> tuple[InMemoryProtocolStore, ProtocolAddress, Any]:
    rng = DeterministicRng(seed)
    identity = IdentityKeyPair.generate(rng)
    store = InMemoryProtocolStore(identity, generate_registration_id(rng))
    return store, ProtocolAddress(name, 1), identity


def _new_libsignal_party(peer: LibsignalPeer) -> tuple[str, ProtocolAddress]:
    label, name = f"kyber-{uuid.uuid4()}", str(uuid.uuid4())
    peer.create_party(label, name, 1)
    return label, ProtocolAddress(name, 1)


def test_libsignal_decapsulates_securemsg_kyber_ciphertexts(libsignal_peer: LibsignalPeer) -> None:
    """securemsg encapsulates (OpenSSL route) to libsignal's Kyber prekey; libsignal agrees."""
    label, ls_addr = _new_libsignal_party(libsignal_peer)
    store, addr, _identity = _securemsg_party(b"kyber-agree-1", str(uuid.uuid4()))
    rng = SystemRng()
    for round_no in range(3):
        bundle = libsignal_peer.call(
            "generate_bundle",
            party=label,
            pre_key_id=None,  # no one-time prekey: the PQ secret is the only fresh prekey secret
            signed_pre_key_id=100 + round_no,
            kyber_pre_key_id=200 + round_no,
            timestamp_ms=NOW,
        )
        cipher.process_prekey_bundle(
            bundle_from_json(bundle), ls_addr, store, now=NOW, rng=rng, local_address=addr
        )
        msg = cipher.message_encrypt(
            b"kyber %d" % round_no, ls_addr, store, now=NOW, rng=rng, local_address=addr
        )
        assert isinstance(msg, PreKeySignalMessage)
        remote = {"party": label, "remote_name": addr.name, "remote_device": addr.device_id}
        body = msg.to_bytes()
        # Alter one byte inside the Kyber ciphertext: libsignal's decapsulation then yields a
        # different secret and the message fails; the untouched one decrypts.
        kyber_ct = msg.kyber_ciphertext
        assert len(kyber_ct) == 1569 and kyber_ct[0] == 0x08
        at = body.index(kyber_ct) + 700
        bad = body[:at] + bytes((body[at] ^ 0x01,)) + body[at + 1 :]
        with pytest.raises(PeerCallError):
            libsignal_peer.call("decrypt", type=PREKEY, body=b64(bad), **remote)
        r = libsignal_peer.call("decrypt", type=PREKEY, body=b64(body), **remote)
        assert unb64(r["plaintext"]) == b"kyber %d" % round_no
        libsignal_peer.call("delete_session", **remote)


def test_securemsg_decapsulates_libsignal_kyber_ciphertexts(libsignal_peer: LibsignalPeer) -> None:
    """libsignal encapsulates to securemsg's Kyber prekey; securemsg agrees."""
    label, ls_addr = _new_libsignal_party(libsignal_peer)
    store, addr, identity = _securemsg_party(b"kyber-agree-2", str(uuid.uuid4()))
    rng = DeterministicRng(b"kyber-agree-2-keys")
    remote = {"party": label, "remote_name": addr.name, "remote_device": addr.device_id}
    for round_no in range(3):
        signed = SignedPreKeyRecord.generate(10 + round_no, identity, NOW, rng)
        kyber = KyberPreKeyRecord.generate(20 + round_no, identity, NOW, rng)
        store.save_signed_pre_key(signed.id, signed)
        store.save_kyber_pre_key(kyber.id, kyber)
        bundle = _bundle_json(store, addr, identity, signed, kyber)
        libsignal_peer.call("process_bundle", bundle=bundle, now_ms=NOW, **remote)
        kind, body = libsignal_peer.encrypt(
            label, addr.name, addr.device_id, b"pq %d" % round_no, now_ms=NOW
        )
        assert kind == PREKEY
        msg = PreKeySignalMessage.from_bytes(body)
        assert len(msg.kyber_ciphertext) == 1569 and msg.kyber_pre_key_id == kyber.id
        out = cipher.message_decrypt(
            body, CiphertextMessageType.PREKEY, ls_addr, store, now=NOW, rng=rng, local_address=addr
        )
        assert out == b"pq %d" % round_no
        libsignal_peer.call("delete_session", **remote)


def _bundle_json(
    store: InMemoryProtocolStore,
    addr: ProtocolAddress,
    identity: IdentityKeyPair,
    signed: SignedPreKeyRecord,
    kyber: KyberPreKeyRecord,
) -> dict[str, Any]:
    return bundle_to_json(
        PreKeyBundle(
            registration_id=store.get_local_registration_id(),
            device_id=addr.device_id,
            pre_key_id=None,
            pre_key_public=None,
            signed_pre_key_id=signed.id,
            signed_pre_key_public=signed.public_key,
            signed_pre_key_signature=signed.signature,
            identity_key=identity.identity_key,
            kyber_pre_key_id=kyber.id,
            kyber_pre_key_public=kyber.public_key,
            kyber_pre_key_signature=kyber.signature,
        )
    )


# -- 3. KyberKeyPair.secret_key_bytes() in libsignal ---------------------------------------------


def test_libsignal_reserializes_our_kyber_secret_key_identically(
    libsignal_peer: LibsignalPeer,
) -> None:
    rng = DeterministicRng(b"kyber-secret-form")
    for _ in range(5):
        sk = KyberKeyPair.generate(rng).secret_key_bytes()
        assert len(sk) == SECRET_KEY_LENGTH and sk[0] == 0x08
        assert unb64(libsignal_peer.call("kem_check_secret", secret=b64(sk))["secret"]) == sk
    with pytest.raises(PeerCallError):
        libsignal_peer.call("kem_check_secret", secret=b64(sk[:-1]))


def test_libsignal_decapsulates_with_our_kyber_secret_key(libsignal_peer: LibsignalPeer) -> None:
    """A libsignal Bob whose Kyber prekey secret is our ``secret_key_bytes()`` accepts PQXDH
    sessions from securemsg (random OpenSSL encapsulation, not the deterministic path)."""
    rng = DeterministicRng(b"kyber-secret-in-libsignal")
    bob_identity = IdentityKeyPair.generate(rng)
    bob_name = str(uuid.uuid4())
    label = f"kyber-import-{uuid.uuid4()}"
    libsignal_peer.call(
        "create_party",
        party=label,
        name=bob_name,
        device_id=1,
        registration_id=4242,
        identity_private=b64(bob_identity.private_key.to_bytes()),
    )
    signed = SignedPreKeyRecord.generate(7, bob_identity, NOW, rng)
    kybers = [KyberPreKeyRecord.generate(8 + i, bob_identity, NOW, rng) for i in range(3)]
    libsignal_peer.call(
        "import_raw_keys",
        party=label,
        signed_pre_keys=[
            {
                "id": signed.id,
                "timestamp": signed.timestamp,
                "public": b64(signed.public_key.to_bytes()),
                "private": b64(signed.key_pair.private_key.to_bytes()),
                "signature": b64(signed.signature),
            }
        ],
        kyber_pre_keys=[
            {
                "id": k.id,
                "timestamp": k.timestamp,
                "public": b64(k.public_key.to_bytes()),
                "secret": b64(k.key_pair.secret_key_bytes()),
                "signature": b64(k.signature),
            }
            for k in kybers
        ],
    )
    bob = ProtocolAddress(bob_name, 1)
    for k in kybers:
        store, addr, _ = _securemsg_party(k.key_pair.seed[:8], str(uuid.uuid4()))
        bundle = PreKeyBundle(
            registration_id=4242,
            device_id=1,
            pre_key_id=None,
            pre_key_public=None,
            signed_pre_key_id=signed.id,
            signed_pre_key_public=signed.public_key,
            signed_pre_key_signature=signed.signature,
            identity_key=bob_identity.identity_key,
            kyber_pre_key_id=k.id,
            kyber_pre_key_public=k.public_key,
            kyber_pre_key_signature=k.signature,
        )
        cipher.process_prekey_bundle(
            bundle, bob, store, now=NOW, rng=SystemRng(), local_address=addr
        )
        msg = cipher.message_encrypt(
            b"to libsignal", bob, store, now=NOW, rng=SystemRng(), local_address=addr
        )
        assert isinstance(msg, PreKeySignalMessage) and msg.kyber_pre_key_id == k.id
        r = libsignal_peer.call(
            "decrypt",
            party=label,
            remote_name=addr.name,
            remote_device=addr.device_id,
            type=PREKEY,
            body=b64(msg.to_bytes()),
        )
        assert unb64(r["plaintext"]) == b"to libsignal"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
