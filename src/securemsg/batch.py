"""Batched recipes: decrypt or encrypt many 1:1 messages with ONE durable store commit.

Theory of operation
-------------------
A durable store pays for every commit (an fsync with
:class:`~securemsg.store.sqlite.SqliteProtocolStore` at ``synchronous=FULL``), and an
application usually receives messages in batches.
:func:`message_decrypt_batch` and :func:`message_encrypt_batch` run the unchanged recipes of
:mod:`securemsg.cipher` one message after the other against a staging store
(:mod:`securemsg.store.staging`) that reads through to ``store`` and keeps every write in
memory, then apply the writes of the whole batch in ONE ``store.transaction()``.

The guarantee per message is the one of the single-message recipes, compute-then-commit:

* a message that fails (a typed :class:`~securemsg.errors.SecureMsgError` other than
  :class:`~securemsg.errors.StorageError`) leaves no trace: its writes are undone in the
  staging store, its slot in the result holds the error, and the batch carries on;
* each message is computed against the state the previous successful messages of the batch
  produced (two messages on one session advance it twice);
* nothing reaches ``store`` before the one commit at the end; if that commit fails
  (``StorageError``) the batch raises and nothing at all was written.

One case is only visible at commit time: a one-time Kyber prekey used by two PreKey messages
of the same batch (the staging store does not know which Kyber prekeys are one-time). The
store then refuses the commit, nothing is written, and the batch is done again one message
and one transaction at a time, which gives every message exactly the result it would have had
alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from securemsg import cipher
from securemsg.crypto.rng import Rng
from securemsg.errors import InvalidPreKeyError, SecureMsgError, StorageError, UsageError
from securemsg.limits import DEFAULT_LIMITS, Limits
from securemsg.protocol.address import ProtocolAddress
from securemsg.store.base import ProtocolStore
from securemsg.store.staging import StagingStore, apply_writes
from securemsg.wire.messages import CiphertextMessageType, PreKeySignalMessage, SignalMessage

__all__ = ["message_decrypt_batch", "message_encrypt_batch"]

_T = TypeVar("_T")


def _items(items: object, width: int, what: str) -> list[tuple[object, ...]]:
    if isinstance(items, str | bytes | bytearray | memoryview) or not isinstance(items, Sequence):
        raise UsageError(what + " must be a sequence of tuples")
    out: list[tuple[object, ...]] = []
    for item in items:
        if not isinstance(item, tuple) or len(item) != width:
            raise UsageError(what + " must be a sequence of " + str(width) + "-tuples")
        out.append(item)
    return out


def _run_staged(
    store: ProtocolStore,
    steps: Sequence[Callable[[ProtocolStore], _T]],
) -> list[_T | SecureMsgError]:
    """Run each step against one staging store, isolate failures, commit once."""
    staging = StagingStore(store)
    results: list[_T | SecureMsgError] = []
    for step in steps:
        mark = staging.checkpoint()
        try:
            results.append(step(staging))
        except StorageError:
            raise
        except SecureMsgError as exc:
            staging.rollback(mark)
            results.append(exc)
    try:
        apply_writes(store, staging.writes())
    except InvalidPreKeyError:
        # A prekey the batch consumed twice: nothing was written; one transaction per message.
        return [_run_alone(store, step) for step in steps]
    return results


def _run_alone(store: ProtocolStore, step: Callable[[ProtocolStore], _T]) -> _T | SecureMsgError:
    try:
        return step(store)
    except StorageError:
        raise
    except SecureMsgError as exc:
        return exc


def message_decrypt_batch(
    messages: Sequence[tuple[bytes, CiphertextMessageType, ProtocolAddress]],
    store: ProtocolStore,
    *,
    now: int,
    rng: Rng,
    local_address: ProtocolAddress,
    limits: Limits = DEFAULT_LIMITS,
) -> list[bytes | SecureMsgError]:
    """Decrypt a batch of WHISPER / PREKEY messages and commit the new state in ONE transaction.

    Each message is decrypted as :func:`securemsg.message_decrypt` would, against the state
    left by the previous successful messages of the batch; see the module docstring for the
    guarantee.

    Args:
        messages: ``(ciphertext, message_type, sender address)`` per message, in order.
        store: our protocol store.
        now: Unix time in milliseconds.
        rng: randomness.
        local_address: our own address.
        limits: protocol limits.

    Returns:
        One entry per message, in order: the plaintext, or the typed error that message
        raised (it changed nothing).

    Raises:
        UsageError: ``messages`` is not a sequence of 3-tuples.
        StorageError: the store failed; nothing of the batch was written.
    """
    items = _items(messages, 3, "messages")

    def step(ct: object, mt: object, addr: object) -> Callable[[ProtocolStore], bytes]:
        def run(s: ProtocolStore) -> bytes:
            return cipher.message_decrypt(
                ct,  # type: ignore[arg-type]
                mt,  # type: ignore[arg-type]
                addr,  # type: ignore[arg-type]
                s,
                now=now,
                rng=rng,
                local_address=local_address,
                limits=limits,
            )

        return run

    return _run_staged(store, [step(*item) for item in items])


def message_encrypt_batch(
    messages: Sequence[tuple[bytes, ProtocolAddress]],
    store: ProtocolStore,
    *,
    now: int,
    rng: Rng,
    local_address: ProtocolAddress,
    limits: Limits = DEFAULT_LIMITS,
) -> list[PreKeySignalMessage | SignalMessage | SecureMsgError]:
    """Encrypt a batch of messages and commit the advanced sessions in ONE transaction.

    Each message is encrypted as :func:`securemsg.message_encrypt` would, on the session the
    previous messages of the batch advanced; see the module docstring for the guarantee.

    Args:
        messages: ``(plaintext, recipient address)`` per message, in order.
        store: our protocol store.
        now: Unix time in milliseconds.
        rng: randomness.
        local_address: our own address.
        limits: protocol limits.

    Returns:
        One entry per message, in order: the message to send, or the typed error that
        message raised (it changed nothing).

    Raises:
        UsageError: ``messages`` is not a sequence of 2-tuples.
        StorageError: the store failed; nothing of the batch was written.
    """
    items = _items(messages, 2, "messages")

    def step(
        pt: object, addr: object
    ) -> Callable[[ProtocolStore], PreKeySignalMessage | SignalMessage]:
        def run(s: ProtocolStore) -> PreKeySignalMessage | SignalMessage:
            return cipher.message_encrypt(
                pt,  # type: ignore[arg-type]
                addr,  # type: ignore[arg-type]
                s,
                now=now,
                rng=rng,
                local_address=local_address,
                limits=limits,
            )

        return run

    return _run_staged(store, [step(*item) for item in items])
