"""Hostile input to the braid: every (state, message) pair advances or raises a typed error
and leaves the given state untouched (protocol/spqr/braid.py)."""

from __future__ import annotations

import random

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule
from spqr_helpers import Pair, random_schedule

from securemsg.crypto.rng import DeterministicRng
from securemsg.errors import DecodeError, InvalidMessageError
from securemsg.protocol.spqr import SpqrState, spqr_recv, spqr_send
from securemsg.protocol.spqr.message import MessageType, decode_message, encode_message


def _flip(msg: bytes, pos: int = -1) -> bytes:
    b = bytearray(msg)
    b[pos] ^= 1
    return bytes(b)


def _assert_refused(state: SpqrState, msg: bytes, exc: type[Exception]) -> None:
    before = state.to_bytes()
    with pytest.raises(exc):
        spqr_recv(state, msg)
    assert state.to_bytes() == before


def test_forged_header_chunk_fails_mac_then_genuine_chunk_completes() -> None:
    pair = Pair.new()
    for _ in range(2):
        pair.send("A")
        pair.deliver("A")
    msg = pair.send("A")
    _assert_refused(pair.b.state, _flip(msg), InvalidMessageError)
    pair.deliver("A")
    assert pair.b.state.state_name == "header_received"


def test_forged_ct2_fails_mac() -> None:
    pair = Pair.new()
    while (
        pair.a.state.state_name != "ek_sent_ct1_received"
        or len(
            pair.a.state.braid.receiving_ct2.chunks  # type: ignore[union-attr]
        )
        < 4
    ):
        pair.send("A")
        pair.deliver("A")
        pair.send("B")
        pair.deliver("B")
    msg = pair.send("B")
    _assert_refused(pair.a.state, _flip(msg), InvalidMessageError)
    pair.deliver("B")
    assert pair.a.state.epoch == 2


def test_ek_not_matching_header_is_refused() -> None:
    pair = Pair.new()
    for _ in range(3):
        pair.send("A")
        pair.deliver("A")
    pair.send("B")
    pair.deliver("B")  # A now streams ek
    pair.send("A")
    forged = _flip(pair.in_flight["A"].pop()[0])  # chunk 0 of ek, corrupted
    pair.b.state, _ = spqr_recv(pair.b.state, forged)
    for _ in range(35):
        pair.send("A")
    for _ in range(34):
        pair.deliver("A")
    last, _ = pair.in_flight["A"][0]
    _assert_refused(pair.b.state, last, InvalidMessageError)


def test_epoch_from_the_future_is_refused() -> None:
    pair = Pair.new()
    msg = encode_message(2, 1, MessageType.NONE)
    _assert_refused(pair.b.state, msg, InvalidMessageError)
    _assert_refused(pair.a.state, msg, InvalidMessageError)


def test_reused_index_is_refused() -> None:
    pair = Pair.new()
    msg = pair.send("B")
    pair.deliver("B")
    _assert_refused(pair.a.state, msg, InvalidMessageError)


def test_epoch_1_index_0_gives_no_key() -> None:
    pair = Pair.new()
    _state, key = spqr_recv(pair.b.state, encode_message(1, 0, MessageType.NONE))
    assert key is None


def test_garbage_state_bytes_are_decode_errors() -> None:
    good = Pair.new().a.state.to_bytes()
    for bad in (b"", b"\xff\xff", good[:-3], b"\x08\x02" + good[2:]):
        with pytest.raises(DecodeError):
            SpqrState.from_bytes(bad)


# --------------------------------------------------------------------------- totality


def _pools() -> tuple[list[bytes], list[bytes]]:
    rnd = random.Random(7)
    pair = Pair.new(seed=b"pool")
    states: list[bytes] = []
    messages: list[bytes] = []
    for _ in range(50):
        random_schedule(pair, 6, rnd, loss=0.2)
        states += [pair.a.state.to_bytes(), pair.b.state.to_bytes()]
        for q in pair.in_flight.values():
            messages += [m for m, _ in q]
        for who in "AB":
            messages.append(pair.send(who))
    return states, messages


STATES, MESSAGES = _pools()


class BraidTotality(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.state: SpqrState = SpqrState.from_bytes(STATES[0])
        self.rng = DeterministicRng(b"totality")

    @initialize(i=st.integers(0, len(STATES) - 1))
    def start(self, i: int) -> None:
        self.state = SpqrState.from_bytes(STATES[i])

    def _recv(self, msg: bytes) -> None:
        before = self.state.to_bytes()
        try:
            self.state, key = spqr_recv(self.state, msg)
        except (DecodeError, InvalidMessageError):
            assert self.state.to_bytes() == before
        else:
            assert key is None or len(key) == 32

    @rule(i=st.integers(0, len(MESSAGES) - 1))
    def recv_genuine(self, i: int) -> None:
        self._recv(MESSAGES[i])

    @rule(
        epoch=st.integers(1, 8),
        index=st.integers(0, 300),
        mtype=st.sampled_from(list(MessageType)),
        chunk_index=st.integers(0, 65535),
        data=st.binary(min_size=32, max_size=32),
    )
    def recv_synthetic(
        self, epoch: int, index: int, mtype: MessageType, chunk_index: int, data: bytes
    ) -> None:
        m = decode_message(encode_message(epoch, index, mtype, chunk_index, data))
        if m.type in (MessageType.NONE, MessageType.CT1_ACK):
            self._recv(encode_message(epoch, index, mtype))
        else:
            self._recv(encode_message(epoch, index, mtype, chunk_index, data))

    @rule(i=st.integers(0, len(MESSAGES) - 1), pos=st.integers(0, 36))
    def recv_corrupted(self, i: int, pos: int) -> None:
        msg = MESSAGES[i]
        self._recv(_flip(msg, pos % len(msg)))

    @rule()
    def send(self) -> None:
        self.state, _msg, key = spqr_send(self.state, self.rng)
        assert len(key) == 32

    @invariant()
    def survives_restart(self) -> None:
        data = self.state.to_bytes()
        assert SpqrState.from_bytes(data).to_bytes() == data


BraidTotality.TestCase.settings = settings(max_examples=40, stateful_step_count=15, deadline=None)
test_braid_totality = BraidTotality.TestCase
