"""RelayStore contract (on both implementations, SQLite and PostgreSQL): one-time prekeys
at most once under concurrency, fallback to last-resort keys, mailbox ack / expiry / caps,
atomic registration, and the schema classification."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from securemsg.relay.disclosure import SCHEMA_CLASSIFICATION, unclassified_columns
from securemsg.relay.store import (
    CreateResult,
    KeyRow,
    NewDevice,
    QueuedMessage,
    RelayStore,
    ServerKeysRow,
    SqliteRelayStore,
)

StoreOpener = Callable[[], RelayStore]  # the store_opener fixture (tests/unit/relay/conftest.py)

ACI_A = b"\xaa" * 16
ACI_B = b"\xbb" * 16


def _device(
    aci: bytes, device_id: int = 1, *, n: int = 3, identity: bytes = b"\x05" + b"i" * 32
) -> NewDevice:
    return NewDevice(
        aci=aci,
        device_id=device_id,
        registration_id=7,
        identity_key=identity,
        access_key_digest=b"d" * 32,
        signed_pre_key=KeyRow(1, b"\x05" + b"s" * 32, b"g" * 64),
        last_resort_kyber_pre_key=KeyRow(9, b"\x08" + b"L" * 1568, b"h" * 64),
        pre_keys=tuple(KeyRow(100 + i, b"\x05" + bytes([i]) * 32) for i in range(n)),
        kyber_pre_keys=tuple(
            KeyRow(200 + i, b"\x08" + bytes([i]) * 1568, b"k" * 64) for i in range(n)
        ),
    )


def _msg(aci: bytes, device_id: int, received_at: int, body: bytes = b"c") -> QueuedMessage:
    return QueuedMessage(os.urandom(16), aci, device_id, 6, None, 0, 1, received_at, body)


@pytest.fixture
def store(store_opener: StoreOpener) -> Iterator[RelayStore]:
    s = store_opener()
    yield s
    s.close()


def test_one_time_prekeys_are_handed_out_at_most_once_under_concurrent_fetches(
    store_opener: StoreOpener,
) -> None:
    s = store_opener()
    with contextlib.closing(s):
        assert s.create_device(_device(ACI_A, n=40), "2025-01-01") is CreateResult.CREATED
    handed: list[int] = []
    kyber: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def fetcher() -> None:
        try:
            with contextlib.closing(store_opener()) as mine:  # one connection per thread
                for _ in range(15):
                    for b in mine.take_bundles(ACI_A, None):
                        with lock:
                            if b.pre_key is not None:
                                handed.append(b.pre_key.key_id)
                            if not b.kyber_last_resort:
                                kyber.append(b.kyber_pre_key.key_id)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=fetcher) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert sorted(handed) == list(range(100, 140))  # every key once, none twice
    assert sorted(kyber) == list(range(200, 240))


def test_bundles_fall_back_to_signed_and_last_resort_keys(store: RelayStore) -> None:
    store.create_device(_device(ACI_A, n=1), "2025-01-01")
    (first,) = store.take_bundles(ACI_A, 1)
    assert first.pre_key is not None and first.pre_key.key_id == 100
    assert not first.kyber_last_resort and first.kyber_pre_key.key_id == 200
    assert store.pre_key_counts(ACI_A, 1) == (0, 0)
    (second,) = store.take_bundles(ACI_A, 1)
    assert second.pre_key is None
    assert second.kyber_last_resort and second.kyber_pre_key.key_id == 9
    assert second.signed_pre_key.key_id == 1
    (third,) = store.take_bundles(ACI_A, 1)  # the last-resort key is never consumed
    assert third.kyber_pre_key == second.kyber_pre_key
    assert store.take_bundles(ACI_B, None) == []
    assert store.take_bundles(ACI_A, 2) == []


def test_registration_conflicts_change_nothing(store: RelayStore) -> None:
    assert store.create_device(_device(ACI_A), "2025-01-01") is CreateResult.CREATED
    assert store.create_device(_device(ACI_A), "2025-01-02") is CreateResult.DEVICE_EXISTS
    other = _device(ACI_A, 2, identity=b"\x05" + b"X" * 32)
    assert store.create_device(other, "2025-01-02") is CreateResult.IDENTITY_MISMATCH
    assert [d.device_id for d in store.list_devices(ACI_A)] == [1]
    assert store.create_device(_device(ACI_A, 2), "2025-01-03") is CreateResult.CREATED
    devices = store.list_devices(ACI_A)
    assert [(d.device_id, d.created_date) for d in devices] == [
        (1, "2025-01-01"),
        (2, "2025-01-03"),
    ]
    account = store.get_account(ACI_A)
    assert account is not None and account.created_date == "2025-01-01"
    store.touch_device(ACI_A, 1, "2025-02-01")
    device = store.get_device(ACI_A, 1)
    assert device is not None and device.last_seen_date == "2025-02-01"


def test_prekey_upload_cap_is_all_or_nothing(store: RelayStore) -> None:
    store.create_device(_device(ACI_A, n=2), "2025-01-01")
    more = [KeyRow(300 + i, b"\x05" + b"n" * 32) for i in range(3)]
    assert not store.store_pre_keys(ACI_A, 1, pre_keys=more, max_stored=4)
    assert store.pre_key_counts(ACI_A, 1) == (2, 2)
    assert store.store_pre_keys(ACI_A, 1, pre_keys=more[:2], max_stored=4)
    assert store.pre_key_counts(ACI_A, 1) == (4, 2)
    new_spk = KeyRow(2, b"\x05" + b"S" * 32, b"G" * 64)
    assert store.store_pre_keys(ACI_A, 1, signed_pre_key=new_spk, max_stored=4)
    assert store.take_bundles(ACI_A, 1)[0].signed_pre_key == new_spk


def test_mailbox_ack_deletes_only_own_messages_and_expiry_sweeps_old_ones(
    store: RelayStore,
) -> None:
    a1, a2, b1 = _msg(ACI_A, 1, 1000), _msg(ACI_A, 1, 2000), _msg(ACI_B, 1, 3000)
    assert store.enqueue([a1, a2, b1], max_per_device=10)
    assert [m.id for m in store.pending(ACI_A, 1)] == [a1.id, a2.id]
    assert store.ack(ACI_B, 1, [a1.id]) == 0  # B cannot ack A's message
    assert store.ack(ACI_A, 2, [a1.id]) == 0  # nor can another device of A
    assert store.ack(ACI_A, 1, [a1.id, os.urandom(16)]) == 1
    assert store.ack(ACI_A, 1, [a1.id]) == 0  # idempotent
    assert [m.id for m in store.pending(ACI_A, 1)] == [a2.id]
    assert store.expire(2500) == 1  # a2 (2000) expires, b1 (3000) stays
    assert store.pending(ACI_A, 1) == []
    assert [m.id for m in store.pending(ACI_B, 1)] == [b1.id]


def test_enqueue_is_all_or_nothing_at_the_mailbox_cap(store: RelayStore) -> None:
    assert store.enqueue([_msg(ACI_A, 1, 1), _msg(ACI_A, 1, 2)], max_per_device=3)
    assert not store.enqueue([_msg(ACI_B, 1, 3), _msg(ACI_A, 1, 4), _msg(ACI_A, 1, 5)], 3)
    assert len(store.pending(ACI_A, 1)) == 2 and store.pending(ACI_B, 1) == []


def test_server_keys_are_created_once(store: RelayStore) -> None:
    first = ServerKeysRow(b"a" * 32, b"\x05" + b"b" * 32, 1, b"c" * 32, b"\x05" + b"d" * 32, b"e")
    second = ServerKeysRow(b"z" * 32, b"\x05" + b"y" * 32, 1, b"x" * 32, b"\x05" + b"w" * 32, b"v")
    assert store.init_server_keys(first) == first
    assert store.init_server_keys(second) == first


def test_store_survives_reopen(store_opener: StoreOpener) -> None:
    with contextlib.closing(store_opener()) as s:
        s.create_device(_device(ACI_A), "2025-01-01")
        m = _msg(ACI_A, 1, 5)
        s.enqueue([m], 10)
    with contextlib.closing(store_opener()) as s:
        assert s.pending(ACI_A, 1) == [m]
        assert s.get_account(ACI_A) is not None


def test_every_column_of_the_relay_schema_is_classified(store: RelayStore) -> None:
    assert unclassified_columns(store) == []


def test_nothing_is_classified_that_neither_store_has(tmp_path: Path, pg_url: str) -> None:
    from securemsg.relay.pgstore import PgRelayStore

    live: set[tuple[str, str]] = set()
    for s in (SqliteRelayStore.open(tmp_path / "relay.db"), PgRelayStore.open(pg_url)):
        with contextlib.closing(s):
            live |= {(t, c) for t, cols in s.schema().items() for c in cols}
    assert set(SCHEMA_CLASSIFICATION) == live
