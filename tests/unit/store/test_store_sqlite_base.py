"""The SQLite plumbing every securemsg database shares (store/sqlite_base.py)."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import pytest

from securemsg.errors import StorageError
from securemsg.store.sqlite import SqliteProtocolStore
from securemsg.store.sqlite_base import (
    Schema,
    connect,
    immediate_transaction,
    make_files_private,
    migrate,
    on_disk,
    read_schema_version,
    savepoint,
    set_durable_pragmas,
)

SCHEMA = Schema(
    0x54455354,
    (
        (
            "CREATE TABLE schema_version (singleton INTEGER PRIMARY KEY, version INTEGER)",
            "CREATE TABLE t (x INTEGER)",
        ),
        ("CREATE TABLE u (y INTEGER)",),
    ),
    "test database",
)


def _error(exc: sqlite3.Error) -> StorageError:
    return StorageError("test database error: " + str(exc))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_on_disk() -> None:
    assert on_disk("/tmp/x.db") and on_disk("x.db")
    assert not on_disk(":memory:") and not on_disk("") and not on_disk("file:x.db")


def test_files_are_created_private_and_loosened_ones_tightened(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    seen: list[tuple[str, int]] = []
    old = os.umask(0o022)
    try:
        make_files_private(str(db), create=True, loosened=lambda p, m: seen.append((p, m)))
    finally:
        os.umask(old)
    assert _mode(db) == 0o600 and seen == []
    db.chmod(0o644)
    wal = Path(str(db) + "-wal")
    wal.touch()
    wal.chmod(0o640)
    make_files_private(str(db), create=False, loosened=lambda p, m: seen.append((p, m)))
    assert _mode(db) == 0o600 and _mode(wal) == 0o600
    assert sorted(seen) == [(str(db), 0o644), (str(wal), 0o640)]


def test_a_missing_database_is_skipped_unless_created(tmp_path: Path) -> None:
    make_files_private(str(tmp_path / "none.db"), create=False, loosened=lambda p, m: None)
    assert not (tmp_path / "none.db").exists()


def test_pragmas_schema_and_migrations(tmp_path: Path) -> None:
    conn = connect(str(tmp_path / "x.db"), check_same_thread=True)
    set_durable_pragmas(conn)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert read_schema_version(conn, SCHEMA) == 0
    with immediate_transaction(conn, _error):
        migrate(conn, SCHEMA)
    assert read_schema_version(conn, SCHEMA) == 2
    conn.execute("UPDATE schema_version SET version = 3")
    with pytest.raises(StorageError, match="written by a newer securemsg"):
        migrate(conn, SCHEMA)
    other = Schema(0x4F544852, SCHEMA.migrations, "other database")
    with pytest.raises(StorageError, match="not a securemsg other database"):
        read_schema_version(conn, other)
    conn.close()


def test_transactions_and_savepoints_roll_back_what_raised(tmp_path: Path) -> None:
    conn = connect(str(tmp_path / "x.db"), check_same_thread=True)
    conn.execute("CREATE TABLE t (x INTEGER)")
    with immediate_transaction(conn, _error):
        conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(KeyError), savepoint(conn, "sp", _error):
            conn.execute("INSERT INTO t VALUES (2)")
            raise KeyError
        with savepoint(conn, "sp", _error):
            conn.execute("INSERT INTO t VALUES (3)")
    with pytest.raises(ValueError), immediate_transaction(conn, _error):
        conn.execute("INSERT INTO t VALUES (4)")
        raise ValueError
    with (
        pytest.raises(StorageError, match="test database error"),
        immediate_transaction(conn, _error),
    ):
        conn.execute("INSERT INTO nowhere VALUES (5)")
    assert [r[0] for r in conn.execute("SELECT x FROM t ORDER BY x")] == [1, 3]
    assert not conn.in_transaction
    conn.close()


def test_a_transaction_sqlite_abandoned_is_not_committed(tmp_path: Path) -> None:
    conn = connect(str(tmp_path / "x.db"), check_same_thread=True)
    conn.execute("CREATE TABLE t (x INTEGER)")
    with (
        pytest.raises(StorageError, match="lost"),
        immediate_transaction(conn, _error, lost="lost"),
    ):
        conn.execute("INSERT INTO t VALUES (1)")
        conn.execute("ROLLBACK")  # as SQLite does on its own after an I/O error
        conn.execute("INSERT INTO t VALUES (2)")  # autocommit: this one is kept
    assert [r[0] for r in conn.execute("SELECT x FROM t")] == [2]
    conn.close()


def test_the_protocol_store_files_are_private(
    tmp_path: Path, records: Any, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "store.db"
    old = os.umask(0o022)
    try:
        with SqliteProtocolStore.open(db, records.identity_key_pair(), 1234) as s:
            s.save_pre_key(1, records.pre_key(1))
            files = [p for p in tmp_path.iterdir() if p.name.startswith("store.db")]
            assert files and {_mode(p) for p in files} == {0o600}
    finally:
        os.umask(old)
    db.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="securemsg.store"), SqliteProtocolStore.open(db):
        pass
    assert _mode(db) == 0o600
    assert any("accessible to other users" in r.getMessage() for r in caplog.records)


# -- the directory: nobody else may create files next to a database -----------------------------


def _open_protocol(path: Path) -> None:
    from securemsg.crypto.rng import SystemRng
    from securemsg.protocol.identity_and_prekeys import IdentityKeyPair

    SqliteProtocolStore.open(path, IdentityKeyPair.generate(SystemRng()), 7).close()


def _open_relay(path: Path) -> None:
    from securemsg.relay.store import SqliteRelayStore

    SqliteRelayStore.open(path).close()


OPENERS = {"protocol store": _open_protocol, "relay store": _open_relay}


@pytest.mark.parametrize("opener", sorted(OPENERS))
def test_a_database_where_others_can_create_files_is_refused(tmp_path: Path, opener: str) -> None:
    """SQLite reuses a ``-wal`` it finds next to the database: another user who can write to
    the directory could create it first (readable by them) and read every page, private
    keys included. Such a directory is refused before anything is written."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(StorageError, match="writable by other users"):
        OPENERS[opener](shared / "x.db")
    assert list(shared.iterdir()) == []


@pytest.mark.parametrize("opener", sorted(OPENERS))
def test_a_database_linked_into_such_a_directory_is_refused(tmp_path: Path, opener: str) -> None:
    """SQLite puts the side files next to the link's target: that directory is checked."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    mine = tmp_path / "mine"
    mine.mkdir(mode=0o700)
    (mine / "x.db").symlink_to(shared / "x.db")
    with pytest.raises(StorageError, match="writable by other users"):
        OPENERS[opener](mine / "x.db")
    assert list(shared.iterdir()) == []


def test_a_directory_of_another_user_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    if os.geteuid() == 0:
        os.chown(theirs, 4242, -1)  # root: give it to another user
    else:
        monkeypatch.setattr(os, "geteuid", lambda: os.getuid() + 4242)  # or become another
    with pytest.raises(StorageError, match="writable by other users or not ours"):
        _open_protocol(theirs / "x.db")
