"""Batched durable commits (sync): one transaction per batch, compute-then-commit per message."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from aio_parties import ALICE, BOB, NOW, PREKEY, WHISPER, memory_store, publish, rng, snapshot

from securemsg import cipher
from securemsg.batch import message_decrypt_batch, message_encrypt_batch
from securemsg.errors import (
    DuplicateMessageError,
    InvalidMessageError,
    InvalidPreKeyError,
    NoSessionError,
    StorageError,
    UsageError,
)
from securemsg.protocol.address import ProtocolAddress
from securemsg.store.base import ProtocolStore
from securemsg.store.sqlite import SqliteProtocolStore
from securemsg.wire.messages import CiphertextMessageType

from aio_parties import ALICE_ID, BOB_ID  # isort: skip


class CountingSqlite(SqliteProtocolStore):
    """The SQLite store, counting outermost transactions (each one is one durable commit)."""

    __slots__ = ("commits", "fail_sessions")

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.commits = 0
        self.fail_sessions = False

    def store_session(self, address: object, record: object) -> None:
        if self.fail_sessions:
            raise StorageError("disk full")
        super().store_session(address, record)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        outer = self._depth == 0
        with super().transaction():
            yield
        if outer:
            self.commits += 1


def _stores(kind: str, tmp: Path) -> tuple[ProtocolStore, ProtocolStore]:
    if kind == "memory":
        return memory_store(ALICE), memory_store(BOB)
    alice = CountingSqlite.open(tmp / "alice.db", ALICE_ID, 1111)
    bob = CountingSqlite.open(tmp / "bob.db", BOB_ID, 2222)
    return alice, bob


def _established(kind: str, tmp: Path) -> tuple[ProtocolStore, ProtocolStore]:
    alice, bob = _stores(kind, tmp)
    r = rng("establish")
    cipher.process_prekey_bundle(
        publish(bob, BOB, 1), BOB, alice, now=NOW, rng=r, local_address=ALICE
    )
    first = cipher.message_encrypt(b"hi", BOB, alice, now=NOW, rng=r, local_address=ALICE)
    cipher.message_decrypt(first.to_bytes(), PREKEY, ALICE, bob, now=NOW, rng=r, local_address=BOB)
    reply = cipher.message_encrypt(b"yo", ALICE, bob, now=NOW, rng=r, local_address=BOB)
    cipher.message_decrypt(
        reply.to_bytes(), WHISPER, BOB, alice, now=NOW, rng=r, local_address=ALICE
    )
    return alice, bob


def _send(
    alice: ProtocolStore, n: int
) -> list[tuple[bytes, CiphertextMessageType, ProtocolAddress]]:
    r = rng("send")
    out = []
    for i in range(n):
        m = cipher.message_encrypt(b"m%d" % i, BOB, alice, now=NOW, rng=r, local_address=ALICE)
        out.append((m.to_bytes(), m.message_type, ALICE))
    return out


KINDS = ["memory", "sqlite"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_batch_decrypts_in_order_with_one_commit(kind: str, tmp_path: Path) -> None:
    alice, bob = _established(kind, tmp_path)
    batch = _send(alice, 20)
    if isinstance(bob, CountingSqlite):
        bob.commits = 0
    out = message_decrypt_batch(batch, bob, now=NOW, rng=rng("b"), local_address=BOB)
    assert out == [b"m%d" % i for i in range(20)]
    if isinstance(bob, CountingSqlite):
        assert bob.commits == 1
    # The committed state is the advanced one: the batch again is all duplicates.
    again = message_decrypt_batch(batch, bob, now=NOW, rng=rng("b"), local_address=BOB)
    assert all(isinstance(e, DuplicateMessageError) for e in again)


@pytest.mark.parametrize("kind", KINDS)
def test_a_failed_message_leaves_no_trace_and_does_not_spoil_the_batch(
    kind: str, tmp_path: Path
) -> None:
    alice, bob = _established(kind, tmp_path)
    batch = _send(alice, 6)
    original = batch[2]
    bad = bytearray(batch[2][0])
    bad[-3] ^= 1  # MAC failure
    batch[2] = (bytes(bad), WHISPER, ALICE)
    batch.insert(4, (batch[1][0], WHISPER, ALICE))  # a duplicate inside the batch
    batch.insert(0, (b"\x00garbage", WHISPER, ALICE))
    out = message_decrypt_batch(batch, bob, now=NOW, rng=rng("b"), local_address=BOB)
    assert isinstance(out[0], Exception)
    assert out[1:3] == [b"m0", b"m1"]
    assert isinstance(out[3], InvalidMessageError)
    assert out[4] == b"m3"
    assert isinstance(out[5], DuplicateMessageError)
    assert out[6:] == [b"m4", b"m5"]
    # The failed message changed nothing: its intact copy still decrypts afterwards.
    late = message_decrypt_batch([original], bob, now=NOW, rng=rng("b"), local_address=BOB)
    assert late == [b"m2"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_batch_of_only_failures_changes_nothing(kind: str, tmp_path: Path) -> None:
    alice, bob = _established(kind, tmp_path)
    batch = _send(alice, 3)
    before = snapshot(bob)
    hostile = [(ct[:-1] + bytes([ct[-1] ^ 0xFF]), t, a) for ct, t, a in batch]
    hostile.append((batch[0][0], PREKEY, ALICE))  # wrong type
    out = message_decrypt_batch(hostile, bob, now=NOW, rng=rng("b"), local_address=BOB)
    assert all(isinstance(e, Exception) for e in out)
    assert snapshot(bob) == before


@pytest.mark.parametrize("kind", KINDS)
def test_a_new_session_and_its_messages_in_one_batch(kind: str, tmp_path: Path) -> None:
    alice, bob = _stores(kind, tmp_path)
    r = rng("new")
    cipher.process_prekey_bundle(
        publish(bob, BOB, 7), BOB, alice, now=NOW, rng=r, local_address=ALICE
    )
    batch = _send(alice, 5)
    assert batch[0][1] == PREKEY
    out = message_decrypt_batch(batch, bob, now=NOW, rng=rng("b"), local_address=BOB)
    assert out == [b"m%d" % i for i in range(5)]
    assert bob.get_identity(ALICE) == alice.get_identity_key_pair().identity_key
    with pytest.raises(InvalidPreKeyError):
        bob.get_pre_key(7)  # consumed in the batch's commit


@pytest.mark.parametrize("kind", KINDS)
def test_a_one_time_kyber_key_used_twice_in_a_batch_falls_back_per_message(
    kind: str, tmp_path: Path
) -> None:
    alice, bob = _stores(kind, tmp_path)
    bundle = publish(bob, BOB, 3, one_time=False)
    msgs = []
    for label in ("one", "two"):  # two sessions from the same bundle: same one-time Kyber key
        r = rng(label)
        cipher.process_prekey_bundle(bundle, BOB, alice, now=NOW, rng=r, local_address=ALICE)
        m = cipher.message_encrypt(label.encode(), BOB, alice, now=NOW, rng=r, local_address=ALICE)
        msgs.append((m.to_bytes(), PREKEY, ALICE))
    out = message_decrypt_batch(msgs, bob, now=NOW, rng=rng("b"), local_address=BOB)
    assert out[0] == b"one"
    assert isinstance(out[1], InvalidPreKeyError)


@pytest.mark.parametrize("kind", KINDS)
def test_encrypt_batch_advances_the_session_once_per_message(kind: str, tmp_path: Path) -> None:
    alice, bob = _established(kind, tmp_path)
    if isinstance(alice, CountingSqlite):
        alice.commits = 0
    nobody = ALICE.__class__("nobody", 1)
    items = [(b"e%d" % i, BOB) for i in range(5)]
    items.insert(2, (b"lost", nobody))
    out = message_encrypt_batch(items, alice, now=NOW, rng=rng("e"), local_address=ALICE)
    assert isinstance(out[2], NoSessionError)
    if isinstance(alice, CountingSqlite):
        assert alice.commits == 1
    sent = [m for m in out if not isinstance(m, Exception)]
    got = [
        cipher.message_decrypt(
            m.to_bytes(), m.message_type, ALICE, bob, now=NOW, rng=rng("d"), local_address=BOB
        )
        for m in sent
    ]
    assert got == [b"e%d" % i for i in range(5)]


def test_a_failed_commit_writes_nothing_and_raises(tmp_path: Path) -> None:
    alice, bob = _established("sqlite", tmp_path)
    assert isinstance(bob, CountingSqlite)
    batch = _send(alice, 3)
    before = snapshot(bob)
    bob.fail_sessions = True
    with pytest.raises(StorageError):
        message_decrypt_batch(batch, bob, now=NOW, rng=rng("b"), local_address=BOB)
    bob.fail_sessions = False
    assert snapshot(bob) == before
    out = message_decrypt_batch(batch, bob, now=NOW, rng=rng("b"), local_address=BOB)
    assert out == [b"m0", b"m1", b"m2"]


def test_bad_batch_arguments_are_usage_errors() -> None:
    bob = memory_store(BOB)
    with pytest.raises(UsageError):
        message_decrypt_batch(b"xyz", bob, now=NOW, rng=rng("b"), local_address=BOB)
    with pytest.raises(UsageError):
        message_decrypt_batch([(b"x", WHISPER)], bob, now=NOW, rng=rng("b"), local_address=BOB)
    assert message_decrypt_batch([], bob, now=NOW, rng=rng("b"), local_address=BOB) == []
