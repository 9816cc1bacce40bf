"""The client SDK keeps the event loop responsive while it receives a backlog of 1000 messages.

The relay and the sending client run on their own event loop in another thread (so that what
is measured is the receiving client alone). Bob's client connects to a backlog of 1000 messages
on a real relay over loopback and receives them all while a ticker task on Bob's loop sleeps
1 ms at a time and records the largest delay between two ticks. The figure is printed (and
recorded as the test's ``event_loop_max_lag_ms`` property); the assertion is only a generous
bound, never a timing target.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from securemsg.client import Client
from securemsg.relay.server import RelayServer

T = TypeVar("T")
MESSAGES = 1000


class _OtherLoop:
    """An event loop in a daemon thread, for the relay and the sender."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    async def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.loop))

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=30)
        if not self.thread.is_alive():
            self.loop.close()


@pytest.fixture
def other_loop() -> Iterator[_OtherLoop]:
    other = _OtherLoop()
    try:
        yield other
    finally:
        other.stop()


def test_receiving_1000_messages_keeps_the_event_loop_responsive(
    tmp_path: Path, other_loop: _OtherLoop, record_property: Any
) -> None:
    relay = RelayServer(tmp_path / "relay.db")
    state: dict[str, Any] = {}

    async def start_relay_and_alice() -> None:
        await relay.start()
        alice = await Client.create(
            tmp_path / "alice.db", relay.url, relay.trust_root_public, prekey_batch=4
        )
        await alice.register()
        state["alice"] = alice

    async def alice_sends(bob_aci: str) -> None:
        alice: Client = state["alice"]
        for i in range(MESSAGES):
            await alice.send_text(bob_aci, f"message {i}", sealed=False, allow_identified=True)

    async def stop_relay_and_alice() -> None:
        alice: Client | None = state.get("alice")
        if alice is not None:
            await alice.close()
        await relay.stop()

    async def body() -> float:
        await other_loop.run(start_relay_and_alice())
        bob = await Client.create(
            tmp_path / "bob.db", relay.url, relay.trust_root_public, prekey_batch=4
        )
        try:
            await bob.register()
            await bob.close()  # offline: the messages wait in the relay's mailbox
            await other_loop.run(alice_sends(bob.aci))
            bob = await Client.open(tmp_path / "bob.db")

            loop = asyncio.get_running_loop()
            stop = asyncio.Event()
            worst = 0.0

            async def ticker() -> None:
                nonlocal worst
                last = loop.time()
                while not stop.is_set():
                    await asyncio.sleep(0.001)
                    now = loop.time()
                    worst = max(worst, now - last)
                    last = now

            tick = loop.create_task(ticker())
            await bob.connect()
            texts = []
            for _ in range(MESSAGES):
                message = await bob.receive(timeout=120)
                assert message is not None, "a message did not arrive"
                texts.append(message.text)
            stop.set()
            await tick
            assert texts == [f"message {i}" for i in range(MESSAGES)]
            assert bob.errors == 0
            return worst
        finally:
            await bob.close()
            await other_loop.run(stop_relay_and_alice())

    async def bounded() -> float:
        async with asyncio.timeout(600):
            return await body()

    worst = asyncio.run(bounded())
    record_property("event_loop_max_lag_ms", round(worst * 1000, 1))
    print(
        f"\nevent loop: max delay between 1 ms ticks, receiving {MESSAGES}: {worst * 1000:.1f} ms"
    )
    assert worst < 1.0, f"the event loop stalled for {worst:.3f} s"
