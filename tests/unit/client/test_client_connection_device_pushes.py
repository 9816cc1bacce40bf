"""RelayConnection sorts the device pushes: a provisioning envelope into ``provisions``, and
``DeviceRemoved`` (or the close code 4003 alone) into ``removed``; both queues end with None."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable

import pytest
from client_harness import run
from websockets.asyncio.server import ServerConnection, serve

from securemsg.client.connection import CLOSE_DEVICE_REMOVED, RelayConnection
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


def test_a_provision_envelope_goes_to_provisions() -> None:
    address = os.urandom(16)

    async def script(ws: ServerConnection) -> None:
        await ws.send(rf.encode_server_frame(rf.ProvisionEnvelope(address, b"sealed")))
        await ws.close(1000)

    async def body() -> None:
        conn = await _against(script)
        pushed = conn.provisions.get_nowait()
        assert pushed is not None and pushed.address == address and pushed.envelope == b"sealed"
        assert conn.provisions.get_nowait() is None
        assert conn.pushes.get_nowait() is None  # nothing went to the message pushes
        assert not conn.removed and not conn.policy_closed

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
