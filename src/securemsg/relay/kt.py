"""The relay's key-transparency directory: publish (ACI -> identity key) in epochs, serve proofs.

Theory of operation
-------------------
:class:`RelayKeyTransparency` runs an AKD ``whatsapp_v1`` :class:`~securemsg.kt.Directory`
over the relay database (:class:`~securemsg.relay.kt_store.RelayKtStore`, SQLite or
PostgreSQL). Its two keys are
its own (neither the trust root nor the sender-certificate key) and are generated at first
start and kept in the relay database: the VRF key and the Ed25519 head-signing key.

* **Queue.** A registration that creates an account queues (ACI -> identity key) in the
  registration's own transaction; nothing about KT runs on the send path.
* **Publish.** :meth:`RelayKeyTransparency.publish` (run by the server every
  ``kt_epoch_interval_s`` on a thread and connection of its own, :class:`KtPublisherThread`,
  so the storage thread that serves sends never waits for it; tests call it directly) takes
  at most ``kt_max_epoch_changes`` queued updates and publishes them as one epoch in one
  transaction, with its signed head ``{epoch, root, time, previous head hash}`` chained to the
  previous one.
* **Serve.** :meth:`RelayKeyTransparency.answer` answers the ``Kt*`` requests of
  docs/relay-protocol.md: the public keys, signed heads (with auditors' cosignatures), a lookup
  proof of any account (authenticated, rate limited like bundle fetches), the complete history
  of the caller's own account, append-only proofs (at most
  :data:`~securemsg.relay_protocol.frames.MAX_KT_APPEND_ONLY_EPOCHS` epochs and one frame), and
  stores auditors' cosignatures. Every integer is range-checked; every answer is bounded.
* **Cosignatures.** The relay stores and serves the cosignatures of the auditors it is
  configured with (``kt_auditor_keys``, at most
  :data:`~securemsg.relay_protocol.frames.MAX_KT_COSIGNATURES`) and no one else's: anyone may
  send ``KtCosign`` and keys cost nothing, so any bound on "anyone's" would be filled by
  throw-away keys before the auditors a client pins arrive. With no auditor configured it
  refuses every cosignature (FORBIDDEN). The cheap checks (a configured auditor, an existing
  epoch, a signature that verifies) come first and spend nothing; a cosignature the relay
  already holds (they are public: anyone can post one again) is answered OK and spends
  nothing; only a new cosignature spends a token, of its own auditor's budget.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from securemsg.crypto.ecvrf import VrfPrivateKey
from securemsg.crypto.kt_primitives import Ed25519SigningKey
from securemsg.crypto.rng import Rng
from securemsg.errors import UsageError
from securemsg.kt.cosign import verify_cosignature
from securemsg.kt.directory import Directory, PublishedEpoch
from securemsg.kt.heads import EpochHead, SignedEpochHead, sign_epoch_head
from securemsg.kt.types import HistoryParams
from securemsg.relay.kt_store import RelayKtStore
from securemsg.relay.store import RelayStore
from securemsg.relay_protocol import frames as rf
from securemsg.relay_protocol.akd import (
    encode_append_only_proof,
    encode_history_proof,
    encode_lookup_proof,
)

if TYPE_CHECKING:
    from securemsg.relay.service import RelayConfig, TokenBuckets

__all__ = ["KT_REQUESTS", "MAX_KT_PROOF_BYTES", "KtPublisherThread", "RelayKeyTransparency"]

_LOG = logging.getLogger("securemsg.relay")
#: The request types this module answers.
KT_REQUESTS = (rf.KtGetKeys, rf.KtGetHeads, rf.KtLookup, rf.KtHistory, rf.KtAppendOnly, rf.KtCosign)
#: Largest proof the relay puts in one answer (the rest of the frame is headroom).
MAX_KT_PROOF_BYTES = rf.MAX_FRAME_SIZE - 64 * 1024
_U63 = (1 << 63) - 1
_AUDIT_BUCKET = b"kt-audit"
_COSIGN_BUCKET = b"kt-cosign"
_PROOF_ATTEMPTS = 3


class _KtRefuse(Exception):
    def __init__(self, code: rf.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class RelayKeyTransparency:
    """The relay's directory (see the module docstring). Not thread-safe: the relay calls it
    from the same place it calls the rest of its service."""

    def __init__(
        self,
        store: RelayKtStore,
        rng: Rng,
        config: RelayConfig,
        lookup_buckets: TokenBuckets,
        audit_buckets: TokenBuckets,
    ) -> None:
        """Load (or create, on first start) the directory's VRF and head-signing keys.

        Raises:
            StorageError: the store failed or holds corrupt keys.
        """
        self.store = store
        self._config = config
        vrf_seed, head_seed = store.init_keys(rng.random_bytes(32), rng.random_bytes(32))
        self._vrf = VrfPrivateKey(vrf_seed)
        self._head_key = Ed25519SigningKey(head_seed)
        self.directory = Directory(self._vrf, store)
        self._lookups = lookup_buckets
        self._audits = audit_buckets

    @property
    def vrf_public_key(self) -> bytes:
        """The directory's VRF public key (32 bytes)."""
        return bytes(self._vrf.public_key)

    @property
    def head_public_key(self) -> bytes:
        """The head-signing public key (32 bytes, Ed25519)."""
        return self._head_key.public_key

    # -- publishing -----------------------------------------------------------------------

    def publish(self, now_ms: int) -> PublishedEpoch | None:
        """Publish the queued updates (at most ``kt_max_epoch_changes``) as one epoch.

        Returns the new epoch, or None when nothing was queued or nothing changed.

        Raises:
            StorageError: the store failed (nothing was published).
        """
        updates = self.store.pending_updates(max(1, self._config.kt_max_epoch_changes))
        if not updates:
            return None

        def make_head(epoch: int, root_hash: bytes, previous: bytes | None) -> bytes:
            prev = None if previous is None else SignedEpochHead.from_bytes(previous).head
            time_ms = max(0, min(now_ms, _U63))
            if prev is not None:
                time_ms = max(time_ms, prev.time_ms)
            head = EpochHead.next_after(prev, epoch, root_hash, time_ms)
            return sign_epoch_head(self._head_key, head).to_bytes()

        self.store.stage(make_head, updates)
        try:
            result = self.directory.publish(updates)
        finally:
            self.store.stage_clear()
        if result.changed == 0:
            self.store.drop_pending(updates)
            return None
        return result

    # -- answering ------------------------------------------------------------------------

    def _kt_head(self, epoch: int) -> rf.KtHead:
        signed = self.store.signed_head(epoch)
        if signed is None:  # pragma: no cover - every committed epoch has a head
            raise _KtRefuse(rf.StatusCode.INTERNAL, "missing epoch head")
        return rf.KtHead(signed, self._cosignatures(epoch))

    def _cosignatures(self, epoch: int) -> tuple[rf.KtCosignature, ...]:
        # Only the configured auditors' (rows of other keys, e.g. stored by an older relay
        # that took anyone's, are neither served nor counted).
        allowed = self._config.kt_auditor_keys
        if not allowed:
            return ()
        cosigs = [rf.KtCosignature(k, s) for k, s in self.store.cosignatures(epoch) if k in allowed]
        return tuple(cosigs[: rf.MAX_KT_COSIGNATURES])

    def answer(
        self, aci: bytes | None, device_id: int, rid: int, body: rf.Request, now: int
    ) -> rf.Response:
        """Answer one ``Kt*`` request for a session of ``aci`` (None: not authenticated).
        Never raises for a refusal: it is a status."""
        try:
            return rf.Response(rid, rf.StatusCode.OK, "", self._answer(aci, device_id, body, now))
        except _KtRefuse as r:
            return rf.Response(rid, r.code, r.message)

    def _answer(
        self, aci: bytes | None, device_id: int, body: rf.Request, now: int
    ) -> rf.ResponseBody | None:
        if isinstance(body, rf.KtGetKeys):
            return rf.KtKeys(self.vrf_public_key, self.head_public_key)
        if isinstance(body, rf.KtGetHeads):
            latest = self.directory.epoch
            if body.since_epoch > latest:
                raise _KtRefuse(rf.StatusCode.BAD_REQUEST, "since_epoch is past the latest epoch")
            heads = []
            for raw in self.store.signed_heads(body.since_epoch, rf.MAX_KT_HEADS):
                epoch = SignedEpochHead.from_bytes(raw).head.epoch
                heads.append(rf.KtHead(raw, self._cosignatures(epoch)))
            return rf.KtHeads(tuple(heads), latest)
        if isinstance(body, rf.KtAppendOnly):
            return self._append_only(body, now)
        if isinstance(body, rf.KtCosign):
            self._cosign(body, now)
            return None
        if aci is None:
            raise _KtRefuse(rf.StatusCode.UNAUTHENTICATED, "authenticate first")
        if isinstance(body, rf.KtLookup):
            if not self._lookups.take((aci, device_id), now):
                raise _KtRefuse(rf.StatusCode.RATE_LIMITED, "too many lookups")
            return self._proof(body.aci, history=False)
        if isinstance(body, rf.KtHistory):
            if body.aci != aci:
                raise _KtRefuse(rf.StatusCode.FORBIDDEN, "only the own account's history")
            return self._proof(body.aci, history=True)
        raise _KtRefuse(rf.StatusCode.BAD_REQUEST, "unexpected request")  # pragma: no cover

    def _proof(self, label: bytes, *, history: bool) -> rf.KtProofResult:
        # A proof is several reads. On PostgreSQL each is its own snapshot (READ COMMITTED)
        # and another instance may commit an epoch meanwhile: the proof is kept only if the
        # latest epoch did not move while it was built (epochs only grow, and an epoch
        # commits at once), else it is built again, a bounded number of times.
        for _ in range(_PROOF_ATTEMPTS):
            epoch = self.directory.epoch
            result = self._proof_once(label, history=history)
            if self.directory.epoch == epoch:
                return result
        raise _KtRefuse(rf.StatusCode.INTERNAL, "the directory kept changing; retry")

    def _proof_once(self, label: bytes, *, history: bool) -> rf.KtProofResult:
        pending = self.store.pending_value(label) is not None
        if self.directory.latest_state(label) is None:
            if pending:
                return rf.KtProofResult(b"", None, True)
            raise _KtRefuse(rf.StatusCode.NOT_FOUND, "no such account in the directory")
        epoch = self.directory.epoch
        if history:
            proof = encode_history_proof(
                self.directory.key_history(label, HistoryParams.complete())
            )
        else:
            proof = encode_lookup_proof(self.directory.lookup(label))
        if len(proof) > MAX_KT_PROOF_BYTES:  # pragma: no cover - needs ~2000 key changes
            raise _KtRefuse(rf.StatusCode.TOO_LARGE, "proof too large")
        return rf.KtProofResult(proof, self._kt_head(epoch), pending)

    def _append_only(self, body: rf.KtAppendOnly, now: int) -> rf.KtAppendOnlyResult:
        latest = self.directory.epoch
        start, end = body.from_epoch, body.to_epoch
        if not 0 <= start < end <= latest:
            raise _KtRefuse(rf.StatusCode.BAD_REQUEST, "need 0 <= from < to <= latest epoch")
        if end - start > rf.MAX_KT_APPEND_ONLY_EPOCHS:
            raise _KtRefuse(rf.StatusCode.TOO_LARGE, "too many epochs in one request")
        if not self._audits.take(_AUDIT_BUCKET, now):
            raise _KtRefuse(rf.StatusCode.RATE_LIMITED, "too many audit requests")
        proof = encode_append_only_proof(self.directory.append_only_proof(start, end))
        if len(proof) > MAX_KT_PROOF_BYTES:
            raise _KtRefuse(rf.StatusCode.TOO_LARGE, "append-only proof too large; ask for fewer")
        return rf.KtAppendOnlyResult(proof)

    def _cosign(self, body: rf.KtCosign, now: int) -> None:
        allowed = self._config.kt_auditor_keys
        if not allowed:
            raise _KtRefuse(
                rf.StatusCode.FORBIDDEN,
                "this relay stores no cosignatures: it is configured with no auditors",
            )
        if body.auditor_key not in allowed:
            raise _KtRefuse(rf.StatusCode.FORBIDDEN, "not an auditor of this relay")
        if not 1 <= body.epoch <= _U63:
            raise _KtRefuse(rf.StatusCode.BAD_REQUEST, "epoch out of range")
        raw = self.store.signed_head(body.epoch)
        if raw is None:
            raise _KtRefuse(rf.StatusCode.NOT_FOUND, "no such epoch")
        head = SignedEpochHead.from_bytes(raw).head
        if not verify_cosignature(body.auditor_key, head, body.signature):
            raise _KtRefuse(rf.StatusCode.BAD_REQUEST, "the cosignature does not verify")
        if self.store.cosignature(body.epoch, body.auditor_key) == body.signature:
            return  # already stored (a cosignature is public: anyone may post it again)
        if not self._audits.take((_COSIGN_BUCKET, body.auditor_key), now):
            raise _KtRefuse(rf.StatusCode.RATE_LIMITED, "too many cosignatures of this auditor")
        self.store.add_cosignature(body.epoch, body.auditor_key, body.signature)


def check_config(config: RelayConfig) -> None:
    """Refuse a configuration the directory cannot run with.

    Raises:
        UsageError: a non-positive epoch interval or batch size, a bad auditor key, or more
            auditors than a head can carry cosignatures of.
    """
    if not config.kt_epoch_interval_s > 0:
        raise UsageError("kt_epoch_interval_s must be positive")
    if config.kt_max_epoch_changes < 1:
        raise UsageError("kt_max_epoch_changes must be at least 1")
    if any(not isinstance(k, bytes) or len(k) != 32 for k in config.kt_auditor_keys):
        raise UsageError("auditor keys are 32-byte Ed25519 public keys")
    if len(set(config.kt_auditor_keys)) > rf.MAX_KT_COSIGNATURES:
        raise UsageError(f"at most {rf.MAX_KT_COSIGNATURES} auditor keys")


class KtPublisherThread:
    """Publishes epochs on a thread and database connection of their own.

    Building an epoch (VRF evaluations, trie reads and hashing: about a second for 1000 new
    accounts) then never holds up the relay's storage thread, so sends are not delayed; only
    the final commit takes the database's write lock (SQLite) or the epoch's advisory lock
    (PostgreSQL), between two of the storage thread's group commits. The connection is opened
    with ``open_store`` on first use, on the thread that keeps using it. On PostgreSQL the
    server publishes only while its instance holds the cluster's leader lock.
    """

    def __init__(
        self,
        open_store: Callable[[], RelayStore],
        rng: Rng,
        config: RelayConfig,
        clock: Callable[[], int],
    ) -> None:
        self._open_store = open_store
        self._rng = rng
        self._config = config
        self._clock = clock
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="securemsg-relay-kt")
        self._store: RelayStore | None = None
        self._kt: RelayKeyTransparency | None = None

    def _publish(self) -> int | None:  # on the publisher thread
        if self._kt is None:
            from securemsg.relay.service import TokenBuckets

            store = self._open_store()
            kt_store = store.kt_store()
            if kt_store is None:
                store.close()
                return None
            self._store = store
            unused = TokenBuckets(1, 1.0)  # this instance answers no requests
            self._kt = RelayKeyTransparency(kt_store, self._rng, self._config, unused, unused)
        published = self._kt.publish(self._clock())
        return None if published is None else published.epoch

    async def publish(self) -> int | None:
        """Publish the queued updates as one epoch; the new epoch or None.

        Raises:
            StorageError: the database failed (nothing was published).
            UsageError: another publisher committed the epoch first (nothing was published).
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._publish)

    def _close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
            self._kt = None

    async def close(self) -> None:
        """Close the connection and end the thread (after a publication in progress)."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=False)
