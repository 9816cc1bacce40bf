"""Properties of the incremental trie on arbitrary 256-bit labels (no VRF in the way):
the root equals a from-scratch rebuild, every leaf has a verifying membership proof, absent
labels have verifying non-membership proofs, and every epoch step is provably append-only."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from securemsg.crypto.ecvrf import VrfPrivateKey
from securemsg.kt.config import leaf_hash
from securemsg.kt.directory import Directory, InMemoryKtStore, _TrieUpdate
from securemsg.kt.types import AzksElement, NodeLabel
from securemsg.kt.verify import (
    _verify_membership,
    _verify_non_membership,
    audit_verify,
    root_hash_of_elements,
)

_BASE = int.from_bytes(bytes(range(32)), "big")
_labels = st.one_of(
    st.integers(0, 2**256 - 1),
    st.integers(0, 2**12).map(lambda x: _BASE ^ x),  # long shared prefixes
    st.integers(0, 255).map(lambda x: x << 248),  # many trailing zero bits
    st.sampled_from([0, 2**256 - 1, 1 << 255, (1 << 255) - 1]),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    batches=st.lists(st.sets(_labels, min_size=1, max_size=12), min_size=1, max_size=5),
    absent=st.lists(_labels, max_size=6),
)
def test_trie_properties(batches: list[set[int]], absent: list[int]) -> None:
    store = InMemoryKtStore()
    seen: dict[int, bytes] = {}
    roots = [root_hash_of_elements([])]
    for batch in batches:
        fresh = sorted(batch - seen.keys())
        if not fresh:
            continue
        update = _TrieUpdate(store, len(roots))
        for val in fresh:
            commitment = val.to_bytes(32, "big")[::-1]
            update.insert(val, commitment)
            seen[val] = leaf_hash(commitment, len(roots))
        nodes, root = update.rehash()
        store.commit_epoch(len(roots), root, nodes, [])
        roots.append(root)
        leaves = [AzksElement(NodeLabel(v, 256), value) for v, value in seen.items()]
        assert root == root_hash_of_elements(leaves)

    directory = Directory(VrfPrivateKey(bytes(32)), store)
    root = roots[-1]
    for val, value in seen.items():
        proof = directory._membership(val)
        assert proof.hash_val == value
        _verify_membership(root, proof)
    for val in absent:
        if val not in seen:
            _verify_non_membership(root, directory._non_membership(val))
    if len(roots) > 1:
        audit_verify(roots, directory.append_only_proof(0, len(roots) - 1))
