"""The KtStore contract a directory relies on (run against every store implementation).

A SQLite or PostgreSQL store added later joins the ``STORES`` list.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from securemsg.crypto.ecvrf import VrfPrivateKey
from securemsg.errors import UsageError
from securemsg.kt.directory import ROOT_KEY, Directory, InMemoryKtStore, KtStore, ValueState
from securemsg.kt.verify import verify_lookup

STORES: list[Callable[[], KtStore]] = [InMemoryKtStore]


@pytest.mark.parametrize("make_store", STORES)
def test_an_empty_store(make_store: Callable[[], KtStore]) -> None:
    store = make_store()
    assert store.latest_epoch() == 0
    assert store.epoch_root(0) is None
    assert store.epoch_root(1) is None
    assert store.get_node(ROOT_KEY) is None
    assert list(store.value_states(b"alice")) == []


@pytest.mark.parametrize("make_store", STORES)
def test_epochs_commit_in_order_with_their_nodes_and_states(
    make_store: Callable[[], KtStore],
) -> None:
    store = make_store()
    directory = Directory(VrfPrivateKey(bytes([5]) * 32), store)
    first = directory.publish({b"alice": b"a1", b"bob": b"b1"})
    second = directory.publish({b"alice": b"a2"})
    assert store.latest_epoch() == 2
    assert store.epoch_root(1) == first.root_hash
    assert store.epoch_root(2) == second.root_hash
    assert list(store.value_states(b"alice")) == [
        ValueState(1, 1, b"a1"),
        ValueState(2, 2, b"a2"),
    ]
    root = store.get_node(ROOT_KEY)
    assert root is not None and root.digest == second.root_hash
    with pytest.raises(UsageError):
        store.commit_epoch(5, bytes(32), [], [])
    # A second directory over the same store serves the same, verifying proofs.
    again = Directory(VrfPrivateKey(bytes([5]) * 32), store)
    proof = again.lookup(b"alice")
    result = verify_lookup(again.vrf_public_key, second.root_hash, 2, b"alice", proof)
    assert result.value == b"a2"
