"""The reference relay: a WebSocket server over :class:`~securemsg.relay.service.RelayService`.

Theory of operation
-------------------
:class:`RelayServer` listens with ``websockets.asyncio.server.serve``; each connection is one
device. On connect it sends a :class:`~securemsg.relay_protocol.frames.Challenge`, then reads
frames, asks the service for an :class:`~securemsg.relay.service.Outcome` and writes the
responses in request order. Everything a connection sends goes through one outbound queue
drained by a writer task, so responses and pushes never interleave within a frame.

Storage off the event loop, with group commit: the synchronous :class:`RelayService` (and
so the SQLite store) runs on ONE dedicated storage thread (:class:`_StorageThread`). The
event loop submits every request, backlog page read and expiry sweep to it; the thread takes
everything queued (up to ``max_batch``), runs it inside one :meth:`SqliteRelayStore.batch`
(one ``BEGIN IMMEDIATE``, a ``SAVEPOINT`` per operation, one ``COMMIT`` and so one fsync)
and hands the results back to the loop in one callback, in order. Each connection's jobs
wait in their own FIFO queue and the thread takes one job per connection in turn
(round-robin), so one connection's burst cannot starve the others. A batch takes at most 8
jobs of one connection and is cut once its results hold ``max_batch_result_bytes`` or it
has run for 0.2 s; no batch starts while ``max_batch_result_bytes`` of results wait for the
loop. So a send is answered OK, its envelopes are pushed and an ack takes effect only after
their commit is durable; if the commit fails, every request of the batch is answered
``INTERNAL`` and its connection closed
(fail closed). A store without ``batch()`` runs the requests one by one.

Delivery and flow control: a connection that authenticates becomes its device's live
connection (replacing an older one, which is closed at once) and starts *draining*: a pager
reads the device's queue from the store page by page in ``seq`` order and pushes envelopes
while the connection's window has room (``window_envelopes`` unacknowledged envelopes and
``window_bytes`` of bodies); acks free room and the pager reads on. When a page comes back
empty the backlog is drained and :class:`~securemsg.relay_protocol.frames.QueueEmpty` is sent.
A send's envelopes are pushed at once to a live connection that is drained and has room;
otherwise the connection (re)starts draining and the pager reads them from the store. All
results are applied on the loop in commit order, and a connection's window holds the ids it
was pushed and has not acknowledged, so no envelope is missed or pushed twice on one
connection; an envelope pushed but not acknowledged is pushed again on the next connection
(at-least-once). ``seq`` values can be reused after the newest row is deleted, so a page
read that might have been passed by a live envelope is followed by one rescan from the
start of the queue (skipping the window) before QueueEmpty.

Memory bounds: a connection holds at most its window of pushes, ``max_outbox_bytes``
(``max_unauthenticated_outbox_bytes`` before it authenticates) of responses before the relay
stops reading it, ``max_inflight_requests`` requests (``max_inflight_bytes``) in the storage
queue and ``max_incoming_frames`` frames in the library's receive buffer. A write that makes no
progress for ``write_timeout_s`` aborts the transport; a replaced connection is aborted at
once unless its close frame can be written right away; keepalive pings run in the library
(``ping_interval_s`` / ``ping_timeout_s``) and cannot outlive the write timeout. Every
connection's transport write buffer (which the library fills with pongs past the outbox) is
watched: above ``max_transport_buffer_bytes`` plus one frame, or not shrinking for
``write_timeout_s``, the connection is aborted. An unauthenticated connection that sends
nothing for ``idle_timeout_s``, has been open ``max_unauthenticated_lifetime_s`` or has sent
``max_unauthenticated_requests`` requests is closed. Over ``max_connections`` (capped below
the file-descriptor limit), ``max_unauthenticated_connections`` unauthenticated ones, or
``max_buffered_bytes`` of queued requests and output in total (outboxes and transport
buffers), new connections get HTTP 503; over the byte budget only the connections that hold
output stop being read. Requests carrying a browser
``Origin`` not in ``allowed_origins`` get HTTP 403.

Privacy: the server never reads the peer address; the ``websockets`` library logs through a
logger capped at WARNING whose records are scrubbed of anything that looks like an IP
address, and resource errors (e.g. ``accept()`` failing at the file-descriptor limit) are
logged at a bounded rate, without tracebacks. An expiry sweep runs every
``sweep_interval_s`` and at start.

Hostile input: frames over :data:`~securemsg.relay_protocol.frames.MAX_FRAME_SIZE` are refused
by the library (close 1009); text frames close the connection (1003); undecodable frames get
``BAD_REQUEST`` and close (1002); everything else gets a status. No request can crash the
relay.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ipaddress
import logging
import os
import re
import resource
import ssl as ssl_module
import threading
import time
from collections.abc import Callable, Container, Sequence, Sized
from http import HTTPStatus
from types import TracebackType
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Origin

from securemsg.crypto.curve25519 import PublicKey
from securemsg.crypto.rng import Rng, SystemRng
from securemsg.errors import DecodeError, StorageError, UsageError
from securemsg.relay.cluster import PgCluster
from securemsg.relay.kt import KtPublisherThread
from securemsg.relay.pgstore import PgRelayStore, is_postgres_url
from securemsg.relay.service import (
    Outcome,
    RelayConfig,
    RelayService,
    Session,
    envelope_of,
)
from securemsg.relay.store import QueuedMessage, RelayStore, SqliteRelayStore
from securemsg.relay_protocol import frames as rf

__all__ = ["RelayServer", "configure_private_logging"]

_LOG = logging.getLogger("securemsg.relay")
_WS_LOGGER_NAME = "securemsg.relay.websockets"
#: Resource and event-loop errors (accept() at the fd limit, failed commits): rate-limited.
_RES_LOG = logging.getLogger("securemsg.relay.resources")
_IP_PATTERN = re.compile(
    r"(\b\d{1,3}(?:\.\d{1,3}){3}\b)|(\[?[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}\]?)"
)
_CLOSE_REPLACED = 4000
_CLOSE_AUTH_FAILED = 4001
#: The connection's device was removed from its account (after a DeviceRemoved push).
_CLOSE_REMOVED = 4003
_CLOSE_STORAGE = 1011
#: File descriptors kept for the database, its journal and the listening sockets.
_FD_RESERVE = 32
#: The library's write buffer high-water mark (bytes); ``send`` waits above it.
_WRITE_LIMIT = 32 * 1024
#: On PostgreSQL, how often every live connection's queue is re-read anyway (a safety net
#: for lost notifications; delivery itself is pushed by LISTEN/NOTIFY).
_SAFETY_RESCAN_S = 30.0
#: A storage batch takes at most this many jobs of one connection, and no new job after
#: running this long (seconds): the answers in it are not held back behind a burst of
#: costly jobs of one connection.
_BATCH_PER_KEY = 8
_BATCH_TIME_S = 0.2


class _ScrubAddresses(logging.Filter):
    """Replaces anything shaped like an IPv4/IPv6 address in a log record with ``<addr>``."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            text = record.getMessage()
        except Exception:
            text = str(record.msg)
        record.msg = _IP_PATTERN.sub("<addr>", text)
        record.args = None
        record.exc_info = None
        record.exc_text = None
        return True


class _RateLimit(logging.Filter):
    """At most ``burst`` records of one kind (logger, level, text) per ``period_s``; the
    next one let through says how many were dropped. Bounds the log when a resource error
    repeats (an ``accept()`` at the file-descriptor limit fails every second, forever)."""

    def __init__(self, burst: int = 5, period_s: float = 60.0) -> None:
        super().__init__()
        self._burst = burst
        self._period = period_s
        self._seen: dict[tuple[str, int, str], tuple[float, int, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, str(record.msg)[:200])
        now = time.monotonic()
        with self._lock:
            start, passed, dropped = self._seen.get(key, (now, 0, 0))
            if now - start >= self._period:
                start, passed = now, 0
            if passed >= self._burst:
                self._seen[key] = (start, passed, dropped + 1)
                return False
            if len(self._seen) > 1024:  # bound the filter's own memory
                self._seen.clear()
            self._seen[key] = (start, passed + 1, 0)
        if dropped:
            record.msg = str(record.msg) + f" ({dropped} similar messages suppressed)"
        return True


def configure_private_logging() -> logging.Logger:
    """The logger handed to ``websockets``: WARNING and above only, addresses scrubbed,
    rate-limited.

    Also adds the scrubbing filter to ``securemsg.relay``, and both filters to
    ``securemsg.relay.resources`` (resource and event-loop errors). Idempotent.
    """
    ws_logger = logging.getLogger(_WS_LOGGER_NAME)
    ws_logger.setLevel(logging.WARNING)
    for lg in (ws_logger, _LOG, _RES_LOG):
        if not any(isinstance(f, _ScrubAddresses) for f in lg.filters):
            lg.addFilter(_ScrubAddresses())
    for lg in (ws_logger, _RES_LOG):
        if not any(isinstance(f, _RateLimit) for f in lg.filters):
            lg.addFilter(_RateLimit())
    return ws_logger


def _loop_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The relay's event-loop exception handler: one line, no traceback, rate-limited
    (through the ``securemsg.relay.resources`` logger's filters)."""
    exc = context.get("exception")
    what = str(context.get("message", "event loop error"))
    if isinstance(exc, BaseException):
        what += ": " + type(exc).__name__
        if isinstance(exc, OSError) and exc.errno is not None:
            what += " (" + os.strerror(exc.errno) + ")"
    _RES_LOG.error("%s", what)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _fd_capacity() -> int | None:
    """How many connections the file-descriptor limit leaves room for (None: unlimited)."""
    try:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    except (OSError, ValueError):  # pragma: no cover - every POSIX system has it
        return None
    if soft == resource.RLIM_INFINITY:
        return None
    return max(1, soft - _FD_RESERVE)


# ------------------------------------------------------------------------------------------
# The storage thread


class _Job:
    """One unit of work for the storage thread and the loop callback for its result.

    ``key`` is the queue the job waits in (its connection, or None for relay-wide work):
    jobs of one key run in submission order, keys take turns. ``conn`` (if any) is marked
    refused when the job's batch fails.
    """

    __slots__ = ("conn", "done", "fn", "key")

    def __init__(
        self,
        fn: Callable[[], object],
        done: Callable[[bool, object], None],
        conn: _Connection | None,
        key: object,
    ) -> None:
        self.fn = fn
        self.done = done
        self.conn = conn
        self.key = key


def _result_size(value: object) -> int:
    """Bytes of bodies a storage result holds (an Outcome's queued envelopes or a page)."""
    if isinstance(value, Outcome):  # copies of a multi-recipient send share one part
        shared = {id(m.shared): len(m.shared) for m in value.queued if m.shared}
        return 64 + sum(len(m.body) for m in value.queued) + sum(shared.values())
    if isinstance(value, list):
        total = 0
        for item in value:
            m = item[1] if isinstance(item, tuple) and len(item) == 2 else item
            if isinstance(m, QueuedMessage):
                total += len(m.body)
        return 64 + total
    return 64


class _StorageThread:
    """Runs every store call on one thread, committing what is queued together.

    ``submit`` is called on the event loop; results come back through
    ``loop.call_soon_threadsafe``, one callback per batch, applied in execution order.

    Fairness: each connection has its own FIFO queue and the thread takes one job from
    each non-empty queue in turn (round-robin), so a connection that pipelines many
    expensive requests delays every other connection by at most one of its requests per
    turn. Memory: a batch is cut once its results pass ``max_result_bytes``, and no new
    batch starts while that many result bytes wait to be applied on the loop.
    """

    def __init__(
        self,
        store: RelayStore,
        loop: asyncio.AbstractEventLoop,
        max_batch: int,
        max_result_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        self._store = store
        self._loop = loop
        self._max_batch = max(1, max_batch)
        self._max_result_bytes = max(1, max_result_bytes)
        self._cond = threading.Condition()
        self._queues: dict[object, collections.deque[_Job]] = {}  # insertion order = turn
        self._stopping = False
        self._undelivered = 0  # result bytes handed to the loop and not yet applied
        self._thread = threading.Thread(
            target=self._run, name="securemsg-relay-storage", daemon=True
        )
        self.batches = 0

    def start(self) -> None:
        self._thread.start()

    def submit(
        self,
        fn: Callable[[], object],
        done: Callable[[bool, object], None],
        conn: _Connection | None = None,
        key: object = None,
    ) -> None:
        job = _Job(fn, done, conn, conn if key is None else key)
        with self._cond:
            q = self._queues.get(job.key)
            if q is None:
                q = self._queues[job.key] = collections.deque()
            q.append(job)
            self._cond.notify()

    async def stop(self) -> None:
        """Finish what is queued, then end the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join)

    def take(self, skip: Container[object] = ()) -> _Job | None:
        """The next job in turn, without waiting, of a key not in ``skip`` (None: none)."""
        with self._cond:
            for key in self._queues:
                if key in skip:
                    continue
                q = self._queues.pop(key)
                job = q.popleft()
                if q:  # its next job waits for the other keys' turn
                    self._queues[key] = q
                return job
            return None

    def queued(self) -> int:
        """How many jobs wait (not yet taken)."""
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    def _delivered(self, size: int) -> None:  # on the loop
        with self._cond:
            self._undelivered -= size
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queues and not self._stopping:
                    self._cond.wait()
                while self._undelivered >= self._max_result_bytes and not self._stopping:
                    self._cond.wait(1.0)
                if not self._queues:  # stopping, and everything queued is done
                    return
            jobs, results, size = self._run_batch()
            self.batches += 1
            with self._cond:
                self._undelivered += size
            try:
                self._loop.call_soon_threadsafe(_deliver_results, self, jobs, results, size)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                return

    def _run_batch(self) -> tuple[list[_Job], list[tuple[bool, object]], int]:
        """Take jobs in turn and run them in one transaction until ``max_batch`` jobs ran,
        the queues are empty (or hold only keys with ``_BATCH_PER_KEY`` jobs in it), the
        results hold ``max_result_bytes`` or the batch has run for ``_BATCH_TIME_S``."""
        jobs: list[_Job] = []
        results: list[tuple[bool, object]] = []
        size = 0

        def fill() -> None:
            nonlocal size
            until = time.monotonic() + _BATCH_TIME_S
            per_key: dict[object, int] = {}
            full: set[object] = set()  # keys with _BATCH_PER_KEY jobs in this batch
            while len(jobs) < self._max_batch and size < self._max_result_bytes:
                if jobs and time.monotonic() >= until:
                    return
                job = self.take(full)
                if job is None:
                    return
                n = per_key[job.key] = per_key.get(job.key, 0) + 1
                if n >= _BATCH_PER_KEY:
                    full.add(job.key)
                jobs.append(job)
                result = _call(job.fn)
                results.append(result)
                size += _result_size(result[1])

        batch = getattr(self._store, "batch", None)
        if batch is None:
            fill()
            return jobs, results, size
        try:
            with batch():
                fill()
        except Exception as exc:
            _RES_LOG.error("relay storage batch failed: %s", type(exc).__name__)
            failed = StorageError("the batch was not committed")
            for j in jobs:  # nothing of this batch happened: its connections are closed
                if j.conn is not None:
                    j.conn.refused = True
            return jobs, [(False, failed)] * len(jobs), 0
        return jobs, results, size


def _call(fn: Callable[[], object]) -> tuple[bool, object]:
    try:
        return True, fn()
    except Exception as exc:
        return False, exc


def _deliver_results(
    storage: _StorageThread,
    jobs: list[_Job],
    results: list[tuple[bool, object]],
    size: int,
) -> None:
    try:
        for job, (ok, value) in zip(jobs, results, strict=True):
            try:
                job.done(ok, value)
            except Exception as exc:  # pragma: no cover - a bug must not stop the others
                _LOG.error("relay bug while applying a result: %s", type(exc).__name__)
    finally:
        storage._delivered(size)


# ------------------------------------------------------------------------------------------
# Connections


class _GuardedConnection(ServerConnection):
    """A ``ServerConnection`` that aborts its transport when, after handling received
    data, more than ``buffer_cap`` bytes wait in the transport's write buffer: the library
    writes pongs (and close frames) straight to the transport, past the relay's outbox, so
    a client that sends pings and never reads would otherwise grow it without bound."""

    buffer_cap = 1 << 62

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        transport = self.transport
        if transport is not None and transport.get_write_buffer_size() > self.buffer_cap:
            transport.abort()


class _Connection:
    """One device connection: its session, outbound queue and flow-control window.

    Loop-side state, except ``session`` and ``refused`` which only the storage thread
    writes. ``queued_bytes`` counts the frames waiting for the writer; the reader does not
    read the next request while that is above ``limit`` or ``inflight`` requests wait for
    the storage thread.
    """

    __slots__ = (
        "aborted",
        "authed",
        "closing",
        "cursor",
        "deadline",
        "done",
        "draining",
        "expiry",
        "generation",
        "idle_from",
        "inflight",
        "inflight_bytes",
        "limit",
        "live",
        "missed",
        "outbox",
        "paging",
        "progress_at",
        "progress_mark",
        "provisioning",
        "queued_bytes",
        "refused",
        "requests",
        "server",
        "session",
        "superseded",
        "wake",
        "window",
        "window_bytes",
        "writing",
        "written",
        "ws",
    )

    def __init__(self, ws: ServerConnection, server: RelayServer, limit: int) -> None:
        self.ws = ws
        self.server = server
        self.session: Session | None = None
        self.outbox: asyncio.Queue[bytes | int] = asyncio.Queue()  # int = close code
        self.limit = limit
        self.queued_bytes = 0
        self.wake = asyncio.Event()
        self.inflight = 0
        self.inflight_bytes = 0
        self.closing = False  # a close was requested; nothing more is queued
        self.done = False  # the handler has finished
        self.aborted = False
        self.authed = False  # loop-side: authenticated (counted out of the unauthenticated cap)
        self.requests = 0  # requests read while unauthenticated
        self.refused = False  # storage thread: skip this connection's later requests
        self.writing = False
        self.written = 0  # frames written so far (progress, for the watchdog)
        self.progress_at = 0.0
        self.progress_mark: tuple[int, int] = (0, 0)
        # flow control
        self.live = False
        self.draining = False
        self.paging = False
        self.missed = False
        self.cursor: int | None = None
        self.window: dict[bytes, int] = {}
        self.window_bytes = 0
        # cluster (PostgreSQL): this connection's claim generation, once known, and the
        # newest claim of the device heard from another instance meanwhile
        self.generation: int | None = None
        self.superseded = 0
        # unauthenticated limits: the end of its lifetime and when its idle time started
        # (loop time); a provisioning address it waits on (exempt from both until then)
        self.deadline = 0.0
        self.idle_from = 0.0
        self.expiry: asyncio.TimerHandle | None = None
        self.provisioning: bytes | None = None

    def send(self, frame: rf.ServerFrame) -> None:
        if self.closing:
            return
        data = rf.encode_server_frame(frame)
        self.queued_bytes += len(data)
        self.server._buffered(len(data))
        self.outbox.put_nowait(data)

    def sent(self, size: int) -> None:
        self.queued_bytes -= size
        self.server._buffered(-size)
        self.wake.set()

    def push(self, message: QueuedMessage) -> None:
        if message.id in self.window:
            return
        size = message.size
        self.window[message.id] = size
        self.window_bytes += size
        self.send(envelope_of(message))

    def acked(self, ids: Sequence[bytes]) -> None:
        for i in ids:
            size = self.window.pop(i, None)
            if size is not None:
                self.window_bytes -= size

    def has_room(self, size: int) -> bool:
        cfg = self.server._config
        if len(self.window) >= cfg.window_envelopes:
            return False
        return not self.window or self.window_bytes + size <= cfg.window_bytes

    def close(self, code: int) -> None:
        """Queue a close frame after what is queued (the writer bounds it in time)."""
        if self.closing:
            return
        self.closing = True
        self.live = False
        self.outbox.put_nowait(code)
        self.wake.set()

    def abort(self) -> None:
        """Drop the transport now: nothing queued is sent."""
        self.closing = True
        self.live = False
        if not self.aborted:
            self.aborted = True
            transport = self.ws.transport
            if transport is not None:
                transport.abort()
        self.wake.set()

    def holds(self) -> bool:
        """True when output of this connection waits (in its outbox or its transport)."""
        if self.queued_bytes > 0:
            return True
        transport = self.ws.transport
        return transport is not None and transport.get_write_buffer_size() > _WRITE_LIMIT

    def idle_writer(self) -> bool:
        """True when nothing waits to be written (a close frame would go out at once)."""
        transport = self.ws.transport
        buffered = transport.get_write_buffer_size() if transport is not None else 0
        return not self.writing and self.outbox.empty() and buffered == 0


class RelayServer:
    """The relay: start it, point clients at :attr:`url`, stop it.

    Usable as ``async with RelayServer(db_path) as relay: ...`` (starts on 127.0.0.1 with an
    ephemeral port) or with explicit :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str] | None = None,
        *,
        store: RelayStore | None = None,
        config: RelayConfig | None = None,
        rng: Rng | None = None,
        clock: Callable[[], int] | None = None,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        """Configure (nothing is opened until :meth:`start`).

        Args:
            db_path: the SQLite database (created on first start), or a ``postgresql://``
                URL: a :class:`~securemsg.relay.pgstore.PgRelayStore`, and this relay becomes
                one instance of a cluster on that database (:mod:`securemsg.relay.cluster`).
                Exactly one of ``db_path`` and ``store`` must be given.
            store: an already-open :class:`RelayStore` (not closed by :meth:`stop`; a
                :class:`~securemsg.relay.pgstore.PgRelayStore` makes the relay a cluster
                instance as a URL does). From
                :meth:`start` to :meth:`stop` the relay's storage thread uses it; do not use
                it from elsewhere meanwhile.
            config: limits and periods (defaults documented in docs/relay-protocol.md).
            rng: randomness for nonces, envelope ids and signatures (default: the OS).
            clock: Unix milliseconds (default: the system clock); tests pass a fake.
            ssl: a server TLS context: the relay then speaks ``wss://``.

        Raises:
            UsageError: neither or both of ``db_path`` and ``store``.
        """
        if (db_path is None) == (store is None):
            raise UsageError("pass exactly one of db_path and store")
        self._db_path = None if db_path is None else os.fspath(db_path)
        self._given_store = store
        self._config = config or RelayConfig()
        self._rng = rng or SystemRng()
        self._clock = clock or _now_ms
        self._ssl = ssl
        self._service: RelayService | None = None
        self._storage: _StorageThread | None = None
        self._server: Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._kt_publisher: asyncio.Task[None] | None = None
        self._kt_publisher_thread: KtPublisherThread | None = None
        self._cluster: PgCluster | None = None
        self._rescanner: asyncio.Task[None] | None = None
        self._claims: set[asyncio.Task[None]] = set()
        self._live: dict[tuple[bytes, int], _Connection] = {}
        self._provisioning: dict[bytes, _Connection] = {}  # address -> waiting connection
        self._connections: set[_Connection] = set()
        self._total_buffered = 0  # outboxes and requests waiting for the storage thread
        self._transport_buffered = 0  # transports' write buffers (sampled by the watchdog)
        self._over_budget = False
        self._budget_waiters: set[_Connection] = set()
        self._authed = 0  # connections that authenticated and are not finished
        self._max_connections = self._config.max_connections
        self._max_unauthenticated = max(1, self._max_connections // 2)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._old_handler: Any = None
        self._host = ""
        self._port = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Open the store (creating keys on first start) and listen on ``host:port``.

        Logs a warning when ``host`` is not a loopback address and no TLS context was given
        (access keys, ACIs and identity keys would cross the network in the clear).

        Raises:
            UsageError: already started.
            StorageError: the database cannot be opened.
            OSError: the address cannot be bound.
        """
        if self._server is not None:
            raise UsageError("the relay is already running")
        cfg = self._config
        store = self._given_store
        if store is None:
            assert self._db_path is not None
            if is_postgres_url(self._db_path):
                store = PgRelayStore.open(self._db_path)
            else:
                store = SqliteRelayStore.open(self._db_path)
        loop = asyncio.get_running_loop()
        self._total_buffered = self._transport_buffered = self._authed = 0
        self._over_budget = False
        self._budget_waiters.clear()
        capacity = _fd_capacity()
        self._max_connections = (
            cfg.max_connections if capacity is None else min(cfg.max_connections, capacity)
        )
        unauth = cfg.max_unauthenticated_connections
        self._max_unauthenticated = min(
            self._max_connections,
            max(1, self._max_connections // 2 if unauth is None else unauth),
        )
        cap = cfg.max_transport_buffer_bytes + rf.MAX_FRAME_SIZE + _WRITE_LIMIT

        class _Connection_(_GuardedConnection):
            buffer_cap = cap

        try:
            # Opened here, then handed to the storage thread, which alone uses it from now.
            self._service = RelayService(store, self._rng, cfg)
            if isinstance(store, PgRelayStore):
                self._cluster = PgCluster(
                    store.url,
                    store.instance,
                    on_deliver=self._remote_deliver,
                    on_taken=self._remote_taken,
                    on_resync=self._resync,
                    on_leader=self._sweep_now,
                    on_removed=self._remote_removed,
                    on_provision=self._remote_provision,
                )
                await self._cluster.start()
            if self._cluster is None or self._cluster.leader:  # in a cluster: the leader only
                self._service.sweep(self._clock())
            self._storage = _StorageThread(store, loop, cfg.max_batch, cfg.max_batch_result_bytes)
            self._storage.start()
            ws_logger = configure_private_logging()
            self._server = await serve(
                self._handle,
                host,
                port,
                max_size=rf.MAX_FRAME_SIZE,
                max_queue=cfg.max_incoming_frames,
                write_limit=_WRITE_LIMIT,
                open_timeout=cfg.idle_timeout_s,
                close_timeout=cfg.write_timeout_s,
                ping_interval=cfg.ping_interval_s,
                ping_timeout=cfg.ping_timeout_s,
                origins=[None, *(Origin(o) for o in cfg.allowed_origins)],
                process_request=self._admit,
                create_connection=_Connection_,
                logger=ws_logger,
                server_header=None,
                compression=None,
                ssl=self._ssl,
            )
        except BaseException:
            if self._cluster is not None:
                await self._cluster.stop()
                self._cluster = None
            if self._storage is not None:
                await self._storage.stop()
                self._storage = None
            if self._given_store is None:
                store.close()
            self._service = None
            raise
        self._loop = loop
        self._old_handler = loop.get_exception_handler()
        loop.set_exception_handler(_loop_exception_handler)
        sock = next(iter(self._server.sockets))
        self._host, self._port = str(sock.getsockname()[0]), int(sock.getsockname()[1])
        self._sweeper = asyncio.create_task(self._sweep_loop())
        if self._db_path is not None:
            self._kt_publisher_thread = KtPublisherThread(
                _store_opener(self._db_path), self._rng, cfg, self._clock
            )
        self._kt_publisher = asyncio.create_task(self._kt_loop())
        self._watchdog = asyncio.create_task(self._watch_writes())
        if self._cluster is not None:
            self._rescanner = asyncio.create_task(self._rescan_loop())
        if self._ssl is None and not _is_loopback(host):
            _LOG.warning(
                "relay listening on a non-loopback address without TLS: access keys,"
                " account ids and identity keys cross the network in the clear"
                " (use --tls-cert/--tls-key or a TLS-terminating proxy)"
            )
        _LOG.info("relay listening on port %d", self._port)

    async def stop(self) -> None:
        """Close every connection, stop listening and close the store. Idempotent."""
        tasks = (self._sweeper, self._watchdog, self._kt_publisher, self._rescanner, *self._claims)
        for task in tasks:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._sweeper = self._watchdog = self._kt_publisher = self._rescanner = None
        self._claims.clear()
        if self._kt_publisher_thread is not None:
            await self._kt_publisher_thread.close()
            self._kt_publisher_thread = None
        if self._cluster is not None:
            await self._cluster.stop()
            self._cluster = None
        if self._server is not None:
            for conn in list(self._connections):
                if not conn.idle_writer():
                    conn.abort()  # a close frame would wait behind unsendable data
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self._live.clear()
        self._provisioning.clear()
        if self._storage is not None:
            await self._storage.stop()
            self._storage = None
        if self._loop is not None:
            self._loop.set_exception_handler(self._old_handler)
            self._loop = None
        if self._service is not None and self._given_store is None:
            self._service.store.close()
        self._service = None

    async def serve_forever(self) -> None:
        """Wait until the server is closed (``securemsg relay serve`` runs this)."""
        if self._server is None:
            raise UsageError("the relay is not running")
        await self._server.wait_closed()

    async def __aenter__(self) -> RelayServer:
        if self._server is None:
            await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- properties -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (useful with port 0)."""
        return self._port

    @property
    def url(self) -> str:
        """``ws://host:port`` (``wss://`` with TLS) to connect to."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        scheme = "ws" if self._ssl is None else "wss"
        return f"{scheme}://{host}:{self._port}"

    @property
    def service(self) -> RelayService:
        """The request logic (for tests and the disclosure command).

        While the relay runs, the service and its store belong to the storage thread; use
        :meth:`call` to run something against them.

        Raises:
            UsageError: not started.
        """
        if self._service is None:
            raise UsageError("the relay is not running")
        return self._service

    @property
    def trust_root_public(self) -> PublicKey:
        """The trust-root public key clients pin for sealed sender."""
        return self.service.trust_root_public

    async def call(self, fn: Callable[[RelayService], Any]) -> Any:
        """Run ``fn(service)`` on the storage thread (in its own committed batch position)
        and return its result.

        Raises:
            UsageError: not started.
            Exception: whatever ``fn`` raised.
        """
        service = self.service
        storage = self._storage
        if storage is None:
            raise UsageError("the relay is not running")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(ok: bool, value: object) -> None:
            if fut.done():
                return
            if ok:
                fut.set_result(value)
            else:
                assert isinstance(value, BaseException)
                fut.set_exception(value)

        storage.submit(lambda: fn(service), done)
        return await fut

    # -- admission ------------------------------------------------------------------------

    def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        """``process_request``: refuse (HTTP 503) over the connection or memory budget."""
        server = self._server
        count = _handler_count(server)  # with handshakes
        unauthenticated = count - self._authed  # this one included
        if (
            count > self._max_connections
            or unauthenticated > self._max_unauthenticated
            or self._over_budget
        ):
            response = connection.respond(
                HTTPStatus.SERVICE_UNAVAILABLE, "The relay is at capacity; retry later.\n"
            )
            response.headers["Retry-After"] = "30"
            return response
        return None

    def _buffered(self, delta: int) -> None:
        self._total_buffered += delta
        self._check_budget()

    def _check_budget(self) -> None:
        over = self._total_buffered + self._transport_buffered > self._config.max_buffered_bytes
        if over == self._over_budget:
            return
        self._over_budget = over
        if not over:  # the connections paused for holding bytes may read again
            for conn in self._budget_waiters:
                conn.wake.set()

    # -- connections ----------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self._config.sweep_interval_s)
            cluster = self._cluster
            if cluster is not None and not cluster.leader:
                continue  # another instance holds the leader lock and sweeps
            self._sweep_now()

    def _sweep_now(self) -> None:
        service, storage = self._service, self._storage
        if service is not None and storage is not None:
            storage.submit(_sweeper(service, self._clock), self._sweep_done)

    def _sweep_done(self, ok: bool, value: object) -> None:
        _sweep_done(ok, value)
        cluster = self._cluster
        if ok and isinstance(value, int) and value > 0 and cluster is not None:
            task = asyncio.create_task(cluster.vacuum())
            self._claims.add(task)
            task.add_done_callback(self._claims.discard)

    # -- cluster (PostgreSQL): events from the other instances ----------------------------

    async def _rescan_loop(self) -> None:
        while True:
            await asyncio.sleep(_SAFETY_RESCAN_S)
            self._resync()

    def _remote_deliver(self, aci: bytes, device_id: int) -> None:
        """Another instance committed envelopes for this mailbox: read them if it is live
        here (from the start of the queue: commits of several instances arrive out of
        ``seq`` order)."""
        target = self._live.get((aci, device_id))
        if target is not None and target.live:
            target.draining = True
            target.missed = True
            self._pump(target)

    def _resync(self) -> None:
        for key in list(self._live):
            self._remote_deliver(*key)

    def _remote_taken(self, aci: bytes, device_id: int, generation: int) -> None:
        """The device authenticated on another instance: the older claim closes."""
        key = (aci, device_id)
        conn = self._live.get(key)
        if conn is None:
            return
        if conn.generation is None:  # our own claim is not answered yet
            conn.superseded = max(conn.superseded, generation)
        elif conn.generation < generation:
            self._displace(key, conn)

    def _displace(self, key: tuple[bytes, int], conn: _Connection) -> None:
        if self._live.get(key) is conn:
            del self._live[key]
        self._replace(conn)

    async def _claim(self, key: tuple[bytes, int], conn: _Connection) -> None:
        cluster = self._cluster
        if cluster is None:
            return
        generation = await cluster.claim(*key)
        if generation is None or conn.done:
            return
        conn.generation = generation
        if conn.superseded > generation:
            self._displace(key, conn)

    async def publish_kt_epoch(self) -> int | None:
        """Publish the queued key-transparency updates now (the timer does it every
        ``kt_epoch_interval_s``); the new epoch, or None if nothing changed. With a database
        path it runs on the publisher's own thread and connection, else on the storage thread.
        """
        if self._kt_publisher_thread is not None:
            return await self._kt_publisher_thread.publish()
        clock = self._clock
        result: int | None = await self.call(lambda service: service.publish_kt_epoch(clock()))
        return result

    async def _kt_loop(self) -> None:
        while True:
            await asyncio.sleep(self._config.kt_epoch_interval_s)
            cluster = self._cluster
            if cluster is not None and not cluster.leader:
                continue  # another instance holds the leader lock and publishes
            try:
                await self.publish_kt_epoch()
            except Exception as exc:  # retried at the next interval
                _LOG.error("key-transparency publication failed: %s", type(exc).__name__)

    async def _writer(self, conn: _Connection) -> None:
        timeout = self._config.write_timeout_s
        ws = conn.ws
        loop = asyncio.get_running_loop()
        try:
            while True:
                item = await conn.outbox.get()
                conn.writing = True
                conn.progress_at = loop.time()
                if isinstance(item, int):
                    try:
                        async with asyncio.timeout(timeout):
                            await ws.close(item)
                    except TimeoutError:
                        conn.abort()
                    return
                await ws.send(item)  # the watchdog aborts it if it stops making progress
                conn.writing = False
                conn.written += 1
                conn.sent(len(item))
        except ConnectionClosed:
            return

    async def _watch_writes(self) -> None:
        """Abort connections whose pending output made no progress (no frame finished, the
        transport's buffer did not shrink) for ``write_timeout_s``: the peer does not read.
        Every connection is watched, also one whose writer is idle but whose transport
        holds bytes the library wrote itself (pongs). A slow reader that keeps reading is
        not cut off. The transports' buffers are counted in the relay-wide budget."""
        cfg = self._config
        timeout = cfg.write_timeout_s
        cap = cfg.max_transport_buffer_bytes + rf.MAX_FRAME_SIZE + _WRITE_LIMIT
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            now = loop.time()
            total = 0
            for conn in list(self._connections):
                if conn.aborted:
                    continue
                transport = conn.ws.transport
                size = transport.get_write_buffer_size() if transport is not None else 0
                if size > cap:
                    conn.abort()
                    continue
                total += size
                if not conn.writing and size == 0:  # nothing waits: nothing to time
                    conn.progress_at = now
                    conn.progress_mark = (conn.written, 0)
                    continue
                done, before = conn.progress_mark
                if conn.written != done or size < before:
                    conn.progress_at = now
                conn.progress_mark = (conn.written, size)
                if now - conn.progress_at >= timeout:
                    conn.abort()
            self._transport_buffered = total
            self._check_budget()

    async def _ready(self, conn: _Connection) -> None:
        """Wait until the connection may read its next request (backpressure)."""
        cfg = self._config
        while not conn.closing:
            if (
                conn.inflight >= cfg.max_inflight_requests
                or conn.inflight_bytes > cfg.max_inflight_bytes
                or conn.queued_bytes > conn.limit
            ):
                conn.wake.clear()
                await conn.wake.wait()
                continue
            if self._over_budget and conn.holds():
                # Over the relay-wide budget only connections holding output pause (until
                # their output drains or the budget frees up); the others read on.
                conn.wake.clear()
                self._budget_waiters.add(conn)
                try:
                    await conn.wake.wait()
                finally:
                    self._budget_waiters.discard(conn)
                continue
            return

    async def _handle(self, ws: ServerConnection) -> None:
        service, storage = self._service, self._storage
        if service is None or storage is None:
            return
        cfg = self._config
        loop = asyncio.get_running_loop()
        conn = _Connection(ws, self, cfg.max_unauthenticated_outbox_bytes)
        self._connections.add(conn)
        lost = getattr(ws, "connection_lost_waiter", None)
        if isinstance(lost, asyncio.Future):  # wake whatever waits for this connection
            lost.add_done_callback(lambda _: conn.abort())
        conn.idle_from = loop.time()
        conn.deadline = conn.idle_from + cfg.max_unauthenticated_lifetime_s
        # The reader closes at the deadline (below); this catches a connection that is not
        # reading its answers, one write timeout later.
        conn.expiry = loop.call_at(
            conn.deadline + cfg.write_timeout_s, self._expire_unauthenticated, conn
        )
        writer = asyncio.create_task(self._writer(conn))
        try:
            fut: asyncio.Future[Session] = asyncio.get_running_loop().create_future()

            def got_session(ok: bool, value: object) -> None:
                if not fut.done() and ok and isinstance(value, Session):
                    fut.set_result(value)
                elif not fut.done():
                    fut.set_exception(StorageError("no session"))

            storage.submit(service.new_session, got_session, key=conn)
            conn.session = await fut
            conn.send(rf.Challenge(conn.session.nonce))
            while not conn.closing:
                idle = None
                if not conn.authed:  # idle limit, and the lifetime limit, whatever it sends
                    now_t = loop.time()
                    idle = max(0.0, min(conn.idle_from + cfg.idle_timeout_s, conn.deadline) - now_t)
                    if conn.provisioning is not None:  # waiting for a person: only the deadline
                        idle = max(0.0, min(cfg.idle_timeout_s, conn.deadline - now_t))
                try:
                    async with asyncio.timeout(idle):
                        data = await ws.recv()
                except TimeoutError:
                    if conn.session.aci is not None:
                        continue  # authenticated meanwhile (pipelined): no idle limit
                    await self._drain_inflight(conn)  # answer what it sent (or its login)
                    if conn.authed:
                        continue
                    now_t = loop.time()
                    limit = conn.deadline
                    if conn.provisioning is None:
                        limit = min(conn.idle_from + cfg.idle_timeout_s, limit)
                    if now_t < limit and not conn.closing:
                        continue  # opened or got a provisioning address meanwhile
                    conn.close(1008)  # idle, or too long, before authenticating
                    break
                if conn.closing:
                    break
                conn.idle_from = loop.time()
                if not conn.authed and loop.time() >= conn.deadline:
                    await self._drain_inflight(conn)  # this frame is left unhandled
                    if not conn.authed:
                        conn.close(1008)  # its lifetime is over
                        break
                if not isinstance(data, bytes):
                    conn.close(1003)
                    break
                try:
                    frame = rf.decode_client_frame(data)
                except DecodeError:
                    await self._drain_inflight(conn)
                    conn.send(rf.Response(0, rf.StatusCode.BAD_REQUEST, "malformed frame"))
                    conn.close(1002)
                    break
                self._submit(conn, frame, len(data))
                if not conn.authed:
                    conn.requests += 1
                    if conn.requests >= cfg.max_unauthenticated_requests:
                        await self._drain_inflight(conn)  # a pipelined login may be among them
                        if not conn.authed:
                            conn.close(1008)  # its request budget is spent
                            break
                await self._ready(conn)
        except (ConnectionClosed, StorageError):
            pass
        finally:
            if conn.expiry is not None:
                conn.expiry.cancel()
            await self._finish(conn, writer)

    def _expire_unauthenticated(self, conn: _Connection) -> None:
        """Drop a connection still unauthenticated one write timeout after the end of its
        lifetime: its reader did not get to close it (it does not read its answers)."""
        if conn.authed or conn.done:
            return
        loop = asyncio.get_running_loop()
        due = conn.deadline + self._config.write_timeout_s
        if loop.time() < due:  # its deadline moved (provisioning): look again then
            conn.expiry = loop.call_at(due, self._expire_unauthenticated, conn)
            return
        conn.abort()

    def _set_deadline(self, conn: _Connection, lifetime_s: float) -> None:
        loop = asyncio.get_running_loop()
        conn.idle_from = loop.time()
        conn.deadline = conn.idle_from + lifetime_s
        if conn.expiry is not None:
            conn.expiry.cancel()
        conn.expiry = loop.call_at(
            conn.deadline + self._config.write_timeout_s, self._expire_unauthenticated, conn
        )

    def _forget_provisioning(self, conn: _Connection) -> None:
        address, conn.provisioning = conn.provisioning, None
        if address is None:
            return
        if self._provisioning.get(address) is conn:
            del self._provisioning[address]
        self._forget_address(address)

    def _forget_address(self, address: bytes) -> None:
        service, storage = self._service, self._storage
        if service is not None and storage is not None:
            storage.submit(lambda: service.forget_provisioning(address), _ignore)

    def _provision(self, address: bytes, envelope: bytes) -> None:
        """Push a provisioning envelope to the connection waiting on ``address`` (once);
        from then on the unauthenticated limits apply to it again, counted from now."""
        target = self._provisioning.pop(address, None)
        if target is None or target.done or target.closing:
            return
        target.provisioning = None
        target.send(rf.ProvisionEnvelope(address, envelope))
        self._set_deadline(target, self._config.max_unauthenticated_lifetime_s)

    def _evict_provisioning(self, address: bytes) -> None:
        """The service forgot ``address`` to make room for a new one: close its connection
        as an expired address's (1008); the new device shows its code again."""
        target = self._provisioning.pop(address, None)
        if target is None or target.done:
            return
        target.provisioning = None
        target.close(1008)

    def _remote_provision(self, address: bytes, envelope: bytes) -> None:
        """Another instance claimed an address held here: push its envelope."""
        if address in self._provisioning:
            self._provision(address, envelope)
            self._forget_address(address)

    def _remote_removed(self, aci: bytes, device_id: int) -> None:
        """Another instance removed a device: refuse its sessions here too, and close them."""
        service, storage = self._service, self._storage
        if service is not None and storage is not None:
            storage.submit(lambda: service.note_removed(aci, device_id), _ignore)
        self._device_removed(aci, device_id)

    def _device_removed(self, aci: bytes, device_id: int) -> None:
        """The device was removed: tell its live connection and close it (4003)."""
        conn = self._live.pop((aci, device_id), None)
        if conn is None or conn.done:
            return
        conn.refused = True  # its requests still waiting are skipped
        conn.send(rf.DeviceRemoved())
        conn.close(_CLOSE_REMOVED)

    async def _drain_inflight(self, conn: _Connection) -> None:
        while conn.inflight and not conn.closing:
            conn.wake.clear()
            await conn.wake.wait()

    async def _finish(self, conn: _Connection, writer: asyncio.Task[None]) -> None:
        if conn.closing and not conn.aborted and not writer.done():
            # Frames it sent that were not read are discarded (never handled), so that the
            # library reads on and gets the peer's answer to the close frame.
            discard = asyncio.create_task(_discard_incoming(conn.ws))
            try:  # let the writer flush the last response and the close frame (bounded)
                async with asyncio.timeout(2 * self._config.write_timeout_s):
                    await asyncio.shield(writer)
            except (TimeoutError, asyncio.CancelledError):
                conn.abort()
            finally:
                discard.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await discard
        writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
            await writer
        conn.done = True
        conn.closing = True
        conn.live = False
        if conn.authed:
            conn.authed = False
            self._authed -= 1
        self._connections.discard(conn)
        self._buffered(-conn.queued_bytes)
        conn.queued_bytes = 0
        while not conn.outbox.empty():  # drop what will never be sent
            conn.outbox.get_nowait()
        conn.window.clear()
        self._forget_provisioning(conn)
        s = conn.session
        if s is not None and s.aci is not None and self._live.get((s.aci, s.device_id)) is conn:
            del self._live[(s.aci, s.device_id)]

    # -- requests and their results (results applied on the loop, in commit order) ------

    def _submit(self, conn: _Connection, frame: rf.ClientFrame, size: int) -> None:
        service, storage = self._service, self._storage
        assert service is not None and storage is not None
        session = conn.session
        assert session is not None
        clock = self._clock
        conn.inflight += 1
        conn.inflight_bytes += size
        self._buffered(size)

        def job() -> Outcome | None:  # on the storage thread
            if conn.refused:
                return None
            outcome = service.handle(session, frame, clock())
            if outcome.close:
                conn.refused = True
            return outcome

        def done(ok: bool, value: object) -> None:  # on the loop
            conn.inflight_bytes -= size
            self._buffered(-size)
            self._apply(conn, frame, ok, value)

        storage.submit(job, done, conn)

    def _apply(self, conn: _Connection, frame: rf.ClientFrame, ok: bool, value: object) -> None:
        conn.inflight -= 1
        conn.wake.set()
        if not ok:
            if not conn.done:
                conn.send(rf.Response(frame.request_id, rf.StatusCode.INTERNAL, "storage error"))
                conn.close(_CLOSE_STORAGE)
            return
        if not isinstance(value, Outcome):
            return  # skipped: the connection was already being closed
        self._deliver(value.queued)  # even if the sender is gone: the commit happened
        if value.provision is not None:
            self._provision(*value.provision)
        if value.removed is not None:
            self._device_removed(*value.removed)
        if value.provisioning_evicted is not None:
            self._evict_provisioning(value.provisioning_evicted)
        if conn.done or conn.closing:
            if value.provisioning_opened is not None:
                self._forget_address(value.provisioning_opened)
            return
        conn.send(value.response)
        if value.provisioning_opened is not None:
            conn.provisioning = value.provisioning_opened
            self._provisioning[value.provisioning_opened] = conn
            self._set_deadline(conn, self._config.provisioning_ttl_s)
        if value.close:
            conn.close(_CLOSE_AUTH_FAILED)
            return
        if value.authenticated:
            if not conn.authed:
                conn.authed = True
                self._authed += 1
            self._went_live(conn)
        body = frame.body
        if isinstance(body, rf.Ack) and value.response.code == rf.StatusCode.OK:
            conn.acked(body.ids)
            self._pump(conn)

    def _went_live(self, conn: _Connection) -> None:
        s = conn.session
        assert s is not None and s.aci is not None
        key = (s.aci, s.device_id)
        old = self._live.get(key)
        if old is not None and old is not conn:
            self._replace(old)
        self._live[key] = conn
        conn.limit = self._config.max_outbox_bytes
        conn.live = True
        conn.draining = True
        conn.cursor = None
        conn.missed = False
        if self._cluster is not None:  # displace the device's connection on other instances
            task = asyncio.create_task(self._claim(key, conn))
            self._claims.add(task)
            task.add_done_callback(self._claims.discard)
        self._pump(conn)

    def _replace(self, old: _Connection) -> None:
        """Close a replaced connection now: politely if its close frame can go out at once,
        else by aborting the transport (its unsent pushes are pushed again later)."""
        if old.idle_writer():
            old.close(_CLOSE_REPLACED)
        else:
            old.abort()

    def _deliver(self, queued: Sequence[QueuedMessage]) -> None:
        for m in queued:
            target = self._live.get((m.aci, m.device_id))
            if target is None or not target.live:
                continue
            if target.draining or not target.has_room(m.size):
                # The pager reads it from the store; it may sit before the cursor.
                target.draining = True
                target.missed = True
                self._pump(target)
                continue
            target.push(m)

    def _pump(self, conn: _Connection) -> None:
        """Read the next page of the backlog if the window has room."""
        if not conn.live or not conn.draining or conn.paging:
            return
        cfg = self._config
        room = cfg.window_envelopes - len(conn.window)
        room_bytes = cfg.window_bytes - conn.window_bytes
        if room <= 0 or (conn.window and room_bytes <= 0):
            return
        s = conn.session
        storage = self._storage
        service = self._service
        assert s is not None and s.aci is not None and storage is not None and service
        aci, dev, after = s.aci, s.device_id, conn.cursor
        store = service.store
        conn.paging = True
        page = getattr(store, "pending_page", None)
        in_window = frozenset(conn.window) if page is None else frozenset()

        def read() -> object:
            if page is not None:
                return page(aci, dev, after_seq=after, limit=room, max_bytes=max(1, room_bytes))
            # A store without pages: the whole queue, less what the window holds.
            rows = [m for m in store.pending(aci, dev) if m.id not in in_window]
            return [(-1, m) for m in rows[:room]]

        def done(ok: bool, value: object) -> None:
            self._paged(conn, ok, value)

        storage.submit(read, done, key=conn)

    def _paged(self, conn: _Connection, ok: bool, value: object) -> None:
        conn.paging = False
        if not conn.live:
            return
        if not ok or not isinstance(value, list):
            conn.abort()
            return
        for seq, m in value:
            conn.cursor = seq if seq >= 0 else None
            conn.push(m)
        if value:
            self._pump(conn)
            return
        if conn.missed:  # something arrived meanwhile: rescan once from the start
            conn.missed = False
            conn.cursor = None
            self._pump(conn)
            return
        conn.draining = False
        conn.send(rf.QueueEmpty())


def _handler_count(server: Server | None) -> int:
    """Connections the library is handling, handshakes included (``handler_tasks`` in
    websockets >= 14, ``handlers`` in 13)."""
    if server is None:
        return 0
    tasks: Sized | None = getattr(server, "handler_tasks", None)
    if tasks is None:
        tasks = getattr(server, "handlers", ())
    return len(tasks)


def _store_opener(db: str) -> Callable[[], RelayStore]:
    """Opens another connection to the relay database ``db`` (a path or a PostgreSQL URL)."""

    def open_store() -> RelayStore:
        if is_postgres_url(db):
            return PgRelayStore.open(db)
        return SqliteRelayStore.open(db)

    return open_store


async def _discard_incoming(ws: ServerConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        while True:
            await ws.recv()


def _sweeper(service: RelayService, clock: Callable[[], int]) -> Callable[[], object]:
    def sweep() -> object:
        return service.sweep(clock())

    return sweep


def _ignore(ok: bool, value: object) -> None:
    if not ok:
        _RES_LOG.error("relay housekeeping failed: %s", type(value).__name__)


def _sweep_done(ok: bool, value: object) -> None:
    if not ok:
        _RES_LOG.error("relay expiry sweep failed: %s", type(value).__name__)
