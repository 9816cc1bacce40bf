"""Self-monitoring fails closed: once a device has seen its own key published, a relay that
answers its history request with "pending" (no proof, no head) is refused, across restarts;
before that, "pending" is accepted only for a bounded time after registration."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from kt_relay_harness import aci_bytes, kt_of, new_client, publish_false_key, rewrite_responses, run

from securemsg.client import Client
from securemsg.client.kt import FIRST_PUBLICATION_WINDOW_S
from securemsg.crypto.curve25519 import PrivateKey
from securemsg.crypto.rng import SystemRng
from securemsg.errors import (
    KeyTransparencyError,
    KeyTransparencyHistoryWithheld,
    KeyTransparencyMonitorError,
)
from securemsg.relay.server import RelayServer
from securemsg.relay_protocol import frames as rf

_WINDOW_MS = FIRST_PUBLICATION_WINDOW_S * 1000


def _other_identity_key() -> bytes:
    return PrivateKey.generate(SystemRng()).public_key().to_bytes()


def answer_history_pending(relay: RelayServer) -> None:
    """A hostile relay: every history request of every account is "pending", no proof, no
    head (what an honest relay says only before the account's first epoch)."""

    def pending(frame: rf.ClientFrame, response: rf.Response) -> rf.Response:
        if isinstance(frame.body, rf.KtHistory):
            return dataclasses.replace(
                response, code=rf.StatusCode.OK, message="", body=rf.KtProofResult(b"", None, True)
            )
        return response

    rewrite_responses(relay, pending)


def test_a_relay_answering_pending_after_publication_cannot_hide_a_false_key(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            bob = await new_client(relay, tmp_path / "bob.db")
            alice = await new_client(relay, tmp_path / "alice.db")
            try:
                assert await relay.publish_kt_epoch() == 1
                first = await bob.kt_monitor()
                assert (first.pending, first.epoch, first.versions) == (False, 1, 1)
                mallory = _other_identity_key()
                assert await publish_false_key(relay, aci_bytes(bob), mallory) == 2
                # Alice's lookup verifies the relay's substitute key for Bob ...
                assert await alice._kt.verify_identity(alice._request, bob.aci, mallory)
                # ... and the relay hides it from Bob by calling his history "pending".
                answer_history_pending(relay)
                with pytest.raises(KeyTransparencyHistoryWithheld) as info:
                    await bob.kt_monitor()
                assert isinstance(info.value, KeyTransparencyError)
                assert info.value.reason == "withheld"
                assert (info.value.aci, info.value.published_epoch) == (bob.aci, 1)
                assert bob.kt_head_epoch == 1  # nothing stored
                with pytest.raises(KeyTransparencyHistoryWithheld):
                    await bob.kt_monitor()  # every time, not once
            finally:
                await alice.close()
                await bob.close()

    run(body())


def test_the_published_epoch_is_remembered_across_a_restart(tmp_path: Path) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            bob = await new_client(relay, tmp_path / "bob.db")
            await relay.publish_kt_epoch()
            await bob.kt_monitor()
            await bob.close()
            answer_history_pending(relay)
            bob = await Client.open(tmp_path / "bob.db")
            try:
                await bob.connect()
                with pytest.raises(KeyTransparencyHistoryWithheld) as info:
                    await bob.kt_monitor()
                assert info.value.published_epoch == 1
            finally:
                await bob.close()

    run(body())


def test_pending_before_the_first_publication_is_allowed_for_a_bounded_time(
    tmp_path: Path,
) -> None:
    clock = [1_800_000_000_000]

    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            bob = await new_client(relay, tmp_path / "bob.db", clock=lambda: clock[0])
            try:
                assert (await bob.kt_monitor()).pending  # just registered: nothing published
                clock[0] += _WINDOW_MS
                assert (await bob.kt_monitor()).pending  # the last moment of the window
                clock[0] += 1
                with pytest.raises(KeyTransparencyHistoryWithheld) as info:
                    await bob.kt_monitor()
                assert (info.value.reason, info.value.published_epoch) == ("withheld", 0)
            finally:
                await bob.close()
            # the window is counted from registration, not from this process's start
            bob = await Client.open(tmp_path / "bob.db", clock=lambda: clock[0])
            try:
                await bob.connect()
                with pytest.raises(KeyTransparencyHistoryWithheld):
                    await bob.kt_monitor()
                assert await relay.publish_kt_epoch() == 1  # late, but published: fine again
                result = await bob.kt_monitor()
                assert (result.pending, result.epoch) == (False, 1)
            finally:
                await bob.close()

    run(body())


def test_a_database_without_a_registration_time_starts_its_window_at_the_first_pending(
    tmp_path: Path,
) -> None:
    clock = [1_800_000_000_000]

    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            bob = await new_client(relay, tmp_path / "bob.db", clock=lambda: clock[0])
            try:
                bob.store.set_meta("kt_pending_since", None)  # registered by an older version
                clock[0] += 10 * _WINDOW_MS
                assert (await bob.kt_monitor()).pending
                clock[0] += _WINDOW_MS + 1
                with pytest.raises(KeyTransparencyHistoryWithheld):
                    await bob.kt_monitor()
            finally:
                await bob.close()

    run(body())


def test_a_key_queued_for_our_account_after_publication_is_reported(tmp_path: Path) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            bob = await new_client(relay, tmp_path / "bob.db")
            try:
                await relay.publish_kt_epoch()
                await bob.kt_monitor()
                # a key for Bob the relay queues and holds back (lookups call it "pending")
                mallory = _other_identity_key()
                await relay.call(lambda s: kt_of(relay).store.queue(aci_bytes(bob), mallory))
                with pytest.raises(KeyTransparencyHistoryWithheld) as info:
                    await bob.kt_monitor()
                assert (info.value.reason, info.value.published_epoch) == ("queued", 1)
                assert await relay.publish_kt_epoch() == 2
                with pytest.raises(KeyTransparencyMonitorError):
                    await bob.kt_monitor()
            finally:
                await bob.close()

    run(body())
