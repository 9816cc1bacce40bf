"""What one request may cost the relay's storage thread.

* An Ack carries at most ``max_ack_ids`` ids (1000); more is ``BAD_REQUEST`` and deletes
  nothing. The client SDK acknowledges at most 64 at a time.
* Account lookups spent on multi-recipient sends refused for a wrong or missing access key
  are charged to a budget (``refusal_burst`` / ``refusal_refill_per_s``): relay-wide for
  unauthenticated connections, per device for authenticated ones. A send needs its
  recipients' worth of the budget before any is looked up, so a storm of refused sends to
  many unknown recipients is cut off after one burst, and sends that are accepted spend
  nothing.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from relay_harness import NOW, Device

from securemsg.client.client import RECEIVE_BATCH
from securemsg.crypto.rng import SystemRng
from securemsg.relay.service import RelayConfig, RelayService, Session
from securemsg.relay.store import AccountRow, SqliteRelayStore
from securemsg.relay_protocol import frames as rf
from securemsg.wire.sealed_sender import encode_varint


class _CountingStore(SqliteRelayStore):
    """Counts account lookups (the storage thread's per-recipient work)."""

    lookups = 0

    def get_account(self, aci: bytes) -> AccountRow | None:
        type(self).lookups += 1
        return super().get_account(aci)


def _register(service: RelayService, device: Device) -> Session:
    s = service.new_session()
    out = service.handle(s, rf.ClientFrame(1, device.register(s.nonce)), NOW)
    assert out.response.code == rf.StatusCode.OK, out.response
    return s


def _multi(
    recipients: list[tuple[bytes, int, int]], access: dict[bytes, bytes]
) -> rf.SendMultiRecipient:
    sent = bytearray([0x22]) + encode_varint(len(recipients))
    for aci, device_id, registration_id in recipients:
        sent += aci + bytes([device_id]) + registration_id.to_bytes(2, "big") + os.urandom(48)
    payload = bytes(sent + os.urandom(132))
    keys = tuple(rf.RecipientAccess(a, k) for a, k in access.items())
    return rf.SendMultiRecipient(payload, keys, 1)


def _unknown(n: int) -> rf.SendMultiRecipient:
    recipients = [(uuid.uuid4().bytes, 1, 1234) for _ in range(n)]
    return _multi(recipients, {a: os.urandom(16) for a, _, _ in recipients})


def test_an_ack_carries_at_most_max_ack_ids(tmp_path: Path) -> None:
    with SqliteRelayStore.open(tmp_path / "relay.db") as store:
        service = RelayService(store, SystemRng(), RelayConfig(max_ack_ids=10))
        bob = Device.new(7001)
        s = _register(service, bob)
        ids = tuple(os.urandom(rf.ENVELOPE_ID_LENGTH) for _ in range(11))
        out = service.handle(s, rf.ClientFrame(2, rf.Ack(ids)), NOW)
        assert out.response.code == rf.StatusCode.BAD_REQUEST, out.response
        out = service.handle(s, rf.ClientFrame(3, rf.Ack(ids[:10])), NOW)
        assert out.response.code == rf.StatusCode.OK, out.response
    assert RelayConfig().max_ack_ids == 1000


def test_the_client_acknowledges_in_batches_the_relay_accepts() -> None:
    assert RelayConfig().max_ack_ids >= RECEIVE_BATCH


def test_refused_multi_recipient_sends_are_charged_and_cut_off(tmp_path: Path) -> None:
    cfg = RelayConfig(refusal_burst=200, refusal_refill_per_s=10.0)
    _CountingStore.lookups = 0
    with _CountingStore.open(tmp_path / "relay.db") as store:
        service = RelayService(store, SystemRng(), cfg)
        codes = []
        for rid in range(1, 11):  # a storm: 10 sends, each to 100 unknown recipients
            out = service.handle(service.new_session(), rf.ClientFrame(rid, _unknown(100)), NOW)
            codes.append(out.response.code)
        assert codes[:2] == [rf.StatusCode.UNAUTHENTICATED] * 2
        assert set(codes[2:]) == {rf.StatusCode.RATE_LIMITED}
        assert _CountingStore.lookups == 200  # the budget's worth, not 1000
        # Regained at the refill rate: 100 lookups after 10 s (and not before).
        out = service.handle(service.new_session(), rf.ClientFrame(11, _unknown(100)), NOW + 9_000)
        assert out.response.code == rf.StatusCode.RATE_LIMITED
        out = service.handle(service.new_session(), rf.ClientFrame(12, _unknown(100)), NOW + 20_000)
        assert out.response.code == rf.StatusCode.UNAUTHENTICATED
        # Once spent, a send is refused before its payload is even parsed (one access
        # entry per recipient is the cost estimate): garbage gets RATE_LIMITED, not
        # BAD_REQUEST.
        garbage = rf.SendMultiRecipient(b"\x00" * 64, _unknown(150).access, 1)
        out = service.handle(service.new_session(), rf.ClientFrame(13, garbage), NOW + 20_000)
        assert out.response.code == rf.StatusCode.RATE_LIMITED
        # An authenticated device has its own budget.
        alice = Device.new(7002)
        s = _register(service, alice)
        out = service.handle(s, rf.ClientFrame(2, _unknown(100)), NOW + 20_000)
        assert out.response.code == rf.StatusCode.UNAUTHENTICATED


def test_accepted_multi_recipient_sends_spend_nothing_of_the_refusal_budget(
    tmp_path: Path,
) -> None:
    cfg = RelayConfig(refusal_burst=5, refusal_refill_per_s=0.001)
    with SqliteRelayStore.open(tmp_path / "relay.db") as store:
        service = RelayService(store, SystemRng(), cfg)
        devices = [Device.new(7100 + i) for i in range(5)]
        for d in devices:
            _register(service, d)
        recipients = [(d.aci, d.device_id, d.registration_id) for d in devices]
        access = {d.aci: d.access_key for d in devices}
        for rid in range(1, 21):
            out = service.handle(
                service.new_session(), rf.ClientFrame(rid, _multi(recipients, access)), NOW
            )
            assert out.response.code == rf.StatusCode.OK, (rid, out.response)
        # More recipients than the whole budget: refused before any lookup.
        six = [*recipients, (uuid.uuid4().bytes, 1, 1)]
        out = service.handle(service.new_session(), rf.ClientFrame(30, _multi(six, access)), NOW)
        assert out.response.code == rf.StatusCode.RATE_LIMITED
