"""A SendMultiRecipient send holds its shared part once in memory, not once per recipient.

The relay keeps every recipient's copy as (own part, one shared object): the body is built
only when an envelope is encoded for a push. Before, ``_send_multi`` built each recipient's
whole received form and kept them all until the batch was answered, so 2 connections x 8
pipelined 272 KB frames to 100 recipients (4.2 MiB sent, no account needed: only the
recipients' access keys) took a relay process from 67 MiB to a 476 MiB peak. The bound here
is the relay's own: its peak RSS grows by less than 100 MiB. The last test checks that the
envelopes pushed are still the whole received forms.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from uuid import UUID

import pytest
from relay_harness import Device, RawClient, run

from securemsg.crypto.rng import SystemRng
from securemsg.protocol.address import ServiceId
from securemsg.protocol.sealed_sender import SealedSenderV2SentMessage
from securemsg.relay.service import RelayService, envelope_of
from securemsg.relay.store import SqliteRelayStore
from securemsg.relay_protocol import frames as rf
from securemsg.wire.sealed_sender import encode_varint

RECIPIENTS = 100
PIPELINED = 8
CONNECTIONS = 2


def _peak_mib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) // 1024
    raise AssertionError("no VmHWM")


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs /proc")
def test_a_multi_recipient_send_does_not_allocate_a_body_per_recipient(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    devices = [Device.new(61_000 + i, n_pre_keys=0, n_kyber=0) for i in range(RECIPIENTS)]
    with SqliteRelayStore.open(db) as store:
        service = RelayService(store, SystemRng())
        now = int(time.time() * 1000)
        for d in devices:
            s = service.new_session()
            out = service.handle(s, rf.ClientFrame(1, d.register(s.nonce)), now)
            assert out.response.code == rf.StatusCode.OK, out.response
    shared = os.urandom(256 * 1024 - 200)  # the received body stays under max_body
    sent = bytearray([0x22]) + encode_varint(RECIPIENTS)
    for d in devices:
        sent += d.aci + bytes([d.device_id]) + d.registration_id.to_bytes(2, "big")
        sent += os.urandom(48)
    payload = bytes(sent + shared)
    access = tuple(rf.RecipientAccess(d.aci, d.access_key) for d in devices)
    frames = [
        rf.encode_client_frame(rf.ClientFrame(i + 1, rf.SendMultiRecipient(payload, access, 1)))
        for i in range(PIPELINED)
    ]

    code = "import sys; from securemsg.cli.main import main; sys.exit(main())"
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "relay", "serve", "--db", str(db), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "relay did not start"
        line = proc.stdout.readline().decode()
        assert line.startswith("relay listening on "), line
        url = line.split()[-1]
        time.sleep(0.5)
        before = _peak_mib(proc.pid)

        async def attack() -> list[int]:
            conns = [await RawClient.open(url) for _ in range(CONNECTIONS)]
            for c in conns:
                for f in frames:
                    await c.ws.send(f)
            codes = []
            for c in conns:
                for _ in range(PIPELINED):
                    data = await asyncio.wait_for(c.ws.recv(), 40)
                    assert isinstance(data, bytes)
                    r = rf.decode_server_frame(data)
                    assert isinstance(r, rf.Response)
                    codes.append(int(r.code))
            for c in conns:
                await c.ws.close()
            return codes

        codes = run(attack)
        assert set(codes) == {int(rf.StatusCode.OK)}, codes
        growth = _peak_mib(proc.pid) - before
        sent_mib = CONNECTIONS * PIPELINED * len(frames[0]) / 2**20
        assert growth < 100, (
            f"relay peak RSS grew by {growth} MiB for {sent_mib:.1f} MiB of SendMultiRecipient"
            f" frames to {RECIPIENTS} recipients ({CONNECTIONS} connections x {PIPELINED})"
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stdout.close() if proc.stdout is not None else None


def test_copies_refer_to_one_shared_part_and_push_whole_received_forms(tmp_path: Path) -> None:
    devices = [Device.new(62_000 + i, n_pre_keys=0, n_kyber=0) for i in range(3)]
    shared = os.urandom(1000)
    sent = bytearray([0x22]) + encode_varint(len(devices))
    for d in devices:
        sent += d.aci + bytes([d.device_id]) + d.registration_id.to_bytes(2, "big")
        sent += os.urandom(48)
    payload = bytes(sent + shared)
    parsed = SealedSenderV2SentMessage.parse(payload)
    access = tuple(rf.RecipientAccess(d.aci, d.access_key) for d in devices)
    with SqliteRelayStore.open(tmp_path / "relay.db") as store:
        service = RelayService(store, SystemRng())
        now = int(time.time() * 1000)
        for d in devices:
            s = service.new_session()
            assert service.handle(s, rf.ClientFrame(1, d.register(s.nonce)), now).response.code == 0
        out = service.handle(
            service.new_session(),
            rf.ClientFrame(1, rf.SendMultiRecipient(payload, access, 1)),
            now,
        )
        assert out.response.code == rf.StatusCode.OK, out.response
        assert len(out.queued) == len(devices)
        first = out.queued[0].shared
        assert first == shared
        assert all(m.shared is first for m in out.queued)  # one object, by reference
        assert all(len(m.body) == 1 + 32 + 16 for m in out.queued)  # the own part only
        for d, m in zip(devices, out.queued, strict=True):
            received = parsed.message_for_recipient(ServiceId.aci(UUID(bytes=d.aci)))
            assert m.size == len(received)
            assert envelope_of(m).body == received
            (stored,) = store.pending(d.aci, d.device_id)
            assert stored.body == received and stored.shared == b""
