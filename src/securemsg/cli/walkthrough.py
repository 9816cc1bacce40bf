"""``securemsg walkthrough``: an in-process walkthrough of a securemsg conversation.

Two clients, Alice and Bob, each with their own in-memory store (their keys never leave it).
Bob publishes a prekey bundle (public keys only), Alice processes it (PQXDH with Kyber1024) and
they exchange messages over the Double Ratchet with the SPQR post-quantum ratchet. Every step
prints what each client sees and the bytes a relay would carry, so a newcomer can see that the
relay never holds anything it could decrypt.
"""

from __future__ import annotations

import time
import uuid
from typing import TextIO

from securemsg.cipher import message_decrypt, message_encrypt, process_prekey_bundle
from securemsg.crypto.rng import DeterministicRng, Rng, SystemRng
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.identity_and_prekeys import (
    IdentityKeyPair,
    KyberPreKeyRecord,
    PreKeyBundle,
    PreKeyRecord,
    SignedPreKeyRecord,
    generate_registration_id,
)
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.wire.messages import CiphertextMessageType

__all__ = ["run_walkthrough"]


def _hex(data: bytes, limit: int = 24) -> str:
    text = data[:limit].hex(" ")
    return text + (" …" if len(data) > limit else "")


def _new_client(rng: Rng) -> InMemoryProtocolStore:
    return InMemoryProtocolStore(IdentityKeyPair.generate(rng), generate_registration_id(rng))


def _publish_bundle(
    store: InMemoryProtocolStore, device_id: int, now: int, rng: Rng
) -> PreKeyBundle:
    """What a client uploads to the relay: public keys and signatures, nothing else."""
    identity = store.get_identity_key_pair()
    pre_key = PreKeyRecord.generate(1, rng)
    signed = SignedPreKeyRecord.generate(1, identity, now, rng)
    kyber = KyberPreKeyRecord.generate(1, identity, now, rng)
    store.save_pre_key(pre_key.id, pre_key)
    store.save_signed_pre_key(signed.id, signed)
    store.save_kyber_pre_key(kyber.id, kyber, last_resort=False)
    return PreKeyBundle(
        registration_id=store.get_local_registration_id(),
        device_id=device_id,
        pre_key_id=pre_key.id,
        pre_key_public=pre_key.key_pair.public_key,
        signed_pre_key_id=signed.id,
        signed_pre_key_public=signed.key_pair.public_key,
        signed_pre_key_signature=signed.signature,
        identity_key=identity.identity_key,
        kyber_pre_key_id=kyber.id,
        kyber_pre_key_public=kyber.key_pair.public_key,
        kyber_pre_key_signature=kyber.signature,
    )


def run_walkthrough(*, messages: int = 6, seed: str | None = None, out: TextIO) -> int:
    """Run the walkthrough, printing to ``out``. Returns a process exit code."""
    rng: Rng = DeterministicRng(seed.encode()) if seed is not None else SystemRng()
    now = int(time.time() * 1000)

    def say(text: str = "") -> None:
        print(text, file=out)

    alice_addr = ProtocolAddress(str(uuid.UUID(bytes=rng.random_bytes(16), version=4)), 1)
    bob_addr = ProtocolAddress(str(uuid.UUID(bytes=rng.random_bytes(16), version=4)), 1)
    alice, bob = _new_client(rng), _new_client(rng)

    say("securemsg walkthrough: two clients, keys held only by each client")
    say("=" * 66)
    for name, addr, store in (("Alice", alice_addr, alice), ("Bob", bob_addr, bob)):
        identity = store.get_identity_key_pair().identity_key.to_bytes()
        say(f"{name:<6} {addr}   identity {_hex(identity, 12)}")
    if seed is not None:
        say("(deterministic RNG: for testing only, these keys are predictable)")
    say()

    bundle = _publish_bundle(bob, bob_addr.device_id, now, rng)
    bundle_bytes = bundle.to_bytes()
    say("1. Bob uploads a prekey bundle to the relay (public keys + signatures only)")
    say(f"   {len(bundle_bytes)} bytes: identity key, signed EC prekey, one-time EC prekey,")
    say("   signed Kyber1024 prekey (1569 bytes of it). No private key is in it.")
    say()

    received = PreKeyBundle.from_bytes(bundle_bytes)
    process_prekey_bundle(received, bob_addr, alice, now=now, rng=rng, local_address=alice_addr)
    say("2. Alice fetches the bundle, checks both signatures and runs PQXDH")
    say("   (four X25519 agreements + a Kyber1024 encapsulation)")
    say()

    say("3. The conversation. The relay sees only these bytes:")
    plaintexts = [
        "Hi Bob, this is Alice.",
        "Hi Alice! Got your first message.",
        "The relay cannot read this.",
        "Nor this: its keys never left my phone.",
        "Each reply ratchets the keys forward.",
        "And SPQR mixes in post-quantum secrets.",
    ]
    parties = [(alice, alice_addr, "Alice"), (bob, bob_addr, "Bob")]
    for i in range(messages):
        (sender, s_addr, s_name), (receiver, r_addr, r_name) = parties[i % 2], parties[1 - i % 2]
        text = plaintexts[i % len(plaintexts)]
        msg = message_encrypt(text.encode(), r_addr, sender, now=now, rng=rng, local_address=s_addr)
        wire = msg.to_bytes()
        is_prekey = msg.message_type is CiphertextMessageType.PREKEY
        kind = "PreKeySignalMessage" if is_prekey else "SignalMessage"
        plain = message_decrypt(
            wire, msg.message_type, s_addr, receiver, now=now, rng=rng, local_address=r_addr
        )
        say(f"   {s_name:>5} -> {r_name:<5} {kind:<20} {len(wire):5d} B  {_hex(wire)}")
        say(f"   {r_name:>5} reads: {plain.decode()!r}")
    say()
    say("4. What the relay could hand over if asked: the public bundle, these ciphertexts, and")
    say("   who sent them to whom (sealed sender, coming next, hides the sender as well).")
    say("   Plaintexts, private keys and message keys exist only inside each client's store.")
    return 0
