"""The relay-wide output budget pauses only the connections that hold the bytes.

When the bytes waiting to be written over all connections exceed ``max_buffered_bytes``,
new connections get HTTP 503 and the connections that hold output stop being read until it
drains; an honest connection that reads its responses is served on. Clients that never read
fill it (unauthenticated ones with pipelined ``GetServerTrustRoot`` requests, or, faster
and so used here, devices whose mailbox is pushed to them): budget 256 KiB, four
non-reading connections. Once they are gone
(aborted), everything they held is released and the relay serves, and stops, normally.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from relay_harness import Device, RawClient, registered, relay, run
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from securemsg.relay_protocol import frames as rf

ATTACKERS = 4
BUDGET = 256 * 1024
NOW = 1_700_000_000_000


async def _non_reader(url: str, port: int, device: Device) -> ClientConnection:
    """Authenticate, then never read: the relay's pushes of the mailbox pile up for it."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel holds little
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    ws = await connect(url, sock=sock, max_queue=1, max_size=rf.MAX_FRAME_SIZE)
    first = rf.decode_server_frame(await asyncio.wait_for(ws.recv(), 10))  # type: ignore[arg-type]
    assert isinstance(first, rf.Challenge)
    await ws.send(rf.encode_client_frame(rf.ClientFrame(1, device.authenticate(first.nonce))))
    return ws


async def _fill(url: str, to: Device, n: int, size: int) -> None:
    anon = await RawClient.open(url)
    for i in range(n):
        body = i.to_bytes(4, "big") + bytes(size - 4)
        out = rf.OutgoingMessage(to.device_id, to.registration_id, 0, body)
        r = await anon.request(rf.SendSealed(to.aci, to.access_key, NOW, (out,)))
        assert r.code == rf.StatusCode.OK, r
    await anon.close()


def _attack(tmp_path: Path, after: bool) -> None:
    async def body() -> None:
        server = relay(
            tmp_path / "r.db",
            clock=lambda: NOW,
            max_buffered_bytes=BUDGET,
            write_timeout_s=3.0 if after else 600.0,
            ping_interval_s=600.0,
            window_bytes=4 * 1024 * 1024,  # more than the kernel's socket buffers take
        )
        await server.start()
        honest = await registered(server.url, Device.new(9001))
        devices = [Device.new(9100 + i) for i in range(ATTACKERS)]
        attackers: list[ClientConnection] = []
        try:
            for d in devices:
                await (await registered(server.url, d)).close()
                await _fill(server.url, d, 12, 250 * 1024)
            for d in devices:
                try:
                    attackers.append(await _non_reader(server.url, server.port, d))
                except InvalidStatus as exc:  # the budget is full already: new ones get 503
                    assert exc.response.status_code == 503
                    break
            loop = asyncio.get_running_loop()
            start = loop.time()
            while loop.time() - start < 30:  # bounded: until the relay's output budget is full
                if server._over_budget:  # outboxes, requests and transports' buffers
                    break
                await asyncio.sleep(0.05)
            stalled_bytes = server._total_buffered + server._transport_buffered
            # The precondition: the non-reading connections did fill the budget.
            assert stalled_bytes > BUDGET, stalled_bytes
            if after:  # the attackers leave; the relay's watchdog aborts what is left
                for ws in attackers:
                    if ws.transport is not None:
                        ws.transport.abort()
            answered = True
            try:
                for _ in range(3):  # the first is read already; the next ones are the test
                    r = await asyncio.wait_for(
                        honest.request(rf.GetPreKeyCounts()), 15 if after else 8
                    )
                    assert r.code == rf.StatusCode.OK
            except TimeoutError:
                answered = False
            when = "after the attackers left" if after else "while"
            assert answered, (
                f"an honest authenticated client got no answer {when}:"
                f" {ATTACKERS} non-reading connections held {stalled_bytes}"
                f" bytes of the relay's {BUDGET} bytes output budget"
            )
        finally:
            for ws in attackers:
                if ws.transport is not None:
                    ws.transport.abort()
            honest.ws.transport.abort()
            await asyncio.wait_for(server.stop(), 15)  # does not hang on held bytes
            assert server._total_buffered == 0

    run(body)


def test_clients_that_never_read_do_not_stall_honest_clients(tmp_path: Path) -> None:
    _attack(tmp_path, after=False)


def test_the_relay_serves_again_once_the_non_reading_clients_are_gone(tmp_path: Path) -> None:
    _attack(tmp_path, after=True)
