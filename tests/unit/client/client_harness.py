"""Shared helpers for the client tests: an embedded relay and clients on temp files."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from securemsg.client import Client
from securemsg.relay.server import RelayServer

T = TypeVar("T")

BATCH = 4
LOW_WATER = 2


def run(coro: Awaitable[T], timeout: float = 60.0) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


async def new_client(relay: RelayServer, path: Path, **kw: object) -> Client:
    client = await Client.create(
        path,
        relay.url,
        relay.trust_root_public,
        prekey_batch=BATCH,
        prekey_low_water=LOW_WATER,
        **kw,  # type: ignore[arg-type]
    )
    await client.register()
    return client


async def with_relay(tmp: Path, body: Callable[[RelayServer], Awaitable[T]]) -> T:
    async with RelayServer(tmp / "relay.db") as relay:
        return await body(relay)


def introduce(*clients: Client) -> None:
    """Every client learns every other's contact card (so each may send to each sealed)."""
    for x in clients:
        for y in clients:
            if x is not y:
                x.add_contact(y.contact_card)
