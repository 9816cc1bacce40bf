"""Benchmark: relay throughput over loopback (reported, never asserted).

Two measurements:

* ``test_relay_round_trip_throughput`` (pytest-benchmark): ``PAIRS`` pairs of SDK clients
  on one in-process relay, each side sending ``MESSAGES`` messages to the other while
  receiving, sealed (sealed sender v1 on an unauthenticated connection) or identified. One
  round is the whole exchange until every message reached the application; registration is
  set-up. ``extra_info["messages_per_s"]`` is the end-to-end throughput (encrypt, relay
  enqueue, push, decrypt, client commit, ack). Databases go to ``/dev/shm`` when present
  (no fsync cost: this measures the software, not the disk).
* ``sealed_on_disk`` / ``test_relay_sealed_on_disk`` / ``python benchmarks/bench_relay.py``:
  the relay alone, as deployed: a relay process (``securemsg relay serve`` defaults,
  ``synchronous=FULL``) with its database ON DISK (``/var/tmp`` unless ``--dir``), driven
  over WebSockets by ``SENDERS`` concurrent sealed senders (each awaits its OK before the
  next send, as a client does) and ``RECEIVERS`` authenticated receivers acknowledging
  what they get. msgs/s = messages sent and received-and-acked / wall-clock time from the
  first send to the last message received; also the relay process's CPU time per message
  (user + system, from /proc), which moves less with the machine's load. The relay process
  can run another checkout's code (``--src /path/to/src``), so two commits are compared in
  one session, interleaved::

      python benchmarks/bench_relay.py --runs 3 --src /tmp/relay-before/src --label before
      python benchmarks/bench_relay.py --runs 3 --label after

* ``--stores``: the same measurement on SQLite, on PostgreSQL with one relay instance and on
  PostgreSQL with two instances (senders and receivers split over them, so most envelopes
  cross instances through LISTEN/NOTIFY), interleaved run by run in one session. PostgreSQL is
  a throwaway server (tests/pg_cluster.py) with its data directory on the same disk
  (``/var/tmp``), ``fsync=on`` and ``synchronous_commit=on``: a send is answered after its
  commit is flushed, as with SQLite's ``synchronous=FULL``. The CPU column counts the relay
  processes only (not the PostgreSQL server)::

      python benchmarks/bench_relay.py --stores --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
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


# -- the relay alone, database on disk ------------------------------------------------------

SENDERS = 32
RECEIVERS = 8
PER_SENDER = 50
BODY = 400

_RELAY_CHILD = """
import asyncio, sys
from securemsg.relay.server import RelayServer

async def main():
    relay = RelayServer(sys.argv[1])
    await relay.start()
    print(relay.url, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await relay.stop()

asyncio.run(main())
"""


def _harness() -> Any:
    here = Path(__file__).resolve().parents[1] / "tests" / "unit" / "relay"
    if str(here) not in sys.path:
        sys.path.insert(0, str(here))
    import relay_harness  # the tests' raw-frame client and device keys

    return relay_harness


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc; 0.0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _drive(
    urls: list[str], senders: int, receivers: int, per_sender: int, pids: list[int]
) -> tuple[float, float]:
    from websockets.asyncio.client import connect

    from securemsg.relay_protocol import frames as rf

    h = _harness()
    devices = [h.Device.new(9000 + i) for i in range(receivers)]
    for d in devices:
        await (await h.registered(urls[0], d)).close()
    total = senders * per_sender
    expected = [0] * receivers
    for s in range(senders):
        expected[s % receivers] += per_sender
    done = asyncio.Event()
    received = [0]

    async def receive(i: int, d: Any) -> None:
        ws = await connect(urls[i % len(urls)], max_size=rf.MAX_FRAME_SIZE, compression=None)
        first = rf.decode_server_frame(await ws.recv())
        await ws.send(rf.encode_client_frame(rf.ClientFrame(1, d.authenticate(first.nonce))))
        got, rid = 0, 2
        async for data in ws:
            frame = rf.decode_server_frame(data)
            if isinstance(frame, rf.Envelope):
                await ws.send(rf.encode_client_frame(rf.ClientFrame(rid, rf.Ack((frame.id,)))))
                rid += 1
                got += 1
                received[0] += 1
                if received[0] == total:
                    done.set()
                if got == expected[i]:
                    break
        await ws.close()

    async def send(s: int, start: asyncio.Event) -> None:
        d = devices[s % receivers]
        # receiver i listens on instance i % n; sender s sends through instance (s + 1) % n
        ws = await connect(urls[(s + 1) % len(urls)], max_size=rf.MAX_FRAME_SIZE, compression=None)
        await ws.recv()  # the challenge
        await start.wait()
        for n in range(per_sender):
            body = s.to_bytes(2, "big") + n.to_bytes(4, "big") + bytes(BODY - 6)
            msg = rf.OutgoingMessage(d.device_id, d.registration_id, 0, body)
            req = rf.SendSealed(d.aci, d.access_key, 1_750_000_000_000, (msg,))
            await ws.send(rf.encode_client_frame(rf.ClientFrame(n + 1, req)))
            r = rf.decode_server_frame(await ws.recv())
            if not isinstance(r, rf.Response) or r.code != rf.StatusCode.OK:
                raise RuntimeError(f"send refused: {r}")
        await ws.close()

    start = asyncio.Event()
    readers = [asyncio.create_task(receive(i, d)) for i, d in enumerate(devices)]
    writers = [asyncio.create_task(send(s, start)) for s in range(senders)]
    await asyncio.sleep(0.5)  # every connection open and authenticated
    t0 = time.perf_counter()
    cpu0 = sum(_cpu_seconds(pid) for pid in pids)
    start.set()
    async with asyncio.timeout(600):
        await asyncio.gather(*writers)
        await done.wait()
        elapsed = time.perf_counter() - t0
        cpu = sum(_cpu_seconds(pid) for pid in pids) - cpu0
        await asyncio.gather(*readers)
    return total / elapsed, cpu * 1e6 / total


def _base(directory: str | None) -> str | None:
    return directory or ("/var/tmp" if os.path.isdir("/var/tmp") else None)


def sealed_on_disk(
    directory: str | None = None,
    src: str | None = None,
    senders: int = SENDERS,
    receivers: int = RECEIVERS,
    per_sender: int = PER_SENDER,
    *,
    db: str | None = None,
    instances: int = 1,
) -> tuple[float, float]:
    """One run: fresh on-disk relay process(es); (sealed msgs/s end to end, relay CPU
    microseconds per message). ``db``: a PostgreSQL URL (an empty database) for
    ``instances`` relay processes on it; default a new SQLite file (one process)."""
    with tempfile.TemporaryDirectory(prefix="securemsg-relay-bench-", dir=_base(directory)) as tmp:
        env = dict(os.environ)
        if src is not None:
            env["PYTHONPATH"] = src
        target = db or str(Path(tmp) / "relay.db")
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _RELAY_CHILD, target],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=env,
            )
            for _ in range(instances if db else 1)
        ]
        try:
            urls = []
            for proc in procs:
                assert proc.stdout is not None
                url = proc.stdout.readline().decode().strip()
                if not url.startswith("ws"):
                    raise RuntimeError("the relay did not start")
                urls.append(url)
            pids = [p.pid for p in procs]
            return asyncio.run(_drive(urls, senders, receivers, per_sender, pids))
        finally:
            for proc in procs:
                if proc.stdin is not None:
                    proc.stdin.close()
            for proc in procs:
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _pg_cluster(directory: str | None) -> Any:
    """A throwaway PostgreSQL server with its data on disk (tests/pg_cluster.py)."""
    here = Path(__file__).resolve().parents[1] / "tests"
    if str(here) not in sys.path:
        sys.path.insert(0, str(here))
    import pg_cluster

    bindir = pg_cluster.find_bindir()
    if bindir is None:
        raise RuntimeError(pg_cluster.INSTALL_HINT)
    cluster = pg_cluster.PgCluster(bindir, base=_base(directory))
    cluster.start()
    return cluster


def _pg_counters(url: str) -> tuple[int, int, int, int]:
    """(WAL position in bytes, commits, rows inserted, rows deleted) of the database."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint, xact_commit,"
            " tup_inserted, tup_deleted FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


#: Per message, for the PostgreSQL runs of :func:`compare_stores`: WAL bytes, commits, rows
#: inserted, rows deleted (server-wide WAL; the counters of the run's database).
PG_WRITES: dict[str, list[tuple[float, float, float, float]]] = {}


def compare_stores(
    runs: int, directory: str | None = None, **kw: Any
) -> dict[str, list[tuple[float, float]]]:
    """SQLite, PostgreSQL with 1 instance and with 2, interleaved run by run (same load)."""
    out: dict[str, list[tuple[float, float]]] = {"sqlite": [], "postgres x1": [], "postgres x2": []}
    total = kw.get("senders", SENDERS) * kw.get("per_sender", PER_SENDER)
    cluster = _pg_cluster(directory)
    try:
        for _ in range(runs):
            out["sqlite"].append(sealed_on_disk(directory, **kw))
            for n in (1, 2):
                url = cluster.create_database()
                try:
                    before = _pg_counters(url)
                    out[f"postgres x{n}"].append(
                        sealed_on_disk(directory, db=url, instances=n, **kw)
                    )
                    after = _pg_counters(url)
                    per = tuple((a - b) / total for a, b in zip(after, before, strict=True))
                    PG_WRITES.setdefault(f"postgres x{n}", []).append(per)  # type: ignore[arg-type]
                finally:
                    cluster.drop_database(url)
    finally:
        cluster.stop()
    return out


def test_relay_sealed_on_disk(benchmark: Benchmark) -> None:
    runs: list[tuple[float, float]] = []

    def once() -> None:
        runs.append(sealed_on_disk())

    benchmark.pedantic(once, rounds=1, warmup_rounds=0)
    benchmark.extra_info["messages"] = SENDERS * PER_SENDER
    benchmark.extra_info["messages_per_s"] = round(statistics.median(r for r, _ in runs), 1)
    benchmark.extra_info["relay_cpu_us_per_msg"] = round(statistics.median(c for _, c in runs))


@pytest.mark.parametrize("instances", [1, 2])
def test_relay_sealed_on_disk_postgres(benchmark: Benchmark, instances: int) -> None:
    cluster = _pg_cluster(None)
    runs: list[tuple[float, float]] = []

    def once() -> None:
        url = cluster.create_database()
        try:
            runs.append(sealed_on_disk(db=url, instances=instances))
        finally:
            cluster.drop_database(url)

    try:
        benchmark.pedantic(once, rounds=1, warmup_rounds=0)
    finally:
        cluster.stop()
    benchmark.extra_info["instances"] = instances
    benchmark.extra_info["messages_per_s"] = round(statistics.median(r for r, _ in runs), 1)
    benchmark.extra_info["relay_cpu_us_per_msg"] = round(statistics.median(c for _, c in runs))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Sealed relay throughput, database on disk.")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where the database goes (default /var/tmp)")
    ap.add_argument("--src", default=None, help="run the relay from this src/ (another tree)")
    ap.add_argument("--label", default="")
    ap.add_argument("--senders", type=int, default=SENDERS)
    ap.add_argument("--receivers", type=int, default=RECEIVERS)
    ap.add_argument("--per-sender", type=int, default=PER_SENDER)
    ap.add_argument(
        "--stores", action="store_true", help="SQLite vs PostgreSQL x1 vs x2, interleaved"
    )
    args = ap.parse_args(argv)
    if args.stores:
        kw = {"senders": args.senders, "receivers": args.receivers, "per_sender": args.per_sender}
        results = compare_stores(args.runs, args.dir, **kw)
        print("| store | msgs/s (median) | runs | relay CPU us/msg (median) |")
        print("|---|---|---|---|")
        for name, got in results.items():
            rates = ", ".join(f"{r:.0f}" for r, _ in got)
            print(
                f"| {name} | {statistics.median(r for r, _ in got):.0f} | {rates} |"
                f" {statistics.median(c for _, c in got):.0f} |"
            )
        print()
        print("| store | WAL bytes/msg | commits/msg | rows inserted/msg | rows deleted/msg |")
        print("|---|---|---|---|---|")
        for name, per in PG_WRITES.items():
            cols = [statistics.median(p[k] for p in per) for k in range(4)]
            print(f"| {name} | {cols[0]:.0f} | {cols[1]:.2f} | {cols[2]:.2f} | {cols[3]:.2f} |")
        return
    rates, cpus = [], []
    for _ in range(args.runs):
        rate, cpu = sealed_on_disk(
            args.dir, args.src, args.senders, args.receivers, args.per_sender
        )
        rates.append(rate)
        cpus.append(cpu)
        print(f"{args.label} run: {rate:.0f} msgs/s, relay CPU {cpu:.0f} us/msg", flush=True)
    print(
        f"{args.label} median: {statistics.median(rates):.0f} msgs/s,"
        f" relay CPU {statistics.median(cpus):.0f} us/msg over {len(rates)} runs"
    )


if __name__ == "__main__":
    main()
