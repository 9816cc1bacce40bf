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

Because the client tables live in the same database, writing the inbox row inside the
``transaction()`` that also commits the advanced session makes "decrypted, state advanced,
message recorded" one atomic, durable step (WAL, ``synchronous=FULL``). The relay is told to
delete the envelope only after that commit; a redelivered envelope is found in the inbox and
acknowledged without being shown twice.

:class:`ClientStore` subclasses the protocol store only to reach its connection for these
tables (same connection, same transactions); it does not change any protocol-store behaviour.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from securemsg.errors import StorageError
from securemsg.protocol.keys import IdentityKeyPair
from securemsg.store.sqlite import SqliteProtocolStore

__all__ = ["ClientStore", "InboxRow", "StoredGroup"]

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
)


@dataclass(frozen=True, slots=True)
class InboxRow:
    """One decrypted message waiting for (or already given to) the application."""

    seq: int
    envelope_id: bytes
    sender: str
    sender_device: int
    sent_timestamp: int
    server_timestamp: int
    group_id: bytes | None
    body: str
    sealed: bool


@dataclass(frozen=True, slots=True)
class StoredGroup:
    """A group we belong to: id (= sender-key distribution id), title, member ACIs."""

    group_id: bytes
    title: str
    members: tuple[str, ...]


class ClientStore(SqliteProtocolStore):
    """:class:`SqliteProtocolStore` plus the client tables (see the module docstring).

    Open with :meth:`open_client`. Same threading rule: one thread, no ``await`` inside
    :meth:`transaction`.
    """

    __slots__ = ()

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
        except BaseException:
            store.close()
            raise
        return store

    # -- key/value settings -----------------------------------------------------------------

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
    ) -> bool:
        """Record a processed envelope; ``kind`` ``"message"`` rows wait for the application.

        Returns:
            False if a row with the same envelope id or the same (sender, device, sent
            timestamp) exists already (a duplicate: nothing is added).
        """
        delivered = 0 if kind == "message" else 1
        cursor = self._exec(
            "INSERT OR IGNORE INTO client_inbox (envelope_id, sender, sender_device,"
            " sent_timestamp, server_timestamp, group_id, body, sealed, kind, delivered)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            ),
        )
        return cursor.rowcount == 1

    def inbox_pending(self, limit: int = 100) -> list[InboxRow]:
        """Messages the application has not taken yet, oldest first."""
        rows = self._fetchall(
            "SELECT seq, envelope_id, sender, sender_device, sent_timestamp, server_timestamp,"
            " group_id, body, sealed FROM client_inbox"
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

    @staticmethod
    def new_group_id() -> bytes:
        """A fresh random 16-byte group id (a UUIDv4)."""
        return uuid.uuid4().bytes
