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
appended to ``_MIGRATIONS`` (opening, file modes, transactions and schema versions are the
SQLite plumbing shared with the protocol store, :mod:`securemsg.store.sqlite_base`).
Retention is a file property too: ``secure_delete`` plus a truncating WAL checkpoint after
every commit that deleted envelopes leave nothing of an acknowledged or expired envelope in
the database, WAL or SHM file, and all three are mode 0600 (see :class:`SqliteRelayStore`).
A sealed sender v2 send's shared part is stored once in ``shared_bodies`` and referenced by
its per-recipient rows (deleted with the last of them); ``queue_usage`` counts the bytes
stored for all queues, for the relay-wide budget, and ``accounts.queued`` the whole-body
bytes queued for each account's devices, for the account's share. Metadata minimisation is a
schema property: dates (not times) for creation and last-seen, the access key only as a
digest, no column that could hold an IP address. Every ``sqlite3`` error becomes
:class:`~securemsg.errors.StorageError` and the operation is rolled back.
"""

from __future__ import annotations

import hmac
import logging
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from enum import Enum
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol

from securemsg.errors import StorageError, UsageError
from securemsg.limits import MAX_DEVICE_ID
from securemsg.relay.filescan import blank_live
from securemsg.store.sqlite_base import (
    SIDE_FILE_SUFFIXES,
    Schema,
    UnsafeDirectory,
    connect,
    immediate_transaction,
    make_files_private,
    migrate,
    on_disk,
    savepoint,
    set_durable_pragmas,
    sqlite_errors,
)

if TYPE_CHECKING:
    from securemsg.relay.kt_store import RelayKtStore

__all__ = [
    "SCHEMA_VERSION",
    "AccountRow",
    "BundleRow",
    "CreateResult",
    "DeviceRow",
    "EnqueueResult",
    "FileScan",
    "KeyRow",
    "NewDevice",
    "QueuedMessage",
    "RelayStore",
    "ServerKeysRow",
    "SqliteRelayStore",
]

_LOG = logging.getLogger("securemsg.relay")


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
    #: the account exists and the registration carried no linking code
    LINK_REQUIRED = "link-required"
    #: the linking code is not the account's current one, or it expired (or no account)
    LINK_REFUSED = "link-refused"
    #: every device id of the account is taken
    NO_FREE_ID = "no-free-id"


class EnqueueResult(Enum):
    """What :meth:`RelayStore.enqueue` did. True only for :attr:`QUEUED`."""

    QUEUED = "queued"
    MAILBOX_FULL = "mailbox-full"
    ACCOUNT_FULL = "account-full"
    RELAY_FULL = "relay-full"

    def __bool__(self) -> bool:
        return self is EnqueueResult.QUEUED


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
    """A queued envelope. ``source_aci`` is None for sealed (unidentified) messages.

    The envelope's body is ``body + shared``. ``shared`` is empty except in the messages a
    multi-recipient send produces: there ``body`` is the recipient's own part and ``shared``
    the part common to all recipients, one bytes object referenced by every copy, so a send
    to N recipients holds the shared part once, not N times. :attr:`size` is the whole
    body's length; :meth:`whole_body` builds it (only when an envelope is encoded for a push).
    Messages read back from a store have ``shared`` empty.
    """

    id: bytes
    aci: bytes
    device_id: int
    type: int
    source_aci: bytes | None
    source_device_id: int
    client_timestamp: int
    received_at: int
    body: bytes = field(repr=False)
    shared: bytes = field(default=b"", repr=False)

    @property
    def size(self) -> int:
        """Bytes of the whole body (``body`` and ``shared``)."""
        return len(self.body) + len(self.shared)

    def whole_body(self) -> bytes:
        """The envelope's body as the recipient receives it (a new object if shared)."""
        return self.body + self.shared if self.shared else self.body


@dataclass(frozen=True, slots=True)
class FileScan:
    """What a byte scan of the relay's files found beyond the live rows.

    Attributes:
        files: each file scanned (name, size in bytes), sorted by name.
        residue: (file name, occurrences) of the searched bytes that no live row explains.
    """

    files: tuple[tuple[str, int], ...]
    residue: tuple[tuple[str, int], ...]


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

    def create_device(
        self, device: NewDevice, today: str, *, new_account_only: bool = False
    ) -> CreateResult:
        """Create the account (if new) and the device with its keys, or change nothing.
        With ``new_account_only``, a device of an account that exists already is refused
        with LINK_REQUIRED (after the IDENTITY_MISMATCH and DEVICE_EXISTS checks)."""
        ...

    def link_device(
        self, device: NewDevice, today: str, code_digest: bytes, now_ms: int
    ) -> tuple[CreateResult, int]:
        """Add a device to an existing account with its linking code, in one transaction:
        the account must exist with ``device.identity_key`` (else LINK_REFUSED /
        IDENTITY_MISMATCH), its current linking code must have digest ``code_digest`` and
        expire after ``now_ms`` (else LINK_REFUSED); ``device.device_id`` 0 takes the lowest
        free id 2..127 (NO_FREE_ID), another id must be free (DEVICE_EXISTS). On success the
        code is deleted. Returns the result and the device id (0 unless CREATED)."""
        ...

    def put_linking_code(self, aci: bytes, code_digest: bytes, expires_at_ms: int) -> None:
        """Make ``code_digest`` the account's one linking code (replacing any other)."""
        ...

    def linking_code_expiry(self, aci: bytes) -> int | None:
        """When the account's stored linking code expires (Unix ms), or None (disclosure)."""
        ...

    def expire_linking_codes(self, now_ms: int) -> int:
        """Delete the linking codes that expired at ``now_ms``; how many."""
        ...

    def remove_device(self, aci: bytes, device_id: int) -> bool:
        """Delete the device, its prekeys and its whole mailbox (with the queued-bytes
        accounting) in one transaction; False (nothing changed) if there is no such device."""
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

    def take_bundles(
        self, aci: bytes, device_id: int | None, *, one_time: bool = True
    ) -> list[BundleRow]:
        """Bundles of one device (or all with None), consuming one one-time key of each
        kind per device in the same transaction. With ``one_time=False`` the bundles carry
        only the signed and last-resort keys and nothing is consumed."""
        ...

    def set_access_key_digest(self, aci: bytes, digest: bytes) -> bool:
        """Replace the account's access-key digest; False if there is no such account."""
        ...

    def enqueue(
        self,
        messages: Sequence[QueuedMessage],
        max_per_device: int,
        *,
        max_bytes_per_device: int | None = None,
        shared: bytes = b"",
        max_total_bytes: int | None = None,
        max_bytes_per_account: int | None = None,
    ) -> EnqueueResult:
        """Queue all ``messages`` or none.

        ``shared``, if given, is a part common to the bodies (a sealed sender v2 message's
        shared ciphertext): every body that ends with it is stored as its own prefix plus a
        reference to one stored copy of ``shared``. A message whose
        :attr:`QueuedMessage.shared` is set is stored the same way (its ``body`` is then
        the prefix already). Bodies read back byte for byte the same (whole).

        Returns MAILBOX_FULL (nothing queued) if a mailbox would exceed ``max_per_device``
        messages or ``max_bytes_per_device`` bytes of bodies (whole bodies: what the device
        will be sent), ACCOUNT_FULL if the whole bodies queued for all devices of one
        recipient account would exceed ``max_bytes_per_account``, RELAY_FULL if the bytes the
        relay stores for all queues (each shared part once) would exceed ``max_total_bytes``.
        """
        ...

    def queued_bytes(self) -> int:
        """The bytes the relay stores for all queued envelopes (shared parts counted once)."""
        ...

    def account_queued_bytes(self, aci: bytes) -> int:
        """Bytes of whole bodies queued for all devices of ``aci`` (its share of the budget)."""
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

    def scan_residue(self, needles: Sequence[bytes]) -> FileScan:
        """Search every file the store writes for ``needles`` (e.g. the forms of an ACI) and
        count the occurrences no live row explains (disclosure)."""
        ...

    def kt_store(self) -> RelayKtStore | None:
        """The key-transparency directory's state in this store (None: the store has none)."""
        ...

    def close(self) -> None:
        """Release the store."""
        ...


# ------------------------------------------------------------------------------------------
# SQLite

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
    # 2: multi-recipient bodies stored once, and the relay-wide count of queued bytes.
    (
        """CREATE TABLE shared_bodies (
            seq INTEGER PRIMARY KEY,
            body BLOB NOT NULL)""",
        "ALTER TABLE messages ADD COLUMN shared_seq INTEGER REFERENCES shared_bodies (seq)",
        "ALTER TABLE messages ADD COLUMN size INTEGER NOT NULL DEFAULT 0",
        "UPDATE messages SET size = LENGTH(body)",
        "CREATE INDEX messages_by_shared ON messages (shared_seq)",
        """CREATE TABLE queue_usage (
            singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
            stored_bytes INTEGER NOT NULL)""",
        "INSERT INTO queue_usage VALUES (1, (SELECT COALESCE(SUM(LENGTH(body)), 0) FROM messages))",
    ),
    # 3: key transparency (securemsg.relay.kt_store): the directory's keys, trie nodes, label
    # versions, signed epoch heads, auditor cosignatures, and the queue of unpublished
    # (ACI -> identity key) updates, seeded with the accounts that exist already.
    (
        (
            "CREATE TABLE kt_keys (singleton INTEGER PRIMARY KEY CHECK (singleton = 1), vrf_seed "
            "BLOB NOT NULL, head_seed BLOB NOT NULL)"
        ),
        (
            "CREATE TABLE kt_nodes (node_key BLOB PRIMARY KEY, left_key BLOB, right_key BLOB, "
            "commitment BLOB NOT NULL, value BLOB NOT NULL, digest BLOB NOT NULL, label_hash BLOB"
            " NOT NULL, last_epoch INTEGER NOT NULL, min_epoch INTEGER NOT NULL)"
        ),
        (
            "CREATE TABLE kt_values (label BLOB NOT NULL, version INTEGER NOT NULL, epoch INTEGER"
            " NOT NULL, value BLOB NOT NULL, PRIMARY KEY (label, version))"
        ),
        (
            "CREATE TABLE kt_epochs (epoch INTEGER PRIMARY KEY, root_hash BLOB NOT NULL, "
            "signed_head BLOB NOT NULL)"
        ),
        (
            "CREATE TABLE kt_cosignatures (epoch INTEGER NOT NULL, auditor_key BLOB NOT NULL, "
            "signature BLOB NOT NULL, PRIMARY KEY (epoch, auditor_key))"
        ),
        "CREATE TABLE kt_pending (label BLOB PRIMARY KEY, value BLOB NOT NULL)",
        "INSERT INTO kt_pending (label, value) SELECT aci, identity_key FROM accounts",
    ),
    # 4: whole-body bytes queued per recipient account, for its share of the budget. (The
    # column definition is short on purpose: the schema's text must stay within page 1 of
    # the file; a split of that page leaves stale schema bytes the residue scan reports.)
    (
        "ALTER TABLE accounts ADD COLUMN queued INT NOT NULL DEFAULT 0",
        "UPDATE accounts SET queued ="
        " (SELECT COALESCE(SUM(size), 0) FROM messages WHERE messages.aci = accounts.aci)",
    ),
    # 5: linked devices: each account's one open linking code, as a digest, until it is
    # used, replaced or expires (short on purpose, as 4).
    ("CREATE TABLE linking_codes (aci BLOB PRIMARY KEY, digest BLOB NOT NULL, expires INT)",),
)

_SCHEMA: Final = Schema(_APPLICATION_ID, _MIGRATIONS, "relay database")

#: The schema version this code writes.
SCHEMA_VERSION: Final = _SCHEMA.version

_MSG_COLUMNS = (
    "id, aci, device_id, type, source_aci, source_device_id, client_timestamp, received_at, body"
)
#: Reads a queued message with its shared part (appended in Python: SQL ``||`` makes text).
_MSG_SELECT = (
    "SELECT m.id, m.aci, m.device_id, m.type, m.source_aci, m.source_device_id,"
    " m.client_timestamp, m.received_at, m.body, s.body FROM messages AS m"
    " LEFT JOIN shared_bodies AS s ON s.seq = m.shared_seq"
)
#: The tables of a device's public prekeys.
_KEY_TABLES: Final = (
    "signed_pre_keys",
    "last_resort_kyber_pre_keys",
    "one_time_pre_keys",
    "one_time_kyber_pre_keys",
)


class _Rollback(Exception):
    """Raised inside a transaction to undo it (caught by the method that raised it)."""


def _same(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


_BATCH_LOST: Final = "relay database error: the batch transaction was lost"


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
        body=bytes(row[8]) + (b"" if row[9] is None else bytes(row[9])),
    )


def _warn_loosened(path: str, mode: int) -> None:
    _LOG.warning(
        "relay database file %s was readable by others (mode %o); making it 0600",
        os.path.basename(path),
        mode,
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

    Files: the database and its ``-wal`` / ``-shm`` companions are mode 0600 (created so
    before SQLite opens them, which gives the companions the database file's mode; an
    existing file others could read is tightened and logged). Retention: ``secure_delete``
    zeroes deleted rows and freed pages, and after every commit that deleted envelopes (ack,
    expiry; for a batch, once after its commit) the WAL is checkpointed into the database and
    truncated to zero bytes (``PRAGMA wal_checkpoint(TRUNCATE)``), so an acknowledged or
    expired envelope leaves no copy in any file; at open, the same checkpoint scrubs what a
    crash left in the WAL.
    """

    __slots__ = ("_batch_depth", "_conn", "_path", "_residue")

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        """Wrap an open connection (internal: use :meth:`open`)."""
        self._conn: sqlite3.Connection | None = connection
        self._path = path
        #: True while deleted envelopes may still have page images in the WAL.
        self._residue = False
        self._batch_depth = 0

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> SqliteRelayStore:
        """Create the relay database at ``path`` or reopen it (migrating the schema).

        Raises:
            StorageError: cannot open, not a relay database, written by a newer version.
        """
        path_str = os.fspath(path)
        if on_disk(path_str):
            try:
                make_files_private(path_str, create=True, loosened=_warn_loosened)
            except OSError as exc:
                where = f" ({exc.filename})" if isinstance(exc, UnsafeDirectory) else ""
                raise StorageError(
                    "cannot create or protect the relay database file: "
                    + (exc.strerror or "error")
                    + where
                ) from exc
        with sqlite_errors(_db_error):
            # Not bound to the opening thread: the relay hands the store to its storage thread.
            conn = connect(path_str, check_same_thread=False)
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
            # New databases use 8 KiB pages: the schema (sqlite_master) then fits one page, so
            # creating it splits no page and leaves no stale cell pointers (a no-op on an
            # existing database).
            conn.execute("PRAGMA page_size=8192")
            set_durable_pragmas(conn)
            conn.execute("PRAGMA secure_delete=ON")  # acked ciphertext is overwritten
            conn.execute("PRAGMA temp_store=MEMORY")  # no temporary files on disk
            secure = conn.execute("PRAGMA secure_delete").fetchone()
            if secure is None or int(secure[0]) != 1:
                raise StorageError("SQLite cannot overwrite deleted rows (secure_delete)")
        with self._tx() as c:
            migrate(c, _SCHEMA)
        # A crash between a deleting commit and its checkpoint leaves old pages in the WAL.
        self._residue = True
        self._checkpoint()
        self._fix_companions(strict=True)

    def _fix_companions(self, *, strict: bool = False) -> None:
        """Side files SQLite (re)created are ``0600`` too. When opening, a file that cannot be
        made private fails the open (fail closed); after a checkpoint it is logged."""
        if not on_disk(self._path):
            return
        try:
            make_files_private(self._path, create=False, loosened=_warn_loosened)
        except OSError as exc:
            if strict:
                raise StorageError(
                    "cannot protect the relay database's files: " + (exc.strerror or "error")
                ) from exc
            _LOG.error("cannot protect the relay database's files: %s", type(exc).__name__)

    def _after_commit(self) -> None:
        """Runs after every outer COMMIT: once envelopes were deleted, checkpoint the WAL
        into the (secure-deleted) database and truncate it, so no copy of them is left."""
        if self._residue:
            self._checkpoint()

    def _checkpoint(self) -> bool:
        conn = self._conn
        if conn is None:
            return False
        try:
            row = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        except sqlite3.Error as exc:
            _LOG.warning(
                "relay database checkpoint failed (%s); retried after the next commit",
                type(exc).__name__,
            )
            return False
        if row is not None and int(row[0]) != 0:
            _LOG.warning("relay database checkpoint blocked by a reader; retried later")
            return False
        self._residue = False
        self._fix_companions()
        return True

    def _c(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError("the relay store is closed")
        return self._conn

    def _errors(self) -> AbstractContextManager[None]:
        return sqlite_errors(_db_error)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        if self._batch_depth:
            with self._savepoint() as conn:
                yield conn
            return
        conn = self._c()
        with immediate_transaction(conn, _db_error):
            yield conn
        self._after_commit()

    @contextmanager
    def _savepoint(self) -> Iterator[sqlite3.Connection]:
        """One operation inside :meth:`batch`: undone alone (``ROLLBACK TO``) if it fails."""
        conn = self._c()
        if not conn.in_transaction:  # SQLite rolled the batch back (e.g. I/O error, disk full)
            raise StorageError(_BATCH_LOST)
        # One constant name: the statements stay in sqlite3's cache, and a nested savepoint
        # of the same name is the innermost one for ROLLBACK TO and RELEASE.
        with savepoint(conn, "relay_op", _db_error):
            yield conn

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
        with immediate_transaction(conn, _db_error, lost=_BATCH_LOST):
            self._batch_depth = 1
            try:
                yield
            finally:
                self._batch_depth = 0
        self._after_commit()

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

    def create_device(
        self, device: NewDevice, today: str, *, new_account_only: bool = False
    ) -> CreateResult:
        with self._tx() as c:
            acc = c.execute(
                "SELECT identity_key FROM accounts WHERE aci = ?", (device.aci,)
            ).fetchone()
            if acc is not None and new_account_only and bytes(acc[0]) == device.identity_key:
                taken = c.execute(
                    "SELECT 1 FROM devices WHERE aci = ? AND device_id = ?",
                    (device.aci, device.device_id),
                ).fetchone()
                return CreateResult.DEVICE_EXISTS if taken else CreateResult.LINK_REQUIRED
            if acc is None:
                c.execute(
                    "INSERT INTO accounts (aci, identity_key, access_key_digest, created_date)"
                    " VALUES (?, ?, ?, ?)",
                    (device.aci, device.identity_key, device.access_key_digest, today),
                )
                # queued for the key-transparency directory's next epoch, atomically
                c.execute(
                    "INSERT INTO kt_pending (label, value) VALUES (?, ?)"
                    " ON CONFLICT (label) DO UPDATE SET value = excluded.value",
                    (device.aci, device.identity_key),
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

    def link_device(
        self, device: NewDevice, today: str, code_digest: bytes, now_ms: int
    ) -> tuple[CreateResult, int]:
        with self._tx() as c:
            acc = c.execute(
                "SELECT identity_key FROM accounts WHERE aci = ?", (device.aci,)
            ).fetchone()
            if acc is None:
                return CreateResult.LINK_REFUSED, 0
            if bytes(acc[0]) != device.identity_key:
                return CreateResult.IDENTITY_MISMATCH, 0
            code = c.execute(
                "SELECT digest, expires FROM linking_codes WHERE aci = ?", (device.aci,)
            ).fetchone()
            if code is None or int(code[1]) <= now_ms or not _same(bytes(code[0]), code_digest):
                return CreateResult.LINK_REFUSED, 0
            taken = {
                int(r[0])
                for r in c.execute("SELECT device_id FROM devices WHERE aci = ?", (device.aci,))
            }
            device_id = device.device_id
            if device_id == 0:
                free = [d for d in range(2, MAX_DEVICE_ID + 1) if d not in taken]
                if not free:
                    return CreateResult.NO_FREE_ID, 0
                device_id = free[0]
            elif device_id in taken:
                return CreateResult.DEVICE_EXISTS, 0
            c.execute("DELETE FROM linking_codes WHERE aci = ?", (device.aci,))
            for table in _KEY_TABLES:  # nothing of an earlier device under this id survives
                c.execute(
                    "DELETE FROM " + table + " WHERE aci = ? AND device_id = ?",
                    (device.aci, device_id),
                )
            c.execute(
                "INSERT INTO devices (aci, device_id, registration_id, created_date,"
                " last_seen_date) VALUES (?, ?, ?, ?, ?)",
                (device.aci, device_id, device.registration_id, today, today),
            )
            self._put_keys(
                c,
                device.aci,
                device_id,
                device.pre_keys,
                device.kyber_pre_keys,
                device.signed_pre_key,
                device.last_resort_kyber_pre_key,
            )
            self._residue = True  # the code's old page images leave the WAL
        return CreateResult.CREATED, device_id

    def put_linking_code(self, aci: bytes, code_digest: bytes, expires_at_ms: int) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO linking_codes (aci, digest, expires) VALUES (?, ?, ?)"
                " ON CONFLICT (aci) DO UPDATE SET digest = excluded.digest,"
                " expires = excluded.expires",
                (aci, code_digest, expires_at_ms),
            )
            self._residue = True  # a replaced code must not stay in the WAL

    def linking_code_expiry(self, aci: bytes) -> int | None:
        rows = self._read("SELECT expires FROM linking_codes WHERE aci = ?", (aci,))
        return int(rows[0][0]) if rows else None

    def expire_linking_codes(self, now_ms: int) -> int:
        with self._tx() as c:
            cur = c.execute("DELETE FROM linking_codes WHERE expires <= ?", (now_ms,))
            deleted = max(cur.rowcount, 0)
            if deleted:
                self._residue = True
            return deleted

    def remove_device(self, aci: bytes, device_id: int) -> bool:
        with self._tx() as c:
            cur = c.execute("DELETE FROM devices WHERE aci = ? AND device_id = ?", (aci, device_id))
            if cur.rowcount <= 0:
                return False
            for table in _KEY_TABLES:
                c.execute(
                    "DELETE FROM " + table + " WHERE aci = ? AND device_id = ?", (aci, device_id)
                )
            row = c.execute(
                "SELECT COALESCE(SUM(LENGTH(body)), 0), COALESCE(SUM(size), 0) FROM messages"
                " WHERE aci = ? AND device_id = ?",
                (aci, device_id),
            ).fetchone()
            shared = {
                int(r[0])
                for r in c.execute(
                    "SELECT DISTINCT shared_seq FROM messages WHERE aci = ? AND device_id = ?"
                    " AND shared_seq IS NOT NULL",
                    (aci, device_id),
                )
            }
            c.execute("DELETE FROM messages WHERE aci = ? AND device_id = ?", (aci, device_id))
            freed = int(row[0]) + self._release_shared(c, shared)
            self._account(c, -freed)
            self._account_usage(c, {aci: -int(row[1])})
            self._residue = True
        return True

    def get_account(self, aci: bytes) -> AccountRow | None:
        rows = self._read(
            "SELECT aci, identity_key, access_key_digest, created_date FROM accounts WHERE aci = ?",
            (aci,),
        )
        if not rows:
            return None
        r = rows[0]
        return AccountRow(bytes(r[0]), bytes(r[1]), bytes(r[2]), str(r[3]))

    def set_access_key_digest(self, aci: bytes, digest: bytes) -> bool:
        with self._tx() as c:
            cur = c.execute(
                "UPDATE accounts SET access_key_digest = ? WHERE aci = ?", (digest, aci)
            )
            return cur.rowcount > 0

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

    def take_bundles(
        self, aci: bytes, device_id: int | None, *, one_time: bool = True
    ) -> list[BundleRow]:
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
                ec = None
                if one_time:
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
                ky = None
                if one_time:
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

    @staticmethod
    def _usage(c: sqlite3.Connection) -> int:
        row = c.execute("SELECT stored_bytes FROM queue_usage").fetchone()
        if row is None:
            raise StorageError("the relay's queue usage row is missing (corrupt database)")
        return int(row[0])

    @staticmethod
    def _account(c: sqlite3.Connection, delta: int) -> None:
        if delta:
            c.execute("UPDATE queue_usage SET stored_bytes = stored_bytes + ?", (delta,))

    @staticmethod
    def _account_usage(c: sqlite3.Connection, deltas: dict[bytes, int]) -> None:
        """Add ``deltas`` to the accounts' queued bytes."""
        for aci, delta in sorted(deltas.items()):
            if delta:
                c.execute(
                    "UPDATE accounts SET queued = MAX(0, queued + ?) WHERE aci = ?",
                    (delta, aci),
                )

    def enqueue(
        self,
        messages: Sequence[QueuedMessage],
        max_per_device: int,
        *,
        max_bytes_per_device: int | None = None,
        shared: bytes = b"",
        max_total_bytes: int | None = None,
        max_bytes_per_account: int | None = None,
    ) -> EnqueueResult:
        if not messages:
            return EnqueueResult.QUEUED
        if not shared:
            shared = next((m.shared for m in messages if m.shared), b"")
        # (own part stored in the row, whether it refers to the one stored shared part)
        rows: list[tuple[bytes, bool]] = []
        for m in messages:
            if m.shared and (m.shared is shared or m.shared == shared):
                rows.append((m.body, True))
            elif m.shared:  # another shared part than this send's: stored whole
                rows.append((m.whole_body(), False))
            elif shared and m.body.endswith(shared):
                rows.append((m.body[: len(m.body) - len(shared)], True))
            else:
                rows.append((m.body, False))
        uses_shared = any(flag for _, flag in rows)
        stored = sum(len(own) for own, _ in rows) + (len(shared) if uses_shared else 0)
        per_account: dict[bytes, int] = {}
        for m in messages:
            per_account[m.aci] = per_account.get(m.aci, 0) + m.size
        with self._tx() as c:
            for box in sorted({(m.aci, m.device_id) for m in messages}):
                adding = [m for m in messages if (m.aci, m.device_id) == box]
                row = c.execute(
                    "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM messages"
                    " WHERE aci = ? AND device_id = ?",
                    box,
                ).fetchone()
                if int(row[0]) + len(adding) > max_per_device:
                    return EnqueueResult.MAILBOX_FULL
                added_bytes = sum(m.size for m in adding)
                if max_bytes_per_device is not None and (
                    int(row[1]) + added_bytes > max_bytes_per_device
                ):
                    return EnqueueResult.MAILBOX_FULL
            if max_bytes_per_account is not None:
                for aci, added in sorted(per_account.items()):
                    row = c.execute("SELECT queued FROM accounts WHERE aci = ?", (aci,)).fetchone()
                    if (0 if row is None else int(row[0])) + added > max_bytes_per_account:
                        return EnqueueResult.ACCOUNT_FULL
            if max_total_bytes is not None and self._usage(c) + stored > max_total_bytes:
                return EnqueueResult.RELAY_FULL
            shared_seq: int | None = None
            if uses_shared:
                cur = c.execute("INSERT INTO shared_bodies (body) VALUES (?)", (shared,))
                shared_seq = cur.lastrowid
            c.executemany(
                "INSERT INTO messages (" + _MSG_COLUMNS + ", shared_seq, size)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                        own,
                        shared_seq if flag else None,
                        m.size,
                    )
                    for m, (own, flag) in zip(messages, rows, strict=True)
                ],
            )
            self._account(c, stored)
            self._account_usage(c, per_account)
        return EnqueueResult.QUEUED

    def account_queued_bytes(self, aci: bytes) -> int:
        """Bytes of whole bodies queued for all devices of ``aci`` (its share of the budget)."""
        rows = self._read("SELECT queued FROM accounts WHERE aci = ?", (aci,))
        return int(rows[0][0]) if rows else 0

    def queued_bytes(self) -> int:
        with self._errors():
            return self._usage(self._c())

    def pending(self, aci: bytes, device_id: int) -> list[QueuedMessage]:
        rows = self._read(
            _MSG_SELECT + " WHERE m.aci = ? AND m.device_id = ? ORDER BY m.seq", (aci, device_id)
        )
        return [_message(r) for r in rows]

    @staticmethod
    def _release_shared(c: sqlite3.Connection, seqs: set[int]) -> int:
        """Delete the shared bodies among ``seqs`` no message references; bytes freed."""
        freed = 0
        for seq in sorted(seqs):
            row = c.execute(
                "SELECT LENGTH(body) FROM shared_bodies WHERE seq = ? AND NOT EXISTS"
                " (SELECT 1 FROM messages WHERE shared_seq = ?)",
                (seq, seq),
            ).fetchone()
            if row is not None:
                c.execute("DELETE FROM shared_bodies WHERE seq = ?", (seq,))
                freed += int(row[0])
        return freed

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
        sql = _MSG_SELECT.replace("SELECT ", "SELECT m.seq, ", 1) + (
            " WHERE m.aci = ? AND m.device_id = ?"
        )
        params: tuple[Any, ...] = (aci, device_id)
        if after_seq is not None:
            sql += " AND m.seq > ?"
            params += (after_seq,)
        sql += " ORDER BY m.seq LIMIT ?"
        params += (limit,)
        out: list[tuple[int, QueuedMessage]] = []
        total = 0
        with self._errors():
            cur = self._c().execute(sql, params)
            try:
                for row in cur:
                    message = _message(row[1:])
                    size = len(message.body)
                    if out and max_bytes is not None and total + size > max_bytes:
                        break
                    total += size
                    out.append((int(row[0]), message))
            finally:
                cur.close()
        return out

    def ack(self, aci: bytes, device_id: int, ids: Sequence[bytes]) -> int:
        deleted = 0
        freed = 0
        shared: set[int] = set()
        with self._tx() as c:
            whole = 0
            for i in ids:
                row = c.execute(
                    "SELECT seq, LENGTH(body), shared_seq, size FROM messages"
                    " WHERE id = ? AND aci = ? AND device_id = ?",
                    (i, aci, device_id),
                ).fetchone()
                if row is None:
                    continue
                c.execute("DELETE FROM messages WHERE seq = ?", (row[0],))
                deleted += 1
                freed += int(row[1])
                whole += int(row[3])
                if row[2] is not None:
                    shared.add(int(row[2]))
            if deleted:
                freed += self._release_shared(c, shared)
                self._account(c, -freed)
                self._account_usage(c, {aci: -whole})
                self._residue = True
        return deleted

    def expire(self, before_ms: int) -> int:
        with self._tx() as c:
            row = c.execute(
                "SELECT COALESCE(SUM(LENGTH(body)), 0) FROM messages WHERE received_at < ?",
                (before_ms,),
            ).fetchone()
            freed = int(row[0])
            per_account = {
                bytes(r[0]): -int(r[1])
                for r in c.execute(
                    "SELECT aci, SUM(size) FROM messages WHERE received_at < ? GROUP BY aci",
                    (before_ms,),
                )
            }
            cur = c.execute("DELETE FROM messages WHERE received_at < ?", (before_ms,))
            self._account_usage(c, per_account)
            deleted = max(cur.rowcount, 0)
            orphans = c.execute(
                "SELECT seq FROM shared_bodies WHERE NOT EXISTS"
                " (SELECT 1 FROM messages WHERE messages.shared_seq = shared_bodies.seq)"
            ).fetchall()
            freed += self._release_shared(c, {int(r[0]) for r in orphans})
            if deleted or orphans:
                self._account(c, -freed)
                self._residue = True
            return deleted

    # -- disclosure -----------------------------------------------------------------------

    def queued_for(self, aci: bytes) -> list[QueuedMessage]:
        rows = self._read(_MSG_SELECT + " WHERE m.aci = ? ORDER BY m.seq", (aci,))
        return [_message(r) for r in rows]

    def queued_from(self, aci: bytes) -> list[QueuedMessage]:
        rows = self._read(_MSG_SELECT + " WHERE m.source_aci = ? ORDER BY m.seq", (aci,))
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

    def scan_residue(self, needles: Sequence[bytes]) -> FileScan:
        """Scan the database file and its companions for ``needles``.

        First a checkpoint empties the WAL into the database. The companions (``-wal``,
        ``-shm``, ``-journal``) are then searched as they are: any occurrence there counts
        (if the relay runs and wrote since, the WAL may also hold live rows). The database
        is searched in an image of all its pages (free ones included) in which every byte of
        a live cell or of the file's structure is zeroed
        (:func:`securemsg.relay.filescan.blank_live`): what is found there no live row
        explains.

        Raises:
            StorageError: the store is closed, a file cannot be read, or the image is
                malformed.
        """
        needles = [bytes(n) for n in needles if n]
        if not on_disk(self._path):
            return FileScan((), ())
        self._checkpoint()
        files: list[tuple[str, int]] = []
        residue: list[tuple[str, int]] = []
        base = os.path.basename(self._path)
        for suffix in SIDE_FILE_SUFFIXES:
            try:
                with open(self._path + suffix, "rb") as f:
                    data = f.read()
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise StorageError("cannot read " + base + suffix) from exc
            files.append((base + suffix, len(data)))
            hits = sum(data.count(n) for n in needles)
            if hits:
                residue.append((base + suffix, hits))
        with self._errors():
            conn = self._c()
            conn.execute("BEGIN")  # one snapshot for the roots and the image
            try:
                roots = [
                    int(r[0])
                    for r in conn.execute("SELECT rootpage FROM sqlite_master WHERE rootpage > 0")
                ]
                image = conn.serialize()
            finally:
                conn.execute("COMMIT")
        files.append((base, len(image)))
        left = blank_live(image, roots)
        hits = sum(left.count(n) for n in needles)
        if hits:
            residue.append((base, hits))
        return FileScan(tuple(sorted(files)), tuple(sorted(residue)))

    # -- lifecycle ------------------------------------------------------------------------

    def kt_store(self) -> RelayKtStore:
        """The key-transparency directory's tables (schema migration 3) on this connection."""
        from securemsg.relay.kt_store import RelayKtStore

        return RelayKtStore(self)

    def close(self) -> None:
        """Close the database. Idempotent.

        Raises:
            StorageError: closing failed.
        """
        if self._conn is None:
            return
        if self._residue:
            self._checkpoint()
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
