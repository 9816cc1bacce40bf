"""The storage thread serves connections in turn and bounds what one batch holds.

One FIFO storage queue let a connection that pipelines expensive requests (Acks with many
ids, sealed sends to many recipients) delay every other client by its whole burst. The
queue is now kept per connection and the thread takes one job from each connection in turn
(round-robin), so another connection waits for at most one job of each busy connection.
A batch is also cut once its results (bodies to push) pass ``max_batch_result_bytes``, and
no new batch starts while that much waits to be applied on the event loop, so pipelined
requests with big results cannot make the thread hold hundreds of MiB at once.

The order is tested directly on the scheduler, never through latency.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from relay_harness import run

from securemsg.relay.server import _StorageThread
from securemsg.relay.service import Outcome
from securemsg.relay.store import QueuedMessage
from securemsg.relay_protocol import frames as rf

MIB = 1024 * 1024


class _Key:
    """Stands for a connection (jobs are queued per key)."""

    def __init__(self, name: str) -> None:
        self.name = name


def _noop(ok: bool, value: object) -> None:
    pass


def _label(name: str) -> object:
    return lambda: name


def test_jobs_are_taken_one_per_connection_in_turn() -> None:
    loop = asyncio.new_event_loop()
    try:
        storage = _StorageThread(object(), loop, max_batch=256)  # type: ignore[arg-type]
        a, b, c = _Key("a"), _Key("b"), _Key("c")
        for i in range(5):
            storage.submit(_label(f"a{i}"), _noop, key=a)  # a burst from one connection
        storage.submit(_label("b0"), _noop, key=b)
        storage.submit(_label("relay0"), _noop)  # relay-wide work has its own turn
        storage.submit(_label("b1"), _noop, key=b)
        storage.submit(_label("c0"), _noop, key=c)
        order = []
        for _ in range(20):  # bounded
            job = storage.take()
            if job is None:
                break
            order.append(job.fn())
        assert order == ["a0", "b0", "relay0", "c0", "a1", "b1", "a2", "a3", "a4"]
    finally:
        loop.close()


def test_a_burst_from_one_connection_waits_behind_one_job_of_the_others() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        storage = _StorageThread(object(), loop, max_batch=4)  # type: ignore[arg-type]
        release = threading.Event()
        ran: list[str] = []
        finished = asyncio.Event()
        busy, other = _Key("busy"), _Key("other")

        def blocker() -> str:
            release.wait(30)
            ran.append("block")
            return "block"

        def step(name: str) -> object:
            def fn() -> str:
                ran.append(name)
                return name

            return fn

        def last(ok: bool, value: object) -> None:
            finished.set()

        storage.submit(blocker, _noop, key=busy)
        storage.start()
        for i in range(50):
            storage.submit(step(f"busy{i}"), _noop, key=busy)
        storage.submit(step("other"), last, key=other)
        release.set()
        await asyncio.wait_for(finished.wait(), 30)
        await storage.stop()
        assert ran.index("other") <= 2, ran[:5]  # not behind the burst of 50
        assert [r for r in ran if r.startswith("busy")] == [f"busy{i}" for i in range(50)]

    run(body)


class _CountingStore:
    """A store whose batch() numbers the transactions."""

    def __init__(self) -> None:
        self.batch_no = 0

    @contextmanager
    def batch(self) -> Iterator[None]:
        self.batch_no += 1
        yield


def _outcome(body_bytes: int) -> Outcome:
    m = QueuedMessage(
        id=bytes(16),
        aci=bytes(16),
        device_id=1,
        type=6,
        source_aci=None,
        source_device_id=0,
        client_timestamp=1,
        received_at=1,
        body=bytes(body_bytes),
    )
    return Outcome(rf.Response(1, rf.StatusCode.OK), queued=(m,))


def test_a_batch_is_cut_when_its_results_pass_the_byte_bound() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        store = _CountingStore()
        storage = _StorageThread(
            store,  # type: ignore[arg-type]
            loop,
            max_batch=256,
            max_result_bytes=int(2.5 * MIB),
        )
        seen: list[tuple[int, int]] = []  # (batch, results applied on the loop so far)
        applied = 0
        finished = asyncio.Event()
        key = _Key("pipelined")

        def job() -> Outcome:
            seen.append((store.batch_no, applied))
            return _outcome(MIB)

        def done(ok: bool, value: object) -> None:
            nonlocal applied
            assert ok
            applied += 1
            if applied == 7:
                finished.set()

        for _ in range(7):  # queued before the thread starts: one batch could take all
            storage.submit(job, done, key=key)
        storage.start()
        await asyncio.wait_for(finished.wait(), 30)
        await storage.stop()
        batches = [b for b, _ in seen]
        assert batches == [1, 1, 1, 2, 2, 2, 3]  # cut at the first result past 2.5 MiB
        # A new batch starts only once the previous one's results were applied.
        assert [a for _, a in seen] == [0, 0, 0, 3, 3, 3, 6]

    run(body)


def test_a_batch_takes_a_bounded_number_of_jobs_from_one_connection() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        store = _CountingStore()
        storage = _StorageThread(store, loop, max_batch=256)  # type: ignore[arg-type]
        seen: list[tuple[str, int]] = []
        finished = asyncio.Event()
        burst, other = _Key("burst"), _Key("other")

        def step(name: str) -> object:
            def fn() -> str:
                seen.append((name, store.batch_no))
                return name

            return fn

        def done(ok: bool, value: object) -> None:
            if len(seen) == 21:
                finished.set()

        for i in range(20):
            storage.submit(step(f"a{i}"), done, key=burst)
        storage.submit(step("b"), done, key=other)
        storage.start()
        await asyncio.wait_for(finished.wait(), 30)
        await storage.stop()
        assert ("b", 1) in seen  # in the first batch, not after the burst
        per_batch = collections.Counter(b for n, b in seen if n != "b")
        assert max(per_batch.values()) == 8, per_batch
        assert [n for n, _ in seen if n != "b"] == [f"a{i}" for i in range(20)]

    run(body)
