"""Linked devices on a cluster: two relay instances on one PostgreSQL database. A new device
waits on instance A while the primary is on instance B: the envelope crosses over once; a
removal on B closes the removed device's connection on A; an envelope too large for one
notification is refused whatever the configured limit."""

from __future__ import annotations

import asyncio
import base64
import os
from pathlib import Path
from typing import Any

import psycopg
from relay_harness import Device, RawClient, registered, relay, run

from securemsg.relay.pgstore import MAX_NOTIFY_ENVELOPE
from securemsg.relay_protocol import frames as rf

OK = rf.StatusCode.OK


def test_provisioning_and_removal_cross_instances(pg_url: str) -> None:
    alice = Device.new(1)
    envelope = b"\x01" + bytes(range(256)) * 4

    async def body() -> None:
        cfg = {"max_provision_envelope_bytes": 8000}
        async with relay(pg_url, **cfg) as a, relay(pg_url, **cfg) as b:
            phone = await registered(b.url, alice)
            waiting = await RawClient.open(a.url)
            opened = await waiting.request(rf.OpenProvisioning())
            assert isinstance(opened.body, rf.ProvisioningAddress)
            address = opened.body.address
            big = bytes(MAX_NOTIFY_ENVELOPE + 1)
            too_big = await phone.request(rf.SendProvisioning(address, big))
            assert too_big.code == rf.StatusCode.TOO_LARGE
            assert (await phone.request(rf.SendProvisioning(address, envelope))).code == OK
            while not waiting.provisions:
                await waiting._next_frame()
            assert waiting.provisions == [rf.ProvisionEnvelope(address, envelope)]
            # once: a replay through either instance finds nothing
            replay = await phone.request(rf.SendProvisioning(address, envelope))
            assert replay.code == rf.StatusCode.NOT_FOUND
            code = await phone.request(rf.GetLinkingCode())
            assert isinstance(code.body, rf.LinkingCode)
            laptop = Device.new(
                2, identity=alice.identity, aci=alice.aci, access_key=alice.access_key
            )
            laptop.device_id = 0
            laptop.linking_code = code.body.code
            reg = await waiting.request(laptop.register(waiting.nonce))
            assert reg.body == rf.Registered(2), reg
            await waiting.wait_queue_empty()
            # the primary, on B, removes the laptop, connected to A
            assert (await phone.request(rf.RemoveDevice(2))).code == OK
            assert await asyncio.wait_for(waiting.closed(), 30) == 4003
            assert waiting.removed == 1
            await phone.close()
        with psycopg.connect(pg_url) as conn:
            left = conn.execute("SELECT COUNT(*) FROM provisioning_addresses").fetchone()
            assert left == (0,)
            codes = conn.execute("SELECT COUNT(*) FROM linking_codes").fetchone()
            assert codes == (0,)

    run(body)


def test_a_closed_provisioning_connection_leaves_no_address_row(pg_url: str) -> None:
    async def body() -> None:
        async with relay(pg_url) as a:
            c = await RawClient.open(a.url)
            assert (await c.request(rf.OpenProvisioning())).code == OK
            with psycopg.connect(pg_url) as conn:
                count = conn.execute("SELECT COUNT(*) FROM provisioning_addresses").fetchone()
                assert count == (1,)
            await c.close()
            for _ in range(200):  # the relay forgets it on its storage thread (bounded wait)
                with psycopg.connect(pg_url) as conn:
                    count = conn.execute("SELECT COUNT(*) FROM provisioning_addresses").fetchone()
                if count == (0,):
                    break
                await asyncio.sleep(0.05)
            assert count == (0,)

    run(body)


def test_a_crossing_envelope_never_reaches_a_table_or_the_wal(pg_server: Any, pg_url: str) -> None:
    """The envelope is handed over by NOTIFY only: neither it (raw or base64) nor the
    address appears in the server's table or WAL files after a checkpoint; the address's
    digest row lives in an unlogged table, so the WAL never sees it either."""
    alice = Device.new(7)
    envelope = os.urandom(700)
    seen: dict[str, bytes] = {}

    async def body() -> None:
        async with relay(pg_url) as a, relay(pg_url) as b:
            phone = await registered(b.url, alice)
            waiting = await RawClient.open(a.url)
            opened = await waiting.request(rf.OpenProvisioning())
            assert isinstance(opened.body, rf.ProvisioningAddress)
            seen["address"] = opened.body.address
            with psycopg.connect(pg_url, autocommit=True) as conn:
                conn.execute("CHECKPOINT")  # the address's row, if it were logged, now
            sent = await phone.request(rf.SendProvisioning(opened.body.address, envelope))
            assert sent.code == OK
            while not waiting.provisions:
                await waiting._next_frame()
            await waiting.close()
            await phone.close()
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("CHECKPOINT")

    run(body)
    root = Path(pg_server.data)
    needles = [envelope[:48], base64.b64encode(envelope)[:64], seen["address"]]
    wal_seen = False
    for sub in ("base", "global", "pg_wal"):
        for p in (root / sub).rglob("*"):
            if p.is_file():
                wal_seen |= sub == "pg_wal"
                data = p.read_bytes()
                for needle in needles:
                    assert needle not in data, (str(p.relative_to(root)), needle[:8])
    assert wal_seen
