"""The key-transparency directory's storage in the relay database.

Theory of operation
-------------------
:class:`RelayKtStore` implements :class:`securemsg.kt.directory.KtStore` (the five methods a
:class:`~securemsg.kt.directory.Directory` needs) plus what the relay needs around it: the
directory's own keys, the queue of unpublished (ACI -> identity key) updates, the signed epoch
heads and the auditors' cosignatures. It shares the connection of a
:class:`~securemsg.relay.store.SqliteRelayStore` (tables added by schema migration 3), so a
registration queues its update in the registration's own transaction
(:meth:`~securemsg.relay.store.SqliteRelayStore.create_device`).

:meth:`RelayKtStore.commit_epoch` is one transaction: the changed trie nodes, the new label
versions, the epoch's root and its signed head (built by the callback staged with
:meth:`RelayKtStore.stage`, from the previous head read inside the same transaction), and
the removal of the published updates from the queue. A failure leaves all of it untouched.

The SQL is portable (``INSERT ... ON CONFLICT``, binary keys) and written with ``?``
placeholders; :class:`RelayKtStore` runs it on either relay store, rewritten to ``%s`` for
:class:`~securemsg.relay.pgstore.PgRelayStore` (tables added by its schema migration 4).
Each relay store makes its own with ``kt_store()``. On PostgreSQL several instances share the
database: :meth:`RelayKtStore.commit_epoch` first takes a transaction-level advisory lock, so
two publishers never interleave, and the second finds the head moved and refuses (UsageError),
committing nothing. (SQLite's ``BEGIN IMMEDIATE`` already serializes writers.)

Node keys (``val << 9 | len``, up to 265 bits) are stored as 34 big-endian bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from securemsg.errors import StorageError, UsageError
from securemsg.kt.directory import TrieNode, ValueState

__all__ = ["HeadBuilder", "KtRelayDatabase", "RelayKtStore", "SqliteKtStore"]

_KEY_BYTES = 34
_NODE_COLUMNS = (
    "node_key, left_key, right_key, commitment, value, digest, label_hash, last_epoch, min_epoch"
)

#: Builds the signed head of (epoch, root hash) given the previous signed head (None for
#: epoch 1); returns the 144 signed-head bytes.
HeadBuilder = Callable[[int, bytes, bytes | None], bytes]


def _key_bytes(key: int | None) -> bytes | None:
    return None if key is None else key.to_bytes(_KEY_BYTES, "big")


def _key_int(raw: bytes | None) -> int | None:
    return None if raw is None else int.from_bytes(bytes(raw), "big")


class KtRelayDatabase(Protocol):
    """What the directory needs of a relay store: its transactions and reads."""

    def _tx(self) -> AbstractContextManager[Any]: ...

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]: ...


class RelayKtStore:
    """The directory's state in the relay's database (see the module docstring).

    ``paramstyle`` is the database driver's: ``"qmark"`` (sqlite3) or ``"format"``
    (psycopg). ``lock_sql``, if given, runs first in :meth:`commit_epoch`'s transaction and
    must serialize publishers across connections.
    """

    __slots__ = ("_format", "_lock_sql", "_publishing", "_relay")

    def __init__(
        self, relay_store: KtRelayDatabase, *, paramstyle: str = "qmark", lock_sql: str = ""
    ) -> None:
        if paramstyle not in ("qmark", "format"):
            raise UsageError("paramstyle must be qmark or format")
        self._relay = relay_store
        self._format = paramstyle == "format"
        self._lock_sql = lock_sql
        self._publishing: tuple[HeadBuilder, tuple[tuple[bytes, bytes], ...]] | None = None

    def _q(self, sql: str) -> str:
        return sql.replace("?", "%s") if self._format else sql

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._relay._read(self._q(sql), params)

    @contextmanager
    def _tx(self) -> Iterator[_Tx]:
        with self._relay._tx() as conn:
            yield _Tx(conn, self._q)

    # -- KtStore --------------------------------------------------------------------------

    def get_node(self, key: int) -> TrieNode | None:
        rows = self._read(
            "SELECT " + _NODE_COLUMNS + " FROM kt_nodes WHERE node_key = ?", (_key_bytes(key),)
        )
        if not rows:
            return None
        r = rows[0]
        return TrieNode(
            key >> 9,
            key & 0x1FF,
            left=_key_int(r[1]),
            right=_key_int(r[2]),
            commitment=bytes(r[3]),
            value=bytes(r[4]),
            digest=bytes(r[5]),
            label_hash_value=bytes(r[6]),
            last_epoch=int(r[7]),
            min_epoch=int(r[8]),
        )

    def latest_epoch(self) -> int:
        rows = self._read("SELECT COALESCE(MAX(epoch), 0) FROM kt_epochs")
        return int(rows[0][0])

    def epoch_root(self, epoch: int) -> bytes | None:
        rows = self._read("SELECT root_hash FROM kt_epochs WHERE epoch = ?", (epoch,))
        return bytes(rows[0][0]) if rows else None

    def value_states(self, akd_label: bytes) -> Sequence[ValueState]:
        rows = self._read(
            "SELECT version, epoch, value FROM kt_values WHERE label = ? ORDER BY version",
            (akd_label,),
        )
        return tuple(ValueState(int(v), int(e), bytes(val)) for v, e, val in rows)

    def stage(self, make_head: HeadBuilder, published: Sequence[tuple[bytes, bytes]]) -> None:
        """Set what the next :meth:`commit_epoch` adds: the signed head (from ``make_head``)
        and the removal of the ``published`` (label, value) updates from the queue."""
        self._publishing = (make_head, tuple(published))

    def stage_clear(self) -> None:
        """Forget what :meth:`stage` set (after a publication, committed or not)."""
        self._publishing = None

    def commit_epoch(
        self,
        epoch: int,
        root_hash: bytes,
        nodes: Sequence[TrieNode],
        states: Sequence[tuple[bytes, ValueState]],
    ) -> None:
        staged, self._publishing = self._publishing, None
        if staged is None:
            raise UsageError("stage the epoch's head before committing it")
        make_head, published = staged
        with self._tx() as c:
            if self._lock_sql:
                c.execute(self._lock_sql)
            latest = int(c.execute("SELECT COALESCE(MAX(epoch), 0) FROM kt_epochs").fetchone()[0])
            if epoch != latest + 1:
                raise UsageError("epochs are committed one after the other")
            previous = None
            if latest:
                previous = bytes(
                    c.execute(
                        "SELECT signed_head FROM kt_epochs WHERE epoch = ?", (latest,)
                    ).fetchone()[0]
                )
            signed_head = make_head(epoch, root_hash, previous)
            c.executemany(
                "INSERT INTO kt_nodes (" + _NODE_COLUMNS + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (node_key) DO UPDATE SET left_key = excluded.left_key,"
                " right_key = excluded.right_key, commitment = excluded.commitment,"
                " value = excluded.value, digest = excluded.digest,"
                " label_hash = excluded.label_hash, last_epoch = excluded.last_epoch,"
                " min_epoch = excluded.min_epoch",
                [
                    (
                        _key_bytes(n.key),
                        _key_bytes(n.left),
                        _key_bytes(n.right),
                        n.commitment,
                        n.value,
                        n.digest,
                        n.label_hash,
                        n.last_epoch,
                        n.min_epoch,
                    )
                    for n in nodes
                ],
            )
            c.executemany(
                "INSERT INTO kt_values (label, version, epoch, value) VALUES (?, ?, ?, ?)",
                [(label, s.version, s.epoch, s.value) for label, s in states],
            )
            c.execute(
                "INSERT INTO kt_epochs (epoch, root_hash, signed_head) VALUES (?, ?, ?)",
                (epoch, root_hash, signed_head),
            )
            c.executemany("DELETE FROM kt_pending WHERE label = ? AND value = ?", list(published))

    # -- the relay's extras -----------------------------------------------------------------

    def init_keys(self, vrf_seed: bytes, head_seed: bytes) -> tuple[bytes, bytes]:
        """The stored (VRF seed, head-signing seed); the given ones are stored on first use."""
        with self._tx() as c:
            # first start of the first instance stores its keys; every other one reads them
            c.execute(
                "INSERT INTO kt_keys VALUES (1, ?, ?) ON CONFLICT (singleton) DO NOTHING",
                (vrf_seed, head_seed),
            )
            row = c.execute("SELECT vrf_seed, head_seed FROM kt_keys").fetchone()
        if row is None:
            raise StorageError("the stored key-transparency keys are missing")
        vrf, head = bytes(row[0]), bytes(row[1])
        if len(vrf) != 32 or len(head) != 32:
            raise StorageError("the stored key-transparency keys are corrupt")
        return vrf, head

    def keys(self) -> tuple[bytes, bytes] | None:
        """The stored (VRF seed, head-signing seed), or None before the relay first started."""
        rows = self._read("SELECT vrf_seed, head_seed FROM kt_keys")
        return (bytes(rows[0][0]), bytes(rows[0][1])) if rows else None

    def queue(self, label: bytes, value: bytes) -> None:
        """Queue (label -> value) for the next epoch (replacing a queued value)."""
        with self._tx() as c:
            c.execute(
                "INSERT INTO kt_pending (label, value) VALUES (?, ?)"
                " ON CONFLICT (label) DO UPDATE SET value = excluded.value",
                (label, value),
            )

    def pending_updates(self, limit: int) -> list[tuple[bytes, bytes]]:
        """At most ``limit`` queued (label, value) updates, in label order."""
        rows = self._read("SELECT label, value FROM kt_pending ORDER BY label LIMIT ?", (limit,))
        return [(bytes(a), bytes(b)) for a, b in rows]

    def pending_value(self, label: bytes) -> bytes | None:
        """The value queued for ``label``, if any."""
        rows = self._read("SELECT value FROM kt_pending WHERE label = ?", (label,))
        return bytes(rows[0][0]) if rows else None

    def drop_pending(self, published: Sequence[tuple[bytes, bytes]]) -> None:
        """Remove queued updates that turned out to change nothing."""
        with self._tx() as c:
            c.executemany("DELETE FROM kt_pending WHERE label = ? AND value = ?", list(published))

    def signed_heads(self, since_epoch: int, limit: int) -> list[bytes]:
        """The signed heads of epochs ``since_epoch + 1`` on, at most ``limit``, oldest first."""
        rows = self._read(
            "SELECT signed_head FROM kt_epochs WHERE epoch > ? ORDER BY epoch LIMIT ?",
            (since_epoch, limit),
        )
        return [bytes(r[0]) for r in rows]

    def signed_head(self, epoch: int) -> bytes | None:
        rows = self._read("SELECT signed_head FROM kt_epochs WHERE epoch = ?", (epoch,))
        return bytes(rows[0][0]) if rows else None

    def add_cosignature(self, epoch: int, auditor_key: bytes, signature: bytes) -> None:
        """Store an auditor's cosignature of ``epoch`` (replacing that auditor's earlier one).
        The caller decides whose it stores: the relay stores only its configured auditors'
        (at most :data:`~securemsg.relay_protocol.frames.MAX_KT_COSIGNATURES`), which bounds
        the rows per epoch."""
        with self._tx() as c:
            c.execute(
                "INSERT INTO kt_cosignatures (epoch, auditor_key, signature) VALUES (?, ?, ?)"
                " ON CONFLICT (epoch, auditor_key) DO UPDATE SET signature = excluded.signature",
                (epoch, auditor_key, signature),
            )

    def cosignature(self, epoch: int, auditor_key: bytes) -> bytes | None:
        """The cosignature of ``epoch`` stored for ``auditor_key``, if any."""
        rows = self._read(
            "SELECT signature FROM kt_cosignatures WHERE epoch = ? AND auditor_key = ?",
            (epoch, auditor_key),
        )
        return bytes(rows[0][0]) if rows else None

    def cosignatures(self, epoch: int) -> list[tuple[bytes, bytes]]:
        """The (auditor key, signature) pairs stored for ``epoch``, by key."""
        rows = self._read(
            "SELECT auditor_key, signature FROM kt_cosignatures WHERE epoch = ?"
            " ORDER BY auditor_key",
            (epoch,),
        )
        return [(bytes(a), bytes(b)) for a, b in rows]


class _Tx:
    """A connection in a transaction, running ``?`` SQL in the driver's placeholder style."""

    __slots__ = ("_conn", "_q")

    def __init__(self, conn: Any, q: Callable[[str], str]) -> None:
        self._conn = conn
        self._q = q

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._conn.execute(self._q(sql), tuple(params))

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            self._conn.cursor().executemany(self._q(sql), rows)


#: The store on a :class:`~securemsg.relay.store.SqliteRelayStore` (its ``kt_store()``).
SqliteKtStore = RelayKtStore
