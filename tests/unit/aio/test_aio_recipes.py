"""The async recipes on both async stores: conversations, restarts, batches, groups, sealed sender.

Every test runs on :class:`AsyncStoreAdapter` over the in-memory store and on
:class:`AsyncSqliteProtocolStore` (a file), with the same expectations as the sync recipes.
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aio_parties import (
    ALICE,
    ALICE_ID,
    BOB,
    BOB_ID,
    CAROL,
    NOW,
    PREKEY,
    WHISPER,
    memory_store,
    publish,
    rng,
    run,
    snapshot,
)

from securemsg import aio
from securemsg.aio import AsyncProtocolStore, AsyncSqliteProtocolStore, AsyncStoreAdapter
from securemsg.errors import (
    DuplicateMessageError,
    InvalidMessageError,
    InvalidPreKeyError,
    NoSessionError,
    StorageError,
    UntrustedIdentityError,
    UsageError,
)
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.identity_and_prekeys import IdentityKeyPair
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.store.sqlite import SqliteProtocolStore

KINDS = ["memory", "sqlite"]
IDS = {ALICE: (ALICE_ID, 1111), BOB: (BOB_ID, 2222)}


@asynccontextmanager
async def opened(kind: str, tmp: Path, who: ProtocolAddress) -> AsyncIterator[AsyncProtocolStore]:
    if kind == "memory":
        yield AsyncStoreAdapter(memory_store(who))
        return
    ikp, reg = IDS[who]
    async with await AsyncSqliteProtocolStore.open(tmp / (who.name + ".db"), ikp, reg) as store:
        yield store


async def sync_view(store: AsyncProtocolStore, fn: Callable[[Any], Any]) -> Any:
    """Run ``fn(sync_store)`` where the sync store lives (its thread for SQLite)."""
    if isinstance(store, AsyncSqliteProtocolStore):
        return await store.run(fn)
    assert isinstance(store, AsyncStoreAdapter)
    return fn(store.store)


async def state(store: AsyncProtocolStore) -> object:
    return await sync_view(store, snapshot)


async def publish_async(store: AsyncProtocolStore, who: ProtocolAddress, key_id: int) -> Any:
    return await sync_view(store, lambda s: publish(s, who, key_id))


async def establish(alice: AsyncProtocolStore, bob: AsyncProtocolStore) -> None:
    r = rng("establish")
    bundle = await publish_async(bob, BOB, 1)
    await aio.process_prekey_bundle(bundle, BOB, alice, now=NOW, rng=r, local_address=ALICE)
    first = await aio.message_encrypt(b"hello", BOB, alice, now=NOW, rng=r, local_address=ALICE)
    assert first.message_type == PREKEY
    got = await aio.message_decrypt(
        first.to_bytes(), PREKEY, ALICE, bob, now=NOW, rng=r, local_address=BOB
    )
    assert got == b"hello"
    reply = await aio.message_encrypt(b"hi", ALICE, bob, now=NOW, rng=r, local_address=BOB)
    assert reply.message_type == WHISPER
    got = await aio.message_decrypt(
        reply.to_bytes(), WHISPER, BOB, alice, now=NOW, rng=r, local_address=ALICE
    )
    assert got == b"hi"


async def a2b(alice: AsyncProtocolStore, bob: AsyncProtocolStore, text: bytes) -> bytes:
    r = rng("a2b" + text.decode())
    m = await aio.message_encrypt(text, BOB, alice, now=NOW, rng=r, local_address=ALICE)
    return await aio.message_decrypt(
        m.to_bytes(), m.message_type, ALICE, bob, now=NOW, rng=r, local_address=BOB
    )


async def b2a(alice: AsyncProtocolStore, bob: AsyncProtocolStore, text: bytes) -> bytes:
    r = rng("b2a" + text.decode())
    m = await aio.message_encrypt(text, ALICE, bob, now=NOW, rng=r, local_address=BOB)
    return await aio.message_decrypt(
        m.to_bytes(), m.message_type, BOB, alice, now=NOW, rng=r, local_address=ALICE
    )


@pytest.mark.parametrize("kind", KINDS)
def test_a_conversation(kind: str, tmp_path: Path) -> None:
    async def body() -> None:
        async with opened(kind, tmp_path, ALICE) as alice, opened(kind, tmp_path, BOB) as bob:
            await establish(alice, bob)
            for i in range(5):
                assert await a2b(alice, bob, b"a%d" % i) == b"a%d" % i
                assert await a2b(alice, bob, b"x%d" % i) == b"x%d" % i
                assert await b2a(alice, bob, b"b%d" % i) == b"b%d" % i
            assert await bob.get_identity(ALICE) == ALICE_ID.identity_key

    run(body())


def test_sqlite_restart_keeps_the_conversation(tmp_path: Path) -> None:
    async def body() -> None:
        async with (
            opened("sqlite", tmp_path, ALICE) as alice,
            opened("sqlite", tmp_path, BOB) as bob,
        ):
            await establish(alice, bob)
            assert await a2b(alice, bob, b"before") == b"before"
        # Reopen without the identity: everything came back from disk.
        async with (
            await AsyncSqliteProtocolStore.open(tmp_path / (ALICE.name + ".db")) as alice,
            await AsyncSqliteProtocolStore.open(tmp_path / (BOB.name + ".db")) as bob,
        ):
            assert await a2b(alice, bob, b"after") == b"after"
            assert await b2a(alice, bob, b"reply") == b"reply"

    run(body())


@pytest.mark.parametrize("kind", KINDS)
def test_failed_decrypts_commit_nothing(kind: str, tmp_path: Path) -> None:
    async def body() -> None:
        async with opened(kind, tmp_path, ALICE) as alice, opened(kind, tmp_path, BOB) as bob:
            r = rng("fail")
            bundle = await publish_async(bob, BOB, 1)
            await aio.process_prekey_bundle(bundle, BOB, alice, now=NOW, rng=r, local_address=ALICE)
            first = await aio.message_encrypt(
                b"one", BOB, alice, now=NOW, rng=r, local_address=ALICE
            )
            data = first.to_bytes()
            before = await state(bob)
            hostile = [
                (data[:-1] + bytes([data[-1] ^ 1]), PREKEY),  # MAC of the inner message
                (data[:40], PREKEY),  # truncated
                (data, WHISPER),  # wrong type
                (b"", PREKEY),
                (bytes(len(data)), PREKEY),
            ]
            for blob, kind_ in hostile:
                with pytest.raises((InvalidMessageError, Exception)) as info:
                    await aio.message_decrypt(
                        blob, kind_, ALICE, bob, now=NOW, rng=r, local_address=BOB
                    )
                assert not isinstance(info.value, StorageError | AssertionError)
                assert await state(bob) == before, "a failed decrypt changed the store"
            # The intact message still decrypts: nothing was consumed.
            assert (
                await aio.message_decrypt(
                    data, PREKEY, ALICE, bob, now=NOW, rng=r, local_address=BOB
                )
                == b"one"
            )
            after = await state(bob)
            with pytest.raises(DuplicateMessageError):
                await aio.message_decrypt(
                    data, PREKEY, ALICE, bob, now=NOW, rng=r, local_address=BOB
                )
            assert await state(bob) == after

    run(body())


@pytest.mark.parametrize("kind", KINDS)
def test_untrusted_identity_and_missing_session(kind: str, tmp_path: Path) -> None:
    async def body() -> None:
        async with opened(kind, tmp_path, ALICE) as alice, opened(kind, tmp_path, BOB) as bob:
            r = rng("trust")
            with pytest.raises(NoSessionError):
                await aio.message_encrypt(b"x", BOB, alice, now=NOW, rng=r, local_address=ALICE)
            await establish(alice, bob)
            impostor = IdentityKeyPair.generate(rng("impostor"))
            other = InMemoryProtocolStore(impostor, 77)
            bundle = publish(other, BOB, 9)
            before = await state(alice)
            with pytest.raises(UntrustedIdentityError):
                await aio.process_prekey_bundle(
                    bundle, BOB, alice, now=NOW, rng=r, local_address=ALICE
                )
            assert await state(alice) == before

    run(body())


@pytest.mark.parametrize("kind", KINDS)
def test_concurrent_recipes_on_one_store_are_serialized(kind: str, tmp_path: Path) -> None:
    async def body() -> None:
        async with opened(kind, tmp_path, ALICE) as alice, opened(kind, tmp_path, BOB) as bob:
            await establish(alice, bob)
            r = rng("concurrent")
            sent = await asyncio.gather(
                *(
                    aio.message_encrypt(b"c%d" % i, BOB, alice, now=NOW, rng=r, local_address=ALICE)
                    for i in range(8)
                )
            )
            got = await asyncio.gather(
                *(
                    aio.message_decrypt(
                        m.to_bytes(), WHISPER, ALICE, bob, now=NOW, rng=r, local_address=BOB
                    )
                    for m in sent
                )
            )
            assert sorted(got) == sorted(b"c%d" % i for i in range(8))

    run(body())


@pytest.mark.parametrize("kind", KINDS)
def test_async_batches(kind: str, tmp_path: Path) -> None:
    async def body() -> None:
        async with opened(kind, tmp_path, ALICE) as alice, opened(kind, tmp_path, BOB) as bob:
            await establish(alice, bob)
            r = rng("batch")
            items = [(b"m%d" % i, BOB) for i in range(10)]
            items.insert(3, (b"nobody", CAROL))
            out = await aio.message_encrypt_batch(items, alice, now=NOW, rng=r, local_address=ALICE)
            assert isinstance(out[3], NoSessionError)
            msgs = [
                (m.to_bytes(), m.message_type, ALICE) for m in out if not isinstance(m, Exception)
            ]
            bad = bytearray(msgs[5][0])
            bad[-1] ^= 1
            msgs.insert(5, (bytes(bad), WHISPER, ALICE))
            got = await aio.message_decrypt_batch(msgs, bob, now=NOW, rng=r, local_address=BOB)
            assert isinstance(got[5], InvalidMessageError)
            assert [g for g in got if isinstance(g, bytes)] == [b"m%d" % i for i in range(10)]
            before = await state(bob)
            again = await aio.message_decrypt_batch(msgs, bob, now=NOW, rng=r, local_address=BOB)
            assert all(isinstance(g, Exception) for g in again)
            assert await state(bob) == before

    run(body())


@pytest.mark.parametrize("kind", KINDS)
def test_groups_and_sealed_sender(kind: str, tmp_path: Path) -> None:
    from securemsg.crypto.curve25519 import KeyPair
    from securemsg.protocol.sealed_sender import SenderCertificate, ServerCertificate

    async def body() -> None:
        async with opened(kind, tmp_path, ALICE) as alice, opened(kind, tmp_path, BOB) as bob:
            await establish(alice, bob)
            r = rng("group")
            dist = uuid.UUID("11111111-2222-3333-4444-555555555555")
            skdm = await aio.create_sender_key_distribution_message(ALICE, dist, alice, rng=r)
            await aio.process_sender_key_distribution_message(ALICE, skdm.to_bytes(), bob)
            for i in range(3):
                m = await aio.group_encrypt(ALICE, dist, b"g%d" % i, alice, rng=r)
                assert await aio.group_decrypt(m.to_bytes(), ALICE, bob) == b"g%d" % i
            before = await state(bob)
            with pytest.raises(DuplicateMessageError):
                await aio.group_decrypt(m.to_bytes(), ALICE, bob)
            assert await state(bob) == before

            trust = KeyPair.generate(r)
            server = KeyPair.generate(r)
            server_cert = ServerCertificate.new(1, server.public_key, trust.private_key, r)
            cert = SenderCertificate.new(
                sender_uuid=ALICE.name,
                sender_e164=None,
                sender_device_id=ALICE.device_id,
                key=ALICE_ID.identity_key.public_key,
                expiration=NOW + 10**9,
                signer=server_cert,
                signer_key=server.private_key,
                rng=r,
            )
            sealed = await aio.sealed_sender_encrypt(BOB, cert, b"sealed", alice, now=NOW, rng=r)
            result = await aio.sealed_sender_decrypt(
                sealed, trust.public_key, bob, now=NOW, local_uuid=BOB.name,
                local_device_id=BOB.device_id, rng=r,
            )  # fmt: skip
            assert result.plaintext == b"sealed"

    run(body())


def test_sqlite_work_runs_on_its_own_thread_and_files_are_private(tmp_path: Path) -> None:
    import os
    import stat

    async def body() -> None:
        old = os.umask(0)
        try:
            store = await AsyncSqliteProtocolStore.open(tmp_path / "x.db", ALICE_ID, 1111)
        finally:
            os.umask(old)
        async with store:
            thread = await store.run(lambda s: threading.get_ident())
            assert thread != threading.get_ident()
            assert isinstance(store.store, SqliteProtocolStore)
            mode = await store.run(
                lambda s: s._fetchone("PRAGMA synchronous")[0]  # type: ignore[index]
            )
            assert mode == 2  # FULL
            journal = await store.run(lambda s: s._fetchone("PRAGMA journal_mode")[0])  # type: ignore[index]
            assert journal == "wal"
        for suffix in ("", "-wal", "-shm"):
            path = tmp_path / ("x.db" + suffix)
            if path.exists():
                assert stat.S_IMODE(path.stat().st_mode) == 0o600
        with pytest.raises(UsageError):
            await store.get_identity_key_pair()
        await store.close()  # idempotent

    run(body())


def test_a_store_without_weak_references_is_refused() -> None:
    class Slotted:
        __slots__ = ()

    async def body() -> None:
        with pytest.raises(UsageError):
            await aio.run_staged(Slotted(), lambda s: None)  # type: ignore[arg-type]

    run(body())


class CountingAdapter(AsyncStoreAdapter):
    """Counts the sync calls an async recipe makes through the async store."""

    __slots__ = ("calls",)

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self.calls: list[str] = []

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        self.calls.append(getattr(fn, "__name__", "?"))
        return fn(*args, **kwargs)


def test_one_message_is_three_loads_and_one_commit() -> None:
    async def body() -> None:
        alice = CountingAdapter(memory_store(ALICE))
        bob = CountingAdapter(memory_store(BOB))
        await establish(alice, bob)
        alice.calls.clear()
        bob.calls.clear()
        assert await a2b(alice, bob, b"counted") == b"counted"
        expected = ["load_session", "is_trusted_identity", "get_identity", "apply_writes"]
        assert alice.calls == expected
        assert bob.calls == expected

    run(body())


def test_a_refused_commit_writes_nothing(tmp_path: Path) -> None:
    async def body() -> None:
        async with (
            opened("sqlite", tmp_path, ALICE) as alice,
            opened("sqlite", tmp_path, BOB) as bob,
        ):
            await establish(alice, bob)
            record = await alice.load_session(BOB)
            assert record is not None
            before = await state(alice)
            writes = [
                aio.StoreSession(BOB, record.archive_current_state()),
                aio.MarkKyberPreKeyUsed(99, 1, ALICE_ID.identity_key.public_key),  # no such key
            ]
            with pytest.raises(InvalidPreKeyError):
                await alice.commit(writes)
            assert await state(alice) == before

    run(body())
