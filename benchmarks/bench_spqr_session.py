"""Session-level costs of the triple ratchet (Double Ratchet + SPQR) with epochs advancing.

Run: ``pytest benchmarks/bench_spqr_session.py --benchmark-only``; compare medians in ONE run
(only side-by-side ratios are stable).

* ``test_floor_*``: the floor (``benchmarks.floor.FloorPair``, shared
  with ``bench_session.py``): RT = sender + receiver, each 2 HMAC chain steps + one SPQR chain
  HKDF + HKDF 80 + AES-256-CBC + HMAC MAC + protobuf build/parse; the ping-pong and
  conversation variants add the floor's DH ratchet step where the schedule needs one.
* ``test_round_trip_same_chain``: 100 B RT (encrypt + serialize + parse + decrypt) on an
  established session while the sender keeps one chain (the "RT" scenario); SPQR
  chunks keep flowing, epochs do not advance (they need replies).
* ``test_round_trip_conversation``: 100 B RT in a realistic conversation: turns of 8 messages
  alternating sides, so DH ratchet steps, every ML-KEM operation (keygen, Encaps1, Encaps2,
  Decaps) and epoch completions are amortised into the per-message median/mean.
* ``test_round_trip_ping_pong``: strict alternation (every message a DH ratchet step; epochs
  advance every 43 messages per direction).
* ``test_epoch_completing_message``: decrypting the message whose ct2 chunk completes an epoch
  (ct2 decode + ML-KEM-768 Decaps + MAC + Add Epoch + the usual message work), state restored
  before every round.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from benchmarks.floor import FloorPair
from securemsg import cipher
from securemsg.crypto.rng import DeterministicRng
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
from securemsg.wire.messages import CiphertextMessageType, PreKeySignalMessage

NOW = 1_760_000_000_000
PLAINTEXT = bytes(range(100))


# -- the floor (benchmarks/floor.py, the sessions engineer's; same run) --------------------------


def test_floor_round_trip(benchmark: Any) -> None:
    pair = FloorPair()
    assert benchmark(pair.round_trip, PLAINTEXT) == PLAINTEXT


def test_floor_conversation(benchmark: Any) -> None:
    """The floor under the same schedule as ``test_round_trip_conversation`` (turns of 8)."""
    pair = FloorPair()
    count = [0]

    def step() -> bytes:
        n = count[0]
        count[0] = n + 1
        if (n // 8) % 2 == 0:
            return pair.bob.decrypt(pair.alice.encrypt(PLAINTEXT))
        return pair.alice.decrypt(pair.bob.encrypt(PLAINTEXT))

    benchmark.pedantic(step, rounds=3000, iterations=1, warmup_rounds=20)


def test_floor_ping_pong(benchmark: Any) -> None:
    pair = FloorPair()
    assert benchmark(pair.ping_pong, PLAINTEXT) == PLAINTEXT


# -- two securemsg parties ------------------------------------------------------------------------


class Party:
    def __init__(self, name: str, seed: bytes) -> None:
        self.rng = DeterministicRng(seed)
        self.identity = IdentityKeyPair.generate(self.rng)
        self.registration_id = generate_registration_id(self.rng)
        self.address = ProtocolAddress(name, 1)
        self.store = InMemoryProtocolStore(self.identity, self.registration_id)

    def bundle(self) -> PreKeyBundle:
        pre = PreKeyRecord.generate(1, self.rng)
        signed = SignedPreKeyRecord.generate(1, self.identity, NOW, self.rng)
        kyber = KyberPreKeyRecord.generate(1, self.identity, NOW, self.rng)
        self.store.save_pre_key(1, pre)
        self.store.save_signed_pre_key(1, signed)
        self.store.save_kyber_pre_key(1, kyber)
        return PreKeyBundle(
            registration_id=self.registration_id,
            device_id=1,
            pre_key_id=1,
            pre_key_public=pre.public_key,
            signed_pre_key_id=1,
            signed_pre_key_public=signed.public_key,
            signed_pre_key_signature=signed.signature,
            identity_key=self.identity.identity_key,
            kyber_pre_key_id=1,
            kyber_pre_key_public=kyber.public_key,
            kyber_pre_key_signature=kyber.signature,
        )

    def encrypt(self, to: Party, plaintext: bytes) -> tuple[CiphertextMessageType, bytes]:
        m = cipher.message_encrypt(
            plaintext, to.address, self.store, now=NOW, rng=self.rng, local_address=self.address
        )
        kind = (
            CiphertextMessageType.PREKEY
            if isinstance(m, PreKeySignalMessage)
            else CiphertextMessageType.WHISPER
        )
        return kind, m.to_bytes()

    def decrypt(self, frm: Party, wire: tuple[CiphertextMessageType, bytes]) -> bytes:
        return cipher.message_decrypt(
            wire[1], wire[0], frm.address, self.store, now=NOW, rng=self.rng,
            local_address=self.address,
        )  # fmt: skip

    def spqr(self, peer: Party) -> Any:
        record = self.store.load_session(peer.address)
        assert record is not None and record.current is not None
        return record.current.spqr


def established(seed: bytes = b"bench") -> tuple[Party, Party]:
    alice = Party("9d0652a3-dcc3-4d11-975f-74d61598733f", seed + b"/a")
    bob = Party("796abedb-ca4e-4f18-8803-1fde5b921f9f", seed + b"/b")
    cipher.process_prekey_bundle(
        bob.bundle(), bob.address, alice.store, now=NOW, rng=alice.rng,
        local_address=alice.address,
    )  # fmt: skip
    assert bob.decrypt(alice, alice.encrypt(bob, b"hi")) == b"hi"
    assert alice.decrypt(bob, bob.encrypt(alice, b"hi")) == b"hi"
    return alice, bob


def round_trip(sender: Party, receiver: Party) -> bytes:
    return receiver.decrypt(sender, sender.encrypt(receiver, PLAINTEXT))


def conversation(turn: int) -> tuple[Callable[[], bytes], Callable[[], int]]:
    """A step function (one 100 B message per call, sides swap every ``turn`` messages) and
    a function returning the epoch reached."""
    alice, bob = established(f"turn{turn}".encode())
    count = [0]

    def step() -> bytes:
        n = count[0]
        count[0] = n + 1
        if (n // turn) % 2 == 0:
            return round_trip(alice, bob)
        return round_trip(bob, alice)

    return step, lambda: int(alice.spqr(bob).epoch)


def test_round_trip_same_chain(benchmark: Any) -> None:
    alice, bob = established()
    assert benchmark(round_trip, alice, bob) == PLAINTEXT


def test_round_trip_conversation(benchmark: Any) -> None:
    step, epoch = conversation(8)
    benchmark.pedantic(step, rounds=3000, iterations=1, warmup_rounds=20)
    benchmark.extra_info["epoch_reached"] = epoch()
    assert benchmark.disabled or epoch() >= 5  # --benchmark-disable runs the step once


def test_round_trip_ping_pong(benchmark: Any) -> None:
    step, epoch = conversation(1)
    benchmark.pedantic(step, rounds=3000, iterations=1, warmup_rounds=20)
    benchmark.extra_info["epoch_reached"] = epoch()
    assert benchmark.disabled or epoch() >= 5  # --benchmark-disable runs the step once


def test_epoch_completing_message(benchmark: Any) -> None:
    """Alice (send_ek) holds 4 of 5 ct2 chunks; Bob's next message completes epoch 1."""
    alice, bob = established(b"complete")
    while True:
        wire = bob.encrypt(alice, PLAINTEXT)
        st = alice.spqr(bob)
        if st.state_name == "ek_sent_ct1_received" and st.epoch == 1:
            before = alice.store.load_session(bob.address)
            alice.decrypt(bob, wire)
            if alice.spqr(bob).epoch == 2:
                break
            continue
        alice.decrypt(bob, wire)
        bob.decrypt(alice, alice.encrypt(bob, PLAINTEXT))
    assert before is not None

    def setup() -> tuple[tuple[Party, tuple[CiphertextMessageType, bytes]], dict[str, Any]]:
        alice.store.store_session(bob.address, before)
        return (bob, wire), {}

    assert benchmark.pedantic(alice.decrypt, setup=setup, rounds=200) == PLAINTEXT
    assert alice.spqr(bob).epoch == 2
