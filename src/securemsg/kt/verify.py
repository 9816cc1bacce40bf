"""Client-side and auditor-side verification of AKD ``whatsapp_v1`` proofs (sans-IO).

Every check raises :class:`~securemsg.errors.KeyTransparencyProofError` (``reason`` says
which part failed) and returns nothing partial. The hash checks of a proof all run before any
VRF proof is verified (VRF verification is the expensive step), and a VRF output is compared
with the label it must equal before its proof is checked.

Checks beyond AKD's verifier (all hold for honest proofs, see docs/key-transparency.md): the
topmost level of a membership path must name the root label; a non-membership proof's
children must not be prefixes of the absent label; a lookup needs ``1 <= version <= epoch <=
current epoch``; a history's update epochs strictly decrease and never exceed the current
epoch; append-only proofs must list distinct, prefix-free, canonical labels.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence

from securemsg.crypto.ecvrf import VrfPublicKey, proof_to_hash
from securemsg.errors import KeyTransparencyProofError
from securemsg.kt import config
from securemsg.kt.config import (
    EMPTY_NODE_DIGEST,
    EMPTY_ROOT_VALUE,
    STALE_VALUE,
    blake3_hash,
    commitment,
    leaf_hash,
    parent_hash,
    root_hash_from_value,
    vrf_input,
)
from securemsg.kt.types import (
    AppendOnlyProof,
    AzksElement,
    HistoryParams,
    HistoryProof,
    LookupProof,
    MembershipProof,
    NodeLabel,
    NonMembershipProof,
    SingleAppendOnlyProof,
    UpdateProof,
    VerifyResult,
)

__all__ = [
    "audit_verify",
    "root_hash_of_elements",
    "verify_append_only",
    "verify_history",
    "verify_lookup",
]

#: AKD's TOMBSTONE: an empty value standing for a value deleted for data retention.
TOMBSTONE = b""


def _fail(message: str, reason: str) -> KeyTransparencyProofError:
    return KeyTransparencyProofError(message, reason)


class _VrfChecks:
    """VRF checks collected while the hash checks run, verified last."""

    __slots__ = ("_items", "_key")

    def __init__(self, key: VrfPublicKey) -> None:
        self._key = key
        self._items: list[tuple[bytes, bytes, NodeLabel]] = []

    def add(
        self, akd_label: bytes, fresh: bool, version: int, proof: bytes, label: NodeLabel
    ) -> None:
        self._items.append((vrf_input(akd_label, fresh, version), proof, label))

    def run(self) -> None:
        for _alpha, proof, label in self._items:
            if NodeLabel.from_bytes32(proof_to_hash(proof)[:32]) != label:
                raise _fail("a VRF output does not match the proved node label", "vrf")
        for alpha, proof, _label in self._items:
            self._key.verify(alpha, proof)


def _as_key(vrf_public_key: VrfPublicKey | bytes) -> VrfPublicKey:
    if isinstance(vrf_public_key, VrfPublicKey):
        return vrf_public_key
    return VrfPublicKey(bytes(vrf_public_key))


def _verify_membership(root_hash: bytes, proof: MembershipProof) -> None:
    value = proof.hash_val
    label = proof.label
    for level in reversed(proof.sibling_proofs):
        sibling = level.sibling
        if level.direction == 0:
            value = parent_hash(value, label.hash(), sibling.value, sibling.label.hash())
        else:
            value = parent_hash(sibling.value, sibling.label.hash(), value, label.hash())
        label = level.label
    # The root hash binds the fixed root label, not the topmost label in the proof: insist
    # that it is the root, so no byte of the proof goes unauthenticated.
    if label != NodeLabel.root():
        raise _fail("a membership path does not end at the root", "membership")
    if root_hash_from_value(value) != root_hash:
        raise _fail("a membership proof does not match the root hash", "membership")


def _verify_non_membership(root_hash: bytes, proof: NonMembershipProof) -> None:
    left, right = proof.longest_prefix_children
    empty = NodeLabel.empty()
    if proof.label in (left.label, right.label):
        raise _fail("the absent label is one of the children", "non-membership")
    for child in (left, right):
        if child.label != empty and child.label.is_prefix_of(proof.label):
            raise _fail("a child is a prefix of the absent label", "non-membership")
    if not proof.longest_prefix.is_prefix_of(proof.label):
        raise _fail("the longest prefix is not a prefix of the label", "non-membership")
    common = left.label.common_prefix(right.label)
    if common == empty:
        common = NodeLabel.root()  # only the root may miss a child
    if proof.longest_prefix != common:
        raise _fail("the longest prefix is not the children's common prefix", "non-membership")
    expected = parent_hash(left.value, left.label.hash(), right.value, right.label.hash())
    membership = proof.longest_prefix_membership_proof
    if membership.label != common or membership.hash_val != expected:
        raise _fail("the longest-prefix node does not match its children", "non-membership")
    _verify_membership(root_hash, membership)


def _check_leaf(proof: MembershipProof, commitment_value: bytes, epoch: int, what: str) -> None:
    if leaf_hash(commitment_value, epoch) != proof.hash_val:
        raise _fail(f"{what}: the leaf does not commit to this value and epoch", "membership")


def verify_lookup(
    vrf_public_key: VrfPublicKey | bytes,
    root_hash: bytes,
    current_epoch: int,
    akd_label: bytes,
    proof: LookupProof,
) -> VerifyResult:
    """Verify that ``akd_label`` maps to ``proof.value`` (its latest version) at the epoch whose
    root is ``root_hash``. Returns the verified (epoch, version, value).

    Raises:
        KeyTransparencyProofError: the proof does not verify.
    """
    key = _as_key(vrf_public_key)
    if not 1 <= proof.version <= proof.epoch <= current_epoch:
        raise _fail("lookup: version and epoch are out of range", "lookup")
    checks = _VrfChecks(key)
    nonce_commitment = commitment(proof.value, proof.commitment_nonce)
    _check_leaf(proof.existence_proof, nonce_commitment, proof.epoch, "lookup")
    _verify_membership(root_hash, proof.existence_proof)
    checks.add(
        akd_label, True, proof.version, proof.existence_vrf_proof, proof.existence_proof.label
    )

    marker = 1 << (proof.version.bit_length() - 1)
    _verify_membership(root_hash, proof.marker_proof)
    checks.add(akd_label, True, marker, proof.marker_vrf_proof, proof.marker_proof.label)

    _verify_non_membership(root_hash, proof.freshness_proof)
    checks.add(
        akd_label, False, proof.version, proof.freshness_vrf_proof, proof.freshness_proof.label
    )
    checks.run()
    return VerifyResult(proof.epoch, proof.version, proof.value)


def _history_bounds(
    current_epoch: int, proof: HistoryProof, params: HistoryParams
) -> tuple[list[int], list[int]]:
    updates = proof.update_proofs
    if not updates:
        raise _fail("history: no update proofs", "history")
    for newer, older in itertools.pairwise(updates):
        if older.version + 1 != newer.version:
            raise _fail("history: versions must be consecutive and decreasing", "history")
        if older.epoch >= newer.epoch:
            raise _fail("history: epochs must decrease with the versions", "history")
    start_version = updates[-1].version
    end_version = updates[0].version
    if start_version < 1:
        raise _fail("history: versions start at 1", "history")
    if end_version > current_epoch or updates[0].epoch > current_epoch:
        raise _fail("history: a version is newer than the current epoch", "history")
    for update in updates:
        if update.version > update.epoch:
            raise _fail("history: a version is larger than its epoch", "history")
    if params.is_complete:
        if start_version != 1:
            raise _fail("history: a complete history starts at version 1", "history")
    elif len(updates) > params.count or (len(updates) < params.count and start_version != 1):
        raise _fail("history: the number of versions does not match the request", "history")
    past, future = config.marker_versions(start_version, end_version, current_epoch)
    if len(proof.past_marker_vrf_proofs) != len(past) or len(
        proof.existence_of_past_marker_proofs
    ) != len(past):
        raise _fail("history: wrong number of past-marker proofs", "history")
    if len(proof.future_marker_vrf_proofs) != len(future) or len(
        proof.non_existence_of_future_marker_proofs
    ) != len(future):
        raise _fail("history: wrong number of future-marker proofs", "history")
    return past, future


def _update_checks(
    root_hash: bytes,
    akd_label: bytes,
    update: UpdateProof,
    checks: _VrfChecks,
    allow_missing_values: bool,
) -> None:
    if not (allow_missing_values and update.value == TOMBSTONE):
        _check_leaf(
            update.existence_proof,
            commitment(update.value, update.commitment_nonce),
            update.epoch,
            "history",
        )
    _verify_membership(root_hash, update.existence_proof)
    checks.add(
        akd_label, True, update.version, update.existence_vrf_proof, update.existence_proof.label
    )
    if update.version <= 1:
        return
    previous, previous_vrf = update.previous_version_proof, update.previous_version_vrf_proof
    if previous is None or previous_vrf is None:
        raise _fail("history: missing the proof that the previous version went stale", "history")
    _check_leaf(previous, STALE_VALUE, update.epoch, "history")
    _verify_membership(root_hash, previous)
    checks.add(akd_label, False, update.version - 1, previous_vrf, previous.label)


def verify_history(
    vrf_public_key: VrfPublicKey | bytes,
    root_hash: bytes,
    current_epoch: int,
    akd_label: bytes,
    proof: HistoryProof,
    params: HistoryParams,
    *,
    allow_missing_values: bool = False,
) -> list[VerifyResult]:
    """Verify a key history of ``akd_label`` at the epoch whose root is ``root_hash``.

    Returns one result per version, newest first. ``allow_missing_values`` accepts versions
    whose value was replaced by the empty tombstone (their commitment is then not opened).

    Raises:
        KeyTransparencyProofError: the proof does not verify.
    """
    key = _as_key(vrf_public_key)
    past, future = _history_bounds(current_epoch, proof, params)
    checks = _VrfChecks(key)
    for update in proof.update_proofs:
        _update_checks(root_hash, akd_label, update, checks, allow_missing_values)
    for version, vrf_proof, membership in zip(
        past, proof.past_marker_vrf_proofs, proof.existence_of_past_marker_proofs, strict=True
    ):
        _verify_membership(root_hash, membership)
        checks.add(akd_label, True, version, vrf_proof, membership.label)
    for version, vrf_proof, absent in zip(
        future,
        proof.future_marker_vrf_proofs,
        proof.non_existence_of_future_marker_proofs,
        strict=True,
    ):
        _verify_non_membership(root_hash, absent)
        checks.add(akd_label, True, version, vrf_proof, absent.label)
    checks.run()
    return [VerifyResult(u.epoch, u.version, u.value) for u in proof.update_proofs]


# ---------------------------------------------------------------- append-only (auditor)


def root_hash_of_elements(elements: Sequence[AzksElement]) -> bytes:
    """The root hash of the compressed trie whose leaves are ``elements`` (values used as
    given). The labels must be distinct, prefix-free, 1..256 bits long, with zero bits beyond
    their length.

    Raises:
        KeyTransparencyProofError: the labels break those rules (reason ``"append-only"``).
    """
    items: list[tuple[int, int, bytes]] = []
    for element in elements:
        label = element.label
        if not 1 <= label.length <= 256 or label.prefix(label.length) != label:
            raise _fail("append-only: a label is not a canonical node label", "append-only")
        if len(element.value) != 32:
            raise _fail("append-only: a node value is not 32 bytes", "append-only")
        items.append((label.val, label.length, element.value))
    items.sort()
    for (val_a, len_a, _), (val_b, len_b, _) in itertools.pairwise(items):
        shift = 256 - len_a
        if len_a <= len_b and (val_a >> shift) == (val_b >> shift):
            raise _fail("append-only: a label repeats or is a prefix of another", "append-only")
    if not items:
        return root_hash_from_value(EMPTY_ROOT_VALUE)
    first_val, first_len, _ = items[0]
    last_val, last_len, _ = items[-1]
    shorter = min(first_len, last_len)
    common = shorter - ((first_val ^ last_val) >> (256 - shorter)).bit_length()
    if common == 0 and len(items) > 1:
        root_value = _subtree_value(items, 0, len(items), 0)
    else:
        digest = _subtree_digest(items, 0, len(items))
        if (first_val >> 255) & 1:
            root_value = blake3_hash(EMPTY_NODE_DIGEST + digest)
        else:
            root_value = blake3_hash(digest + EMPTY_NODE_DIGEST)
    return root_hash_from_value(root_value)


def _first(item: tuple[int, int, bytes]) -> int:
    return item[0]


def _subtree_value(items: list[tuple[int, int, bytes]], lo: int, hi: int, common: int) -> bytes:
    """Value of the interior node spanning items[lo:hi], whose labels share ``common`` bits."""
    shift = 256 - common
    threshold = ((items[lo][0] >> shift) << shift) | (1 << (255 - common))
    split = bisect.bisect_left(items, threshold, lo, hi, key=_first)
    return blake3_hash(_subtree_digest(items, lo, split) + _subtree_digest(items, split, hi))


def _subtree_digest(items: list[tuple[int, int, bytes]], lo: int, hi: int) -> bytes:
    """BLAKE3(value || label hash) of the node spanning items[lo:hi]."""
    if hi - lo == 1:
        val, length, value = items[lo]
        return blake3_hash(value + config.label_hash(val, length))
    first_val, first_len, _ = items[lo]
    last_val, last_len, _ = items[hi - 1]
    shorter = min(first_len, last_len)
    common = shorter - ((first_val ^ last_val) >> (256 - shorter)).bit_length()
    value = _subtree_value(items, lo, hi, common)
    shift = 256 - common
    return blake3_hash(value + config.label_hash((first_val >> shift) << shift, common))


def verify_append_only(
    proof: SingleAppendOnlyProof, start_hash: bytes, end_hash: bytes, end_epoch: int
) -> None:
    """Verify that the epoch ``end_epoch`` (root ``end_hash``) only added the proof's leaves
    to the epoch before it (root ``start_hash``).

    Raises:
        KeyTransparencyProofError: reason ``"append-only"``.
    """
    if end_epoch < 1:
        raise _fail("append-only: the end epoch must be at least 1", "append-only")
    if root_hash_of_elements(proof.unchanged_nodes) != start_hash:
        raise _fail("append-only: the unchanged nodes do not rebuild the start root", "append-only")
    inserted = [
        AzksElement(e.label, leaf_hash(e.value, end_epoch)) if len(e.value) == 32 else e
        for e in proof.inserted
    ]
    for element in proof.inserted:
        if element.label.length != 256:
            raise _fail("append-only: an inserted leaf is not a full label", "append-only")
    if root_hash_of_elements([*proof.unchanged_nodes, *inserted]) != end_hash:
        raise _fail("append-only: adding the leaves does not give the end root", "append-only")


def audit_verify(root_hashes: Sequence[bytes], proof: AppendOnlyProof) -> None:
    """Verify a run of consecutive epochs: ``root_hashes[i]`` is the root at
    ``proof.epochs[0] + i``, and ``proof.proofs[i]`` leads from epoch ``epochs[i]`` to the next.

    Raises:
        KeyTransparencyProofError: reason ``"append-only"``.
    """
    if len(proof.epochs) != len(proof.proofs) or len(root_hashes) != len(proof.epochs) + 1:
        raise _fail("append-only: one proof per pair of consecutive roots", "append-only")
    for i, (epoch, step) in enumerate(zip(proof.epochs, proof.proofs, strict=True)):
        if epoch != proof.epochs[0] + i:
            raise _fail("append-only: the epochs are not consecutive", "append-only")
        verify_append_only(step, root_hashes[i], root_hashes[i + 1], epoch + 1)
