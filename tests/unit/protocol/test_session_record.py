"""Session records: storage round trips, versioning, hostile bytes, archiving and promotion."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securemsg.crypto.curve25519 import KeyPair
from securemsg.crypto.rng import DeterministicRng
from securemsg.errors import (
    DecodeError,
    NoSessionError,
    PeerError,
    StorageError,
    UnsupportedVersionError,
)
from securemsg.limits import Limits
from securemsg.protocol.pqxdh import HandshakeKeys
from securemsg.protocol.session_record import SessionRecord
from securemsg.protocol.session_state import (
    PendingPreKey,
    SessionState,
    initialize_initiator_session,
    initialize_recipient_session,
)
from securemsg.records.session_storage import decode_record, encode_record, encode_session

RNG = DeterministicRng(b"record tests")
KEYS = HandshakeKeys(b"\x01" * 32, b"\x02" * 32, b"\x03" * 32)


def _initiator(pending: bool = True) -> SessionState:
    base = KeyPair.generate(RNG)
    spk = KeyPair.generate(RNG)
    state = initialize_initiator_session(
        KEYS,
        our_identity=KeyPair.generate(RNG).public_key.to_bytes(),
        their_identity=KeyPair.generate(RNG).public_key.to_bytes(),
        our_base_key=base.public_key,
        their_signed_pre_key=spk.public_key,
        rng=RNG,
    ).with_registration_ids(11, 22)
    if pending:
        state = state.with_pending(
            PendingPreKey(
                pre_key_id=5,
                signed_pre_key_id=6,
                base_key=base.public_key,
                kyber_pre_key_id=7,
                kyber_ciphertext=b"\x08" + bytes(1568),
                timestamp_ms=123,
            )
        )
    return state


def _recipient() -> SessionState:
    return initialize_recipient_session(
        KEYS,
        our_identity=KeyPair.generate(RNG).public_key.to_bytes(),
        their_identity=KeyPair.generate(RNG).public_key.to_bytes(),
        their_base_key=KeyPair.generate(RNG).public_key,
        our_signed_pre_key_pair=KeyPair.generate(RNG),
    )


def test_empty_record_round_trips() -> None:
    rec = SessionRecord()
    assert rec.is_empty() and rec.current is None
    again = SessionRecord.from_bytes(rec.to_bytes())
    assert again.is_empty() and again == rec


def test_record_with_sessions_round_trips_field_by_field() -> None:
    state = _initiator()
    rec = SessionRecord().promote_state(_recipient()).promote_state(state)
    data = rec.to_bytes()
    back = SessionRecord.from_bytes(data)
    assert back.to_bytes() == data and back == rec
    cur = back.current
    assert cur is not None and cur.pending is not None
    assert cur.pending.pre_key_id == 5 and cur.pending.kyber_pre_key_id == 7
    assert cur.pending.base_key == state.pending.base_key  # type: ignore[union-attr]
    assert cur.ratchet.root_key == state.ratchet.root_key
    assert cur.ratchet.sender_chain.chain_key == state.ratchet.sender_chain.chain_key
    assert cur.ratchet.sender_chain.ratchet_key_pair.private_key.to_bytes() == (
        state.ratchet.sender_chain.ratchet_key_pair.private_key.to_bytes()
    )
    assert [c.ratchet_key for c in cur.ratchet.receiver_chains] == [
        c.ratchet_key for c in state.ratchet.receiver_chains
    ]
    assert (cur.local_registration_id, cur.remote_registration_id) == (11, 22)
    assert cur.spqr.to_bytes() == state.spqr.to_bytes()
    assert len(back.previous_sessions) == 1


def test_archiving_clears_pending_data_and_keeps_the_newest() -> None:
    limits = Limits(archived_states_max_length=2)
    states = [_initiator() for _ in range(4)]
    rec = SessionRecord()
    for s in states:
        rec = rec.promote_state(s, limits)
    assert rec.current is states[-1]
    archived = [s for _, s in rec.previous_states()]
    assert [s.alice_base_key for s in archived if s is not None] == [
        states[2].alice_base_key,
        states[1].alice_base_key,
    ]
    assert all(s is not None and s.pending is None for s in archived)
    assert rec.archive_current_state(limits).current is None


def test_promote_matching_session_by_base_key() -> None:
    a, b, c = _initiator(), _initiator(), _initiator()
    rec = SessionRecord().promote_state(a).promote_state(b).promote_state(c)
    assert rec.promote_matching_session(4, c.alice_base_key) is rec
    promoted = rec.promote_matching_session(4, a.alice_base_key)
    assert promoted is not None and promoted.current is not None
    assert promoted.current.alice_base_key == a.alice_base_key
    assert len(promoted.previous_sessions) == 2
    assert rec.promote_matching_session(4, bytes(33)) is None
    assert rec.promote_matching_session(3, a.alice_base_key) is None
    assert rec.current is c  # records are values


def test_archived_sessions_stay_bytes_and_corrupt_ones_are_skipped() -> None:
    state = _initiator()
    rec = SessionRecord(state, (b"\xff\xff garbage", encode_session(_recipient().to_stored())))
    back = SessionRecord.from_bytes(rec.to_bytes())  # archived ones are not decoded here
    assert back.previous_sessions[0] == b"\xff\xff garbage"
    decoded = [s for _, s in back.previous_states()]
    assert decoded[0] is None and isinstance(decoded[1], SessionState)
    assert back.promote_matching_session(4, bytes(33)) is None


def test_storage_version_bumps_are_refused() -> None:
    data = SessionRecord(_initiator()).to_bytes()
    stored = decode_record(data)
    assert stored.current_session is not None
    record_v2 = b"\x08\x02" + data[2:]
    assert data[:2] == b"\x08\x01"
    with pytest.raises(UnsupportedVersionError) as info:
        SessionRecord.from_bytes(record_v2)
    assert info.value.version == 2
    stored.current_session.session_version = 5
    with pytest.raises(UnsupportedVersionError):
        SessionRecord.from_bytes(encode_record(stored.current_session, []))


def test_corrupt_fields_are_decode_errors() -> None:
    stored = decode_record(SessionRecord(_initiator()).to_bytes()).current_session
    assert stored is not None
    for field, value in [
        ("root_key", b"short"),
        ("remote_identity_public", b"\x07" + bytes(32)),
        ("pq_ratchet_state", b"\x00garbage"),
        ("alice_base_key", b""),
    ]:
        bad = decode_record(SessionRecord(_initiator()).to_bytes()).current_session
        assert bad is not None
        setattr(bad, field, value)
        with pytest.raises(DecodeError):
            SessionRecord.from_bytes(encode_record(bad, []))
    bad = decode_record(SessionRecord(_initiator()).to_bytes()).current_session
    assert bad is not None
    bad.sender_chain = None
    with pytest.raises(DecodeError):
        SessionRecord.from_bytes(encode_record(bad, []))


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_either_decode_or_raise_decode_error(data: bytes) -> None:
    try:
        rec = SessionRecord.from_bytes(data)
    except DecodeError:
        return
    assert rec.to_bytes() == data


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_mutated_records_either_decode_or_raise_decode_error(data: st.DataObject) -> None:
    good = SessionRecord(_initiator(), (encode_session(_recipient().to_stored()),)).to_bytes()
    i = data.draw(st.integers(0, len(good) - 1))
    mutated = good[:i] + bytes((data.draw(st.integers(0, 255)),)) + good[i + 1 :]
    cut = data.draw(st.integers(0, len(mutated)))
    for candidate in (mutated, mutated[:cut]):
        with contextlib.suppress(DecodeError):
            SessionRecord.from_bytes(candidate)


def test_decrypting_with_an_empty_record_is_no_session() -> None:
    from securemsg.wire.messages import SignalMessage

    state = _recipient()
    rec, msg = SessionRecord(), None
    _, msg = state.encrypt(b"x", RNG)
    assert isinstance(msg, SignalMessage)
    from securemsg.protocol.address import ProtocolAddress

    with pytest.raises(NoSessionError):
        rec.decrypt(
            msg, RNG, remote_address=ProtocolAddress("a", 1), local_address=ProtocolAddress("b", 1)
        )


def test_repr_shows_no_secrets() -> None:
    state = _initiator()
    text = repr(SessionRecord(state)) + repr(state) + repr(state.pending)
    assert state.ratchet.root_key.hex() not in text
    assert "SessionRecord" in text


def test_a_corrupt_stored_remote_identity_is_a_storage_error() -> None:
    good = _recipient()
    state = SessionState(
        good.version,
        good.local_identity,
        b"\x06" + good.remote_identity[1:],  # local state gone bad: not the peer's fault
        good.ratchet,
        good.spqr,
        good.alice_base_key,
        good.pending,
        good.local_registration_id,
        good.remote_registration_id,
    )
    with pytest.raises(StorageError) as info:
        _ = state.remote_identity_key
    assert not isinstance(info.value, PeerError)
