"""The relay's request policies against hostile clients: registration limits and admission,
range checks on wire integers, access-key rotation, the per-target one-time prekey budget,
the sealed-send rate per target device and the restricted ``GetDevices``.

Most tests drive :class:`RelayService` directly with a simulated clock (so a "burst in 1.9 s"
is reproduced exactly, whatever the machine's load); the admission hook and rotation also run
over loopback.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from relay_harness import NOW, Device, RawClient, linking_code, registered, relay, run

from securemsg._proto import relay_pb2
from securemsg.crypto.rng import DeterministicRng
from securemsg.errors import SealedDeliveryRefused, UsageError
from securemsg.relay.service import (
    Outcome,
    RelayConfig,
    RelayService,
    Session,
    TokenAdmission,
    TokenBuckets,
)
from securemsg.relay.store import SqliteRelayStore
from securemsg.relay_protocol import frames as rf

U32 = (1 << 32) - 1
U64 = (1 << 64) - 1


class Harness:
    """A RelayService over a real SQLite store, driven request by request."""

    def __init__(self, path: Path, **cfg: Any) -> None:
        self.store = SqliteRelayStore.open(path)
        self.svc = RelayService(
            self.store, DeterministicRng(b"relay-policy" * 3), RelayConfig(**cfg)
        )
        self._rid = 0

    def ask(self, session: Session, body: rf.Request, now: int = NOW) -> Outcome:
        self._rid += 1
        # Through the codec, as the server does, so only what the wire can carry arrives.
        frame = rf.decode_client_frame(rf.encode_client_frame(rf.ClientFrame(self._rid, body)))
        return self.svc.handle(session, frame, now)

    def register(self, device: Device, now: int = NOW, token: bytes = b"") -> Outcome:
        s = self.svc.new_session()
        req = dataclasses.replace(device.register(s.nonce), registration_token=token)
        return self.ask(s, req, now)

    def session_of(self, device: Device, now: int = NOW) -> Session:
        s = self.svc.new_session()
        out = self.ask(s, device.authenticate(s.nonce), now)
        assert out.response.code == rf.StatusCode.OK, out.response
        return s

    def close(self) -> None:
        self.store.close()


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path / "r.db")
    yield h
    h.close()


def _with_aci(device: Device, n: int) -> Device:
    """The same key material under another ACI (cheap many-account registrations)."""
    return dataclasses.replace(device, aci=uuid.UUID(int=n + 1, version=4).bytes)


def _sealed(target: Device, key: bytes, ts: int = 1, body: bytes = b"flud") -> rf.SendSealed:
    out = rf.OutgoingMessage(
        target.device_id, target.registration_id, rf.EnvelopeType.UNIDENTIFIED_SENDER, body
    )
    return rf.SendSealed(target.aci, key, ts, (out,))


# -- registration ------------------------------------------------------------------------


def test_300_registrations_in_1_9_s_are_limited_by_default(harness: Harness) -> None:
    base = Device.new(1)
    codes: list[rf.StatusCode] = []
    for i in range(300):  # the attack: 300 accounts in 1.9 s
        now = NOW + i * 1900 // 300
        codes.append(harness.register(_with_aci(base, i), now).response.code)
    ok = codes.count(rf.StatusCode.OK)
    limited = codes.count(rf.StatusCode.RATE_LIMITED)
    assert ok + limited == 300
    # burst 100, then 10 per second: at most 100 + 19 (+1 for rounding) in 1.9 s
    assert 100 <= ok <= 120
    refused_aci = _with_aci(base, 299).aci
    if codes[-1] == rf.StatusCode.RATE_LIMITED:
        assert harness.store.get_account(refused_aci) is None
    # Later, honest registrations go through again.
    later = NOW + 60_000
    assert harness.register(_with_aci(base, 1000), later).response.code == rf.StatusCode.OK


def test_registration_rate_is_configurable(tmp_path: Path) -> None:
    h = Harness(tmp_path / "r.db", registration_burst=3, registration_refill_per_s=0.0)
    base = Device.new(2)
    codes = [h.register(_with_aci(base, i)).response.code for i in range(5)]
    assert codes == [rf.StatusCode.OK] * 3 + [rf.StatusCode.RATE_LIMITED] * 2
    h.close()


def test_one_registration_or_authentication_per_connection(harness: Harness) -> None:
    a, b = Device.new(3), Device.new(4)
    s = harness.svc.new_session()
    assert harness.ask(s, a.register(s.nonce)).response.code == rf.StatusCode.OK
    second = harness.ask(s, b.register(s.nonce))
    assert second.response.code == rf.StatusCode.BAD_REQUEST and second.close
    assert harness.store.get_account(b.aci) is None


def test_token_admission_refuses_registrations_without_a_valid_token(tmp_path: Path) -> None:
    h = Harness(tmp_path / "r.db", admission=TokenAdmission(["s3cret-invite", b"other"]))
    base = Device.new(5)
    none = h.register(_with_aci(base, 0))
    assert none.response.code == rf.StatusCode.FORBIDDEN and none.close
    assert h.register(_with_aci(base, 1), token=b"wrong").response.code == rf.StatusCode.FORBIDDEN
    assert h.register(_with_aci(base, 2), token=b"s3cret-invite").response.code == 0
    assert h.register(_with_aci(base, 3), token=b"other").response.code == 0
    assert h.store.get_account(_with_aci(base, 0).aci) is None
    assert h.store.get_account(_with_aci(base, 1).aci) is None
    h.close()


def test_a_failing_admission_hook_admits_nobody(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(_: rf.Register) -> bool:
        raise RuntimeError("hook down")

    h = Harness(tmp_path / "r.db", admission=broken)
    with caplog.at_level(logging.ERROR, logger="securemsg.relay"):
        out = h.register(Device.new(6))
    assert out.response.code == rf.StatusCode.FORBIDDEN
    assert "hook down" not in caplog.text
    h.close()


def test_token_file_and_token_checks(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# invites\n\nalpha\n  beta  \n", encoding="utf-8")
    hook = TokenAdmission.from_file(path)
    reg = Device.new(7).register(bytes(32))
    assert hook(dataclasses.replace(reg, registration_token=b"alpha"))
    assert hook(dataclasses.replace(reg, registration_token=b"beta"))
    assert not hook(dataclasses.replace(reg, registration_token=b"gamma"))
    assert not hook(reg)
    assert "alpha" not in repr(hook)
    (tmp_path / "empty").write_text("# nothing\n", encoding="utf-8")
    with pytest.raises(UsageError):
        TokenAdmission.from_file(tmp_path / "empty")
    with pytest.raises(UsageError):
        TokenAdmission([b"x" * (rf.MAX_REGISTRATION_TOKEN + 1)])


def test_registration_token_over_loopback(tmp_path: Path) -> None:
    alice = Device.new(8)

    async def body() -> None:
        async with relay(tmp_path / "r.db", admission=TokenAdmission(["invite"])) as server:
            c = await RawClient.open(server.url)
            r = await c.request(alice.register(c.nonce))
            assert r.code == rf.StatusCode.FORBIDDEN
            await c.closed()
            c = await RawClient.open(server.url)
            req = dataclasses.replace(alice.register(c.nonce), registration_token=b"invite")
            assert (await c.request(req)).code == rf.StatusCode.OK
            await c.close()

    run(body)


def test_sdk_client_registers_with_an_invitation_token(tmp_path: Path) -> None:
    from securemsg.client import Client
    from securemsg.errors import RelayError

    async def body() -> None:
        async with relay(tmp_path / "r.db", admission=TokenAdmission(["invite"])) as server:
            refused = await Client.create(tmp_path / "a.db", server.url, server.trust_root_public)
            with pytest.raises(RelayError) as info:
                await refused.register()
            assert info.value.code == rf.StatusCode.FORBIDDEN
            await refused.close()
            admitted = await Client.create(tmp_path / "b.db", server.url, server.trust_root_public)
            await admitted.register(registration_token=b"invite")
            assert admitted.registered
            await admitted.close()

    run(body)


def test_registration_token_length_is_checked_on_the_wire() -> None:
    reg = dataclasses.replace(Device.new(9).register(bytes(32)), registration_token=b"t" * 257)
    with pytest.raises(UsageError):
        rf.encode_client_frame(rf.ClientFrame(1, reg))


# -- range checks on wire integers -------------------------------------------------------


def test_timestamp_of_2_pow_63_is_a_bad_request_not_a_relay_bug(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    alice, bob = Device.new(10), Device.new(11)
    assert harness.register(alice).response.code == 0
    assert harness.register(bob).response.code == 0
    s = harness.session_of(bob)
    out = rf.OutgoingMessage(1, alice.registration_id, rf.EnvelopeType.CIPHERTEXT, b"m")
    anon = harness.svc.new_session()
    with caplog.at_level(logging.ERROR, logger="securemsg.relay"):
        for ts in (1 << 63, U64):
            r = harness.ask(s, rf.SendMessage(alice.aci, ts, (out,))).response
            assert r.code == rf.StatusCode.BAD_REQUEST, r
            r = harness.ask(anon, _sealed(alice, alice.access_key, ts)).response
            assert r.code == rf.StatusCode.BAD_REQUEST, r
            r = harness.ask(anon, rf.SendMultiRecipient(b"x", (), ts)).response
            assert r.code == rf.StatusCode.BAD_REQUEST, r
        ok = harness.ask(anon, _sealed(alice, alice.access_key, (1 << 63) - 1)).response
        assert ok.code == rf.StatusCode.OK
    assert "relay bug" not in caplog.text
    assert harness.store.pending(alice.aci, 1)[0].client_timestamp == (1 << 63) - 1


_u32 = st.one_of(
    st.sampled_from([0, 1, 127, 128, 16380, 16381, (1 << 31) - 1, 1 << 31, U32]),
    st.integers(0, U32),
)
_u64 = st.one_of(
    st.sampled_from([0, 1, (1 << 63) - 1, 1 << 63, U64, (1 << 32), NOW]), st.integers(0, U64)
)


_i32 = st.one_of(
    st.sampled_from([-(1 << 31), -1, 0, 1, 6, (1 << 31) - 1]),
    st.integers(-(1 << 31), (1 << 31) - 1),
)


@st.composite
def _hostile_requests(draw: st.DrawFn, target: Device) -> rf.Request:
    kind = draw(st.sampled_from(range(9)))
    dev = draw(st.one_of(st.just(1), _u32))
    reg = draw(st.one_of(st.just(target.registration_id), _u32))
    ts = draw(_u64)
    out = (rf.OutgoingMessage(dev, reg, 0, b"b"),)  # the type (an open int32 enum) is set below
    keys = target.register(bytes(32))
    if kind == 0:
        return rf.SendMessage(target.aci, ts, out)
    if kind == 1:
        return rf.SendSealed(target.aci, target.access_key, ts, out)
    if kind == 2:
        return rf.SendMultiRecipient(b"\x22" + bytes(8), (), ts)
    if kind == 3:
        return rf.FetchBundles(target.aci, dev)
    if kind == 4:
        return rf.Authenticate(target.aci, dev, bytes(64), draw(_u32))
    if kind == 5:
        d = dataclasses.replace(target, aci=uuid.UUID(int=dev + 7, version=4).bytes)
        return dataclasses.replace(
            d.register(bytes(32)),
            device_id=dev,
            registration_id=reg,
            protocol_version=draw(st.sampled_from([1, draw(_u32)])),
            pre_keys=(rf.OneTimePreKey(draw(_u32), keys.pre_keys[0].public_key),),
        )
    if kind == 6:
        return rf.UploadPreKeys(
            pre_keys=(rf.OneTimePreKey(dev, keys.pre_keys[0].public_key),),
            kyber_pre_keys=(dataclasses.replace(keys.kyber_pre_keys[0], id=reg),),
            signed_pre_key=dataclasses.replace(keys.signed_pre_key, id=draw(_u32)),
        )
    if kind == 7:
        return rf.RotateSignedPreKey(dataclasses.replace(keys.signed_pre_key, id=dev))
    return rf.GetDevices(target.aci, target.access_key)


def test_no_wire_integer_makes_the_relay_fail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    h = Harness(tmp_path / "r.db", sealed_burst=10_000, registration_burst=10_000)
    target = Device.new(12, n_pre_keys=1, n_kyber=1)
    assert h.register(target).response.code == 0
    session = h.session_of(target)

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(_hostile_requests(target), _i32, _u64)
    def check(req: rf.Request, typ: int, rid: int) -> None:
        pb = relay_pb2.ClientFrame.FromString(rf.encode_client_frame(rf.ClientFrame(rid, req)))
        kind = pb.WhichOneof("body")
        if kind in ("send_message", "send_sealed"):
            getattr(pb, kind).messages[0].type = typ
        frame = rf.decode_client_frame(pb.SerializeToString())
        auth = isinstance(req, rf.Authenticate | rf.Register)
        s = h.svc.new_session() if auth else session
        r = h.svc.handle(s, frame, NOW)
        assert r.response.code != rf.StatusCode.INTERNAL, (req, typ, r.response)
        assert r.response.request_id == rid
        rf.encode_server_frame(r.response)  # and the answer encodes

    with caplog.at_level(logging.ERROR, logger="securemsg.relay"):
        check()
    assert "relay bug" not in caplog.text and "storage error" not in caplog.text
    h.close()


# -- access-key rotation -----------------------------------------------------------------


def test_rotated_access_key_replaces_the_old_one_at_once(harness: Harness) -> None:
    alice = Device.new(13)
    assert harness.register(alice).response.code == 0
    anon = harness.svc.new_session()
    assert harness.ask(anon, _sealed(alice, alice.access_key)).response.code == 0
    new_key = bytes(range(16))
    # Unauthenticated: refused, nothing changes.
    assert (
        harness.ask(anon, rf.SetAccessKey(new_key)).response.code == rf.StatusCode.UNAUTHENTICATED
    )
    assert harness.ask(anon, _sealed(alice, alice.access_key)).response.code == 0
    s = harness.session_of(alice)
    assert harness.ask(s, rf.SetAccessKey(new_key)).response.code == rf.StatusCode.OK
    old = harness.ask(anon, _sealed(alice, alice.access_key)).response
    assert old.code == rf.StatusCode.UNAUTHENTICATED
    assert harness.ask(anon, _sealed(alice, new_key)).response.code == rf.StatusCode.OK
    bob = Device.new(14)
    assert harness.register(bob).response.code == 0
    sb = harness.session_of(bob)
    stale = harness.ask(sb, rf.GetDevices(alice.aci, alice.access_key)).response
    assert stale.code == rf.StatusCode.UNAUTHENTICATED
    assert harness.ask(sb, rf.GetDevices(alice.aci, new_key)).response.code == rf.StatusCode.OK
    # The relay keeps a digest only.
    account = harness.store.get_account(alice.aci)
    assert account is not None and new_key not in account.access_key_digest


def test_set_access_key_codec_round_trip() -> None:
    frame = rf.ClientFrame(5, rf.SetAccessKey(b"k" * 16))
    assert rf.decode_client_frame(rf.encode_client_frame(frame)) == frame
    with pytest.raises(UsageError):
        rf.encode_client_frame(rf.ClientFrame(5, rf.SetAccessKey(b"short")))


# -- one-time prekey budget per target ----------------------------------------------------


def test_throwaway_accounts_no_longer_drain_a_targets_one_time_keys(harness: Harness) -> None:
    target = Device.new(15, n_pre_keys=100, n_kyber=30)
    assert harness.register(target).response.code == 0
    base = Device.new(16)
    handed_out = 0
    last: rf.DeviceBundle | None = None
    for a in range(4):  # the attack: 4 throwaway accounts, 1.2 s, each up to its own limit
        attacker = _with_aci(base, 100 + a)
        assert harness.register(attacker).response.code == 0
        s = harness.session_of(attacker)
        for i in range(100):
            now = NOW + (a * 100 + i) * 3  # 400 fetches in 1.2 s
            r = harness.ask(s, rf.FetchBundles(target.aci, 1), now).response
            assert r.code == rf.StatusCode.OK, r
            assert isinstance(r.body, rf.Bundles)
            (last,) = r.body.bundles
            handed_out += last.pre_key is not None
    # The default budget: 20 hand-outs per hour per target device.
    assert handed_out == 20
    assert harness.store.pre_key_counts(target.aci, 1) == (80, 10)
    # Beyond the budget the bundle still works for PQXDH: signed and last-resort keys.
    assert last is not None and last.pre_key is None and last.kyber_last_resort
    assert last.kyber_pre_key.id == target.register(bytes(32)).last_resort_kyber_pre_key.id
    # The budget refills with time (one per 3 minutes).
    later = NOW + 10 * 60_000
    s = harness.session_of(_with_aci(base, 100), later)
    r = harness.ask(s, rf.FetchBundles(target.aci, 0), later).response
    assert isinstance(r.body, rf.Bundles) and r.body.bundles[0].pre_key is not None


def test_a_bundle_without_one_time_keys_still_starts_a_session(tmp_path: Path) -> None:
    from relay_harness import to_bundle

    from securemsg import cipher
    from securemsg.store.memory import InMemoryProtocolStore
    from securemsg.wire.messages import CiphertextMessageType

    h = Harness(tmp_path / "r.db", one_time_budget=0)
    bob, alice = Device.new(17), Device.new(18)
    assert h.register(bob).response.code == 0
    assert h.register(alice).response.code == 0
    r = h.ask(h.session_of(alice), rf.FetchBundles(bob.aci, 1)).response
    assert isinstance(r.body, rf.Bundles)
    (b,) = r.body.bundles
    assert b.pre_key is None and b.kyber_last_resort
    assert h.store.pre_key_counts(bob.aci, 1) == (2, 1)  # nothing consumed
    assert alice.store is not None and bob.store is not None
    assert isinstance(alice.store, InMemoryProtocolStore)
    rng = DeterministicRng(b"pqxdh-no-otk" * 3)
    cipher.process_prekey_bundle(
        to_bundle(b), bob.address, alice.store, now=NOW, rng=rng, local_address=alice.address
    )
    msg = cipher.message_encrypt(
        b"hello", bob.address, alice.store, now=NOW, rng=rng, local_address=alice.address
    )
    plain = cipher.message_decrypt(
        msg.to_bytes(), CiphertextMessageType.PREKEY, alice.address, bob.store,
        now=NOW, rng=rng, local_address=bob.address,
    )  # fmt: skip
    assert plain == b"hello"
    h.close()


# -- sealed flooding ---------------------------------------------------------------------


def test_10000_sealed_sends_in_20_s_to_one_device_are_throttled(harness: Harness) -> None:
    victim = Device.new(19)
    assert harness.register(victim).response.code == 0
    anon = harness.svc.new_session()
    codes: list[rf.StatusCode] = []
    for i in range(10_000):  # the attack: 10,000 sealed 4-byte sends in 20 s
        r = harness.ask(anon, _sealed(victim, victim.access_key, i + 1), NOW + i * 2)
        codes.append(r.response.code)
    ok = codes.count(rf.StatusCode.OK)
    assert ok + codes.count(rf.StatusCode.RATE_LIMITED) == 10_000
    # burst 500, then 50 per second for 20 s
    assert 500 <= ok <= 500 + 50 * 20 + 1
    assert len(harness.store.pending(victim.aci, 1)) == ok
    # Identified senders are accountable and not held by this limit.
    friend = Device.new(20)
    assert harness.register(friend).response.code == 0
    out = rf.OutgoingMessage(1, victim.registration_id, rf.EnvelopeType.CIPHERTEXT, b"hi")
    sf = harness.session_of(friend)
    sent = harness.ask(sf, rf.SendMessage(victim.aci, 1, (out,)), NOW + 20_000).response
    assert sent.code == rf.StatusCode.OK


def test_sealed_rate_refuses_a_whole_send_when_one_device_is_over(tmp_path: Path) -> None:
    h = Harness(tmp_path / "r.db", sealed_burst=2, sealed_refill_per_s=0.0)
    a1 = Device.new(21)
    a2 = Device.new(21, device_id=2, identity=a1.identity, aci=a1.aci, access_key=a1.access_key)
    assert h.register(a1).response.code == 0
    a2.linking_code = linking_code(h.svc, a1)
    assert h.register(a2).response.code == 0
    anon = h.svc.new_session()

    def both() -> rf.SendSealed:
        outs = tuple(rf.OutgoingMessage(d.device_id, d.registration_id, 6, b"x") for d in (a1, a2))
        return rf.SendSealed(a1.aci, a1.access_key, 1, outs)

    own = h.session_of(a2)  # device 2 sending to its own account covers device 1 only
    assert h.ask(own, _sealed(a1, a1.access_key)).response.code == 0
    h.ask(anon, rf.SendSealed(a1.aci, a1.access_key, 1, ()))  # malformed: spends nothing
    assert h.ask(anon, both()).response.code == 0  # each device spends one
    r = h.ask(anon, both()).response  # device 1 is out, device 2 has one left
    assert r.code == rf.StatusCode.RATE_LIMITED
    assert len(h.store.pending(a1.aci, 2)) == 1  # nothing more queued for device 2 either
    assert h.ask(own, _sealed(a1, a1.access_key)).response.code == rf.StatusCode.RATE_LIMITED
    h.close()


def test_token_buckets_take_all_or_nothing_and_stay_bounded() -> None:
    b = TokenBuckets(2, 1.0)
    assert b.take_all([("a", 1), ("a", 1)], 0)
    assert not b.take_all([("a", 1), ("b", 1)], 0)
    assert b.take(("b", 1), 0) and b.take(("b", 1), 0) and not b.take(("b", 1), 0)
    assert b.take(("a", 1), 1000)  # refilled one
    many = TokenBuckets(1, 1.0)
    for i in range(TokenBuckets._PRUNE_AT + 10):
        many.take(i, 0)
    assert many.take_all([-1], 10_000)
    assert len(many._state) < 100  # every bucket is full again: forgotten


# -- GetDevices --------------------------------------------------------------------------


def test_get_devices_is_no_existence_oracle(harness: Harness) -> None:
    alice, mallory = Device.new(22), Device.new(23)
    assert harness.register(alice).response.code == 0
    assert harness.register(mallory).response.code == 0
    sm = harness.session_of(mallory)
    known = harness.ask(sm, rf.GetDevices(alice.aci)).response
    unknown = harness.ask(sm, rf.GetDevices(b"\x42" * 16)).response
    assert (known.code, known.message) == (unknown.code, unknown.message)
    assert known.code == rf.StatusCode.UNAUTHENTICATED and known.body is None
    wrong = harness.ask(sm, rf.GetDevices(alice.aci, b"\x00" * 16)).response
    assert wrong.code == rf.StatusCode.UNAUTHENTICATED
    with_key = harness.ask(sm, rf.GetDevices(alice.aci, alice.access_key)).response
    assert isinstance(with_key.body, rf.Devices)
    assert [d.device_id for d in with_key.body.devices] == [1]
    own = harness.ask(harness.session_of(alice), rf.GetDevices(alice.aci)).response
    assert isinstance(own.body, rf.Devices)


def test_get_devices_codec_carries_the_access_key() -> None:
    for req in (rf.GetDevices(b"a" * 16), rf.GetDevices(b"a" * 16, b"k" * 16)):
        frame = rf.ClientFrame(1, req)
        assert rf.decode_client_frame(rf.encode_client_frame(frame)) == frame
    with pytest.raises(UsageError):
        rf.encode_client_frame(rf.ClientFrame(1, rf.GetDevices(b"a" * 16, b"k")))


def test_flooded_sealed_sends_over_loopback_get_rate_limited(tmp_path: Path) -> None:
    victim = Device.new(24)

    async def body() -> None:
        async with relay(tmp_path / "r.db", sealed_burst=5, sealed_refill_per_s=0.0) as server:
            v = await registered(server.url, victim)
            c = await RawClient.open(server.url)
            codes = [
                (await c.request(_sealed(victim, victim.access_key, i + 1))).code for i in range(8)
            ]
            assert codes == [rf.StatusCode.OK] * 5 + [rf.StatusCode.RATE_LIMITED] * 3
            assert len(await v.wait_pushes(5)) == 5
            await c.close()
            await v.close()

    run(body)


def test_client_rotate_access_key_locks_out_the_old_card(tmp_path: Path) -> None:
    from securemsg.client import Client
    from securemsg.relay.server import RelayServer

    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as server:
            clients = []
            for name in ("alice", "bob"):
                c = await Client.create(
                    tmp_path / f"{name}.db", server.url, server.trust_root_public
                )
                await c.register()
                clients.append(c)
            alice, bob = clients
            leaked = bob.contact_card
            alice.add_contact(leaked)
            await alice.send_text(bob.aci, "sealed before")
            got = await bob.receive(timeout=10)
            assert got is not None and got.sealed
            old_key = bytes.fromhex(leaked.split(":")[1])

            new_key = await bob.rotate_access_key()
            assert new_key != old_key and len(new_key) == 16
            assert bob.contact_card == bob.aci + ":" + new_key.hex()
            # The old card no longer opens Bob's mailbox to anyone holding it ...
            anon = await RawClient.open(server.url)
            out = rf.OutgoingMessage(1, bob.store.get_local_registration_id(), 6, b"junk")
            stale = rf.SendSealed(uuid.UUID(bob.aci).bytes, old_key, 1, (out,))
            assert (await anon.request(stale)).code == rf.StatusCode.UNAUTHENTICATED
            await anon.close()
            # ... Alice's sealed send with it is refused (never silently identified); she may
            # opt in to an identified send, and Bob's reply carries the new key, so her next
            # message is sealed again.
            with pytest.raises(SealedDeliveryRefused):
                await alice.send_text(bob.aci, "refused")
            await alice.send_text(bob.aci, "after rotation", allow_identified=True)
            got = await bob.receive(timeout=10)
            assert got is not None and got.text == "after rotation" and not got.sealed
            await bob.send_text(alice.aci, "here is my new key")
            assert await alice.receive(timeout=10) is not None
            await alice.send_text(bob.aci, "sealed again")
            got = await bob.receive(timeout=10)
            assert got is not None and got.sealed and got.text == "sealed again"
            await alice.close()
            await bob.close()
            # The new key survives reopening the client.
            reopened = await Client.open(tmp_path / "bob.db")
            assert reopened.contact_card == bob.contact_card
            await reopened.close()

    run(body)


def test_relay_serve_refuses_a_token_file_without_tokens(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from securemsg.cli.main import cli

    empty = tmp_path / "tokens"
    empty.write_text("# no tokens yet\n", encoding="utf-8")
    db = tmp_path / "relay.db"
    args = ["relay", "serve", "--db", str(db), "--port", "0", "--registration-token-file"]
    result = CliRunner().invoke(cli, [*args, str(empty)])
    assert result.exit_code == 2, result.output
    assert "no registration tokens" in result.output
    assert not db.exists()
    help_text = CliRunner().invoke(cli, ["relay", "serve", "--help"]).output
    assert "--registration-token-file" in help_text


def test_store_access_key_digest_update_needs_an_account(harness: Harness) -> None:
    assert not harness.store.set_access_key_digest(b"\x01" * 16, bytes(32))
    alice = Device.new(25)
    assert harness.register(alice).response.code == 0
    assert harness.store.set_access_key_digest(alice.aci, b"\x07" * 32)
    account = harness.store.get_account(alice.aci)
    assert account is not None and account.access_key_digest == b"\x07" * 32


def test_multi_recipient_sends_spend_each_recipients_sealed_rate(tmp_path: Path) -> None:
    from relay_harness import to_bundle

    from securemsg import cipher
    from securemsg.protocol.sealed_sender import SenderCertificate, UnidentifiedSenderMessageContent
    from securemsg.sealed_sender import sealed_sender_multi_recipient_encrypt
    from securemsg.wire.messages import CiphertextMessageType

    h = Harness(tmp_path / "r.db", sealed_burst=1, sealed_refill_per_s=0.0)
    alice, bob, carol = Device.new(26), Device.new(27), Device.new(28)
    for d in (alice, bob, carol):
        assert h.register(d).response.code == 0
    sa = h.session_of(alice)
    assert alice.store is not None
    for to in (bob, carol):
        r = h.ask(sa, rf.FetchBundles(to.aci, 1)).response
        assert isinstance(r.body, rf.Bundles)
        cipher.process_prekey_bundle(
            to_bundle(r.body.bundles[0]), to.address, alice.store, now=NOW, rng=alice.rng,
            local_address=alice.address,
        )  # fmt: skip
    cr = h.ask(sa, rf.GetSenderCertificate()).response
    assert isinstance(cr.body, rf.SenderCertificateResponse)
    cert = SenderCertificate.from_bytes(cr.body.certificate)
    usmc = UnidentifiedSenderMessageContent.new(
        CiphertextMessageType.PLAINTEXT, cert, b"hello group"
    )
    payload = sealed_sender_multi_recipient_encrypt(
        [bob.address, carol.address], usmc, alice.store, rng=alice.rng
    )
    access = (
        rf.RecipientAccess(bob.aci, bob.access_key),
        rf.RecipientAccess(carol.aci, carol.access_key),
    )
    anon = h.svc.new_session()
    # Carol's device spends its only token on a flood message ...
    assert h.ask(anon, _sealed(carol, carol.access_key)).response.code == 0
    # ... so a fan-out including her is refused whole: Bob gets nothing either.
    r = h.ask(anon, rf.SendMultiRecipient(payload, access, NOW)).response
    assert r.code == rf.StatusCode.RATE_LIMITED
    assert h.store.pending(bob.aci, 1) == []
    # Without her it goes through and spends Bob's token.
    only_bob = sealed_sender_multi_recipient_encrypt(
        [bob.address], usmc, alice.store, rng=alice.rng
    )
    assert h.ask(anon, rf.SendMultiRecipient(only_bob, access[:1], NOW)).response.code == 0
    assert len(h.store.pending(bob.aci, 1)) == 1
    h.close()


def test_the_prekey_budget_is_spent_only_on_handed_out_one_time_keys(harness: Harness) -> None:
    target, asker = Device.new(29, n_pre_keys=0, n_kyber=0), Device.new(30)
    assert harness.register(target).response.code == 0
    assert harness.register(asker).response.code == 0
    s = harness.session_of(asker)
    for i in range(30):  # unknown targets: NOT_FOUND, and no budget state is kept for them
        r = harness.ask(s, rf.FetchBundles(uuid.UUID(int=i + 1).bytes, 1)).response
        assert r.code == rf.StatusCode.NOT_FOUND
    for _ in range(30):  # a target without one-time keys: its budget stays full
        assert harness.ask(s, rf.FetchBundles(target.aci, 1)).response.code == 0
    assert len(harness.svc._one_time_budget._state) == 0
