"""Outbound flow control over loopback: a backlog is pushed through a bounded window refilled
by acks, a connection that does not read cannot make the relay hold more than its window,
and stuck, replaced, idle or surplus connections are dropped.

The memory tests run the relay in its own process (tests/unit/relay/relay_flow_child.py)
and read its ``VmRSS``; every wait is bounded in count and time, no assertion is timed.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from relay_harness import NOW, TIMEOUT, Device, RawClient, authenticated, registered, relay, run
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from securemsg.relay.server import _handler_count
from securemsg.relay_protocol import frames as rf

CHILD = Path(__file__).with_name("relay_flow_child.py")
MIB = 1024 * 1024


def sealed(to: Device, body: bytes) -> rf.SendSealed:
    out = rf.OutgoingMessage(to.device_id, to.registration_id, 0, body)
    return rf.SendSealed(to.aci, to.access_key, NOW, (out,))


async def fill(url: str, to: Device, n: int, size: int, tag: int = 0) -> list[bytes]:
    """Queue ``n`` sealed messages of ``size`` bytes for ``to``; their bodies, in order."""
    anon = await RawClient.open(url)
    bodies = []
    for i in range(n):
        body = tag.to_bytes(2, "big") + i.to_bytes(4, "big") + bytes(max(0, size - 6))
        r = await anon.request(sealed(to, body))
        assert r.code == rf.StatusCode.OK, r
        bodies.append(body)
    await anon.close()
    return bodies


async def until(cond: Callable[[], bool], what: str, limit_s: float = 60.0) -> None:
    for _ in range(int(limit_s / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("gave up waiting: " + what)


async def probe(c: RawClient) -> None:
    """A round trip: every push the relay queued before answering it has arrived."""
    r = await c.request(rf.GetServerTrustRoot())
    assert r.code == rf.StatusCode.OK


# -- the window -----------------------------------------------------------------------------


def test_backlog_is_pushed_through_a_window_refilled_by_acks(store_db: str) -> None:
    bob = Device.new(301)

    async def body() -> None:
        async with relay(store_db, clock=lambda: NOW, window_envelopes=5) as server:
            await (await registered(server.url, bob)).close()
            bodies = await fill(server.url, bob, 23, 40)
            b = await RawClient.open(server.url)
            assert (await b.request(bob.authenticate(b.nonce))).code == rf.StatusCode.OK
            seen = 0
            while b.queue_empty == 0:
                await b.wait_pushes(min(seen + 5, 23))
                await probe(b)
                # Never more than the window ahead of the acks, and no QueueEmpty early.
                assert len(b.pushes) - seen <= 5
                assert b.queue_empty == 0 or len(b.pushes) == 23
                batch = b.pushes[seen:]
                seen = len(b.pushes)
                if not batch:
                    break
                r = await b.request(rf.Ack(tuple(e.id for e in batch)))
                assert r.code == rf.StatusCode.OK
                await probe(b)
            await b.wait_queue_empty()
            assert [e.body for e in b.pushes] == bodies  # all, once, in order
            assert b.queue_empty == 1
            await b.close()

    run(body)


def test_live_sends_do_not_bypass_the_window_and_arrive_once(store_db: str) -> None:
    bob = Device.new(302)

    async def body() -> None:
        async with relay(store_db, clock=lambda: NOW, window_envelopes=3) as server:
            await (await registered(server.url, bob)).close()
            backlog = await fill(server.url, bob, 10, 30, tag=1)
            b = await RawClient.open(server.url)
            assert (await b.request(bob.authenticate(b.nonce))).code == rf.StatusCode.OK
            await b.wait_pushes(3)
            live = await fill(server.url, bob, 5, 30, tag=2)  # while draining, window full
            await probe(b)
            assert len(b.pushes) == 3 and b.queue_empty == 0
            acked = 0
            while b.queue_empty == 0 or acked < len(b.pushes):
                pending = b.pushes[acked:]
                if pending:
                    assert (await b.request(rf.Ack(tuple(e.id for e in pending)))).code == 0
                    acked += len(pending)
                await probe(b)
                assert len(b.pushes) - acked <= 3
            assert [e.body for e in b.pushes] == backlog + live
            # Drained: a new send is pushed at once (window room), QueueEmpty is not repeated.
            (more,) = await fill(server.url, bob, 1, 30, tag=3)
            (env,) = (await b.wait_pushes(16))[15:]
            assert env.body == more and b.queue_empty == 1
            await b.close()

    run(body)


def test_concurrent_senders_small_window_every_envelope_exactly_once(store_db: str) -> None:
    """Senders race the pager and the acks (the newest row is deleted and its ``seq``
    reused all the time): nothing is missed, nothing is pushed twice on the connection."""
    bob = Device.new(303)
    rnd = random.Random(7)

    async def body() -> None:
        async with relay(store_db, clock=lambda: NOW, window_envelopes=2) as server:
            await (await registered(server.url, bob)).close()
            backlog = await fill(server.url, bob, 5, 10, tag=9)
            b = await authenticated_nowait(server.url, bob)
            senders = [asyncio.create_task(fill(server.url, bob, 25, 10, tag=t)) for t in range(3)]
            total = 5 + 3 * 25
            acked = 0
            for _ in range(10 * total):
                if acked == total:
                    break
                await b.wait_pushes(acked + 1)
                take = b.pushes[acked : acked + rnd.randint(1, 2)]
                assert (await b.request(rf.Ack(tuple(e.id for e in take)))).code == 0
                acked += len(take)
            sent = await asyncio.gather(*senders)
            await probe(b)
            ids = [e.id for e in b.pushes]
            assert len(ids) == len(set(ids)) == total
            expected = backlog + [x for s in sent for x in s]
            assert sorted(e.body for e in b.pushes) == sorted(expected)
            left = await server.call(lambda s: s.store.pending(bob.aci, 1))
            assert left == []
            await b.close()

    run(body)


async def authenticated_nowait(url: str, device: Device) -> RawClient:
    c = await RawClient.open(url)
    assert (await c.request(device.authenticate(c.nonce))).code == rf.StatusCode.OK
    return c


# -- connections that do not read -----------------------------------------------------------


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class _Child:
    def __init__(self, db: Path, config: dict[str, object], nofile: int | None = None) -> None:
        args = [sys.executable, str(CHILD), str(db), json.dumps(config)]
        if nofile is not None:
            args.append(str(nofile))
        self.err = db.with_suffix(".log")
        self._errf = open(self.err, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._errf
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode()
        assert line.startswith("URL "), (line, self.err.read_text())
        self.url = line.split()[1]

    @property
    def rss(self) -> int:
        return _rss(self.proc.pid)

    def stop(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._errf.close()


async def _open_not_reading(url: str, device: Device) -> ClientConnection:
    """Authenticate, then never read again (the library buffers at most one frame)."""
    ws = await connect(url, max_size=rf.MAX_FRAME_SIZE, max_queue=1, open_timeout=TIMEOUT)
    first = rf.decode_server_frame(await asyncio.wait_for(ws.recv(), TIMEOUT))  # type: ignore[arg-type]
    assert isinstance(first, rf.Challenge)
    await ws.send(rf.encode_client_frame(rf.ClientFrame(1, device.authenticate(first.nonce))))
    r = rf.decode_server_frame(await asyncio.wait_for(ws.recv(), TIMEOUT))  # type: ignore[arg-type]
    assert isinstance(r, rf.Response) and r.code == rf.StatusCode.OK, r
    return ws


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_twenty_non_reading_connections_of_a_full_mailbox_hold_one_window_each(
    tmp_path: Path,
) -> None:
    """The finding: 20 connections of one device with a full mailbox that never read.
    Before, each got the whole mailbox queued in memory (20 x 16 MiB here, 20 x 64 MiB with
    the default cap); now each holds at most its window (1 MiB), whatever the mailbox."""
    mailbox = 16 * MIB
    bob = Device.new(304)
    cfg: dict[str, object] = {
        "max_mailbox_bytes": mailbox,
        "write_timeout_s": 300.0,  # keep them connected while measuring
        "ping_interval_s": 300.0,
        "window_bytes": MIB,
    }
    child = _Child(tmp_path / "r.db", cfg)
    try:

        async def body() -> None:
            await (await registered(child.url, bob)).close()
            await fill(child.url, bob, mailbox // (200 * 1024), 200 * 1024)
            baseline = child.rss
            conns = [await _open_not_reading(child.url, bob) for _ in range(20)]
            peak = 0
            for _ in range(40):  # sample while the relay pushes what it will push
                peak = max(peak, child.rss)
                await asyncio.sleep(0.05)
            grown = peak - baseline
            assert grown < 100 * MIB, grown
            assert grown < 20 * mailbox // 4, grown  # far below "a mailbox per connection"
            for ws in conns:
                assert ws.transport is not None
                ws.transport.abort()
            # Gone: the relay drops them (window, outbox) and its memory comes back.
            after = 0
            for _ in range(100):
                await asyncio.sleep(0.05)
                after = child.rss
                if after - baseline < 32 * MIB:
                    break
            assert after - baseline < 32 * MIB, (after - baseline, grown)
            c = await authenticated_nowait(child.url, bob)  # still serving that device
            await c.wait_pushes(1)
            await c.close()

        run(body)
    finally:
        child.stop()


def test_non_draining_connection_is_aborted_after_the_write_timeout(tmp_path: Path) -> None:
    bob = Device.new(305)

    async def body() -> None:
        async with relay(
            tmp_path / "r.db",
            clock=lambda: NOW,
            write_timeout_s=0.5,
            window_bytes=32 * MIB,
            window_envelopes=1000,
            max_mailbox_bytes=32 * MIB,
        ) as server:
            await (await registered(server.url, bob)).close()
            await fill(server.url, bob, 128, 250 * 1024)
            ws = await _open_not_reading(server.url, bob)
            # The relay's writes stall (32 MiB do not fit in the socket buffers) and it aborts.
            await until(lambda: not server._connections, "the stuck connection is dropped")
            assert ws.transport is not None
            ws.transport.abort()
            c = await authenticated(server.url, bob)  # nothing was lost: all 128 again
            await c.wait_pushes(128)
            await c.close()

    run(body)


def test_replaced_connection_is_aborted_at_once_when_it_does_not_read(tmp_path: Path) -> None:
    bob = Device.new(306)

    async def body() -> None:
        async with relay(
            tmp_path / "r.db",
            clock=lambda: NOW,
            write_timeout_s=600.0,  # only replacement can end the first connection here
            ping_interval_s=600.0,
            window_bytes=32 * MIB,
            window_envelopes=1000,
            max_mailbox_bytes=32 * MIB,
        ) as server:
            await (await registered(server.url, bob)).close()
            await fill(server.url, bob, 128, 250 * 1024)
            ws = await _open_not_reading(server.url, bob)
            await until(lambda: len(server._connections) == 1, "the first connection")
            (old,) = server._connections
            await until(lambda: not old.idle_writer(), "the first connection's writer stalls")
            c = await authenticated_nowait(server.url, bob)
            await until(lambda: old not in server._connections, "the replaced one is dropped")
            assert old.aborted
            await c.wait_pushes(128)
            await c.close()
            assert ws.transport is not None
            ws.transport.abort()

    run(body)


def test_replaced_reading_connection_gets_a_close_frame(store_db: str) -> None:
    bob = Device.new(307)

    async def body() -> None:
        async with relay(store_db, clock=lambda: NOW) as server:
            await (await registered(server.url, bob)).close()
            a = await authenticated(server.url, bob)
            b = await authenticated(server.url, bob)
            assert await a.closed() == 4000
            await probe(b)
            await b.close()

    run(body)


# -- unauthenticated connections --------------------------------------------------------------


def test_idle_unauthenticated_connection_is_closed(tmp_path: Path) -> None:
    bob = Device.new(308)

    async def body() -> None:
        async with relay(tmp_path / "r.db", clock=lambda: NOW, idle_timeout_s=2.0) as server:
            idle = await RawClient.open(server.url)
            assert await idle.closed() == 1008
            # One that keeps sending stays (sealed senders are unauthenticated).
            busy = await RawClient.open(server.url)
            for _ in range(6):  # 3 s in all, longer than the idle bound; gaps far below it
                await probe(busy)
                await asyncio.sleep(0.5)
            await probe(busy)
            await busy.close()
            # An authenticated connection has no idle limit (keepalive covers it).
            c = await registered(server.url, bob)
            await asyncio.sleep(2.5)
            await probe(c)
            await c.close()

    run(body)


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_unauthenticated_flood_that_never_reads_is_bounded_and_dropped(tmp_path: Path) -> None:
    """The finding: 250k tiny GetServerTrustRoot requests plus 24 frames of 1 MiB, never
    reading a response. The relay stops reading while its answers cannot be written, holds
    a bounded amount, and the write timeout ends the connection."""
    child = _Child(tmp_path / "r.db", {"write_timeout_s": 1.0, "idle_timeout_s": 30.0})
    try:

        async def body() -> None:
            baseline = child.rss
            ws = await connect(child.url, max_size=rf.MAX_FRAME_SIZE, max_queue=1)
            tiny = rf.encode_client_frame(rf.ClientFrame(1, rf.GetServerTrustRoot()))
            big = b"\x08\x01" + bytes(rf.MAX_FRAME_SIZE - 2)
            frames = [tiny] * 250_000 + [big] * 24
            sent = 0
            dropped = False
            try:
                async with asyncio.timeout(30):
                    for f in frames:
                        await ws.send(f)
                        sent += 1
            except ConnectionClosed:
                dropped = True
            except TimeoutError:
                pass
            grown = child.rss - baseline
            assert grown < 16 * MIB, (grown, sent)  # the finding: 14.5 MiB, held forever
            if not dropped:  # the relay aborts it: the next write fails
                with pytest.raises(ConnectionClosed):
                    async with asyncio.timeout(60):
                        while True:
                            await ws.send(tiny)
            assert sent < len(frames)  # it did stop reading
            c = await RawClient.open(child.url)  # and serves others
            await probe(c)
            await c.close()

        run(body)
    finally:
        child.stop()


# -- global budget ------------------------------------------------------------------------------


def test_connections_over_the_limit_get_503(tmp_path: Path) -> None:
    async def body() -> None:
        async with relay(
            tmp_path / "r.db",
            clock=lambda: NOW,
            max_connections=3,
            max_unauthenticated_connections=3,
        ) as server:
            held = [await RawClient.open(server.url) for _ in range(3)]
            with pytest.raises(InvalidStatus) as info:
                await RawClient.open(server.url)
            assert info.value.response.status_code == 503
            await held.pop().close()
            ws_server = server._server
            assert ws_server is not None
            await until(lambda: _handler_count(ws_server) < 3, "a slot frees up")
            c = await RawClient.open(server.url)
            await probe(c)
            for h in [*held, c]:
                await h.close()

    run(body)


def test_buffered_output_over_the_budget_refuses_new_connections(tmp_path: Path) -> None:
    bob = Device.new(309)

    async def body() -> None:
        async with relay(
            tmp_path / "r.db",
            clock=lambda: NOW,
            max_buffered_bytes=2 * MIB,
            window_bytes=32 * MIB,
            window_envelopes=1000,
            max_mailbox_bytes=32 * MIB,
            write_timeout_s=600.0,
        ) as server:
            await (await registered(server.url, bob)).close()
            await fill(server.url, bob, 64, 250 * 1024)
            ws = await _open_not_reading(server.url, bob)
            await until(lambda: server._total_buffered > 2 * MIB, "output piles up")
            with pytest.raises(InvalidStatus) as info:
                await RawClient.open(server.url)
            assert info.value.response.status_code == 503
            assert ws.transport is not None
            ws.transport.abort()
            await until(lambda: server._total_buffered == 0, "the budget frees up")
            c = await RawClient.open(server.url)
            await probe(c)
            await c.close()

    run(body)


# -- resource errors ------------------------------------------------------------------------------


@pytest.mark.skipif(sys.platform != "linux", reason="needs RLIMIT_NOFILE semantics of Linux")
def test_at_the_fd_limit_the_log_grows_by_a_bounded_amount(tmp_path: Path) -> None:
    """Idle sockets exhaust a low file-descriptor limit: accept() fails every second. The
    log gets a few rate-limited lines (no tracebacks), and honest clients get in again."""
    child = _Child(
        tmp_path / "r.db",
        {"idle_timeout_s": 3.0, "max_connections": 10_000},
        nofile=64,
    )
    try:

        async def body() -> None:
            socks = []
            for _ in range(3):  # three waves over a few seconds
                for _ in range(80):
                    s = socket.socket()
                    s.setblocking(False)
                    try:
                        s.connect_ex(("127.0.0.1", int(child.url.rsplit(":", 1)[1])))
                    except OSError:
                        s.close()
                        continue
                    socks.append(s)
                await asyncio.sleep(1.5)
            for s in socks:
                s.close()
            log = child.err.read_text()
            assert "Traceback" not in log
            assert len(log) < 8 * 1024, log[:2000]
            for _ in range(100):  # the idle ones are gone; an honest client gets in
                try:
                    c = await RawClient.open(child.url)
                except (OSError, InvalidStatus, TimeoutError, AssertionError):
                    await asyncio.sleep(0.2)
                    continue
                await probe(c)
                await c.close()
                break
            else:
                raise AssertionError("no honest client got in")

        run(body)
    finally:
        child.stop()


def test_sdk_client_drains_a_backlog_larger_than_the_window(tmp_path: Path) -> None:
    """The client SDK acknowledges as it processes, so a backlog of many windows arrives
    whole, once, in order, and ``sync()`` (QueueEmpty) returns after it."""
    from securemsg.client import Client

    async def body() -> None:
        async with relay(tmp_path / "r.db", window_envelopes=4, window_bytes=4096) as server:
            alice = await Client.create(tmp_path / "a.db", server.url, server.trust_root_public)
            bob = await Client.create(tmp_path / "b.db", server.url, server.trust_root_public)
            for c in (alice, bob):
                await c.register()
            alice.add_contact(bob.contact_card)
            bob.add_contact(alice.contact_card)
            bob_aci = bob.aci
            await bob.close()
            texts = [f"backlog {i}" for i in range(30)]
            for t in texts:
                await alice.send_text(bob_aci, t)
            bob = await Client.open(tmp_path / "b.db")
            await bob.connect()
            await bob.sync()
            got = []
            for _ in texts:
                m = await bob.receive(timeout=30)
                assert m is not None
                got.append(m.text)
            assert got == texts
            assert await bob.receive(timeout=0.2) is None
            left = await server.call(lambda s: s.store.pending(uuid.UUID(bob_aci).bytes, 1))
            for _ in range(100):  # the last ack may still be on its way (bounded)
                if not left:
                    break
                await asyncio.sleep(0.05)
                left = await server.call(lambda s: s.store.pending(uuid.UUID(bob_aci).bytes, 1))
            assert left == []
            await alice.close()
            await bob.close()

    run(body)


def test_requests_waiting_for_storage_are_bounded_in_bytes(tmp_path: Path) -> None:
    """While the storage thread is busy, a connection pipelining large requests is not read
    beyond ``max_inflight_bytes`` (plus one request): memory does not follow its sending."""
    bob = Device.new(310)

    async def body() -> None:
        async with relay(tmp_path / "r.db", clock=lambda: NOW) as server:
            await (await registered(server.url, bob)).close()
            await until(lambda: not server._connections, "the registration is gone")
            ws = await connect(server.url, max_size=rf.MAX_FRAME_SIZE)
            await ws.recv()  # the challenge
            (conn,) = server._connections
            gate, entered = threading.Event(), threading.Event()

            def hold(_: object) -> bool:
                entered.set()
                return gate.wait(30)

            held = asyncio.ensure_future(server.call(hold))
            await until(entered.is_set, "the storage thread is held")
            big = sealed(bob, bytes(250 * 1024))
            frame = rf.encode_client_frame(rf.ClientFrame(1, big))
            sender = asyncio.create_task(_send_all(ws, [frame] * 40))
            await until(lambda: conn.inflight_bytes > 2 * MIB, "requests pile up")
            for _ in range(20):
                await asyncio.sleep(0.02)
                assert conn.inflight_bytes <= 2 * MIB + len(frame)
            gate.set()
            await held
            await asyncio.wait_for(sender, 60)  # then the rest is read
            await ws.close()

    run(body)


async def _send_all(ws: ClientConnection, frames: list[bytes]) -> None:
    for f in frames:
        await ws.send(f)
