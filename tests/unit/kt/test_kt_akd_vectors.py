"""AKD's published whatsapp_v1 vectors: verification, bit flips, and byte-identical regeneration."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from kt_vectors import (
    AKD_TEST_VRF_SEED,
    VECTOR_FILE,
    VECTOR_SHA256,
    AkdVectors,
    generator_updates,
    load_vectors,
)

from securemsg.crypto.ecvrf import VrfPrivateKey, VrfPublicKey, proof_to_hash
from securemsg.crypto.kt_primitives import blake3_hash
from securemsg.errors import KeyTransparencyError, KeyTransparencyProofError
from securemsg.kt.config import commitment_nonce, vrf_input
from securemsg.kt.directory import Directory
from securemsg.kt.types import HistoryParams, VerifyResult
from securemsg.kt.verify import audit_verify, verify_history, verify_lookup
from securemsg.relay_protocol import akd


@pytest.fixture(scope="module")
def vectors() -> AkdVectors:
    return load_vectors()


@pytest.fixture(scope="module")
def replayed() -> Directory:
    directory = Directory(VrfPrivateKey(AKD_TEST_VRF_SEED))
    for epoch in range(1, 50):
        published = directory.publish(generator_updates(epoch))
        assert published.epoch == epoch
    return directory


EXPECTED = [
    VerifyResult(48, 3, b"16,48"),
    VerifyResult(32, 2, b"16,32"),
    VerifyResult(16, 1, b"16,16"),
]


def test_the_vector_file_is_the_published_one() -> None:
    assert hashlib.sha256(VECTOR_FILE.read_bytes()).hexdigest() == VECTOR_SHA256


def test_lookup_proof_verifies(vectors: AkdVectors) -> None:
    proof = akd.decode_lookup_proof(vectors.lookup_proof)
    result = verify_lookup(vectors.public_key, vectors.root_hash, 49, vectors.label, proof)
    assert result == EXPECTED[0]


def test_history_proofs_verify(vectors: AkdVectors) -> None:
    recent = akd.decode_history_proof(vectors.history_most_recent_1)
    results = verify_history(
        vectors.public_key,
        vectors.root_hash,
        49,
        vectors.label,
        recent,
        HistoryParams.most_recent(1),
    )
    assert results == EXPECTED[:1]
    complete = akd.decode_history_proof(vectors.history_complete)
    results = verify_history(
        vectors.public_key, vectors.root_hash, 49, vectors.label, complete, HistoryParams.complete()
    )
    assert results == EXPECTED


def test_wrong_root_label_epoch_or_params_are_refused(vectors: AkdVectors) -> None:
    lookup = akd.decode_lookup_proof(vectors.lookup_proof)
    pk, root = vectors.public_key, vectors.root_hash
    bad_root = bytes([root[0] ^ 1]) + root[1:]
    with pytest.raises(KeyTransparencyProofError):
        verify_lookup(pk, bad_root, 49, b"16", lookup)
    with pytest.raises(KeyTransparencyProofError):
        verify_lookup(pk, root, 49, b"8", lookup)
    with pytest.raises(KeyTransparencyProofError):
        verify_lookup(pk, root, 2, b"16", lookup)  # the version is newer than the epoch
    other_key = bytes(VrfPrivateKey(bytes(32)).public_key)
    with pytest.raises(KeyTransparencyProofError):
        verify_lookup(other_key, root, 49, b"16", lookup)
    recent = akd.decode_history_proof(vectors.history_most_recent_1)
    complete = akd.decode_history_proof(vectors.history_complete)
    with pytest.raises(KeyTransparencyProofError):
        verify_history(pk, root, 49, b"16", recent, HistoryParams.complete())
    with pytest.raises(KeyTransparencyProofError):
        verify_history(pk, root, 49, b"16", complete, HistoryParams.most_recent(2))
    with pytest.raises(KeyTransparencyProofError):
        verify_history(pk, root, 49, b"16", recent, HistoryParams.most_recent(2))
    with pytest.raises(KeyTransparencyProofError):
        verify_history(pk, root, 49, b"1", complete, HistoryParams.complete())


def _flip_all_bits(data: bytes, check: Callable[[bytes], object]) -> list[int]:
    """Bit positions whose flip was NOT refused."""
    accepted = []
    for position in range(len(data) * 8):
        mutated = bytearray(data)
        mutated[position // 8] ^= 1 << (position % 8)
        try:
            check(bytes(mutated))
        except KeyTransparencyError:
            continue
        accepted.append(position)
    return accepted


def test_every_single_bit_flip_of_the_lookup_proof_is_refused(vectors: AkdVectors) -> None:
    key = VrfPublicKey(vectors.public_key)

    def check(data: bytes) -> object:
        return verify_lookup(key, vectors.root_hash, 49, b"16", akd.decode_lookup_proof(data))

    assert _flip_all_bits(vectors.lookup_proof, check) == []


@pytest.mark.parametrize("which", ["most_recent_1", "complete"])
def test_every_single_bit_flip_of_a_history_proof_is_refused(
    vectors: AkdVectors, which: str
) -> None:
    key = VrfPublicKey(vectors.public_key)
    if which == "complete":
        data, params = vectors.history_complete, HistoryParams.complete()
    else:
        data, params = vectors.history_most_recent_1, HistoryParams.most_recent(1)

    def check(mutated: bytes) -> object:
        proof = akd.decode_history_proof(mutated)
        return verify_history(key, vectors.root_hash, 49, b"16", proof, params)

    assert _flip_all_bits(data, check) == []


def test_replaying_the_generator_schedule_reproduces_the_root(
    replayed: Directory, vectors: AkdVectors
) -> None:
    assert bytes(replayed.vrf_public_key) == vectors.public_key
    assert replayed.epoch == 49
    assert replayed.root_hash() == vectors.root_hash
    assert (
        replayed.root_hash().hex()
        == "51f48b4d0e0b6200fcf75a14f959cd5430e3ed27a31144ca545b9c76a23481f0"
    )


def test_regenerated_proofs_are_byte_identical(replayed: Directory, vectors: AkdVectors) -> None:
    lookup = replayed.lookup(b"16")
    published = akd.decode_lookup_proof(vectors.lookup_proof)
    assert lookup.existence_vrf_proof == published.existence_vrf_proof
    assert lookup.commitment_nonce == published.commitment_nonce
    assert akd.encode_lookup_proof(lookup) == vectors.lookup_proof
    recent = replayed.key_history(b"16", HistoryParams.most_recent(1))
    assert akd.encode_history_proof(recent) == vectors.history_most_recent_1
    complete = replayed.key_history(b"16", HistoryParams.complete())
    assert akd.encode_history_proof(complete) == vectors.history_complete


def test_vrf_proof_and_nonce_come_from_the_documented_formulas(vectors: AkdVectors) -> None:
    key = VrfPrivateKey(AKD_TEST_VRF_SEED)
    proof = akd.decode_lookup_proof(vectors.lookup_proof)
    alpha = vrf_input(b"16", True, 3)
    assert key.prove(alpha) == proof.existence_vrf_proof
    label = int.from_bytes(proof_to_hash(proof.existence_vrf_proof)[:32], "big")
    commitment_key = blake3_hash(AKD_TEST_VRF_SEED)  # AKD: BLAKE3 of the VRF private key
    assert commitment_nonce(commitment_key, label, 3, b"16,48") == proof.commitment_nonce


def test_every_replayed_epoch_is_append_only(replayed: Directory) -> None:
    roots = [replayed.root_hash(epoch) for epoch in range(0, 50)]
    audit_verify(roots, replayed.append_only_proof(0, 49))
