"""The directory: an append-only compressed trie of AKD ``whatsapp_v1`` leaves, published in
epochs, with lookup, key-history and append-only proofs (sans-IO).

A label (``akd_label``, bytes) maps to a value (bytes) with a version. Publishing version ``n``
of a label inserts the leaf ``VRF(label, fresh, n) -> commitment(value)`` and, for ``n > 1``,
``VRF(label, stale, n - 1) -> BLAKE3(0x00)``; nothing is ever removed. Every byte format is in
docs/key-transparency.md.

Storage goes through :class:`KtStore` (nodes by label, per-label value states, per-epoch
roots). A publication reads through the store, builds every changed node as a fresh copy, and
hands them to :meth:`KtStore.commit_epoch` in one call: a backend makes that one transaction,
and a failure before it leaves the store untouched. :class:`InMemoryKtStore` keeps everything
in dictionaries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from securemsg.crypto.ecvrf import VrfPrivateKey, VrfPublicKey, proof_to_hash
from securemsg.errors import InternalError, UsageError
from securemsg.kt.config import (
    EMPTY_NODE_DIGEST,
    EMPTY_NODE_HASH,
    EMPTY_ROOT_VALUE,
    ROOT_LABEL_HASH,
    STALE_VALUE,
    blake3_hash,
    commitment,
    commitment_nonce,
    label_hash,
    leaf_hash,
    marker_versions,
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
    SiblingProof,
    SingleAppendOnlyProof,
    UpdateProof,
)

__all__ = [
    "ROOT_KEY",
    "Directory",
    "InMemoryKtStore",
    "KtStore",
    "PublishedEpoch",
    "TrieNode",
    "ValueState",
    "node_key",
]

#: The store key of the root node (label length 0, value 0).
ROOT_KEY = 0
_EMPTY_ELEMENT = AzksElement(NodeLabel.empty(), EMPTY_NODE_HASH)


def node_key(val: int, length: int) -> int:
    """The store key of the node labelled (``val``, ``length``): ``val << 9 | length``.

    Unique because a node label's bits beyond its length are zero. A SQL backend may store
    (length, val) instead and convert.
    """
    return (val << 9) | length


class TrieNode:
    """One node of the trie, as the store keeps it.

    ``value`` is what the parent hashes: for a leaf ``BLAKE3(commitment || u64 epoch)``, for an
    interior node or the root the hash of its children. ``digest`` caches
    ``BLAKE3(value || label hash)``, the half of the parent's hash this node contributes (for
    the root it is the published root hash). ``commitment`` is a leaf's commitment (empty for
    other nodes). ``last_epoch`` is the last epoch the subtree changed, ``min_epoch`` the
    oldest leaf epoch below. Children are store keys (see :func:`node_key`).
    """

    __slots__ = (
        "commitment",
        "digest",
        "label_hash",
        "last_epoch",
        "left",
        "length",
        "min_epoch",
        "right",
        "val",
        "value",
    )

    def __init__(
        self,
        val: int,
        length: int,
        *,
        left: int | None = None,
        right: int | None = None,
        commitment: bytes = b"",
        value: bytes = b"",
        digest: bytes = b"",
        label_hash_value: bytes | None = None,
        last_epoch: int = 0,
        min_epoch: int = 0,
    ) -> None:
        self.val = val
        self.length = length
        self.left = left
        self.right = right
        self.commitment = commitment
        self.value = value
        self.digest = digest
        self.label_hash = (
            label_hash_value if label_hash_value is not None else label_hash(val, length)
        )
        self.last_epoch = last_epoch
        self.min_epoch = min_epoch

    @property
    def is_leaf(self) -> bool:
        return self.length == 256

    @property
    def key(self) -> int:
        return node_key(self.val, self.length)

    def copy(self) -> TrieNode:
        return TrieNode(
            self.val,
            self.length,
            left=self.left,
            right=self.right,
            commitment=self.commitment,
            value=self.value,
            digest=self.digest,
            label_hash_value=self.label_hash,
            last_epoch=self.last_epoch,
            min_epoch=self.min_epoch,
        )

    def element(self) -> AzksElement:
        return AzksElement(NodeLabel(self.val, self.length), self.value)


def _new_root() -> TrieNode:
    return TrieNode(
        0,
        0,
        value=EMPTY_ROOT_VALUE,
        digest=root_hash_from_value(EMPTY_ROOT_VALUE),
        label_hash_value=ROOT_LABEL_HASH,
    )


@dataclass(frozen=True, slots=True)
class ValueState:
    """Version ``version`` of a label: ``value``, published at ``epoch``."""

    version: int
    epoch: int
    value: bytes


@dataclass(frozen=True, slots=True)
class PublishedEpoch:
    """The directory's latest epoch and its root hash (``changed``: how many labels the
    publication changed; 0 when nothing was published)."""

    epoch: int
    root_hash: bytes
    changed: int


class KtStore(Protocol):
    """Where a :class:`Directory` keeps its state. Reads may be served from anywhere;
    :meth:`commit_epoch` must apply everything or nothing."""

    def get_node(self, key: int) -> TrieNode | None:
        """The node with store key ``key`` (see :func:`node_key`), or None. The caller never
        mutates what this returns."""
        ...

    def latest_epoch(self) -> int:
        """The last committed epoch (0 when nothing was published)."""
        ...

    def epoch_root(self, epoch: int) -> bytes | None:
        """The root hash committed for ``epoch`` (epochs 1..latest), else None."""
        ...

    def value_states(self, akd_label: bytes) -> Sequence[ValueState]:
        """Every published version of ``akd_label``, oldest first (empty if none)."""
        ...

    def commit_epoch(
        self,
        epoch: int,
        root_hash: bytes,
        nodes: Sequence[TrieNode],
        states: Sequence[tuple[bytes, ValueState]],
    ) -> None:
        """Atomically: store ``nodes`` (new or replacing the same keys), append ``states``
        to their labels, and record ``root_hash`` as epoch ``epoch`` (latest + 1)."""
        ...


class InMemoryKtStore:
    """A :class:`KtStore` in dictionaries (nothing survives the process)."""

    def __init__(self) -> None:
        self._nodes: dict[int, TrieNode] = {}
        self._states: dict[bytes, list[ValueState]] = {}
        self._roots: list[bytes] = []

    def get_node(self, key: int) -> TrieNode | None:
        return self._nodes.get(key)

    def latest_epoch(self) -> int:
        return len(self._roots)

    def epoch_root(self, epoch: int) -> bytes | None:
        if 1 <= epoch <= len(self._roots):
            return self._roots[epoch - 1]
        return None

    def value_states(self, akd_label: bytes) -> Sequence[ValueState]:
        return tuple(self._states.get(akd_label, ()))

    def commit_epoch(
        self,
        epoch: int,
        root_hash: bytes,
        nodes: Sequence[TrieNode],
        states: Sequence[tuple[bytes, ValueState]],
    ) -> None:
        if epoch != len(self._roots) + 1:
            raise UsageError("epochs are committed one after the other")
        for node in nodes:
            self._nodes[node.key] = node
        for akd_label, state in states:
            self._states.setdefault(akd_label, []).append(state)
        self._roots.append(root_hash)

    def node_count(self) -> int:
        return len(self._nodes)


class Directory:
    """An AKD ``whatsapp_v1`` directory: publish epochs, serve proofs.

    ``vrf_key`` is the directory's own VRF key (never a signing key used for anything else);
    the commitment key is ``BLAKE3(VRF private key)``, as AKD derives it, so every commitment
    nonce is deterministic.
    """

    def __init__(self, vrf_key: VrfPrivateKey, store: KtStore | None = None) -> None:
        self._vrf = vrf_key
        self._commitment_key = blake3_hash(vrf_key.seed_bytes())
        self._store: KtStore = store if store is not None else InMemoryKtStore()

    # ------------------------------------------------------------ state

    @property
    def vrf_public_key(self) -> VrfPublicKey:
        return self._vrf.public_key

    @property
    def store(self) -> KtStore:
        return self._store

    @property
    def epoch(self) -> int:
        return self._store.latest_epoch()

    def root_hash(self, epoch: int | None = None) -> bytes:
        """The root hash of ``epoch`` (default: the latest; epoch 0 is the empty trie)."""
        epoch = self.epoch if epoch is None else epoch
        if epoch == 0:
            return root_hash_from_value(EMPTY_ROOT_VALUE)
        root = self._store.epoch_root(epoch)
        if root is None:
            raise UsageError(f"no epoch {epoch} in this directory")
        return root

    def latest_state(self, akd_label: bytes) -> ValueState | None:
        states = self._store.value_states(akd_label)
        return states[-1] if states else None

    def _node(self, key: int) -> TrieNode:
        node = self._store.get_node(key)
        if node is None:
            if key == ROOT_KEY:
                return _new_root()
            raise InternalError("the trie references a node the store does not hold")
        return node

    def _node_label(self, akd_label: bytes, fresh: bool, version: int) -> int:
        return int.from_bytes(self._vrf.hash(vrf_input(akd_label, fresh, version))[:32], "big")

    # ------------------------------------------------------------ publish

    def publish(
        self, updates: Mapping[bytes, bytes] | Iterable[tuple[bytes, bytes]]
    ) -> PublishedEpoch:
        """Publish one epoch from a batch of (label -> value) updates.

        A label whose latest value equals the new one is skipped (as AKD does); if nothing is
        left, no epoch is published and the latest epoch is returned with ``changed == 0``.

        Raises:
            UsageError: a label repeats in the batch, or a label or value is not non-empty
                bytes. Nothing is published.
        """
        pairs = list(updates.items()) if isinstance(updates, Mapping) else list(updates)
        seen: set[bytes] = set()
        for akd_label, value in pairs:
            if not isinstance(akd_label, bytes) or not isinstance(value, bytes):
                raise UsageError("labels and values are bytes")
            if not akd_label or not value:
                raise UsageError("labels and values must not be empty")
            if akd_label in seen:
                raise UsageError("a label appears twice in one publication")
            seen.add(akd_label)

        epoch = self.epoch + 1
        leaves: list[tuple[int, bytes]] = []
        states: list[tuple[bytes, ValueState]] = []
        for akd_label, value in pairs:
            latest = self.latest_state(akd_label)
            if latest is not None and latest.value == value:
                continue
            version = 1 if latest is None else latest.version + 1
            fresh = self._node_label(akd_label, True, version)
            nonce = commitment_nonce(self._commitment_key, fresh, version, value)
            leaves.append((fresh, commitment(value, nonce)))
            if version > 1:
                leaves.append((self._node_label(akd_label, False, version - 1), STALE_VALUE))
            states.append((akd_label, ValueState(version, epoch, value)))
        if not states:
            return PublishedEpoch(self.epoch, self.root_hash(), 0)

        changed = _TrieUpdate(self._store, epoch)
        for val, leaf_commitment in sorted(leaves):
            changed.insert(val, leaf_commitment)
        nodes, root_hash = changed.rehash()
        self._store.commit_epoch(epoch, root_hash, nodes, states)
        return PublishedEpoch(epoch, root_hash, len(states))

    # ------------------------------------------------------------ proofs

    def _walk(self, val: int) -> tuple[TrieNode, list[SiblingProof]]:
        """The deepest node whose label is a prefix of ``val`` and the path down to it."""
        node = self._node(ROOT_KEY)
        levels: list[SiblingProof] = []
        while node.length < 256:
            bit = (val >> (255 - node.length)) & 1
            child_key = node.right if bit else node.left
            if child_key is None:
                break
            child = self._node(child_key)
            shift = 256 - child.length
            if (val >> shift) != (child.val >> shift):
                break
            other_key = node.left if bit else node.right
            sibling = _EMPTY_ELEMENT if other_key is None else self._node(other_key).element()
            levels.append(SiblingProof(NodeLabel(node.val, node.length), sibling, bit))
            node = child
        return node, levels

    def _membership(self, val: int) -> MembershipProof:
        node, levels = self._walk(val)
        if node.length != 256 or node.val != val:
            raise InternalError("asked to prove a leaf the trie does not hold")
        return MembershipProof(NodeLabel(val, 256), node.value, tuple(levels))

    def _non_membership(self, val: int) -> NonMembershipProof:
        node, levels = self._walk(val)
        if node.length == 256:
            raise InternalError("asked to prove absent a leaf the trie holds")
        children = tuple(
            _EMPTY_ELEMENT if key is None else self._node(key).element()
            for key in (node.left, node.right)
        )
        label = NodeLabel(node.val, node.length)
        return NonMembershipProof(
            NodeLabel(val, 256),
            label,
            (children[0], children[1]),
            MembershipProof(label, node.value, tuple(levels)),
        )

    def _prove(self, akd_label: bytes, fresh: bool, version: int) -> tuple[bytes, int]:
        proof = self._vrf.prove(vrf_input(akd_label, fresh, version))
        return proof, int.from_bytes(proof_to_hash(proof)[:32], "big")

    def _states(self, akd_label: bytes) -> Sequence[ValueState]:
        states = self._store.value_states(akd_label)
        if not states:
            raise UsageError("that label has no published version")
        return states

    def lookup(self, akd_label: bytes) -> LookupProof:
        """A lookup proof of the label's latest version against the latest epoch.

        Raises:
            UsageError: the label has no published version.
        """
        state = self._states(akd_label)[-1]
        version = state.version
        existence_vrf, fresh = self._prove(akd_label, True, version)
        marker_vrf, marker = self._prove(akd_label, True, 1 << (version.bit_length() - 1))
        freshness_vrf, stale = self._prove(akd_label, False, version)
        return LookupProof(
            epoch=state.epoch,
            value=state.value,
            version=version,
            existence_vrf_proof=existence_vrf,
            existence_proof=self._membership(fresh),
            marker_vrf_proof=marker_vrf,
            marker_proof=self._membership(marker),
            freshness_vrf_proof=freshness_vrf,
            freshness_proof=self._non_membership(stale),
            commitment_nonce=commitment_nonce(self._commitment_key, fresh, version, state.value),
        )

    def _update_proof(self, akd_label: bytes, state: ValueState) -> UpdateProof:
        existence_vrf, fresh = self._prove(akd_label, True, state.version)
        previous_vrf: bytes | None = None
        previous: MembershipProof | None = None
        if state.version > 1:
            previous_vrf, stale = self._prove(akd_label, False, state.version - 1)
            previous = self._membership(stale)
        return UpdateProof(
            epoch=state.epoch,
            value=state.value,
            version=state.version,
            existence_vrf_proof=existence_vrf,
            existence_proof=self._membership(fresh),
            previous_version_vrf_proof=previous_vrf,
            previous_version_proof=previous,
            commitment_nonce=commitment_nonce(
                self._commitment_key, fresh, state.version, state.value
            ),
        )

    def key_history(self, akd_label: bytes, params: HistoryParams) -> HistoryProof:
        """A key-history proof of the label against the latest epoch.

        Raises:
            UsageError: the label has no published version.
        """
        states = list(reversed(self._states(akd_label)))
        if not params.is_complete:
            states = states[: params.count]
        start, end = states[-1].version, states[0].version
        past, future = marker_versions(start, end, self.epoch)
        past_proofs: list[tuple[bytes, MembershipProof]] = []
        for version in past:
            vrf_proof, val = self._prove(akd_label, True, version)
            past_proofs.append((vrf_proof, self._membership(val)))
        future_proofs: list[tuple[bytes, NonMembershipProof]] = []
        for version in future:
            vrf_proof, val = self._prove(akd_label, True, version)
            future_proofs.append((vrf_proof, self._non_membership(val)))
        return HistoryProof(
            update_proofs=tuple(self._update_proof(akd_label, s) for s in states),
            past_marker_vrf_proofs=tuple(p for p, _ in past_proofs),
            existence_of_past_marker_proofs=tuple(m for _, m in past_proofs),
            future_marker_vrf_proofs=tuple(p for p, _ in future_proofs),
            non_existence_of_future_marker_proofs=tuple(n for _, n in future_proofs),
        )

    def append_only_proof(self, start_epoch: int, end_epoch: int) -> AppendOnlyProof:
        """Proofs that each epoch in ``(start_epoch, end_epoch]`` only added leaves.

        Raises:
            UsageError: unless ``0 <= start_epoch < end_epoch <= latest epoch``.
        """
        if not 0 <= start_epoch < end_epoch <= self.epoch:
            raise UsageError("append-only proofs need 0 <= start < end <= latest epoch")
        root = self._node(ROOT_KEY)
        steps: list[SingleAppendOnlyProof] = []
        for epoch in range(start_epoch, end_epoch):
            unchanged: list[AzksElement] = []
            inserted: list[AzksElement] = []
            self._collect(root, epoch, epoch + 1, unchanged, inserted)
            steps.append(SingleAppendOnlyProof(tuple(inserted), tuple(unchanged)))
        return AppendOnlyProof(tuple(steps), tuple(range(start_epoch, end_epoch)))

    def _collect(
        self,
        node: TrieNode,
        start: int,
        end: int,
        unchanged: list[AzksElement],
        inserted: list[AzksElement],
    ) -> None:
        stack = [node]
        while stack:
            node = stack.pop()
            if node.last_epoch <= start:
                if node.length != 0:
                    unchanged.append(node.element())
                continue
            if node.min_epoch > end:
                continue
            if node.length == 256:
                inserted.append(AzksElement(NodeLabel(node.val, 256), node.commitment))
                continue
            # right first on the stack, so the left subtree comes out first
            for key in (node.right, node.left):
                if key is not None:
                    stack.append(self._node(key))


class _TrieUpdate:
    """The nodes one publication changes: copies of existing nodes and new ones."""

    __slots__ = ("_changed", "_epoch", "_store")

    def __init__(self, store: KtStore, epoch: int) -> None:
        self._store = store
        self._epoch = epoch
        self._changed: dict[int, TrieNode] = {}

    def _get(self, key: int) -> TrieNode:
        node = self._changed.get(key)
        if node is None:
            node = self._store.get_node(key)
            if node is None:
                if key != ROOT_KEY:
                    raise InternalError("the trie references a node the store does not hold")
                node = _new_root()
        return node

    def _mutable(self, key: int) -> TrieNode:
        node = self._changed.get(key)
        if node is None:
            node = self._get(key).copy()
            self._changed[key] = node
        return node

    def _leaf(self, val: int, leaf_commitment: bytes) -> TrieNode:
        value = leaf_hash(leaf_commitment, self._epoch)
        lab = label_hash(val, 256)
        leaf = TrieNode(
            val,
            256,
            commitment=leaf_commitment,
            value=value,
            digest=blake3_hash(value + lab),
            label_hash_value=lab,
            last_epoch=self._epoch,
            min_epoch=self._epoch,
        )
        self._changed[node_key(val, 256)] = leaf
        return leaf

    def insert(self, val: int, leaf_commitment: bytes) -> None:
        epoch = self._epoch
        node = self._mutable(ROOT_KEY)
        while True:
            node.last_epoch = epoch
            bit = (val >> (255 - node.length)) & 1
            child_key = node.right if bit else node.left
            if child_key is None:
                leaf_key = self._leaf(val, leaf_commitment).key
                if bit:
                    node.right = leaf_key
                else:
                    node.left = leaf_key
                return
            child = self._get(child_key)
            shift = 256 - child.length
            if (val >> shift) == (child.val >> shift):
                if child.length == 256:
                    raise InternalError("two leaves with one label (a VRF collision)")
                node = self._mutable(child_key)
                continue
            common = child.length - ((val ^ child.val) >> shift).bit_length()
            cut = 256 - common
            middle = TrieNode((val >> cut) << cut, common, last_epoch=epoch)
            leaf_key = self._leaf(val, leaf_commitment).key
            if (val >> (255 - common)) & 1:
                middle.left, middle.right = child_key, leaf_key
            else:
                middle.left, middle.right = leaf_key, child_key
            self._changed[middle.key] = middle
            if bit:
                node.right = middle.key
            else:
                node.left = middle.key
            return

    def rehash(self) -> tuple[list[TrieNode], bytes]:
        """Recompute the changed interior nodes bottom-up; return them and the root hash."""
        interior = sorted(
            (n for n in self._changed.values() if n.length < 256),
            key=lambda n: n.length,
            reverse=True,
        )
        for node in interior:
            digests: list[bytes] = []
            epochs: list[int] = []
            for key in (node.left, node.right):
                if key is None:
                    digests.append(EMPTY_NODE_DIGEST)
                else:
                    child = self._get(key)
                    digests.append(child.digest)
                    epochs.append(child.min_epoch)
            if epochs:
                node.value = blake3_hash(digests[0] + digests[1])
                node.min_epoch = min(epochs)
            else:  # pragma: no cover - a changed node always has a child
                node.value = EMPTY_ROOT_VALUE
            node.digest = blake3_hash(node.value + node.label_hash)
        root = self._changed[ROOT_KEY]
        return list(self._changed.values()), root.digest
