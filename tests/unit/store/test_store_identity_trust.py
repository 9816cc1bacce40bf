"""Identity keys: our own identity, and trust on first use of everybody else's."""

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


def test_identities_are_per_device(store: Any, records: Any) -> None:
    store.save_identity(ALICE, records.identity_key(1))
    assert store.get_identity(ALICE_2) is None
    assert store.is_trusted_identity(ALICE_2, records.identity_key(2), Direction.SENDING)
