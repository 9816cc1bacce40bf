"""RelayStore contract for linked devices, on SQLite and PostgreSQL: linking codes (one per
account, single use, expiry, bound to the account), linking a device (next free id, explicit
id), refusing a new device of an existing account without a code, and removing a device with
its keys, mailbox and queued-bytes accounting, all or nothing."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator

import pytest

from securemsg.relay.store import CreateResult, KeyRow, NewDevice, QueuedMessage, RelayStore

StoreOpener = Callable[[], RelayStore]

ACI_A = b"\xa1" * 16
ACI_B = b"\xb2" * 16
IDENTITY = b"\x05" + b"i" * 32
CODE = b"c" * 32
NOW = 1_750_000_000_000


def _device(aci: bytes, device_id: int, identity: bytes = IDENTITY) -> NewDevice:
    return NewDevice(
        aci=aci,
        device_id=device_id,
        registration_id=40 + device_id,
        identity_key=identity,
        access_key_digest=b"d" * 32,
        signed_pre_key=KeyRow(1, b"\x05" + bytes([device_id]) * 32, b"g" * 64),
        last_resort_kyber_pre_key=KeyRow(9, b"\x08" + b"L" * 1568, b"h" * 64),
        pre_keys=(KeyRow(100, b"\x05" + b"p" * 32),),
        kyber_pre_keys=(KeyRow(200, b"\x08" + b"k" * 1568, b"k" * 64),),
    )


def _msg(aci: bytes, device_id: int, body: bytes, shared: bytes = b"") -> QueuedMessage:
    return QueuedMessage(os.urandom(16), aci, device_id, 6, None, 0, 1, NOW, body, shared=shared)


@pytest.fixture
def store(store_opener: StoreOpener) -> Iterator[RelayStore]:
    s = store_opener()
    assert s.create_device(_device(ACI_A, 1), "2026-01-01") is CreateResult.CREATED
    assert s.create_device(_device(ACI_B, 1), "2026-01-01") is CreateResult.CREATED
    yield s
    s.close()


def _ids(store: RelayStore, aci: bytes) -> list[int]:
    return [d.device_id for d in store.list_devices(aci)]


def test_a_new_device_of_an_existing_account_needs_a_code(store: RelayStore) -> None:
    assert (
        store.create_device(_device(ACI_A, 2), "2026-01-02", new_account_only=True)
        is CreateResult.LINK_REQUIRED
    )
    assert (
        store.create_device(_device(ACI_A, 1), "2026-01-02", new_account_only=True)
        is CreateResult.DEVICE_EXISTS
    )
    other = _device(ACI_A, 3, identity=b"\x05" + b"X" * 32)
    assert (
        store.create_device(other, "2026-01-02", new_account_only=True)
        is CreateResult.IDENTITY_MISMATCH
    )
    assert _ids(store, ACI_A) == [1]
    assert store.all_keys(ACI_A, 2)["signed_pre_keys"] == []


def test_link_takes_the_lowest_free_id_and_spends_the_code(store: RelayStore) -> None:
    store.put_linking_code(ACI_A, CODE, NOW + 1000)
    assert store.linking_code_expiry(ACI_A) == NOW + 1000
    assert store.link_device(_device(ACI_A, 0), "2026-01-02", CODE, NOW) == (
        CreateResult.CREATED,
        2,
    )
    assert store.linking_code_expiry(ACI_A) is None
    assert _ids(store, ACI_A) == [1, 2]
    assert [k.key_id for k in store.all_keys(ACI_A, 2)["one_time_pre_keys"]] == [100]
    # used once: the same code again is refused and writes nothing
    assert store.link_device(_device(ACI_A, 0), "2026-01-02", CODE, NOW) == (
        CreateResult.LINK_REFUSED,
        0,
    )
    assert _ids(store, ACI_A) == [1, 2]
    # an explicit id is taken as given; a gap is filled by the next id-0 link
    store.put_linking_code(ACI_A, CODE, NOW + 1000)
    assert store.link_device(_device(ACI_A, 5), "2026-01-02", CODE, NOW)[0] is CreateResult.CREATED
    store.put_linking_code(ACI_A, CODE, NOW + 1000)
    assert store.link_device(_device(ACI_A, 0), "2026-01-02", CODE, NOW) == (
        CreateResult.CREATED,
        3,
    )
    store.put_linking_code(ACI_A, CODE, NOW + 1000)
    assert store.link_device(_device(ACI_A, 5), "2026-01-02", CODE, NOW) == (
        CreateResult.DEVICE_EXISTS,
        0,
    )
    assert store.linking_code_expiry(ACI_A) == NOW + 1000  # a refused link spends nothing


@pytest.mark.parametrize(
    "case", ["wrong code", "expired", "other account", "no code", "no account", "other key"]
)
def test_link_refusals_write_nothing(store: RelayStore, case: str) -> None:
    store.put_linking_code(ACI_A, CODE, NOW + 1000)
    store.put_linking_code(ACI_B, b"b" * 32, NOW + 1000)
    aci, code, now, identity = ACI_A, CODE, NOW, IDENTITY
    expected = CreateResult.LINK_REFUSED
    if case == "wrong code":
        code = b"x" * 32
    elif case == "expired":
        now = NOW + 1000
    elif case == "other account":
        code = b"b" * 32  # B's code presented for A
    elif case == "no code":
        aci = ACI_B
        store.put_linking_code(ACI_B, b"b" * 32, NOW - 1)
        code = b"b" * 32
    elif case == "no account":
        aci = b"\xcc" * 16
    else:
        identity = b"\x05" + b"X" * 32
        expected = CreateResult.IDENTITY_MISMATCH
    assert store.link_device(_device(aci, 0, identity), "2026-01-02", code, now) == (
        expected,
        0,
    )
    assert _ids(store, ACI_A) == [1]
    assert _ids(store, ACI_B) == [1]
    assert store.list_devices(b"\xcc" * 16) == []
    assert store.get_account(b"\xcc" * 16) is None


def test_a_new_code_replaces_the_old_one_and_expired_codes_are_swept(store: RelayStore) -> None:
    store.put_linking_code(ACI_A, CODE, NOW + 1000)
    store.put_linking_code(ACI_A, b"n" * 32, NOW + 2000)
    assert store.link_device(_device(ACI_A, 0), "d", CODE, NOW)[0] is CreateResult.LINK_REFUSED
    store.put_linking_code(ACI_B, b"b" * 32, NOW + 500)
    assert store.expire_linking_codes(NOW + 500) == 1
    assert store.linking_code_expiry(ACI_B) is None
    assert store.linking_code_expiry(ACI_A) == NOW + 2000
    assert store.link_device(_device(ACI_A, 0), "d", b"n" * 32, NOW)[0] is CreateResult.CREATED


def test_all_ids_taken(store: RelayStore) -> None:
    for d in range(2, 128):
        store.put_linking_code(ACI_A, CODE, NOW + 1000)
        assert store.link_device(_device(ACI_A, d), "d", CODE, NOW)[0] is CreateResult.CREATED
    store.put_linking_code(ACI_A, CODE, NOW + 1000)
    assert store.link_device(_device(ACI_A, 0), "d", CODE, NOW) == (CreateResult.NO_FREE_ID, 0)
    assert store.linking_code_expiry(ACI_A) == NOW + 1000


def test_remove_device_deletes_its_keys_and_mailbox_and_frees_the_budget(
    store: RelayStore,
) -> None:
    store.put_linking_code(ACI_A, CODE, NOW + 1000)
    assert store.link_device(_device(ACI_A, 0), "d", CODE, NOW)[0] is CreateResult.CREATED
    before_total = store.queued_bytes()
    shared = b"S" * 300
    queued = [
        _msg(ACI_A, 1, b"one"),
        _msg(ACI_A, 2, b"two" * 10),
        _msg(ACI_A, 2, b"own", shared=shared),
        _msg(ACI_B, 1, b"ownB", shared=shared),
    ]
    assert store.enqueue(queued, 100, shared=shared)
    assert store.remove_device(ACI_A, 2)
    assert _ids(store, ACI_A) == [1]
    assert all(not rows for rows in store.all_keys(ACI_A, 2).values())
    assert store.pending(ACI_A, 2) == []
    assert [m.body for m in store.pending(ACI_A, 1)] == [b"one"]
    assert [m.body for m in store.pending(ACI_B, 1)] == [b"ownB" + shared]  # shared part kept
    assert store.account_queued_bytes(ACI_A) == 3
    assert store.queued_bytes() == before_total + 3 + 4 + len(shared)
    assert not store.remove_device(ACI_A, 2)  # gone: nothing more to remove
    assert store.ack(ACI_B, 1, [queued[3].id]) == 1
    assert store.ack(ACI_A, 1, [queued[0].id]) == 1
    assert store.queued_bytes() == before_total
    # the id is free again for a later link
    store.put_linking_code(ACI_A, CODE, NOW + 1000)
    assert store.link_device(_device(ACI_A, 0), "d", CODE, NOW) == (CreateResult.CREATED, 2)


def test_concurrent_links_with_one_code_create_one_device(store_opener: StoreOpener) -> None:
    setup = store_opener()
    setup.create_device(_device(ACI_A, 1), "d")
    setup.put_linking_code(ACI_A, CODE, NOW + 10_000)
    setup.close()
    results: list[CreateResult] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def link(n: int) -> None:
        s = store_opener()
        try:
            start.wait(timeout=30)
            result, _ = s.link_device(_device(ACI_A, 0), "d", CODE, NOW)
            with lock:
                results.append(result)
        finally:
            s.close()

    threads = [threading.Thread(target=link, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(r.value for r in results) == sorted(
        [CreateResult.CREATED.value] + [CreateResult.LINK_REFUSED.value] * 3
    )
    check = store_opener()
    assert [d.device_id for d in check.list_devices(ACI_A)] == [1, 2]
    check.close()


def test_keys_a_removed_device_left_behind_do_not_reach_the_next_device_of_its_id(
    store: RelayStore,
) -> None:
    store.put_linking_code(ACI_A, CODE, NOW + 1000)
    assert store.link_device(_device(ACI_A, 0), "d", CODE, NOW) == (CreateResult.CREATED, 2)
    assert store.remove_device(ACI_A, 2)
    # a request of the removed device that was already under way (e.g. on another
    # instance) uploads keys for the id after its removal
    late = KeyRow(777, b"\x05" + b"z" * 32)
    assert store.store_pre_keys(ACI_A, 2, pre_keys=[late], max_stored=100)
    store.put_linking_code(ACI_A, CODE, NOW + 1000)
    assert store.link_device(_device(ACI_A, 0), "d", CODE, NOW) == (CreateResult.CREATED, 2)
    assert [k.key_id for k in store.all_keys(ACI_A, 2)["one_time_pre_keys"]] == [100]
