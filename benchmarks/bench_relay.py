"""Benchmark: relay + client SDK throughput over loopback (reported, never asserted).

Run: ``pytest benchmarks/bench_relay.py --benchmark-only``. A smaller configuration of the
load test in tests/integration/test_integration_load.py: ``PAIRS`` pairs of SDK clients on one
in-process relay, each side sending ``MESSAGES`` messages to the other while receiving, sealed
(sealed sender v1 on an unauthenticated connection) or identified. One round is the whole
exchange until every message reached the application; registration is set-up, not measured.
``extra_info["messages_per_s"]`` is the end-to-end throughput (encrypt, relay enqueue with a
SQLite commit, push, decrypt, client commit, ack). Databases go to ``/dev/shm`` when present
(no fsync cost: this measures the software, not the disk).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from securemsg.client import Client
from securemsg.relay.server import RelayServer

Benchmark = Any
PAIRS = 5
MESSAGES = 40


class _Exchange:
    """A relay and registered client pairs on one event loop, reusable across rounds."""

    def __init__(self, sealed: bool) -> None:
        self.sealed = sealed
        base = "/dev/shm" if os.path.isdir("/dev/shm") else None
        self._tmp = tempfile.TemporaryDirectory(prefix="securemsg-bench-", dir=base)
        self.dir = Path(self._tmp.name)
        self.loop = asyncio.new_event_loop()
        self.relay = RelayServer(self.dir / "relay.db")
        self.pairs: list[tuple[Client, Client]] = []
        self.loop.run_until_complete(self._setup())
        self.round = 0

    async def _setup(self) -> None:
        await self.relay.start()
        clients = []
        for i in range(2 * PAIRS):
            c = await Client.create(
                self.dir / f"c{i}.db", self.relay.url, self.relay.trust_root_public, prekey_batch=2
            )
            await c.register()
            clients.append(c)
        self.pairs = [(clients[2 * p], clients[2 * p + 1]) for p in range(PAIRS)]
        for a, b in self.pairs:
            a.add_contact(b.contact_card)
            b.add_contact(a.contact_card)

    async def _exchange(self) -> None:
        self.round += 1
        tag = self.round

        async def send(src: Client, dst: Client) -> None:
            for n in range(MESSAGES):
                await src.send_text(dst.aci, f"r{tag} #{n}", sealed=self.sealed)

        async def receive(dst: Client) -> None:
            for _ in range(MESSAGES):
                if await dst.receive(timeout=60) is None:
                    raise RuntimeError("a message did not arrive")

        jobs = []
        for a, b in self.pairs:
            jobs += [send(a, b), send(b, a), receive(a), receive(b)]
        async with asyncio.timeout(300):
            await asyncio.gather(*jobs)

    def exchange(self) -> None:
        self.loop.run_until_complete(self._exchange())

    def close(self) -> None:
        async def stop() -> None:
            for a, b in self.pairs:
                await a.close()
                await b.close()
            await self.relay.stop()

        self.loop.run_until_complete(stop())
        self.loop.close()
        self._tmp.cleanup()


@pytest.mark.parametrize("sealed", [True, False], ids=["sealed", "identified"])
def test_relay_round_trip_throughput(benchmark: Benchmark, sealed: bool) -> None:
    ex = _Exchange(sealed)
    try:
        start = time.perf_counter()
        benchmark.pedantic(ex.exchange, rounds=3, warmup_rounds=0)
        total = 2 * PAIRS * MESSAGES
        mean = benchmark.stats.stats.mean if benchmark.stats else (time.perf_counter() - start)
        benchmark.extra_info["clients"] = 2 * PAIRS
        benchmark.extra_info["messages_per_round"] = total
        benchmark.extra_info["messages_per_s"] = round(total / mean, 1)
    finally:
        ex.close()
