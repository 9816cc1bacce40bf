"""cipher.py session management: archiving and promotion (Sesame), prekey bookkeeping,
simultaneous initiation, self-sessions, and persistence through the SQLite store."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

import pytest
from session_parties import (
    ALICE_ADDRESS,
    BOB_ADDRESS,
    Party,
    established_pair,
    new_pair,
    new_party,
)

from securemsg.errors import InvalidPreKeyError, MessageGapTooLargeError
from securemsg.limits import Limits
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.identity_and_prekeys import IdentityKey
from securemsg.protocol.session_record import SessionRecord
from securemsg.store.base import Direction
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.store.sqlite import SqliteProtocolStore
from securemsg.wire.messages import PreKeySignalMessage, SignalMessage


def _record(p: Party, other: Party) -> SessionRecord:
    rec = p.store.load_session(other.address)
    assert rec is not None
    return rec


def test_prekeys_are_consumed_once_and_repeats_reuse_the_session() -> None:
    alice, bob = new_pair()
    alice.start_session(bob)
    (pk_id,) = bob.prekeys
    m1, m2 = alice.encrypt(bob, b"1"), alice.encrypt(bob, b"2")
    assert isinstance(m1, PreKeySignalMessage) and isinstance(m2, PreKeySignalMessage)
    assert bob.decrypt(alice, m1) == b"1"
    with pytest.raises(InvalidPreKeyError):
        bob.store.get_pre_key(pk_id)
    with pytest.raises(InvalidPreKeyError):  # one-time Kyber prekey removed
        bob.store.get_kyber_pre_key(m1.kyber_pre_key_id)
    assert bob.decrypt(alice, m2) == b"2"  # same base key: the existing session
    assert len(_record(bob, alice).previous_sessions) == 0


def test_replayed_prekey_message_with_last_resort_key_is_refused() -> None:
    alice, bob = new_pair()
    alice.start_session(bob, bob.publish_bundle(one_time=False, last_resort=True))
    msg = alice.encrypt(bob, b"x")
    assert bob.decrypt(alice, msg) == b"x"
    bob.store.remove_session(alice.address)
    with pytest.raises(InvalidPreKeyError):
        bob.decrypt(alice, msg)
    assert bob.store.load_session(alice.address) is None  # the transaction rolled back


def test_new_session_archives_the_old_one_and_late_messages_promote_it() -> None:
    alice, bob = established_pair()
    late = alice.encrypt(bob, b"late, old session")
    alice.start_session(bob)  # Alice resets: new PQXDH session
    assert len(_record(alice, bob).previous_sessions) == 1
    assert bob.decrypt(alice, alice.encrypt(bob, b"new")) == b"new"
    assert len(_record(bob, alice).previous_sessions) == 1
    new_base = _record(bob, alice).current.alice_base_key  # type: ignore[union-attr]
    assert bob.decrypt(alice, late) == b"late, old session"
    # Sesame: the old session that worked is current again, the new one archived
    rec = _record(bob, alice)
    assert rec.current is not None and rec.current.alice_base_key != new_base
    assert len(rec.previous_sessions) == 1


def test_archive_keeps_at_most_the_limit_newest_first() -> None:
    limits = Limits(archived_states_max_length=3)
    alice, bob = new_pair(limits)
    bases = []
    for _ in range(6):
        alice.start_session(bob)
        bases.append(_record(alice, bob).current.alice_base_key)  # type: ignore[union-attr]
    rec = _record(alice, bob)
    assert len(rec.previous_sessions) == 3
    archived = [s.alice_base_key for _, s in rec.previous_states() if s is not None]
    assert archived == bases[-2:-5:-1]
    assert all(s is not None and s.pending is None for _, s in rec.previous_states())


def test_repeated_prekey_message_promotes_its_archived_session() -> None:
    alice, bob = new_pair()
    alice.start_session(bob)
    first = alice.encrypt(bob, b"first")
    again = alice.encrypt(bob, b"again")
    assert bob.decrypt(alice, first) == b"first"
    # Bob meanwhile gets a different session from Alice's second device state
    alice2 = new_party(b"alice-2", ALICE_ADDRESS, store=alice.store)
    alice2.start_session(bob)
    assert bob.decrypt(alice, alice2.encrypt(bob, b"other")) == b"other"
    assert len(_record(bob, alice).previous_sessions) == 1
    assert bob.decrypt(alice, again) == b"again"  # matched by base key, promoted
    assert _record(bob, alice).current.alice_base_key == again.base_key.to_bytes()  # type: ignore[union-attr]


def test_simultaneous_initiation_converges() -> None:
    alice, bob = new_pair()
    alice.start_session(bob)
    bob.start_session(alice)
    a1, b1 = alice.encrypt(bob, b"from alice"), bob.encrypt(alice, b"from bob")
    assert bob.decrypt(alice, a1) == b"from alice"
    assert alice.decrypt(bob, b1) == b"from bob"
    for i in range(4):
        assert bob.decrypt(alice, alice.encrypt(bob, b"a%d" % i)) == b"a%d" % i
        assert alice.decrypt(bob, bob.encrypt(alice, b"b%d" % i)) == b"b%d" % i
    assert isinstance(alice.encrypt(bob, b"x"), SignalMessage)


def test_self_session_has_no_forward_jump_limit() -> None:
    limits = Limits(max_forward_jumps=3)
    me1 = new_party(b"me", ProtocolAddress(ALICE_ADDRESS.name, 1), limits=limits)
    ik = me1.store.get_identity_key_pair()
    me2 = new_party(
        b"me2",
        ProtocolAddress(ALICE_ADDRESS.name, 2),
        limits=limits,
        store=InMemoryProtocolStore(ik, 77),
    )
    me1.start_session(me2)
    msgs = [me1.encrypt(me2, b"%d" % i) for i in range(8)]
    assert me2.decrypt(me1, msgs[7]) == b"7"
    # a different account with the same limits is held to them
    alice, bob = established_pair(limits)
    far = [alice.encrypt(bob, b"x") for _ in range(5)]
    with pytest.raises(MessageGapTooLargeError):
        bob.decrypt(alice, far[4])


def test_conversation_survives_reopening_sqlite_stores(tmp_path: Path) -> None:
    seed_alice, seed_bob = new_pair()
    a_path, b_path = tmp_path / "alice.db", tmp_path / "bob.db"

    def open_pair(first: bool) -> tuple[Party, Party]:
        if first:
            a_store = SqliteProtocolStore.open(
                a_path, seed_alice.store.get_identity_key_pair(), 1111
            )
            b_store = SqliteProtocolStore.open(b_path, seed_bob.store.get_identity_key_pair(), 2222)
        else:
            a_store, b_store = SqliteProtocolStore.open(a_path), SqliteProtocolStore.open(b_path)
        return (
            Party(a_store, ALICE_ADDRESS, seed_alice.rng),
            Party(b_store, BOB_ADDRESS, seed_bob.rng, next_id=50),
        )

    alice, bob = open_pair(True)
    alice.start_session(bob)
    pending = alice.encrypt(bob, b"first")
    for s in (alice.store, bob.store):
        s.close()  # type: ignore[attr-defined]

    alice, bob = open_pair(False)
    assert bob.decrypt(alice, pending) == b"first"
    late = bob.encrypt(alice, b"late reply")
    for i in range(3):
        assert alice.decrypt(bob, bob.encrypt(alice, b"r%d" % i)) == b"r%d" % i
        assert bob.decrypt(alice, alice.encrypt(bob, b"s%d" % i)) == b"s%d" % i
    for s in (alice.store, bob.store):
        s.close()  # type: ignore[attr-defined]

    alice, bob = open_pair(False)
    assert alice.decrypt(bob, late) == b"late reply"  # skipped key persisted as a seed
    assert bob.decrypt(alice, alice.encrypt(bob, b"after reopen")) == b"after reopen"
    rec = alice.store.load_session(bob.address)
    assert rec is not None and SessionRecord.from_bytes(rec.to_bytes()) == rec
    for s in (alice.store, bob.store):
        s.close()  # type: ignore[attr-defined]


class _CountingStore(InMemoryProtocolStore):
    """Counts the identity writes and transactions the cipher asks for."""

    saves = 0
    transactions = 0

    def save_identity(self, address: ProtocolAddress, identity_key: IdentityKey) -> bool:
        self.saves += 1
        return super().save_identity(address, identity_key)

    def transaction(self) -> AbstractContextManager[None]:
        self.transactions += 1
        return super().transaction()


def _counting_party(seed: bytes, address: ProtocolAddress) -> Party:
    plain = new_party(seed, address)
    store = _CountingStore(
        plain.store.get_identity_key_pair(), plain.store.get_local_registration_id()
    )
    return new_party(seed, address, store=store)


def test_established_session_commits_only_the_session() -> None:
    alice = _counting_party(b"alice", ALICE_ADDRESS)
    bob = _counting_party(b"bob", BOB_ADDRESS)
    alice.start_session(bob)
    assert bob.decrypt(alice, alice.encrypt(bob, b"1")) == b"1"
    assert alice.decrypt(bob, bob.encrypt(alice, b"2")) == b"2"
    a_store, b_store = alice.store, bob.store
    assert isinstance(a_store, _CountingStore) and isinstance(b_store, _CountingStore)
    before = (a_store.saves, a_store.transactions, b_store.saves, b_store.transactions)
    for i in range(5):
        assert bob.decrypt(alice, alice.encrypt(bob, b"m%d" % i)) == b"m%d" % i
    # The identity is already saved: each message is one session write, no transaction.
    assert (a_store.saves, a_store.transactions, b_store.saves, b_store.transactions) == before


def test_identity_trusted_by_policy_but_not_saved_is_saved_with_the_session() -> None:
    class _TrustEveryone(_CountingStore):
        def is_trusted_identity(
            self, address: ProtocolAddress, identity_key: IdentityKey, direction: Direction
        ) -> bool:
            return True

    alice, bob = established_pair()
    seed_store = bob.store
    store = _TrustEveryone(
        seed_store.get_identity_key_pair(), seed_store.get_local_registration_id()
    )
    record = seed_store.load_session(alice.address)
    assert record is not None
    store.store_session(alice.address, record)  # the session, but no saved identity
    bob = new_party(b"bob", BOB_ADDRESS, store=store)
    assert bob.decrypt(alice, alice.encrypt(bob, b"x")) == b"x"
    assert store.saves == 1 and store.transactions >= 1
    assert store.get_identity(alice.address) == record.current.remote_identity_key  # type: ignore[union-attr]
