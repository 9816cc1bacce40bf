"""Helpers for the relay/client key-transparency tests: a real relay on loopback, clients on
temp files, and ways for a test to play a hostile relay."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from securemsg.client import Client
from securemsg.relay.kt import RelayKeyTransparency
from securemsg.relay.server import RelayServer
from securemsg.relay.service import Outcome, RelayService, Session
from securemsg.relay_protocol import frames as rf

T = TypeVar("T")


def run(coro: Awaitable[T], timeout: float = 120.0) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coro

    return asyncio.run(bounded())


async def new_client(relay: RelayServer, path: Path, **kw: Any) -> Client:
    client = await Client.create(
        path, relay.url, relay.trust_root_public, prekey_batch=4, prekey_low_water=2, **kw
    )
    await client.register()
    return client


def kt_of(relay: RelayServer) -> RelayKeyTransparency:
    kt = relay.service.kt
    assert kt is not None
    return kt


def aci_bytes(client: Client) -> bytes:
    return uuid.UUID(client.aci).bytes


async def publish_false_key(relay: RelayServer, aci: bytes, key: bytes) -> int | None:
    """What a compromised relay does to make a substituted key verify: publish it."""

    def go(service: RelayService) -> int | None:
        assert service.kt is not None
        service.kt.store.queue(aci, key)
        return service.publish_kt_epoch(2_000_000_000_000)

    result: int | None = await relay.call(go)
    return result


def rewrite_responses(
    relay: RelayServer, rewrite: Callable[[rf.ClientFrame, rf.Response], rf.Response]
) -> None:
    """Make the relay pass every answer through ``rewrite`` (a hostile relay)."""
    service = relay.service
    real = service.handle

    def handle(session: Session, frame: rf.ClientFrame, now: int) -> Outcome:
        outcome = real(session, frame, now)
        return dataclasses.replace(outcome, response=rewrite(frame, outcome.response))

    service.handle = handle  # type: ignore[method-assign]


def substitute_identity_key(key: bytes) -> Callable[[rf.ClientFrame, rf.Response], rf.Response]:
    """A rewrite for :func:`rewrite_responses`: every fetched bundle carries ``key``."""

    def substitute(frame: rf.ClientFrame, response: rf.Response) -> rf.Response:
        if isinstance(response.body, rf.Bundles):
            bundles = tuple(dataclasses.replace(b, identity_key=key) for b in response.body.bundles)
            return dataclasses.replace(response, body=rf.Bundles(bundles))
        return response

    return substitute
