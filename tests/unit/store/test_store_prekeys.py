"""Prekeys: one-time, signed, and Kyber (one-time vs last-resort), plus the inventory helpers."""

from __future__ import annotations

from typing import Any

import pytest

from securemsg.errors import InvalidPreKeyError, UsageError


def test_pre_key_save_get_remove(store: Any, records: Any) -> None:
    store.save_pre_key(7, records.pre_key(7))
    assert store.get_pre_key(7).to_bytes() == records.pre_key(7).to_bytes()
    store.remove_pre_key(7)
    with pytest.raises(InvalidPreKeyError):
        store.get_pre_key(7)
    store.remove_pre_key(7)  # absent: no-op


def test_save_pre_key_replaces(store: Any, records: Any) -> None:
    store.save_pre_key(1, records.pre_key(1))
    store.save_pre_key(1, records.pre_key(2))
    assert store.get_pre_key(1).to_bytes() == records.pre_key(2).to_bytes()
    assert store.count_pre_keys() == 1


@pytest.mark.parametrize("getter", ["get_pre_key", "get_signed_pre_key", "get_kyber_pre_key"])
def test_missing_pre_keys_raise_invalid_pre_key(store: Any, getter: str) -> None:
    with pytest.raises(InvalidPreKeyError):
        getattr(store, getter)(12345)


@pytest.mark.parametrize("bad_id", [-1, 2**32, True, "1", 1.0])
def test_bad_ids_are_usage_errors(store: Any, records: Any, bad_id: Any) -> None:
    with pytest.raises(UsageError):
        store.save_pre_key(bad_id, records.pre_key(1))
    with pytest.raises(UsageError):
        store.save_signed_pre_key(bad_id, records.signed_pre_key(1))
    with pytest.raises(UsageError):
        store.save_kyber_pre_key(bad_id, records.kyber_pre_key(1))
    assert store.count_pre_keys() == 0


def test_signed_pre_key_save_get(store: Any, records: Any) -> None:
    store.save_signed_pre_key(3, records.signed_pre_key(3))
    store.save_signed_pre_key(2**32 - 1, records.signed_pre_key(4))
    assert store.get_signed_pre_key(3).to_bytes() == records.signed_pre_key(3).to_bytes()
    assert store.get_signed_pre_key(2**32 - 1).to_bytes() == records.signed_pre_key(4).to_bytes()
    assert store.get_signed_pre_key_ids() == [3, 2**32 - 1]
    store.remove_signed_pre_key(3)
    with pytest.raises(InvalidPreKeyError):
        store.get_signed_pre_key(3)


def test_one_time_kyber_pre_key_is_removed_when_used(store: Any, records: Any) -> None:
    store.save_kyber_pre_key(5, records.kyber_pre_key(5))
    assert not store.is_last_resort_kyber_pre_key(5)
    store.mark_kyber_pre_key_used(5, 1, records.base_key(1))
    with pytest.raises(InvalidPreKeyError):
        store.get_kyber_pre_key(5)
    with pytest.raises(InvalidPreKeyError):
        store.mark_kyber_pre_key_used(5, 1, records.base_key(2))


def test_last_resort_kyber_pre_key_is_kept_but_replay_is_rejected(store: Any, records: Any) -> None:
    store.save_kyber_pre_key(9, records.kyber_pre_key(9), last_resort=True)
    assert store.is_last_resort_kyber_pre_key(9)
    store.mark_kyber_pre_key_used(9, 1, records.base_key(1))
    assert store.get_kyber_pre_key(9).to_bytes() == records.kyber_pre_key(9).to_bytes()
    # the same triple again is a replayed PreKey message
    with pytest.raises(InvalidPreKeyError):
        store.mark_kyber_pre_key_used(9, 1, records.base_key(1))
    # a different base key or signed prekey is a different session
    store.mark_kyber_pre_key_used(9, 1, records.base_key(2))
    store.mark_kyber_pre_key_used(9, 2, records.base_key(1))
    assert store.get_kyber_pre_key(9).to_bytes() == records.kyber_pre_key(9).to_bytes()


def test_mark_unknown_kyber_pre_key_used_raises(store: Any, records: Any) -> None:
    with pytest.raises(InvalidPreKeyError):
        store.mark_kyber_pre_key_used(1, 1, records.base_key(1))


def test_removing_a_last_resort_key_forgets_its_triples(store: Any, records: Any) -> None:
    store.save_kyber_pre_key(9, records.kyber_pre_key(9), last_resort=True)
    store.mark_kyber_pre_key_used(9, 1, records.base_key(1))
    store.remove_kyber_pre_key(9)
    with pytest.raises(InvalidPreKeyError):
        store.get_kyber_pre_key(9)
    store.save_kyber_pre_key(9, records.kyber_pre_key(10), last_resort=True)
    store.mark_kyber_pre_key_used(9, 1, records.base_key(1))


def test_inventory_lists_and_counts(store: Any, records: Any) -> None:
    for i in (5, 1, 3):
        store.save_pre_key(i, records.pre_key(i))
    store.save_kyber_pre_key(20, records.kyber_pre_key(20))
    store.save_kyber_pre_key(10, records.kyber_pre_key(10))
    store.save_kyber_pre_key(99, records.kyber_pre_key(99), last_resort=True)
    assert store.get_pre_key_ids() == [1, 3, 5]
    assert store.count_pre_keys() == 3
    assert store.get_kyber_pre_key_ids() == [10, 20, 99]
    assert store.get_kyber_pre_key_ids(last_resort=False) == [10, 20]
    assert store.get_kyber_pre_key_ids(last_resort=True) == [99]
    assert store.count_kyber_pre_keys() == 3
    assert store.count_kyber_pre_keys(last_resort=False) == 2
    assert store.count_kyber_pre_keys(last_resort=True) == 1
    with pytest.raises(InvalidPreKeyError):
        store.is_last_resort_kyber_pre_key(11)


@pytest.mark.parametrize("bad_id", [-1, 2**32, 2**70, True, "1", None, [1]])
def test_ids_that_cannot_exist_are_simply_absent(store: Any, records: Any, bad_id: Any) -> None:
    store.save_kyber_pre_key(1, records.kyber_pre_key(1), last_resort=True)
    for getter in ("get_pre_key", "get_signed_pre_key", "get_kyber_pre_key"):
        with pytest.raises(InvalidPreKeyError):
            getattr(store, getter)(bad_id)
    with pytest.raises(InvalidPreKeyError):
        store.is_last_resort_kyber_pre_key(bad_id)
    with pytest.raises(InvalidPreKeyError):
        store.mark_kyber_pre_key_used(bad_id, 1, records.base_key(1))
    with pytest.raises(InvalidPreKeyError):
        store.mark_kyber_pre_key_used(1, bad_id, records.base_key(1))
    store.remove_pre_key(bad_id)
    store.remove_signed_pre_key(bad_id)
    store.remove_kyber_pre_key(bad_id)
    store.mark_kyber_pre_key_used(1, 1, records.base_key(1))  # the real key is untouched
