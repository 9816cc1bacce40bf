"""Fixtures for the store tests: both implementations, and deterministic real records."""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from securemsg.crypto.curve25519 import KeyPair, PublicKey
from securemsg.crypto.rng import DeterministicRng
from securemsg.protocol.identity_and_prekeys import (
    IdentityKey,
    IdentityKeyPair,
    KyberPreKeyRecord,
    PreKeyRecord,
    SignedPreKeyRecord,
)
from securemsg.protocol.sender_keys import SenderKeyRecord, create_distribution
from securemsg.protocol.session_record import SessionRecord
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.store.sqlite import SqliteProtocolStore


def _rng(label: str, i: int) -> DeterministicRng:
    return DeterministicRng(hashlib.sha256(label.encode() + i.to_bytes(4, "big")).digest())


class Records:
    """Deterministic real records (cached: Kyber key generation is not free)."""

    @staticmethod
    @functools.cache
    def identity_key_pair(i: int = 0) -> IdentityKeyPair:
        return IdentityKeyPair.generate(_rng("ikp", i))

    @staticmethod
    @functools.cache
    def identity_key(i: int) -> IdentityKey:
        return IdentityKeyPair.generate(_rng("ik", i)).identity_key

    @staticmethod
    @functools.cache
    def pre_key(i: int) -> PreKeyRecord:
        return PreKeyRecord.generate(i, _rng("pk", i))

    @staticmethod
    @functools.cache
    def signed_pre_key(i: int) -> SignedPreKeyRecord:
        return SignedPreKeyRecord.generate(
            i, Records.identity_key_pair(), 1_700_000_000_000 + i, _rng("spk", i)
        )

    @staticmethod
    @functools.cache
    def kyber_pre_key(i: int) -> KyberPreKeyRecord:
        return KyberPreKeyRecord.generate(
            i, Records.identity_key_pair(), 1_700_000_000_000 + i, _rng("kyber", i)
        )

    @staticmethod
    @functools.cache
    def session(i: int) -> SessionRecord:
        # an archive-only record: archived sessions are opaque bytes until used
        return SessionRecord(None, (hashlib.shake_256(b"s" + bytes([i])).digest(48),))

    @staticmethod
    @functools.cache
    def sender_key(i: int) -> SenderKeyRecord:
        _message, record = create_distribution(None, uuid.UUID(int=i), _rng("sk", i))
        return record

    @staticmethod
    @functools.cache
    def base_key(i: int) -> PublicKey:
        return KeyPair.generate(_rng("base", i)).public_key


REGISTRATION_ID = 0x1234


@pytest.fixture
def records() -> Records:
    return Records()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "store.db"


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, records: Records, db_path: Path) -> Iterator[Any]:
    """Each contract test runs once per implementation."""
    if request.param == "memory":
        yield InMemoryProtocolStore(records.identity_key_pair(), REGISTRATION_ID)
    else:
        s = SqliteProtocolStore.open(db_path, records.identity_key_pair(), REGISTRATION_ID)
        yield s
        s.close()
