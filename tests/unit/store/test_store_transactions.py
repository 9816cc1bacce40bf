"""transaction(): all or nothing, nested blocks join the outer one (both implementations)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from securemsg.errors import InvalidPreKeyError
from securemsg.protocol.address import ProtocolAddress
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.store.sqlite import SqliteProtocolStore

ALICE = ProtocolAddress("alice", 1)
BOB = ProtocolAddress("bob", 1)
DIST = uuid.UUID("d1d1d1d1-0000-4000-8000-000000000001")


class Boom(Exception):
    pass


def snapshot(store: Any) -> dict[str, Any]:
    """Everything observable through the public API, as bytes."""

    def b(x: Any) -> Any:
        return None if x is None else x.to_bytes()

    return {
        "identities": [b(store.get_identity(a)) for a in (ALICE, BOB)],
        "pre_keys": {i: b(store.get_pre_key(i)) for i in store.get_pre_key_ids()},
        "signed": {i: b(store.get_signed_pre_key(i)) for i in store.get_signed_pre_key_ids()},
        "kyber": {
            i: (b(store.get_kyber_pre_key(i)), store.is_last_resort_kyber_pre_key(i))
            for i in store.get_kyber_pre_key_ids()
        },
        "sessions": [b(store.load_session(a)) for a in (ALICE, BOB)],
        "sender_keys": [b(store.load_sender_key(a, DIST)) for a in (ALICE, BOB)],
    }


def seed(store: Any, records: Any) -> None:
    store.save_identity(ALICE, records.identity_key(1))
    store.save_pre_key(1, records.pre_key(1))
    store.save_signed_pre_key(1, records.signed_pre_key(1))
    store.save_kyber_pre_key(1, records.kyber_pre_key(1))
    store.save_kyber_pre_key(2, records.kyber_pre_key(2), last_resort=True)
    store.store_session(ALICE, records.session(1))
    store.store_sender_key(ALICE, DIST, records.sender_key(1))


def write_everything(store: Any, records: Any) -> None:
    assert store.save_identity(ALICE, records.identity_key(2)) is True
    store.save_identity(BOB, records.identity_key(3))
    store.remove_pre_key(1)
    store.save_pre_key(2, records.pre_key(2))
    store.save_signed_pre_key(1, records.signed_pre_key(9))
    store.mark_kyber_pre_key_used(1, 1, records.base_key(1))  # one-time: removed
    store.mark_kyber_pre_key_used(2, 1, records.base_key(1))  # last resort: triple remembered
    store.store_session(ALICE, records.session(2))
    store.store_session(BOB, records.session(3))
    store.store_sender_key(ALICE, DIST, records.sender_key(2))
    store.store_sender_key(BOB, DIST, records.sender_key(3))


def test_exception_inside_a_transaction_persists_nothing(store: Any, records: Any) -> None:
    seed(store, records)
    before = snapshot(store)
    with pytest.raises(Boom), store.transaction():
        write_everything(store, records)
        assert store.load_session(BOB) is not None  # reads see the block's own writes
        raise Boom
    assert snapshot(store) == before
    # the last-resort triple was forgotten too: the same message may now be accepted once
    store.mark_kyber_pre_key_used(2, 1, records.base_key(1))
    with pytest.raises(InvalidPreKeyError):
        store.mark_kyber_pre_key_used(2, 1, records.base_key(1))


def test_completed_transaction_keeps_everything(store: Any, records: Any) -> None:
    seed(store, records)
    with store.transaction():
        write_everything(store, records)
    after = snapshot(store)
    assert after["pre_keys"] == {2: records.pre_key(2).to_bytes()}
    assert 1 not in after["kyber"]
    assert after["sender_keys"] == [records.sender_key(i).to_bytes() for i in (2, 3)]
    with pytest.raises(InvalidPreKeyError):
        store.mark_kyber_pre_key_used(2, 1, records.base_key(1))


def test_failed_inner_block_undoes_only_its_own_writes(store: Any, records: Any) -> None:
    with store.transaction():
        store.store_session(ALICE, records.session(1))
        with pytest.raises(Boom), store.transaction():
            store.store_session(BOB, records.session(2))
            store.store_session(ALICE, records.session(3))
            raise Boom
        assert store.load_session(BOB) is None
        store.save_pre_key(4, records.pre_key(4))
    assert store.load_session(ALICE).to_bytes() == records.session(1).to_bytes()
    assert store.load_session(BOB) is None
    assert store.get_pre_key_ids() == [4]


def test_outer_failure_undoes_committed_inner_blocks(store: Any, records: Any) -> None:
    with pytest.raises(Boom), store.transaction():
        with store.transaction():
            store.store_session(ALICE, records.session(1))
        with store.transaction(), store.transaction():
            store.save_pre_key(1, records.pre_key(1))
        raise Boom
    assert store.load_session(ALICE) is None
    assert store.get_pre_key_ids() == []


def test_store_error_inside_transaction_leaves_earlier_writes_to_the_caller(
    store: Any, records: Any
) -> None:
    """A raising store method changes nothing; the caller decides about the rest."""
    store.save_kyber_pre_key(2, records.kyber_pre_key(2), last_resort=True)
    store.mark_kyber_pre_key_used(2, 1, records.base_key(1))
    with store.transaction():
        store.store_session(ALICE, records.session(1))
        with pytest.raises(InvalidPreKeyError):
            store.mark_kyber_pre_key_used(2, 1, records.base_key(1))
    assert store.load_session(ALICE) is not None


_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    # too_slow too: a suppress list replaces the profile's (tests/conftest.py), never adds to it
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- both implementations behave alike under random work and random failures ----------------

_op = st.one_of(
    st.tuples(st.just("pre"), st.integers(0, 3), st.integers(0, 5)),
    st.tuples(st.just("rm_pre"), st.integers(0, 3), st.just(0)),
    st.tuples(st.just("kyber"), st.integers(0, 3), st.integers(0, 1)),
    st.tuples(st.just("use_kyber"), st.integers(0, 3), st.integers(0, 2)),
    st.tuples(st.just("session"), st.integers(0, 1), st.integers(0, 5)),
    st.tuples(st.just("identity"), st.integers(0, 1), st.integers(0, 2)),
    st.tuples(st.just("sender"), st.integers(0, 1), st.integers(0, 5)),
)
# a batch is a list of operations run in one transaction that fails at the end or not,
# optionally inside an inner block that fails on its own
_batch = st.tuples(st.lists(_op, max_size=6), st.booleans(), st.booleans())


def _apply(store: Any, records: Any, op: tuple[str, int, int]) -> Any:
    kind, a, b = op
    addr = (ALICE, BOB)[a % 2]
    try:
        if kind == "pre":
            store.save_pre_key(a, records.pre_key(b))
        elif kind == "rm_pre":
            store.remove_pre_key(a)
        elif kind == "kyber":
            store.save_kyber_pre_key(a, records.kyber_pre_key(a), last_resort=bool(b))
        elif kind == "use_kyber":
            store.mark_kyber_pre_key_used(a, 1, records.base_key(b))
        elif kind == "session":
            store.store_session(addr, records.session(b))
        elif kind == "identity":
            return store.save_identity(addr, records.identity_key(b))
        else:
            store.store_sender_key(addr, DIST, records.sender_key(b))
    except InvalidPreKeyError:
        return "invalid"
    return None


def _run(store: Any, records: Any, batches: list[Any]) -> list[Any]:
    results: list[Any] = []
    for ops, fail_outer, fail_inner in batches:
        try:
            with store.transaction():
                half = len(ops) // 2
                results.extend(_apply(store, records, op) for op in ops[:half])
                try:
                    with store.transaction():
                        results.extend(_apply(store, records, op) for op in ops[half:])
                        if fail_inner:
                            raise Boom
                except Boom:
                    results.append("inner-failed")
                if fail_outer:
                    raise Boom
        except Boom:
            results.append("outer-failed")
        results.append(snapshot(store))
    return results


@_SETTINGS
@given(batches=st.lists(_batch, max_size=5))
def test_memory_and_sqlite_stores_agree(records: Any, batches: list[Any]) -> None:
    memory = InMemoryProtocolStore(records.identity_key_pair(), 1)
    with SqliteProtocolStore.open(":memory:", records.identity_key_pair(), 1) as sql:
        assert _run(memory, records, batches) == _run(sql, records, batches)


@_SETTINGS
@given(batches=st.lists(_batch, max_size=5))
def test_transactions_equal_replaying_only_what_committed(records: Any, batches: list[Any]) -> None:
    """Model: a failed block is as if its operations never ran."""
    with SqliteProtocolStore.open(":memory:", records.identity_key_pair(), 1) as sql:
        _run(sql, records, batches)
        model = InMemoryProtocolStore(records.identity_key_pair(), 1)
        for ops, fail_outer, fail_inner in batches:
            if fail_outer:
                continue
            half = len(ops) // 2
            for op in ops[:half] if fail_inner else ops:
                _apply(model, records, op)
        assert snapshot(sql) == snapshot(model)
