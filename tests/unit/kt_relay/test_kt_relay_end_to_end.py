"""Key transparency end to end over loopback: the real RelayServer publishes, real Clients
verify every fetched bundle, monitor their own account, and refuse a hostile relay."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from kt_relay_harness import (
    aci_bytes,
    kt_of,
    new_client,
    publish_false_key,
    rewrite_responses,
    run,
    substitute_identity_key,
)

from securemsg.client import Client
from securemsg.crypto.curve25519 import PrivateKey
from securemsg.crypto.kt_primitives import Ed25519SigningKey
from securemsg.crypto.rng import SystemRng
from securemsg.errors import (
    KeyTransparencyHeadError,
    KeyTransparencyMismatch,
    KeyTransparencyMonitorError,
    KeyTransparencyPending,
)
from securemsg.kt.heads import EpochHead, SignedEpochHead, sign_epoch_head
from securemsg.relay.server import RelayServer
from securemsg.relay.service import RelayConfig
from securemsg.relay_protocol import frames as rf


def _other_identity_key() -> bytes:
    return PrivateKey.generate(SystemRng()).public_key().to_bytes()


async def _pair(relay: RelayServer, tmp: Path, **alice_kw: object) -> tuple[Client, Client]:
    alice = await new_client(relay, tmp / "alice.db", **alice_kw)
    bob = await new_client(relay, tmp / "bob.db")
    alice.add_contact(bob.contact_card)
    return alice, bob


def test_a_published_key_verifies_and_a_pending_one_waits(tmp_path: Path) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            alice, bob = await _pair(relay, tmp_path, kt_pending="wait")
            try:
                with pytest.raises(KeyTransparencyPending) as info:
                    await alice.send_text(bob.aci, "too early")
                assert info.value.aci == bob.aci and info.value.reason == "pending"
                assert alice.store.get_session_device_ids(bob.aci) == []
                assert alice.kt_head_epoch == 0
                assert await relay.publish_kt_epoch() == 1
                assert await relay.publish_kt_epoch() is None  # nothing queued
                await alice.send_text(bob.aci, "hello")
                assert alice.kt_head_epoch == 1
                await bob.connect()
                message = await bob.receive(timeout=10)
                assert message is not None and message.text == "hello"
                result = await bob.kt_monitor()
                assert (result.pending, result.epoch, result.versions) == (False, 1, 1)
            finally:
                await alice.close()
                await bob.close()

    run(body())


def test_the_warn_policy_proceeds_and_records_a_warning(tmp_path: Path) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            alice, bob = await _pair(relay, tmp_path, kt_pending="warn")
            try:
                pending = await bob.kt_monitor()
                assert pending.pending and pending.epoch == 0
                await alice.send_text(bob.aci, "unverified yet")
                assert [(w.aci, w.reason) for w in alice.kt_warnings] == [(bob.aci, "pending")]
            finally:
                await alice.close()
                await bob.close()

    run(body())


def test_a_substituted_identity_key_is_refused_and_changes_nothing(tmp_path: Path) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            alice, bob = await _pair(relay, tmp_path, kt_pending="wait")
            carol = await new_client(relay, tmp_path / "carol.db")
            try:
                await relay.publish_kt_epoch()
                alice.add_contact(carol.contact_card)
                await alice.send_text(carol.aci, "verified: epoch 1 stored")
                assert alice.kt_head_epoch == 1
                mallory = _other_identity_key()

                rewrite_responses(relay, substitute_identity_key(mallory))
                with pytest.raises(KeyTransparencyMismatch) as info:
                    await alice.send_text(bob.aci, "to the wrong key?")
                assert info.value.aci == bob.aci
                assert alice.store.get_session_device_ids(bob.aci) == []
                assert alice.kt_head_epoch == 1
            finally:
                for c in (alice, bob, carol):
                    await c.close()

    run(body())


def test_a_false_key_the_relay_publishes_is_caught_by_monitoring(tmp_path: Path) -> None:
    clock = [1_800_000_000_000]
    interval_s = 600.0

    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            alice, _ = await _pair(relay, tmp_path)
            bob = await Client.open(
                tmp_path / "bob.db", clock=lambda: clock[0], kt_monitor_interval_s=interval_s
            )
            try:
                await relay.publish_kt_epoch()
                await bob.connect()
                assert (await bob.kt_monitor_if_due()) is not None  # the first check runs
                assert (await bob.kt_monitor_if_due()) is None  # not due again yet
                mallory = _other_identity_key()
                assert await publish_false_key(relay, aci_bytes(bob), mallory) == 2

                # Alice's lookup now verifies the false key: the relay substituted and
                # published it, so a bundle carrying it would pass her check ...
                assert await alice._kt.verify_identity(alice._request, bob.aci, mallory)
                # ... and Bob's next monitoring run, within one interval, catches it.
                clock[0] += int(interval_s * 1000)
                with pytest.raises(KeyTransparencyMonitorError) as info:
                    await bob.kt_monitor_if_due()
                assert info.value.versions == ((2, 2),)
                assert info.value.reason == "monitor"
            finally:
                await alice.close()
                await bob.close()

    run(body())


def _forge_head(relay: RelayServer, epoch: int, previous: bytes, time_ms: int) -> rf.KtHead:
    """A head signed with the relay's own head key (a hostile relay holds it)."""
    key: Ed25519SigningKey = kt_of(relay)._head_key
    head = EpochHead(epoch, b"\x42" * 32, time_ms, previous)
    return rf.KtHead(sign_epoch_head(key, head).to_bytes())


def test_a_forked_or_rolled_back_head_chain_is_refused(tmp_path: Path) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            alice, bob = await _pair(relay, tmp_path, kt_pending="wait")
            await relay.publish_kt_epoch()
            carol = await new_client(relay, tmp_path / "carol.db")
            try:
                await alice.send_text(bob.aci, "epoch 1")
                assert await relay.publish_kt_epoch() == 2  # carol's key
                alice.add_contact(carol.contact_card)
                await alice.send_text(carol.aci, "epoch 2")
                assert alice.kt_head_epoch == 2
                stored = alice._kt.head
                assert stored is not None
                epoch1 = SignedEpochHead.from_bytes(
                    await relay.call(lambda s: s.kt.store.signed_head(1))
                )
                mode = ["rollback"]

                def hostile(frame: rf.ClientFrame, response: rf.Response) -> rf.Response:
                    if not isinstance(response.body, rf.KtProofResult):
                        return response
                    if mode[0] == "rollback":  # serve the proof's head as an older epoch
                        head = rf.KtHead(epoch1.to_bytes())
                    elif mode[0] == "fork":  # another head for the stored epoch
                        head = _forge_head(
                            relay, 2, stored.head.previous_head_hash, stored.head.time_ms
                        )
                    else:  # a next head that does not chain to the stored one
                        head = _forge_head(relay, 3, b"\x00" * 32, stored.head.time_ms)
                    return dataclasses.replace(
                        response, body=dataclasses.replace(response.body, head=head)
                    )

                rewrite_responses(relay, hostile)
                dave = await new_client(relay, tmp_path / "dave.db")
                await relay.publish_kt_epoch()
                alice.add_contact(dave.contact_card)
                for reason in ("rollback", "fork", "chain-fork"):
                    mode[0] = reason
                    with pytest.raises(KeyTransparencyHeadError) as info:
                        await alice.send_text(dave.aci, "refused")
                    assert info.value.reason in ("rollback", "fork")
                    assert alice.store.get_session_device_ids(dave.aci) == []
                    assert alice._kt.head == stored
                await dave.close()
            finally:
                for c in (alice, bob, carol):
                    await c.close()

    run(body())


def test_a_client_requiring_cosignatures_waits_for_the_auditor(tmp_path: Path) -> None:
    from securemsg.cli.kt_audit import audit_relay

    auditor = Ed25519SigningKey(b"\x07" * 32)
    config = RelayConfig(kt_auditor_keys=(auditor.public_key,))

    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db", config=config) as relay:
            alice, bob = await _pair(
                relay,
                tmp_path,
                kt_pending="wait",
                kt_auditors=[auditor.public_key],
                kt_min_cosignatures=1,
            )
            try:
                await relay.publish_kt_epoch()
                with pytest.raises(KeyTransparencyHeadError) as info:
                    await alice.send_text(bob.aci, "no cosignature yet")
                assert info.value.reason == "cosignature"
                assert alice.kt_head_epoch == 0
                report = await audit_relay(relay.url, auditor_key=auditor)
                assert (report.to_epoch, report.cosigned) == (1, 1)
                await alice.send_text(bob.aci, "cosigned")
                assert alice.kt_head_epoch == 1
            finally:
                await alice.close()
                await bob.close()

    run(body())
