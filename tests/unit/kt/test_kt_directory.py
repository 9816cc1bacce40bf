"""The in-memory directory: publication, proofs of random churn, edge shapes, atomicity."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from securemsg.crypto.ecvrf import VrfPrivateKey
from securemsg.errors import KeyTransparencyProofError, UsageError
from securemsg.kt.config import marker_versions
from securemsg.kt.directory import Directory, InMemoryKtStore, TrieNode, ValueState
from securemsg.kt.types import AzksElement, HistoryParams, NodeLabel, VerifyResult
from securemsg.kt.verify import root_hash_of_elements, verify_history, verify_lookup
from securemsg.relay_protocol import akd

VRF_SEED = bytes(range(32))


def _directory(store: InMemoryKtStore | None = None) -> Directory:
    return Directory(VrfPrivateKey(VRF_SEED), store)


def _check_lookup(directory: Directory, label: bytes) -> VerifyResult:
    proof = akd.decode_lookup_proof(akd.encode_lookup_proof(directory.lookup(label)))
    return verify_lookup(
        directory.vrf_public_key, directory.root_hash(), directory.epoch, label, proof
    )


def _check_history(directory: Directory, label: bytes, params: HistoryParams) -> list[VerifyResult]:
    proof = akd.decode_history_proof(akd.encode_history_proof(directory.key_history(label, params)))
    return verify_history(
        directory.vrf_public_key, directory.root_hash(), directory.epoch, label, proof, params
    )


def _reference_root(store: InMemoryKtStore) -> bytes:
    """The root rebuilt from scratch out of every leaf (independent of the incremental trie)."""
    leaves = [
        AzksElement(NodeLabel(node.val, 256), node.value)
        for node in store._nodes.values()
        if node.length == 256
    ]
    return root_hash_of_elements(leaves)


def test_akd_marker_examples() -> None:
    assert marker_versions(65, 65, 128) == ([16, 64], [66, 68, 72, 80, 96, 128])
    assert marker_versions(85, 85, 65537) == ([16, 64, 80, 84], [86, 88, 96, 128, 256, 65536])
    assert marker_versions(1, 5, 33) == ([], [6, 8, 16])
    assert marker_versions(2, 5, 33) == ([], [6, 8, 16])
    assert marker_versions(3, 5, 33) == ([2], [6, 8, 16])
    assert marker_versions(6, 12, 128) == ([4], [13, 14, 16])
    assert marker_versions(6, 12, 256) == ([4], [13, 14, 16, 256])
    assert marker_versions(130, 130, 256) == ([16, 128], [131, 132, 136, 144, 160, 192, 256])


def test_a_single_account_directory_proves_lookup_and_history() -> None:
    # The root then has one child, hashed with the placeholder for the missing one.
    directory = _directory()
    directory.publish({b"alice": b"key-1"})
    assert _check_lookup(directory, b"alice") == VerifyResult(1, 1, b"key-1")
    directory.publish({b"alice": b"key-2"})
    assert _check_lookup(directory, b"alice") == VerifyResult(2, 2, b"key-2")
    assert _check_history(directory, b"alice", HistoryParams.complete()) == [
        VerifyResult(2, 2, b"key-2"),
        VerifyResult(1, 1, b"key-1"),
    ]


def test_random_churn_every_proof_verifies_and_the_root_matches_a_rebuild() -> None:
    rng = random.Random(7)
    store = InMemoryKtStore()
    directory = _directory(store)
    labels = [f"account-{i}".encode() for i in range(40)]
    expected: dict[bytes, list[VerifyResult]] = {}
    for epoch in range(1, 26):
        batch = {label: rng.randbytes(8) for label in rng.sample(labels, rng.randint(1, 12))}
        published = directory.publish(batch)
        assert published.epoch == epoch
        for label, value in batch.items():
            history = expected.setdefault(label, [])
            history.insert(0, VerifyResult(epoch, len(history) + 1, value))
        assert published.root_hash == _reference_root(store)
        for label in rng.sample(sorted(expected), 4):
            assert _check_lookup(directory, label) == expected[label][0]
            assert _check_history(directory, label, HistoryParams.complete()) == expected[label]
            recent = _check_history(directory, label, HistoryParams.most_recent(2))
            assert recent == expected[label][:2]


def test_a_proof_for_one_label_does_not_verify_for_another() -> None:
    directory = _directory()
    directory.publish({b"alice": b"a", b"bob": b"b"})
    proof = directory.lookup(b"alice")
    with pytest.raises(KeyTransparencyProofError):
        verify_lookup(directory.vrf_public_key, directory.root_hash(), 1, b"bob", proof)


def test_republishing_the_same_value_publishes_nothing() -> None:
    directory = _directory()
    first = directory.publish({b"alice": b"a"})
    again = directory.publish({b"alice": b"a"})
    assert (again.epoch, again.root_hash, again.changed) == (1, first.root_hash, 0)


@pytest.mark.parametrize(
    "batch",
    [
        [(b"alice", b"a"), (b"alice", b"b")],
        [(b"", b"a")],
        [(b"alice", b"")],
    ],
)
def test_bad_batches_publish_nothing(batch: Sequence[tuple[bytes, bytes]]) -> None:
    directory = _directory()
    with pytest.raises(UsageError):
        directory.publish(batch)
    assert directory.epoch == 0


def test_lookup_of_an_unknown_label_is_a_usage_error() -> None:
    directory = _directory()
    directory.publish({b"alice": b"a"})
    with pytest.raises(UsageError):
        directory.lookup(b"mallory")


class _FailingStore(InMemoryKtStore):
    fail = False

    def commit_epoch(
        self,
        epoch: int,
        root_hash: bytes,
        nodes: Sequence[TrieNode],
        states: Sequence[tuple[bytes, ValueState]],
    ) -> None:
        if self.fail:
            raise OSError("disk full")
        super().commit_epoch(epoch, root_hash, nodes, states)


def test_a_failed_commit_leaves_the_directory_as_it_was() -> None:
    store = _FailingStore()
    directory = _directory(store)
    directory.publish({b"alice": b"a", b"bob": b"b"})
    before_root = directory.root_hash()
    before_nodes = {key: (n.value, n.left, n.right) for key, n in store._nodes.items()}
    store.fail = True
    with pytest.raises(OSError):
        directory.publish({b"alice": b"a2", b"carol": b"c"})
    assert directory.epoch == 1
    assert directory.root_hash() == before_root
    assert {key: (n.value, n.left, n.right) for key, n in store._nodes.items()} == before_nodes
    assert _check_lookup(directory, b"alice") == VerifyResult(1, 1, b"a")


def test_a_non_membership_proof_that_skips_over_a_present_leaf_is_refused() -> None:
    """Non-membership pointing at an ancestor whose child is a prefix of the present label
    passes every check AKD's verifier makes (children differ from the label, the prefix is
    the children's common prefix, hashes and path verify); the extra check refuses it."""
    from securemsg.kt.config import vrf_input
    from securemsg.kt.verify import _verify_non_membership
    from securemsg.relay_protocol.akd import MembershipProof, NonMembershipProof

    directory = _directory()
    directory.publish({f"user-{i}".encode(): b"v" for i in range(64)})
    beta = VrfPrivateKey(VRF_SEED).hash(vrf_input(b"user-7", True, 1))
    present = NodeLabel.from_bytes32(beta[:32])
    honest = directory._membership(present.val)
    assert len(honest.sibling_proofs) >= 2
    # Claim absence at the grandparent: its children are the parent (a prefix of the label)
    # and the parent's sibling.
    grandparent_level, parent_level = honest.sibling_proofs[-2], honest.sibling_proofs[-1]
    parent_label = parent_level.label
    parent_node = directory._node((parent_label.val << 9) | parent_label.length)
    parent = AzksElement(parent_label, parent_node.value)
    other = grandparent_level.sibling
    children = (parent, other) if grandparent_level.direction == 0 else (other, parent)
    grandparent = directory._node(
        (grandparent_level.label.val << 9) | grandparent_level.label.length
    )
    forged = NonMembershipProof(
        present,
        grandparent_level.label,
        children,
        MembershipProof(grandparent_level.label, grandparent.value, honest.sibling_proofs[:-2]),
    )
    with pytest.raises(KeyTransparencyProofError, match="prefix of the absent label"):
        _verify_non_membership(directory.root_hash(), forged)
