"""The key-transparency directory's storage in the relay database.

Theory of operation
-------------------
:class:`SqliteKtStore` implements :class:`securemsg.kt.directory.KtStore` (the five methods a
:class:`~securemsg.kt.directory.Directory` needs) plus what the relay needs around it: the
directory's own keys, the queue of unpublished (ACI -> identity key) updates, the signed epoch
heads and the auditors' cosignatures. It shares the connection of a
:class:`~securemsg.relay.store.SqliteRelayStore` (tables added by schema migration 3), so a
registration queues its update in the registration's own transaction
(:meth:`~securemsg.relay.store.SqliteRelayStore.create_device`).

:meth:`SqliteKtStore.commit_epoch` is one transaction: the changed trie nodes, the new label
versions, the epoch's root and its signed head (built by the callback staged with
:meth:`SqliteKtStore.stage`, from the previous head read inside the same transaction), and
the removal of the published updates from the queue. A failure leaves all of it untouched.

The SQL is portable (``INSERT ... ON CONFLICT``, BLOB keys): a PostgreSQL relay store would
implement the same methods. Node keys (``val << 9 | len``, up to 265 bits) are stored as 34
big-endian bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from securemsg.errors import StorageError, UsageError
from securemsg.kt.directory import TrieNode, ValueState
from securemsg.relay.store import SqliteRelayStore

__all__ = ["HeadBuilder", "SqliteKtStore"]

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


class SqliteKtStore:
    """The directory's state in the relay's SQLite database (see the module docstring)."""

    __slots__ = ("_publishing", "_relay")

    def __init__(self, relay_store: SqliteRelayStore) -> None:
        self._relay = relay_store
        self._publishing: tuple[HeadBuilder, tuple[tuple[bytes, bytes], ...]] | None = None

    # -- KtStore --------------------------------------------------------------------------

    def get_node(self, key: int) -> TrieNode | None:
        rows = self._relay._read(
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
        rows = self._relay._read("SELECT COALESCE(MAX(epoch), 0) FROM kt_epochs")
        return int(rows[0][0])

    def epoch_root(self, epoch: int) -> bytes | None:
        rows = self._relay._read("SELECT root_hash FROM kt_epochs WHERE epoch = ?", (epoch,))
        return bytes(rows[0][0]) if rows else None

    def value_states(self, akd_label: bytes) -> Sequence[ValueState]:
        rows = self._relay._read(
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
        with self._relay._tx() as c:
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
        with self._relay._tx() as c:
            row = c.execute("SELECT vrf_seed, head_seed FROM kt_keys").fetchone()
            if row is None:
                c.execute("INSERT INTO kt_keys VALUES (1, ?, ?)", (vrf_seed, head_seed))
                return vrf_seed, head_seed
        vrf, head = bytes(row[0]), bytes(row[1])
        if len(vrf) != 32 or len(head) != 32:
            raise StorageError("the stored key-transparency keys are corrupt")
        return vrf, head

    def keys(self) -> tuple[bytes, bytes] | None:
        """The stored (VRF seed, head-signing seed), or None before the relay first started."""
        rows = self._relay._read("SELECT vrf_seed, head_seed FROM kt_keys")
        return (bytes(rows[0][0]), bytes(rows[0][1])) if rows else None

    def queue(self, label: bytes, value: bytes) -> None:
        """Queue (label -> value) for the next epoch (replacing a queued value)."""
        with self._relay._tx() as c:
            c.execute(
                "INSERT INTO kt_pending (label, value) VALUES (?, ?)"
                " ON CONFLICT (label) DO UPDATE SET value = excluded.value",
                (label, value),
            )

    def pending_updates(self, limit: int) -> list[tuple[bytes, bytes]]:
        """At most ``limit`` queued (label, value) updates, in label order."""
        rows = self._relay._read(
            "SELECT label, value FROM kt_pending ORDER BY label LIMIT ?", (limit,)
        )
        return [(bytes(a), bytes(b)) for a, b in rows]

    def pending_value(self, label: bytes) -> bytes | None:
        """The value queued for ``label``, if any."""
        rows = self._relay._read("SELECT value FROM kt_pending WHERE label = ?", (label,))
        return bytes(rows[0][0]) if rows else None

    def drop_pending(self, published: Sequence[tuple[bytes, bytes]]) -> None:
        """Remove queued updates that turned out to change nothing."""
        with self._relay._tx() as c:
            c.executemany("DELETE FROM kt_pending WHERE label = ? AND value = ?", list(published))

    def signed_heads(self, since_epoch: int, limit: int) -> list[bytes]:
        """The signed heads of epochs ``since_epoch + 1`` on, at most ``limit``, oldest first."""
        rows = self._relay._read(
            "SELECT signed_head FROM kt_epochs WHERE epoch > ? ORDER BY epoch LIMIT ?",
            (since_epoch, limit),
        )
        return [bytes(r[0]) for r in rows]

    def signed_head(self, epoch: int) -> bytes | None:
        rows = self._relay._read("SELECT signed_head FROM kt_epochs WHERE epoch = ?", (epoch,))
        return bytes(rows[0][0]) if rows else None

    def add_cosignature(self, epoch: int, auditor_key: bytes, signature: bytes, limit: int) -> bool:
        """Store an auditor's cosignature of ``epoch`` (replacing that auditor's earlier one).
        False, storing nothing, when the epoch already holds ``limit`` other auditors'."""
        with self._relay._tx() as c:
            count = int(
                c.execute(
                    "SELECT COUNT(*) FROM kt_cosignatures WHERE epoch = ? AND auditor_key != ?",
                    (epoch, auditor_key),
                ).fetchone()[0]
            )
            if count >= limit:
                return False
            c.execute(
                "INSERT INTO kt_cosignatures (epoch, auditor_key, signature) VALUES (?, ?, ?)"
                " ON CONFLICT (epoch, auditor_key) DO UPDATE SET signature = excluded.signature",
                (epoch, auditor_key, signature),
            )
        return True

    def cosignatures(self, epoch: int) -> list[tuple[bytes, bytes]]:
        """The (auditor key, signature) pairs stored for ``epoch``, by key."""
        rows = self._relay._read(
            "SELECT auditor_key, signature FROM kt_cosignatures WHERE epoch = ?"
            " ORDER BY auditor_key",
            (epoch,),
        )
        return [(bytes(a), bytes(b)) for a, b in rows]
