"""Safety numbers: securemsg's displayable and scannable fingerprints equal libsignal's.

Not in the kit (which compares random pairs): a published vector and ``compare`` are beyond it.

The published test vector (libsignal ``fingerprint.rs`` / Java ``testVectorsVersion1``) for
versions 1 and 2, and libsignal's ``compare`` on our scannable bytes (and ours on its).
"""

from __future__ import annotations

import pytest
from peer_client import LibsignalPeer, PeerCallError, b64, unb64

from securemsg.errors import FingerprintError
from securemsg.protocol.fingerprint import Fingerprint, ScannableFingerprint
from securemsg.protocol.identity_and_prekeys import IdentityKey

ALICE = bytes.fromhex("0506863bc66d02b40d27b8d49ca7c09e9239236f9d7d25d6fcca5ce13c7064d868")
BOB = bytes.fromhex("05f781b6fb32fed9ba1cf2de978d4d5da28dc34046ae814402b5c0dbd96fda907b")
VECTOR_DIGITS = "300354477692869396892869876765458257569162576843440918079131"


def _ours(
    version: int, iterations: int, lid: bytes, lkey: bytes, rid: bytes, rkey: bytes
) -> Fingerprint:
    return Fingerprint.create(
        version=version,
        iterations=iterations,
        local_id=lid,
        local_key=IdentityKey.from_bytes(lkey),
        remote_id=rid,
        remote_key=IdentityKey.from_bytes(rkey),
    )


def _theirs(
    peer: LibsignalPeer, items: list[tuple[int, int, bytes, bytes, bytes, bytes]]
) -> list[tuple[str, bytes]]:
    result = peer.call(
        "fingerprints",
        items=[
            {
                "version": v,
                "iterations": n,
                "local_id": b64(lid),
                "local_key": b64(lk),
                "remote_id": b64(rid),
                "remote_key": b64(rk),
            }
            for v, n, lid, lk, rid, rk in items
        ],
    )
    out = []
    for item in peer.items(result):
        assert not isinstance(item, PeerCallError), item
        out.append((item["displayable"], unb64(item["scannable"])))
    return out


@pytest.mark.parametrize("version", [1, 2])
def test_published_vector_matches_libsignal(libsignal_peer: LibsignalPeer, version: int) -> None:
    ours = _ours(version, 5200, b"+14152222222", ALICE, b"+14153333333", BOB)
    ((digits, scannable),) = _theirs(
        libsignal_peer, [(version, 5200, b"+14152222222", ALICE, b"+14153333333", BOB)]
    )
    assert ours.display_string() == digits == VECTOR_DIGITS
    assert ours.scannable.to_bytes() == scannable


def test_scannable_compare_both_ways(libsignal_peer: LibsignalPeer) -> None:
    alice = _ours(2, 5200, b"+14152222222", ALICE, b"+14153333333", BOB)
    bob_side = _ours(2, 5200, b"+14153333333", BOB, b"+14152222222", ALICE)
    assert libsignal_peer.call(
        "fingerprint_compare",
        ours=b64(alice.scannable.to_bytes()),
        theirs=b64(bob_side.scannable.to_bytes()),
    )["equal"]
    ((_, theirs_bob),) = _theirs(
        libsignal_peer, [(2, 5200, b"+14153333333", BOB, b"+14152222222", ALICE)]
    )
    alice.scannable.compare(theirs_bob)
    # a version-1 code scanned against our version-2 one: both refuse
    ((_, v1_bob),) = _theirs(
        libsignal_peer, [(1, 5200, b"+14153333333", BOB, b"+14152222222", ALICE)]
    )
    with pytest.raises(FingerprintError) as info:
        alice.scannable.compare(v1_bob)
    assert info.value.reason == "version"
    with pytest.raises(PeerCallError):
        libsignal_peer.call(
            "fingerprint_compare", ours=b64(alice.scannable.to_bytes()), theirs=b64(v1_bob)
        )
    assert ScannableFingerprint.from_bytes(v1_bob).version == 1
