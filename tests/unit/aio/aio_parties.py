"""Shared helpers for the async tests: parties with sync stores, bundles and store snapshots."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable
from typing import TypeVar

from securemsg.crypto.rng import DeterministicRng, Rng
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.identity_and_prekeys import (
    IdentityKeyPair,
    KyberPreKeyRecord,
    PreKeyBundle,
    PreKeyRecord,
    SignedPreKeyRecord,
)
from securemsg.store.base import ProtocolStore
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.store.sqlite import SqliteProtocolStore
from securemsg.wire.messages import CiphertextMessageType, PreKeySignalMessage, SignalMessage

T = TypeVar("T")

NOW = 1_760_000_000_000
ALICE = ProtocolAddress("9d0652a3-dcc3-4d11-975f-74d61598733f", 1)
BOB = ProtocolAddress("796abedb-ca4e-4f18-8803-1fde5b921f9f", 1)
CAROL = ProtocolAddress("0b7a4d4e-5f61-4f0c-9a57-1c3f7f2d8e11", 2)
PREKEY = CiphertextMessageType.PREKEY
WHISPER = CiphertextMessageType.WHISPER

_KEYS = DeterministicRng(b"aio-party-keys")
ALICE_ID = IdentityKeyPair.generate(_KEYS)
BOB_ID = IdentityKeyPair.generate(_KEYS)
CAROL_ID = IdentityKeyPair.generate(_KEYS)
IDS = {ALICE: (ALICE_ID, 1111), BOB: (BOB_ID, 2222), CAROL: (CAROL_ID, 3333)}


def rng(label: str) -> Rng:
    return DeterministicRng(label.encode())


def memory_store(address: ProtocolAddress) -> InMemoryProtocolStore:
    ikp, reg = IDS[address]
    return InMemoryProtocolStore(ikp, reg)


def publish(
    store: ProtocolStore,
    address: ProtocolAddress,
    key_id: int,
    *,
    one_time: bool = True,
    last_resort: bool = False,
    r: Rng | None = None,
) -> PreKeyBundle:
    """Store fresh prekeys with id ``key_id`` in ``store`` and return the public bundle."""
    r = r or rng("publish" + str(key_id))
    ik = store.get_identity_key_pair()
    spk = SignedPreKeyRecord.generate(key_id, ik, NOW, r)
    kpk = KyberPreKeyRecord.generate(key_id, ik, NOW, r)
    store.save_signed_pre_key(key_id, spk)
    store.save_kyber_pre_key(key_id, kpk, last_resort=last_resort)
    opk = None
    if one_time:
        opk = PreKeyRecord.generate(key_id, r)
        store.save_pre_key(key_id, opk)
    return PreKeyBundle(
        registration_id=store.get_local_registration_id(),
        device_id=address.device_id,
        pre_key_id=None if opk is None else key_id,
        pre_key_public=None if opk is None else opk.public_key,
        signed_pre_key_id=key_id,
        signed_pre_key_public=spk.public_key,
        signed_pre_key_signature=spk.signature,
        identity_key=ik.identity_key,
        kyber_pre_key_id=key_id,
        kyber_pre_key_public=kpk.public_key,
        kyber_pre_key_signature=kpk.signature,
    )


def kind_of(message: PreKeySignalMessage | SignalMessage) -> CiphertextMessageType:
    return message.message_type


def snapshot(store: ProtocolStore) -> object:
    """Every byte a store holds (SQLite: a full SQL dump; memory: every table's bytes)."""
    if isinstance(store, SqliteProtocolStore):
        conn = store._conn
        assert isinstance(conn, sqlite3.Connection)
        return tuple(conn.iterdump())
    assert isinstance(store, InMemoryProtocolStore)
    out = []
    for name in sorted(vars(type(store)).get("__slots__", ())):
        value = getattr(store, name, None)
        if isinstance(value, dict):
            out.append((name, sorted((repr(k), _bytes(v)) for k, v in value.items())))
        elif isinstance(value, set):
            out.append((name, sorted(repr(v) for v in value)))
    return out


def _bytes(value: object) -> object:
    to_bytes = getattr(value, "to_bytes", None)
    if callable(to_bytes):
        return to_bytes()
    if isinstance(value, tuple):
        return tuple(_bytes(v) for v in value)
    return repr(value)


def run(coro: Awaitable[T]) -> T:
    import asyncio

    async def bounded() -> T:
        async with asyncio.timeout(120):
            return await coro

    return asyncio.run(bounded())
