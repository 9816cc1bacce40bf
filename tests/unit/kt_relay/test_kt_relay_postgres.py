"""Key transparency on a PostgreSQL relay: the same directory as on SQLite (clients pin it at
registration and verify every bundle), epochs committed once even with two publishers, and
only the cluster's leader publishing on its timer."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from kt_relay_harness import (
    aci_bytes,
    kt_of,
    new_client,
    rewrite_responses,
    run,
    substitute_identity_key,
)

from securemsg.crypto.curve25519 import PrivateKey
from securemsg.crypto.rng import SystemRng
from securemsg.errors import KeyTransparencyMismatch, UsageError
from securemsg.kt.heads import SignedEpochHead
from securemsg.relay.kt import RelayKeyTransparency
from securemsg.relay.kt_store import RelayKtStore
from securemsg.relay.pgstore import KT_COMMIT_LOCK, PgRelayStore
from securemsg.relay.server import RelayServer
from securemsg.relay.service import RelayConfig, TokenBuckets
from securemsg.relay.store import CreateResult, KeyRow, NewDevice
from securemsg.relay_protocol import frames as rf


def test_clients_register_and_verify_bundles_on_a_postgres_relay(
    pg_url: str, tmp_path: Path
) -> None:
    async def body() -> None:
        async with RelayServer(pg_url) as relay:
            alice = await new_client(relay, tmp_path / "alice.db", kt_pending="wait")
            bob = await new_client(relay, tmp_path / "bob.db")
            carol = await new_client(relay, tmp_path / "carol.db")
            try:
                assert kt_of(relay).store.pending_value(aci_bytes(bob)) is not None
                assert await relay.publish_kt_epoch() == 1
                alice.add_contact(bob.contact_card)
                await alice.send_text(bob.aci, "verified on PostgreSQL")
                assert alice.kt_head_epoch == 1
                await bob.connect()
                message = await bob.receive(timeout=10)
                assert message is not None and message.text == "verified on PostgreSQL"
                monitored = await bob.kt_monitor()
                assert (monitored.pending, monitored.epoch, monitored.versions) == (False, 1, 1)

                mallory = PrivateKey.generate(SystemRng()).public_key().to_bytes()

                rewrite_responses(relay, substitute_identity_key(mallory))
                alice.add_contact(carol.contact_card)
                with pytest.raises(KeyTransparencyMismatch):
                    await alice.send_text(carol.aci, "to the wrong key?")
                assert alice.store.get_session_device_ids(carol.aci) == []
            finally:
                for c in (alice, bob, carol):
                    await c.close()

    run(body())


def _device(aci: bytes) -> NewDevice:
    ik = PrivateKey.generate(SystemRng()).public_key().to_bytes()
    spk = KeyRow(1, PrivateKey.generate(SystemRng()).public_key().to_bytes(), b"\x00" * 64)
    return NewDevice(
        aci=aci,
        device_id=1,
        registration_id=1,
        identity_key=ik,
        access_key_digest=b"\x00" * 32,
        signed_pre_key=spk,
        last_resort_kyber_pre_key=spk,
    )


class _Racing(RelayKtStore):
    """Runs ``before_commit`` just before committing (another publisher getting in first)."""

    __slots__ = ("before_commit",)

    def commit_epoch(self, *args: Any, **kwargs: Any) -> None:
        self.before_commit()
        super().commit_epoch(*args, **kwargs)


def test_two_publishers_commit_an_epoch_once(pg_url: str) -> None:
    config = RelayConfig()
    buckets = TokenBuckets(1, 1.0)
    with (
        contextlib.closing(PgRelayStore.open(pg_url)) as a,
        contextlib.closing(PgRelayStore.open(pg_url)) as b,
    ):
        for i in range(3):
            assert a.create_device(_device(bytes([i + 1]) * 16), "2026-01-01") == (
                CreateResult.CREATED
            )
        queued = a.kt_store().pending_updates(10)
        assert len(queued) == 3
        lock = "SELECT pg_advisory_xact_lock(" + str(KT_COMMIT_LOCK) + ")"
        racing = _Racing(a, paramstyle="format", lock_sql=lock)
        kt_b = RelayKeyTransparency(b.kt_store(), SystemRng(), config, buckets, buckets)
        racing.before_commit = lambda: kt_b.publish(1_000)
        kt_a = RelayKeyTransparency(racing, SystemRng(), config, buckets, buckets)
        assert kt_a.vrf_public_key == kt_b.vrf_public_key  # one directory, one key pair
        with pytest.raises(UsageError):
            kt_a.publish(2_000)
        check = a.kt_store()
        assert check.latest_epoch() == 1  # B's epoch, and nothing of A's
        assert len(check.signed_heads(0, 10)) == 1
        assert check.pending_updates(10) == []
        assert [len(check.value_states(label)) for label, _ in queued] == [1, 1, 1]


def test_only_the_leader_publishes_on_its_timer(pg_url: str) -> None:
    config = RelayConfig(kt_epoch_interval_s=0.05)

    async def body() -> None:
        async with (
            RelayServer(pg_url, config=config) as first,
            RelayServer(pg_url, config=config) as second,
        ):
            assert first._cluster is not None and second._cluster is not None
            assert first._cluster.leader and not second._cluster.leader
            published = {"first": 0, "second": 0}
            for name, relay in (("first", first), ("second", second)):
                real = relay.publish_kt_epoch

                async def counted(
                    name: str = name, real: Callable[[], Awaitable[int | None]] = real
                ) -> int | None:
                    published[name] += 1
                    return await real()

                relay.publish_kt_epoch = counted  # type: ignore[method-assign]
            for _ in range(2000):  # bounded; ends at the third publication
                if published["first"] >= 3:
                    break
                await asyncio.sleep(0.05)
            assert published["first"] >= 3
            assert published["second"] == 0

    run(body())


def test_accounts_from_before_the_kt_migration_are_queued_for_the_directory(pg_url: str) -> None:
    import psycopg

    from securemsg.relay.pgstore import _MIGRATIONS

    aci, identity_key = b"\xab" * 16, b"\x05" + b"\x11" * 32
    with psycopg.connect(pg_url, autocommit=True) as conn:  # what schema version 3 wrote
        for step in _MIGRATIONS[:3]:
            for statement in step:
                conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (1, 3)")
        conn.execute(
            "INSERT INTO accounts (aci, identity_key, access_key_digest, created_date)"
            " VALUES (%s, %s, %s, '2026-01-01')",
            (aci, identity_key, b"\x00" * 32),
        )
    with contextlib.closing(PgRelayStore.open(pg_url)) as store:
        kt_store = store.kt_store()
        assert kt_store.pending_updates(10) == [(aci, identity_key)]
        assert kt_store.latest_epoch() == 0 and kt_store.keys() is None


def test_a_proof_built_across_another_instances_epoch_is_built_again(pg_url: str) -> None:
    config = RelayConfig()
    buckets = TokenBuckets(100, 1.0)
    with (
        contextlib.closing(PgRelayStore.open(pg_url)) as a,
        contextlib.closing(PgRelayStore.open(pg_url)) as b,
    ):
        a.create_device(_device(b"\x01" * 16), "2026-01-01")
        kt_a = RelayKeyTransparency(a.kt_store(), SystemRng(), config, buckets, buckets)
        kt_b = RelayKeyTransparency(b.kt_store(), SystemRng(), config, buckets, buckets)
        assert kt_b.publish(1_000) is not None
        real = kt_a._proof_once
        built: list[int] = []
        accounts = iter(range(2, 100))

        def racing(label: bytes, *, history: bool) -> rf.KtProofResult:
            built.append(kt_a.directory.epoch)
            if len(built) <= times:  # another instance commits an epoch mid-proof
                a.create_device(_device(bytes([next(accounts)]) * 16), "2026-01-01")
                assert kt_b.publish(2_000) is not None
            return real(label, history=history)

        kt_a._proof_once = racing  # type: ignore[method-assign]
        times = 1
        answer = kt_a.answer(b"\x01" * 16, 1, 7, rf.KtLookup(b"\x01" * 16), 0)
        assert answer.code == rf.StatusCode.OK and built == [1, 2]
        assert isinstance(answer.body, rf.KtProofResult) and answer.body.head is not None
        head = SignedEpochHead.from_bytes(answer.body.head.signed_head).head
        assert head.epoch == 2  # the proof and its head are of the epoch it was built at
        built.clear()
        times = 10  # an epoch during every attempt: refused, not a mixed proof
        answer = kt_a.answer(b"\x01" * 16, 1, 8, rf.KtLookup(b"\x01" * 16), 0)
        assert answer.code == rf.StatusCode.INTERNAL and answer.body is None
        assert len(built) == 3
