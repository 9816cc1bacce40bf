"""PostgreSQL-only properties of the relay store: schema migrations (an empty database and
one from the previous schema version both come up; newer or foreign databases are refused),
group commit as one transaction with savepoints, a connection lost mid-batch, and a queued
envelope surviving a server crash (immediate shutdown) and restart."""

from __future__ import annotations

import os
import threading
from typing import Any

import psycopg
import pytest

from securemsg.errors import StorageError, UsageError
from securemsg.relay.pgstore import _MIGRATIONS, PG_SCHEMA_VERSION, PgRelayStore
from securemsg.relay.store import EnqueueResult, KeyRow, NewDevice, QueuedMessage

ACI = b"\xaa" * 16


def _msg(body: bytes = b"c", aci: bytes = ACI) -> QueuedMessage:
    return QueuedMessage(os.urandom(16), aci, 1, 6, None, 0, 1, 5, body)


def test_an_empty_database_and_one_of_the_previous_version_both_come_up(pg_url: str) -> None:
    with psycopg.connect(pg_url, autocommit=True) as conn:  # what version 1 wrote
        for statement in _MIGRATIONS[0]:
            conn.execute(statement)
        conn.execute("INSERT INTO schema_version VALUES (1, 1)")
        conn.execute(
            "INSERT INTO messages (id, aci, device_id, type, source_aci, source_device_id,"
            " client_timestamp, received_at, body) VALUES (%s, %s, 1, 6, NULL, 0, 1, 5, %s)",
            (b"i" * 16, ACI, b"queued before the upgrade"),
        )
    with PgRelayStore.open(pg_url) as store:
        (m,) = store.pending(ACI, 1)
        assert m.body == b"queued before the upgrade"
        assert store.queued_bytes() == len(m.body)
        assert store._read("SELECT version FROM schema_version") == [(PG_SCHEMA_VERSION,)]
        assert store.ack(ACI, 1, [m.id]) == 1 and store.queued_bytes() == 0
    with PgRelayStore.open(pg_url) as store:  # and reopening changes nothing
        assert store.queued_bytes() == 0


def test_newer_and_foreign_databases_are_refused(pg_server: Any, pg_url: str) -> None:
    with PgRelayStore.open(pg_url) as store:
        store._read("SELECT 1")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = %s", (PG_SCHEMA_VERSION + 1,))
    with pytest.raises(StorageError, match="newer"):
        PgRelayStore.open(pg_url)
    other = pg_server.create_database()
    try:
        with psycopg.connect(other, autocommit=True) as conn:
            conn.execute("CREATE TABLE inventory (item TEXT)")
        with pytest.raises(StorageError, match="not a securemsg relay database"):
            PgRelayStore.open(other)
    finally:
        pg_server.drop_database(other)
    with pytest.raises(StorageError, match="relay database error"):
        PgRelayStore.open(pg_url.replace("postgresql://postgres@", "postgresql://nobody@"))


def test_a_batch_is_one_transaction_and_a_failed_operation_is_undone_alone(pg_url: str) -> None:
    with PgRelayStore.open(pg_url) as store, PgRelayStore.open(pg_url) as other:
        first, dup = _msg(b"one"), _msg(b"two")
        with store.batch():
            assert store.enqueue([first], 10)
            assert other.pending(ACI, 1) == []  # not committed yet
            with pytest.raises(StorageError):  # the same id again: a unique violation
                store.enqueue([QueuedMessage(first.id, ACI, 1, 6, None, 0, 1, 5, b"x")], 10)
            assert store.enqueue([dup], 10)
            with pytest.raises(UsageError), store.batch():
                pass
        assert [m.body for m in other.pending(ACI, 1)] == [b"one", b"two"]
        assert other.queued_bytes() == 6


def _account(store: PgRelayStore, aci: bytes) -> None:
    store.create_device(
        NewDevice(
            aci=aci,
            device_id=1,
            registration_id=7,
            identity_key=b"\x05" + aci * 2,
            access_key_digest=b"d" * 32,
            signed_pre_key=KeyRow(1, b"\x05" + b"s" * 32, b"g" * 64),
            last_resort_kyber_pre_key=KeyRow(9, b"\x08" + b"L" * 1568, b"h" * 64),
            pre_keys=(),
            kyber_pre_keys=(),
        ),
        "2025-01-01",
    )


def test_two_instances_sending_crosswise_in_batches_do_not_deadlock(pg_url: str) -> None:
    """Instance A's batch sends to X then Y while B's sends to Y then X. Per-account usage
    rows locked in the order the batch met them deadlocked (PostgreSQL then failed one send
    with 40P01); they are now written at commit, in a fixed order, so both batches commit."""
    x, y = b"\x01" * 16, b"\x02" * 16
    with PgRelayStore.open(pg_url) as setup:
        _account(setup, x)
        _account(setup, y)
    halfway = threading.Barrier(2, timeout=30)
    errors: list[BaseException] = []

    def instance(first: bytes, second: bytes) -> None:
        try:
            with PgRelayStore.open(pg_url) as store, store.batch():
                assert store.enqueue([_msg(b"1" * 10, first)], 10)
                halfway.wait()
                assert store.enqueue([_msg(b"2" * 10, second)], 10)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=instance, args=(x, y)),
        threading.Thread(target=instance, args=(y, x)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    with PgRelayStore.open(pg_url) as store:
        assert len(store.pending(x, 1)) == len(store.pending(y, 1)) == 2
        assert store.account_queued_bytes(x) == store.account_queued_bytes(y) == 20
        assert store.queued_bytes() == 40


def test_an_account_budget_counts_what_the_open_batch_already_queued(pg_url: str) -> None:
    with PgRelayStore.open(pg_url) as store:
        _account(store, ACI)
        with store.batch():
            assert store.enqueue([_msg(b"a" * 60)], 10, max_bytes_per_account=100) is (
                EnqueueResult.QUEUED
            )
            refused = store.enqueue([_msg(b"b" * 60)], 10, max_bytes_per_account=100)
            assert refused is EnqueueResult.ACCOUNT_FULL
            (queued,) = store.pending(ACI, 1)
            assert store.ack(ACI, 1, [queued.id]) == 1  # freed within the batch
            assert store.enqueue([_msg(b"c" * 60)], 10, max_bytes_per_account=100) is (
                EnqueueResult.QUEUED
            )
        assert store.account_queued_bytes(ACI) == 60
        assert [m.body for m in store.pending(ACI, 1)] == [b"c" * 60]


def test_a_connection_lost_mid_batch_commits_nothing(pg_url: str) -> None:
    with PgRelayStore.open(pg_url) as store, PgRelayStore.open(pg_url) as admin:
        pid = store._read("SELECT pg_backend_pid()")[0][0]
        with pytest.raises(StorageError), store.batch():
            assert store.enqueue([_msg()], 10)
            admin._read("SELECT pg_terminate_backend(%s)", (pid,))
            store.enqueue([_msg()], 10)
        assert admin.pending(ACI, 1) == []
        assert admin.queued_bytes() == 0


def test_a_queued_envelope_survives_a_server_crash(pg_server: Any, pg_url: str) -> None:
    m = _msg(b"durable")
    with PgRelayStore.open(pg_url) as store:
        assert store.enqueue([m], 10)  # returned: committed with synchronous_commit=on
    pg_server.crash_and_restart()
    with PgRelayStore.open(pg_url) as store:
        assert store.pending(ACI, 1) == [m]
