"""Auditors' cosignatures on a relay that anyone may connect to: throw-away keys cannot take
the slots the real auditors need, and junk cannot spend the budget a real auditor cosigns with."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from kt_relay_harness import kt_of, new_client, run

from securemsg.client.connection import RelayConnection
from securemsg.crypto.kt_primitives import Ed25519SigningKey
from securemsg.crypto.rng import SystemRng
from securemsg.errors import RelayError
from securemsg.kt.cosign import cosign_head
from securemsg.kt.heads import EpochHead, SignedEpochHead
from securemsg.relay.server import RelayServer
from securemsg.relay.service import RelayConfig, RelayService, Session
from securemsg.relay.store import SqliteRelayStore
from securemsg.relay_protocol import frames as rf


async def _latest_head(conn: RelayConnection) -> EpochHead:
    heads = (await conn.request(rf.KtGetHeads(0))).body
    assert isinstance(heads, rf.KtHeads)
    return SignedEpochHead.from_bytes(heads.heads[-1].signed_head).head


async def _cosign(conn: RelayConnection, key: Ed25519SigningKey, head: EpochHead) -> int:
    """Post ``key``'s cosignature of ``head``; the relay's status code."""
    try:
        await conn.request(rf.KtCosign(head.epoch, key.public_key, cosign_head(key, head)))
    except RelayError as e:
        return e.code
    return int(rf.StatusCode.OK)


def test_throw_away_keys_cannot_take_the_cosignature_slots(tmp_path: Path) -> None:
    """A relay without configured auditors stores no one's cosignature (so no first-comer
    takes the slots); one configured with its auditor stores and serves that auditor's even
    when junk from a relay that stored anyone's already fills an epoch."""
    db = tmp_path / "relay.db"
    auditor = Ed25519SigningKey(os.urandom(32))
    junk = [Ed25519SigningKey(os.urandom(32)) for _ in range(rf.MAX_KT_COSIGNATURES)]

    async def unconfigured() -> None:
        async with RelayServer(db) as relay:
            bob = await new_client(relay, tmp_path / "bob.db")
            await bob.close()
            assert await relay.publish_kt_epoch() == 1
            attacker = await RelayConnection.open(relay.url)  # no account
            try:
                head = await _latest_head(attacker)
                for key in junk:
                    assert await _cosign(attacker, key, head) == rf.StatusCode.FORBIDDEN
                assert await _cosign(attacker, auditor, head) == rf.StatusCode.FORBIDDEN
            finally:
                await attacker.close()
            assert await relay.call(lambda _s: kt_of(relay).store.cosignatures(1)) == []
            # What an older relay, which stored anyone's, may have left behind.
            for key in junk:
                await relay.call(
                    lambda _s, key=key, head=head: kt_of(relay).store.add_cosignature(
                        1, key.public_key, cosign_head(key, head)
                    )
                )

    async def configured() -> None:
        config = RelayConfig(kt_auditor_keys=(auditor.public_key,))
        async with RelayServer(db, config=config) as relay:
            conn = await RelayConnection.open(relay.url)
            alice = await new_client(
                relay,
                tmp_path / "alice.db",
                kt_auditors=[auditor.public_key],
                kt_min_cosignatures=1,
            )
            carol = await new_client(relay, tmp_path / "carol.db")
            try:
                head = await _latest_head(conn)
                extra = Ed25519SigningKey(os.urandom(32))
                assert await _cosign(conn, extra, head) == rf.StatusCode.FORBIDDEN
                assert await _cosign(conn, auditor, head) == rf.StatusCode.OK
                heads = (await conn.request(rf.KtGetHeads(0))).body
                assert isinstance(heads, rf.KtHeads)
                served = heads.heads[-1].cosignatures
                assert [c.auditor_key for c in served] == [auditor.public_key]
                assert await relay.publish_kt_epoch() == 2
                for key in junk:
                    assert (
                        await _cosign(conn, key, await _latest_head(conn))
                        == rf.StatusCode.FORBIDDEN
                    )
                assert await _cosign(conn, auditor, await _latest_head(conn)) == rf.StatusCode.OK
                alice.add_contact(carol.contact_card)
                await alice.send_text(carol.aci, "cosigned by the auditor alice pins")
                assert alice.kt_head_epoch == 2
            finally:
                await conn.close()
                await alice.close()
                await carol.close()

    run(unconfigured())
    run(configured())


def test_junk_cosign_requests_do_not_spend_the_auditors_budget(tmp_path: Path) -> None:
    """1200 bogus ``KtCosign`` over four anonymous connections, then the auditor cosigns."""
    auditor = Ed25519SigningKey(os.urandom(32))
    other = Ed25519SigningKey(os.urandom(32))
    config = RelayConfig(
        kt_auditor_keys=(auditor.public_key, other.public_key),
        kt_audit_burst=20,
        kt_audit_refill_per_s=0.001,
    )

    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db", config=config) as relay:
            bob = await new_client(relay, tmp_path / "bob.db")
            await bob.close()
            assert await relay.publish_kt_epoch() == 1
            conns = [await RelayConnection.open(relay.url) for _ in range(5)]
            head = await _latest_head(conns[0])
            stranger = Ed25519SigningKey(os.urandom(32))
            bogus = (
                rf.KtCosign(10**9, auditor.public_key, os.urandom(64)),  # no such epoch
                rf.KtCosign(1, auditor.public_key, os.urandom(64)),  # does not verify
                rf.KtCosign(1, os.urandom(32), os.urandom(64)),  # not an auditor
                rf.KtCosign(1, stranger.public_key, cosign_head(stranger, head)),
                rf.KtCosign(1, other.public_key, cosign_head(auditor, head)),
            )
            refused: list[int] = []

            async def spam(conn: RelayConnection) -> None:
                for i in range(300):
                    try:
                        await conn.request(bogus[i % len(bogus)])
                    except RelayError as e:
                        refused.append(e.code)

            await asyncio.gather(*(spam(c) for c in conns[:4]))
            assert len(refused) == 1200
            assert rf.StatusCode.RATE_LIMITED not in refused
            try:
                assert await _cosign(conns[4], auditor, head) == rf.StatusCode.OK
                # Its cosignature is public: posting it again (anyone can) changes nothing
                # and spends nothing.
                for _ in range(50):
                    assert await _cosign(conns[0], auditor, head) == rf.StatusCode.OK
                assert await _cosign(conns[4], other, head) == rf.StatusCode.OK
            finally:
                for c in conns:
                    await c.close()

    run(body())


def test_each_auditor_has_its_own_cosigning_budget(tmp_path: Path) -> None:
    auditor = Ed25519SigningKey(b"\x11" * 32)
    busy = Ed25519SigningKey(b"\x12" * 32)
    config = RelayConfig(
        kt_auditor_keys=(auditor.public_key, busy.public_key),
        kt_audit_burst=2,
        kt_audit_refill_per_s=0.001,
    )
    with SqliteRelayStore.open(tmp_path / "relay.db") as store:
        service = RelayService(store, SystemRng(), config)
        kt = service.kt
        assert kt is not None
        for epoch in range(1, 5):
            kt.store.queue(bytes([epoch]) * 16, b"\x05" * 33)
            assert service.publish_kt_epoch(1000 * epoch) == epoch
        anonymous = Session(nonce=b"\x00" * 32)

        def cosign(key: Ed25519SigningKey, epoch: int) -> rf.StatusCode:
            head = SignedEpochHead.from_bytes(kt.store.signed_head(epoch) or b"").head
            frame = rf.ClientFrame(1, rf.KtCosign(epoch, key.public_key, cosign_head(key, head)))
            return service.handle(anonymous, frame, 9000).response.code

        assert [cosign(busy, e) for e in (1, 2, 3)] == [
            rf.StatusCode.OK,
            rf.StatusCode.OK,
            rf.StatusCode.RATE_LIMITED,
        ]
        assert [cosign(auditor, e) for e in (1, 2)] == [rf.StatusCode.OK, rf.StatusCode.OK]
        assert cosign(auditor, 1) == rf.StatusCode.OK  # the same again: stored, nothing spent
        assert kt.store.cosignatures(3) == []
