"""The async recipes: await the loads, run the unchanged sync core, await ONE commit.

Theory of operation
-------------------
Each recipe here has the signature of its sync twin in :mod:`securemsg.cipher`,
:mod:`securemsg.sealed_sender`, :mod:`securemsg.groups` or :mod:`securemsg.batch`, with an
:class:`~securemsg.aio.store.AsyncProtocolStore` in place of the sync store, and runs that very
sync function (nothing is re-implemented) against a staging store
(:mod:`securemsg.store.staging`) holding in-memory copies:

1. **Load.** What the operation needs (the session, the peer's identity and the trust answer,
   prekeys, sender keys) is awaited from the async store and handed to the staging store. The
   1:1 recipes load the usual needs up front; anything else the sync function asks for stops
   it (before it could write anything), is awaited, and the function runs again from the
   start on the same copies -- the core is pure, so a re-run computes the same thing.
2. **Compute.** The sync function runs on the copies; its writes stay in the staging store.
3. **Commit.** Every write of the operation goes to :meth:`AsyncProtocolStore.commit
   <securemsg.aio.store.AsyncProtocolStore.commit>` in one call: one transaction.

A recipe that raises has committed nothing (the store is byte-for-byte what it was). The
batch recipes keep the per-message guarantee of :mod:`securemsg.batch`.

Concurrency: the recipes of one store run one at a time (an asyncio lock per store and event
loop), since each loads, computes and commits; two concurrent decrypts on one session would
otherwise both start from the same state.
"""

from __future__ import annotations

import asyncio
import uuid
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

from securemsg import batch, cipher, groups, sealed_sender
from securemsg.aio.store import AsyncProtocolStore
from securemsg.crypto.curve25519 import PublicKey
from securemsg.crypto.rng import Rng
from securemsg.errors import (
    DecodeError,
    InvalidKeyError,
    InvalidPreKeyError,
    SecureMsgError,
    StorageError,
    UsageError,
)
from securemsg.limits import DEFAULT_LIMITS, Limits
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.identity_and_prekeys import IdentityKey, PreKeyBundle
from securemsg.protocol.sealed_sender import ContentHint, SenderCertificate
from securemsg.sealed_sender import SealedSenderDecryptionResult
from securemsg.store.base import Direction, ProtocolStore
from securemsg.store.staging import NotLoaded, StagingStore
from securemsg.wire.messages import (
    CiphertextMessageType,
    PreKeySignalMessage,
    SenderKeyDistributionMessage,
    SenderKeyMessage,
    SignalMessage,
)

__all__ = [
    "create_sender_key_distribution_message",
    "group_decrypt",
    "group_encrypt",
    "message_decrypt",
    "message_decrypt_batch",
    "message_encrypt",
    "message_encrypt_batch",
    "process_prekey_bundle",
    "process_sender_key_distribution_message",
    "run_staged",
    "sealed_sender_decrypt",
    "sealed_sender_encrypt",
]

_T = TypeVar("_T")

#: Most loads one operation may need beyond the up-front ones (a bound, not a tuning knob).
_MAX_LOADS: Final = 64

_locks: weakref.WeakKeyDictionary[Any, tuple[asyncio.AbstractEventLoop, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _lock(store: object) -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    try:
        entry = _locks.get(store)
    except TypeError:
        raise UsageError("an async store must support weak references") from None
    if entry is None or entry[0] is not loop:
        entry = (loop, asyncio.Lock())
        _locks[store] = entry
    return entry[1]


async def _load(store: AsyncProtocolStore, staging: StagingStore, need: NotLoaded) -> None:
    kind, args = need.kind, need.args_
    value: Any
    if kind == "session":
        value = await store.load_session(*args)
    elif kind == "identity":
        value = await store.get_identity(*args)
    elif kind == "trust":
        value = await store.is_trusted_identity(*args)
    elif kind == "sender_key":
        value = await store.load_sender_key(*args)
    elif kind == "session_device_ids":
        value = await store.get_session_device_ids(*args)
    elif kind == "identity_key_pair":
        value = await store.get_identity_key_pair()
    elif kind == "registration_id":
        value = await store.get_local_registration_id()
    else:
        getter: Callable[[int], Awaitable[Any]] = {
            "pre_key": store.get_pre_key,
            "signed_pre_key": store.get_signed_pre_key,
            "kyber_pre_key": store.get_kyber_pre_key,
        }[kind]
        try:
            value = await getter(*args)
        except InvalidPreKeyError:
            value = None
    staging.provide(kind, args, value)


async def _ensure(store: AsyncProtocolStore, staging: StagingStore, kind: str, *args: Any) -> None:
    """Load one thing into ``staging`` up front unless it is there already."""
    try:
        if kind == "session":
            staging.load_session(*args)
        elif kind == "identity":
            staging.get_identity(*args)
        elif kind == "trust":
            staging.is_trusted_identity(*args)
        else:  # pragma: no cover - only the kinds above are loaded up front
            raise AssertionError(kind)
    except NotLoaded as need:
        await _load(store, staging, need)


async def _prefetch_peer(
    store: AsyncProtocolStore,
    staging: StagingStore,
    address: ProtocolAddress,
    direction: Direction,
    identity: IdentityKey | None,
) -> None:
    """The session with ``address``, its identity and the trust answer, in three loads."""
    await _ensure(store, staging, "session", address)
    if identity is None:
        record = staging.load_session(address)
        state = None if record is None else record.current
        if state is None:
            return
        identity = state.remote_identity_key
    await _ensure(store, staging, "trust", address, identity, direction)
    await _ensure(store, staging, "identity", address)


async def _prefetch_own(store: AsyncProtocolStore, staging: StagingStore) -> None:
    """Our identity key pair and registration id (what a new session needs)."""
    for need in (NotLoaded("identity_key_pair", ()), NotLoaded("registration_id", ())):
        await _load(store, staging, need)


def _run_loaded(staging: StagingStore, fn: Callable[[ProtocolStore], _T]) -> _T:
    """One attempt of ``fn``; a NotLoaded leaves no staged write behind."""
    mark = staging.checkpoint()
    try:
        return fn(staging)
    except BaseException:
        staging.rollback(mark)
        raise


async def _attempt(
    store: AsyncProtocolStore, staging: StagingStore, fn: Callable[[ProtocolStore], _T]
) -> _T:
    """Run ``fn`` against ``staging``, loading what it asks for, until it completes or raises."""
    for _ in range(_MAX_LOADS):
        try:
            return _run_loaded(staging, fn)
        except NotLoaded as need:
            await _load(store, staging, need)
    raise StorageError("the operation needed more store reads than allowed")


async def run_staged(store: AsyncProtocolStore, fn: Callable[[ProtocolStore], _T]) -> _T:
    """Run a sync recipe ``fn(sync_store)`` for an async store: load, compute, commit once.

    ``fn`` gets a staging store with in-memory copies of what it reads (loaded from
    ``store`` as it asks for them; ``fn`` may run more than once, so it must have no side
    effect other than through the store it is given). Its writes are committed with one
    ``store.commit`` after it returned; if it raises, nothing is committed.

    Raises:
        whatever ``fn`` raises (nothing committed).
        StorageError: the store failed (nothing committed).
    """
    return await _run_staged(store, fn, None)


async def _run_staged(
    store: AsyncProtocolStore,
    fn: Callable[[ProtocolStore], _T],
    prefetch: Callable[[StagingStore], Awaitable[None]] | None,
) -> _T:
    async with _lock(store):
        staging = StagingStore()
        if prefetch is not None:
            await prefetch(staging)
        result = await _attempt(store, staging, fn)
        writes = staging.writes()
        if writes:
            await store.commit(writes)
        return result


# -- 1:1 ----------------------------------------------------------------------------------------


async def process_prekey_bundle(
    bundle: PreKeyBundle,
    remote_address: ProtocolAddress,
    store: AsyncProtocolStore,
    *,
    now: int,
    rng: Rng,
    local_address: ProtocolAddress,
    limits: Limits = DEFAULT_LIMITS,
) -> None:
    """:func:`securemsg.process_prekey_bundle` for an async store (see the module docstring)."""

    async def prefetch(staging: StagingStore) -> None:
        if isinstance(bundle, PreKeyBundle) and isinstance(remote_address, ProtocolAddress):
            await _prefetch_peer(
                store, staging, remote_address, Direction.SENDING, bundle.identity_key
            )
            await _prefetch_own(store, staging)

    await _run_staged(
        store,
        lambda s: cipher.process_prekey_bundle(
            bundle, remote_address, s, now=now, rng=rng, local_address=local_address, limits=limits
        ),
        prefetch,
    )


async def message_encrypt(
    plaintext: bytes,
    remote_address: ProtocolAddress,
    store: AsyncProtocolStore,
    *,
    now: int,
    rng: Rng,
    local_address: ProtocolAddress,
    limits: Limits = DEFAULT_LIMITS,
) -> PreKeySignalMessage | SignalMessage:
    """:func:`securemsg.message_encrypt` for an async store (see the module docstring)."""

    async def prefetch(staging: StagingStore) -> None:
        if isinstance(remote_address, ProtocolAddress):
            await _prefetch_peer(store, staging, remote_address, Direction.SENDING, None)

    return await _run_staged(
        store,
        lambda s: cipher.message_encrypt(
            plaintext,
            remote_address,
            s,
            now=now,
            rng=rng,
            local_address=local_address,
            limits=limits,
        ),
        prefetch,
    )


def _prekey_identity(ciphertext: object, message_type: object) -> IdentityKey | None:
    """The sender identity a PreKey message names, if it parses (for loading up front)."""
    if message_type != CiphertextMessageType.PREKEY or not isinstance(ciphertext, bytes):
        return None
    try:
        return IdentityKey(PreKeySignalMessage.from_bytes(ciphertext).identity_key)
    except (DecodeError, InvalidKeyError, UsageError):
        return None  # the recipe raises the same error itself


async def _prefetch_decrypt(
    store: AsyncProtocolStore,
    staging: StagingStore,
    ciphertext: object,
    message_type: object,
    remote_address: object,
) -> None:
    if isinstance(remote_address, ProtocolAddress):
        identity = _prekey_identity(ciphertext, message_type)
        await _prefetch_peer(store, staging, remote_address, Direction.RECEIVING, identity)
        if identity is not None:  # a PreKey message may start a session
            await _prefetch_own(store, staging)


async def message_decrypt(
    ciphertext: bytes,
    message_type: CiphertextMessageType,
    remote_address: ProtocolAddress,
    store: AsyncProtocolStore,
    *,
    now: int,
    rng: Rng,
    local_address: ProtocolAddress,
    limits: Limits = DEFAULT_LIMITS,
) -> bytes:
    """:func:`securemsg.message_decrypt` for an async store (see the module docstring).

    A message that fails to decrypt commits nothing.
    """

    async def prefetch(staging: StagingStore) -> None:
        await _prefetch_decrypt(store, staging, ciphertext, message_type, remote_address)

    return await _run_staged(
        store,
        lambda s: cipher.message_decrypt(
            ciphertext,
            message_type,
            remote_address,
            s,
            now=now,
            rng=rng,
            local_address=local_address,
            limits=limits,
        ),
        prefetch,
    )


# -- batches ------------------------------------------------------------------------------------


async def _batch(
    store: AsyncProtocolStore,
    steps: Sequence[
        tuple[Callable[[ProtocolStore], _T], Callable[[StagingStore], Awaitable[None]]]
    ],
) -> list[_T | SecureMsgError]:
    async with _lock(store):
        staging = StagingStore()
        results: list[_T | SecureMsgError] = []
        for fn, prefetch in steps:
            await prefetch(staging)
            try:
                results.append(await _attempt(store, staging, fn))
            except StorageError:
                raise
            except SecureMsgError as exc:
                results.append(exc)
        writes = staging.writes()
        if not writes:
            return results
        try:
            await store.commit(writes)
            return results
        except InvalidPreKeyError:
            pass  # a prekey the batch consumed twice: nothing was written
    out: list[_T | SecureMsgError] = []
    for fn, _ in steps:  # one operation (one commit) per message
        try:
            out.append(await run_staged(store, fn))
        except StorageError:
            raise
        except SecureMsgError as exc:
            out.append(exc)
    return out


async def message_decrypt_batch(
    messages: Sequence[tuple[bytes, CiphertextMessageType, ProtocolAddress]],
    store: AsyncProtocolStore,
    *,
    now: int,
    rng: Rng,
    local_address: ProtocolAddress,
    limits: Limits = DEFAULT_LIMITS,
) -> list[bytes | SecureMsgError]:
    """:func:`securemsg.message_decrypt_batch` for an async store: one ``commit`` per batch.

    Raises:
        UsageError: ``messages`` is not a sequence of 3-tuples.
        StorageError: the store failed; nothing of the batch was written.
    """
    items = batch._items(messages, 3, "messages")

    def step(
        ct: Any, mt: Any, addr: Any
    ) -> tuple[Callable[[ProtocolStore], bytes], Callable[[StagingStore], Awaitable[None]]]:
        def fn(s: ProtocolStore) -> bytes:
            return cipher.message_decrypt(
                ct, mt, addr, s, now=now, rng=rng, local_address=local_address, limits=limits
            )

        async def prefetch(staging: StagingStore) -> None:
            await _prefetch_decrypt(store, staging, ct, mt, addr)

        return fn, prefetch

    return await _batch(store, [step(*item) for item in items])


async def message_encrypt_batch(
    messages: Sequence[tuple[bytes, ProtocolAddress]],
    store: AsyncProtocolStore,
    *,
    now: int,
    rng: Rng,
    local_address: ProtocolAddress,
    limits: Limits = DEFAULT_LIMITS,
) -> list[PreKeySignalMessage | SignalMessage | SecureMsgError]:
    """:func:`securemsg.message_encrypt_batch` for an async store: one ``commit`` per batch.

    Raises:
        UsageError: ``messages`` is not a sequence of 2-tuples.
        StorageError: the store failed; nothing of the batch was written.
    """
    items = batch._items(messages, 2, "messages")

    def step(
        pt: Any, addr: Any
    ) -> tuple[
        Callable[[ProtocolStore], PreKeySignalMessage | SignalMessage],
        Callable[[StagingStore], Awaitable[None]],
    ]:
        def fn(s: ProtocolStore) -> PreKeySignalMessage | SignalMessage:
            return cipher.message_encrypt(
                pt, addr, s, now=now, rng=rng, local_address=local_address, limits=limits
            )

        async def prefetch(staging: StagingStore) -> None:
            if isinstance(addr, ProtocolAddress):
                await _prefetch_peer(store, staging, addr, Direction.SENDING, None)

        return fn, prefetch

    return await _batch(store, [step(*item) for item in items])


# -- sealed sender ------------------------------------------------------------------------------


async def sealed_sender_encrypt(
    destination: ProtocolAddress,
    sender_cert: SenderCertificate,
    plaintext: bytes,
    store: AsyncProtocolStore,
    *,
    now: int,
    rng: Rng,
    content_hint: int = ContentHint.DEFAULT,
    group_id: bytes | None = None,
) -> bytes:
    """:func:`securemsg.sealed_sender_encrypt` for an async store (see the module docstring)."""
    return await run_staged(
        store,
        lambda s: sealed_sender.sealed_sender_encrypt(
            destination,
            sender_cert,
            plaintext,
            s,
            now=now,
            rng=rng,
            content_hint=content_hint,
            group_id=group_id,
        ),
    )


async def sealed_sender_decrypt(
    data: bytes,
    trust_roots: PublicKey | Sequence[PublicKey],
    store: AsyncProtocolStore,
    *,
    now: int,
    local_uuid: str,
    local_device_id: int,
    rng: Rng,
    local_e164: str | None = None,
) -> SealedSenderDecryptionResult:
    """:func:`securemsg.sealed_sender_decrypt` for an async store (see the module docstring).

    A message that fails to unseal or decrypt commits nothing.
    """
    return await run_staged(
        store,
        lambda s: sealed_sender.sealed_sender_decrypt(
            data,
            trust_roots,
            s,
            now=now,
            local_uuid=local_uuid,
            local_device_id=local_device_id,
            rng=rng,
            local_e164=local_e164,
        ),
    )


# -- groups -------------------------------------------------------------------------------------


async def create_sender_key_distribution_message(
    sender: ProtocolAddress, distribution_id: uuid.UUID, store: AsyncProtocolStore, *, rng: Rng
) -> SenderKeyDistributionMessage:
    """:func:`securemsg.create_sender_key_distribution_message` for an async store."""
    return await run_staged(
        store,
        lambda s: groups.create_sender_key_distribution_message(
            sender, distribution_id, s, rng=rng
        ),
    )


async def process_sender_key_distribution_message(
    sender: ProtocolAddress,
    message: SenderKeyDistributionMessage | bytes,
    store: AsyncProtocolStore,
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> None:
    """:func:`securemsg.process_sender_key_distribution_message` for an async store."""
    await run_staged(
        store,
        lambda s: groups.process_sender_key_distribution_message(sender, message, s, limits=limits),
    )


async def group_encrypt(
    sender: ProtocolAddress,
    distribution_id: uuid.UUID,
    plaintext: bytes,
    store: AsyncProtocolStore,
    *,
    rng: Rng,
) -> SenderKeyMessage:
    """:func:`securemsg.group_encrypt` for an async store (see the module docstring)."""
    return await run_staged(
        store, lambda s: groups.group_encrypt(sender, distribution_id, plaintext, s, rng=rng)
    )


async def group_decrypt(
    message: bytes | SenderKeyMessage,
    sender: ProtocolAddress,
    store: AsyncProtocolStore,
    *,
    limits: Limits = DEFAULT_LIMITS,
) -> bytes:
    """:func:`securemsg.group_decrypt` for an async store; a failure commits nothing."""
    return await run_staged(
        store, lambda s: groups.group_decrypt(message, sender, s, limits=limits)
    )
