"""Identity keys: our own identity, and trust on first use of everybody else's, per account."""

from __future__ import annotations

from typing import Any

import pytest

from securemsg.protocol.address import ProtocolAddress
from securemsg.store.base import Direction

ALICE = ProtocolAddress("alice", 1)
ALICE_2 = ProtocolAddress("alice", 2)


def test_local_identity_and_registration_id(store: Any, records: Any) -> None:
    assert store.get_identity_key_pair().to_bytes() == records.identity_key_pair().to_bytes()
    assert store.get_local_registration_id() == 0x1234


@pytest.mark.parametrize("direction", list(Direction))
def test_unknown_address_is_trusted_on_first_use(store: Any, records: Any, direction: Any) -> None:
    assert store.get_identity(ALICE) is None
    assert store.is_trusted_identity(ALICE, records.identity_key(1), direction)
    assert store.get_identity(ALICE) is None  # asking does not save


@pytest.mark.parametrize("direction", list(Direction))
def test_saved_key_is_trusted_and_a_different_one_is_not(
    store: Any, records: Any, direction: Any
) -> None:
    store.save_identity(ALICE, records.identity_key(1))
    assert store.is_trusted_identity(ALICE, records.identity_key(1), direction)
    assert not store.is_trusted_identity(ALICE, records.identity_key(2), direction)


def test_save_identity_reports_only_replacement_of_a_different_key(
    store: Any, records: Any
) -> None:
    assert store.save_identity(ALICE, records.identity_key(1)) is False  # new
    assert store.save_identity(ALICE, records.identity_key(1)) is False  # unchanged
    assert store.save_identity(ALICE, records.identity_key(2)) is True  # replaced
    assert store.get_identity(ALICE).to_bytes() == records.identity_key(2).to_bytes()
    assert store.is_trusted_identity(ALICE, records.identity_key(2), Direction.SENDING)
    assert not store.is_trusted_identity(ALICE, records.identity_key(1), Direction.RECEIVING)


def test_identities_are_saved_per_device(store: Any, records: Any) -> None:
    store.save_identity(ALICE, records.identity_key(1))
    assert store.get_identity(ALICE_2) is None


@pytest.mark.parametrize("direction", list(Direction))
def test_a_new_device_of_a_known_account_must_present_the_account_key(
    store: Any, records: Any, direction: Any
) -> None:
    """All devices of an account share its identity key: a device id never seen before is
    not a fresh start. (Per-device trust let a relay announce a device of a known contact
    with a key of its own and be trusted on first use.)"""
    store.save_identity(ALICE, records.identity_key(1))
    assert store.is_trusted_identity(ALICE_2, records.identity_key(1), direction)
    assert not store.is_trusted_identity(ALICE_2, records.identity_key(2), direction)
    assert store.is_trusted_identity(ProtocolAddress("bob", 2), records.identity_key(2), direction)


def test_trusting_a_changed_key_trusts_it_for_the_whole_account(store: Any, records: Any) -> None:
    store.save_identity(ALICE, records.identity_key(1))
    store.save_identity(ALICE_2, records.identity_key(1))
    assert store.save_identity(ALICE, records.identity_key(2)) is True  # the user re-verified
    for address in (ALICE, ALICE_2, ProtocolAddress("alice", 3)):
        assert store.is_trusted_identity(address, records.identity_key(2), Direction.SENDING)
        assert not store.is_trusted_identity(address, records.identity_key(1), Direction.SENDING)
    assert store.get_identity(ALICE_2).to_bytes() == records.identity_key(2).to_bytes()


def test_a_batch_stages_trust_per_account_too(store: Any, records: Any) -> None:
    """In a batch (the staging store), an identity staged for one device of an account is the
    only key trusted for its other devices, and a rollback forgets it."""
    from securemsg.store.staging import StagingStore

    staging = StagingStore(store)
    mark = staging.checkpoint()
    staging.save_identity(ALICE, records.identity_key(1))
    assert staging.is_trusted_identity(ALICE_2, records.identity_key(1), Direction.RECEIVING)
    assert not staging.is_trusted_identity(ALICE_2, records.identity_key(2), Direction.RECEIVING)
    assert [type(w).__name__ for w in staging.writes()] == ["SaveIdentity"]  # written once
    staging.rollback(mark)
    assert staging.is_trusted_identity(ALICE_2, records.identity_key(2), Direction.RECEIVING)
