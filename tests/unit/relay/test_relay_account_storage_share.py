"""One account cannot take the relay's whole storage budget, and identified sends have a rate.

``max_total_queued_bytes`` bounds the disk; ``max_account_queued_bytes`` bounds one recipient
account's share of it (all its devices together). Without the share, one free account of 127
devices at their 64 MiB mailbox cap was entitled to almost 8 GiB, and identified self-sends
to sibling devices that never connect stopped every send on the relay (``RATE_LIMITED``
"relay storage full") for the 30 days until expiry. Identified sends also have a byte rate
per sending device (``identified_bytes_burst`` / ``identified_bytes_per_s``).

The first test scales the limits down (mailbox 256 KiB, relay 1 MiB, account share in the
defaults' ratio to the relay budget) so it runs in a second.
"""

from __future__ import annotations

import os
from pathlib import Path

from relay_harness import NOW, Device, linking_code

from securemsg.crypto.rng import SystemRng
from securemsg.limits import MAX_DEVICE_ID
from securemsg.relay.service import RelayConfig, RelayService, Session
from securemsg.relay.store import EnqueueResult, QueuedMessage, SqliteRelayStore
from securemsg.relay_protocol import frames as rf

MAILBOX = 256 * 1024
RELAY_BUDGET = 1024 * 1024
BODY = 60 * 1024
_DEFAULTS = RelayConfig()
ACCOUNT_SHARE = (
    RELAY_BUDGET * _DEFAULTS.max_account_queued_bytes // _DEFAULTS.max_total_queued_bytes
)


def _register(service: RelayService, device: Device) -> Session:
    s = service.new_session()
    out = service.handle(s, rf.ClientFrame(1, device.register(s.nonce)), NOW)
    assert out.response.code == rf.StatusCode.OK, out.response
    return s


def test_one_account_filling_its_devices_leaves_room_for_everyone_else(tmp_path: Path) -> None:
    cfg = RelayConfig(
        max_mailbox_bytes=MAILBOX,
        max_total_queued_bytes=RELAY_BUDGET,
        max_account_queued_bytes=ACCOUNT_SHARE,
        linking_code_burst=10,
    )
    with SqliteRelayStore.open(tmp_path / "relay.db") as store:
        service = RelayService(store, SystemRng(), cfg)
        first = Device.new(8100)
        siblings = [
            Device.new(8100 + k, device_id=k, identity=first.identity, aci=first.aci)
            for k in range(2, 8)
        ]
        attacker = _register(service, first)
        for d in siblings:
            d.linking_code = linking_code(service, first)
            _register(service, d)
        # Identified self-sends to the sibling devices (never read) until refused, halving
        # the body on each refusal to top the share off.
        rid, refused, size = 10, None, BODY
        for _ in range(400):  # bounded
            for d in siblings:
                msg = rf.OutgoingMessage(
                    d.device_id, d.registration_id, rf.EnvelopeType.CIPHERTEXT, os.urandom(size)
                )
                others = tuple(
                    rf.OutgoingMessage(o.device_id, o.registration_id, 1, b"x")
                    for o in siblings
                    if o is not d
                )
                rid += 1
                out = service.handle(
                    attacker,
                    rf.ClientFrame(rid, rf.SendMessage(first.aci, NOW, (msg, *others))),
                    NOW,
                )
                if out.response.code != rf.StatusCode.OK:
                    assert out.response.code == rf.StatusCode.RATE_LIMITED
                    refused = out.response.message
            if refused is not None and size == 1:
                break
            if refused is not None:
                size = max(1, size // 2)
        assert refused == "recipient storage full"
        assert 0 < store.account_queued_bytes(first.aci) <= ACCOUNT_SHARE
        assert store.queued_bytes() < RELAY_BUDGET

        alice, bob = Device.new(8201), Device.new(8202)
        a = _register(service, alice)
        _register(service, bob)
        hello = rf.OutgoingMessage(1, bob.registration_id, rf.EnvelopeType.CIPHERTEXT, b"hi" * 50)
        out = service.handle(a, rf.ClientFrame(1, rf.SendMessage(bob.aci, NOW, (hello,))), NOW)
        assert out.response.code == rf.StatusCode.OK, out.response


def test_one_accounts_share_is_a_small_part_of_the_relay_budget_by_default() -> None:
    cfg = RelayConfig()
    assert cfg.max_account_queued_bytes < MAX_DEVICE_ID * cfg.max_mailbox_bytes
    # It takes 32 accounts filled to their share to exhaust the relay (docs/relay-protocol.md).
    assert cfg.max_total_queued_bytes // cfg.max_account_queued_bytes >= 32


def test_the_account_share_frees_up_with_acks_and_expiry(tmp_path: Path) -> None:

    def msg(n: int, to: bytes, at: int, device: int = 1) -> QueuedMessage:
        return QueuedMessage(n.to_bytes(16, "big"), to, device, 1, None, 0, 0, at, bytes(100))

    with SqliteRelayStore.open(tmp_path / "relay.db") as store:
        service = RelayService(store, SystemRng())
        first, second = Device.new(8401), Device.new(8402)
        for d in (first, second):
            _register(service, d)
        linked = Device.new(8404, device_id=2, identity=first.identity, aci=first.aci)
        linked.linking_code = linking_code(service, first)
        _register(service, linked)
        aci, other = first.aci, second.aci
        share = 250
        assert store.enqueue(
            [msg(1, aci, 1), msg(2, aci, 2, device=2)], 10, max_bytes_per_account=share
        )
        assert store.enqueue([msg(3, other, 1)], 10, max_bytes_per_account=share)
        assert (
            store.enqueue([msg(4, aci, 5)], 10, max_bytes_per_account=share)
            is EnqueueResult.ACCOUNT_FULL
        )
        assert store.account_queued_bytes(aci) == 200
        assert store.ack(aci, 1, [msg(1, aci, 1).id]) == 1
        assert store.account_queued_bytes(aci) == 100
        assert store.enqueue([msg(4, aci, 5)], 10, max_bytes_per_account=share)
        assert store.expire(3) == 2  # ids 2 (aci, device 2) and 3 (other)
        assert store.account_queued_bytes(aci) == 100
        assert store.account_queued_bytes(other) == 0
        assert store.ack(aci, 1, [msg(4, aci, 5).id]) == 1
        assert store.account_queued_bytes(aci) == 0


def test_identified_sends_have_a_byte_rate_per_sending_device(tmp_path: Path) -> None:
    cfg = RelayConfig(identified_bytes_burst=3000, identified_bytes_per_s=1000.0)
    with SqliteRelayStore.open(tmp_path / "relay.db") as store:
        service = RelayService(store, SystemRng(), cfg)
        alice, bob, carol = Device.new(8301), Device.new(8302), Device.new(8303)
        a, c = _register(service, alice), _register(service, carol)
        _register(service, bob)

        def send(s: Session, rid: int, size: int, now: int) -> rf.Response:
            m = rf.OutgoingMessage(1, bob.registration_id, 1, bytes(size))
            return service.handle(
                s, rf.ClientFrame(rid, rf.SendMessage(bob.aci, NOW, (m,))), now
            ).response

        assert send(a, 1, 2000, NOW).code == rf.StatusCode.OK
        refused = send(a, 2, 2000, NOW)
        assert refused.code == rf.StatusCode.RATE_LIMITED, refused
        assert len(store.pending(bob.aci, 1)) == 1  # the refused send queued nothing
        assert send(c, 1, 2000, NOW).code == rf.StatusCode.OK  # another sender's own rate
        assert send(a, 3, 2000, NOW + 1000).code == rf.StatusCode.OK  # regained 1000 B/s
        # A send larger than the burst still goes through once the bucket is full.
        assert send(a, 4, 5000, NOW + 10_000).code == rf.StatusCode.OK
