"""1:1 session benchmarks (cipher.py with the in-memory store), next to the floor in one run.

Run: ``python -m pytest benchmarks/bench_session.py --benchmark-only`` and compare medians:
ratios to ``test_floor_*`` are what is stable across machines (absolute times drift with load).

Scenarios (libsignal ``rust/protocol/benches/session.rs`` / vodozemac ``benches/``):

* ``session_setup``: Bob's bundle already published; Alice ``process_prekey_bundle`` + encrypt,
  Bob decrypts the PreKey message (PQXDH both sides, Kyber1024, first SPQR message).
* ``encrypt_existing_chain``: Alice encrypts on her current sending chain.
* ``decrypt_first_on_chain``: Bob decrypts a message that carries a new ratchet key (DH step).
* ``ping_pong``: round trips alternating direction (every message a DH ratchet step).
* ``ratchet_forward[N]``: Bob decrypts a message N = 100 / 1000 ahead on Alice's chain (N
  skipped message keys derived and kept; the N undelivered encryptions are untimed setup).
* ``rt_100`` / ``rt_64k``: Alice encrypts, Bob decrypts, same chain (steady one-way traffic);
  ``rt_100_sqlite`` the same with both parties on :class:`SqliteProtocolStore` (``:memory:``).
* ``floor_rt_100`` / ``floor_ping_pong``: the minimum Python work of the same messages
  (:mod:`benchmarks.floor`). Aim: ``rt_100`` <= 1.5x ``floor_rt_100``.

The whole message path is timed, including wire bytes (``to_bytes`` / parse), the store's
load/transaction/save and the SPQR ratchet (which, with one-way traffic, keeps sending
erasure-coded chunks of its KEM exchange).
"""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks.floor import FloorPair
from securemsg import cipher
from securemsg.crypto.rng import DeterministicRng, SystemRng
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.identity_and_prekeys import (
    IdentityKeyPair,
    KyberPreKeyRecord,
    PreKeyBundle,
    PreKeyRecord,
    SignedPreKeyRecord,
)
from securemsg.store.base import ProtocolStore
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.store.sqlite import SqliteProtocolStore
from securemsg.wire.messages import CiphertextMessageType, PreKeySignalMessage

PT_100 = b"\x61" * 100
PT_64K = b"\x62" * 65536
NOW = 1_760_000_000_000
ALICE = ProtocolAddress("9d0652a3-dcc3-4d11-975f-74d61598733f", 1)
BOB = ProtocolAddress("796abedb-ca4e-4f18-8803-1fde5b921f9f", 1)
WHISPER = CiphertextMessageType.WHISPER
PREKEY = CiphertextMessageType.PREKEY
RNG = SystemRng()


class Pair:
    """Alice and Bob with in-memory stores; :meth:`establish` makes both send Whispers."""

    def __init__(self, sqlite: bool = False) -> None:
        seed = DeterministicRng(b"bench keys")
        ik_a, ik_b = IdentityKeyPair.generate(seed), IdentityKeyPair.generate(seed)
        self.alice: ProtocolStore
        self.bob: ProtocolStore
        if sqlite:
            self.alice = SqliteProtocolStore.open(":memory:", ik_a, 1)
            self.bob = SqliteProtocolStore.open(":memory:", ik_b, 2)
        else:
            self.alice = InMemoryProtocolStore(ik_a, 1)
            self.bob = InMemoryProtocolStore(ik_b, 2)
        self.next_id = 1

    def bundle(self) -> PreKeyBundle:
        ik = self.bob.get_identity_key_pair()
        i = self.next_id
        self.next_id += 1
        spk = SignedPreKeyRecord.generate(i, ik, NOW, RNG)
        kpk = KyberPreKeyRecord.generate(i, ik, NOW, RNG)
        opk = PreKeyRecord.generate(i, RNG)
        self.bob.save_signed_pre_key(i, spk)
        self.bob.save_kyber_pre_key(i, kpk)
        self.bob.save_pre_key(i, opk)
        return PreKeyBundle(
            2, 1, i, opk.public_key, i, spk.public_key, spk.signature,
            ik.identity_key, i, kpk.public_key, kpk.signature,
        )  # fmt: skip

    def a2b(self, pt: bytes) -> bytes:
        m = cipher.message_encrypt(pt, BOB, self.alice, now=NOW, rng=RNG, local_address=ALICE)
        t = PREKEY if isinstance(m, PreKeySignalMessage) else WHISPER
        return cipher.message_decrypt(
            m.to_bytes(), t, ALICE, self.bob, now=NOW, rng=RNG, local_address=BOB
        )

    def b2a(self, pt: bytes) -> bytes:
        m = cipher.message_encrypt(pt, ALICE, self.bob, now=NOW, rng=RNG, local_address=BOB)
        return cipher.message_decrypt(
            m.to_bytes(), WHISPER, BOB, self.alice, now=NOW, rng=RNG, local_address=ALICE
        )

    def establish(self) -> Pair:
        cipher.process_prekey_bundle(
            self.bundle(), BOB, self.alice, now=NOW, rng=RNG, local_address=ALICE
        )
        for _ in range(3):
            assert self.a2b(b"hi") == b"hi"
            assert self.b2a(b"hi") == b"hi"
        return self


# -- the floor, in the same run ------------------------------------------------------------------


def test_floor_rt_100(benchmark: Any) -> None:
    pair = FloorPair()
    assert benchmark(pair.round_trip, PT_100) == PT_100


def test_floor_rt_64k(benchmark: Any) -> None:
    pair = FloorPair()
    assert benchmark(pair.round_trip, PT_64K) == PT_64K


def test_floor_ping_pong(benchmark: Any) -> None:
    pair = FloorPair()
    assert benchmark(pair.ping_pong, PT_100) == PT_100


# -- securemsg -----------------------------------------------------------------------------------


def test_rt_100(benchmark: Any) -> None:
    pair = Pair().establish()
    assert benchmark(pair.a2b, PT_100) == PT_100


def test_rt_100_sqlite(benchmark: Any) -> None:
    """The same round trip with both parties on SQLite (``:memory:``): record codec + SQL."""
    pair = Pair(sqlite=True).establish()
    assert benchmark(pair.a2b, PT_100) == PT_100


def test_rt_64k(benchmark: Any) -> None:
    pair = Pair().establish()
    assert benchmark(pair.a2b, PT_64K) == PT_64K


def test_ping_pong(benchmark: Any) -> None:
    pair = Pair().establish()
    turn = [False]

    def one() -> bytes:
        turn[0] = not turn[0]
        return pair.a2b(PT_100) if turn[0] else pair.b2a(PT_100)

    assert benchmark(one) == PT_100


def test_encrypt_existing_chain(benchmark: Any) -> None:
    pair = Pair().establish()
    benchmark(
        cipher.message_encrypt, PT_100, BOB, pair.alice, now=NOW, rng=RNG, local_address=ALICE
    )


def test_decrypt_first_on_chain(benchmark: Any) -> None:
    pair = Pair().establish()

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        pair.b2a(b"turn")  # Alice now has a new chain towards Bob's new key
        m = cipher.message_encrypt(PT_100, BOB, pair.alice, now=NOW, rng=RNG, local_address=ALICE)
        return (m.to_bytes(), WHISPER, ALICE, pair.bob), {
            "now": NOW,
            "rng": RNG,
            "local_address": BOB,
        }

    out = benchmark.pedantic(cipher.message_decrypt, setup=setup, rounds=300, iterations=1)
    assert out == PT_100


@pytest.mark.parametrize("n", [100, 1000])
def test_ratchet_forward(benchmark: Any, n: int) -> None:
    pair = Pair().establish()

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        for _ in range(n):
            cipher.message_encrypt(PT_100, BOB, pair.alice, now=NOW, rng=RNG, local_address=ALICE)
        m = cipher.message_encrypt(PT_100, BOB, pair.alice, now=NOW, rng=RNG, local_address=ALICE)
        return (m.to_bytes(), WHISPER, ALICE, pair.bob), {
            "now": NOW,
            "rng": RNG,
            "local_address": BOB,
        }

    out = benchmark.pedantic(cipher.message_decrypt, setup=setup, rounds=10, iterations=1)
    assert out == PT_100


def test_session_setup(benchmark: Any) -> None:
    pair = Pair()

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (pair.bundle(),), {}

    def run(bundle: PreKeyBundle) -> bytes:
        cipher.process_prekey_bundle(bundle, BOB, pair.alice, now=NOW, rng=RNG, local_address=ALICE)
        return pair.a2b(b"first")

    assert benchmark.pedantic(run, setup=setup, rounds=40, iterations=1) == b"first"
