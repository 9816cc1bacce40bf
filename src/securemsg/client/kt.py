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
  :class:`~securemsg.errors.KeyTransparencyMonitorError` otherwise. Monitoring fails closed
  when the relay does not answer with a history: the epoch in which our key was first seen
  published is kept (``kt_own_epoch``), and after it a "pending" answer (no proof, no head) is
  :class:`~securemsg.errors.KeyTransparencyHistoryWithheld` (reason ``"withheld"``): an honest
  relay never unpublishes a key, and a hostile one would otherwise hide a key it published
  for us behind "pending". Before the first publication "pending" is the honest answer, but
  only for :data:`FIRST_PUBLICATION_WINDOW_S` after registration (``kt_pending_since``, or the
  first pending answer for a device registered by an older version); later it is refused
  too. A history that verifies but comes with ``pending`` (a value queued for our account,
  which this device did not create) is refused with reason ``"queued"``.

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
    KeyTransparencyHistoryWithheld,
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

__all__ = [
    "FIRST_PUBLICATION_WINDOW_S",
    "ClientKeyTransparency",
    "KtMonitorResult",
    "KtWarning",
    "Requester",
]

#: Sends one request over the client's relay connection; returns the OK response.
Requester = Callable[[rf.Request], Awaitable[rf.Response]]
#: Most KtGetHeads round trips one chain extension may take (256 heads each).
_MAX_HEAD_PAGES = 4096
#: How long after registration the relay may call our own account's key "pending" before
#: self-monitoring refuses (seconds). A relay publishes every ``kt_epoch_interval_s`` (60 s by
#: default) at most ``kt_max_epoch_changes`` registrations (1000), so a day is over a thousand
#: epochs: room for a long backlog or an outage, and still a bound.
FIRST_PUBLICATION_WINDOW_S = 24 * 3600
#: Meta keys: when the device registered (Unix ms; the window starts there), and the epoch in
#: which it first saw its own key published (absent: not yet).
_PENDING_SINCE = "kt_pending_since"
_OWN_EPOCH = "kt_own_epoch"


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
        pending: our key is not in a published epoch yet (nothing to check yet); only ever
            within :data:`FIRST_PUBLICATION_WINDOW_S` of registration, and never once this
            device saw its key published (those raise
            :class:`~securemsg.errors.KeyTransparencyHistoryWithheld`).
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

    @property
    def published_epoch(self) -> int:
        """The epoch in which this device first saw its own key published (0: not yet)."""
        return self._store.get_meta_int(_OWN_EPOCH, 0)

    def start_pending_window(self, now_ms: int) -> None:
        """Record that the device registered now: its own key may be "pending" for
        :data:`FIRST_PUBLICATION_WINDOW_S` from here (call inside a store transaction)."""
        self._store.set_meta(_PENDING_SINCE, now_ms)

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

    async def monitor(
        self, request: Requester, aci: str, identity_key: bytes, now_ms: int
    ) -> KtMonitorResult:
        """Check the complete history of our own account (see the module docstring).

        ``now_ms`` (Unix ms) decides whether a "pending" answer is still within
        :data:`FIRST_PUBLICATION_WINDOW_S` of registration.

        Returns:
            The result; ``pending`` only before our key was ever seen published and within
            the window.

        Raises:
            KeyTransparencyMonitorError: a version whose value is not our identity key (the
                verified head is stored first: the history it proves is what the relay
                published).
            KeyTransparencyHistoryWithheld: reason ``"withheld"``, the relay answered
                "pending" after our key was seen published, or after the window (nothing
                stored); reason ``"queued"``, the history verifies but the relay says another
                value is queued for our account (the verified head is stored first).
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
                return self._pending(aci, now_ms)
            raise KeyTransparencyError("the relay sent a history without a head", "history")
        proof = decode_history_proof(body.proof)
        signed = await self._extend(request, body.head)
        head = signed.head
        results = verify_history(
            vrf_key, head.root_hash, head.epoch, _aci_bytes(aci), proof, HistoryParams.complete()
        )
        ours = [r.epoch for r in results if r.value == identity_key]
        with self._store.transaction():
            self._save_head(signed)
            if ours and not self.published_epoch:
                self._store.set_meta(_OWN_EPOCH, min(ours))
        foreign = tuple((r.version, r.epoch) for r in results if r.value != identity_key)
        if foreign:
            raise KeyTransparencyMonitorError(
                "the relay's directory holds an identity key for this account that this "
                "device did not create",
                foreign,
            )
        if body.pending:
            raise KeyTransparencyHistoryWithheld(
                "the relay says another identity key is queued for this account; this device "
                "did not create it",
                "queued",
                aci,
                self.published_epoch,
            )
        return KtMonitorResult(False, head.epoch, len(results))

    def _pending(self, aci: str, now_ms: int) -> KtMonitorResult:
        """The relay says our key is not published yet: accept that only before this device
        ever saw it published, and only within the window after registration."""
        published = self.published_epoch
        if published:
            raise KeyTransparencyHistoryWithheld(
                f'the relay withholds this account\'s key history ("pending"), but this '
                f"device saw its key published in epoch {published}",
                "withheld",
                aci,
                published,
            )
        since = self._store.get_meta_int(_PENDING_SINCE, 0)
        if not since:  # registered by an older version: the window starts at this answer
            self._store.set_meta(_PENDING_SINCE, now_ms)
            since = now_ms
        if now_ms - since > FIRST_PUBLICATION_WINDOW_S * 1000:
            raise KeyTransparencyHistoryWithheld(
                "the relay has not published this account's key in the "
                f"{FIRST_PUBLICATION_WINDOW_S // 3600} hours since registration",
                "withheld",
                aci,
                0,
            )
        return KtMonitorResult(True, 0, 0)
