"""Sessions per (name, device) and sender-key records per (sender, distribution id)."""

from __future__ import annotations

import sqlite3
import uuid
from typing import Any

import pytest

from securemsg.errors import UsageError
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.sender_keys import SenderKeyRecord
from securemsg.store.sqlite import SqliteProtocolStore

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


def test_sender_keys_are_per_sender_device_and_distribution(store: Any, records: Any) -> None:
    def b(x: Any) -> bytes | None:
        return None if x is None else x.to_bytes()

    assert store.load_sender_key(ALICE, DIST_A) is None
    store.store_sender_key(ALICE, DIST_A, records.sender_key(1))
    store.store_sender_key(ALICE, DIST_B, records.sender_key(2))
    store.store_sender_key(ALICE_2, DIST_A, records.sender_key(3))
    assert b(store.load_sender_key(ALICE, DIST_A)) == records.sender_key(1).to_bytes()
    assert b(store.load_sender_key(ALICE, DIST_B)) == records.sender_key(2).to_bytes()
    assert type(store.load_sender_key(ALICE, DIST_B)) is SenderKeyRecord
    assert b(store.load_sender_key(ALICE_2, DIST_A)) == records.sender_key(3).to_bytes()
    assert store.load_sender_key(BOB, DIST_A) is None
    store.store_sender_key(ALICE, DIST_A, SenderKeyRecord())
    assert b(store.load_sender_key(ALICE, DIST_A)) == SenderKeyRecord().to_bytes()


def test_sender_key_argument_types_are_checked(store: Any, records: Any) -> None:
    with pytest.raises(UsageError):
        store.store_sender_key(ALICE, str(DIST_A), records.sender_key(1))
    with pytest.raises(UsageError):
        store.store_sender_key(ALICE, DIST_A, records.sender_key(1).to_bytes())
    with pytest.raises(UsageError):
        store.load_sender_key(ALICE, str(DIST_A))


def test_memory_store_keeps_the_record_objects_it_was_given(records: Any) -> None:
    """Records are values (never mutated in place), so no copy or serialization is needed."""
    from securemsg.store.memory import InMemoryProtocolStore

    store = InMemoryProtocolStore(records.identity_key_pair(), 1)
    record = records.session(1)
    store.store_session(ALICE, record)
    assert store.load_session(ALICE) is record
    store.store_sender_key(ALICE, DIST_A, records.sender_key(1))
    assert store.load_sender_key(ALICE, DIST_A) is records.sender_key(1)


def test_sqlite_sender_key_cache_never_serves_stale_records(db_path: Any, records: Any) -> None:
    """The decoded record is reused only while the row holds exactly its bytes."""
    store = SqliteProtocolStore.open(db_path, records.identity_key_pair(), 1)
    other = SqliteProtocolStore.open(db_path)
    try:
        store.store_sender_key(ALICE, DIST_A, records.sender_key(1))
        assert store.load_sender_key(ALICE, DIST_A) is records.sender_key(1)
        # another connection replaces the row: the next load decodes the new bytes
        other.store_sender_key(ALICE, DIST_A, records.sender_key(2))
        loaded = store.load_sender_key(ALICE, DIST_A)
        assert loaded is not None
        assert loaded.to_bytes() == records.sender_key(2).to_bytes()
        # a rolled-back write is not served from the cache either
        with pytest.raises(RuntimeError), store.transaction():
            store.store_sender_key(ALICE, DIST_A, records.sender_key(3))
            raise RuntimeError("abort")
        again = store.load_sender_key(ALICE, DIST_A)
        assert again is not None
        assert again.to_bytes() == records.sender_key(2).to_bytes()
        # a row deleted elsewhere reads as absent
        conn = sqlite3.connect(db_path)
        conn.execute("DELETE FROM sender_keys")
        conn.commit()
        conn.close()
        assert store.load_sender_key(ALICE, DIST_A) is None
    finally:
        other.close()
        store.close()


def test_staging_store_stages_session_removal_and_lists_device_ids(
    store: Any, records: Any
) -> None:
    """The session-store methods on a staging store: reads see staged writes, the source is
    untouched until the writes are applied, and then holds the same thing."""
    from securemsg.store.staging import RemoveSession, StagingStore, apply_writes

    store.store_session(ALICE, records.session(1))
    store.store_session(ALICE_2, records.session(2))
    staging = StagingStore(store)
    staging.remove_session(ALICE)
    staging.store_session(ProtocolAddress("alice", 3), records.session(3))
    assert staging.load_session(ALICE) is None
    assert staging.get_session_device_ids("alice") == [2, 3]
    assert store.get_session_device_ids("alice") == [1, 2]  # nothing applied yet
    mark = staging.checkpoint()
    staging.remove_session(ALICE_2)
    assert staging.get_session_device_ids("alice") == [3]
    staging.rollback(mark)
    assert staging.get_session_device_ids("alice") == [2, 3]
    assert any(isinstance(w, RemoveSession) for w in staging.writes())
    apply_writes(store, staging.writes())
    assert store.load_session(ALICE) is None
    assert store.get_session_device_ids("alice") == [2, 3]


def test_staging_store_without_source_asks_for_device_ids(records: Any) -> None:
    from securemsg.store.staging import NotLoaded, StagingStore

    staging = StagingStore()
    with pytest.raises(NotLoaded) as need:
        staging.get_session_device_ids("alice")
    assert (need.value.kind, need.value.args_) == ("session_device_ids", ("alice",))
    staging.provide("session_device_ids", ("alice",), [1, 2])
    staging.remove_session(ALICE)
    assert staging.get_session_device_ids("alice") == [2]


async def _async_session_methods(store: Any, records: Any) -> None:
    from securemsg.aio.store import AsyncStoreAdapter

    adapter = AsyncStoreAdapter(store)
    await adapter.store_session(ALICE, records.session(1))
    await adapter.store_session(ALICE_2, records.session(2))
    assert await adapter.get_session_device_ids("alice") == [1, 2]
    await adapter.remove_session(ALICE)
    assert await adapter.get_session_device_ids("alice") == [2]
    assert await adapter.load_session(ALICE) is None


def test_async_adapter_has_the_session_store_methods(store: Any, records: Any) -> None:
    import asyncio

    asyncio.run(_async_session_methods(store, records))
