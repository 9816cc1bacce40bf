"""Sender-key groups: delivery order, replays, forged signatures, unknown chains, limits."""

from __future__ import annotations

import contextlib
import random
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securemsg import groups
from securemsg.crypto.curve25519 import PrivateKey
from securemsg.crypto.rng import DeterministicRng
from securemsg.errors import (
    DecodeError,
    DuplicateMessageError,
    InvalidKeyError,
    InvalidSignatureError,
    MessageGapTooLargeError,
    NoSessionError,
    PeerError,
)
from securemsg.limits import Limits
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.identity_and_prekeys import IdentityKeyPair
from securemsg.protocol.sender_keys import SenderKeyRecord
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.wire.messages import SenderKeyDistributionMessage, SenderKeyMessage

DIST = uuid.UUID("6f1b2c3d-0000-4000-8000-000000000001")
ALICE = ProtocolAddress("alice", 1)


def store(seed: bytes) -> tuple[InMemoryProtocolStore, DeterministicRng]:
    rng = DeterministicRng(seed)
    return InMemoryProtocolStore(IdentityKeyPair.generate(rng), 1), rng


def setup() -> tuple[InMemoryProtocolStore, InMemoryProtocolStore, DeterministicRng]:
    a, rng = store(b"a")
    b, _ = store(b"b")
    skdm = groups.create_sender_key_distribution_message(ALICE, DIST, a, rng=rng)
    groups.process_sender_key_distribution_message(ALICE, skdm.to_bytes(), b)
    return a, b, rng


def test_shuffled_delivery_and_replay() -> None:
    a, b, rng = setup()
    msgs = [
        (b"m%d" % i, groups.group_encrypt(ALICE, DIST, b"m%d" % i, a, rng=rng)) for i in range(60)
    ]
    random.Random(1).shuffle(msgs)
    for pt, m in msgs:
        assert groups.group_decrypt(m.to_bytes(), ALICE, b) == pt
    with pytest.raises(DuplicateMessageError):
        groups.group_decrypt(msgs[0][1].to_bytes(), ALICE, b)


def test_wrong_signing_key_is_refused_without_state_change() -> None:
    a, b, rng = setup()
    real = groups.group_encrypt(ALICE, DIST, b"hello", a, rng=rng)
    forged = SenderKeyMessage.new(
        distribution_id=DIST,
        chain_id=real.chain_id,
        iteration=real.iteration,
        ciphertext=real.ciphertext,
        signing_key=PrivateKey.generate(rng),
        rng=rng,
    )
    before = b.load_sender_key(ALICE, DIST)
    assert before is not None
    encoded = before.to_bytes()
    with pytest.raises(InvalidSignatureError):
        groups.group_decrypt(forged.to_bytes(), ALICE, b)
    assert b.load_sender_key(ALICE, DIST) is before
    assert before.to_bytes() == encoded
    assert groups.group_decrypt(real.to_bytes(), ALICE, b) == b"hello"


def test_unknown_chain_and_unknown_sender() -> None:
    a, b, rng = setup()
    m = groups.group_encrypt(ALICE, DIST, b"x", a, rng=rng)
    other = SenderKeyMessage.new(
        distribution_id=DIST,
        chain_id=m.chain_id ^ 1,
        iteration=0,
        ciphertext=m.ciphertext,
        signing_key=PrivateKey.generate(rng),
        rng=rng,
    )
    with pytest.raises(NoSessionError):
        groups.group_decrypt(other.to_bytes(), ALICE, b)
    with pytest.raises(NoSessionError):
        groups.group_decrypt(m.to_bytes(), ProtocolAddress("bob", 1), b)
    with pytest.raises(NoSessionError):
        groups.group_encrypt(ALICE, uuid.uuid4(), b"x", a, rng=rng)


def test_jump_and_stored_key_limits() -> None:
    a, b, rng = setup()
    limits = Limits(max_forward_jumps=10, max_message_keys=4)
    msgs = [groups.group_encrypt(ALICE, DIST, b"%d" % i, a, rng=rng) for i in range(20)]
    with pytest.raises(MessageGapTooLargeError) as info:
        groups.group_decrypt(msgs[11].to_bytes(), ALICE, b, limits=limits)
    assert info.value.gap == 11
    assert groups.group_decrypt(msgs[10].to_bytes(), ALICE, b, limits=limits) == b"10"
    # only the 4 newest skipped keys (6..9) were kept
    assert groups.group_decrypt(msgs[9].to_bytes(), ALICE, b, limits=limits) == b"9"
    with pytest.raises(DuplicateMessageError):
        groups.group_decrypt(msgs[5].to_bytes(), ALICE, b, limits=limits)


def test_at_most_five_states_and_repeated_skdm_does_not_rewind() -> None:
    b, rng = store(b"b")
    record: SenderKeyRecord | None = None
    for i in range(7):
        s, r = store(b"s%d" % i)
        skdm = groups.create_sender_key_distribution_message(ALICE, DIST, s, rng=r)
        groups.process_sender_key_distribution_message(ALICE, skdm, b)
    record = b.load_sender_key(ALICE, DIST)
    assert record is not None
    assert len(record.states) == 5
    a, b2, rng = setup()
    skdm = groups.create_sender_key_distribution_message(ALICE, DIST, a, rng=rng)
    m = groups.group_encrypt(ALICE, DIST, b"once", a, rng=rng)
    assert groups.group_decrypt(m.to_bytes(), ALICE, b2) == b"once"
    groups.process_sender_key_distribution_message(ALICE, skdm, b2)  # same chain again
    with pytest.raises(DuplicateMessageError):
        groups.group_decrypt(m.to_bytes(), ALICE, b2)


def test_record_round_trip() -> None:
    a, b, rng = setup()
    for _i in range(5):
        m = groups.group_encrypt(ALICE, DIST, b"x", a, rng=rng)
    groups.group_decrypt(m.to_bytes(), ALICE, b)
    for s in (a, b):
        record = s.load_sender_key(ALICE, DIST)
        assert record is not None
        data = record.to_bytes()
        assert SenderKeyRecord.from_bytes(data).to_bytes() == data


@settings(max_examples=150)
@given(st.binary(max_size=200))
def test_decoders_take_arbitrary_bytes(data: bytes) -> None:
    for decode in (
        SenderKeyRecord.from_bytes,
        SenderKeyMessage.from_bytes,
        SenderKeyDistributionMessage.from_bytes,
    ):
        with contextlib.suppress(DecodeError, InvalidKeyError):
            decode(data)
    _, b, _ = setup()
    try:
        groups.group_decrypt(data, ALICE, b)
    except PeerError:
        pass
    except NoSessionError:
        pass
