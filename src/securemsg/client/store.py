"""The client's device database: the protocol store plus a few client-side tables.

Theory of operation
-------------------
A client device keeps everything in ONE SQLite file: the protocol state of
:class:`~securemsg.store.sqlite.SqliteProtocolStore` (identity, prekeys, sessions, sender keys)
and the client's own tables, all prefixed ``client_``:

* ``client_meta`` -- key/value settings: our ACI and device id, the relay URL, the pinned trust
  root, our unidentified-access key, prekey id counters, the current signed prekey and its
  age, the cached sender certificate.
* ``client_contacts`` -- access keys of other accounts (learned from their messages), which
  let us send to them sealed.
* ``client_groups`` / ``client_group_keys_sent`` -- groups we are in, and which member devices
  already received our sender key for a group.
* ``client_inbox`` -- every envelope we processed, keyed by the relay's envelope id and by
  (sender, device, sender timestamp); decrypted messages wait here (``delivered = 0``) until
  the application has taken them.
* ``client_failures`` -- envelopes that could not be decrypted: when, why (a reason code),
  the sender if it is known, the retry request and whether it was sent, and the envelope's
  bytes (ciphertext) so nothing is silently lost. Bounded: the newest
  :data:`MAX_FAILURES` rows, none older than :data:`FAILURE_TTL_MS`. Each waits
  (``delivered = 0``) until the application took it as an event.
* ``client_sent`` -- the contents we sent recently, per recipient and timestamp, so a retry
  request can be answered by sending the same content again. Bounded: the newest
  :data:`MAX_SENT_RECORDS` rows, none older than :data:`SENT_RECORD_TTL_MS` (one day, as
  Signal's clients keep their send log), each sent again at most a few times. Each record
  keeps the send's delivery choice (``sealed_only``: a resend goes sealed or not at all), the
  recipient devices it went to (a retry request from another device is ignored) and what
  became of the last resend (``resend_status``).
* ``client_resend`` -- resends asked for by retry requests and not yet done (durable, so a
  crash between acknowledging the request and sending loses nothing).
* ``client_sync_pending`` -- transcripts of our sends (``SyncMessage.Sent``) not yet sent to
  our account's other devices: written before the transcript is sent, deleted once it went
  (or the account has no other device), so a dropped connection or a crash delays it but
  does not lose it. Bounded: the newest :data:`MAX_SYNC_PENDING`, none older than
  :data:`SENT_RECORD_TTL_MS`, each tried at most :data:`MAX_SYNC_ATTEMPTS` times.

Transcripts received from our other devices land in ``client_inbox`` like any message, with
``sender`` our own ACI, ``sender_device`` the device that sent it and ``destination`` the
recipient of a 1:1 message (NULL for others, and for a group message).

File modes: the database, its ``-wal``/``-shm`` and ``-journal`` files hold private keys, so
they are ``0600`` whatever the umask, as for every protocol store
(:meth:`SqliteProtocolStore.open <securemsg.store.sqlite.SqliteProtocolStore.open>`, with the
shared plumbing of :mod:`securemsg.store.sqlite_base`). An existing file that group or others
may read or write is fixed to ``0600`` with a logged warning, never left as it is.

Because the client tables live in the same database, writing the inbox row inside the
``transaction()`` that also commits the advanced session makes "decrypted, state advanced,
message recorded" one atomic, durable step (WAL, ``synchronous=FULL``). The relay is told to
delete the envelope only after that commit; a redelivered envelope is found in the inbox and
acknowledged without being shown twice.

:class:`ClientStore` subclasses the protocol store only to reach its connection for these
tables (same connection, same transactions); it does not change any protocol-store behaviour.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from typing import Any, Final

from securemsg.errors import StorageError
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.identity_and_prekeys import IdentityKey, IdentityKeyPair
from securemsg.store.base import Direction
from securemsg.store.sqlite import SqliteProtocolStore

__all__ = [
    "FAILURE_TTL_MS",
    "MAX_FAILURES",
    "MAX_SENT_RECORDS",
    "MAX_SYNC_ATTEMPTS",
    "MAX_SYNC_PENDING",
    "SENT_RECORD_TTL_MS",
    "ClientStore",
    "FailureRow",
    "InboxRow",
    "SentRecord",
    "StoredGroup",
]

_log = logging.getLogger("securemsg.client.store")

#: Most undecryptable-envelope records kept (the oldest are dropped first).
MAX_FAILURES: Final = 500
#: Undecryptable-envelope records older than this are dropped (30 days).
FAILURE_TTL_MS: Final = 30 * 24 * 3600 * 1000
#: Most sent contents kept for answering retry requests.
MAX_SENT_RECORDS: Final = 1000
#: Sent contents older than this are dropped (one day).
SENT_RECORD_TTL_MS: Final = 24 * 3600 * 1000
#: Most transcripts waiting to be sent to our other devices (the oldest are dropped).
MAX_SYNC_PENDING: Final = 1000
#: A waiting transcript is dropped after this many failed attempts (not counting a lost
#: connection, which only delays it).
MAX_SYNC_ATTEMPTS: Final = 3

_CLIENT_SCHEMA: Final[tuple[str, ...]] = (
    """CREATE TABLE IF NOT EXISTS client_meta (
        key TEXT PRIMARY KEY,
        value ANY) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS client_contacts (
        aci TEXT PRIMARY KEY,
        access_key BLOB NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS client_groups (
        group_id BLOB PRIMARY KEY,
        title TEXT NOT NULL,
        members TEXT NOT NULL) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS client_group_keys_sent (
        group_id BLOB NOT NULL,
        aci TEXT NOT NULL,
        device_id INTEGER NOT NULL,
        PRIMARY KEY (group_id, aci, device_id)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS client_inbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        envelope_id BLOB NOT NULL UNIQUE,
        sender TEXT,
        sender_device INTEGER,
        sent_timestamp INTEGER,
        server_timestamp INTEGER NOT NULL,
        group_id BLOB,
        body TEXT,
        sealed INTEGER NOT NULL,
        kind TEXT NOT NULL,
        delivered INTEGER NOT NULL DEFAULT 0)""",
    """CREATE UNIQUE INDEX IF NOT EXISTS client_inbox_origin
        ON client_inbox (sender, sender_device, sent_timestamp)""",
    """CREATE TABLE IF NOT EXISTS client_failures (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        envelope_id BLOB NOT NULL,
        recorded_at INTEGER NOT NULL,
        server_timestamp INTEGER NOT NULL,
        sent_timestamp INTEGER NOT NULL,
        envelope_type INTEGER NOT NULL,
        sealed INTEGER NOT NULL,
        sender TEXT,
        sender_device INTEGER,
        reason TEXT NOT NULL,
        retry TEXT NOT NULL,
        retry_request BLOB,
        body BLOB NOT NULL,
        delivered INTEGER NOT NULL DEFAULT 0)""",
    """CREATE TABLE IF NOT EXISTS client_sent (
        recipient TEXT NOT NULL,
        timestamp INTEGER NOT NULL,
        sent_at INTEGER NOT NULL,
        group_id BLOB,
        content BLOB NOT NULL,
        resends INTEGER NOT NULL DEFAULT 0,
        sealed_only INTEGER NOT NULL DEFAULT 1,
        devices TEXT,
        resend_status TEXT,
        PRIMARY KEY (recipient, timestamp)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS client_resend (
        recipient TEXT NOT NULL,
        device_id INTEGER NOT NULL,
        timestamp INTEGER NOT NULL,
        PRIMARY KEY (recipient, device_id, timestamp)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS client_sync_pending (
        timestamp INTEGER PRIMARY KEY,
        created_at INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        content BLOB NOT NULL) WITHOUT ROWID""",
)

#: Columns added to ``client_inbox`` after its first release (an older database gets them on
#: open; its rows are messages from others: no destination).
_INBOX_COLUMNS_ADDED: Final[tuple[tuple[str, str], ...]] = (("destination", "TEXT"),)

#: Columns added to ``client_sent`` after its first release, with their definitions (an older
#: database gets them on open; its records count as sealed-only, sent to no known device, so
#: a retry request cannot get them sent again identified or to a device they never went to).
_SENT_COLUMNS_ADDED: Final[tuple[tuple[str, str], ...]] = (
    ("sealed_only", "INTEGER NOT NULL DEFAULT 1"),
    ("devices", "TEXT"),
    ("resend_status", "TEXT"),
)


def _device_list(devices: Sequence[int] | None) -> str | None:
    return None if devices is None else ",".join(str(int(d)) for d in sorted(set(devices)))


def redacted_repr(obj: object, hidden: frozenset[str]) -> str:
    """A dataclass's repr with the fields in ``hidden`` (message text) shown by length only,
    so plaintext never reaches a log line or a traceback through ``repr``/``str``."""
    parts = []
    for f in fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        if f.name in hidden and value is not None:
            parts.append(f"{f.name}=<{len(value)} chars>")
        else:
            parts.append(f"{f.name}={value!r}")
    return f"{type(obj).__name__}({', '.join(parts)})"


@dataclass(frozen=True, slots=True)
class InboxRow:
    """One decrypted message waiting for (or already given to) the application.

    Its repr shows the body's length only, never the text.
    """

    seq: int
    envelope_id: bytes
    sender: str
    sender_device: int
    sent_timestamp: int
    server_timestamp: int
    group_id: bytes | None
    body: str
    sealed: bool
    destination: str | None = None

    def __repr__(self) -> str:
        return redacted_repr(self, frozenset({"body"}))


@dataclass(frozen=True, slots=True)
class FailureRow:
    """One envelope that could not be decrypted (the application sees a DecryptionFailure)."""

    seq: int
    envelope_id: bytes
    recorded_at: int
    server_timestamp: int
    sent_timestamp: int
    envelope_type: int
    sealed: bool
    sender: str | None
    sender_device: int | None
    reason: str
    retry: str
    retry_request: bytes | None
    body: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SentRecord:
    """A content we sent recently (padded plaintext), kept to answer retry requests.

    Attributes:
        sealed_only: the send was not allowed to go identified (per call or client-wide at
            the time): a resend goes sealed or not at all.
        devices: the recipient's devices the content was sent to (None until the send went
            through); a retry request from any other device is ignored.
        resend_status: what became of the last resend asked for: ``"resent"``,
            ``"sealed-refused"`` (not resent: it could not go sealed and the original send
            did not allow identified delivery), ``"failed"``; None if never asked.
    """

    recipient: str
    timestamp: int
    sent_at: int
    group_id: bytes | None
    content: bytes = field(repr=False)
    sealed_only: bool = True
    devices: tuple[int, ...] | None = None
    resend_status: str | None = None


@dataclass(frozen=True, slots=True)
class StoredGroup:
    """A group we belong to: id (= sender-key distribution id), title, member ACIs."""

    group_id: bytes
    title: str
    members: tuple[str, ...]


class ClientStore(SqliteProtocolStore):
    """:class:`SqliteProtocolStore` plus the client tables (see the module docstring).

    Open with :meth:`open_client`. Threads: the :class:`~securemsg.client.Client` runs its
    receive and send paths on its database thread (:mod:`securemsg.aio.sqlite`) and a few
    other calls (and inspection through :attr:`Client.store`) on the event loop, so this
    store may be used from more than one thread: a re-entrant lock, held for a whole
    :meth:`transaction` and for each statement, makes those uses take turns. Still no
    ``await`` inside :meth:`transaction`.
    """

    _THREAD_BOUND = False

    __slots__ = ("_lock", "_own_aci")

    def __init__(self, connection: sqlite3.Connection, path: str) -> None:
        """Wrap an open connection (internal: use :meth:`open_client`)."""
        super().__init__(connection, path)
        self._lock = threading.RLock()
        self._own_aci: str | None = None  # read from client_meta when first needed

    def is_trusted_identity(
        self, address: ProtocolAddress, identity_key: IdentityKey, direction: Direction
    ) -> bool:
        """As :meth:`SqliteProtocolStore.is_trusted_identity`, and a device of our own
        account is trusted only with our own identity key, whatever was saved: only our own
        devices may send us sync transcripts and share our account."""
        if self._own_aci is None:
            self._own_aci = self.get_meta_str("aci")
        if address.name == self._own_aci:
            return identity_key.to_bytes() == self.get_identity_key_pair().identity_key.to_bytes()
        return super().is_trusted_identity(address, identity_key, direction)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """See :meth:`SqliteProtocolStore.transaction`; holds the store's lock throughout."""
        with self._lock, super().transaction():
            yield

    def _exec(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        with self._lock:
            return super()._exec(sql, params)

    def _fetchone(self, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...] | None:
        with self._lock:
            return super()._fetchone(sql, params)

    def _fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return super()._fetchall(sql, params)

    def close(self) -> None:
        """See :meth:`SqliteProtocolStore.close`."""
        with self._lock:
            super().close()

    @classmethod
    def open_client(
        cls,
        path: str | os.PathLike[str],
        identity_key_pair: IdentityKeyPair | None = None,
        registration_id: int | None = None,
    ) -> ClientStore:
        """Create or reopen a client database (see :meth:`SqliteProtocolStore.open`).

        Raises:
            UsageError: see :meth:`SqliteProtocolStore.open`.
            StorageError: the database failed or is not a securemsg store.
        """
        store = cls.open(path, identity_key_pair, registration_id)
        assert isinstance(store, ClientStore)
        try:
            with store.transaction():
                for statement in _CLIENT_SCHEMA:
                    store._exec(statement)
                have = {str(r[1]) for r in store._fetchall("PRAGMA table_info(client_sent)")}
                for name, definition in _SENT_COLUMNS_ADDED:
                    if name not in have:
                        store._exec(f"ALTER TABLE client_sent ADD COLUMN {name} {definition}")
                have = {str(r[1]) for r in store._fetchall("PRAGMA table_info(client_inbox)")}
                for name, definition in _INBOX_COLUMNS_ADDED:
                    if name not in have:
                        store._exec(f"ALTER TABLE client_inbox ADD COLUMN {name} {definition}")
        except BaseException:
            store.close()
            raise
        return store

    # -- key/value settings -----------------------------------------------------------------

    def account_identity(self, name: str) -> bytes | None:
        """The identity key held for any device of account ``name`` (all devices of an
        account share it), or None if the account is unknown."""
        row = self._fetchone("SELECT identity_key FROM identities WHERE name = ? LIMIT 1", (name,))
        return None if row is None else bytes(row[0])

    def get_meta(self, key: str) -> Any:
        """The value stored under ``key`` in ``client_meta``, or None."""
        row = self._fetchone("SELECT value FROM client_meta WHERE key = ?", (key,))
        return None if row is None else row[0]

    def get_meta_int(self, key: str, default: int = 0) -> int:
        """An integer setting (``default`` if absent).

        Raises:
            StorageError: the stored value is not an integer.
        """
        value = self.get_meta(key)
        if value is None:
            return default
        if not isinstance(value, int):
            raise StorageError("client setting " + key + " is corrupt")
        return value

    def get_meta_bytes(self, key: str) -> bytes | None:
        """A bytes setting or None.

        Raises:
            StorageError: the stored value is not a blob.
        """
        value = self.get_meta(key)
        if value is not None and not isinstance(value, bytes):
            raise StorageError("client setting " + key + " is corrupt")
        return value

    def get_meta_str(self, key: str) -> str | None:
        """A text setting or None.

        Raises:
            StorageError: the stored value is not text.
        """
        value = self.get_meta(key)
        if value is not None and not isinstance(value, str):
            raise StorageError("client setting " + key + " is corrupt")
        return value

    def set_meta(self, key: str, value: int | str | bytes | None) -> None:
        """Store (or with None, delete) a setting."""
        if key == "aci":
            self._own_aci = None
        with self.transaction():
            if value is None:
                self._exec("DELETE FROM client_meta WHERE key = ?", (key,))
            else:
                self._exec("INSERT OR REPLACE INTO client_meta VALUES (?, ?)", (key, value))

    def next_id(self, key: str, count: int = 1) -> int:
        """Reserve ``count`` consecutive ids from counter ``key`` (ids start at 1, u32 wrap
        skipped); returns the first."""
        with self.transaction():
            first = self.get_meta_int(key, 1)
            if first + count > 0xFFFFFFFF:
                first = 1
            self.set_meta(key, first + count)
        return first

    # -- contacts ---------------------------------------------------------------------------

    def get_access_key(self, aci: str) -> bytes | None:
        """The unidentified-access key of ``aci``, if we learned it."""
        row = self._fetchone("SELECT access_key FROM client_contacts WHERE aci = ?", (aci,))
        if row is None or not isinstance(row[0], bytes):
            return None
        return row[0]

    def set_access_key(self, aci: str, access_key: bytes) -> None:
        """Remember the access key of ``aci``."""
        with self.transaction():
            self._exec(
                "INSERT OR REPLACE INTO client_contacts VALUES (?, ?)", (aci, bytes(access_key))
            )

    # -- groups -----------------------------------------------------------------------------

    def save_group(self, group_id: bytes, title: str, members: Sequence[str]) -> None:
        """Create or update a group."""
        with self.transaction():
            self._exec(
                "INSERT OR REPLACE INTO client_groups VALUES (?, ?, ?)",
                (bytes(group_id), title, "\n".join(members)),
            )

    def get_group(self, group_id: bytes) -> StoredGroup | None:
        """The group with this id, or None."""
        row = self._fetchone(
            "SELECT title, members FROM client_groups WHERE group_id = ?", (bytes(group_id),)
        )
        if row is None:
            return None
        members = tuple(m for m in str(row[1]).split("\n") if m)
        return StoredGroup(bytes(group_id), str(row[0]), members)

    def list_groups(self) -> list[StoredGroup]:
        """Every group we are in, by id."""
        rows = self._fetchall("SELECT group_id, title, members FROM client_groups ORDER BY 1")
        return [
            StoredGroup(bytes(r[0]), str(r[1]), tuple(m for m in str(r[2]).split("\n") if m))
            for r in rows
        ]

    def group_key_sent(self, group_id: bytes, aci: str, device_id: int) -> bool:
        """Whether our sender key for ``group_id`` was sent to that device."""
        row = self._fetchone(
            "SELECT 1 FROM client_group_keys_sent WHERE group_id = ? AND aci = ? AND device_id = ?",
            (bytes(group_id), aci, device_id),
        )
        return row is not None

    def mark_group_key_sent(self, group_id: bytes, aci: str, device_id: int) -> None:
        """Record that our sender key for ``group_id`` reached that device."""
        with self.transaction():
            self._exec(
                "INSERT OR IGNORE INTO client_group_keys_sent VALUES (?, ?, ?)",
                (bytes(group_id), aci, device_id),
            )

    def group_key_unmark(self, group_id: bytes, aci: str, device_id: int) -> None:
        """Forget that our sender key for ``group_id`` reached that device (send it again)."""
        with self.transaction():
            self._exec(
                "DELETE FROM client_group_keys_sent"
                " WHERE group_id = ? AND aci = ? AND device_id = ?",
                (bytes(group_id), aci, device_id),
            )

    def group_keys_forget(self, group_id: bytes) -> None:
        """Forget which devices our sender key for ``group_id`` reached (a new key goes to
        every device again)."""
        with self.transaction():
            self._exec("DELETE FROM client_group_keys_sent WHERE group_id = ?", (bytes(group_id),))

    # -- inbox ------------------------------------------------------------------------------

    def inbox_has_envelope(self, envelope_id: bytes) -> bool:
        """Whether the envelope with this relay id was already processed."""
        row = self._fetchone(
            "SELECT 1 FROM client_inbox WHERE envelope_id = ?", (bytes(envelope_id),)
        )
        return row is not None

    def inbox_add(
        self,
        *,
        envelope_id: bytes,
        server_timestamp: int,
        kind: str,
        sealed: bool,
        sender: str | None = None,
        sender_device: int | None = None,
        sent_timestamp: int | None = None,
        group_id: bytes | None = None,
        body: str | None = None,
        destination: str | None = None,
    ) -> bool:
        """Record a processed envelope; ``kind`` ``"message"`` rows wait for the application.

        ``destination``: for a transcript of a 1:1 message one of our other devices sent, its
        recipient (``sender`` is then our own ACI).

        Returns:
            False if a row with the same envelope id or the same (sender, device, sent
            timestamp) exists already (a duplicate: nothing is added).
        """
        delivered = 0 if kind == "message" else 1
        cursor = self._exec(
            "INSERT OR IGNORE INTO client_inbox (envelope_id, sender, sender_device,"
            " sent_timestamp, server_timestamp, group_id, body, sealed, kind, delivered,"
            " destination) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                bytes(envelope_id),
                sender,
                sender_device,
                sent_timestamp,
                server_timestamp,
                group_id,
                body,
                1 if sealed else 0,
                kind,
                delivered,
                destination,
            ),
        )
        return cursor.rowcount == 1

    def inbox_pending(self, limit: int = 100) -> list[InboxRow]:
        """Messages the application has not taken yet, oldest first."""
        rows = self._fetchall(
            "SELECT seq, envelope_id, sender, sender_device, sent_timestamp, server_timestamp,"
            " group_id, body, sealed, destination FROM client_inbox"
            " WHERE delivered = 0 ORDER BY seq LIMIT ?",
            (limit,),
        )
        return [
            InboxRow(
                int(r[0]),
                bytes(r[1]),
                str(r[2]),
                int(r[3]),
                int(r[4]),
                int(r[5]),
                None if r[6] is None else bytes(r[6]),
                str(r[7]),
                bool(r[8]),
                None if r[9] is None else str(r[9]),
            )
            for r in rows
        ]

    def inbox_mark_delivered(self, seq: int) -> None:
        """Record that the application took inbox row ``seq``."""
        with self.transaction():
            self._exec("UPDATE client_inbox SET delivered = 1 WHERE seq = ?", (seq,))

    def inbox_count(self, kind: str | None = None) -> int:
        """How many envelopes were recorded (of one kind, or all)."""
        if kind is None:
            row = self._fetchone("SELECT COUNT(*) FROM client_inbox")
        else:
            row = self._fetchone("SELECT COUNT(*) FROM client_inbox WHERE kind = ?", (kind,))
        return 0 if row is None else int(row[0])

    # -- failures ---------------------------------------------------------------------------

    def failure_add(
        self,
        *,
        envelope_id: bytes,
        recorded_at: int,
        server_timestamp: int,
        sent_timestamp: int,
        envelope_type: int,
        sealed: bool,
        sender: str | None,
        sender_device: int | None,
        reason: str,
        retry: str,
        retry_request: bytes | None,
        body: bytes,
    ) -> None:
        """Record an undecryptable envelope; drop records beyond the bounds."""
        with self.transaction():
            self._exec(
                "INSERT INTO client_failures (envelope_id, recorded_at, server_timestamp,"
                " sent_timestamp, envelope_type, sealed, sender, sender_device, reason, retry,"
                " retry_request, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    bytes(envelope_id),
                    recorded_at,
                    server_timestamp,
                    sent_timestamp,
                    envelope_type,
                    1 if sealed else 0,
                    sender,
                    sender_device,
                    reason,
                    retry,
                    retry_request,
                    bytes(body),
                ),
            )
            self._exec(
                "DELETE FROM client_failures WHERE recorded_at < ?", (recorded_at - FAILURE_TTL_MS,)
            )
            self._exec(
                "DELETE FROM client_failures WHERE seq <= (SELECT MAX(seq) FROM client_failures)"
                " - ?",
                (MAX_FAILURES,),
            )

    _FAILURE_COLUMNS: Final = (
        "seq, envelope_id, recorded_at, server_timestamp, sent_timestamp, envelope_type, sealed,"
        " sender, sender_device, reason, retry, retry_request, body"
    )

    @staticmethod
    def _failure_row(r: Sequence[Any]) -> FailureRow:
        return FailureRow(
            int(r[0]),
            bytes(r[1]),
            int(r[2]),
            int(r[3]),
            int(r[4]),
            int(r[5]),
            bool(r[6]),
            None if r[7] is None else str(r[7]),
            None if r[8] is None else int(r[8]),
            str(r[9]),
            str(r[10]),
            None if r[11] is None else bytes(r[11]),
            bytes(r[12]),
        )

    def failures(
        self, *, pending_only: bool = False, limit: int = MAX_FAILURES
    ) -> list[FailureRow]:
        """Recorded failures, oldest first (only those not yet handed out if asked)."""
        where = " WHERE delivered = 0" if pending_only else ""
        rows = self._fetchall(
            "SELECT "
            + self._FAILURE_COLUMNS
            + " FROM client_failures"
            + where
            + " ORDER BY seq LIMIT ?",
            (limit,),
        )
        return [self._failure_row(r) for r in rows]

    def failure_retry_asked(self, sender: str, sender_device: int, sent_timestamp: int) -> bool:
        """Whether a retry request for this message (sender, device, timestamp) is already
        pending or sent (without reading the recorded ciphertexts)."""
        row = self._fetchone(
            "SELECT 1 FROM client_failures WHERE sender = ? AND sender_device = ?"
            " AND sent_timestamp = ? AND retry IN ('pending', 'sent') LIMIT 1",
            (sender, sender_device, sent_timestamp),
        )
        return row is not None

    def failures_to_retry(self) -> list[tuple[int, str, int | None, bytes]]:
        """``(seq, sender, sender_device, retry_request)`` of every failure whose retry request
        waits to be sent, oldest first (without reading the recorded ciphertexts)."""
        rows = self._fetchall(
            "SELECT seq, sender, sender_device, retry_request FROM client_failures"
            " WHERE retry = 'pending' AND retry_request IS NOT NULL AND sender IS NOT NULL"
            " ORDER BY seq"
        )
        return [
            (int(r[0]), str(r[1]), None if r[2] is None else int(r[2]), bytes(r[3])) for r in rows
        ]

    def failure_mark_delivered(self, seq: int) -> None:
        """Record that the application took failure ``seq`` as an event."""
        with self.transaction():
            self._exec("UPDATE client_failures SET delivered = 1 WHERE seq = ?", (seq,))

    def failure_set_retry(self, seq: int, retry: str) -> None:
        """Update what became of a failure's retry request."""
        with self.transaction():
            self._exec("UPDATE client_failures SET retry = ? WHERE seq = ?", (retry, seq))

    # -- sent contents and resends ----------------------------------------------------------

    def sent_add(
        self,
        recipient: str,
        timestamp: int,
        content: bytes,
        now: int,
        group_id: bytes | None,
        *,
        sealed_only: bool = True,
        devices: Sequence[int] | None = None,
    ) -> None:
        """Keep a sent content for answering retry requests; drop records beyond the bounds.

        ``sealed_only``: the send was not allowed to go identified (a resend then may not
        either). ``devices``: the recipient devices it went to (or :meth:`sent_set_devices`
        once the send went through).
        """
        with self.transaction():
            self._exec(
                "INSERT OR REPLACE INTO client_sent (recipient, timestamp, sent_at, group_id,"
                " content, resends, sealed_only, devices, resend_status)"
                " VALUES (?, ?, ?, ?, ?, 0, ?, ?, NULL)",
                (
                    recipient,
                    timestamp,
                    now,
                    group_id,
                    bytes(content),
                    1 if sealed_only else 0,
                    _device_list(devices),
                ),
            )
            self._exec("DELETE FROM client_sent WHERE sent_at < ?", (now - SENT_RECORD_TTL_MS,))
            row = self._fetchone("SELECT COUNT(*) FROM client_sent")
            excess = 0 if row is None else int(row[0]) - MAX_SENT_RECORDS
            if excess > 0:
                self._exec(
                    "DELETE FROM client_sent WHERE (recipient, timestamp) IN (SELECT"
                    " recipient, timestamp FROM client_sent ORDER BY sent_at, timestamp LIMIT ?)",
                    (excess,),
                )

    def sent_get(self, recipient: str, timestamp: int, now: int) -> SentRecord | None:
        """The content sent to ``recipient`` at ``timestamp``, unless unknown or expired."""
        row = self._fetchone(
            "SELECT sent_at, group_id, content, sealed_only, devices, resend_status"
            " FROM client_sent WHERE recipient = ? AND timestamp = ?",
            (recipient, timestamp),
        )
        if row is None or int(row[0]) < now - SENT_RECORD_TTL_MS:
            return None
        devices: tuple[int, ...] | None = None
        if row[4] is not None:
            try:
                devices = tuple(int(d) for d in str(row[4]).split(",") if d)
            except ValueError:
                raise StorageError("a sent record's device list is corrupt") from None
        return SentRecord(
            recipient,
            timestamp,
            int(row[0]),
            None if row[1] is None else bytes(row[1]),
            bytes(row[2]),
            sealed_only=row[3] != 0,
            devices=devices,
            resend_status=None if row[5] is None else str(row[5]),
        )

    def sent_set_devices(self, recipient: str, timestamp: int, devices: Sequence[int]) -> None:
        """Record the recipient devices a sent content went to (after the send)."""
        with self.transaction():
            self._exec(
                "UPDATE client_sent SET devices = ? WHERE recipient = ? AND timestamp = ?",
                (_device_list(devices), recipient, timestamp),
            )

    def sent_set_resend_status(self, recipient: str, timestamp: int, status: str) -> None:
        """Record what became of a resend of that sent content (see :class:`SentRecord`)."""
        with self.transaction():
            self._exec(
                "UPDATE client_sent SET resend_status = ? WHERE recipient = ? AND timestamp = ?",
                (status, recipient, timestamp),
            )

    def sent_resends(self, recipient: str, timestamp: int) -> int:
        """How many times that sent content was sent again already."""
        row = self._fetchone(
            "SELECT resends FROM client_sent WHERE recipient = ? AND timestamp = ?",
            (recipient, timestamp),
        )
        return 0 if row is None else int(row[0])

    def sent_count_resend(self, recipient: str, timestamp: int) -> None:
        """Count one more resend of that sent content."""
        with self.transaction():
            self._exec(
                "UPDATE client_sent SET resends = resends + 1"
                " WHERE recipient = ? AND timestamp = ?",
                (recipient, timestamp),
            )

    def resend_add(self, recipient: str, device_id: int, timestamp: int) -> None:
        """Queue a resend (durable: it survives a crash between the ack and the send)."""
        with self.transaction():
            self._exec(
                "INSERT OR IGNORE INTO client_resend VALUES (?, ?, ?)",
                (recipient, device_id, timestamp),
            )

    def resend_pending(self) -> list[tuple[str, int, int]]:
        """Queued resends: (recipient, device, timestamp)."""
        rows = self._fetchall("SELECT recipient, device_id, timestamp FROM client_resend")
        return [(str(r[0]), int(r[1]), int(r[2])) for r in rows]

    def resend_done(self, recipient: str, device_id: int, timestamp: int) -> None:
        """Drop a queued resend."""
        with self.transaction():
            self._exec(
                "DELETE FROM client_resend WHERE recipient = ? AND device_id = ? AND timestamp = ?",
                (recipient, device_id, timestamp),
            )

    # -- transcripts waiting for our other devices -------------------------------------------

    def sync_pending_add(self, timestamp: int, content: bytes, now: int) -> None:
        """Keep a transcript (padded content) until it was sent; drop beyond the bounds."""
        with self.transaction():
            self._exec(
                "INSERT OR REPLACE INTO client_sync_pending VALUES (?, ?, 0, ?)",
                (timestamp, now, bytes(content)),
            )
            self._exec(
                "DELETE FROM client_sync_pending WHERE created_at < ?",
                (now - SENT_RECORD_TTL_MS,),
            )
            self._exec(
                "DELETE FROM client_sync_pending WHERE timestamp NOT IN (SELECT timestamp"
                " FROM client_sync_pending ORDER BY timestamp DESC LIMIT ?)",
                (MAX_SYNC_PENDING,),
            )

    def sync_pending(self) -> list[tuple[int, bytes]]:
        """Waiting transcripts, oldest first: (timestamp, padded content)."""
        rows = self._fetchall(
            "SELECT timestamp, content FROM client_sync_pending ORDER BY timestamp"
        )
        return [(int(r[0]), bytes(r[1])) for r in rows]

    def sync_pending_failed(self, timestamp: int) -> None:
        """Count a failed attempt; drop the transcript after :data:`MAX_SYNC_ATTEMPTS`."""
        with self.transaction():
            self._exec(
                "UPDATE client_sync_pending SET attempts = attempts + 1 WHERE timestamp = ?",
                (timestamp,),
            )
            self._exec(
                "DELETE FROM client_sync_pending WHERE timestamp = ? AND attempts >= ?",
                (timestamp, MAX_SYNC_ATTEMPTS),
            )

    def sync_pending_done(self, timestamp: int) -> None:
        """Drop a transcript that was sent (or needs no sending)."""
        with self.transaction():
            self._exec("DELETE FROM client_sync_pending WHERE timestamp = ?", (timestamp,))

    @staticmethod
    def new_group_id() -> bytes:
        """A fresh random 16-byte group id (a UUIDv4)."""
        return uuid.uuid4().bytes
