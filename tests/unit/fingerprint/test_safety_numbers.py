"""Safety numbers: the published vector, comparison failures, hostile scanned bytes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securemsg.errors import DecodeError, FingerprintError, UsageError
from securemsg.protocol.fingerprint import Fingerprint, ScannableFingerprint
from securemsg.protocol.identity_and_prekeys import IdentityKey

A = IdentityKey.from_bytes(
    bytes.fromhex("0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868")
)
B = IdentityKey.from_bytes(
    bytes.fromhex("05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b")
)
AID, BID = b"+14152222222", b"+14153333333"
ALICE_V1 = (
    "080112220a201e301a0353dce3dbe7684cb8336e85136cdc0ee96219494ada305d62a7bd61df"
    "1a220a20d62cbf73a11592015b6b9f1682ac306fea3aaf3885b84d12bca631e9d4fb3a4d"
)


def fp(
    version: int, local: tuple[bytes, IdentityKey], remote: tuple[bytes, IdentityKey]
) -> Fingerprint:
    return Fingerprint.create(
        version=version,
        iterations=5200,
        local_id=local[0],
        local_key=local[1],
        remote_id=remote[0],
        remote_key=remote[1],
    )


def test_published_vector() -> None:
    alice, bob = fp(1, (AID, A), (BID, B)), fp(1, (BID, B), (AID, A))
    assert (
        alice.display_string()
        == bob.display_string()
        == ("300354477692869396892869876765458257569162576843440918079131")
    )
    assert alice.scannable.to_bytes().hex() == ALICE_V1
    assert ScannableFingerprint.from_bytes(alice.scannable.to_bytes()) == alice.scannable


def test_compare_accepts_the_other_side_and_refuses_others() -> None:
    alice, bob = fp(2, (AID, A), (BID, B)), fp(2, (BID, B), (AID, A))
    alice.scannable.compare(bob.scannable.to_bytes())
    with pytest.raises(FingerprintError) as info:
        alice.scannable.compare(alice.scannable.to_bytes())  # our own code is not theirs
    assert info.value.reason == "mismatch"
    with pytest.raises(FingerprintError) as info:
        alice.scannable.compare(fp(1, (BID, B), (AID, A)).scannable.to_bytes())
    assert info.value.reason == "version"
    mallory = fp(2, (BID, A), (AID, A))
    with pytest.raises(FingerprintError):
        alice.scannable.compare(mallory.scannable.to_bytes())


@pytest.mark.parametrize("iterations", [0, 1, 1_000_001])
def test_iteration_bounds(iterations: int) -> None:
    with pytest.raises(UsageError):
        Fingerprint.create(
            version=1, iterations=iterations, local_id=AID, local_key=A, remote_id=BID, remote_key=B
        )


@settings(max_examples=150)
@given(st.binary(max_size=120))
def test_scanned_bytes_decode_or_raise_typed_errors(data: bytes) -> None:
    alice = fp(2, (AID, A), (BID, B))
    with contextlib.suppress(DecodeError):
        ScannableFingerprint.from_bytes(data)
    with contextlib.suppress(DecodeError, FingerprintError):
        alice.scannable.compare(data)
