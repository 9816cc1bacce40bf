"""Linked devices in the relay's request logic (RelayService over a SQLite store): linking
codes, registering device N, removal, provisioning addresses, and every hostile case
refused with a status that changes nothing."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from relay_harness import NOW, Device

from securemsg.crypto.rng import DeterministicRng
from securemsg.relay.service import Outcome, RelayConfig, RelayService, Session
from securemsg.relay.store import SqliteRelayStore
from securemsg.relay_protocol import frames as rf

OK = rf.StatusCode.OK


class Relay:
    """A RelayService over a real SQLite store, request by request through the codec."""

    def __init__(self, path: Path, **cfg: Any) -> None:
        self.store = SqliteRelayStore.open(path)
        self.svc = RelayService(
            self.store, DeterministicRng(b"linked-devices" * 3), RelayConfig(**cfg)
        )
        self._rid = 0

    def ask(self, session: Session, body: rf.Request, now: int = NOW) -> Outcome:
        self._rid += 1
        frame = rf.decode_client_frame(rf.encode_client_frame(rf.ClientFrame(self._rid, body)))
        return self.svc.handle(session, frame, now)

    def register(self, device: Device, now: int = NOW) -> tuple[Session, Outcome]:
        s = self.svc.new_session()
        return s, self.ask(s, device.register(s.nonce), now)

    def session_of(self, device: Device, now: int = NOW) -> Session:
        s = self.svc.new_session()
        out = self.ask(s, device.authenticate(s.nonce), now)
        assert out.response.code == OK, out.response
        return s

    def code(self, primary: Session, now: int = NOW) -> str:
        out = self.ask(primary, rf.GetLinkingCode(), now)
        assert isinstance(out.response.body, rf.LinkingCode), out.response
        return out.response.body.code

    def devices(self, device: Device) -> list[int]:
        return [d.device_id for d in self.store.list_devices(device.aci)]


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[Relay]:
    r = Relay(tmp_path / "relay.db")
    yield r
    r.store.close()


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


def test_a_primary_links_a_device_that_gets_the_next_free_id(relay: Relay) -> None:
    alice = Device.new(1)
    s1, out = relay.register(alice)
    assert out.response.code == OK and out.response.body == rf.Registered(1)
    code = relay.ask(s1, rf.GetLinkingCode()).response.body
    assert isinstance(code, rf.LinkingCode)
    assert len(code.code) == 24 and code.code.isascii()
    assert code.expires_at_ms == NOW + 600_000
    laptop = _sibling(alice, 2, code=code.code)
    s2, out = relay.register(laptop)
    assert out.response.code == OK and out.response.body == rf.Registered(2)
    assert out.authenticated and s2.device_id == 2 and s2.aci == alice.aci
    assert relay.devices(alice) == [1, 2]
    # the laptop is a normal device now: it authenticates as device 2 and sees both devices
    laptop.device_id = 2
    s = relay.session_of(laptop)
    devices = relay.ask(s, rf.GetDevices(alice.aci)).response.body
    assert isinstance(devices, rf.Devices)
    assert [d.device_id for d in devices.devices] == [1, 2]
    # the code was single use
    again = _sibling(alice, 3, code=code.code)
    _, out = relay.register(again)
    assert out.response.code == rf.StatusCode.FORBIDDEN and out.close
    assert relay.devices(alice) == [1, 2]
    # an explicit free id with a fresh code
    explicit = _sibling(alice, 4, device_id=7, code=relay.code(s1))
    _, out = relay.register(explicit)
    assert out.response.body == rf.Registered(7)
    assert relay.devices(alice) == [1, 2, 7]


@pytest.mark.parametrize(
    "case", ["no code", "wrong code", "expired", "another account's code", "replaced", "id 0"]
)
def test_linking_refusals_change_nothing(relay: Relay, case: str) -> None:
    alice, bob = Device.new(1), Device.new(2)
    s1, _ = relay.register(alice)
    sb, _ = relay.register(bob)
    code = relay.code(s1)
    now = NOW
    device = _sibling(alice, 3, device_id=2, code=code)
    expected = rf.StatusCode.FORBIDDEN
    if case == "no code":
        device.linking_code = ""
    elif case == "wrong code":
        device.linking_code = "A" * 24
    elif case == "expired":
        now = NOW + 600_000
    elif case == "another account's code":
        device.linking_code = relay.code(sb)
    elif case == "replaced":
        relay.code(s1)  # a second code replaces the first
    else:
        device = _sibling(alice, 3, device_id=0, code="")
        expected = rf.StatusCode.BAD_REQUEST
    before = relay.store.linking_code_expiry(alice.aci)
    s, out = relay.register(device, now)
    assert out.response.code == expected, out.response
    assert out.close and not out.authenticated and s.aci is None
    assert relay.devices(alice) == [1]
    assert relay.store.all_keys(alice.aci, 2)["signed_pre_keys"] == []
    assert relay.store.linking_code_expiry(alice.aci) == before  # not spent


def test_only_the_primary_links_and_unlinks(relay: Relay) -> None:
    alice = Device.new(1)
    s1, _ = relay.register(alice)
    _, linked = relay.register(_sibling(alice, 2, code=relay.code(s1)))
    assert linked.response.body == rf.Registered(2)
    laptop = _sibling(alice, 2, device_id=2)
    s2 = relay.session_of(laptop)
    assert relay.ask(s2, rf.GetLinkingCode()).response.code == rf.StatusCode.FORBIDDEN
    assert relay.ask(s2, rf.RemoveDevice(2)).response.code == rf.StatusCode.FORBIDDEN
    assert relay.devices(alice) == [1, 2]
    # neither without authentication
    anon = relay.svc.new_session()
    for body in (rf.GetLinkingCode(), rf.RemoveDevice(2), rf.SendProvisioning(bytes(16), b"e")):
        assert relay.ask(anon, body).response.code == rf.StatusCode.UNAUTHENTICATED
    # the primary cannot remove itself, a device that does not exist, or an id out of range
    assert relay.ask(s1, rf.RemoveDevice(1)).response.code == rf.StatusCode.BAD_REQUEST
    assert relay.ask(s1, rf.RemoveDevice(128)).response.code == rf.StatusCode.BAD_REQUEST
    assert relay.ask(s1, rf.RemoveDevice(5)).response.code == rf.StatusCode.NOT_FOUND
    assert relay.devices(alice) == [1, 2]


def test_linking_codes_are_rate_limited_per_account(tmp_path: Path) -> None:
    relay = Relay(tmp_path / "r.db", linking_code_burst=2, linking_code_refill_per_s=1 / 60)
    alice, bob = Device.new(1), Device.new(2)
    s1, _ = relay.register(alice)
    sb, _ = relay.register(bob)
    relay.code(s1)
    relay.code(s1)
    out = relay.ask(s1, rf.GetLinkingCode())
    assert out.response.code == rf.StatusCode.RATE_LIMITED
    relay.code(sb)  # another account is not held back
    relay.code(s1, NOW + 60_000)  # one a minute comes back
    relay.store.close()


def test_removal_deletes_the_device_and_refuses_it_afterwards(relay: Relay) -> None:
    alice, bob = Device.new(1), Device.new(2)
    s1, _ = relay.register(alice)
    sb, _ = relay.register(bob)
    relay.register(_sibling(alice, 3, code=relay.code(s1)))
    laptop = _sibling(alice, 3, device_id=2)
    s2 = relay.session_of(laptop)
    # Bob sends to both of Alice's devices; the laptop's copy waits in its mailbox
    outs = tuple(
        rf.OutgoingMessage(d.device_id, d.registration_id, 1, b"hello" * 20)
        for d in relay.store.list_devices(alice.aci)
    )
    assert relay.ask(sb, rf.SendMessage(alice.aci, 1, outs)).response.code == OK
    assert relay.store.account_queued_bytes(alice.aci) == 200
    removed = relay.ask(s1, rf.RemoveDevice(2))
    assert removed.response.code == OK and removed.removed == (alice.aci, 2)
    assert relay.devices(alice) == [1]
    assert relay.store.pending(alice.aci, 2) == []
    assert all(not rows for rows in relay.store.all_keys(alice.aci, 2).values())
    assert relay.store.account_queued_bytes(alice.aci) == 100
    # a request of the removed device that was already waiting is refused, and it closes
    late = relay.ask(s2, rf.GetPreKeyCounts())
    assert late.response.code == rf.StatusCode.UNAUTHENTICATED and late.close
    # its next Authenticate (a valid proof) learns it is not registered
    s = relay.svc.new_session()
    out = relay.ask(s, laptop.authenticate(s.nonce))
    assert out.response.code == rf.StatusCode.NOT_FOUND and out.close
    assert out.response.message == "device not registered"
    # a bad proof for it, or any proof for an unknown account, still says UNAUTHENTICATED
    s = relay.svc.new_session()
    bad = rf.Authenticate(alice.aci, 2, bytes(64))
    assert relay.ask(s, bad).response.code == rf.StatusCode.UNAUTHENTICATED
    s = relay.svc.new_session()
    stranger = dataclasses.replace(laptop, aci=b"\x42" * 16)
    assert relay.ask(s, stranger.authenticate(s.nonce)).response.code == (
        rf.StatusCode.UNAUTHENTICATED
    )
    # a send that still lists it gets "extra"; without it, it goes through
    stale = relay.ask(sb, rf.SendMessage(alice.aci, 2, outs)).response
    assert stale.code == rf.StatusCode.CONFLICT
    assert stale.body == rf.SendResult((rf.MismatchedDevices(alice.aci, (), (2,), ()),))
    assert relay.ask(sb, rf.SendMessage(alice.aci, 3, outs[:1])).response.code == OK
    assert len(relay.store.pending(alice.aci, 1)) == 2
    # removing it again: it does not exist
    assert relay.ask(s1, rf.RemoveDevice(2)).response.code == rf.StatusCode.NOT_FOUND
    # a device linked later under the same id is a new device, welcome
    relay.register(_sibling(alice, 5, code=relay.code(s1)))
    again = _sibling(alice, 5, device_id=2)
    s = relay.session_of(again)
    assert relay.ask(s, rf.GetPreKeyCounts()).response.code == OK


def test_provisioning_address_is_delivered_once(relay: Relay) -> None:
    alice = Device.new(1)
    s1, _ = relay.register(alice)
    waiting = relay.svc.new_session()
    opened = relay.ask(waiting, rf.OpenProvisioning())
    address = opened.response.body
    assert isinstance(address, rf.ProvisioningAddress)
    assert opened.provisioning_opened == address.address
    assert address.expires_at_ms == NOW + 600_000
    sent = relay.ask(s1, rf.SendProvisioning(address.address, b"\x01sealed"))
    assert sent.response.code == OK
    assert sent.provision == (address.address, b"\x01sealed")
    replay = relay.ask(s1, rf.SendProvisioning(address.address, b"\x01sealed"))
    assert replay.response.code == rf.StatusCode.NOT_FOUND and replay.provision is None
    # the waiting connection may still register (its challenge is unused)
    _, out = relay.register(_sibling(alice, 2, code=relay.code(s1)))
    assert out.response.body == rf.Registered(2)


def test_provisioning_refusals(tmp_path: Path) -> None:
    relay = Relay(tmp_path / "r.db", max_provisioning_addresses=2, max_provision_envelope_bytes=64)
    alice = Device.new(1)
    s1, _ = relay.register(alice)
    # not on an authenticated connection, nor twice on one
    assert relay.ask(s1, rf.OpenProvisioning()).response.code == rf.StatusCode.BAD_REQUEST
    a = relay.svc.new_session()
    first = relay.ask(a, rf.OpenProvisioning()).response.body
    assert isinstance(first, rf.ProvisioningAddress)
    assert relay.ask(a, rf.OpenProvisioning()).response.code == rf.StatusCode.CONFLICT
    b = relay.svc.new_session()
    assert relay.ask(b, rf.OpenProvisioning()).response.code == OK
    c = relay.svc.new_session()
    full = relay.ask(c, rf.OpenProvisioning())
    # full: the address that waited longest makes room (the server closes its connection);
    # refusing the newcomer would let one client hold every address
    assert full.response.code == OK and full.provisioning_opened == c.provisioning
    assert full.provisioning_evicted == first.address
    evicted = relay.ask(s1, rf.SendProvisioning(first.address, b"x"))
    assert evicted.response.code == rf.StatusCode.NOT_FOUND
    # a connection waiting on an address may still authenticate (or register)
    assert relay.ask(a, alice.authenticate(a.nonce)).response.code == OK
    # sizes
    assert c.provisioning is not None
    addr = c.provisioning
    too_big = relay.ask(s1, rf.SendProvisioning(addr, bytes(65)))
    assert too_big.response.code == rf.StatusCode.TOO_LARGE and too_big.provision is None
    empty = relay.ask(s1, rf.SendProvisioning(addr, b""))
    assert empty.response.code == rf.StatusCode.BAD_REQUEST
    unknown = relay.ask(s1, rf.SendProvisioning(bytes(16), b"x"))
    assert unknown.response.code == rf.StatusCode.NOT_FOUND
    # expired: not deliverable, and its slot is reclaimed without evicting anybody
    late = relay.ask(s1, rf.SendProvisioning(addr, b"x"), NOW + 600_000)
    assert late.response.code == rf.StatusCode.NOT_FOUND
    e = relay.svc.new_session()
    reclaimed = relay.ask(e, rf.OpenProvisioning(), NOW + 600_000)
    assert reclaimed.response.code == OK and reclaimed.provisioning_evicted is None
    # a closed connection's address is forgotten: room for another, and nothing to deliver to
    relay.svc.forget_provisioning(e.provisioning or b"")
    d = relay.svc.new_session()
    assert relay.ask(d, rf.OpenProvisioning(), NOW + 600_000).response.code == OK
    assert e.provisioning is not None
    gone = relay.ask(s1, rf.SendProvisioning(e.provisioning, b"x"), NOW + 600_000)
    assert gone.response.code == rf.StatusCode.NOT_FOUND
    relay.store.close()


def test_sweep_deletes_expired_linking_codes(relay: Relay) -> None:
    alice = Device.new(1)
    s1, _ = relay.register(alice)
    relay.code(s1)
    assert relay.store.linking_code_expiry(alice.aci) == NOW + 600_000
    relay.svc.sweep(NOW + 599_999)
    assert relay.store.linking_code_expiry(alice.aci) is not None
    relay.svc.sweep(NOW + 600_000)
    assert relay.store.linking_code_expiry(alice.aci) is None
