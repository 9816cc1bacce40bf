"""RelayConnection sorts the device pushes: a provisioning envelope into ``provisions``, and
``DeviceRemoved`` (or the close code 4003 alone) into ``removed``; both queues end with None."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable

import pytest
from client_harness import run
from websockets.asyncio.server import ServerConnection, serve

from securemsg.client.connection import (
    CLOSE_DEVICE_REMOVED,
    MAX_UNREAD_PUSH_BYTES,
    RelayConnection,
)
from securemsg.relay_protocol import frames as rf

Script = Callable[[ServerConnection], Awaitable[None]]


async def _against(script: Script) -> RelayConnection:
    """Connect to a fake relay on loopback that sends a challenge, then runs ``script``;
    returns the connection once it is closed."""

    async def handler(ws: ServerConnection) -> None:
        await ws.send(rf.encode_server_frame(rf.Challenge(os.urandom(32))))
        await script(ws)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        conn = await RelayConnection.open(f"ws://127.0.0.1:{port}")
        async with asyncio.timeout(30):
            await conn.closed.wait()
        await conn.close()
        return conn


async def _answer_open_provisioning(ws: ServerConnection, address: bytes) -> None:
    request = rf.decode_client_frame(await ws.recv())  # type: ignore[arg-type]
    assert isinstance(request.body, rf.OpenProvisioning)
    opened = rf.ProvisioningAddress(address, 1)
    response = rf.Response(request.request_id, rf.StatusCode.OK, "", opened)
    await ws.send(rf.encode_server_frame(response))


async def _against_provisioning(script: Script) -> RelayConnection:
    """As :func:`_against`, but the connection opens a provisioning address first."""

    async def handler(ws: ServerConnection) -> None:
        await ws.send(rf.encode_server_frame(rf.Challenge(os.urandom(32))))
        await script(ws)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        conn = await RelayConnection.open(f"ws://127.0.0.1:{port}")
        await conn.request(rf.OpenProvisioning())
        async with asyncio.timeout(30):
            await conn.closed.wait()
        await conn.close()
        return conn


def test_a_provision_envelope_goes_to_provisions() -> None:
    address = os.urandom(16)

    async def script(ws: ServerConnection) -> None:
        await _answer_open_provisioning(ws, address)
        await ws.send(rf.encode_server_frame(rf.ProvisionEnvelope(address, b"sealed")))
        await ws.close(1000)

    async def body() -> None:
        conn = await _against_provisioning(script)
        pushed = conn.provisions.get_nowait()
        assert pushed is not None and pushed.address == address and pushed.envelope == b"sealed"
        assert conn.provisions.get_nowait() is None
        assert conn.pushes.get_nowait() is None  # nothing went to the message pushes
        assert not conn.removed and not conn.policy_closed

    run(body())


@pytest.mark.parametrize("case", ["not opened", "another address", "a second one"])
def test_a_provision_envelope_nobody_waits_for_drops_the_connection(case: str) -> None:
    """A relay may push one provisioning envelope, for the address this connection opened.
    Anything else is a protocol violation: the connection is dropped and nothing is kept
    (a hostile relay pushing them to any connection would grow the client's memory)."""
    address = os.urandom(16)
    pushed = rf.ProvisionEnvelope(os.urandom(16) if case == "another address" else address, b"x")

    async def script(ws: ServerConnection) -> None:
        if case != "not opened":
            await _answer_open_provisioning(ws, address)
        if case == "a second one":
            await ws.send(rf.encode_server_frame(pushed))
        for _ in range(3):
            await ws.send(rf.encode_server_frame(pushed))
        await ws.wait_closed()  # the client hangs up, not the relay

    async def body() -> None:
        opener = _against if case == "not opened" else _against_provisioning
        conn = await opener(script)
        kept = []
        while (item := conn.provisions.get_nowait()) is not None:
            kept.append(item)
        assert kept == ([pushed] if case == "a second one" else [])

    run(body())


def test_a_relay_pushing_far_past_any_window_is_cut_off() -> None:
    """An honest relay pushes at most its flow-control window of unacknowledged envelopes
    (64 and 1 MiB by default). The connection holds at most MAX_UNREAD_PUSH_BYTES of unread
    bodies: a relay that pushes on regardless is dropped, its pushes no longer read."""
    body_bytes = bytes(256 * 1024)

    async def script(ws: ServerConnection) -> None:
        for n in range(MAX_UNREAD_PUSH_BYTES // len(body_bytes) + 8):
            envelope = rf.Envelope(n.to_bytes(16, "big"), 1, None, 0, 1, 1, body_bytes)
            await ws.send(rf.encode_server_frame(envelope))
        await ws.wait_closed()

    async def body() -> None:
        conn = await _against(script)
        held = 0
        while (item := conn.pushes.get_nowait()) is not None:
            assert isinstance(item, rf.Envelope)
            held += len(item.body)
        assert held <= MAX_UNREAD_PUSH_BYTES

    run(body())


@pytest.mark.parametrize("push", [True, False])
def test_device_removed_by_push_or_by_close_code(push: bool) -> None:
    async def script(ws: ServerConnection) -> None:
        if push:
            await ws.send(rf.encode_server_frame(rf.DeviceRemoved()))
        await ws.close(CLOSE_DEVICE_REMOVED if not push else 1000)

    async def body() -> None:
        conn = await _against(script)
        assert conn.removed
        assert conn.pushes.get_nowait() is None

    run(body())


def test_a_policy_close_is_told_apart() -> None:
    async def script(ws: ServerConnection) -> None:
        await ws.close(1008)

    async def body() -> None:
        conn = await _against(script)
        assert conn.policy_closed and not conn.removed

    run(body())
