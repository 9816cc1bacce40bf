"""SQLite-only behaviour: opening, reopening, restarts, corruption, locking, concurrency."""

from __future__ import annotations

import dataclasses
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from securemsg.errors import PeerError, StorageError, UsageError
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.sender_keys import SenderKeyRecord
from securemsg.records import key_storage as keys_codec
from securemsg.store import sqlite as sqlite_store
from securemsg.store import sqlite_base
from securemsg.store.base import Direction
from securemsg.store.sqlite import SqliteProtocolStore

ALICE = ProtocolAddress("alice", 1)
BOB = ProtocolAddress("bob", 1)
DIST = uuid.UUID("d1d1d1d1-0000-4000-8000-000000000001")
REG_ID = 0x1234


def create(path: Path, records: Any) -> SqliteProtocolStore:
    return SqliteProtocolStore.open(path, records.identity_key_pair(), REG_ID)


def raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def fill(store: SqliteProtocolStore, records: Any) -> None:
    store.save_identity(ALICE, records.identity_key(1))
    store.save_pre_key(1, records.pre_key(1))
    store.save_signed_pre_key(2, records.signed_pre_key(2))
    store.save_kyber_pre_key(3, records.kyber_pre_key(3))
    store.save_kyber_pre_key(4, records.kyber_pre_key(4), last_resort=True)
    store.mark_kyber_pre_key_used(4, 2, records.base_key(1))
    store.store_session(ALICE, records.session(1))
    store.store_sender_key(ALICE, DIST, records.sender_key(1))


def check_filled(store: SqliteProtocolStore, records: Any) -> None:
    assert store.get_identity_key_pair() == records.identity_key_pair()
    assert store.get_local_registration_id() == REG_ID
    assert store.get_identity(ALICE) == records.identity_key(1)
    assert not store.is_trusted_identity(ALICE, records.identity_key(2), Direction.RECEIVING)
    assert store.get_pre_key(1) == records.pre_key(1)
    assert store.get_signed_pre_key(2) == records.signed_pre_key(2)
    assert store.get_kyber_pre_key(3) == records.kyber_pre_key(3)
    assert store.get_kyber_pre_key(4) == records.kyber_pre_key(4)
    assert store.is_last_resort_kyber_pre_key(4)
    assert store.load_session(ALICE).to_bytes() == records.session(1).to_bytes()
    assert store.load_sender_key(ALICE, DIST).to_bytes() == records.sender_key(1).to_bytes()


def test_reopen_after_close_keeps_everything(db_path: Path, records: Any) -> None:
    with create(db_path, records) as store:
        fill(store, records)
    with SqliteProtocolStore.open(db_path) as store:
        check_filled(store, records)
        # the last-resort triple survived as well
        with pytest.raises(Exception, match="replayed"):
            store.mark_kyber_pre_key_used(4, 2, records.base_key(1))
    # reopening with the same identity is fine too
    with SqliteProtocolStore.open(db_path, records.identity_key_pair(), REG_ID) as store:
        check_filled(store, records)


def test_committed_state_survives_a_process_that_dies_without_closing(
    db_path: Path, records: Any
) -> None:
    """A writer process commits, then exits abruptly (os._exit: no close, no cleanup)."""
    script = textwrap.dedent(
        """
        import os, sys, uuid
        from securemsg.crypto.rng import DeterministicRng
        from securemsg.protocol.address import ProtocolAddress
        from securemsg.protocol.identity_and_prekeys import IdentityKeyPair, PreKeyRecord
        from securemsg.protocol.sender_keys import SenderKeyRecord
        from securemsg.store.sqlite import SqliteProtocolStore

        ikp = IdentityKeyPair.generate(DeterministicRng(b"writer" * 6))
        store = SqliteProtocolStore.open(sys.argv[1], ikp, 77)
        store.save_pre_key(5, PreKeyRecord.generate(5, DeterministicRng(b"pk" * 16)))
        with store.transaction():
            store.save_identity(ProtocolAddress("bob", 3), ikp.identity_key)
            store.store_sender_key(ProtocolAddress("bob", 3), uuid.UUID(int=9), SenderKeyRecord())
        sys.stdout.write(ikp.to_bytes().hex())
        sys.stdout.flush()
        os._exit(0)
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(db_path)], capture_output=True, text=True, check=True
    )
    with SqliteProtocolStore.open(db_path) as store:
        assert store.get_identity_key_pair().to_bytes().hex() == done.stdout
        assert store.get_local_registration_id() == 77
        assert store.get_pre_key_ids() == [5]
        assert store.get_pre_key(5).id == 5
        bob = ProtocolAddress("bob", 3)
        assert store.get_identity(bob) == store.get_identity_key_pair().identity_key
        assert store.load_sender_key(bob, uuid.UUID(int=9)) == SenderKeyRecord()


def test_durability_settings(db_path: Path, records: Any) -> None:
    with create(db_path, records) as store:
        assert store._fetchone("PRAGMA journal_mode") == ("wal",)
        assert store._fetchone("PRAGMA synchronous") == (2,)  # FULL


def test_open_argument_rules(db_path: Path, records: Any) -> None:
    with pytest.raises(UsageError):
        SqliteProtocolStore.open(db_path)  # nothing there, no identity to create one
    assert not db_path.exists()
    with pytest.raises(UsageError):
        SqliteProtocolStore.open(db_path, records.identity_key_pair())  # half an identity
    with pytest.raises(UsageError):
        SqliteProtocolStore.open(db_path, None, REG_ID)
    with pytest.raises(UsageError):
        SqliteProtocolStore.open(db_path, records.identity_key_pair(), 0x4000)
    create(db_path, records).close()
    with pytest.raises(UsageError):
        SqliteProtocolStore.open(db_path, records.identity_key_pair(1), REG_ID)
    with pytest.raises(UsageError):
        SqliteProtocolStore.open(db_path, records.identity_key_pair(), REG_ID + 1)


def test_empty_database_file_needs_an_identity(db_path: Path, records: Any) -> None:
    raw(db_path).close()  # an empty SQLite file
    with pytest.raises(UsageError):
        SqliteProtocolStore.open(db_path)
    with create(db_path, records) as store:
        assert store.get_identity_key_pair() == records.identity_key_pair()


def test_files_that_are_not_our_stores_are_refused(tmp_path: Path, records: Any) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(StorageError):
        SqliteProtocolStore.open(junk, records.identity_key_pair(), REG_ID)
    other = tmp_path / "other.db"
    conn = raw(other)
    conn.execute("CREATE TABLE notes (x)")
    conn.close()
    with pytest.raises(StorageError):
        SqliteProtocolStore.open(other, records.identity_key_pair(), REG_ID)


def test_newer_schema_version_is_refused(db_path: Path, records: Any) -> None:
    create(db_path, records).close()
    conn = raw(db_path)
    conn.execute("UPDATE schema_version SET version = ?", (sqlite_store.SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(StorageError, match="newer"):
        SqliteProtocolStore.open(db_path)


@pytest.mark.parametrize(
    ("table", "key_sql", "read"),
    [
        ("sessions", "name = 'alice'", lambda s: s.load_session(ALICE)),
        ("identities", "name = 'alice'", lambda s: s.get_identity(ALICE)),
        ("pre_keys", "id = 1", lambda s: s.get_pre_key(1)),
        ("signed_pre_keys", "id = 2", lambda s: s.get_signed_pre_key(2)),
        ("kyber_pre_keys", "id = 3", lambda s: s.get_kyber_pre_key(3)),
        ("local_identity", "singleton = 1", lambda s: s.get_identity_key_pair()),
        ("sender_keys", "name = 'alice'", lambda s: s.load_sender_key(ALICE, DIST)),
    ],
)
@pytest.mark.parametrize("garbage", [b"\x00garbage\xff", b"", "text, not a blob"])
def test_corrupt_rows_raise_storage_error(
    db_path: Path, records: Any, table: str, key_sql: str, read: Any, garbage: Any
) -> None:
    with create(db_path, records) as store:
        fill(store, records)
    column = {"identities": "identity_key", "local_identity": "identity_key_pair"}.get(
        table, "record"
    )
    conn = raw(db_path)
    conn.execute(f"UPDATE {table} SET {column} = ? WHERE {key_sql}", (garbage,))
    conn.close()
    with pytest.raises(StorageError), SqliteProtocolStore.open(db_path) as store:
        read(store)  # (a corrupt local identity may already be refused by open())


def test_second_connection_sees_only_committed_state(db_path: Path, records: Any) -> None:
    with create(db_path, records) as writer, SqliteProtocolStore.open(db_path) as reader:
        with writer.transaction():
            writer.store_session(ALICE, records.session(1))
            with writer.transaction():
                writer.save_pre_key(1, records.pre_key(1))
            # the inner block is done, but nothing is committed until the outer one is
            assert reader.load_session(ALICE) is None
            assert reader.get_pre_key_ids() == []
            with SqliteProtocolStore.open(db_path) as late_reader:  # opening does not block
                assert late_reader.load_session(ALICE) is None
        assert reader.load_session(ALICE).to_bytes() == records.session(1).to_bytes()
        assert reader.get_pre_key_ids() == [1]
        with pytest.raises(RuntimeError), writer.transaction():
            writer.store_session(BOB, records.session(2))
            raise RuntimeError
        assert reader.load_session(BOB) is None


def test_a_locked_database_is_a_storage_error(
    db_path: Path, records: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_base, "BUSY_TIMEOUT_S", 0.05)
    with create(db_path, records) as a, SqliteProtocolStore.open(db_path) as b:
        with a.transaction():
            a.store_session(ALICE, records.session(1))
            with pytest.raises(StorageError, match="locked"):
                b.store_session(BOB, records.session(2))
        b.store_session(BOB, records.session(2))  # free again
        assert a.load_session(BOB).to_bytes() == records.session(2).to_bytes()


def test_closed_store_refuses_use(db_path: Path, records: Any) -> None:
    store = create(db_path, records)
    with store.transaction(), pytest.raises(UsageError):
        store.close()
    store.close()
    store.close()  # idempotent
    with pytest.raises(UsageError):
        store.load_session(ALICE)
    with pytest.raises(UsageError), store.transaction():
        pass
    assert "closed" in repr(store)


def test_repr_shows_no_key_material(db_path: Path, records: Any) -> None:
    with create(db_path, records) as store:
        text = repr(store)
    assert records.identity_key_pair().to_bytes().hex() not in text
    assert "store.db" in text


def test_migration_from_an_older_schema_is_applied(
    db_path: Path, records: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scaffold: a store at version 1 gains a later migration's table on open."""
    create(db_path, records).close()
    extra = ("CREATE TABLE future_things (id INTEGER PRIMARY KEY)",)
    old = sqlite_store._SCHEMA
    new = sqlite_base.Schema(old.application_id, (*old.migrations, extra), old.what)
    monkeypatch.setattr(sqlite_store, "_SCHEMA", new)
    with SqliteProtocolStore.open(db_path) as store:
        assert store._fetchone("SELECT version FROM schema_version") == (2,)
        assert store._fetchone("SELECT COUNT(*) FROM future_things") == (0,)


def test_use_from_another_thread_is_a_storage_error(db_path: Path, records: Any) -> None:
    import threading

    errors: list[BaseException] = []
    with create(db_path, records) as store:

        def other_thread() -> None:
            try:
                store.load_session(ALICE)
            except BaseException as exc:
                errors.append(exc)

        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
    assert len(errors) == 1 and isinstance(errors[0], StorageError)


_BAD_KEY = b"\x06" + bytes(range(32))  # well-formed bytes, a key type byte we do not know


@pytest.mark.parametrize("table", ["local_identity", "identities"])
def test_a_corrupt_stored_identity_is_a_storage_error_not_a_peer_error(
    db_path: Path, records: Any, table: str
) -> None:
    with create(db_path, records) as store:
        fill(store, records)
    conn = raw(db_path)
    if table == "local_identity":
        pair = records.identity_key_pair()
        blob = keys_codec.encode_identity_key_pair(
            keys_codec.IdentityKeyPairFields(_BAD_KEY, pair.private_key.to_bytes())
        )
        conn.execute("UPDATE local_identity SET identity_key_pair = ?", (blob,))
    else:
        conn.execute("UPDATE identities SET identity_key = ? WHERE name = 'alice'", (_BAD_KEY,))
    conn.commit()
    conn.close()
    with SqliteProtocolStore.open(db_path) as store:
        read = store.get_identity_key_pair if table == "local_identity" else None
        with pytest.raises(StorageError) as info:
            read() if read is not None else store.get_identity(ALICE)
        assert not isinstance(info.value, PeerError)
        assert isinstance(info.value.__cause__, PeerError)  # the decoder's typed refusal


def test_a_bug_in_a_decoder_is_not_turned_into_a_storage_error(db_path: Path, records: Any) -> None:
    def buggy(data: bytes) -> Any:
        raise AttributeError("a bug, not corrupt data")

    with create(db_path, records) as store:
        fill(store, records)
    with SqliteProtocolStore.open(db_path) as store:
        store._decoders_cache = dataclasses.replace(store._decoders(), identity_key=buggy)
        with pytest.raises(AttributeError):
            store.get_identity(ALICE)
