"""The relay's durable state: the :class:`RelayStore` protocol and its SQLite implementation.

Theory of operation
-------------------
Everything the relay must not lose lives behind :class:`RelayStore`: accounts and devices,
the public prekey directory, the mailboxes of queued envelopes and the relay's own signing
keys. Rate-limit counters and connection state are *not* here (memory only, by design).
Every method is one atomic operation (one transaction, or one savepoint inside
:meth:`SqliteRelayStore.batch`); the relay logic never composes two calls into something that
must be atomic. The operations that need atomicity under
concurrency are inside the store: :meth:`RelayStore.take_bundles` reads and deletes the
one-time prekeys it hands out in one transaction (so concurrent fetchers never receive the
same key), :meth:`RelayStore.create_device` checks and inserts in one, and
:meth:`RelayStore.enqueue` queues all copies of a send or none.

The protocol speaks plain values (bytes, ints, ``YYYY-MM-DD`` date strings, Unix
milliseconds) and the SQL is portable: no SQLite-only syntax beyond ``INSERT ... ON CONFLICT``
(also PostgreSQL's), explicit ``seq`` columns instead of rowids, BLOB/BYTEA-compatible types.
A PostgreSQL implementation would use ``SELECT ... FOR UPDATE SKIP LOCKED`` in ``take_bundles``.

:class:`SqliteRelayStore`: WAL journal, ``synchronous=FULL`` (a returned call is on disk;
inside a batch, once the batch has committed), ``BEGIN IMMEDIATE`` per operation or per batch
(writers serialize up front, so two connections on one file are safe), schema migrations
appended to ``_MIGRATIONS``. Metadata minimisation is a schema property: dates (not times)
for creation and last-seen, the access key only as a digest, no column that could hold an IP
address. Every ``sqlite3`` error becomes
:class:`~securemsg.errors.StorageError` and the operation is rolled back.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from enum import Enum
from types import TracebackType
from typing import Any, Final, Protocol

from securemsg.errors import StorageError, UsageError

__all__ = [
    "SCHEMA_VERSION",
    "AccountRow",
    "BundleRow",
    "CreateResult",
    "DeviceRow",
    "KeyRow",
    "NewDevice",
    "QueuedMessage",
    "RelayStore",
    "ServerKeysRow",
    "SqliteRelayStore",
]


# ------------------------------------------------------------------------------------------
# Values


@dataclass(frozen=True, slots=True)
class KeyRow:
    """A public prekey: id, serialized public key, signature (empty for one-time EC keys)."""

    key_id: int
    public_key: bytes = field(repr=False)
    signature: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True)
class AccountRow:
    """An account: ACI (16 bytes), identity public key, access-key digest, creation date."""

    aci: bytes
    identity_key: bytes = field(repr=False)
    access_key_digest: bytes = field(repr=False)
    created_date: str


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """A device of an account, with its dates (``YYYY-MM-DD``, UTC)."""

    aci: bytes
    device_id: int
    registration_id: int
    created_date: str
    last_seen_date: str


@dataclass(frozen=True, slots=True)
class NewDevice:
    """Everything a registration stores (already validated by the relay)."""

    aci: bytes
    device_id: int
    registration_id: int
    identity_key: bytes = field(repr=False)
    access_key_digest: bytes = field(repr=False)
    signed_pre_key: KeyRow
    last_resort_kyber_pre_key: KeyRow
    pre_keys: tuple[KeyRow, ...] = ()
    kyber_pre_keys: tuple[KeyRow, ...] = ()


class CreateResult(Enum):
    """What :meth:`RelayStore.create_device` did."""

    CREATED = "created"
    DEVICE_EXISTS = "device-exists"
    IDENTITY_MISMATCH = "identity-mismatch"


@dataclass(frozen=True, slots=True)
class BundleRow:
    """One device's bundle as handed out (one-time keys already deleted from the store)."""

    device_id: int
    registration_id: int
    identity_key: bytes = field(repr=False)
    signed_pre_key: KeyRow = field(repr=False)
    pre_key: KeyRow | None = field(repr=False)
    kyber_pre_key: KeyRow = field(repr=False)
    kyber_last_resort: bool


@dataclass(frozen=True, slots=True)
class QueuedMessage:
    """A queued envelope. ``source_aci`` is None for sealed (unidentified) messages."""

    id: bytes
    aci: bytes
    device_id: int
    type: int
    source_aci: bytes | None
    source_device_id: int
    client_timestamp: int
    received_at: int
    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ServerKeysRow:
    """The relay's own signing keys: trust root and server key (private 32 bytes, public
    33 bytes) and the server certificate the trust root signed."""

    trust_root_private: bytes = field(repr=False)
    trust_root_public: bytes
    server_key_id: int
    server_private: bytes = field(repr=False)
    server_public: bytes
    server_certificate: bytes = field(repr=False)


# ------------------------------------------------------------------------------------------
# The protocol


class RelayStore(Protocol):
    """Durable relay state. Every method is atomic; all raise StorageError on failure."""

    def init_server_keys(self, keys: ServerKeysRow) -> ServerKeysRow:
        """Store ``keys`` if none are stored yet; return the stored ones."""
        ...

    def create_device(self, device: NewDevice, today: str) -> CreateResult:
        """Create the account (if new) and the device with its keys, or change nothing."""
        ...

    def get_account(self, aci: bytes) -> AccountRow | None:
        """The account, or None."""
        ...

    def get_device(self, aci: bytes, device_id: int) -> DeviceRow | None:
        """The device, or None."""
        ...

    def list_devices(self, aci: bytes) -> list[DeviceRow]:
        """The account's devices by id (empty if unknown)."""
        ...

    def touch_device(self, aci: bytes, device_id: int, today: str) -> None:
        """Set the device's last-seen date."""
        ...

    def store_pre_keys(
        self,
        aci: bytes,
        device_id: int,
        *,
        pre_keys: Sequence[KeyRow] = (),
        kyber_pre_keys: Sequence[KeyRow] = (),
        signed_pre_key: KeyRow | None = None,
        last_resort_kyber_pre_key: KeyRow | None = None,
        max_stored: int,
    ) -> bool:
        """Upsert one-time keys and replace the given signed keys. False (and nothing
        changed) if either one-time kind would exceed ``max_stored``."""
        ...

    def pre_key_counts(self, aci: bytes, device_id: int) -> tuple[int, int]:
        """(one-time EC, one-time Kyber) keys left."""
        ...

    def take_bundles(self, aci: bytes, device_id: int | None) -> list[BundleRow]:
        """Bundles of one device (or all with None), consuming one one-time key of each
        kind per device in the same transaction."""
        ...

    def enqueue(
        self,
        messages: Sequence[QueuedMessage],
        max_per_device: int,
        *,
        max_bytes_per_device: int | None = None,
    ) -> bool:
        """Queue all ``messages`` or (if a mailbox would exceed ``max_per_device`` messages
        or ``max_bytes_per_device`` bytes of bodies) none: False."""
        ...

    def pending(self, aci: bytes, device_id: int) -> list[QueuedMessage]:
        """The device's queued messages, oldest first."""
        ...

    def ack(self, aci: bytes, device_id: int, ids: Sequence[bytes]) -> int:
        """Delete these ids from this device's mailbox only; the number deleted."""
        ...

    def expire(self, before_ms: int) -> int:
        """Delete messages received before ``before_ms``; the number deleted."""
        ...

    def queued_for(self, aci: bytes) -> list[QueuedMessage]:
        """Every message queued for any device of ``aci`` (disclosure)."""
        ...

    def queued_from(self, aci: bytes) -> list[QueuedMessage]:
        """Every queued identified message whose source is ``aci`` (disclosure)."""
        ...

    def all_keys(self, aci: bytes, device_id: int) -> dict[str, list[KeyRow]]:
        """Every public key stored for the device, by kind (disclosure)."""
        ...

    def schema(self) -> dict[str, tuple[str, ...]]:
        """Every table of the relay schema and its columns."""
        ...

    def close(self) -> None:
        """Release the store."""
        ...


# ------------------------------------------------------------------------------------------
# SQLite

_BUSY_TIMEOUT_S: Final = 10.0
#: ``PRAGMA application_id`` of a relay database ("SMRL").
_APPLICATION_ID: Final = 0x534D524C

_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """CREATE TABLE schema_version (
            singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
            version INTEGER NOT NULL)""",
        """CREATE TABLE server_keys (
            singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
            trust_root_private BLOB NOT NULL,
            trust_root_public BLOB NOT NULL,
            server_key_id INTEGER NOT NULL,
            server_private BLOB NOT NULL,
            server_public BLOB NOT NULL,
            server_certificate BLOB NOT NULL)""",
        """CREATE TABLE accounts (
            aci BLOB PRIMARY KEY,
            identity_key BLOB NOT NULL,
            access_key_digest BLOB NOT NULL,
            created_date TEXT NOT NULL)""",
        """CREATE TABLE devices (
            aci BLOB NOT NULL REFERENCES accounts (aci),
            device_id INTEGER NOT NULL,
            registration_id INTEGER NOT NULL,
            created_date TEXT NOT NULL,
            last_seen_date TEXT NOT NULL,
            PRIMARY KEY (aci, device_id))""",
        """CREATE TABLE signed_pre_keys (
            aci BLOB NOT NULL,
            device_id INTEGER NOT NULL,
            key_id INTEGER NOT NULL,
            public_key BLOB NOT NULL,
            signature BLOB NOT NULL,
            PRIMARY KEY (aci, device_id))""",
        """CREATE TABLE last_resort_kyber_pre_keys (
            aci BLOB NOT NULL,
            device_id INTEGER NOT NULL,
            key_id INTEGER NOT NULL,
            public_key BLOB NOT NULL,
            signature BLOB NOT NULL,
            PRIMARY KEY (aci, device_id))""",
        """CREATE TABLE one_time_pre_keys (
            aci BLOB NOT NULL,
            device_id INTEGER NOT NULL,
            key_id INTEGER NOT NULL,
            public_key BLOB NOT NULL,
            PRIMARY KEY (aci, device_id, key_id))""",
        """CREATE TABLE one_time_kyber_pre_keys (
            aci BLOB NOT NULL,
            device_id INTEGER NOT NULL,
            key_id INTEGER NOT NULL,
            public_key BLOB NOT NULL,
            signature BLOB NOT NULL,
            PRIMARY KEY (aci, device_id, key_id))""",
        """CREATE TABLE messages (
            seq INTEGER PRIMARY KEY,
            id BLOB NOT NULL UNIQUE,
            aci BLOB NOT NULL,
            device_id INTEGER NOT NULL,
            type INTEGER NOT NULL,
            source_aci BLOB,
            source_device_id INTEGER NOT NULL,
            client_timestamp INTEGER NOT NULL,
            received_at INTEGER NOT NULL,
            body BLOB NOT NULL)""",
        "CREATE INDEX messages_by_mailbox ON messages (aci, device_id, seq)",
        "CREATE INDEX messages_by_age ON messages (received_at)",
    ),
)

#: The schema version this code writes.
SCHEMA_VERSION: Final = len(_MIGRATIONS)

_MSG_COLUMNS = (
    "id, aci, device_id, type, source_aci, source_device_id, client_timestamp, received_at, body"
)


class _Rollback(Exception):
    """Raised inside a transaction to undo it (caught by the method that raised it)."""


def _db_error(exc: sqlite3.Error) -> StorageError:
    # sqlite3 messages name the failure, never bound parameter values.
    return StorageError("relay database error: " + str(exc))


def _message(row: Sequence[Any]) -> QueuedMessage:
    return QueuedMessage(
        id=bytes(row[0]),
        aci=bytes(row[1]),
        device_id=int(row[2]),
        type=int(row[3]),
        source_aci=None if row[4] is None else bytes(row[4]),
        source_device_id=int(row[5]),
        client_timestamp=int(row[6]),
        received_at=int(row[7]),
        body=bytes(row[8]),
    )


class SqliteRelayStore:
    """:class:`RelayStore` on one SQLite file.

    The connection is opened with ``check_same_thread=False`` so that the relay can open the
    store on its event loop and then hand it to its one storage thread; after that hand-over
    only that thread uses it (the store itself is not safe for concurrent use). Open one store
    per thread (or process) to share a file.

    :meth:`batch` groups many operations into one transaction (group commit): inside it every
    operation runs in its own ``SAVEPOINT``, so a failed or refused one is undone alone, and
    the whole batch is made durable by one ``COMMIT`` (one fsync).
    """

    __slots__ = ("_batch_depth", "_conn", "_path")

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        """Wrap an open connection (internal: use :meth:`open`)."""
        self._conn: sqlite3.Connection | None = connection
        self._path = path
        self._batch_depth = 0

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> SqliteRelayStore:
        """Create the relay database at ``path`` or reopen it (migrating the schema).

        Raises:
            StorageError: cannot open, not a relay database, written by a newer version.
        """
        path_str = os.fspath(path)
        try:
            # Not bound to the opening thread: the relay hands the store to its storage thread.
            conn = sqlite3.connect(
                path_str,
                timeout=_BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise _db_error(exc) from exc
        store = cls(conn, path_str)
        try:
            store._prepare()
        except BaseException:
            conn.close()
            store._conn = None
            raise
        return store

    def _prepare(self) -> None:
        with self._errors():
            conn = self._c()
            mode = conn.execute("PRAGMA journal_mode").fetchone()
            if mode is None or str(mode[0]).lower() not in ("wal", "memory"):
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA secure_delete=ON")  # acked ciphertext is overwritten
        with self._tx() as c:
            app = int(c.execute("PRAGMA application_id").fetchone()[0])
            has = c.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
            if has is None:
                other = c.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone()
                if other is not None or app not in (0, _APPLICATION_ID):
                    raise StorageError("the database is not a securemsg relay database")
                version = 0
            else:
                if app != _APPLICATION_ID:
                    raise StorageError("the database is not a securemsg relay database")
                row = c.execute("SELECT version FROM schema_version").fetchone()
                if row is None or not isinstance(row[0], int):
                    raise StorageError("the relay schema version is missing or corrupt")
                version = row[0]
            if version > SCHEMA_VERSION:
                raise StorageError("the relay database was written by a newer securemsg")
            for step in range(version, SCHEMA_VERSION):
                for statement in _MIGRATIONS[step]:
                    c.execute(statement)
            if version == 0:
                c.execute("PRAGMA application_id=" + str(_APPLICATION_ID))
                c.execute("INSERT INTO schema_version VALUES (1, ?)", (SCHEMA_VERSION,))
            elif version < SCHEMA_VERSION:
                c.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))

    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError("the relay store is closed")
        return self._conn

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise _db_error(exc) from exc

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        if self._batch_depth:
            with self._savepoint() as conn:
                yield conn
            return
        conn = self._c()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _db_error(exc) from exc
        try:
            yield conn
        except BaseException as exc:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise _db_error(exc) from exc
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise _db_error(exc) from exc
        self._after_commit()

    @contextmanager
    def _savepoint(self) -> Iterator[sqlite3.Connection]:
        """One operation inside :meth:`batch`: undone alone (``ROLLBACK TO``) if it fails."""
        conn = self._c()
        if not conn.in_transaction:  # SQLite rolled the batch back (e.g. I/O error, disk full)
            raise StorageError("relay database error: the batch transaction was lost")
        # One constant name: the statements stay in sqlite3's cache, and a nested savepoint
        # of the same name is the innermost one for ROLLBACK TO and RELEASE.
        name = "relay_op"
        try:
            conn.execute("SAVEPOINT " + name)
        except sqlite3.Error as exc:
            raise _db_error(exc) from exc
        try:
            yield conn
        except BaseException as exc:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK TO " + name)
                conn.execute("RELEASE " + name)
            if isinstance(exc, sqlite3.Error):
                raise _db_error(exc) from exc
            raise
        try:
            conn.execute("RELEASE " + name)
        except sqlite3.Error as exc:
            raise _db_error(exc) from exc

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Run many operations in one transaction, committed once (group commit).

        Inside the block every operation is one ``SAVEPOINT``: a failed or refused operation
        is rolled back to it and the others stay. On leaving the block the transaction is
        committed (one fsync with ``synchronous=FULL``); nothing inside is durable before
        that. If the block raises, or the commit fails, or SQLite abandoned the transaction
        (an I/O error), everything in the batch is rolled back and :class:`StorageError` (or
        the block's exception) is raised: callers must then treat every operation of the
        batch as not done. Batches do not nest.

        Raises:
            StorageError: the transaction could not be begun or committed, or was lost.
            UsageError: already inside a batch.
        """
        if self._batch_depth:
            raise UsageError("relay store batches do not nest")
        conn = self._c()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _db_error(exc) from exc
        self._batch_depth = 1
        try:
            yield
        except BaseException:
            with suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            raise
        finally:
            self._batch_depth = 0
        if not conn.in_transaction:
            raise StorageError("relay database error: the batch transaction was lost")
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise _db_error(exc) from exc
        self._after_commit()

    def _after_commit(self) -> None:
        """Checkpoint policy hook: called after every successful outer ``COMMIT`` (a plain
        operation's or a whole :meth:`batch`'s), on the thread that committed."""

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._errors():
            return self._c().execute(sql, tuple(params)).fetchall()

    # -- server keys ----------------------------------------------------------------------

    def init_server_keys(self, keys: ServerKeysRow) -> ServerKeysRow:
        with self._tx() as c:
            row = c.execute(
                "SELECT trust_root_private, trust_root_public, server_key_id, server_private,"
                " server_public, server_certificate FROM server_keys"
            ).fetchone()
            if row is None:
                c.execute(
                    "INSERT INTO server_keys VALUES (1, ?, ?, ?, ?, ?, ?)",
                    (
                        keys.trust_root_private,
                        keys.trust_root_public,
                        keys.server_key_id,
                        keys.server_private,
                        keys.server_public,
                        keys.server_certificate,
                    ),
                )
                return keys
        return ServerKeysRow(
            bytes(row[0]), bytes(row[1]), int(row[2]), bytes(row[3]), bytes(row[4]), bytes(row[5])
        )

    # -- accounts and devices -------------------------------------------------------------

    def create_device(self, device: NewDevice, today: str) -> CreateResult:
        with self._tx() as c:
            acc = c.execute(
                "SELECT identity_key FROM accounts WHERE aci = ?", (device.aci,)
            ).fetchone()
            if acc is None:
                c.execute(
                    "INSERT INTO accounts (aci, identity_key, access_key_digest, created_date)"
                    " VALUES (?, ?, ?, ?)",
                    (device.aci, device.identity_key, device.access_key_digest, today),
                )
            elif bytes(acc[0]) != device.identity_key:
                return CreateResult.IDENTITY_MISMATCH
            exists = c.execute(
                "SELECT 1 FROM devices WHERE aci = ? AND device_id = ?",
                (device.aci, device.device_id),
            ).fetchone()
            if exists is not None:
                return CreateResult.DEVICE_EXISTS
            c.execute(
                "INSERT INTO devices (aci, device_id, registration_id, created_date,"
                " last_seen_date) VALUES (?, ?, ?, ?, ?)",
                (device.aci, device.device_id, device.registration_id, today, today),
            )
            self._put_keys(
                c,
                device.aci,
                device.device_id,
                device.pre_keys,
                device.kyber_pre_keys,
                device.signed_pre_key,
                device.last_resort_kyber_pre_key,
            )
        return CreateResult.CREATED

    def get_account(self, aci: bytes) -> AccountRow | None:
        rows = self._read(
            "SELECT aci, identity_key, access_key_digest, created_date FROM accounts WHERE aci = ?",
            (aci,),
        )
        if not rows:
            return None
        r = rows[0]
        return AccountRow(bytes(r[0]), bytes(r[1]), bytes(r[2]), str(r[3]))

    def _devices(self, where: str, params: Sequence[Any]) -> list[DeviceRow]:
        rows = self._read(
            "SELECT aci, device_id, registration_id, created_date, last_seen_date FROM devices"
            " WHERE " + where + " ORDER BY device_id",
            params,
        )
        return [DeviceRow(bytes(r[0]), int(r[1]), int(r[2]), str(r[3]), str(r[4])) for r in rows]

    def get_device(self, aci: bytes, device_id: int) -> DeviceRow | None:
        rows = self._devices("aci = ? AND device_id = ?", (aci, device_id))
        return rows[0] if rows else None

    def list_devices(self, aci: bytes) -> list[DeviceRow]:
        return self._devices("aci = ?", (aci,))

    def touch_device(self, aci: bytes, device_id: int, today: str) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE devices SET last_seen_date = ? WHERE aci = ? AND device_id = ?"
                " AND last_seen_date <> ?",
                (today, aci, device_id, today),
            )

    # -- prekeys --------------------------------------------------------------------------

    @staticmethod
    def _put_keys(
        c: sqlite3.Connection,
        aci: bytes,
        device_id: int,
        pre_keys: Sequence[KeyRow],
        kyber_pre_keys: Sequence[KeyRow],
        signed_pre_key: KeyRow | None,
        last_resort: KeyRow | None,
    ) -> None:
        c.executemany(
            "INSERT INTO one_time_pre_keys (aci, device_id, key_id, public_key)"
            " VALUES (?, ?, ?, ?) ON CONFLICT (aci, device_id, key_id)"
            " DO UPDATE SET public_key = excluded.public_key",
            [(aci, device_id, k.key_id, k.public_key) for k in pre_keys],
        )
        c.executemany(
            "INSERT INTO one_time_kyber_pre_keys (aci, device_id, key_id, public_key, signature)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (aci, device_id, key_id)"
            " DO UPDATE SET public_key = excluded.public_key, signature = excluded.signature",
            [(aci, device_id, k.key_id, k.public_key, k.signature) for k in kyber_pre_keys],
        )
        for table, key in (
            ("signed_pre_keys", signed_pre_key),
            ("last_resort_kyber_pre_keys", last_resort),
        ):
            if key is not None:
                c.execute(
                    "INSERT INTO " + table + " (aci, device_id, key_id, public_key, signature)"
                    " VALUES (?, ?, ?, ?, ?) ON CONFLICT (aci, device_id) DO UPDATE SET"
                    " key_id = excluded.key_id, public_key = excluded.public_key,"
                    " signature = excluded.signature",
                    (aci, device_id, key.key_id, key.public_key, key.signature),
                )

    @staticmethod
    def _counts(c: sqlite3.Connection, aci: bytes, device_id: int) -> tuple[int, int]:
        ec = c.execute(
            "SELECT COUNT(*) FROM one_time_pre_keys WHERE aci = ? AND device_id = ?",
            (aci, device_id),
        ).fetchone()
        ky = c.execute(
            "SELECT COUNT(*) FROM one_time_kyber_pre_keys WHERE aci = ? AND device_id = ?",
            (aci, device_id),
        ).fetchone()
        return int(ec[0]), int(ky[0])

    def store_pre_keys(
        self,
        aci: bytes,
        device_id: int,
        *,
        pre_keys: Sequence[KeyRow] = (),
        kyber_pre_keys: Sequence[KeyRow] = (),
        signed_pre_key: KeyRow | None = None,
        last_resort_kyber_pre_key: KeyRow | None = None,
        max_stored: int,
    ) -> bool:
        try:
            with self._tx() as c:
                self._put_keys(
                    c,
                    aci,
                    device_id,
                    pre_keys,
                    kyber_pre_keys,
                    signed_pre_key,
                    last_resort_kyber_pre_key,
                )
                ec, ky = self._counts(c, aci, device_id)
                if ec > max_stored or ky > max_stored:
                    raise _Rollback
        except _Rollback:
            return False
        return True

    def pre_key_counts(self, aci: bytes, device_id: int) -> tuple[int, int]:
        with self._errors():
            return self._counts(self._c(), aci, device_id)

    def take_bundles(self, aci: bytes, device_id: int | None) -> list[BundleRow]:
        with self._tx() as c:
            acc = c.execute("SELECT identity_key FROM accounts WHERE aci = ?", (aci,)).fetchone()
            if acc is None:
                return []
            if device_id is None:
                devs = c.execute(
                    "SELECT device_id, registration_id FROM devices WHERE aci = ?"
                    " ORDER BY device_id",
                    (aci,),
                ).fetchall()
            else:
                devs = c.execute(
                    "SELECT device_id, registration_id FROM devices WHERE aci = ?"
                    " AND device_id = ?",
                    (aci, device_id),
                ).fetchall()
            out: list[BundleRow] = []
            for dev_id, reg_id in devs:
                key = (aci, dev_id)
                spk = c.execute(
                    "SELECT key_id, public_key, signature FROM signed_pre_keys"
                    " WHERE aci = ? AND device_id = ?",
                    key,
                ).fetchone()
                lr = c.execute(
                    "SELECT key_id, public_key, signature FROM last_resort_kyber_pre_keys"
                    " WHERE aci = ? AND device_id = ?",
                    key,
                ).fetchone()
                if spk is None or lr is None:
                    raise StorageError("a device without signed prekeys (corrupt database)")
                ec = c.execute(
                    "SELECT key_id, public_key FROM one_time_pre_keys WHERE aci = ?"
                    " AND device_id = ? ORDER BY key_id LIMIT 1",
                    key,
                ).fetchone()
                if ec is not None:
                    c.execute(
                        "DELETE FROM one_time_pre_keys WHERE aci = ? AND device_id = ?"
                        " AND key_id = ?",
                        (aci, dev_id, ec[0]),
                    )
                ky = c.execute(
                    "SELECT key_id, public_key, signature FROM one_time_kyber_pre_keys"
                    " WHERE aci = ? AND device_id = ? ORDER BY key_id LIMIT 1",
                    key,
                ).fetchone()
                if ky is not None:
                    c.execute(
                        "DELETE FROM one_time_kyber_pre_keys WHERE aci = ? AND device_id = ?"
                        " AND key_id = ?",
                        (aci, dev_id, ky[0]),
                    )
                kyber = ky if ky is not None else lr
                out.append(
                    BundleRow(
                        device_id=int(dev_id),
                        registration_id=int(reg_id),
                        identity_key=bytes(acc[0]),
                        signed_pre_key=KeyRow(int(spk[0]), bytes(spk[1]), bytes(spk[2])),
                        pre_key=None if ec is None else KeyRow(int(ec[0]), bytes(ec[1])),
                        kyber_pre_key=KeyRow(int(kyber[0]), bytes(kyber[1]), bytes(kyber[2])),
                        kyber_last_resort=ky is None,
                    )
                )
        return out

    # -- mailboxes ------------------------------------------------------------------------

    def enqueue(
        self,
        messages: Sequence[QueuedMessage],
        max_per_device: int,
        *,
        max_bytes_per_device: int | None = None,
    ) -> bool:
        if not messages:
            return True
        with self._tx() as c:
            for box in sorted({(m.aci, m.device_id) for m in messages}):
                adding = [m for m in messages if (m.aci, m.device_id) == box]
                row = c.execute(
                    "SELECT COUNT(*), COALESCE(SUM(LENGTH(body)), 0) FROM messages"
                    " WHERE aci = ? AND device_id = ?",
                    box,
                ).fetchone()
                if int(row[0]) + len(adding) > max_per_device:
                    return False
                added_bytes = sum(len(m.body) for m in adding)
                if max_bytes_per_device is not None and (
                    int(row[1]) + added_bytes > max_bytes_per_device
                ):
                    return False
            c.executemany(
                "INSERT INTO messages (" + _MSG_COLUMNS + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        m.id,
                        m.aci,
                        m.device_id,
                        m.type,
                        m.source_aci,
                        m.source_device_id,
                        m.client_timestamp,
                        m.received_at,
                        m.body,
                    )
                    for m in messages
                ],
            )
        return True

    def pending(self, aci: bytes, device_id: int) -> list[QueuedMessage]:
        rows = self._read(
            "SELECT " + _MSG_COLUMNS + " FROM messages WHERE aci = ? AND device_id = ?"
            " ORDER BY seq",
            (aci, device_id),
        )
        return [_message(r) for r in rows]

    def pending_page(
        self,
        aci: bytes,
        device_id: int,
        *,
        after_seq: int | None = None,
        limit: int,
        max_bytes: int | None = None,
    ) -> list[tuple[int, QueuedMessage]]:
        """A page of the device's queue in ``seq`` order: ``(seq, message)`` for messages
        after ``after_seq`` (all if None), at most ``limit`` of them and, past the first, at
        most ``max_bytes`` of bodies in total. Reads rows one at a time, so a page never
        holds more than it returns. ``seq`` orders the queue but may be reused once the
        newest row of the whole table is deleted: callers that page must allow for it."""
        if limit <= 0:
            return []
        with self._errors():
            conn = self._c()
            # Bodies may be split into a per-row part and a shared part (multi-recipient
            # sends stored once): join the shared part when the schema has it.
            cols = {
                str(r[0])
                for r in conn.execute("SELECT name FROM pragma_table_info(?)", ("messages",))
            }
            shared = "shared_seq" in cols
            sql = (
                "SELECT m.seq, m.id, m.aci, m.device_id, m.type, m.source_aci,"
                " m.source_device_id, m.client_timestamp, m.received_at, m.body, "
                + ("s.body" if shared else "NULL")
                + " FROM messages AS m"
                + (" LEFT JOIN shared_bodies AS s ON s.seq = m.shared_seq" if shared else "")
                + " WHERE m.aci = ? AND m.device_id = ?"
            )
            params: tuple[Any, ...] = (aci, device_id)
            if after_seq is not None:
                sql += " AND m.seq > ?"
                params += (after_seq,)
            sql += " ORDER BY m.seq LIMIT ?"
            params += (limit,)
            out: list[tuple[int, QueuedMessage]] = []
            total = 0
            cur = conn.execute(sql, params)
            try:
                for row in cur:
                    body = bytes(row[9]) + (b"" if row[10] is None else bytes(row[10]))
                    if out and max_bytes is not None and total + len(body) > max_bytes:
                        break
                    total += len(body)
                    message = QueuedMessage(
                        id=bytes(row[1]),
                        aci=bytes(row[2]),
                        device_id=int(row[3]),
                        type=int(row[4]),
                        source_aci=None if row[5] is None else bytes(row[5]),
                        source_device_id=int(row[6]),
                        client_timestamp=int(row[7]),
                        received_at=int(row[8]),
                        body=body,
                    )
                    out.append((int(row[0]), message))
            finally:
                cur.close()
        return out

    def ack(self, aci: bytes, device_id: int, ids: Sequence[bytes]) -> int:
        deleted = 0
        with self._tx() as c:
            for i in ids:
                cur = c.execute(
                    "DELETE FROM messages WHERE id = ? AND aci = ? AND device_id = ?",
                    (i, aci, device_id),
                )
                deleted += max(cur.rowcount, 0)
        return deleted

    def expire(self, before_ms: int) -> int:
        with self._tx() as c:
            cur = c.execute("DELETE FROM messages WHERE received_at < ?", (before_ms,))
            return max(cur.rowcount, 0)

    # -- disclosure -----------------------------------------------------------------------

    def queued_for(self, aci: bytes) -> list[QueuedMessage]:
        rows = self._read(
            "SELECT " + _MSG_COLUMNS + " FROM messages WHERE aci = ? ORDER BY seq", (aci,)
        )
        return [_message(r) for r in rows]

    def queued_from(self, aci: bytes) -> list[QueuedMessage]:
        rows = self._read(
            "SELECT " + _MSG_COLUMNS + " FROM messages WHERE source_aci = ? ORDER BY seq", (aci,)
        )
        return [_message(r) for r in rows]

    def all_keys(self, aci: bytes, device_id: int) -> dict[str, list[KeyRow]]:
        out: dict[str, list[KeyRow]] = {}
        for table, signed in (
            ("signed_pre_keys", True),
            ("last_resort_kyber_pre_keys", True),
            ("one_time_pre_keys", False),
            ("one_time_kyber_pre_keys", True),
        ):
            cols = "key_id, public_key" + (", signature" if signed else "")
            rows = self._read(
                "SELECT " + cols + " FROM " + table + " WHERE aci = ? AND device_id = ?"
                " ORDER BY key_id",
                (aci, device_id),
            )
            out[table] = [
                KeyRow(int(r[0]), bytes(r[1]), bytes(r[2]) if signed else b"") for r in rows
            ]
        return out

    def schema(self) -> dict[str, tuple[str, ...]]:
        tables = self._read(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            " ORDER BY name"
        )
        out: dict[str, tuple[str, ...]] = {}
        for (name,) in tables:
            cols = self._read("SELECT name FROM pragma_table_info(?)", (name,))
            out[str(name)] = tuple(str(c[0]) for c in cols)
        return out

    # -- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database. Idempotent.

        Raises:
            StorageError: closing failed.
        """
        if self._conn is None:
            return
        conn, self._conn = self._conn, None
        with self._errors():
            conn.close()

    def __enter__(self) -> SqliteRelayStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._conn is None else "open"
        return f"SqliteRelayStore(path={self._path!r}, {state})"
