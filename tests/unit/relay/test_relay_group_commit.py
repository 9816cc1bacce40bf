"""Group commit: the store's ``batch()`` (one transaction, a SAVEPOINT per operation, one
COMMIT) and the relay's storage thread, which commits what is queued together and answers
a send, or applies an ack, only once its commit is durable."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from relay_harness import NOW, Device, RawClient, authenticated, registered, run

from securemsg.errors import StorageError, UsageError
from securemsg.relay.server import RelayServer
from securemsg.relay.service import RelayConfig
from securemsg.relay.store import QueuedMessage, SqliteRelayStore
from securemsg.relay_protocol import frames as rf

ACI = bytes(range(16))


def msg(i: int, size: int = 10, aci: bytes = ACI, mid: bytes | None = None) -> QueuedMessage:
    return QueuedMessage(
        id=mid or i.to_bytes(16, "big"),
        aci=aci,
        device_id=1,
        type=6,
        source_aci=None,
        source_device_id=0,
        client_timestamp=NOW,
        received_at=NOW,
        body=bytes([i % 256]) * size,
    )


class CountingStore(SqliteRelayStore):
    """Counts outer commits; can make the next batch's commit fail."""

    commits = 0
    fail_next = False

    def _after_commit(self) -> None:
        self.commits += 1

    @contextmanager
    def batch(self) -> Iterator[None]:
        with super().batch():
            yield
            if self.fail_next:
                self.fail_next = False
                raise StorageError("relay database error: disk I/O error (simulated)")


def count_rows(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT COUNT(*) FROM messages").fetchone()[0])
    finally:
        conn.close()


# -- the store ------------------------------------------------------------------------------


def test_batch_commits_once_and_a_failed_operation_spoils_nothing_else(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    store = CountingStore.open(db)
    try:
        store.commits = 0
        assert store.enqueue([msg(1)], 10)
        assert store.commits == 1  # a plain operation commits on its own
        with store.batch():
            assert store.enqueue([msg(2)], 10)
            assert not store.enqueue([msg(i) for i in range(10, 20)], 10)  # mailbox full
            with pytest.raises(StorageError):
                store.enqueue([msg(3), msg(4, mid=msg(2).id)], 10)  # duplicate id: SQL error
            assert store.enqueue([msg(5)], 10)
            assert store.ack(ACI, 1, [msg(1).id]) == 1
            assert count_rows(db) == 1  # another connection sees nothing before COMMIT
        assert store.commits == 2  # the whole batch: one commit
        assert [m.id for m in store.pending(ACI, 1)] == [msg(2).id, msg(5).id]
        assert count_rows(db) == 2

        with pytest.raises(RuntimeError), store.batch():
            assert store.enqueue([msg(6)], 10)
            raise RuntimeError("the caller gave up")
        assert [m.id for m in store.pending(ACI, 1)] == [msg(2).id, msg(5).id]
        assert store.commits == 2

        with store.batch(), pytest.raises(UsageError), store.batch():
            pass
    finally:
        store.close()


def test_pending_page_pages_by_seq_within_count_and_byte_bounds(tmp_path: Path) -> None:
    store = SqliteRelayStore.open(tmp_path / "r.db")
    try:
        assert store.enqueue([msg(i, size=100) for i in range(1, 8)], 100)
        first = store.pending_page(ACI, 1, limit=3)
        assert [m.id for _, m in first] == [msg(i).id for i in (1, 2, 3)]
        rest = store.pending_page(ACI, 1, after_seq=first[-1][0], limit=100, max_bytes=250)
        assert [m.id for _, m in rest] == [msg(4).id, msg(5).id]  # 2 x 100 <= 250 < 3 x 100
        one = store.pending_page(ACI, 1, after_seq=rest[-1][0], limit=10, max_bytes=1)
        assert [m.id for _, m in one] == [msg(6).id]  # the first row always comes
        assert store.pending_page(ACI, 1, limit=0) == []
        assert store.pending(ACI, 1) == [m for _, m in store.pending_page(ACI, 1, limit=100)]
    finally:
        store.close()


# -- the storage thread ---------------------------------------------------------------------


def sealed(to: Device, body: bytes) -> rf.SendSealed:
    out = rf.OutgoingMessage(to.device_id, to.registration_id, 0, body)
    return rf.SendSealed(to.aci, to.access_key, NOW, (out,))


async def send_raw(c: RawClient, body: rf.Request) -> int:
    rid = c._next_id
    c._next_id += 1
    await c.ws.send(rf.encode_client_frame(rf.ClientFrame(rid, body)))
    return rid


class Held:
    """Blocks the storage thread until released, so that requests queue up behind it."""

    def __init__(self, server: RelayServer) -> None:
        self.server = server
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.task: asyncio.Task[Any] | None = None

    def __enter__(self) -> Held:
        def hold(_: object) -> bool:
            self.entered.set()
            return self.gate.wait(30)

        self.task = asyncio.ensure_future(self.server.call(hold))
        return self

    async def holding(self) -> None:
        """Wait until the storage thread is inside the held call (bounded)."""
        for _ in range(600):
            if self.entered.is_set():
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the storage thread never took the held call")

    def queued(self) -> int:
        assert self.server._storage is not None
        return self.server._storage.queued()

    async def until_queued(self, n: int) -> None:
        for _ in range(600):
            if self.queued() >= n:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"only {self.queued()} queued")

    def __exit__(self, *exc: object) -> None:
        self.gate.set()


def test_concurrent_sends_share_one_commit_and_are_answered_after_it(tmp_path: Path) -> None:
    bob = Device.new(401)

    async def body() -> None:
        store = CountingStore.open(tmp_path / "r.db")
        server = RelayServer(store=store, clock=lambda: NOW)
        await server.start()
        try:
            await (await registered(server.url, bob)).close()
            senders = [await RawClient.open(server.url) for _ in range(4)]
            with Held(server) as held:
                await held.holding()
                before = store.commits
                rids = []
                for i in range(20):
                    c = senders[i % 4]
                    rids.append((c, await send_raw(c, sealed(bob, b"m%d" % i))))
                await held.until_queued(20)
                assert store.commits == before  # nothing answered: nothing committed
            for c, rid in rids:
                assert (await c.response(rid)).code == rf.StatusCode.OK
            assert store.commits - before <= 2  # the held call's batch, then all 20 at once
            b = await RawClient.open(server.url)
            assert (await b.request(bob.authenticate(b.nonce))).code == 0
            assert len(await b.wait_pushes(20)) == 20
            for c in [*senders, b]:
                await c.close()
        finally:
            await server.stop()
            store.close()

    run(body)


@pytest.mark.parametrize("auth_first", [True, False])
def test_auth_and_send_in_one_batch_deliver_exactly_once(tmp_path: Path, auth_first: bool) -> None:
    bob = Device.new(402)

    async def body() -> None:
        async with RelayServer(tmp_path / "r.db", clock=lambda: NOW) as server:
            await (await registered(server.url, bob)).close()
            b = await RawClient.open(server.url)
            a = await RawClient.open(server.url)
            with Held(server) as held:
                await held.holding()
                if auth_first:
                    auth = await send_raw(b, bob.authenticate(b.nonce))
                    await held.until_queued(1)
                    send = await send_raw(a, sealed(bob, b"racing"))
                else:
                    send = await send_raw(a, sealed(bob, b"racing"))
                    await held.until_queued(1)
                    auth = await send_raw(b, bob.authenticate(b.nonce))
                await held.until_queued(2)
            assert (await a.response(send)).code == rf.StatusCode.OK
            assert (await b.response(auth)).code == rf.StatusCode.OK
            await b.wait_queue_empty()
            assert (await b.request(rf.GetServerTrustRoot())).code == 0
            assert [e.body for e in b.pushes] == [b"racing"]  # once
            await a.close()
            await b.close()

    run(body)


def test_a_failed_commit_answers_nothing_ok_and_applies_no_ack(tmp_path: Path) -> None:
    bob = Device.new(403)

    async def body() -> None:
        store = CountingStore.open(tmp_path / "r.db")
        server = RelayServer(store=store, clock=lambda: NOW)
        await server.start()
        try:
            await (await registered(server.url, bob)).close()
            a = await RawClient.open(server.url)
            assert (await a.request(sealed(bob, b"kept"))).code == 0
            b = await authenticated(server.url, bob)  # gets "kept" (not acked yet)
            (kept,) = b.pushes

            store.fail_next = True
            r = await a.request(sealed(bob, b"lost"))
            assert r.code == rf.StatusCode.INTERNAL  # not OK: it was never durable
            assert await a.closed() == 1011
            a = await RawClient.open(server.url)
            assert (await a.request(rf.GetServerTrustRoot())).code == 0
            assert [e.body for e in b.pushes] == [b"kept"]  # "lost" was not pushed

            store.fail_next = True
            r = await b.request(rf.Ack((kept.id,)))
            assert r.code == rf.StatusCode.INTERNAL
            assert await b.closed() == 1011
            left = await server.call(lambda s: s.store.pending(bob.aci, 1))
            assert [m.body for m in left] == [b"kept"]  # the ack did not take effect
            c = await authenticated(server.url, bob)
            assert [e.body for e in c.pushes] == [b"kept"]
            await c.close()
            await a.close()
        finally:
            await server.stop()
            store.close()

    run(body)


class NoBatchStore:
    """A RelayStore without ``batch()``: requests run one by one."""

    def __init__(self, inner: SqliteRelayStore) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        if name in ("batch", "pending_page"):
            raise AttributeError(name)
        return getattr(self._inner, name)


def test_a_store_without_batch_or_pages_still_serves(tmp_path: Path) -> None:
    bob = Device.new(404)

    async def body() -> None:
        inner = SqliteRelayStore.open(tmp_path / "r.db")
        config = RelayConfig(window_envelopes=2)
        server = RelayServer(store=NoBatchStore(inner), clock=lambda: NOW, config=config)  # type: ignore[arg-type]
        await server.start()
        try:
            await (await registered(server.url, bob)).close()
            a = await RawClient.open(server.url)
            for i in range(5):
                assert (await a.request(sealed(bob, b"%d" % i))).code == 0
            b = await RawClient.open(server.url)
            assert (await b.request(bob.authenticate(b.nonce))).code == 0
            acked = 0
            while b.queue_empty == 0:
                await b.wait_pushes(min(acked + 1, 5))
                new = b.pushes[acked:]
                if new:
                    assert (await b.request(rf.Ack(tuple(e.id for e in new)))).code == 0
                    acked += len(new)
                assert (await b.request(rf.GetServerTrustRoot())).code == 0
            assert [e.body for e in b.pushes] == [b"%d" % i for i in range(5)]
            await a.close()
            await b.close()
        finally:
            await server.stop()
            inner.close()

    run(body)
