"""Strict decoding of AKD's protobuf proofs: anything but the canonical encoding is refused."""

from __future__ import annotations

import contextlib
import dataclasses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kt_vectors import load_vectors

from securemsg.errors import DecodeError, KeyTransparencyDecodeError
from securemsg.kt.types import AzksElement, NodeLabel, SiblingProof
from securemsg.relay_protocol import akd


def _lookup_bytes() -> bytes:
    return load_vectors().lookup_proof


def test_canonical_bytes_round_trip() -> None:
    vectors = load_vectors()
    for data in (vectors.lookup_proof,):
        assert akd.encode_lookup_proof(akd.decode_lookup_proof(data)) == data
    for data in (vectors.history_most_recent_1, vectors.history_complete):
        assert akd.encode_history_proof(akd.decode_history_proof(data)) == data


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d[:-1],  # truncated
        lambda d: d + b"\x58\x01",  # unknown field 11 appended
        lambda d: d + b"\x08\x30",  # epoch repeated
        lambda d: b"\x08\xb0\x00" + d[2:],  # epoch 48 as a non-minimal varint
        lambda d: b"\xff" * 4 + d,  # garbage tag
        lambda d: b"",  # nothing at all
    ],
)
def test_non_canonical_or_broken_bytes_are_refused(mutate: object) -> None:
    assert callable(mutate)
    with pytest.raises(KeyTransparencyDecodeError) as caught:
        akd.decode_lookup_proof(mutate(_lookup_bytes()))
    assert isinstance(caught.value, DecodeError)
    assert caught.value.reason == "decode"


def test_oversized_input_is_refused_before_parsing() -> None:
    with pytest.raises(KeyTransparencyDecodeError):
        akd.decode_lookup_proof(_lookup_bytes(), max_bytes=100)


def _with_first_level(level: SiblingProof) -> bytes:
    proof = akd.decode_lookup_proof(_lookup_bytes())
    existence = proof.existence_proof
    levels = (level, *existence.sibling_proofs[1:])
    changed = dataclasses.replace(
        proof, existence_proof=dataclasses.replace(existence, sibling_proofs=levels)
    )
    return akd.encode_lookup_proof(changed)


def test_bad_directions_and_labels_are_refused() -> None:
    proof = akd.decode_lookup_proof(_lookup_bytes())
    level = proof.existence_proof.sibling_proofs[0]
    with pytest.raises(KeyTransparencyDecodeError):
        akd.decode_lookup_proof(_with_first_level(level._replace(direction=2)))
    too_long = level._replace(label=NodeLabel(level.label.val, 257))
    with pytest.raises(KeyTransparencyDecodeError):
        akd.decode_lookup_proof(_with_first_level(too_long))
    short_value = level._replace(sibling=AzksElement(level.sibling.label, level.sibling.value[:31]))
    with pytest.raises(KeyTransparencyDecodeError):
        akd.decode_lookup_proof(_with_first_level(short_value))


def test_short_vrf_proofs_and_nonces_are_refused() -> None:
    proof = akd.decode_lookup_proof(_lookup_bytes())
    for changed in (
        dataclasses.replace(proof, marker_vrf_proof=proof.marker_vrf_proof[:79]),
        dataclasses.replace(proof, commitment_nonce=proof.commitment_nonce[:31]),
    ):
        with pytest.raises(KeyTransparencyDecodeError):
            akd.decode_lookup_proof(akd.encode_lookup_proof(changed))


_DECODERS = [
    akd.decode_lookup_proof,
    akd.decode_history_proof,
    akd.decode_append_only_proof,
    akd.decode_single_append_only_proof,
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=600), which=st.integers(0, len(_DECODERS) - 1))
def test_arbitrary_bytes_decode_or_raise_a_decode_error(data: bytes, which: int) -> None:
    with contextlib.suppress(KeyTransparencyDecodeError):
        _DECODERS[which](data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.integers(0, 2000),
    length=st.integers(0, 40),
    insert=st.binary(max_size=8),
    history=st.booleans(),
)
def test_spliced_vectors_decode_or_raise_a_decode_error(
    start: int, length: int, insert: bytes, history: bool
) -> None:
    vectors = load_vectors()
    valid = vectors.history_complete if history else vectors.lookup_proof
    mutated = valid[:start] + insert + valid[start + length :]
    decode = akd.decode_history_proof if history else akd.decode_lookup_proof
    with contextlib.suppress(KeyTransparencyDecodeError):
        decode(mutated)
