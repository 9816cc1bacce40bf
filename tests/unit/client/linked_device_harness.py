"""Extra devices of an account for the client tests, linked the real way: the new device
shows a linking code (Client.link), the primary approves it (Client.approve_link), and the
relay assigns the next free device id."""

from __future__ import annotations

import asyncio
from pathlib import Path

from client_harness import BATCH, LOW_WATER

from securemsg.client import Client
from securemsg.relay.server import RelayServer


async def add_device(
    primary: Client, relay: RelayServer, path: Path, device_id: int, **kw: object
) -> Client:
    """Link a new device of ``primary``'s account at ``path``; it must get ``device_id``."""
    codes: asyncio.Queue[str] = asyncio.Queue()
    task = asyncio.create_task(
        Client.link(
            path,
            relay.url,
            on_code=codes.put_nowait,
            trust_root=relay.trust_root_public,
            timeout_s=60.0,
            prekey_batch=BATCH,
            prekey_low_water=LOW_WATER,
            **kw,  # type: ignore[arg-type]
        )
    )
    try:
        async with asyncio.timeout(60):
            code = await codes.get()
        await primary.approve_link(code)
        client = await task
    except BaseException:
        task.cancel()
        raise
    assert client.device_id == device_id
    return client
