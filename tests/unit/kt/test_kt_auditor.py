"""The auditor core: append-only proofs between consecutive epochs."""

from __future__ import annotations

import dataclasses
import random

import pytest

from securemsg.crypto.ecvrf import VrfPrivateKey
from securemsg.errors import KeyTransparencyError, KeyTransparencyProofError
from securemsg.kt.directory import Directory
from securemsg.kt.types import AzksElement, NodeLabel, SingleAppendOnlyProof
from securemsg.kt.verify import audit_verify, verify_append_only
from securemsg.relay_protocol import akd


@pytest.fixture(scope="module")
def churned() -> Directory:
    """100 epochs of random registrations and key changes over 60 accounts."""
    rng = random.Random(2024)
    directory = Directory(VrfPrivateKey(bytes([9]) * 32))
    accounts = [f"aci-{i}".encode() for i in range(60)]
    for _ in range(100):
        batch = {a: rng.randbytes(33) for a in rng.sample(accounts, rng.randint(1, 8))}
        directory.publish(batch)
    assert directory.epoch == 100
    return directory


def test_the_auditor_verifies_100_epochs_of_random_churn(churned: Directory) -> None:
    for epoch in range(0, 100):
        step = churned.append_only_proof(epoch, epoch + 1)
        decoded = akd.decode_append_only_proof(akd.encode_append_only_proof(step))
        audit_verify([churned.root_hash(epoch), churned.root_hash(epoch + 1)], decoded)


def test_one_proof_over_a_range_verifies(churned: Directory) -> None:
    proof = churned.append_only_proof(40, 60)
    audit_verify([churned.root_hash(e) for e in range(40, 61)], proof)


def _step(directory: Directory, epoch: int) -> SingleAppendOnlyProof:
    return directory.append_only_proof(epoch - 1, epoch).proofs[0]


def _flip(value: bytes) -> bytes:
    return bytes([value[0] ^ 1]) + value[1:]


def test_tampered_append_only_proofs_are_refused(churned: Directory) -> None:
    epoch = 70
    start, end = churned.root_hash(epoch - 1), churned.root_hash(epoch)
    step = _step(churned, epoch)
    verify_append_only(step, start, end, epoch)
    assert step.inserted and step.unchanged_nodes
    first = step.inserted[0]
    tampered = [
        dataclasses.replace(step, inserted=step.inserted[1:]),  # a leaf hidden
        dataclasses.replace(
            step, inserted=(AzksElement(first.label, _flip(first.value)), *step.inserted[1:])
        ),
        dataclasses.replace(
            step,
            unchanged_nodes=(
                AzksElement(step.unchanged_nodes[0].label, _flip(step.unchanged_nodes[0].value)),
                *step.unchanged_nodes[1:],
            ),
        ),
        dataclasses.replace(step, unchanged_nodes=step.unchanged_nodes[1:]),  # a subtree removed
        dataclasses.replace(step, inserted=(*step.inserted, step.inserted[0])),  # duplicated
        dataclasses.replace(
            step,
            inserted=(
                AzksElement(NodeLabel(first.label.val ^ 1, 256), first.value),
                *step.inserted[1:],
            ),
        ),
    ]
    for bad in tampered:
        with pytest.raises(KeyTransparencyProofError):
            verify_append_only(bad, start, end, epoch)
    with pytest.raises(KeyTransparencyProofError):
        verify_append_only(step, start, end, epoch + 1)  # leaves claimed for another epoch
    with pytest.raises(KeyTransparencyProofError):
        verify_append_only(step, churned.root_hash(epoch - 2), end, epoch)


def test_a_rewritten_history_fails_the_audit(churned: Directory) -> None:
    # A directory that changed an old value cannot prove it only appended.
    other = Directory(VrfPrivateKey(bytes([9]) * 32))
    rng = random.Random(1)
    for _ in range(3):
        other.publish({rng.randbytes(4): rng.randbytes(33) for _ in range(3)})
    proof = other.append_only_proof(2, 3)
    with pytest.raises(KeyTransparencyProofError):
        audit_verify([churned.root_hash(2), churned.root_hash(3)], proof)


def test_tampered_audit_bytes_are_refused(churned: Directory) -> None:
    data = akd.encode_append_only_proof(churned.append_only_proof(10, 11))
    roots = [churned.root_hash(10), churned.root_hash(11)]
    rng = random.Random(5)
    for position in rng.sample(range(len(data) * 8), 300):
        mutated = bytearray(data)
        mutated[position // 8] ^= 1 << (position % 8)
        with pytest.raises(KeyTransparencyError):
            audit_verify(roots, akd.decode_append_only_proof(bytes(mutated)))


def test_wrong_counts_are_refused(churned: Directory) -> None:
    proof = churned.append_only_proof(10, 12)
    with pytest.raises(KeyTransparencyProofError):
        audit_verify([churned.root_hash(10), churned.root_hash(11)], proof)
    skipped = dataclasses.replace(proof, epochs=(10, 12))
    with pytest.raises(KeyTransparencyProofError):
        audit_verify([churned.root_hash(e) for e in (10, 11, 12)], skipped)
