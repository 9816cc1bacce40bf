"""Sessions per (name, device) and opaque sender-key records per (sender, distribution id)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from securemsg.errors import UsageError
from securemsg.protocol.address import ProtocolAddress

ALICE = ProtocolAddress("alice", 1)
ALICE_2 = ProtocolAddress("alice", 2)
BOB = ProtocolAddress("bob", 1)
DIST_A = uuid.UUID("d1d1d1d1-0000-4000-8000-000000000001")
DIST_B = uuid.UUID("d1d1d1d1-0000-4000-8000-000000000002")


def test_sessions_load_store_replace(store: Any, records: Any) -> None:
    assert store.load_session(ALICE) is None
    store.store_session(ALICE, records.session(1))
    store.store_session(ALICE_2, records.session(2))
    assert store.load_session(ALICE).to_bytes() == records.session(1).to_bytes()
    assert store.load_session(ALICE_2).to_bytes() == records.session(2).to_bytes()
    assert store.load_session(BOB) is None
    store.store_session(ALICE, records.session(3))
    assert store.load_session(ALICE).to_bytes() == records.session(3).to_bytes()


def test_session_device_ids_and_removal(store: Any, records: Any) -> None:
    store.store_session(ALICE_2, records.session(2))
    store.store_session(ALICE, records.session(1))
    store.store_session(BOB, records.session(3))
    assert store.get_session_device_ids("alice") == [1, 2]
    store.remove_session(ALICE)
    store.remove_session(ALICE)  # absent: no-op
    assert store.load_session(ALICE) is None
    assert store.get_session_device_ids("alice") == [2]
    assert store.get_session_device_ids("carol") == []


def test_sender_keys_are_per_sender_device_and_distribution(store: Any) -> None:
    assert store.load_sender_key(ALICE, DIST_A) is None
    store.store_sender_key(ALICE, DIST_A, b"record-a")
    store.store_sender_key(ALICE, DIST_B, bytearray(b"record-b"))
    store.store_sender_key(ALICE_2, DIST_A, b"record-a2")
    assert store.load_sender_key(ALICE, DIST_A) == b"record-a"
    assert store.load_sender_key(ALICE, DIST_B) == b"record-b"
    assert type(store.load_sender_key(ALICE, DIST_B)) is bytes
    assert store.load_sender_key(ALICE_2, DIST_A) == b"record-a2"
    assert store.load_sender_key(BOB, DIST_A) is None
    store.store_sender_key(ALICE, DIST_A, b"")
    assert store.load_sender_key(ALICE, DIST_A) == b""


def test_sender_key_argument_types_are_checked(store: Any) -> None:
    with pytest.raises(UsageError):
        store.store_sender_key(ALICE, str(DIST_A), b"x")
    with pytest.raises(UsageError):
        store.store_sender_key(ALICE, DIST_A, "not bytes")
    with pytest.raises(UsageError):
        store.load_sender_key(ALICE, str(DIST_A))


def test_memory_store_keeps_the_record_objects_it_was_given(records: Any) -> None:
    """Records are values (never mutated in place), so no copy or serialization is needed."""
    from securemsg.store.memory import InMemoryProtocolStore

    store = InMemoryProtocolStore(records.identity_key_pair(), 1)
    record = records.session(1)
    store.store_session(ALICE, record)
    assert store.load_session(ALICE) is record
