"""Hostile input to the async recipes: typed errors only, and a failed decrypt commits nothing.

The async mirror of ``tests/property/test_hostile_input.py``: Hypothesis mutates valid PreKey
and Whisper messages (bit flips, byte sets, insertions, deletions, truncations) and feeds them to
:func:`securemsg.aio.message_decrypt` and :func:`securemsg.aio.message_decrypt_batch` on both
async stores (the in-memory adapter and the async SQLite store, a file). Only peer errors may
escape, and after every failure the store's complete contents (SQLite: a full SQL dump) are
byte-for-byte what they were.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aio_parties import ALICE, BOB, BOB_ID, NOW, PREKEY, WHISPER, memory_store, publish, rng, run
from aio_parties import snapshot as sync_snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from securemsg import aio, cipher
from securemsg.aio import AsyncProtocolStore, AsyncSqliteProtocolStore, AsyncStoreAdapter
from securemsg.errors import NoSessionError, PeerError, UntrustedIdentityError
from securemsg.protocol.session_record import SessionRecord
from securemsg.store.base import ProtocolStore
from securemsg.wire.messages import CiphertextMessageType

PEER_ERRORS = (PeerError, UntrustedIdentityError, NoSessionError)


def _conversation() -> dict[str, Any]:
    r = rng("aio-hostile")
    alice = memory_store(ALICE)
    bob = memory_store(BOB)
    bundle = publish(bob, BOB, 1)
    keys = (bob.get_signed_pre_key(1), bob.get_pre_key(1), bob.get_kyber_pre_key(1))
    cipher.process_prekey_bundle(bundle, BOB, alice, now=NOW, rng=r, local_address=ALICE)
    m0 = cipher.message_encrypt(b"first", BOB, alice, now=NOW, rng=r, local_address=ALICE)
    cipher.message_decrypt(m0.to_bytes(), PREKEY, ALICE, bob, now=NOW, rng=r, local_address=BOB)
    reply = cipher.message_encrypt(b"reply", ALICE, bob, now=NOW, rng=r, local_address=BOB)
    after_reply = bob.load_session(ALICE)
    cipher.message_decrypt(
        reply.to_bytes(), WHISPER, BOB, alice, now=NOW, rng=r, local_address=ALICE
    )
    m2 = cipher.message_encrypt(b"third", BOB, alice, now=NOW, rng=r, local_address=ALICE)
    assert after_reply is not None
    return {
        "keys": keys,
        "alice_identity": alice.get_identity_key_pair().identity_key,
        "m0": m0.to_bytes(),
        "m2": m2.to_bytes(),
        "after_reply": after_reply.to_bytes(),
    }


CONV = _conversation()
SITUATIONS: dict[str, tuple[bytes, CiphertextMessageType, bytes]] = {
    "fresh": (CONV["m0"], PREKEY, b"first"),
    "after_reply": (CONV["m2"], WHISPER, b"third"),
}
_TMP = Path(tempfile.mkdtemp(prefix="securemsg-aio-hostile-"))
_STORES: dict[tuple[str, str], AsyncProtocolStore] = {}


@pytest.fixture(autouse=True, scope="module")
def _close_stores() -> Iterator[None]:
    yield

    async def close_all() -> None:
        for store in _STORES.values():
            if isinstance(store, AsyncSqliteProtocolStore):
                await store.close()

    run(close_all())
    _STORES.clear()


def _fill(store: ProtocolStore, situation: str) -> None:
    signed, one_time, kyber = CONV["keys"]
    store.save_signed_pre_key(1, signed)
    if situation == "fresh":
        store.save_pre_key(1, one_time)
        store.save_kyber_pre_key(1, kyber)
    else:
        store.save_identity(ALICE, CONV["alice_identity"])
        store.store_session(ALICE, SessionRecord.from_bytes(CONV[situation]))


def _store(kind: str, situation: str) -> AsyncProtocolStore:
    key = (kind, situation)
    if key not in _STORES:
        if kind == "memory":
            mem = memory_store(BOB)
            _fill(mem, situation)
            _STORES[key] = AsyncStoreAdapter(mem)
        else:
            path = _TMP / (situation + str(len(_STORES)) + ".db")

            async def open_it() -> AsyncSqliteProtocolStore:
                store = await AsyncSqliteProtocolStore.open(path, BOB_ID, 2222)
                await store.run(lambda s: _fill(s, situation))
                return store

            _STORES[key] = run(open_it())
    return _STORES[key]


async def _snapshot(store: AsyncProtocolStore) -> object:
    if isinstance(store, AsyncSqliteProtocolStore):
        return await store.run(sync_snapshot)
    assert isinstance(store, AsyncStoreAdapter)
    return sync_snapshot(store.store)


def check(
    kind: str, situation: str, data: bytes, msg_type: CiphertextMessageType, batch: bool
) -> None:
    store = _store(kind, situation)

    async def body() -> None:
        before = await _snapshot(store)
        r = rng("bob")
        if batch:
            out = await aio.message_decrypt_batch(
                [(data, msg_type, ALICE)], store, now=NOW, rng=r, local_address=BOB
            )
            failed = isinstance(out[0], Exception)
            if failed:
                assert isinstance(out[0], PEER_ERRORS), repr(out[0])
        else:
            try:
                await aio.message_decrypt(
                    data, msg_type, ALICE, store, now=NOW, rng=r, local_address=BOB
                )
                failed = False
            except PEER_ERRORS:
                failed = True
        if failed:
            assert await _snapshot(store) == before, "a failed decrypt changed the store"
        else:  # an equivalent encoding: state moved on, the next example gets a fresh store
            _STORES.pop((kind, situation))
            if isinstance(store, AsyncSqliteProtocolStore):
                await store.close()

    run(body())


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.sampled_from([0x00, 0x01, 0x33, 0x7F, 0x80, 0xFF]))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[pos:]
    out = bytes(data)
    return out if out != valid else out + b"\x00"


FUZZ = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


def test_unmutated_messages_decrypt() -> None:
    for kind in ("memory", "sqlite"):
        for situation, (data, msg_type, plaintext) in SITUATIONS.items():
            store = _store(kind, situation)
            got = run(
                aio.message_decrypt(
                    data, msg_type, ALICE, store, now=NOW, rng=rng("u"), local_address=BOB
                )
            )
            assert got == plaintext
            _STORES.pop((kind, situation))


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
@pytest.mark.parametrize("situation", list(SITUATIONS))
@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@FUZZ
@given(data=st.data())
def test_mutated_messages_change_nothing(
    kind: str, situation: str, batch: bool, data: st.DataObject
) -> None:
    valid, msg_type, _ = SITUATIONS[situation]
    check(kind, situation, data.draw(mutated(valid)), msg_type, batch)


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@FUZZ
@given(blob=st.binary(max_size=300), prekey=st.booleans())
def test_arbitrary_bytes_change_nothing(kind: str, blob: bytes, prekey: bool) -> None:
    check(kind, "after_reply", blob, PREKEY if prekey else WHISPER, False)
