"""Signed, hash-chained epoch heads: forks, rollbacks and broken chains are refused."""

from __future__ import annotations

import dataclasses

import pytest

from securemsg.crypto.kt_primitives import Ed25519SigningKey
from securemsg.errors import KeyTransparencyDecodeError, KeyTransparencyHeadError, UsageError
from securemsg.kt.heads import (
    GENESIS_PREVIOUS_HASH,
    EpochHead,
    HeadChainVerifier,
    SignedEpochHead,
    sign_epoch_head,
)

KEY = Ed25519SigningKey(bytes([3]) * 32)


def _chain(count: int, key: Ed25519SigningKey = KEY, salt: bytes = b"") -> list[SignedEpochHead]:
    heads: list[SignedEpochHead] = []
    previous: EpochHead | None = None
    for epoch in range(1, count + 1):
        root = bytes([epoch]) * 31 + (salt or b"\x00")
        head = EpochHead.next_after(previous, epoch, root, 1_000 * epoch)
        heads.append(sign_epoch_head(key, head))
        previous = head
    return heads


def test_a_chain_is_accepted_and_round_trips() -> None:
    heads = _chain(5)
    assert heads[0].head.previous_head_hash == GENESIS_PREVIOUS_HASH
    for signed in heads:
        assert SignedEpochHead.from_bytes(signed.to_bytes()) == signed
    verifier = HeadChainVerifier(KEY.public_key)
    assert verifier.advance(heads[:2]) == heads[1]
    assert verifier.advance(heads[1:]) == heads[4]  # may start with the stored head
    resumed = HeadChainVerifier(KEY.public_key, heads[4])
    resumed.check_known(heads[4])


def test_a_forked_chain_is_refused_and_changes_nothing() -> None:
    honest = _chain(4)
    forked = _chain(4, salt=b"\x01")  # same epochs, other roots
    verifier = HeadChainVerifier(KEY.public_key, honest[1])
    with pytest.raises(KeyTransparencyHeadError) as caught:
        verifier.advance([forked[2], forked[3]])  # does not chain to the stored head
    assert caught.value.reason == "fork"
    with pytest.raises(KeyTransparencyHeadError) as caught:
        verifier.check_known(forked[1])
    assert caught.value.reason == "fork"
    with pytest.raises(KeyTransparencyHeadError) as caught:
        verifier.advance([forked[1], honest[2]])
    assert caught.value.reason == "fork"
    assert verifier.latest == honest[1]


def test_a_rolled_back_chain_is_refused() -> None:
    heads = _chain(4)
    verifier = HeadChainVerifier(KEY.public_key, heads[3])
    with pytest.raises(KeyTransparencyHeadError) as caught:
        verifier.advance([heads[1]])
    assert caught.value.reason == "rollback"
    with pytest.raises(KeyTransparencyHeadError) as caught:
        verifier.check_known(heads[2])
    assert caught.value.reason == "rollback"
    assert verifier.latest == heads[3]


def test_gaps_time_travel_and_foreign_signatures_are_refused() -> None:
    heads = _chain(4)
    verifier = HeadChainVerifier(KEY.public_key, heads[0])
    with pytest.raises(KeyTransparencyHeadError) as caught:
        verifier.advance([heads[2]])
    assert caught.value.reason == "chain"
    backwards = EpochHead(2, bytes(32), 10, heads[0].head.hash())
    with pytest.raises(KeyTransparencyHeadError) as caught:
        verifier.advance([sign_epoch_head(KEY, backwards)])
    assert caught.value.reason == "chain"
    foreign = _chain(2, key=Ed25519SigningKey(bytes([4]) * 32))
    with pytest.raises(KeyTransparencyHeadError) as caught:
        verifier.advance([foreign[1]])
    assert caught.value.reason == "signature"
    bad_signature = dataclasses.replace(heads[1], signature=bytes(64))
    with pytest.raises(KeyTransparencyHeadError):
        verifier.advance([bad_signature])
    assert verifier.latest == heads[0]
    fresh = HeadChainVerifier(KEY.public_key)
    not_genesis = sign_epoch_head(KEY, EpochHead(1, bytes(32), 1, bytes([1]) * 32))
    with pytest.raises(KeyTransparencyHeadError):
        fresh.advance([not_genesis])


def test_malformed_heads_are_refused() -> None:
    encoded = _chain(1)[0].to_bytes()
    with pytest.raises(KeyTransparencyDecodeError):
        SignedEpochHead.from_bytes(encoded[:-1])
    with pytest.raises(KeyTransparencyDecodeError):
        SignedEpochHead.from_bytes(bytes(8) + encoded[8:])  # epoch 0
    with pytest.raises(UsageError):
        EpochHead(1, bytes(31), 0, bytes(32))
    with pytest.raises(UsageError):
        EpochHead.next_after(None, 2, bytes(32), 0)


def test_a_directory_publishes_signed_heads_a_client_chains_and_verifies_against() -> None:
    from securemsg.crypto.ecvrf import VrfPrivateKey
    from securemsg.kt.directory import Directory
    from securemsg.kt.verify import verify_lookup

    directory = Directory(VrfPrivateKey(bytes([8]) * 32))
    head_key = Ed25519SigningKey(bytes([9]) * 32)  # a key of its own, not the VRF key
    published: list[SignedEpochHead] = []
    previous: EpochHead | None = None
    for epoch, batch in enumerate(({b"alice": b"k1"}, {b"bob": b"k2"}, {b"alice": b"k3"}), 1):
        info = directory.publish(batch)
        previous = EpochHead.next_after(previous, info.epoch, info.root_hash, 1000 * epoch)
        published.append(sign_epoch_head(head_key, previous))
    client = HeadChainVerifier(head_key.public_key)
    client.advance(published[:1])
    latest = client.advance(published[1:])
    assert latest is not None
    result = verify_lookup(
        directory.vrf_public_key,
        latest.head.root_hash,
        latest.head.epoch,
        b"alice",
        directory.lookup(b"alice"),
    )
    assert (result.version, result.value) == (2, b"k3")
