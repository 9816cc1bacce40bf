"""Only a valid, admitted registration spends the relay-wide registration budget.

The relay verifies a Register request (identity key, proof of possession, prekey
signatures) before it takes a registration token. Before, the token was taken first, so
anyone sending 10 garbage Registers a second (one per connection; connections are free)
kept every honest user from registering, at no key work at all.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from relay_harness import NOW, Device

from securemsg.crypto.rng import SystemRng
from securemsg.relay.service import RelayConfig, RelayService
from securemsg.relay.store import SqliteRelayStore
from securemsg.relay_protocol import frames as rf

BURST = 5


def _service(store: SqliteRelayStore) -> RelayService:
    cfg = RelayConfig(registration_burst=BURST, registration_refill_per_s=0.0001)
    return RelayService(store, SystemRng(), cfg)


def test_registrations_with_a_bad_proof_do_not_spend_the_registration_budget(
    tmp_path: Path,
) -> None:
    with SqliteRelayStore.open(tmp_path / "relay.db") as store:
        service = _service(store)
        codes = []
        for n in range(BURST * 2):  # one fresh connection (session) per garbage Register
            s = service.new_session()
            forged = dataclasses.replace(
                Device.new(9300 + n).register(s.nonce), signature=bytes(64)
            )
            out = service.handle(s, rf.ClientFrame(1, forged), NOW)
            assert out.close
            codes.append(out.response.code)
        assert set(codes) == {rf.StatusCode.UNAUTHENTICATED}
        honest = Device.new(9399)
        s = service.new_session()
        out = service.handle(s, rf.ClientFrame(1, honest.register(s.nonce)), NOW)
        assert out.response.code == rf.StatusCode.OK, out.response


def test_registrations_with_a_bad_prekey_signature_do_not_spend_the_budget(
    tmp_path: Path,
) -> None:
    with SqliteRelayStore.open(tmp_path / "relay.db") as store:
        service = _service(store)
        for n in range(BURST * 2):
            s = service.new_session()
            good = Device.new(9400 + n).register(s.nonce)
            spk = dataclasses.replace(good.signed_pre_key, signature=bytes(64))
            out = service.handle(
                s, rf.ClientFrame(1, dataclasses.replace(good, signed_pre_key=spk)), NOW
            )
            assert out.response.code == rf.StatusCode.BAD_REQUEST, out.response
        for n in range(BURST):  # the whole budget is still there
            d = Device.new(9500 + n)
            s = service.new_session()
            out = service.handle(s, rf.ClientFrame(1, d.register(s.nonce)), NOW)
            assert out.response.code == rf.StatusCode.OK, (n, out.response)
        d = Device.new(9599)
        s = service.new_session()
        out = service.handle(s, rf.ClientFrame(1, d.register(s.nonce)), NOW)
        assert out.response.code == rf.StatusCode.RATE_LIMITED  # and then it is spent
        assert store.get_account(d.aci) is None


def test_registrations_the_store_refuses_do_not_spend_the_budget(tmp_path: Path) -> None:
    """A valid proof for one's own account with a made-up linking code (refused FORBIDDEN) or
    an existing device (CONFLICT) creates nothing, so it spends nothing: looping them must
    not keep everybody else from registering or linking."""
    with SqliteRelayStore.open(tmp_path / "relay.db") as store:
        service = _service(store)
        own = Device.new(9600)
        s = service.new_session()
        assert service.handle(s, rf.ClientFrame(1, own.register(s.nonce)), NOW).response.code == (
            rf.StatusCode.OK
        )
        for n in range(BURST * 2):
            linker = Device.new(9610 + n, identity=own.identity, aci=own.aci, device_id=0)
            linker.linking_code = f"made-up-code-{n}"
            s = service.new_session()
            out = service.handle(s, rf.ClientFrame(1, linker.register(s.nonce)), NOW)
            assert out.response.code == rf.StatusCode.FORBIDDEN, out.response
            s = service.new_session()
            again = service.handle(s, rf.ClientFrame(1, own.register(s.nonce)), NOW)
            assert again.response.code == rf.StatusCode.CONFLICT, again.response
        assert [d.device_id for d in store.list_devices(own.aci)] == [1]
        for n in range(BURST - 1):  # the first registration took one token
            d = Device.new(9700 + n)
            s = service.new_session()
            out = service.handle(s, rf.ClientFrame(1, d.register(s.nonce)), NOW)
            assert out.response.code == rf.StatusCode.OK, (n, out.response)
