"""SQLite plumbing shared by every securemsg database (internal).

Theory of operation
-------------------
Three kinds of database use SQLite: the protocol store (:mod:`securemsg.store.sqlite`, which
the client's device database :mod:`securemsg.client.store` and the async store
:mod:`securemsg.aio.sqlite` extend) and the relay's database (:mod:`securemsg.relay.store`).
They share what this module holds:

* **Opening** (:func:`connect`, :func:`set_durable_pragmas`): autocommit mode (transactions
  are explicit), a busy timeout of :data:`BUSY_TIMEOUT_S` for another connection's write lock,
  WAL journal, ``synchronous=FULL`` (a returned commit is on disk) and foreign keys enforced.
* **File modes** (:func:`make_files_private`): the database and its ``-wal``, ``-shm`` and
  ``-journal`` side files are ``0600``. A new database file is created ``0600`` before SQLite
  opens it (SQLite gives the side files the database's mode), whatever the umask; a file
  others could access is tightened and reported through a callback, so each database logs it
  in its own words.
* **Transactions** (:func:`immediate_transaction`, :func:`savepoint`): ``BEGIN IMMEDIATE``
  takes the write lock up front (two processes sharing a file serialize their writes instead
  of failing at commit time) ... ``COMMIT``, ``ROLLBACK`` if the block raises; a savepoint
  undoes only its own block.
* **Schema versions** (:class:`Schema`, :func:`read_schema_version`, :func:`migrate`): a
  ``PRAGMA application_id`` marks the file as ours, a one-row ``schema_version`` table holds
  the version, and migrations are appended, never edited; a database written by a newer
  version, or someone else's, is refused.

Every function raises ``sqlite3.Error`` as it is unless it takes an ``error`` argument (the
caller's mapping to :class:`~securemsg.errors.StorageError`); :func:`sqlite_errors` applies
such a mapping to a block.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Final

from securemsg.errors import StorageError

__all__ = [
    "BUSY_TIMEOUT_S",
    "PRIVATE_MODE",
    "SIDE_FILE_SUFFIXES",
    "Schema",
    "UnsafeDirectory",
    "check_private_directory",
    "connect",
    "immediate_transaction",
    "make_files_private",
    "migrate",
    "on_disk",
    "read_schema_version",
    "savepoint",
    "set_durable_pragmas",
    "sqlite_errors",
]

#: Seconds a connection waits for another one's write lock before giving up.
BUSY_TIMEOUT_S: Final = 10.0
#: The mode of a database and its side files: the owner's only.
PRIVATE_MODE: Final = 0o600
#: The files SQLite keeps next to a database, named by appending these to its path.
SIDE_FILE_SUFFIXES: Final = ("-wal", "-shm", "-journal")

#: Maps an ``sqlite3`` error to the caller's StorageError (its message names the database).
ErrorMapper = Callable[[sqlite3.Error], StorageError]


@contextmanager
def sqlite_errors(error: ErrorMapper) -> Iterator[None]:
    """Turn an ``sqlite3.Error`` escaping the block into ``error(exc)``."""
    try:
        yield
    except sqlite3.Error as exc:
        raise error(exc) from exc


# -- opening ------------------------------------------------------------------------------------


def on_disk(path: str) -> bool:
    """Whether ``path`` names a file (not ``":memory:"``, the temporary ``""`` or a URI)."""
    return path not in ("", ":memory:") and not path.startswith("file:")


def connect(path: str, *, check_same_thread: bool) -> sqlite3.Connection:
    """Open a connection in autocommit mode with the busy timeout.

    ``check_same_thread``: refuse use from another thread than the opening one (``sqlite3``'s
    check); a database whose owner serializes access itself clears it.
    """
    return sqlite3.connect(
        path,
        timeout=BUSY_TIMEOUT_S,
        isolation_level=None,
        check_same_thread=check_same_thread,
    )


def set_durable_pragmas(conn: sqlite3.Connection) -> None:
    """WAL journal (kept for an in-memory database), ``synchronous=FULL``, foreign keys on.

    A pragma that must precede WAL mode (``page_size`` of a new database) goes before this.
    """
    mode = conn.execute("PRAGMA journal_mode").fetchone()
    if mode is None or str(mode[0]).lower() not in ("wal", "memory"):
        conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")


# -- file modes ---------------------------------------------------------------------------------


def _make_private(path: str, *, create: bool, loosened: Callable[[str, int], None]) -> None:
    flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | (os.O_CREAT if create else 0), PRIVATE_MODE)
    except FileNotFoundError:
        if create:
            raise
        return
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return  # not a database file: SQLite will say so; change nothing
        mode = st.st_mode & 0o777
        if mode != PRIVATE_MODE:
            if mode & 0o077:
                loosened(path, mode)
            os.fchmod(fd, PRIVATE_MODE)
    finally:
        os.close(fd)


class UnsafeDirectory(PermissionError):
    """The database's directory lets another user create files in it (or is theirs)."""


def check_private_directory(path: str) -> str:
    """The real path of the database at ``path``, after checking its directory.

    SQLite creates ``-wal``, ``-shm`` and ``-journal`` files next to the database's real path
    (symlinks resolved) and reuses any it finds there. In a directory another user can write
    to, that user can create them first (or make the database a link) and read every page
    SQLite writes: private keys included. So the directory holding the real path must belong
    to this user (or to root) and be writable by nobody else, as ssh asks of its key files.

    Raises:
        UnsafeDirectory: the directory is writable by group or others, or another user's.
        OSError: the directory cannot be examined.
    """
    real = os.path.realpath(path)
    directory = os.path.dirname(real) or "."
    st = os.stat(directory)
    if st.st_uid not in (os.geteuid(), 0) or st.st_mode & 0o022:
        raise UnsafeDirectory(
            errno.EPERM,
            "the database's directory is writable by other users or not ours; "
            "put the database in a private directory",
            directory,
        )
    return real


def make_files_private(path: str, *, create: bool, loosened: Callable[[str, int], None]) -> None:
    """Give the database at ``path`` and its side files mode ``0600``, after
    :func:`check_private_directory` (the side files are those of the real path).

    Args:
        path: the database file (a path :func:`on_disk` accepts).
        create: create the database file (empty, ``0600`` whatever the umask) if it is missing;
            otherwise a missing database, like a missing side file, is skipped.
        loosened: called with the path and the old mode of each file that group or others
            could access, before it is tightened (its contents may already have been read).

    Raises:
        UnsafeDirectory: see :func:`check_private_directory`.
        OSError: a file cannot be created, opened or changed.
    """
    real = check_private_directory(path)
    _make_private(real, create=create, loosened=loosened)
    for suffix in SIDE_FILE_SUFFIXES:
        _make_private(real + suffix, create=False, loosened=loosened)


# -- transactions -------------------------------------------------------------------------------


@contextmanager
def immediate_transaction(
    conn: sqlite3.Connection, error: ErrorMapper, *, lost: str | None = None
) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; ``ROLLBACK`` if the block raises.

    Args:
        conn: a connection in autocommit mode, not in a transaction.
        error: maps an ``sqlite3.Error`` (from BEGIN, the block or COMMIT) to a StorageError.
        lost: if given, the StorageError message when SQLite rolled the transaction back on its
            own during the block (an I/O error, a full disk), instead of committing what is
            left in autocommit mode.

    Raises:
        StorageError: BEGIN or COMMIT failed (then nothing was kept), or the transaction was
            lost; the block's own exception otherwise, after the rollback.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:
        raise error(exc) from exc
    try:
        yield
    except BaseException as exc:
        with suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        if isinstance(exc, sqlite3.Error):
            raise error(exc) from exc
        raise
    if lost is not None and not conn.in_transaction:
        raise StorageError(lost)
    try:
        conn.execute("COMMIT")
    except sqlite3.Error as exc:
        with suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        raise error(exc) from exc


@contextmanager
def savepoint(
    conn: sqlite3.Connection, name: str, error: ErrorMapper, *, lost: str | None = None
) -> Iterator[None]:
    """``SAVEPOINT name`` ... ``RELEASE``; if the block raises, only its writes are undone.

    ``error`` and ``lost`` are as for :func:`immediate_transaction` (``lost``: the enclosing
    transaction was rolled back by SQLite during the block).

    Raises:
        StorageError: the savepoint could not be set or released, or the transaction was
            lost; the block's own exception otherwise, after the partial rollback.
    """
    try:
        conn.execute("SAVEPOINT " + name)
    except sqlite3.Error as exc:
        raise error(exc) from exc
    try:
        yield
    except BaseException as exc:
        with suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("ROLLBACK TO " + name)
                conn.execute("RELEASE " + name)
        if isinstance(exc, sqlite3.Error):
            raise error(exc) from exc
        raise
    if lost is not None and not conn.in_transaction:
        raise StorageError(lost)
    try:
        conn.execute("RELEASE " + name)
    except sqlite3.Error as exc:
        raise error(exc) from exc


# -- schema versions ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Schema:
    """A database kind's schema history.

    Attributes:
        application_id: the ``PRAGMA application_id`` that marks the file as this kind.
        migrations: entry ``i`` brings the schema from version ``i`` to ``i + 1``; the first
            creates the one-row ``schema_version`` table. Never edit a released entry.
        what: the database kind in error messages ("store", "relay database").
    """

    application_id: int
    migrations: tuple[tuple[str, ...], ...]
    what: str

    @property
    def version(self) -> int:
        """The schema version this code writes."""
        return len(self.migrations)


def read_schema_version(conn: sqlite3.Connection, schema: Schema) -> int:
    """The database's schema version: 0 for an empty database.

    Raises:
        StorageError: the database is someone else's, or its version row is missing or corrupt.
        sqlite3.Error: the database failed.
    """
    app = conn.execute("PRAGMA application_id").fetchone()
    app_id = 0 if app is None else int(app[0])
    has_table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if has_table is None:
        other = conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone()
        if other is not None or app_id not in (0, schema.application_id):
            raise StorageError(f"the database is not a securemsg {schema.what}")
        return 0
    if app_id != schema.application_id:
        raise StorageError(f"the database is not a securemsg {schema.what}")
    row = conn.execute("SELECT version FROM schema_version").fetchone()
    if row is None or not isinstance(row[0], int):
        raise StorageError(f"the {schema.what}'s schema version is missing or corrupt")
    version: int = row[0]
    return version


def migrate(conn: sqlite3.Connection, schema: Schema) -> None:
    """Bring the database to ``schema.version``. Run it inside a write transaction.

    Raises:
        StorageError: see :func:`read_schema_version`; or the database was written by a newer
            securemsg (a newer schema version).
        sqlite3.Error: the database failed.
    """
    version = read_schema_version(conn, schema)
    if version > schema.version:
        raise StorageError(f"the {schema.what} was written by a newer securemsg")
    for step in range(version, schema.version):
        for statement in schema.migrations[step]:
            conn.execute(statement)
    if version == 0:
        conn.execute("PRAGMA application_id=" + str(schema.application_id))
        conn.execute("INSERT INTO schema_version VALUES (1, ?)", (schema.version,))
    elif version < schema.version:
        conn.execute("UPDATE schema_version SET version = ?", (schema.version,))
