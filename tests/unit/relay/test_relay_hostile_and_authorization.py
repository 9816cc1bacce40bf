"""Hostile frames and authorization over loopback: a typed refusal or a closed connection,
never a crashed relay and never a changed database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from relay_harness import NOW, Device, RawClient, authenticated, registered, relay, run

from securemsg.crypto.rng import SystemRng
from securemsg.errors import DecodeError
from securemsg.relay.service import RelayService
from securemsg.relay.store import SqliteRelayStore
from securemsg.relay_protocol import frames as rf


def dump(db: Path) -> str:
    conn = sqlite3.connect(db)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


def test_malformed_oversized_text_and_unknown_frames(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    alice = Device.new(11)

    async def body() -> None:
        async with relay(db, clock=lambda: NOW) as server:
            await (await registered(server.url, alice)).close()
            before = dump(db)

            c = await RawClient.open(server.url)
            await c.send_raw(b"\xff\xff\xff garbage")
            r = await c.response(0)
            assert r.code == rf.StatusCode.BAD_REQUEST
            assert await c.closed() == 1002

            c = await RawClient.open(server.url)
            await c.send_raw("a text frame")
            assert await c.closed() == 1003

            c = await RawClient.open(server.url)
            await c.send_raw(b"\x00" * (rf.MAX_FRAME_SIZE + 1))
            assert await c.closed() == 1009

            # An unknown request type (field 99): BAD_REQUEST by id, connection stays open.
            c = await RawClient.open(server.url)
            await c.send_raw(b"\x08\x07" + b"\x9a\x06\x01x")
            r = await c.response(7)
            assert r.code == rf.StatusCode.BAD_REQUEST
            r = await c.request(rf.GetServerTrustRoot())
            assert r.code == rf.StatusCode.OK and isinstance(r.body, rf.ServerTrustRoot)
            assert r.body.public_key == server.trust_root_public.to_bytes()
            await c.close()

            assert dump(db) == before
            # The relay still serves.
            a = await authenticated(server.url, alice)
            await a.close()

    run(body)


def test_forged_replayed_and_repeated_authentication(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    alice = Device.new(12)
    mallory = Device.new(13, aci=alice.aci)  # claims Alice's ACI with another key

    async def body() -> None:
        async with relay(db, clock=lambda: NOW) as server:
            a = await registered(server.url, alice)
            await a.close()
            before = dump(db)

            c = await RawClient.open(server.url)
            r = await c.request(mallory.authenticate(c.nonce))
            assert r.code == rf.StatusCode.UNAUTHENTICATED
            assert await c.closed() == 4001

            c1 = await RawClient.open(server.url)
            c2 = await RawClient.open(server.url)
            replay = alice.authenticate(c1.nonce)  # signed for connection 1
            r = await c2.request(replay)
            assert r.code == rf.StatusCode.UNAUTHENTICATED
            await c1.close()

            c = await RawClient.open(server.url)
            bad_device = rf.Authenticate(alice.aci, 5, alice.sign_auth(c.nonce))
            assert (await c.request(bad_device)).code == rf.StatusCode.UNAUTHENTICATED

            c = await authenticated(server.url, alice)
            r = await c.request(alice.authenticate(c.nonce))
            assert r.code == rf.StatusCode.BAD_REQUEST
            assert await c.closed() == 4001

            # Replacing Alice's keys: another identity cannot; nor can Alice re-register.
            c = await RawClient.open(server.url)
            r = await c.request(mallory.register(c.nonce))
            assert r.code == rf.StatusCode.CONFLICT
            c = await RawClient.open(server.url)
            r = await c.request(alice.register(c.nonce))
            assert r.code == rf.StatusCode.CONFLICT
            # A registration whose proof is signed for another nonce fails.
            c1 = await RawClient.open(server.url)
            c = await RawClient.open(server.url)
            newcomer = Device.new(14)
            r = await c.request(newcomer.register(c1.nonce))
            assert r.code == rf.StatusCode.UNAUTHENTICATED
            await c1.close()
            # A bad prekey signature is refused.
            c = await RawClient.open(server.url)
            reg = newcomer.register(c.nonce)
            spk = rf.SignedPreKey(1, reg.signed_pre_key.public_key, bytes(64))
            bad = rf.Register(**{**_fields(reg), "signed_pre_key": spk})
            assert (await c.request(bad)).code == rf.StatusCode.BAD_REQUEST

            assert dump(db) == before

    run(body)


def _fields(reg: rf.Register) -> dict[str, object]:
    return {name: getattr(reg, name) for name in reg.__slots__}


def test_unauthenticated_connections_only_deliver_sealed_messages(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    alice = Device.new(15)

    async def body() -> None:
        async with relay(db, clock=lambda: NOW) as server:
            a = await registered(server.url, alice)
            await a.close()
            before = dump(db)
            c = await RawClient.open(server.url)
            out = rf.OutgoingMessage(1, alice.registration_id, rf.EnvelopeType.CIPHERTEXT, b"x")
            for req in (
                rf.UploadPreKeys(),
                rf.GetPreKeyCounts(),
                rf.RotateSignedPreKey(rf.SignedPreKey(1, b"\x05" + bytes(32), bytes(64))),
                rf.FetchBundles(alice.aci),
                rf.GetDevices(alice.aci),
                rf.SendMessage(alice.aci, 1, (out,)),
                rf.Ack((bytes(16),)),
                rf.GetSenderCertificate(),
            ):
                r = await c.request(req)
                assert r.code == rf.StatusCode.UNAUTHENTICATED, req
            # Unknown account and wrong key look the same.
            unknown = rf.SendSealed(b"\x01" * 16, alice.access_key, 1, (out,))
            assert (await c.request(unknown)).code == rf.StatusCode.UNAUTHENTICATED
            await c.close()
            assert dump(db) == before

    run(body)


def test_a_device_cannot_ack_another_devices_messages(tmp_path: Path) -> None:
    alice, bob = Device.new(16), Device.new(17)

    async def body() -> None:
        async with relay(tmp_path / "r.db", clock=lambda: NOW) as server:
            a = await registered(server.url, alice)
            b = await registered(server.url, bob)
            out = rf.OutgoingMessage(1, alice.registration_id, rf.EnvelopeType.CIPHERTEXT, b"m")
            assert (await b.request(rf.SendMessage(alice.aci, 1, (out,)))).code == 0
            (env,) = await a.wait_pushes(1)
            assert (await b.request(rf.Ack((env.id,)))).code == rf.StatusCode.OK  # no effect
            await a.close()
            a = await authenticated(server.url, alice)
            assert [e.id for e in a.pushes] == [env.id]
            # Device-list mismatches are refused with details and queue nothing.
            stale = rf.OutgoingMessage(1, alice.registration_id ^ 1, 1, b"m")
            r = await b.request(rf.SendMessage(alice.aci, 1, (stale,)))
            assert r.code == rf.StatusCode.CONFLICT
            assert r.body == rf.SendResult((rf.MismatchedDevices(alice.aci, (), (), (1,)),))
            extra = rf.OutgoingMessage(2, 5, 1, b"m")
            r = await b.request(rf.SendMessage(alice.aci, 1, (out, extra)))
            assert r.body == rf.SendResult((rf.MismatchedDevices(alice.aci, (), (2,), ()),))
            await a.close()
            await b.close()

    run(body)


def test_bundle_fetches_are_rate_limited_per_requester(tmp_path: Path) -> None:
    alice, bob = Device.new(18), Device.new(19)

    async def body() -> None:
        async with relay(
            tmp_path / "r.db", clock=lambda: NOW, bundle_burst=2, bundle_refill_per_s=0.0
        ) as server:
            a = await registered(server.url, alice)
            b = await registered(server.url, bob)
            codes = [(await a.request(rf.FetchBundles(bob.aci))).code for _ in range(3)]
            assert codes == [rf.StatusCode.OK, rf.StatusCode.OK, rf.StatusCode.RATE_LIMITED]
            assert (await b.request(rf.FetchBundles(alice.aci))).code == rf.StatusCode.OK
            await a.close()
            await b.close()

    run(body)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.binary(max_size=300))
def test_arbitrary_frames_never_crash_the_service_or_change_the_database(
    tmp_path_factory: object, data: bytes
) -> None:
    global _FUZZ
    if _FUZZ is None:
        path = Path(str(tmp_path_factory.mktemp("fuzz"))) / "r.db"  # type: ignore[attr-defined]
        store = SqliteRelayStore.open(path)
        _FUZZ = (RelayService(store, SystemRng()), path, dump(path))
    service, path, before = _FUZZ
    try:
        frame = rf.decode_client_frame(data)
    except DecodeError:
        return
    session = service.new_session()
    outcome = service.handle(session, frame, NOW)
    assert isinstance(outcome.response, rf.Response)
    assert not session.authenticated
    rf.encode_server_frame(outcome.response)
    assert dump(path) == before


_FUZZ: tuple[RelayService, Path, str] | None = None
