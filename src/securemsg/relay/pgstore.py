"""The relay's durable state on PostgreSQL: :class:`PgRelayStore` (psycopg 3, synchronous).

Theory of operation
-------------------
Same contract as :class:`~securemsg.relay.store.SqliteRelayStore`, for a deployment that runs
several relay instances over one (replicated) PostgreSQL database. Chosen with
``securemsg relay serve --db postgresql://...``; needs the ``postgres`` extra
(``pip install 'securemsg[postgres]'``).

The relay runs its store on one storage thread, so the store is one synchronous psycopg
connection (autocommit, transactions begun explicitly): every operation is one transaction,
or one ``SAVEPOINT`` inside :meth:`PgRelayStore.batch` (group commit: one transaction per
batch, one WAL flush). The session runs with ``synchronous_commit = on``: a returned commit is
on the server's disk (and on its synchronous standbys, if the server has any).

Concurrency between instances (each instance is one store on its own connection):

- one-time prekeys: :meth:`take_bundles` deletes the key it hands out with
  ``DELETE ... WHERE key = (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING``: two instances
  never hand out the same key, and neither waits for the other's transaction;
- registration: ``INSERT ... ON CONFLICT DO NOTHING`` for the account and the device;
- queued bytes (the relay-wide budget) are counted in ``queue_usage``, split over
  :data:`USAGE_SHARDS` rows; each store adds to its own shard, once per transaction, just
  before the commit (so the hot row is locked only for the commit, and always after every
  message row: no lock-order deadlock with acks), and the budget check reads the sum;
- queued bytes per recipient account (``accounts.queued``, its share of the budget) are
  likewise summed in memory over the transaction and written just before the commit, in ACI
  order: a batch touches many accounts, and rows locked in the order the batch met them
  deadlocked two instances sending crosswise (PostgreSQL then failed one send with 40P01);
- delivery: :meth:`enqueue` issues ``NOTIFY`` on :data:`DELIVER_CHANNEL` for every mailbox
  it queued into, in the same transaction: PostgreSQL delivers notifications only on commit,
  so an instance that LISTENs (:mod:`securemsg.relay.cluster`) learns of committed envelopes
  only. The payload is the mailbox (ACI and device id, which the row holds anyway) and the
  sending instance's id; notifications are not kept once every listener has read them.
- the mailbox caps (``max_per_device``, ``max_bytes_per_device``) and the relay-wide budget
  are checked against committed rows: two instances queueing into one mailbox at the same
  moment can overshoot a cap by what their open batches hold (at most ``max_batch``
  requests each). The caps bound storage; they are not an exact quota.
- schema migrations run under a transaction-level advisory lock, so instances starting
  together migrate once.

Retention: PostgreSQL's ``DELETE`` marks a row dead; its bytes stay in the table file until
VACUUM reclaims the space (and the page is rewritten) and in the WAL until the segment is
recycled after a checkpoint. The migrations set aggressive per-table autovacuum settings on
``messages`` and ``shared_bodies`` (vacuum after 200 dead rows, no cost delay) and
:meth:`vacuum` runs ``VACUUM`` on them (the cluster's leader does so after each expiry sweep,
:meth:`securemsg.relay.cluster.PgCluster.vacuum`).
What is left, and for how long, is described in docs/scaling.md; the relay cannot read the
server's files, so :meth:`scan_residue` refuses (fail closed) instead of reporting nothing.

Every psycopg error becomes :class:`~securemsg.errors.StorageError` naming the error class
and SQLSTATE only (never a parameter value) and the operation is rolled back.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from securemsg.errors import StorageError, UsageError
from securemsg.limits import MAX_DEVICE_ID
from securemsg.relay.store import (
    AccountRow,
    BundleRow,
    CreateResult,
    DeviceRow,
    EnqueueResult,
    FileScan,
    KeyRow,
    NewDevice,
    QueuedMessage,
    ServerKeysRow,
)

if TYPE_CHECKING:
    import psycopg

    from securemsg.relay.kt_store import RelayKtStore

__all__ = [
    "DELIVER_CHANNEL",
    "MAX_NOTIFY_ENVELOPE",
    "PG_SCHEMA_VERSION",
    "PROVISION_CHANNEL",
    "REMOVED_CHANNEL",
    "TAKEN_CHANNEL",
    "USAGE_SHARDS",
    "PgRelayStore",
    "is_postgres_url",
]

_LOG = logging.getLogger("securemsg.relay")

#: NOTIFY channel: envelopes were committed for a mailbox (payload: instance, ACI, device).
DELIVER_CHANNEL: Final = "securemsg_deliver"
#: NOTIFY channel: a device authenticated on an instance (payload: generation, instance,
#: ACI, device); instances holding an older connection of the device close it.
TAKEN_CHANNEL: Final = "securemsg_taken"
#: NOTIFY channel: a device was removed (payload: instance, ACI, device); the instance
#: holding its connection tells it and closes it.
REMOVED_CHANNEL: Final = "securemsg_removed"
#: NOTIFY channel: a provisioning envelope for an address another instance holds
#: (payload: instance, address hex, envelope base64); sent in the transaction that deletes
#: the address, so it is delivered at most once.
PROVISION_CHANNEL: Final = "securemsg_provision"
#: Largest provisioning envelope that fits one NOTIFY payload (8000 bytes) in base64.
MAX_NOTIFY_ENVELOPE: Final = 5600
#: Rows ``queue_usage`` is split over (instances add to different rows).
USAGE_SHARDS: Final = 16
#: ``pg_advisory_xact_lock`` key for schema migrations ("SMRL" + 1).
_MIGRATION_LOCK: Final = 0x534D524C01
#: ``pg_advisory_xact_lock`` key a key-transparency epoch's commit holds ("SMRL" + 3).
KT_COMMIT_LOCK: Final = 0x534D524C03

#: The tables of a device's public prekeys.
_KEY_TABLES: Final = (
    "signed_pre_keys",
    "last_resort_kyber_pre_keys",
    "one_time_pre_keys",
    "one_time_kyber_pre_keys",
)

_MSG_AUTOVACUUM = (
    "autovacuum_vacuum_threshold = 200, autovacuum_vacuum_scale_factor = 0,"
    " autovacuum_vacuum_cost_delay = 0, autovacuum_vacuum_insert_threshold = 1000"
)

_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """CREATE TABLE schema_version (
            singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
            version INTEGER NOT NULL)""",
        """CREATE TABLE server_keys (
            singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
            trust_root_private BYTEA NOT NULL,
            trust_root_public BYTEA NOT NULL,
            server_key_id INTEGER NOT NULL,
            server_private BYTEA NOT NULL,
            server_public BYTEA NOT NULL,
            server_certificate BYTEA NOT NULL)""",
        """CREATE TABLE accounts (
            aci BYTEA PRIMARY KEY,
            identity_key BYTEA NOT NULL,
            access_key_digest BYTEA NOT NULL,
            created_date TEXT NOT NULL)""",
        """CREATE TABLE devices (
            aci BYTEA NOT NULL REFERENCES accounts (aci),
            device_id INTEGER NOT NULL,
            registration_id INTEGER NOT NULL,
            created_date TEXT NOT NULL,
            last_seen_date TEXT NOT NULL,
            PRIMARY KEY (aci, device_id))""",
        """CREATE TABLE signed_pre_keys (
            aci BYTEA NOT NULL,
            device_id INTEGER NOT NULL,
            key_id BIGINT NOT NULL,
            public_key BYTEA NOT NULL,
            signature BYTEA NOT NULL,
            PRIMARY KEY (aci, device_id))""",
        """CREATE TABLE last_resort_kyber_pre_keys (
            aci BYTEA NOT NULL,
            device_id INTEGER NOT NULL,
            key_id BIGINT NOT NULL,
            public_key BYTEA NOT NULL,
            signature BYTEA NOT NULL,
            PRIMARY KEY (aci, device_id))""",
        """CREATE TABLE one_time_pre_keys (
            aci BYTEA NOT NULL,
            device_id INTEGER NOT NULL,
            key_id BIGINT NOT NULL,
            public_key BYTEA NOT NULL,
            PRIMARY KEY (aci, device_id, key_id))""",
        """CREATE TABLE one_time_kyber_pre_keys (
            aci BYTEA NOT NULL,
            device_id INTEGER NOT NULL,
            key_id BIGINT NOT NULL,
            public_key BYTEA NOT NULL,
            signature BYTEA NOT NULL,
            PRIMARY KEY (aci, device_id, key_id))""",
        """CREATE TABLE messages (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            id BYTEA NOT NULL UNIQUE,
            aci BYTEA NOT NULL,
            device_id INTEGER NOT NULL,
            type INTEGER NOT NULL,
            source_aci BYTEA,
            source_device_id INTEGER NOT NULL,
            client_timestamp BIGINT NOT NULL,
            received_at BIGINT NOT NULL,
            body BYTEA NOT NULL)""",
        "CREATE INDEX messages_by_mailbox ON messages (aci, device_id, seq)",
        "CREATE INDEX messages_by_age ON messages (received_at)",
    ),
    # 2: multi-recipient bodies stored once, the relay-wide count of queued bytes (sharded:
    # several instances add to it), vacuum settings that reclaim deleted envelopes soon, and
    # the sequence that orders live-connection claims across instances.
    (
        """CREATE TABLE shared_bodies (
            seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            body BYTEA NOT NULL)""",
        "ALTER TABLE messages ADD COLUMN shared_seq BIGINT REFERENCES shared_bodies (seq)",
        "ALTER TABLE messages ADD COLUMN size INTEGER NOT NULL DEFAULT 0",
        "UPDATE messages SET size = LENGTH(body)",
        "CREATE INDEX messages_by_shared ON messages (shared_seq)",
        """CREATE TABLE queue_usage (
            shard INTEGER PRIMARY KEY,
            stored_bytes BIGINT NOT NULL)""",
        "INSERT INTO queue_usage SELECT s, 0 FROM generate_series(0, "
        + str(USAGE_SHARDS - 1)
        + ") AS s",
        "UPDATE queue_usage SET stored_bytes ="
        " (SELECT COALESCE(SUM(LENGTH(body)), 0) FROM messages) WHERE shard = 0",
        "ALTER TABLE messages SET (" + _MSG_AUTOVACUUM + ")",
        "ALTER TABLE shared_bodies SET (" + _MSG_AUTOVACUUM + ")",
        # generations of live-connection claims (securemsg.relay.cluster): the newest wins
        "CREATE SEQUENCE live_generation",
    ),
    # 3: whole-body bytes queued per recipient account, for its share of the budget
    (
        "ALTER TABLE accounts ADD COLUMN queued BIGINT NOT NULL DEFAULT 0",
        "UPDATE accounts SET queued ="
        " (SELECT COALESCE(SUM(size), 0) FROM messages WHERE messages.aci = accounts.aci)",
    ),
    # 4: key transparency (securemsg.relay.kt_store), as SQLite's migration 3: the
    # directory's keys, trie nodes, label versions, signed epoch heads, auditor cosignatures,
    # and the queue of unpublished (ACI -> identity key) updates, seeded with the accounts.
    (
        """CREATE TABLE kt_keys (
            singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
            vrf_seed BYTEA NOT NULL,
            head_seed BYTEA NOT NULL)""",
        """CREATE TABLE kt_nodes (
            node_key BYTEA PRIMARY KEY,
            left_key BYTEA,
            right_key BYTEA,
            commitment BYTEA NOT NULL,
            value BYTEA NOT NULL,
            digest BYTEA NOT NULL,
            label_hash BYTEA NOT NULL,
            last_epoch BIGINT NOT NULL,
            min_epoch BIGINT NOT NULL)""",
        """CREATE TABLE kt_values (
            label BYTEA NOT NULL,
            version BIGINT NOT NULL,
            epoch BIGINT NOT NULL,
            value BYTEA NOT NULL,
            PRIMARY KEY (label, version))""",
        """CREATE TABLE kt_epochs (
            epoch BIGINT PRIMARY KEY,
            root_hash BYTEA NOT NULL,
            signed_head BYTEA NOT NULL)""",
        """CREATE TABLE kt_cosignatures (
            epoch BIGINT NOT NULL,
            auditor_key BYTEA NOT NULL,
            signature BYTEA NOT NULL,
            PRIMARY KEY (epoch, auditor_key))""",
        "CREATE TABLE kt_pending (label BYTEA PRIMARY KEY, value BYTEA NOT NULL)",
        "INSERT INTO kt_pending (label, value) SELECT aci, identity_key FROM accounts",
    ),
    # 5: linked devices: each account's one open linking code, as a digest, until it is
    # used, replaced or expires (vacuumed as soon as the mailbox tables).
    (
        """CREATE TABLE linking_codes (
            aci BYTEA PRIMARY KEY,
            digest BYTEA NOT NULL,
            expires BIGINT NOT NULL)""",
        "ALTER TABLE linking_codes SET (" + _MSG_AUTOVACUUM + ")",
        # provisioning addresses open on some instance, so that another instance can hand
        # it an envelope: a digest of the random address and its expiry, nothing else.
        # UNLOGGED: never written to the WAL or replicated, emptied after a crash.
        """CREATE UNLOGGED TABLE provisioning_addresses (
            digest BYTEA PRIMARY KEY,
            expires BIGINT NOT NULL)""",
        "ALTER TABLE provisioning_addresses SET (" + _MSG_AUTOVACUUM + ")",
    ),
)

#: The PostgreSQL schema version this code writes.
PG_SCHEMA_VERSION: Final = len(_MIGRATIONS)

_MSG_COLUMNS = (
    "id, aci, device_id, type, source_aci, source_device_id, client_timestamp, received_at, body"
)
_MSG_SELECT = (
    "SELECT m.id, m.aci, m.device_id, m.type, m.source_aci, m.source_device_id,"
    " m.client_timestamp, m.received_at, m.body, s.body FROM messages AS m"
    " LEFT JOIN shared_bodies AS s ON s.seq = m.shared_seq"
)


def is_postgres_url(db: str | os.PathLike[str]) -> bool:
    """True for a ``postgresql://`` / ``postgres://`` connection URL (else: a SQLite path)."""
    text = os.fspath(db)
    return text.startswith(("postgresql://", "postgres://"))


_PSYCOPG: Any = None


def _psycopg() -> Any:
    global _PSYCOPG
    if _PSYCOPG is None:
        try:
            import psycopg
        except ImportError as exc:
            raise UsageError(
                "the PostgreSQL relay store needs psycopg: pip install 'securemsg[postgres]'"
            ) from exc
        _PSYCOPG = psycopg
    return _PSYCOPG


def _db_error(exc: BaseException) -> StorageError:
    # The class and SQLSTATE only: server messages can quote key values (DETAIL lines).
    state = getattr(exc, "sqlstate", None)
    return StorageError(
        "relay database error: " + type(exc).__name__ + (f" ({state})" if state else "")
    )


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


class _Rollback(Exception):
    """Raised inside a transaction to undo it."""


def _address_digest(address: bytes) -> bytes:
    return hashlib.sha256(b"securemsg-provisioning-address" + bytes(address)).digest()


#: What a disclosure report says about the files of a PostgreSQL relay (not scannable).
FILES_NOTE: Final = (
    "not scanned: PostgreSQL's files are on the database server, which does not overwrite "
    "deleted rows. An acknowledged or expired envelope's bytes can remain in free space of "
    "the table's pages until VACUUM (autovacuum after 200 deleted rows; the relay's leader "
    "after each expiry sweep) has freed it and new rows have overwritten it, in write-ahead-"
    "log segments until they are removed or recycled and overwritten, and in backups, WAL "
    "archives and replicas for as long as those are kept (see docs/scaling.md)"
)
#: The not-held lines about deleted envelopes, for a PostgreSQL relay.
DELETED_NOT_HELD: Final = (
    "messages after the recipient device acknowledged them, as rows (deleted at once; "
    "PostgreSQL's files may keep their bytes for a while, see below)",
    "messages older than 30 days that were never delivered (deleted by the expiry sweep, "
    "with the same caveat)",
)


class PgRelayStore:
    """:class:`~securemsg.relay.store.RelayStore` on a PostgreSQL database.

    One connection; like the SQLite store it may be opened on one thread and then used by
    one other thread only (the relay's storage thread). Open one store per instance.
    """

    __slots__ = (
        "_account_deltas",
        "_batch_depth",
        "_conn",
        "_delta",
        "_instance",
        "_notified",
        "_provisions",
        "_removed",
        "_shard",
        "_url",
    )

    #: Read by :func:`securemsg.relay.disclosure.disclose` (what the files may keep).
    files_note: Final = FILES_NOTE
    deleted_not_held: Final = DELETED_NOT_HELD

    def __init__(self, conn: psycopg.Connection[Any], url: str, instance: str) -> None:
        """Wrap an open connection (internal: use :meth:`open`)."""
        self._conn: psycopg.Connection[Any] | None = conn
        self._url = url
        self._instance = instance
        self._shard = secrets.randbelow(USAGE_SHARDS)
        self._batch_depth = 0
        #: Bytes added to (removed from) the queues by the open transaction's committed
        #: operations, written to this store's usage shard just before the commit.
        self._delta = 0
        #: Per recipient account, bytes added to (removed from) its queues by the open
        #: transaction's committed operations; written to ``accounts.queued`` at the commit.
        self._account_deltas: dict[bytes, int] = {}
        self._notified: set[tuple[bytes, int]] = set()
        #: Devices removed by the open transaction (announced on REMOVED_CHANNEL at commit).
        self._removed: set[tuple[bytes, int]] = set()
        #: Provisioning envelopes claimed by the open transaction (NOTIFY payloads).
        self._provisions: list[str] = []

    @classmethod
    def open(cls, url: str, *, instance: str | None = None) -> PgRelayStore:
        """Connect to ``url`` (``postgresql://...``), create or migrate the relay schema.

        ``instance`` names this relay instance in its notifications (default: random).

        Raises:
            UsageError: psycopg is not installed.
            StorageError: cannot connect, not a relay database, written by a newer version.
        """
        psycopg = _psycopg()
        try:
            conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        except psycopg.Error as exc:
            raise _db_error(exc) from exc
        store = cls(conn, url, instance or secrets.token_hex(8))
        try:
            store._prepare()
        except BaseException:
            with suppress(Exception):
                conn.close()
            store._conn = None
            raise
        return store

    @property
    def url(self) -> str:
        """The connection URL (the cluster listener connects with it)."""
        return self._url

    @property
    def instance(self) -> str:
        """This instance's id in notifications."""
        return self._instance

    def _c(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            raise StorageError("the relay store is closed")
        return self._conn

    @contextmanager
    def _errors(self) -> Iterator[None]:
        psycopg = _psycopg()
        try:
            yield
        except psycopg.Error as exc:
            raise _db_error(exc) from exc

    def _prepare(self) -> None:
        with self._errors():
            conn = self._c()
            conn.execute("SET synchronous_commit = on")
            conn.execute("SET client_min_messages = warning")
        with self._tx() as c:
            c.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            has = c.execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
            if not has or not has[0]:
                other = c.execute(
                    "SELECT 1 FROM pg_tables WHERE schemaname = current_schema() LIMIT 1"
                ).fetchone()
                if other is not None:
                    raise StorageError("the database is not a securemsg relay database")
                version = 0
            else:
                row = c.execute("SELECT version FROM schema_version").fetchone()
                if row is None or not isinstance(row[0], int):
                    raise StorageError("the relay schema version is missing or corrupt")
                version = int(row[0])
            if version > PG_SCHEMA_VERSION:
                raise StorageError("the relay database was written by a newer securemsg")
            for step in range(version, PG_SCHEMA_VERSION):
                for statement in _MIGRATIONS[step]:
                    c.execute(statement)
            if version == 0:
                c.execute("INSERT INTO schema_version VALUES (1, %s)", (PG_SCHEMA_VERSION,))
            elif version < PG_SCHEMA_VERSION:
                c.execute("UPDATE schema_version SET version = %s", (PG_SCHEMA_VERSION,))

    def _in_tx(self) -> bool:
        psycopg = _psycopg()
        return bool(self._c().info.transaction_status == psycopg.pq.TransactionStatus.INTRANS)

    def _begin(self) -> psycopg.Connection[Any]:
        conn = self._c()
        with self._errors():
            conn.execute("BEGIN")
        self._delta = 0
        self._account_deltas = {}
        self._notified = set()
        self._removed = set()
        self._provisions = []
        return conn

    def _commit(self, conn: psycopg.Connection[Any]) -> None:
        """Write the accounts' queued bytes (in ACI order) and the usage delta (last: the
        shard row is locked only for the commit) and the notifications, then COMMIT."""
        with self._errors():
            try:
                for aci, delta in sorted(self._account_deltas.items()):
                    if delta:
                        conn.execute(
                            "UPDATE accounts SET queued = GREATEST(0, queued + %s) WHERE aci = %s",
                            (delta, aci),
                        )
                if self._delta:
                    conn.execute(
                        "UPDATE queue_usage SET stored_bytes = stored_bytes + %s WHERE shard = %s",
                        (self._delta, self._shard),
                    )
                if self._notified:  # one statement for every mailbox of the transaction
                    conn.execute(
                        "SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p",
                        (
                            DELIVER_CHANNEL,
                            [f"{self._instance} {a.hex()} {d}" for a, d in sorted(self._notified)],
                        ),
                    )
                if self._provisions:
                    conn.execute(
                        "SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p",
                        (PROVISION_CHANNEL, self._provisions),
                    )
                if self._removed:
                    conn.execute(
                        "SELECT pg_notify(%s, p) FROM unnest(%s::text[]) AS p",
                        (
                            REMOVED_CHANNEL,
                            [f"{self._instance} {a.hex()} {d}" for a, d in sorted(self._removed)],
                        ),
                    )
                conn.execute("COMMIT")
            except BaseException:
                with suppress(Exception):
                    conn.execute("ROLLBACK")
                raise
            finally:
                self._delta = 0
                self._account_deltas = {}
                self._notified = set()
                self._removed = set()
                self._provisions = []

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Connection[Any]]:
        if self._batch_depth:
            with self._savepoint() as conn:
                yield conn
            return
        conn = self._begin()
        try:
            yield conn
        except BaseException as exc:
            with suppress(Exception):
                conn.execute("ROLLBACK")
            self._delta = 0
            self._account_deltas = {}
            self._notified = set()
            self._removed = set()
            self._provisions = []
            if isinstance(exc, _psycopg().Error):
                raise _db_error(exc) from exc
            raise
        self._commit(conn)

    @contextmanager
    def _savepoint(self) -> Iterator[psycopg.Connection[Any]]:
        conn = self._c()
        if not self._in_tx():
            raise StorageError("relay database error: the batch transaction was lost")
        delta, notified, removed = self._delta, set(self._notified), set(self._removed)
        account_deltas = dict(self._account_deltas)
        provisions = list(self._provisions)
        with self._errors():
            conn.execute("SAVEPOINT relay_op")
        try:
            yield conn
        except BaseException as exc:
            with suppress(Exception):
                conn.execute("ROLLBACK TO SAVEPOINT relay_op")
                conn.execute("RELEASE SAVEPOINT relay_op")
            self._delta, self._notified, self._removed = delta, notified, removed
            self._account_deltas = account_deltas
            self._provisions = provisions
            if isinstance(exc, _psycopg().Error):
                raise _db_error(exc) from exc
            raise
        with self._errors():
            conn.execute("RELEASE SAVEPOINT relay_op")

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Many operations in one transaction, a ``SAVEPOINT`` each, one ``COMMIT``.

        Same contract as :meth:`SqliteRelayStore.batch
        <securemsg.relay.store.SqliteRelayStore.batch>`.

        Raises:
            StorageError: the transaction could not be begun or committed, or was lost.
            UsageError: already inside a batch.
        """
        if self._batch_depth:
            raise UsageError("relay store batches do not nest")
        conn = self._begin()
        self._batch_depth = 1
        try:
            yield
        except BaseException:
            with suppress(Exception):
                conn.execute("ROLLBACK")
            self._delta = 0
            self._account_deltas = {}
            self._notified = set()
            self._removed = set()
            self._provisions = []
            raise
        finally:
            self._batch_depth = 0
        if not self._in_tx():
            with suppress(Exception):
                conn.execute("ROLLBACK")
            raise StorageError("relay database error: the batch transaction was lost")
        self._commit(conn)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self._errors():
            return self._c().execute(sql, tuple(params)).fetchall()

    # -- server keys ----------------------------------------------------------------------

    def init_server_keys(self, keys: ServerKeysRow) -> ServerKeysRow:
        with self._tx() as c:
            c.execute(
                "INSERT INTO server_keys VALUES (1, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (singleton) DO NOTHING",
                (
                    keys.trust_root_private,
                    keys.trust_root_public,
                    keys.server_key_id,
                    keys.server_private,
                    keys.server_public,
                    keys.server_certificate,
                ),
            )
            row = c.execute(
                "SELECT trust_root_private, trust_root_public, server_key_id, server_private,"
                " server_public, server_certificate FROM server_keys"
            ).fetchone()
        if row is None:
            raise StorageError("the relay's server keys are missing (corrupt database)")
        return ServerKeysRow(
            bytes(row[0]), bytes(row[1]), int(row[2]), bytes(row[3]), bytes(row[4]), bytes(row[5])
        )

    # -- accounts and devices -------------------------------------------------------------

    def create_device(
        self, device: NewDevice, today: str, *, new_account_only: bool = False
    ) -> CreateResult:
        try:
            with self._tx() as c:
                created = c.execute(
                    "INSERT INTO accounts (aci, identity_key, access_key_digest, created_date)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT (aci) DO NOTHING RETURNING 1",
                    (device.aci, device.identity_key, device.access_key_digest, today),
                ).fetchone()
                if created is not None:  # queued for the directory's next epoch, atomically
                    c.execute(
                        "INSERT INTO kt_pending (label, value) VALUES (%s, %s)"
                        " ON CONFLICT (label) DO UPDATE SET value = excluded.value",
                        (device.aci, device.identity_key),
                    )
                acc = c.execute(
                    "SELECT identity_key FROM accounts WHERE aci = %s FOR SHARE", (device.aci,)
                ).fetchone()
                if acc is None or bytes(acc[0]) != device.identity_key:
                    raise _Rollback(CreateResult.IDENTITY_MISMATCH)
                if created is None and new_account_only:
                    taken = c.execute(
                        "SELECT 1 FROM devices WHERE aci = %s AND device_id = %s",
                        (device.aci, device.device_id),
                    ).fetchone()
                    raise _Rollback(
                        CreateResult.DEVICE_EXISTS if taken else CreateResult.LINK_REQUIRED
                    )
                made = c.execute(
                    "INSERT INTO devices (aci, device_id, registration_id, created_date,"
                    " last_seen_date) VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (aci, device_id) DO NOTHING RETURNING 1",
                    (device.aci, device.device_id, device.registration_id, today, today),
                ).fetchone()
                if made is None:
                    raise _Rollback(CreateResult.DEVICE_EXISTS)
                self._put_keys(
                    c,
                    device.aci,
                    device.device_id,
                    device.pre_keys,
                    device.kyber_pre_keys,
                    device.signed_pre_key,
                    device.last_resort_kyber_pre_key,
                )
        except _Rollback as refused:
            result = refused.args[0]
            assert isinstance(result, CreateResult)
            return result
        return CreateResult.CREATED

    def link_device(
        self, device: NewDevice, today: str, code_digest: bytes, now_ms: int
    ) -> tuple[CreateResult, int]:
        try:
            with self._tx() as c:
                acc = c.execute(
                    "SELECT identity_key FROM accounts WHERE aci = %s FOR SHARE", (device.aci,)
                ).fetchone()
                if acc is None:
                    raise _Rollback(CreateResult.LINK_REFUSED)
                if bytes(acc[0]) != device.identity_key:
                    raise _Rollback(CreateResult.IDENTITY_MISMATCH)
                # Deleting the code first makes it single use across instances: a concurrent
                # link with the same code waits for this row and then finds it gone.
                code = c.execute(
                    "DELETE FROM linking_codes WHERE aci = %s RETURNING digest, expires",
                    (device.aci,),
                ).fetchone()
                if (
                    code is None
                    or int(code[1]) <= now_ms
                    or not hmac.compare_digest(bytes(code[0]), code_digest)
                ):
                    raise _Rollback(CreateResult.LINK_REFUSED)
                taken = {
                    int(r[0])
                    for r in c.execute(
                        "SELECT device_id FROM devices WHERE aci = %s", (device.aci,)
                    ).fetchall()
                }
                device_id = device.device_id
                if device_id == 0:
                    free = [d for d in range(2, MAX_DEVICE_ID + 1) if d not in taken]
                    if not free:
                        raise _Rollback(CreateResult.NO_FREE_ID)
                    device_id = free[0]
                made = c.execute(
                    "INSERT INTO devices (aci, device_id, registration_id, created_date,"
                    " last_seen_date) VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (aci, device_id) DO NOTHING RETURNING 1",
                    (device.aci, device_id, device.registration_id, today, today),
                ).fetchone()
                if made is None:
                    raise _Rollback(CreateResult.DEVICE_EXISTS)
                for table in _KEY_TABLES:  # keys a removed device's late request left behind
                    c.execute(
                        "DELETE FROM " + table + " WHERE aci = %s AND device_id = %s",
                        (device.aci, device_id),
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
        except _Rollback as refused:
            result = refused.args[0]
            assert isinstance(result, CreateResult)
            return result, 0
        return CreateResult.CREATED, device_id

    def put_linking_code(self, aci: bytes, code_digest: bytes, expires_at_ms: int) -> None:
        with self._tx() as c:
            c.execute(
                "INSERT INTO linking_codes (aci, digest, expires) VALUES (%s, %s, %s)"
                " ON CONFLICT (aci) DO UPDATE SET digest = excluded.digest,"
                " expires = excluded.expires",
                (aci, code_digest, expires_at_ms),
            )

    def linking_code_expiry(self, aci: bytes) -> int | None:
        rows = self._read("SELECT expires FROM linking_codes WHERE aci = %s", (aci,))
        return int(rows[0][0]) if rows else None

    def expire_linking_codes(self, now_ms: int) -> int:
        with self._tx() as c:
            rows = c.execute(
                "DELETE FROM linking_codes WHERE expires <= %s RETURNING 1", (now_ms,)
            ).fetchall()
        return len(rows)

    def remove_device(self, aci: bytes, device_id: int) -> bool:
        try:
            with self._tx() as c:
                gone = c.execute(
                    "DELETE FROM devices WHERE aci = %s AND device_id = %s RETURNING 1",
                    (aci, device_id),
                ).fetchone()
                if gone is None:
                    raise _Rollback(False)
                for table in _KEY_TABLES:
                    c.execute(
                        "DELETE FROM " + table + " WHERE aci = %s AND device_id = %s",
                        (aci, device_id),
                    )
                rows = c.execute(
                    "DELETE FROM messages WHERE aci = %s AND device_id = %s"
                    " RETURNING LENGTH(body), shared_seq, size",
                    (aci, device_id),
                ).fetchall()
                if rows:
                    self._account_usage({aci: -sum(int(r[2]) for r in rows)})
                    freed = sum(int(r[0]) for r in rows)
                    freed += self._release_shared(c, {int(r[1]) for r in rows if r[1] is not None})
                    self._delta -= freed
                self._removed.add((aci, device_id))
        except _Rollback:
            return False
        return True

    # -- provisioning addresses (so that any instance can reach the one holding one) -------

    #: Read by the relay service: the largest envelope one NOTIFY can carry.
    max_provision_envelope: Final = MAX_NOTIFY_ENVELOPE

    def open_provisioning(self, address: bytes, expires_at_ms: int) -> None:
        """Register a provisioning address this instance holds (its digest and expiry)."""
        with self._tx() as c:
            c.execute(
                "INSERT INTO provisioning_addresses (digest, expires) VALUES (%s, %s)"
                " ON CONFLICT (digest) DO UPDATE SET expires = excluded.expires",
                (_address_digest(address), expires_at_ms),
            )

    def close_provisioning(self, address: bytes) -> None:
        """Forget a provisioning address (delivered here, or its connection closed)."""
        with self._tx() as c:
            c.execute(
                "DELETE FROM provisioning_addresses WHERE digest = %s", (_address_digest(address),)
            )

    def claim_provisioning(self, address: bytes, envelope: bytes, now_ms: int) -> bool:
        """Delete the address if it is open and unexpired and, in the same transaction, send
        ``envelope`` to the instance holding it (PROVISION_CHANNEL); False if there is no
        such address (never opened, expired, delivered already)."""
        if len(envelope) > MAX_NOTIFY_ENVELOPE:
            raise UsageError("provisioning envelope too large for a notification")
        with self._tx() as c:
            row = c.execute(
                "DELETE FROM provisioning_addresses WHERE digest = %s RETURNING expires",
                (_address_digest(address),),
            ).fetchone()
            if row is None or int(row[0]) <= now_ms:
                return False
            payload = base64.b64encode(envelope).decode("ascii")
            self._provisions.append(f"{self._instance} {address.hex()} {payload}")
        return True

    def expire_provisioning(self, now_ms: int) -> int:
        """Delete expired provisioning addresses (of instances that died); how many."""
        with self._tx() as c:
            rows = c.execute(
                "DELETE FROM provisioning_addresses WHERE expires <= %s RETURNING 1", (now_ms,)
            ).fetchall()
        return len(rows)

    def get_account(self, aci: bytes) -> AccountRow | None:
        rows = self._read(
            "SELECT aci, identity_key, access_key_digest, created_date FROM accounts"
            " WHERE aci = %s",
            (aci,),
        )
        if not rows:
            return None
        r = rows[0]
        return AccountRow(bytes(r[0]), bytes(r[1]), bytes(r[2]), str(r[3]))

    def set_access_key_digest(self, aci: bytes, digest: bytes) -> bool:
        with self._tx() as c:
            cur = c.execute(
                "UPDATE accounts SET access_key_digest = %s WHERE aci = %s", (digest, aci)
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
        rows = self._devices("aci = %s AND device_id = %s", (aci, device_id))
        return rows[0] if rows else None

    def list_devices(self, aci: bytes) -> list[DeviceRow]:
        return self._devices("aci = %s", (aci,))

    def touch_device(self, aci: bytes, device_id: int, today: str) -> None:
        with self._tx() as c:
            c.execute(
                "UPDATE devices SET last_seen_date = %s WHERE aci = %s AND device_id = %s"
                " AND last_seen_date <> %s",
                (today, aci, device_id, today),
            )

    # -- prekeys --------------------------------------------------------------------------

    @staticmethod
    def _put_keys(
        c: psycopg.Connection[Any],
        aci: bytes,
        device_id: int,
        pre_keys: Sequence[KeyRow],
        kyber_pre_keys: Sequence[KeyRow],
        signed_pre_key: KeyRow | None,
        last_resort: KeyRow | None,
    ) -> None:
        with c.cursor() as cur:
            if pre_keys:
                cur.executemany(
                    "INSERT INTO one_time_pre_keys (aci, device_id, key_id, public_key)"
                    " VALUES (%s, %s, %s, %s) ON CONFLICT (aci, device_id, key_id)"
                    " DO UPDATE SET public_key = excluded.public_key",
                    [(aci, device_id, k.key_id, k.public_key) for k in pre_keys],
                )
            if kyber_pre_keys:
                cur.executemany(
                    "INSERT INTO one_time_kyber_pre_keys"
                    " (aci, device_id, key_id, public_key, signature)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (aci, device_id, key_id)"
                    " DO UPDATE SET public_key = excluded.public_key,"
                    " signature = excluded.signature",
                    [(aci, device_id, k.key_id, k.public_key, k.signature) for k in kyber_pre_keys],
                )
        for table, key in (
            ("signed_pre_keys", signed_pre_key),
            ("last_resort_kyber_pre_keys", last_resort),
        ):
            if key is not None:
                c.execute(
                    "INSERT INTO " + table + " (aci, device_id, key_id, public_key, signature)"
                    " VALUES (%s, %s, %s, %s, %s) ON CONFLICT (aci, device_id) DO UPDATE SET"
                    " key_id = excluded.key_id, public_key = excluded.public_key,"
                    " signature = excluded.signature",
                    (aci, device_id, key.key_id, key.public_key, key.signature),
                )

    @staticmethod
    def _counts(c: psycopg.Connection[Any], aci: bytes, device_id: int) -> tuple[int, int]:
        row = c.execute(
            "SELECT (SELECT COUNT(*) FROM one_time_pre_keys WHERE aci = %s AND device_id = %s),"
            " (SELECT COUNT(*) FROM one_time_kyber_pre_keys WHERE aci = %s AND device_id = %s)",
            (aci, device_id, aci, device_id),
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

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
            acc = c.execute("SELECT identity_key FROM accounts WHERE aci = %s", (aci,)).fetchone()
            if acc is None:
                return []
            if device_id is None:
                devs = c.execute(
                    "SELECT device_id, registration_id FROM devices WHERE aci = %s"
                    " ORDER BY device_id",
                    (aci,),
                ).fetchall()
            else:
                devs = c.execute(
                    "SELECT device_id, registration_id FROM devices WHERE aci = %s"
                    " AND device_id = %s",
                    (aci, device_id),
                ).fetchall()
            out: list[BundleRow] = []
            for dev_id, reg_id in devs:
                key = (aci, dev_id)
                spk = c.execute(
                    "SELECT key_id, public_key, signature FROM signed_pre_keys"
                    " WHERE aci = %s AND device_id = %s",
                    key,
                ).fetchone()
                lr = c.execute(
                    "SELECT key_id, public_key, signature FROM last_resort_kyber_pre_keys"
                    " WHERE aci = %s AND device_id = %s",
                    key,
                ).fetchone()
                if spk is None or lr is None:
                    raise StorageError("a device without signed prekeys (corrupt database)")
                ec = ky = None
                if one_time:
                    # At most once across instances: a key locked by another transaction is
                    # skipped, and the one taken is deleted in the same statement.
                    ec = c.execute(
                        "DELETE FROM one_time_pre_keys WHERE (aci, device_id, key_id) ="
                        " (SELECT aci, device_id, key_id FROM one_time_pre_keys"
                        " WHERE aci = %s AND device_id = %s ORDER BY key_id LIMIT 1"
                        " FOR UPDATE SKIP LOCKED) RETURNING key_id, public_key",
                        key,
                    ).fetchone()
                    ky = c.execute(
                        "DELETE FROM one_time_kyber_pre_keys WHERE (aci, device_id, key_id) ="
                        " (SELECT aci, device_id, key_id FROM one_time_kyber_pre_keys"
                        " WHERE aci = %s AND device_id = %s ORDER BY key_id LIMIT 1"
                        " FOR UPDATE SKIP LOCKED) RETURNING key_id, public_key, signature",
                        key,
                    ).fetchone()
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
    def _usage(c: psycopg.Connection[Any]) -> int:
        row = c.execute("SELECT COUNT(*), COALESCE(SUM(stored_bytes), 0) FROM queue_usage")
        got = row.fetchone()
        if got is None or int(got[0]) != USAGE_SHARDS:
            raise StorageError("the relay's queue usage rows are missing (corrupt database)")
        return int(got[1])

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
        # (own part stored in the row, whether it refers to the one stored shared part), as
        # SqliteRelayStore.enqueue does
        parts: list[tuple[bytes, bool]] = []
        for m in messages:
            if m.shared and (m.shared is shared or m.shared == shared):
                parts.append((m.body, True))
            elif m.shared:  # another shared part than this send's: stored whole
                parts.append((m.whole_body(), False))
            elif shared and m.body.endswith(shared):
                parts.append((m.body[: len(m.body) - len(shared)], True))
            else:
                parts.append((m.body, False))
        uses_shared = any(flag for _, flag in parts)
        stored = sum(len(own) for own, _ in parts) + (len(shared) if uses_shared else 0)
        per_account: dict[bytes, int] = {}
        for m in messages:
            per_account[m.aci] = per_account.get(m.aci, 0) + m.size
        boxes = sorted({(m.aci, m.device_id) for m in messages})
        try:
            with self._tx() as c:
                usage: int | None = None
                for box in boxes:
                    adding = [m for m in messages if (m.aci, m.device_id) == box]
                    # the mailbox's count and bytes, and the relay-wide usage, in one trip
                    row = c.execute(
                        "SELECT COUNT(*), COALESCE(SUM(size), 0),"
                        " (SELECT SUM(stored_bytes) FROM queue_usage),"
                        " (SELECT COUNT(*) FROM queue_usage)"
                        " FROM messages WHERE aci = %s AND device_id = %s",
                        box,
                    ).fetchone()
                    assert row is not None
                    if int(row[3]) != USAGE_SHARDS:
                        raise StorageError(
                            "the relay's queue usage rows are missing (corrupt database)"
                        )
                    usage = int(row[2])
                    if int(row[0]) + len(adding) > max_per_device:
                        raise _Rollback(EnqueueResult.MAILBOX_FULL)
                    added_bytes = sum(m.size for m in adding)
                    if max_bytes_per_device is not None and (
                        int(row[1]) + added_bytes > max_bytes_per_device
                    ):
                        raise _Rollback(EnqueueResult.MAILBOX_FULL)
                if max_bytes_per_account is not None:
                    for aci, added in sorted(per_account.items()):
                        got = c.execute(
                            "SELECT queued FROM accounts WHERE aci = %s", (aci,)
                        ).fetchone()
                        pending = self._account_deltas.get(aci, 0)  # this transaction's
                        queued = (0 if got is None else int(got[0])) + pending
                        if queued + added > max_bytes_per_account:
                            raise _Rollback(EnqueueResult.ACCOUNT_FULL)
                if max_total_bytes is not None:
                    if usage is None:
                        usage = self._usage(c)
                    if usage + self._delta + stored > max_total_bytes:
                        raise _Rollback(EnqueueResult.RELAY_FULL)
                shared_seq: int | None = None
                if uses_shared:
                    got = c.execute(
                        "INSERT INTO shared_bodies (body) VALUES (%s) RETURNING seq", (shared,)
                    ).fetchone()
                    assert got is not None
                    shared_seq = int(got[0])
                insert = (
                    "INSERT INTO messages (" + _MSG_COLUMNS + ", shared_seq, size)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                )
                with c.cursor() as cur:
                    rows = [
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
                        for m, (own, flag) in zip(messages, parts, strict=True)
                    ]
                    if len(rows) == 1:  # the common case: one round trip, no pipeline
                        cur.execute(insert, rows[0])
                    else:
                        cur.executemany(insert, rows)
                self._account_usage(per_account)
                self._delta += stored
                self._notified.update(boxes)
        except _Rollback as refused:
            result = refused.args[0]
            assert isinstance(result, EnqueueResult)
            return result
        return EnqueueResult.QUEUED

    def _account_usage(self, deltas: dict[bytes, int]) -> None:
        """Add ``deltas`` to the accounts' queued bytes, at this transaction's commit."""
        for aci, delta in deltas.items():
            self._account_deltas[aci] = self._account_deltas.get(aci, 0) + delta

    def account_queued_bytes(self, aci: bytes) -> int:
        """Bytes of whole bodies queued for all devices of ``aci`` (its share of the budget)."""
        rows = self._read("SELECT queued FROM accounts WHERE aci = %s", (aci,))
        return int(rows[0][0]) if rows else 0

    def queued_bytes(self) -> int:
        with self._errors():
            return self._usage(self._c())

    def pending(self, aci: bytes, device_id: int) -> list[QueuedMessage]:
        rows = self._read(
            _MSG_SELECT + " WHERE m.aci = %s AND m.device_id = %s ORDER BY m.seq",
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
        """A page of the device's queue in ``seq`` order (as
        ``SqliteRelayStore.pending_page``).
        ``seq`` values are never reused here, but transactions of several instances commit
        out of ``seq`` order: a pager must rescan from the start when told of a commit."""
        if limit <= 0:
            return []
        sql = _MSG_SELECT.replace("SELECT ", "SELECT m.seq, ", 1) + (
            " WHERE m.aci = %s AND m.device_id = %s"
        )
        params: tuple[Any, ...] = (aci, device_id)
        if after_seq is not None:
            sql += " AND m.seq > %s"
            params += (after_seq,)
        sql += " ORDER BY m.seq LIMIT %s"
        params += (limit,)
        out: list[tuple[int, QueuedMessage]] = []
        total = 0
        for row in self._read(sql, params):
            message = _message(row[1:])
            size = len(message.body)
            if out and max_bytes is not None and total + size > max_bytes:
                break
            total += size
            out.append((int(row[0]), message))
        return out

    @staticmethod
    def _release_shared(c: psycopg.Connection[Any], seqs: set[int]) -> int:
        freed = 0
        for seq in sorted(seqs):
            row = c.execute(
                "DELETE FROM shared_bodies WHERE seq = %s AND NOT EXISTS"
                " (SELECT 1 FROM messages WHERE shared_seq = %s) RETURNING LENGTH(body)",
                (seq, seq),
            ).fetchone()
            if row is not None:
                freed += int(row[0])
        return freed

    def ack(self, aci: bytes, device_id: int, ids: Sequence[bytes]) -> int:
        if not ids:
            return 0
        with self._tx() as c:
            rows = c.execute(
                "DELETE FROM messages WHERE aci = %s AND device_id = %s AND id = ANY(%s)"
                " RETURNING LENGTH(body), shared_seq, size",
                (aci, device_id, list(ids)),
            ).fetchall()
            if rows:
                self._account_usage({aci: -sum(int(r[2]) for r in rows)})
                freed = sum(int(r[0]) for r in rows)
                freed += self._release_shared(c, {int(r[1]) for r in rows if r[1] is not None})
                self._delta -= freed
        return len(rows)

    def expire(self, before_ms: int) -> int:
        with self._tx() as c:
            rows = c.execute(
                "DELETE FROM messages WHERE received_at < %s RETURNING LENGTH(body), aci, size",
                (before_ms,),
            ).fetchall()
            per_account: dict[bytes, int] = {}
            for r in rows:
                per_account[bytes(r[1])] = per_account.get(bytes(r[1]), 0) - int(r[2])
            self._account_usage(per_account)
            freed = sum(int(r[0]) for r in rows)
            orphans = c.execute(
                "DELETE FROM shared_bodies WHERE NOT EXISTS (SELECT 1 FROM messages"
                " WHERE messages.shared_seq = shared_bodies.seq) RETURNING LENGTH(body)"
            ).fetchall()
            freed += sum(int(r[0]) for r in orphans)
            self._delta -= freed
        return len(rows)

    def vacuum(self) -> None:
        """``VACUUM`` the mailbox tables: the space of deleted envelopes becomes reusable
        (autovacuum does this too; the sweep leader runs it after each sweep).

        Raises:
            StorageError: inside a batch, or the database refused.
        """
        if self._batch_depth or self._in_tx():
            raise StorageError("VACUUM cannot run inside a transaction")
        with self._errors():
            self._c().execute("VACUUM messages, shared_bodies")

    # -- disclosure -----------------------------------------------------------------------

    def queued_for(self, aci: bytes) -> list[QueuedMessage]:
        rows = self._read(_MSG_SELECT + " WHERE m.aci = %s ORDER BY m.seq", (aci,))
        return [_message(r) for r in rows]

    def queued_from(self, aci: bytes) -> list[QueuedMessage]:
        rows = self._read(_MSG_SELECT + " WHERE m.source_aci = %s ORDER BY m.seq", (aci,))
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
                "SELECT " + cols + " FROM " + table + " WHERE aci = %s AND device_id = %s"
                " ORDER BY key_id",
                (aci, device_id),
            )
            out[table] = [
                KeyRow(int(r[0]), bytes(r[1]), bytes(r[2]) if signed else b"") for r in rows
            ]
        return out

    def schema(self) -> dict[str, tuple[str, ...]]:
        rows = self._read(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = current_schema() ORDER BY table_name, ordinal_position"
        )
        out: dict[str, list[str]] = {}
        for table, column in rows:
            out.setdefault(str(table), []).append(str(column))
        return {t: tuple(c) for t, c in out.items()}

    def scan_residue(self, needles: Sequence[bytes]) -> FileScan:
        """Refused: PostgreSQL's files (tables, WAL) belong to the database server, which the
        relay cannot read; a scan that looked at nothing must not report "no residue".

        Raises:
            StorageError: always.
        """
        raise StorageError(
            "a file scan needs the database's files: PostgreSQL keeps them on the database"
            " server (see docs/scaling.md for what it retains after a delete)"
        )

    # -- lifecycle ------------------------------------------------------------------------

    def kt_store(self) -> RelayKtStore:
        """The key-transparency directory's tables (schema migration 4) on this connection;
        an epoch's commit holds :data:`KT_COMMIT_LOCK`, so two instances never both commit it."""
        from securemsg.relay.kt_store import RelayKtStore

        return RelayKtStore(
            self,
            paramstyle="format",
            lock_sql="SELECT pg_advisory_xact_lock(" + str(KT_COMMIT_LOCK) + ")",
        )

    def close(self) -> None:
        """Close the connection. Idempotent."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with suppress(Exception):
                conn.close()

    def __enter__(self) -> PgRelayStore:
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
        return f"PgRelayStore(instance={self._instance!r}, {state})"
