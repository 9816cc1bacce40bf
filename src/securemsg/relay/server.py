"""The reference relay: a WebSocket server over :class:`~securemsg.relay.service.RelayService`.

Theory of operation
-------------------
:class:`RelayServer` listens with ``websockets.asyncio.server.serve``; each connection is one
device. On connect it sends a :class:`~securemsg.wire.relay_frames.Challenge`, then reads
frames one at a time, asks the service for an :class:`~securemsg.relay.service.Outcome` and
writes the response. Everything a connection sends goes through one outbound queue drained
by a writer task, so responses and pushes never interleave within a frame and keep their
order.

Delivery: when a connection authenticates it is registered as its device's live connection
(replacing and closing an older one), then the device's backlog is pushed, then
:class:`~securemsg.wire.relay_frames.QueueEmpty`. When a send queues envelopes, each is
pushed at once to its device's live connection, if any. Registration, backlog read and live
pushes all happen between two ``await`` points, so no envelope is missed or pushed twice on
one connection; an envelope pushed but not acknowledged is pushed again on the next
connection (at-least-once). The store is called synchronously from the event loop (SQLite
with ``synchronous=FULL``), which keeps every request atomic with respect to the others.

Privacy: the server never reads the peer address; the ``websockets`` library logs through a
logger capped at WARNING whose records are scrubbed of anything that looks like an IP
address. An expiry sweep runs every ``sweep_interval_s`` and at start.

Hostile input: frames over :data:`~securemsg.wire.relay_frames.MAX_FRAME_SIZE` are refused
by the library (close 1009); text frames close the connection (1003); undecodable frames get
``BAD_REQUEST`` and close (1002); everything else gets a status. No request can crash the
relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from securemsg.crypto.curve import PublicKey
from securemsg.crypto.rng import Rng, SystemRng
from securemsg.errors import DecodeError, UsageError
from securemsg.relay.service import (
    Outcome,
    RelayConfig,
    RelayService,
    Session,
    envelope_of,
)
from securemsg.relay.store import QueuedMessage, RelayStore, SqliteRelayStore
from securemsg.wire import relay_frames as rf

__all__ = ["RelayServer", "configure_private_logging"]

_LOG = logging.getLogger("securemsg.relay")
_WS_LOGGER_NAME = "securemsg.relay.websockets"
_IP_PATTERN = re.compile(
    r"(\b\d{1,3}(?:\.\d{1,3}){3}\b)|(\[?[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}\]?)"
)
_CLOSE_REPLACED = 4000
_CLOSE_AUTH_FAILED = 4001


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


def configure_private_logging() -> logging.Logger:
    """The logger handed to ``websockets``: WARNING and above only, addresses scrubbed.

    Also adds the scrubbing filter to ``securemsg.relay``. Idempotent.
    """
    ws_logger = logging.getLogger(_WS_LOGGER_NAME)
    ws_logger.setLevel(logging.WARNING)
    for lg in (ws_logger, _LOG):
        if not any(isinstance(f, _ScrubAddresses) for f in lg.filters):
            lg.addFilter(_ScrubAddresses())
    return ws_logger


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class _Connection:
    """One device connection: its session and its outbound queue.

    ``queued_bytes`` counts the frames waiting for the writer; ``room`` is set while that is
    at most ``limit``, and the reader waits for it before reading the next request, so a peer
    that does not read its responses cannot grow the queue without bound.
    """

    __slots__ = ("limit", "outbox", "pushed", "queued_bytes", "room", "session", "ws")

    def __init__(self, ws: ServerConnection, session: Session, limit: int) -> None:
        self.ws = ws
        self.session = session
        self.outbox: asyncio.Queue[bytes | int] = asyncio.Queue()  # int = close code
        self.pushed: set[bytes] = set()
        self.limit = limit
        self.queued_bytes = 0
        self.room = asyncio.Event()
        self.room.set()

    def send(self, frame: rf.ServerFrame) -> None:
        data = rf.encode_server_frame(frame)
        self.queued_bytes += len(data)
        if self.queued_bytes > self.limit:
            self.room.clear()
        self.outbox.put_nowait(data)

    def sent(self, size: int) -> None:
        self.queued_bytes -= size
        if self.queued_bytes <= self.limit:
            self.room.set()

    def push(self, message: QueuedMessage) -> None:
        if message.id in self.pushed:
            return
        self.pushed.add(message.id)
        self.send(envelope_of(message))

    def close(self, code: int) -> None:
        self.outbox.put_nowait(code)


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
    ) -> None:
        """Configure (nothing is opened until :meth:`start`).

        Args:
            db_path: the SQLite database (created on first start). Exactly one of ``db_path``
                and ``store`` must be given.
            store: an already-open :class:`RelayStore` (not closed by :meth:`stop`).
            config: limits and periods (defaults documented in docs/relay-protocol.md).
            rng: randomness for nonces, envelope ids and signatures (default: the OS).
            clock: Unix milliseconds (default: the system clock); tests pass a fake.

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
        self._service: RelayService | None = None
        self._server: Server | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._kt_publisher: asyncio.Task[None] | None = None
        self._live: dict[tuple[bytes, int], _Connection] = {}
        self._connections: set[_Connection] = set()
        self._host = ""
        self._port = 0

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Open the store (creating keys on first start) and listen on ``host:port``.

        Raises:
            UsageError: already started.
            StorageError: the database cannot be opened.
            OSError: the address cannot be bound.
        """
        if self._server is not None:
            raise UsageError("the relay is already running")
        store = self._given_store
        if store is None:
            assert self._db_path is not None
            store = SqliteRelayStore.open(self._db_path)
        try:
            self._service = RelayService(store, self._rng, self._config)
            self._service.sweep(self._clock())
            self._server = await serve(
                self._handle,
                host,
                port,
                max_size=rf.MAX_FRAME_SIZE,
                logger=configure_private_logging(),
                server_header=None,
                compression=None,
            )
        except BaseException:
            if self._given_store is None:
                store.close()
            self._service = None
            raise
        sock = next(iter(self._server.sockets))
        self._host, self._port = str(sock.getsockname()[0]), int(sock.getsockname()[1])
        self._sweeper = asyncio.create_task(self._sweep_loop())
        self._kt_publisher = asyncio.create_task(self._kt_loop())
        _LOG.info("relay listening on port %d", self._port)

    async def stop(self) -> None:
        """Close every connection, stop listening and close the store. Idempotent."""
        if self._kt_publisher is not None:
            self._kt_publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._kt_publisher
            self._kt_publisher = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        self._live.clear()
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
        """``ws://host:port`` to connect to."""
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"ws://{host}:{self._port}"

    @property
    def service(self) -> RelayService:
        """The request logic (for tests and the disclosure command).

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

    # -- connections ----------------------------------------------------------------------

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self._config.sweep_interval_s)
            if self._service is not None:
                self._service.sweep(self._clock())

    def publish_kt_epoch(self) -> int | None:
        """Publish the queued key-transparency updates now (the timer does it every
        ``kt_epoch_interval_s``); the new epoch, or None if nothing changed."""
        return self.service.publish_kt_epoch(self._clock())

    async def _kt_loop(self) -> None:
        while True:
            await asyncio.sleep(self._config.kt_epoch_interval_s)
            if self._service is not None:
                try:
                    self._service.publish_kt_epoch(self._clock())
                except Exception as exc:  # retried at the next interval
                    _LOG.error("key-transparency publication failed: %s", type(exc).__name__)

    async def _writer(self, conn: _Connection) -> None:
        while True:
            item = await conn.outbox.get()
            if isinstance(item, int):
                await conn.ws.close(item)
                return
            await conn.ws.send(item)
            conn.sent(len(item))

    async def _handle(self, ws: ServerConnection) -> None:
        service = self._service
        if service is None:
            return
        conn = _Connection(ws, service.new_session(), self._config.max_outbox_bytes)
        self._connections.add(conn)
        writer = asyncio.create_task(self._writer(conn))
        try:
            conn.send(rf.Challenge(conn.session.nonce))
            closing = False
            async for data in ws:
                if not self._on_frame(service, conn, data):
                    closing = True
                    break
                await conn.room.wait()  # backpressure: the peer must read its answers
            if closing:  # let the writer flush the last response and close
                await asyncio.wait_for(writer, timeout=5.0)
        except (ConnectionClosed, TimeoutError):
            pass
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await writer
            self._connections.discard(conn)
            s = conn.session
            if s.aci is not None and self._live.get((s.aci, s.device_id)) is conn:
                del self._live[(s.aci, s.device_id)]

    def _on_frame(self, service: RelayService, conn: _Connection, data: Any) -> bool:
        """Handle one frame synchronously; False once the connection is to be closed."""
        if not isinstance(data, bytes):
            conn.close(1003)
            return False
        try:
            frame = rf.decode_client_frame(data)
        except DecodeError:
            conn.send(rf.Response(0, rf.StatusCode.BAD_REQUEST, "malformed frame"))
            conn.close(1002)
            return False
        outcome = service.handle(conn.session, frame, self._clock())
        conn.send(outcome.response)
        if outcome.close:
            conn.close(_CLOSE_AUTH_FAILED)
            return False
        if outcome.authenticated:
            self._went_live(service, conn)
        self._deliver(outcome)
        return True

    def _went_live(self, service: RelayService, conn: _Connection) -> None:
        s = conn.session
        assert s.aci is not None
        old = self._live.get((s.aci, s.device_id))
        if old is not None and old is not conn:
            old.close(_CLOSE_REPLACED)
        self._live[(s.aci, s.device_id)] = conn
        for m in service.pending(s):
            conn.push(m)
        conn.send(rf.QueueEmpty())

    def _deliver(self, outcome: Outcome) -> None:
        for m in outcome.queued:
            target = self._live.get((m.aci, m.device_id))
            if target is not None:
                target.push(m)
