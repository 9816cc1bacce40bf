"""Pongs and other bytes written past the outbox are bounded too.

The ``websockets`` library answers every ping with a pong written straight to the transport:
those bytes never pass through the relay's outbox. So the relay watches each connection's
transport write buffer itself: above ``max_transport_buffer_bytes`` (plus room for one
frame) right after it handles received data the connection is aborted, a buffer that does
not shrink for ``write_timeout_s`` gets the connection aborted whether or not the relay's
own writer is busy, and the buffers count in the relay-wide ``max_buffered_bytes``.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from relay_harness import Device, relay, run
from websockets.asyncio.client import connect

from securemsg.relay_protocol import frames as rf

OUTBOX = 4 * 1024 * 1024
FLOOD = 48 * 1024 * 1024


def test_pings_from_a_client_that_never_reads_do_not_grow_the_relays_buffers(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        server = relay(tmp_path / "r.db", max_outbox_bytes=OUTBOX)
        await server.start()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.setblocking(False)
        ws = await connect(server.url, sock=sock, max_queue=1)
        try:
            challenge = rf.decode_server_frame(await ws.recv())  # type: ignore[arg-type]
            assert isinstance(challenge, rf.Challenge)
            device = Device.new(4242)
            await ws.send(
                rf.encode_client_frame(rf.ClientFrame(1, device.register(challenge.nonce)))
            )
            await asyncio.sleep(0.5)
            assert ws.transport is not None
            ws.transport.pause_reading()  # from now on, read nothing the relay sends
            ping = bytes([0x89, 0x80 | 125]) + bytes(4) + os.urandom(125)  # masked, zero mask
            chunk = ping * 2000
            peak = 0
            for _ in range(FLOOD // len(chunk)):  # bounded in count
                if ws.transport.is_closing():
                    break  # the relay dropped us: that is a fine answer
                ws.transport.write(chunk)
                for _ in range(500):  # bounded: do not outrun our own socket
                    if ws.transport.get_write_buffer_size() <= 1 << 20:
                        break
                    await asyncio.sleep(0.01)
                sizes = [
                    c.ws.transport.get_write_buffer_size()
                    for c in list(server._connections)
                    if c.ws.transport is not None
                ]
                peak = max([peak, *sizes])
            assert peak <= OUTBOX, (
                f"the relay buffered {peak >> 20} MiB of pongs for one connection that never"
                f" reads (outbox limit {OUTBOX >> 20} MiB, relay budget count"
                f" {server._total_buffered})"
            )
        finally:
            if ws.transport is not None:
                ws.transport.abort()
            for conn in list(server._connections):
                conn.abort()
            await asyncio.wait_for(server.stop(), 15)

    run(body)


def test_pongs_that_are_never_read_count_in_the_budget_and_time_out(tmp_path: Path) -> None:
    async def body() -> None:
        server = relay(
            tmp_path / "r.db",
            max_transport_buffer_bytes=256 * 1024 * 1024,  # only the write timeout applies
            write_timeout_s=2.0,
            ping_interval_s=600.0,
        )
        await server.start()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", server.port))
        sock.setblocking(False)
        ws = await connect(server.url, sock=sock, max_queue=1)
        try:
            challenge = rf.decode_server_frame(await ws.recv())  # type: ignore[arg-type]
            assert isinstance(challenge, rf.Challenge)
            device = Device.new(4243)
            await ws.send(
                rf.encode_client_frame(rf.ClientFrame(1, device.register(challenge.nonce)))
            )
            await asyncio.sleep(0.5)
            assert ws.transport is not None
            ws.transport.pause_reading()
            ping = bytes([0x89, 0x80 | 125]) + bytes(4) + os.urandom(125)
            ws.transport.write(ping * 40_000)  # ~5 MiB of pongs to answer, once
            counted = 0
            for _ in range(600):  # bounded: the watchdog samples the buffers
                counted = max(counted, server._transport_buffered)
                if not server._connections:
                    break
                await asyncio.sleep(0.05)
            assert counted > 0, "the pongs waiting in the transport were never counted"
            assert not server._connections, "a transport that never drains was kept"
            assert server._transport_buffered == 0 or not server._over_budget
        finally:
            if ws.transport is not None:
                ws.transport.abort()
            await asyncio.wait_for(server.stop(), 15)

    run(body)
