"""The client's side of key transparency: pinned directory keys, a head chain, lookups,
self-monitoring.

Theory of operation
-------------------
:class:`ClientKeyTransparency` keeps its state in the device database's meta table: the
directory's VRF public key and head-signing key (``kt_vrf_key``, ``kt_head_key``: pinned at
registration, trust on first use like the relay's trust root) and the last signed epoch head
it verified (``kt_head``). It does its I/O through a ``request`` callable (the client's relay
connection).

* **Head chain.** Every proof comes with the signed head of the epoch it is against. Before
  the proof is used, that head must extend the stored head: the client fetches the heads in
  between (``KtGetHeads``) and runs them through
  :class:`~securemsg.kt.heads.HeadChainVerifier` (signature, no fork, no rollback, no gap),
  and the proof's head must be the head reached. With auditors configured, the head must carry
  at least ``min_cosignatures`` valid cosignatures of distinct configured auditors. The first
  head a device sees is taken on trust (its signature is checked).
* **Lookup** (:meth:`ClientKeyTransparency.verify_identity`): the lookup proof of the
  account must verify against that head, and the proven value must be the identity key the
  relay's bundles carry; otherwise :class:`~securemsg.errors.KeyTransparencyMismatch`. A key
  the directory has not published yet is reported as pending (the caller applies its policy).
* **Monitoring** (:meth:`ClientKeyTransparency.monitor`): the complete history of our own
  account must verify, and every version's value must be our identity key (this device never
  changes its identity key, so every other value is one we did not create):
  :class:`~securemsg.errors.KeyTransparencyMonitorError` otherwise.

Nothing is stored until everything verified: a refusal leaves the stored head in place.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from securemsg.client.store import ClientStore
from securemsg.errors import (
    KeyTransparencyError,
    KeyTransparencyHeadError,
    KeyTransparencyMismatch,
    KeyTransparencyMonitorError,
    RelayError,
)
from securemsg.kt.cosign import count_cosignatures
from securemsg.kt.heads import HeadChainVerifier, SignedEpochHead
from securemsg.kt.types import HistoryParams
from securemsg.kt.verify import verify_history, verify_lookup
from securemsg.relay_protocol import frames as rf
from securemsg.relay_protocol.akd import decode_history_proof, decode_lookup_proof

__all__ = ["ClientKeyTransparency", "KtMonitorResult", "KtWarning", "Requester"]

#: Sends one request over the client's relay connection; returns the OK response.
Requester = Callable[[rf.Request], Awaitable[rf.Response]]
#: Most KtGetHeads round trips one chain extension may take (256 heads each).
_MAX_HEAD_PAGES = 4096


@dataclass(frozen=True, slots=True)
class KtWarning:
    """Something the client accepted under the ``kt_pending="warn"`` policy.

    Attributes:
        aci: the account concerned.
        reason: ``"pending"``: its identity key was not in a published epoch yet, and a
            session was started with the key the relay handed out unverified.
    """

    aci: str
    reason: str


@dataclass(frozen=True, slots=True)
class KtMonitorResult:
    """The outcome of a successful self-monitoring run.

    Attributes:
        pending: our key is not in a published epoch yet (nothing to check yet).
        epoch: the epoch checked (0 while pending).
        versions: how many versions of our account the directory holds (all ours).
    """

    pending: bool
    epoch: int
    versions: int


def _aci_bytes(aci: str) -> bytes:
    return uuid.UUID(aci).bytes


class ClientKeyTransparency:
    """Key-transparency verification for one device (see the module docstring)."""

    def __init__(
        self, store: ClientStore, auditors: tuple[bytes, ...] = (), min_cosignatures: int = 0
    ) -> None:
        self._store = store
        self._auditors = auditors
        self._min_cosignatures = min_cosignatures

    @property
    def pinned(self) -> bool:
        """Whether the directory's keys are pinned."""
        return self._store.get_meta_bytes("kt_head_key") is not None

    @property
    def head(self) -> SignedEpochHead | None:
        """The last verified signed head (None before the first)."""
        raw = self._store.get_meta_bytes("kt_head")
        return None if raw is None else SignedEpochHead.from_bytes(raw)

    async def pin(self, request: Requester) -> tuple[bytes, bytes]:
        """Fetch the directory's keys; return them if none are pinned or they equal the
        pinned ones (the caller stores them with :meth:`store_keys`).

        Raises:
            KeyTransparencyHeadError: reason ``"keys"``, the relay presents other keys than
                the pinned ones.
            RelayError: the relay refused or has no directory.
        """
        resp = await request(rf.KtGetKeys())
        if not isinstance(resp.body, rf.KtKeys):
            raise RelayError("relay sent no key-transparency keys", int(rf.StatusCode.INTERNAL))
        vrf, head = resp.body.vrf_public_key, resp.body.head_public_key
        pinned = self._keys()
        if pinned is not None and pinned != (vrf, head):
            raise KeyTransparencyHeadError(
                "the relay's key-transparency keys differ from the pinned ones", "keys"
            )
        return vrf, head

    def store_keys(self, keys: tuple[bytes, bytes]) -> None:
        """Pin the directory's (VRF key, head key) (call inside a store transaction)."""
        if self._keys() is None:
            self._store.set_meta("kt_vrf_key", keys[0])
            self._store.set_meta("kt_head_key", keys[1])

    def _keys(self) -> tuple[bytes, bytes] | None:
        vrf = self._store.get_meta_bytes("kt_vrf_key")
        head = self._store.get_meta_bytes("kt_head_key")
        if vrf is None or head is None:
            return None
        return vrf, head

    def _need_keys(self) -> tuple[bytes, bytes]:
        keys = self._keys()
        if keys is None:
            raise KeyTransparencyHeadError(
                "no key-transparency keys are pinned for this device", "keys"
            )
        return keys

    async def _extend(self, request: Requester, target: rf.KtHead) -> SignedEpochHead:
        """Verify that ``target`` extends the stored head; return it (not stored)."""
        _, head_key = self._need_keys()
        signed = SignedEpochHead.from_bytes(target.signed_head)
        verifier = HeadChainVerifier(head_key, self.head)
        verifier.check_known(signed)
        if verifier.latest is None:
            verifier.advance([signed])  # the first head this device sees: trust on first use
        for _ in range(_MAX_HEAD_PAGES):
            latest = verifier.latest
            assert latest is not None
            if latest.head.epoch >= signed.head.epoch:
                break
            resp = await request(rf.KtGetHeads(latest.head.epoch))
            if not isinstance(resp.body, rf.KtHeads) or not resp.body.heads:
                raise KeyTransparencyHeadError("the relay sent no heads to chain", "chain")
            heads = [SignedEpochHead.from_bytes(h.signed_head) for h in resp.body.heads]
            wanted = [h for h in heads if h.head.epoch <= signed.head.epoch]
            if not wanted:
                raise KeyTransparencyHeadError("the relay sent no heads to chain", "chain")
            verifier.advance(wanted)
        else:
            raise KeyTransparencyHeadError("the head chain is too long to follow", "chain")
        reached = verifier.latest
        if reached is None or reached != signed:
            raise KeyTransparencyHeadError("the proof's head is not on the verified chain", "fork")
        if self._min_cosignatures:
            count = count_cosignatures(
                signed.head,
                ((c.auditor_key, c.signature) for c in target.cosignatures),
                self._auditors,
            )
            if count < self._min_cosignatures:
                raise KeyTransparencyHeadError(
                    f"the head has {count} of the {self._min_cosignatures} auditor "
                    "cosignatures required",
                    "cosignature",
                )
        return signed

    def _save_head(self, signed: SignedEpochHead) -> None:
        current = self.head
        if current is None or signed.head.epoch > current.head.epoch:
            self._store.set_meta("kt_head", signed.to_bytes())

    async def verify_identity(self, request: Requester, aci: str, identity_key: bytes) -> bool:
        """Check that the directory proves ``identity_key`` for ``aci`` at its latest epoch.

        Returns:
            True when verified (the head is stored); False when the key is pending (not in a
            published epoch yet, or a newer value is queued): nothing is stored.

        Raises:
            KeyTransparencyMismatch: the proven key is another one (nothing stored).
            KeyTransparencyError: a proof, head or chain does not verify (nothing stored).
            RelayError: the relay refused.
        """
        vrf_key, _ = self._need_keys()
        resp = await request(rf.KtLookup(_aci_bytes(aci)))
        body = resp.body
        if not isinstance(body, rf.KtProofResult):
            raise RelayError("relay sent no lookup proof", int(rf.StatusCode.INTERNAL))
        if body.head is None:
            if body.pending:
                return False
            raise KeyTransparencyError("the relay sent a lookup without a head", "lookup")
        proof = decode_lookup_proof(body.proof)
        signed = await self._extend(request, body.head)
        head = signed.head
        verify_lookup(vrf_key, head.root_hash, head.epoch, _aci_bytes(aci), proof)
        if proof.value != identity_key:
            if body.pending:
                return False
            raise KeyTransparencyMismatch(
                "the relay handed out an identity key its directory does not publish for "
                "this account",
                aci,
            )
        with self._store.transaction():
            self._save_head(signed)
        return True

    async def monitor(self, request: Requester, aci: str, identity_key: bytes) -> KtMonitorResult:
        """Check the complete history of our own account (see the module docstring).

        Raises:
            KeyTransparencyMonitorError: a version whose value is not our identity key (the
                verified head is stored first: the history it proves is what the relay
                published).
            KeyTransparencyError: a proof, head or chain does not verify (nothing stored).
            RelayError: the relay refused.
        """
        vrf_key, _ = self._need_keys()
        resp = await request(rf.KtHistory(_aci_bytes(aci)))
        body = resp.body
        if not isinstance(body, rf.KtProofResult):
            raise RelayError("relay sent no history proof", int(rf.StatusCode.INTERNAL))
        if body.head is None:
            if body.pending:
                return KtMonitorResult(True, 0, 0)
            raise KeyTransparencyError("the relay sent a history without a head", "history")
        proof = decode_history_proof(body.proof)
        signed = await self._extend(request, body.head)
        head = signed.head
        results = verify_history(
            vrf_key, head.root_hash, head.epoch, _aci_bytes(aci), proof, HistoryParams.complete()
        )
        with self._store.transaction():
            self._save_head(signed)
        foreign = tuple((r.version, r.epoch) for r in results if r.value != identity_key)
        if foreign:
            raise KeyTransparencyMonitorError(
                "the relay's directory holds an identity key for this account that this "
                "device did not create",
                foreign,
            )
        return KtMonitorResult(False, head.epoch, len(results))
