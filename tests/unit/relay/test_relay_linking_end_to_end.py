"""Linked devices over a real relay (WebSocket, SQLite): a new device waits on a
provisioning address past the idle timeout, gets the envelope once, registers as device 2
on the same connection; the primary removes it and its connection is told and closed;
provisioning floods are bounded and leave other clients alone; and nothing of a
provisioning envelope, a linking code or a removed device is left in the relay's files."""

from __future__ import annotations

import asyncio
from pathlib import Path

from relay_harness import NOW, Device, RawClient, registered, relay, run

from securemsg.relay.disclosure import disclose
from securemsg.relay.service import linking_code_digest
from securemsg.relay.store import SqliteRelayStore
from securemsg.relay_protocol import frames as rf

OK = rf.StatusCode.OK


def _sibling(primary: Device, seed: int, device_id: int = 0, code: str = "") -> Device:
    d = Device.new(
        seed,
        device_id=device_id,
        identity=primary.identity,
        aci=primary.aci,
        access_key=primary.access_key,
    )
    d.linking_code = code
    return d


async def _open(url: str) -> tuple[RawClient, rf.ProvisioningAddress]:
    c = await RawClient.open(url)
    r = await c.request(rf.OpenProvisioning())
    assert r.code == OK and isinstance(r.body, rf.ProvisioningAddress), r
    return c, r.body


async def _until_provisioned(c: RawClient) -> rf.ProvisionEnvelope:
    while not c.provisions:
        await c._next_frame()
    return c.provisions[0]


def test_link_over_the_wire_then_remove(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    alice = Device.new(1)
    envelope = b"\x01" + b"E" * 300  # opaque to the relay

    async def body() -> dict[str, object]:
        # short unauthenticated limits: a provisioning connection must outlive them
        async with relay(db, idle_timeout_s=0.3, max_unauthenticated_lifetime_s=0.6) as r:
            phone = await registered(r.url, alice)
            laptop_conn, address = await _open(r.url)
            await asyncio.sleep(1.5)  # a person scans the code: past idle and lifetime
            got = await phone.request(rf.GetLinkingCode())
            assert isinstance(got.body, rf.LinkingCode)
            code = got.body.code
            sent = await phone.request(rf.SendProvisioning(address.address, envelope))
            assert sent.code == OK, sent
            pushed = await _until_provisioned(laptop_conn)
            assert pushed == rf.ProvisionEnvelope(address.address, envelope)
            replay = await phone.request(rf.SendProvisioning(address.address, envelope))
            assert replay.code == rf.StatusCode.NOT_FOUND
            # the same connection registers as the next free device
            laptop = _sibling(alice, 2, code=code)
            reg = await laptop_conn.request(laptop.register(laptop_conn.nonce))
            assert reg.code == OK and reg.body == rf.Registered(2), reg
            await laptop_conn.wait_queue_empty()
            # a message to the account now needs both devices
            bob = Device.new(3)
            bob_conn = await registered(r.url, bob)
            devices = await bob_conn.request(rf.GetDevices(alice.aci, alice.access_key))
            assert isinstance(devices.body, rf.Devices)
            assert [d.device_id for d in devices.body.devices] == [1, 2]
            # the primary removes the laptop: it is told, then closed with 4003
            assert (await phone.request(rf.RemoveDevice(2))).code == OK
            assert await laptop_conn.closed() == 4003
            assert laptop_conn.removed == 1
            # its next login learns it was removed
            laptop.device_id = 2
            again = await RawClient.open(r.url)
            login = await again.request(laptop.authenticate(again.nonce))
            assert login.code == rf.StatusCode.NOT_FOUND
            assert login.message == "device not registered"
            assert await again.closed() == 4001
            # the primary is unaffected
            assert (await phone.request(rf.GetPreKeyCounts())).code == OK
            await phone.close()
            await bob_conn.close()
            return {"code": code, "address": address.address, "laptop": laptop}

    seen = run(body)
    laptop = seen["laptop"]
    assert isinstance(laptop, Device) and laptop.signed is not None
    with SqliteRelayStore.open(db) as store:
        assert [d.device_id for d in store.list_devices(alice.aci)] == [1]
        code = seen["code"]
        assert isinstance(code, str)
        needles = [
            envelope,
            envelope[1:33],
            bytes(seen["address"]),  # type: ignore[arg-type]
            linking_code_digest(code),
            code.encode(),
            laptop.signed.public_key.to_bytes(),
            laptop.pre_keys[0].public_key.to_bytes(),
        ]
        scan = store.scan_residue(needles)
        assert scan.residue == (), scan
        report = disclose(store, alice.aci, scan_files=True)
        assert [d.device_id for d in report.devices] == [1]
        assert report.linking_code_expires is None
        assert report.file_scan is not None and report.file_scan.residue == ()
        text = report.to_text()
        assert "device 1 is the primary" in text and "Open linking code: none" in text
        assert any("provisioning addresses and envelopes" in item for item in report.not_held)


def test_an_unused_linking_code_is_disclosed_and_expires(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    alice = Device.new(1)
    clock = [NOW]

    async def body() -> str:
        async with relay(db, clock=lambda: clock[0]) as r:
            phone = await registered(r.url, alice)
            got = await phone.request(rf.GetLinkingCode())
            assert isinstance(got.body, rf.LinkingCode)
            await phone.close()
            return got.body.code

    code = run(body)
    with SqliteRelayStore.open(db) as store:
        report = disclose(store, alice.aci)
        assert report.linking_code_expires == "2025-06-15T15:16:40.000Z"
        assert code not in report.to_json()
    clock[0] = NOW + 600_000  # the sweep at start deletes it

    async def restart() -> None:
        async with relay(db, clock=lambda: clock[0]):
            pass

    run(restart)
    with SqliteRelayStore.open(db) as store:
        assert store.linking_code_expiry(alice.aci) is None
        scan = store.scan_residue([linking_code_digest(code)])
        assert scan.residue == (), scan


def test_a_provisioning_flood_is_bounded_and_cannot_hold_linking_hostage(tmp_path: Path) -> None:
    """At most ``max_provisioning_addresses`` are open; one more evicts the address that has
    waited longest (its connection is closed, 1008) instead of being refused, so a client
    that opened the whole pool once does not keep everybody else from linking."""
    db = tmp_path / "relay.db"
    alice = Device.new(1)

    async def body() -> None:
        async with relay(db, max_provisioning_addresses=3, registration_burst=10) as r:
            held = [await _open(r.url) for _ in range(3)]  # a flood holds the whole pool
            newcomer, address = await _open(r.url)  # a real new device still gets one
            assert await asyncio.wait_for(held[0][0].closed(), 30) == 1008
            # everyone else is served as before, and the newcomer's address works
            phone = await registered(r.url, alice)
            dead = await phone.request(rf.SendProvisioning(held[0][1].address, b"x"))
            assert dead.code == rf.StatusCode.NOT_FOUND
            sent = await phone.request(rf.SendProvisioning(address.address, b"sealed"))
            assert sent.code == OK, sent
            assert await _until_provisioned(newcomer) == rf.ProvisionEnvelope(
                address.address, b"sealed"
            )
            sealed = await held[1][0].request(
                rf.SendSealed(
                    alice.aci,
                    alice.access_key,
                    1,
                    (rf.OutgoingMessage(1, alice.registration_id, 6, b"sealed"),),
                )
            )
            assert sealed.code == OK
            for c, _ in held[1:]:
                await c.close()
            await newcomer.close()
            await phone.close()

    run(body)


def test_provisioning_address_expiry_closes_its_connection(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"

    async def body() -> None:
        async with relay(db, provisioning_ttl_s=0.5, idle_timeout_s=0.2) as r:
            c, _ = await _open(r.url)
            assert await c.closed() == 1008

    run(body)
