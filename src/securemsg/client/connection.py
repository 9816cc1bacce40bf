"""One WebSocket connection to the relay: request/response matching and the push queue.

Theory of operation
-------------------
:class:`RelayConnection` opens ``ws://...``, reads the relay's :class:`Challenge` (always the
first frame) and then runs one reader task that sorts incoming frames: a :class:`Response` wakes
the request that is waiting for its ``request_id``; an :class:`Envelope` or :class:`QueueEmpty`
goes into :attr:`RelayConnection.pushes` for the client to process in order; a
:class:`ProvisionEnvelope` (on a new device's provisioning connection) goes into
:attr:`RelayConnection.provisions`; :class:`DeviceRemoved` (this device was unlinked: the relay
closes the connection next, with code 4003) sets :attr:`RelayConnection.removed`. When the
socket closes (or the relay sends bytes that do not decode), every waiting request fails with
:class:`~securemsg.errors.RelayError` (code :data:`CONNECTION_LOST`), ``None`` is put into
both queues as an end marker, and :attr:`RelayConnection.closed` is set.

:meth:`RelayConnection.request` turns a non-OK status into ``RelayError(message, code,
details)`` so callers only ever see typed errors. Every wait is bounded by a timeout. The
relay's status message goes into that error only through :func:`relay_text`: escaped (no
control characters) and bounded, since the relay is not trusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl as ssl_module
from collections.abc import Awaitable, Callable
from typing import Final

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidURI, WebSocketException

from securemsg.errors import DecodeError, RelayError, UsageError
from securemsg.relay_protocol.frames import (
    MAX_FRAME_SIZE,
    Challenge,
    ClientFrame,
    DeviceRemoved,
    Envelope,
    ProvisionEnvelope,
    ProvisioningAddress,
    QueueEmpty,
    Request,
    Response,
    StatusCode,
    decode_server_frame,
    encode_client_frame,
)

__all__ = [
    "CLOSE_DEVICE_REMOVED",
    "CONNECTION_LOST",
    "MAX_RELAY_TEXT",
    "MAX_UNREAD_PUSHES",
    "MAX_UNREAD_PUSH_BYTES",
    "RelayConnection",
    "relay_text",
]

#: ``RelayError.code`` when the relay could not be reached or the connection dropped (not a
#: relay status: the request may or may not have been handled).
CONNECTION_LOST: Final = -1

#: Seconds to wait for the TCP/WebSocket handshake and the challenge.
OPEN_TIMEOUT_S: Final = 10.0
#: Seconds to wait for one response.
REQUEST_TIMEOUT_S: Final = 30.0


#: The close code of a relay policy close (an unauthenticated connection's limits).
_CLOSE_POLICY: Final = 1008
#: The close code the relay uses after telling a device it was removed from its account.
CLOSE_DEVICE_REMOVED: Final = 4003

#: Most bytes of pushed envelope bodies a connection holds unread. An honest relay pushes at
#: most its flow-control window of unacknowledged envelopes (64 and 1 MiB by default, see
#: ``RelayConfig.window_bytes``); a relay that pushes past this is dropped (connection lost:
#: what was read is still processed) instead of growing the client's memory.
MAX_UNREAD_PUSH_BYTES: Final = 16 * 1024 * 1024
#: Most envelopes and queue-empty markers a connection holds unread (as above, for counts).
MAX_UNREAD_PUSHES: Final = 4096


class _PushQueue(asyncio.Queue[Envelope | QueueEmpty | None]):
    """The pushes, with the bytes of the bodies they hold counted (:attr:`held_bytes`)."""

    def __init__(self) -> None:
        super().__init__()
        self.held_bytes = 0

    def _put(self, item: Envelope | QueueEmpty | None) -> None:
        super()._put(item)
        if isinstance(item, Envelope):
            self.held_bytes += len(item.body)

    def _get(self) -> Envelope | QueueEmpty | None:
        item = super()._get()
        if isinstance(item, Envelope):
            self.held_bytes -= len(item.body)
        return item


#: Most characters of the relay's own text (a response's status message) that the client
#: puts into an exception or a log line.
MAX_RELAY_TEXT: Final = 200


def relay_text(text: str) -> str:
    """The relay's text as the client shows it: control and other non-printable characters
    removed, cut to :data:`MAX_RELAY_TEXT` characters (``...`` marks a cut), quoted
    ``repr()``-style. The relay is not trusted: its words must not forge log lines, move a
    terminal's cursor or flood a log."""
    kept = "".join(c for c in text[: MAX_RELAY_TEXT * 4] if c.isprintable())
    if len(kept) > MAX_RELAY_TEXT or len(text) > MAX_RELAY_TEXT * 4:
        kept = kept[: MAX_RELAY_TEXT - 3] + "..."
    return repr(kept)


def _lost(why: str) -> RelayError:
    return RelayError("connection to the relay " + why, CONNECTION_LOST)


class RelayConnection:
    """An open connection (authenticated or not: that is the caller's business).

    Attributes:
        challenge: the nonce the relay sent for this connection.
        pushes: envelopes and queue-empty markers, in arrival order; ``None`` once closed.
            At most :data:`MAX_UNREAD_PUSHES` / :data:`MAX_UNREAD_PUSH_BYTES` unread: a relay
            pushing past them is dropped.
        provisions: the provisioning envelope pushed to this connection for the address it
            opened (``OpenProvisioning``), at most one; ``None`` once closed. Any other
            provisioning envelope drops the connection.
        removed: True once the relay said this device was removed from its account (a
            ``DeviceRemoved`` push, or the close code :data:`CLOSE_DEVICE_REMOVED`).
        closed: set when the connection is gone.
        reopen: if set, how to get a new connection of the same kind; used when the relay
            closes this one by policy (close code 1008: an unauthenticated connection's
            lifetime or request budget is spent) before answering a request. The relay
            answers every request it read before such a close, so an unanswered request
            was not handled and is sent once more on the new connection.
    """

    def __init__(self, ws: ClientConnection, challenge: Challenge) -> None:
        """Wrap an open socket (internal: use :meth:`open`)."""
        self._ws = ws
        self.challenge = challenge.nonce
        self.pushes: _PushQueue = _PushQueue()
        self.provisions: asyncio.Queue[ProvisionEnvelope | None] = asyncio.Queue()
        self._provisioning_address: bytes | None = None  # what OpenProvisioning gave us
        self._provisioned = False
        self.removed = False
        self.closed = asyncio.Event()
        self._waiting: dict[int, asyncio.Future[Response]] = {}
        self._next_id = 1
        self.reopen: Callable[[], Awaitable[RelayConnection]] | None = None
        self._policy_closed = False
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        timeout: float = OPEN_TIMEOUT_S,
        ssl: ssl_module.SSLContext | None = None,
    ) -> RelayConnection:
        """Connect to ``url`` and read the challenge.

        ``ssl`` is the TLS context for a ``wss://`` URL (default: the system's trusted CAs
        with hostname checking); pass one that trusts a private CA or pinned certificate.

        Raises:
            UsageError: ``url`` is not a ws:// or wss:// URL, or does not parse.
            RelayError: code :data:`CONNECTION_LOST` if the relay cannot be reached or does
                not start with a challenge.
        """
        if not isinstance(url, str) or not url.startswith(("ws://", "wss://")):
            raise UsageError("relay URL must start with ws:// or wss://")
        try:
            async with asyncio.timeout(timeout):
                ws = await connect(
                    url,
                    max_size=MAX_FRAME_SIZE,
                    compression=None,
                    open_timeout=timeout,
                    ssl=ssl if url.startswith("wss://") else None,
                )
                try:
                    first = await ws.recv(decode=False)
                    frame = decode_server_frame(first)
                except BaseException:
                    await ws.close()
                    raise
        except (InvalidURI, ValueError):  # ValueError: e.g. urllib on "ws://[::1"
            raise UsageError("relay URL is not valid") from None
        except (OSError, WebSocketException, TimeoutError) as exc:
            raise _lost("could not be opened (" + type(exc).__name__ + ")") from None
        except DecodeError:
            raise _lost("sent an undecodable first frame") from None
        if not isinstance(frame, Challenge):
            await ws.close()
            raise _lost("did not start with a challenge")
        return cls(ws, frame)

    async def _read_loop(self) -> None:
        try:
            async for data in self._ws:
                if not isinstance(data, bytes):
                    break  # the protocol is binary-only
                try:
                    frame = decode_server_frame(data)
                except DecodeError:
                    break
                if isinstance(frame, Response):
                    fut = self._waiting.pop(frame.request_id, None)
                    if fut is not None and not fut.done():
                        if isinstance(frame.body, ProvisioningAddress):
                            self._provisioning_address = frame.body.address
                        fut.set_result(frame)
                elif isinstance(frame, Envelope | QueueEmpty):
                    size = len(frame.body) if isinstance(frame, Envelope) else 0
                    if (
                        self.pushes.held_bytes + size > MAX_UNREAD_PUSH_BYTES
                        or self.pushes.qsize() >= MAX_UNREAD_PUSHES
                    ):
                        break  # far past any flow-control window: not an honest relay
                    self.pushes.put_nowait(frame)
                elif isinstance(frame, ProvisionEnvelope):
                    if self._provisioned or frame.address != self._provisioning_address:
                        break  # not for an address we opened, or a second one
                    self._provisioned = True
                    self.provisions.put_nowait(frame)
                elif isinstance(frame, DeviceRemoved):
                    self.removed = True
        except ConnectionClosed:
            pass
        finally:
            self._shutdown()
            with contextlib.suppress(Exception):
                await self._ws.close()

    def _close_code(self) -> object:
        """The code of the relay's close frame (received, even if not yet processed by the
        reader), or None."""
        rcvd = getattr(getattr(self._ws, "protocol", None), "close_rcvd", None)
        return getattr(rcvd, "code", None)

    def _closed_by_policy(self) -> bool:
        """True when the relay's close frame carries the policy close code."""
        return self._close_code() == _CLOSE_POLICY

    @property
    def policy_closed(self) -> bool:
        """True when the relay closed this connection by policy (close code 1008: a limit of
        unauthenticated connections, or a provisioning address that expired)."""
        return self._policy_closed or self._closed_by_policy()

    def _shutdown(self) -> None:
        if self.closed.is_set():
            return
        self._policy_closed = self._policy_closed or self._closed_by_policy()
        self.removed = self.removed or self._close_code() == CLOSE_DEVICE_REMOVED
        self.closed.set()
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(_lost("was closed"))
        self._waiting.clear()
        self.pushes.put_nowait(None)
        self.provisions.put_nowait(None)

    async def request(self, body: Request, *, timeout: float = REQUEST_TIMEOUT_S) -> Response:
        """Send one request and wait for its response (once more on a new connection, see
        :attr:`reopen`, when the relay closed this one by policy before answering).

        Returns:
            The OK response.

        Raises:
            RelayError: the relay answered with another status (``code``, ``details`` = the
                response body), or code :data:`CONNECTION_LOST` if the connection closed or
                the answer did not come within ``timeout`` seconds.
            UsageError: the request does not encode.
        """
        try:
            return await self._request_once(body, timeout)
        except RelayError as exc:
            policy = self._policy_closed or self._closed_by_policy()
            if exc.code != CONNECTION_LOST or not policy or self.reopen is None:
                raise
        self._shutdown()  # closed now, even if the reader has not seen it yet
        fresh = await self.reopen()
        return await fresh._request_once(body, timeout)

    async def _request_once(self, body: Request, timeout: float) -> Response:
        if self.closed.is_set():
            raise _lost("is closed")
        request_id = self._next_id
        self._next_id += 1
        data = encode_client_frame(ClientFrame(request_id, body))
        fut: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = fut
        try:
            await self._ws.send(data)
            async with asyncio.timeout(timeout):
                response = await fut
        except ConnectionClosed:
            raise _lost("was closed") from None
        except TimeoutError:
            raise _lost("timed out") from None
        finally:
            self._waiting.pop(request_id, None)
            if fut.done() and not fut.cancelled():
                fut.exception()  # closed while sending: the error is raised above, not lost
        if response.code != StatusCode.OK:
            name = StatusCode(response.code).name
            text = relay_text(response.message or "refused")  # the relay's words, escaped
            raise RelayError(
                "relay refused " + type(body).__name__ + ": " + name + " (" + text + ")",
                int(response.code),
                response.body,
            )
        return response

    async def close(self) -> None:
        """Close the connection and stop the reader. Idempotent."""
        with contextlib.suppress(Exception):
            await self._ws.close()
        if not self._reader.done():
            try:
                async with asyncio.timeout(5):
                    await asyncio.shield(self._reader)
            except (TimeoutError, asyncio.CancelledError):
                self._reader.cancel()
        self._shutdown()
