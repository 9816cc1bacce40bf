"""The persistent store: one SQLite file, the only disk I/O of the library.

Theory of operation
-------------------
:class:`SqliteProtocolStore` implements every interface of :mod:`securemsg.store.base` over one
``sqlite3`` connection (standard library). Records are stored as their ``to_bytes()`` blobs and
decoded on load; a blob that no longer decodes raises :class:`~securemsg.errors.StorageError`
(local corruption, never the peer's fault). Every ``sqlite3`` error becomes a ``StorageError``.

Durability: the database runs in WAL mode with ``synchronous=FULL``, so a call that returned
(or a ``transaction()`` block that exited) is on disk and survives a crash or power loss.
Files: the database and its side files are ``0600`` (they hold private keys); a file others
could read is tightened with a logged warning. Opening, file modes, transactions and schema
versions are the shared SQLite plumbing of :mod:`securemsg.store.sqlite_base`.
Atomicity: :meth:`SqliteProtocolStore.transaction` is ``BEGIN IMMEDIATE`` ... ``COMMIT``
(``ROLLBACK`` if the block raises); a nested block is a ``SAVEPOINT`` inside the outer
transaction, so it commits with it and, if it raises, undoes only its own writes. Outside a
transaction every write method is its own transaction. ``BEGIN IMMEDIATE`` takes the write
lock up front, so two processes sharing a file serialize their writes instead of failing at
commit time; readers in other connections keep seeing the last committed state (WAL).

Layout (schema version 1): ``schema_version`` (one row), ``local_identity`` (one row: our key
pair and registration id), ``identities`` and ``sessions`` keyed by (name, device id),
``pre_keys`` / ``signed_pre_keys`` / ``kyber_pre_keys`` keyed by id (Kyber rows carry a
``last_resort`` flag), ``kyber_base_keys_used`` (the (Kyber id, signed id, base key) triples seen
with last-resort keys), ``sender_keys`` keyed by (name, device id, distribution uuid).
Schema changes are appended to ``_MIGRATIONS``; opening a store applies the missing ones in one
transaction and refuses a database written by a newer version.

Threads: the connection is bound to the thread that opened the store (``sqlite3``'s
``check_same_thread``); use the store from that one thread (the async client does) and never
``await`` inside a transaction; another thread gets a StorageError. Record classes are
imported when first needed, not when this module is imported.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar

from securemsg.errors import InvalidPreKeyError, PeerError, StorageError, UsageError
from securemsg.store.base import (
    Direction,
    _check_key_id,
    _check_registration_id,
    _check_sender_key_args,
    _lookup_id,
)
from securemsg.store.sqlite_base import (
    Schema,
    UnsafeDirectory,
    connect,
    immediate_transaction,
    make_files_private,
    migrate,
    on_disk,
    read_schema_version,
    savepoint,
    set_durable_pragmas,
    sqlite_errors,
)

if TYPE_CHECKING:
    from securemsg.crypto.curve25519 import PublicKey
    from securemsg.protocol.address import ProtocolAddress
    from securemsg.protocol.identity_and_prekeys import (
        IdentityKey,
        IdentityKeyPair,
        KyberPreKeyRecord,
        PreKeyRecord,
        SignedPreKeyRecord,
    )
    from securemsg.protocol.sender_keys import SenderKeyRecord
    from securemsg.protocol.session_record import SessionRecord
    from securemsg.store.base import ManagedProtocolStore

__all__ = ["SqliteProtocolStore"]

_T = TypeVar("_T")

#: ``PRAGMA application_id`` of a securemsg store ("SMSG"): marks the file as ours.
_APPLICATION_ID: Final = 0x534D5347

#: Migrations, in order: entry ``i`` brings the schema from version ``i`` to ``i + 1``.
#: Never edit a released entry; append a new one (and a frozen-database test) instead.
_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """CREATE TABLE schema_version (
            singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
            version INTEGER NOT NULL)""",
        """CREATE TABLE local_identity (
            singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
            identity_key_pair BLOB NOT NULL,
            registration_id INTEGER NOT NULL)""",
        """CREATE TABLE identities (
            name TEXT NOT NULL,
            device_id INTEGER NOT NULL,
            identity_key BLOB NOT NULL,
            PRIMARY KEY (name, device_id)) WITHOUT ROWID""",
        "CREATE TABLE pre_keys (id INTEGER PRIMARY KEY, record BLOB NOT NULL)",
        "CREATE TABLE signed_pre_keys (id INTEGER PRIMARY KEY, record BLOB NOT NULL)",
        """CREATE TABLE kyber_pre_keys (
            id INTEGER PRIMARY KEY,
            record BLOB NOT NULL,
            last_resort INTEGER NOT NULL CHECK (last_resort IN (0, 1)))""",
        """CREATE TABLE kyber_base_keys_used (
            kyber_id INTEGER NOT NULL,
            signed_id INTEGER NOT NULL,
            base_key BLOB NOT NULL,
            PRIMARY KEY (kyber_id, signed_id, base_key)) WITHOUT ROWID""",
        """CREATE TABLE sessions (
            name TEXT NOT NULL,
            device_id INTEGER NOT NULL,
            record BLOB NOT NULL,
            PRIMARY KEY (name, device_id)) WITHOUT ROWID""",
        """CREATE TABLE sender_keys (
            name TEXT NOT NULL,
            device_id INTEGER NOT NULL,
            distribution_id BLOB NOT NULL,
            record BLOB NOT NULL,
            PRIMARY KEY (name, device_id, distribution_id)) WITHOUT ROWID""",
    ),
)

_SCHEMA: Final = Schema(_APPLICATION_ID, _MIGRATIONS, "store")

#: The schema version this code writes.
SCHEMA_VERSION: Final = _SCHEMA.version

_log = logging.getLogger("securemsg.store")


def _warn_loosened(path: str, mode: int) -> None:
    _log.warning("%s was accessible to other users (mode %o); making it 0600", path, mode)


def _make_files_private(path: str, *, create: bool) -> None:
    """The store's files are owner-only: they hold private keys (see :mod:`.sqlite_base`)."""
    try:
        make_files_private(path, create=create, loosened=_warn_loosened)
    except OSError as exc:
        where = f" ({exc.filename})" if isinstance(exc, UnsafeDirectory) else ""
        raise StorageError(
            "cannot create or protect the database file: " + (exc.strerror or "error") + where
        ) from None


@dataclass(frozen=True, slots=True)
class _Decoders:
    """``from_bytes`` of each record kind (resolved lazily; tests may substitute fakes)."""

    identity_key_pair: Callable[[bytes], IdentityKeyPair]
    identity_key: Callable[[bytes], IdentityKey]
    pre_key: Callable[[bytes], PreKeyRecord]
    signed_pre_key: Callable[[bytes], SignedPreKeyRecord]
    kyber_pre_key: Callable[[bytes], KyberPreKeyRecord]
    session: Callable[[bytes], SessionRecord]
    sender_key: Callable[[bytes], SenderKeyRecord]


def _default_decoders() -> _Decoders:
    from securemsg.protocol.identity_and_prekeys import (
        IdentityKey,
        IdentityKeyPair,
        KyberPreKeyRecord,
        PreKeyRecord,
        SignedPreKeyRecord,
    )
    from securemsg.protocol.sender_keys import SenderKeyRecord
    from securemsg.protocol.session_record import SessionRecord

    return _Decoders(
        identity_key_pair=IdentityKeyPair.from_bytes,
        identity_key=IdentityKey.from_bytes,
        pre_key=PreKeyRecord.from_bytes,
        signed_pre_key=SignedPreKeyRecord.from_bytes,
        kyber_pre_key=KyberPreKeyRecord.from_bytes,
        session=SessionRecord.from_bytes,
        sender_key=SenderKeyRecord.from_bytes,
    )


_ABORTED: Final = "the store transaction was aborted by the database"


def _db_error(exc: sqlite3.Error) -> StorageError:
    # sqlite3 messages name the failure ("database is locked"), never bound parameter values.
    return StorageError("store database error: " + str(exc))


class SqliteProtocolStore:
    """A complete :class:`~securemsg.store.base.ProtocolStore` (and prekey inventory) in SQLite.

    Create or reopen one with :meth:`open`; close it with :meth:`close` or a ``with`` block.
    Not thread-safe: use it from the thread that opened it.
    """

    #: Whether the connection refuses use from another thread than the one that opened it
    #: (``sqlite3``'s ``check_same_thread``). A subclass that serializes access itself (the
    #: client's device database, shared by the event loop and its database thread) clears it.
    _THREAD_BOUND: ClassVar[bool] = True

    __slots__ = (
        "_conn",
        "_decoders_cache",
        "_depth",
        "_identity_key_pair",
        "_path",
        "_reg_id",
        "_sender_keys",
        "_sessions",
    )

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        """Wrap an open connection (internal: use :meth:`open`)."""
        self._conn: sqlite3.Connection | None = connection
        self._path = path
        self._depth = 0
        self._reg_id = 0
        self._identity_key_pair: IdentityKeyPair | None = None
        self._decoders_cache: _Decoders | None = None
        # The decoded session record last loaded or stored per address, with its bytes. A load
        # whose row still holds exactly those bytes returns the object instead of decoding again
        # (decoding a record with SPQR state costs ~0.3 ms). Records are immutable values, and
        # only the newest record per address is kept: nothing here outlives what the table holds.
        self._sessions: dict[tuple[str, int], tuple[bytes, SessionRecord]] = {}
        # The same for sender-key records, per (name, device id, distribution uuid bytes).
        self._sender_keys: dict[tuple[str, int, bytes], tuple[bytes, SenderKeyRecord]] = {}

    # -- opening and closing --------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        identity_key_pair: IdentityKeyPair | None = None,
        registration_id: int | None = None,
    ) -> SqliteProtocolStore:
        """Create a store at ``path``, or reopen the one already there.

        To create, pass our ``identity_key_pair`` and ``registration_id``. To reopen, pass
        neither, or pass both and they must equal the stored ones.

        Args:
            path: the database file (``":memory:"`` for a throwaway store).
            identity_key_pair: our identity; required when the store is new.
            registration_id: our 14-bit registration id; required when the store is new.

        Returns:
            The open store (schema migrated to the current version).

        Raises:
            UsageError: only one of ``identity_key_pair`` / ``registration_id`` was given; the
                store is new (or missing) and they were not given; or they differ from the
                identity the store already holds.
            StorageError: the file cannot be opened, is not a securemsg store, was written by
                a newer version, or the database failed.
        """
        if (identity_key_pair is None) != (registration_id is None):
            raise UsageError("pass both identity_key_pair and registration_id, or neither")
        if registration_id is not None:
            registration_id = _check_registration_id(registration_id)
        path_str = os.fspath(path)
        file = on_disk(path_str)
        if identity_key_pair is None and file and not os.path.exists(path_str):
            raise UsageError(
                "no store at that path; pass identity_key_pair and registration_id to create one"
            )
        if file:
            _make_files_private(path_str, create=True)
        with sqlite_errors(_db_error):
            conn = connect(path_str, check_same_thread=cls._THREAD_BOUND)
        store = cls(conn, path_str)
        try:
            store._prepare(identity_key_pair, registration_id)
            if file:  # side files SQLite created meanwhile have the database's mode; check
                _make_files_private(path_str, create=False)
        except BaseException:
            conn.close()
            store._conn = None
            raise
        return store

    def _prepare(
        self, identity_key_pair: IdentityKeyPair | None, registration_id: int | None
    ) -> None:
        with sqlite_errors(_db_error):
            set_durable_pragmas(self._connection())
        self._migrate()
        row = self._fetchone("SELECT identity_key_pair, registration_id FROM local_identity")
        if row is None:
            if identity_key_pair is None or registration_id is None:
                raise UsageError(
                    "the store has no identity yet; pass identity_key_pair and registration_id"
                )
            with self.transaction():
                row = self._fetchone(
                    "SELECT identity_key_pair, registration_id FROM local_identity"
                )
                if row is None:
                    self._exec(
                        "INSERT INTO local_identity VALUES (1, ?, ?)",
                        (identity_key_pair.to_bytes(), registration_id),
                    )
                    row = (identity_key_pair.to_bytes(), registration_id)
        stored_pair, stored_reg_id = row
        if identity_key_pair is not None and (
            stored_pair != identity_key_pair.to_bytes() or stored_reg_id != registration_id
        ):
            raise UsageError("the store belongs to a different identity or registration id")
        if not isinstance(stored_pair, bytes) or not isinstance(stored_reg_id, int):
            raise StorageError("the stored local identity is corrupt")
        self._reg_id = stored_reg_id
        self._identity_key_pair = identity_key_pair

    def _migrate(self) -> None:
        conn = self._connection()
        with sqlite_errors(_db_error):
            if read_schema_version(conn, _SCHEMA) == _SCHEMA.version:
                return  # the usual case: no write lock taken
        with self.transaction(), sqlite_errors(_db_error):
            migrate(conn, _SCHEMA)  # checks again: another process may have migrated meanwhile

    def close(self) -> None:
        """Close the database. Idempotent.

        Raises:
            UsageError: called inside a transaction.
            StorageError: closing failed.
        """
        if self._conn is None:
            return
        if self._depth:
            raise UsageError("cannot close the store inside a transaction")
        conn, self._conn = self._conn, None
        self._sessions.clear()
        self._sender_keys.clear()
        try:
            conn.close()
        except sqlite3.Error as exc:
            raise _db_error(exc) from exc

    def __enter__(self) -> SqliteProtocolStore:
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
        return f"SqliteProtocolStore(path={self._path!r}, {state})"

    # -- low level ------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            raise UsageError("the store is closed")
        if self._depth and not conn.in_transaction:
            # SQLite rolled the transaction back on its own (I/O error, disk full): refuse to
            # carry on in autocommit mode, which would commit half of the block.
            raise StorageError(_ABORTED)
        return conn

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        conn = self._connection()
        try:
            return conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise _db_error(exc) from exc

    def _fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        conn = self._connection()
        try:
            row: tuple[Any, ...] | None = conn.execute(sql, params).fetchone()
        except sqlite3.Error as exc:
            raise _db_error(exc) from exc
        return row

    def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        conn = self._connection()
        try:
            rows: list[tuple[Any, ...]] = conn.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _db_error(exc) from exc
        return rows

    def _decoders(self) -> _Decoders:
        if self._decoders_cache is None:
            self._decoders_cache = _default_decoders()
        return self._decoders_cache

    @staticmethod
    def _decode(what: str, decoder: Callable[[bytes], _T], blob: object) -> _T:
        if not isinstance(blob, bytes):
            raise StorageError("stored " + what + " is corrupt (not a blob)")
        try:
            return decoder(blob)
        except (PeerError, UsageError) as exc:  # what a decoder raises on bad bytes, typed
            # Corrupt local state is ours, not the peer's. Anything untyped is a bug: it
            # propagates as it is.
            raise StorageError("stored " + what + " is corrupt") from exc

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes atomically (see :meth:`securemsg.store.base.ProtocolStore.transaction`).

        The outermost block is ``BEGIN IMMEDIATE`` ... ``COMMIT``, a nested one a savepoint
        (:mod:`securemsg.store.sqlite_base`).

        Raises:
            UsageError: the store is closed.
            StorageError: BEGIN or COMMIT failed (the transaction was rolled back).
        """
        depth = self._depth
        conn = self._connection()
        if depth == 0:
            tx = immediate_transaction(conn, _db_error, lost=_ABORTED)
        else:
            tx = savepoint(conn, "securemsg_sp" + str(depth), _db_error, lost=_ABORTED)
        with tx:
            self._depth = depth + 1
            try:
                yield
            finally:
                self._depth = depth

    # -- IdentityKeyStore -------------------------------------------------------------------

    def get_identity_key_pair(self) -> IdentityKeyPair:
        """Return our identity key pair (decoded once, then cached)."""
        if self._identity_key_pair is None:
            row = self._fetchone("SELECT identity_key_pair FROM local_identity")
            if row is None:
                raise StorageError("the store's local identity is missing")
            self._identity_key_pair = self._decode(
                "identity key pair", self._decoders().identity_key_pair, row[0]
            )
        else:
            self._connection()
        return self._identity_key_pair

    def get_local_registration_id(self) -> int:
        """Return our registration id."""
        self._connection()
        return self._reg_id

    def save_identity(self, address: ProtocolAddress, identity_key: IdentityKey) -> bool:
        """Trust ``identity_key`` for ``address`` and the rest of its account; True if it
        replaced a different key of the account."""
        new = identity_key.to_bytes()
        key = (address.name, address.device_id)
        with self.transaction():
            rows = self._fetchall(
                "SELECT device_id, identity_key FROM identities WHERE name = ?", (address.name,)
            )
            replaced = any(bytes(k) != new for _, k in rows)
            if replaced:  # the account has one key: its other devices' rows follow
                self._exec(
                    "UPDATE identities SET identity_key = ? WHERE name = ? AND identity_key != ?",
                    (new, address.name, new),
                )
            if all(int(d) != address.device_id for d, _ in rows):
                self._exec("INSERT INTO identities VALUES (?, ?, ?)", (*key, new))
        return replaced

    def is_trusted_identity(
        self, address: ProtocolAddress, identity_key: IdentityKey, direction: Direction
    ) -> bool:
        """Trust on first use, per account: no key known for ``address.name`` (any device) or
        every known one equal -> True; a different key on any device -> False."""
        rows = self._fetchall(
            "SELECT DISTINCT identity_key FROM identities WHERE name = ?", (address.name,)
        )
        want = identity_key.to_bytes()
        return all(bytes(r[0]) == want for r in rows)

    def get_identity(self, address: ProtocolAddress) -> IdentityKey | None:
        """Return the identity saved for ``address``, or None."""
        row = self._fetchone(
            "SELECT identity_key FROM identities WHERE name = ? AND device_id = ?",
            (address.name, address.device_id),
        )
        if row is None:
            return None
        return self._decode("identity key", self._decoders().identity_key, row[0])

    # -- PreKeyStore ---------------------------------------------------------------------

    def get_pre_key(self, pre_key_id: int) -> PreKeyRecord:
        """Return the prekey; missing -> InvalidPreKeyError."""
        row = self._fetchone("SELECT record FROM pre_keys WHERE id = ?", (_lookup_id(pre_key_id),))
        if row is None:
            raise InvalidPreKeyError("no prekey with that id")
        return self._decode("prekey", self._decoders().pre_key, row[0])

    def save_pre_key(self, pre_key_id: int, record: PreKeyRecord) -> None:
        """Store a one-time prekey."""
        key = _check_key_id(pre_key_id, "pre_key_id")
        blob = record.to_bytes()
        with self.transaction():
            self._exec("INSERT OR REPLACE INTO pre_keys VALUES (?, ?)", (key, blob))

    def remove_pre_key(self, pre_key_id: int) -> None:
        """Delete a one-time prekey (absent: no-op)."""
        with self.transaction():
            self._exec("DELETE FROM pre_keys WHERE id = ?", (_lookup_id(pre_key_id),))

    # -- SignedPreKeyStore -----------------------------------------------------------------

    def get_signed_pre_key(self, signed_pre_key_id: int) -> SignedPreKeyRecord:
        """Return the signed prekey; missing -> InvalidPreKeyError."""
        row = self._fetchone(
            "SELECT record FROM signed_pre_keys WHERE id = ?", (_lookup_id(signed_pre_key_id),)
        )
        if row is None:
            raise InvalidPreKeyError("no signed prekey with that id")
        return self._decode("signed prekey", self._decoders().signed_pre_key, row[0])

    def save_signed_pre_key(self, signed_pre_key_id: int, record: SignedPreKeyRecord) -> None:
        """Store a signed prekey."""
        key = _check_key_id(signed_pre_key_id, "signed_pre_key_id")
        blob = record.to_bytes()
        with self.transaction():
            self._exec("INSERT OR REPLACE INTO signed_pre_keys VALUES (?, ?)", (key, blob))

    # -- KyberPreKeyStore ----------------------------------------------------------------

    def get_kyber_pre_key(self, kyber_pre_key_id: int) -> KyberPreKeyRecord:
        """Return the Kyber prekey; missing -> InvalidPreKeyError."""
        row = self._fetchone(
            "SELECT record FROM kyber_pre_keys WHERE id = ?", (_lookup_id(kyber_pre_key_id),)
        )
        if row is None:
            raise InvalidPreKeyError("no Kyber prekey with that id")
        return self._decode("Kyber prekey", self._decoders().kyber_pre_key, row[0])

    def save_kyber_pre_key(
        self, kyber_pre_key_id: int, record: KyberPreKeyRecord, *, last_resort: bool = False
    ) -> None:
        """Store a one-time (default) or last-resort Kyber prekey."""
        key = _check_key_id(kyber_pre_key_id, "kyber_pre_key_id")
        blob = record.to_bytes()
        with self.transaction():
            self._exec(
                "INSERT OR REPLACE INTO kyber_pre_keys VALUES (?, ?, ?)",
                (key, blob, 1 if last_resort else 0),
            )

    def mark_kyber_pre_key_used(
        self, kyber_pre_key_id: int, signed_pre_key_id: int, base_key: PublicKey
    ) -> None:
        """Consume a one-time key, or remember the triple for a last-resort key."""
        kyber_id = _lookup_id(kyber_pre_key_id)
        signed_id = _lookup_id(signed_pre_key_id)
        with self.transaction():
            row = self._fetchone("SELECT last_resort FROM kyber_pre_keys WHERE id = ?", (kyber_id,))
            if row is None or signed_id < 0:
                raise InvalidPreKeyError("no Kyber prekey with that id")
            if not row[0]:
                self._exec("DELETE FROM kyber_pre_keys WHERE id = ?", (kyber_id,))
                return
            cursor = self._exec(
                "INSERT OR IGNORE INTO kyber_base_keys_used VALUES (?, ?, ?)",
                (kyber_id, signed_id, bytes(base_key.raw)),
            )
            if cursor.rowcount != 1:
                raise InvalidPreKeyError("last-resort Kyber prekey replayed with the same base key")

    # -- SessionStore --------------------------------------------------------------------

    def load_session(self, address: ProtocolAddress) -> SessionRecord | None:
        """Return the session record for ``address``, or None."""
        row = self._fetchone(
            "SELECT record FROM sessions WHERE name = ? AND device_id = ?",
            (address.name, address.device_id),
        )
        key = (address.name, address.device_id)
        if row is None:
            self._sessions.pop(key, None)
            return None
        blob = row[0]
        cached = self._sessions.get(key)
        if cached is not None and type(blob) is bytes and cached[0] == blob:
            return cached[1]
        record = self._decode("session", self._decoders().session, blob)
        self._sessions[key] = (bytes(blob), record)
        return record

    def store_session(self, address: ProtocolAddress, record: SessionRecord) -> None:
        """Store the session record for ``address`` (as its ``to_bytes()``)."""
        blob = record.to_bytes()
        with self.transaction():
            self._exec(
                "INSERT OR REPLACE INTO sessions VALUES (?, ?, ?)",
                (address.name, address.device_id, blob),
            )
        # After a rollback the row differs from these bytes, so the next load decodes afresh.
        self._sessions[(address.name, address.device_id)] = (blob, record)

    # -- SenderKeyStore ------------------------------------------------------------------

    def store_sender_key(
        self, sender: ProtocolAddress, distribution_id: uuid.UUID, record: SenderKeyRecord
    ) -> None:
        """Store the sender-key record for ``(sender, distribution_id)`` (as its ``to_bytes()``)."""
        _check_sender_key_args(distribution_id, record)
        key = (sender.name, sender.device_id, distribution_id.bytes)
        blob = record.to_bytes()
        with self.transaction():
            self._exec("INSERT OR REPLACE INTO sender_keys VALUES (?, ?, ?, ?)", (*key, blob))
        # After a rollback the row differs from these bytes, so the next load decodes afresh.
        self._sender_keys[key] = (blob, record)

    def load_sender_key(
        self, sender: ProtocolAddress, distribution_id: uuid.UUID
    ) -> SenderKeyRecord | None:
        """Return the sender-key record for ``(sender, distribution_id)``, or None."""
        _check_sender_key_args(distribution_id)
        key = (sender.name, sender.device_id, distribution_id.bytes)
        row = self._fetchone(
            "SELECT record FROM sender_keys"
            " WHERE name = ? AND device_id = ? AND distribution_id = ?",
            key,
        )
        if row is None:
            self._sender_keys.pop(key, None)
            return None
        blob = row[0]
        cached = self._sender_keys.get(key)
        if cached is not None and type(blob) is bytes and cached[0] == blob:
            return cached[1]
        record = self._decode("sender key record", self._decoders().sender_key, blob)
        self._sender_keys[key] = (bytes(blob), record)
        return record

    # -- PreKeyInventory -----------------------------------------------------------------

    def _ids(self, sql: str, params: Sequence[Any] = ()) -> list[int]:
        return [int(r[0]) for r in self._fetchall(sql, params)]

    def _count(self, sql: str, params: Sequence[Any] = ()) -> int:
        row = self._fetchone(sql, params)
        return 0 if row is None else int(row[0])

    def get_pre_key_ids(self) -> list[int]:
        """Ids of the stored one-time prekeys, ascending."""
        return self._ids("SELECT id FROM pre_keys ORDER BY id")

    def count_pre_keys(self) -> int:
        """Number of stored one-time prekeys."""
        return self._count("SELECT COUNT(*) FROM pre_keys")

    def get_signed_pre_key_ids(self) -> list[int]:
        """Ids of the stored signed prekeys, ascending."""
        return self._ids("SELECT id FROM signed_pre_keys ORDER BY id")

    def remove_signed_pre_key(self, signed_pre_key_id: int) -> None:
        """Delete a signed prekey (absent: no-op)."""
        with self.transaction():
            self._exec("DELETE FROM signed_pre_keys WHERE id = ?", (_lookup_id(signed_pre_key_id),))

    def get_kyber_pre_key_ids(self, *, last_resort: bool | None = None) -> list[int]:
        """Ids of the stored Kyber prekeys (all, last-resort only, or one-time only)."""
        if last_resort is None:
            return self._ids("SELECT id FROM kyber_pre_keys ORDER BY id")
        return self._ids(
            "SELECT id FROM kyber_pre_keys WHERE last_resort = ? ORDER BY id",
            (1 if last_resort else 0,),
        )

    def count_kyber_pre_keys(self, *, last_resort: bool | None = None) -> int:
        """Number of stored Kyber prekeys (filtered like :meth:`get_kyber_pre_key_ids`)."""
        if last_resort is None:
            return self._count("SELECT COUNT(*) FROM kyber_pre_keys")
        return self._count(
            "SELECT COUNT(*) FROM kyber_pre_keys WHERE last_resort = ?", (1 if last_resort else 0,)
        )

    def is_last_resort_kyber_pre_key(self, kyber_pre_key_id: int) -> bool:
        """Whether the stored Kyber prekey is a last-resort key; missing -> InvalidPreKeyError."""
        row = self._fetchone(
            "SELECT last_resort FROM kyber_pre_keys WHERE id = ?", (_lookup_id(kyber_pre_key_id),)
        )
        if row is None:
            raise InvalidPreKeyError("no Kyber prekey with that id")
        return bool(row[0])

    def remove_kyber_pre_key(self, kyber_pre_key_id: int) -> None:
        """Delete a Kyber prekey and the triples remembered for it (absent: no-op)."""
        kyber_id = _lookup_id(kyber_pre_key_id)
        with self.transaction():
            self._exec("DELETE FROM kyber_pre_keys WHERE id = ?", (kyber_id,))
            self._exec("DELETE FROM kyber_base_keys_used WHERE kyber_id = ?", (kyber_id,))

    def remove_session(self, address: ProtocolAddress) -> None:
        """Delete the session record for ``address`` (absent: no-op)."""
        with self.transaction():
            self._exec(
                "DELETE FROM sessions WHERE name = ? AND device_id = ?",
                (address.name, address.device_id),
            )
        self._sessions.pop((address.name, address.device_id), None)

    def get_session_device_ids(self, name: str) -> list[int]:
        """Device ids with a stored session for ``name``, ascending."""
        return self._ids(
            "SELECT device_id FROM sessions WHERE name = ? ORDER BY device_id", (name,)
        )


if TYPE_CHECKING:

    def _conforms(store: SqliteProtocolStore) -> ManagedProtocolStore:
        return store
