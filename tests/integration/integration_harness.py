"""Shared helpers for the integration tests: a real relay and real SDK clients on loopback.

Everything is bounded (:func:`run` puts an overall timeout on a test body, :func:`until`
polls a bounded number of times) and everything lives in temporary directories. Databases go
to :func:`fast_dir` (a tmpfs such as ``/dev/shm`` when the machine has one) when a test is
about many messages rather than about durability: the relay and the clients commit with
``synchronous=FULL``, and one fsync per commit would make the load test minutes long.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sqlite3
import tempfile
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from securemsg.client import Client
from securemsg.protocol.address import ProtocolAddress
from securemsg.relay.server import RelayServer

T = TypeVar("T")

#: Seconds any single integration test body may take before it is failed.
TEST_TIMEOUT_S = 120.0


def run(coro: Awaitable[T], timeout: float = TEST_TIMEOUT_S) -> T:
    """Run ``coro`` on a fresh event loop with an overall bound."""

    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


async def until(predicate: Callable[[], bool], attempts: int = 500, delay: float = 0.02) -> None:
    """Poll ``predicate`` a bounded number of times (a wait, never a timing assertion)."""
    for _ in range(attempts):
        if predicate():
            return
        await asyncio.sleep(delay)
    raise AssertionError("condition not reached")


@contextmanager
def fast_dir() -> Iterator[Path]:
    """A temporary directory on a tmpfs (``/dev/shm``) if there is one, else the default."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="securemsg-it-", dir=base) as name:
        yield Path(name)


async def new_client(
    relay: RelayServer, path: Path, *, batch: int = 4, low_water: int = 2, **kw: Any
) -> Client:
    """A registered (and connected) client on its own database file."""
    client = await Client.create(
        path,
        relay.url,
        relay.trust_root_public,
        prekey_batch=batch,
        prekey_low_water=low_water,
        **kw,
    )
    await client.register()
    return client


def introduce(*clients: Client) -> None:
    """Every client learns every other's contact card (ACI + access key), as a QR code would."""
    for a in clients:
        for b in clients:
            if a is not b:
                a.add_contact(b.contact_card)


async def receive_n(client: Client, n: int, timeout: float = 20.0) -> list[str]:
    """The texts of the next ``n`` messages (fails if one does not come within ``timeout``)."""
    texts: list[str] = []
    for _ in range(n):
        m = await client.receive(timeout=timeout)
        assert m is not None, f"expected {n} messages, got {texts}"
        texts.append(m.text)
    return texts


# -- what the relay holds ------------------------------------------------------------------


def read_all_rows(db: Path) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    """Every table (including SQLite's own) with its column names and every row."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        out: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
        names = [
            str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ] + ["sqlite_master"]
        for name in names:
            cur = conn.execute(f'SELECT * FROM "{name}"')
            cols = [d[0] for d in cur.description]
            out[name] = (cols, [tuple(r) for r in cur.fetchall()])
        return out
    finally:
        conn.close()


def schema_columns(db: Path) -> set[tuple[str, str]]:
    """(table, column) of every user table, read from sqlite_master and PRAGMA table_info."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        tables = [
            str(r[0])
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {(t, str(c[1])) for t in tables for c in conn.execute(f'PRAGMA table_info("{t}")')}
    finally:
        conn.close()


def db_files(db: Path) -> dict[str, bytes]:
    """The raw bytes of the database file and its companions (-wal, -shm, -journal)."""
    return {p.name: p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name)}


# -- what the clients hold -----------------------------------------------------------------


@dataclass
class Secrets:
    """Private material harvested from client stores during a run (never to reach the relay)."""

    items: dict[bytes, str] = field(default_factory=dict)

    def add(self, value: bytes, what: str) -> None:
        if len(value) >= 16:  # shorter values would match random ciphertext by chance
            self.items[bytes(value)] = what

    def harvest(self, client: Client, peers: Iterable[str]) -> None:
        """Everything private the client's store holds right now (sessions with ``peers``)."""
        store = client.store
        who = client.aci[:8]
        self.add(store.get_identity_key_pair().private_key.to_bytes(), f"{who} identity")
        self.add(bytes.fromhex(client.contact_card.split(":")[1]), f"{who} access key")
        for i in store.get_pre_key_ids():
            self.add(store.get_pre_key(i).key_pair.private_key.to_bytes(), f"{who} prekey {i}")
        for i in store.get_signed_pre_key_ids():
            rec = store.get_signed_pre_key(i)
            self.add(rec.key_pair.private_key.to_bytes(), f"{who} signed prekey {i}")
        for i in store.get_kyber_pre_key_ids():
            self.add(store.get_kyber_pre_key(i).key_pair.seed, f"{who} kyber seed {i}")
        for peer in peers:
            for dev in store.get_session_device_ids(peer):
                record = store.load_session(ProtocolAddress(peer, dev))
                state = None if record is None else record.current
                if state is None:
                    continue
                r = state.ratchet
                self.add(r.root_key, f"{who} root key")
                if r.sender_chain is not None:
                    self.add(r.sender_chain.chain_key, f"{who} sending chain key")
                    priv = r.sender_chain.ratchet_key_pair.private_key.to_bytes()
                    self.add(priv, f"{who} ratchet private key")
                for chain in r.receiver_chains:
                    self.add(chain.chain_key, f"{who} receiving chain key")


def public_identifiers(client: Client) -> dict[bytes, str]:
    """What identifies the client's account on the relay: ACI (bytes and text forms) and the
    public keys it uploaded (identity, signed, last-resort and one-time prekeys) that its
    store still holds."""
    store = client.store
    aci = uuid.UUID(client.aci)
    out: dict[bytes, str] = {
        aci.bytes: "ACI bytes",
        str(aci).encode(): "ACI text",
        str(aci).upper().encode(): "ACI text (upper case)",
        aci.hex.encode(): "ACI hex",
    }
    identity = store.get_identity_key_pair().identity_key
    out[identity.to_bytes()] = "identity key"
    out[identity.to_bytes()[1:]] = "identity key (raw)"
    for i in store.get_pre_key_ids():
        out[store.get_pre_key(i).public_key.to_bytes()] = f"one-time prekey {i}"
    for i in store.get_signed_pre_key_ids():
        out[store.get_signed_pre_key(i).public_key.to_bytes()] = f"signed prekey {i}"
    for i in store.get_kyber_pre_key_ids():
        out[store.get_kyber_pre_key(i).public_key.to_bytes()] = f"Kyber prekey {i}"
    return out


# -- the relay's logs ----------------------------------------------------------------------


class RelayLogCapture(logging.Handler):
    """Collects every record the relay side emits (not the in-process clients' records)."""

    CLIENT_LOGGERS = ("securemsg.client", "websockets.client")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(self.CLIENT_LOGGERS):
            return
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.name}: {text}")

    @contextmanager
    def installed(self, *loggers: str) -> Iterator[RelayLogCapture]:
        """Attach to the root logger with the given relay loggers at DEBUG; restore after."""
        root = logging.getLogger()
        saved = [(lg, lg.level) for lg in (root, *map(logging.getLogger, loggers))]
        root.addHandler(self)
        root.setLevel(logging.DEBUG)
        try:
            yield self
        finally:
            root.removeHandler(self)
            for lg, level in saved:
                lg.setLevel(level)


IPV4 = re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}\b")
IPV6_LOOPBACK = re.compile(r"(?<![0-9A-Za-z:])::1(?![0-9A-Za-z:])|\[::1\]")
