"""Findings of the relay security review, each pinned by a test.

* A mailbox is capped in bytes as well as in messages: 10,000 envelopes of 256 KiB (2.5 GiB)
  would otherwise be accepted for one device, written to disk and read into memory at once
  when it connects.
* The relay stops reading a connection's requests while that connection is not reading its
  responses: an unauthenticated client sending small requests and never reading would
  otherwise grow the relay's outbound queue without bound.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

from relay_harness import NOW, Device, run

from securemsg.crypto.rng import SystemRng
from securemsg.relay.server import RelayServer
from securemsg.relay.service import RelayConfig, RelayService, Session
from securemsg.relay.store import SqliteRelayStore
from securemsg.relay_protocol import frames as rf


def _register(service: RelayService, device: Device) -> Session:
    s = service.new_session()
    out = service.handle(s, rf.ClientFrame(1, device.register(s.nonce)), NOW)
    assert out.response.code == rf.StatusCode.OK, out.response
    return s


def test_a_mailbox_is_capped_in_bytes_and_a_refused_send_queues_nothing(tmp_path: Path) -> None:
    assert RelayConfig().max_mailbox_bytes <= 256 * 1024 * 1024
    with SqliteRelayStore.open(tmp_path / "r.db") as store:
        service = RelayService(store, SystemRng(), RelayConfig(max_mailbox_bytes=1000))
        bob = Device.new(1)
        _register(service, bob)
        anon = service.new_session()

        def send(size: int) -> rf.StatusCode:
            msg = rf.OutgoingMessage(1, bob.registration_id, 6, b"x" * size)
            frame = rf.ClientFrame(2, rf.SendSealed(bob.aci, bob.access_key, 1, (msg,)))
            return service.handle(anon, frame, NOW).response.code

        assert send(400) == rf.StatusCode.OK
        assert send(400) == rf.StatusCode.OK
        assert send(400) == rf.StatusCode.RATE_LIMITED  # would exceed 1000 bytes
        assert len(store.pending(bob.aci, 1)) == 2
        assert send(200) == rf.StatusCode.OK  # exactly at the cap is fine


class _StuckSocket:
    """A peer that sends many requests and never reads: every send blocks forever."""

    transport = None

    def __init__(self, frames: list[bytes]) -> None:
        self.frames = frames
        self.consumed = 0
        self._never = asyncio.Event()

    async def recv(self) -> bytes:
        if self.consumed == len(self.frames):
            await self._never.wait()
        self.consumed += 1
        return self.frames[self.consumed - 1]

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._gen()

    async def _gen(self) -> AsyncIterator[bytes]:
        for f in self.frames:
            self.consumed += 1
            yield f

    async def send(self, data: bytes) -> None:
        await self._never.wait()

    async def close(self, code: int = 1000) -> None:
        return None


def test_the_relay_stops_reading_a_connection_that_does_not_read(tmp_path: Path) -> None:
    frames = [
        rf.encode_client_frame(rf.ClientFrame(i + 1, rf.GetServerTrustRoot())) for i in range(5000)
    ]

    async def body() -> None:
        config = RelayConfig(max_outbox_bytes=20_000, max_unauthenticated_outbox_bytes=20_000)
        server = RelayServer(tmp_path / "r.db", config=config)
        await server.start()
        try:
            peer = _StuckSocket(frames)
            task = asyncio.create_task(server._handle(peer))  # type: ignore[arg-type]
            for _ in range(200):  # until the outbox is over its cap (bounded)
                if server._connections and next(iter(server._connections)).queued_bytes > 20_000:
                    break
                await asyncio.sleep(0.05)
            seen = peer.consumed
            for _ in range(20):
                await asyncio.sleep(0.01)
            assert not task.done()
            assert 0 < peer.consumed == seen < 1000  # it stopped reading near the outbox cap
            (conn,) = server._connections
            assert conn.queued_bytes <= 20_000 + rf.MAX_FRAME_SIZE
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        finally:
            await server.stop()

    run(body)
