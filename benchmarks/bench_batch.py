"""Batched durable commits: per-message cost of decrypting a batch, SQLite on disk vs in memory.

Run: ``python -m pytest benchmarks/bench_batch.py --benchmark-only`` and divide each median by
its batch size (``extra_info["batch"]``): the per-message cost. All variants run in the same
run, so their ratios are what to compare.

One round decrypts a fresh batch of ``N`` = 32 or 128 Whisper messages (100 B, one sender,
one chain; encrypting them is untimed setup) on Bob's side:

* ``memory_loop``: :func:`securemsg.message_decrypt` per message on the in-memory store (the
  in-memory path, the reference);
* ``sqlite_each``: the same loop on :class:`~securemsg.SqliteProtocolStore`, a file on disk
  (``synchronous=FULL``, WAL): one durable transaction (one fsync) per message;
* ``sqlite_batch``: :func:`securemsg.message_decrypt_batch` on the same kind of file: one
  transaction for the whole batch;
* ``memory_batch``: :func:`securemsg.message_decrypt_batch` on the in-memory store (the cost
  of the staging itself).

Aim: ``sqlite_batch`` within 2x of ``memory_loop`` per message. The database files live in a
temporary directory on disk (never ``/dev/shm``): the fsync is part of what is measured.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from securemsg import cipher
from securemsg.batch import message_decrypt_batch
from securemsg.crypto.rng import DeterministicRng
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
from securemsg.wire.messages import CiphertextMessageType

Benchmark = Any
PT = b"\x61" * 100
NOW = 1_760_000_000_000
ALICE = ProtocolAddress("9d0652a3-dcc3-4d11-975f-74d61598733f", 1)
BOB = ProtocolAddress("796abedb-ca4e-4f18-8803-1fde5b921f9f", 1)
RNG = DeterministicRng(b"bench batch")
WHISPER = CiphertextMessageType.WHISPER
ROUNDS = {32: 60, 128: 20}

Batch = list[tuple[bytes, CiphertextMessageType, ProtocolAddress]]


def _disk_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="securemsg-bench-batch-"))
    assert not str(path.resolve()).startswith("/dev/shm"), "the benchmark needs a real disk"
    return path


class _Pair:
    def __init__(self, sqlite: bool) -> None:
        seed = DeterministicRng(b"bench batch keys")
        ik_a, ik_b = IdentityKeyPair.generate(seed), IdentityKeyPair.generate(seed)
        self.alice: ProtocolStore = InMemoryProtocolStore(ik_a, 1)
        self.bob: ProtocolStore
        if sqlite:
            self.bob = SqliteProtocolStore.open(_disk_dir() / "bob.db", ik_b, 2)
        else:
            self.bob = InMemoryProtocolStore(ik_b, 2)
        spk = SignedPreKeyRecord.generate(1, ik_b, NOW, RNG)
        kpk = KyberPreKeyRecord.generate(1, ik_b, NOW, RNG)
        opk = PreKeyRecord.generate(1, RNG)
        self.bob.save_signed_pre_key(1, spk)
        self.bob.save_kyber_pre_key(1, kpk)
        self.bob.save_pre_key(1, opk)
        bundle = PreKeyBundle(
            2, 1, 1, opk.public_key, 1, spk.public_key, spk.signature,
            ik_b.identity_key, 1, kpk.public_key, kpk.signature,
        )  # fmt: skip
        cipher.process_prekey_bundle(bundle, BOB, self.alice, now=NOW, rng=RNG, local_address=ALICE)
        for _ in range(3):  # past the PreKey phase, both directions
            self.decrypt_each(self.make(1))
            reply = cipher.message_encrypt(
                b"r", ALICE, self.bob, now=NOW, rng=RNG, local_address=BOB
            )
            cipher.message_decrypt(
                reply.to_bytes(), WHISPER, BOB, self.alice, now=NOW, rng=RNG, local_address=ALICE
            )

    def make(self, n: int) -> Batch:
        out: Batch = []
        for _ in range(n):
            m = cipher.message_encrypt(PT, BOB, self.alice, now=NOW, rng=RNG, local_address=ALICE)
            out.append((m.to_bytes(), m.message_type, ALICE))
        return out

    def decrypt_each(self, batch: Batch) -> int:
        for ct, mt, addr in batch:
            cipher.message_decrypt(ct, mt, addr, self.bob, now=NOW, rng=RNG, local_address=BOB)
        return len(batch)

    def decrypt_batch(self, batch: Batch) -> int:
        out = message_decrypt_batch(batch, self.bob, now=NOW, rng=RNG, local_address=BOB)
        assert all(p == PT for p in out)
        return len(out)


def _run(benchmark: Benchmark, n: int, sqlite: bool, fn: Callable[[_Pair, Batch], int]) -> None:
    pair = _Pair(sqlite)
    benchmark.extra_info["batch"] = n

    def setup() -> tuple[tuple[Batch], dict[str, Any]]:
        return (pair.make(n),), {}

    result = benchmark.pedantic(
        lambda batch: fn(pair, batch), setup=setup, rounds=ROUNDS[n], iterations=1
    )
    assert result == n
    if isinstance(pair.bob, SqliteProtocolStore):
        pair.bob.close()


SIZES = pytest.mark.parametrize("n", [32, 128])


@SIZES
def test_memory_loop(benchmark: Benchmark, n: int) -> None:
    _run(benchmark, n, False, _Pair.decrypt_each)


@SIZES
def test_memory_batch(benchmark: Benchmark, n: int) -> None:
    _run(benchmark, n, False, _Pair.decrypt_batch)


@SIZES
def test_sqlite_batch(benchmark: Benchmark, n: int) -> None:
    _run(benchmark, n, True, _Pair.decrypt_batch)


@SIZES
def test_sqlite_each(benchmark: Benchmark, n: int) -> None:
    _run(benchmark, n, True, _Pair.decrypt_each)
