"""Two Python parties run the ML-KEM Braid (protocol/spqr/braid.py): alternation, bursts, loss."""

from __future__ import annotations

import random

from spqr_helpers import Pair, random_schedule

from securemsg.protocol.spqr.message import MessageType, decode_message

ALL_STATES = {
    "keys_unsampled",
    "keys_sampled",
    "header_sent",
    "ct1_received",
    "ek_sent_ct1_received",
    "no_header_received",
    "header_received",
    "ct1_sampled",
    "ek_received_ct1_sampled",
    "ct1_acknowledged",
    "ct2_sampled",
}


def _describe(msg: bytes) -> tuple[int, int, str, int | None]:
    m = decode_message(msg)
    return m.epoch, m.key_index, m.type.name, m.chunk_index


def test_strict_alternation_matches_observed_transcript() -> None:
    pair = Pair.new(restart=True)
    a_log, b_log = [], []
    for _ in range(90):
        a_log.append(_describe(pair.send("A")))
        pair.deliver("A")
        b_log.append(_describe(pair.send("B")))
        pair.deliver("B")
    # A→B: numbering is 1-based message position
    assert a_log[0:3] == [(1, i, "HDR", i - 1) for i in (1, 2, 3)]
    assert a_log[3:32] == [(1, i, "EK", i - 4) for i in range(4, 33)]
    assert a_log[32:39] == [(1, i, "EK_CT1_ACK", i - 4) for i in range(33, 40)]
    assert a_log[39:43] == [(1, i, "CT1_ACK", None) for i in range(40, 44)]
    assert a_log[43:46] == [(2, i, "NONE", None) for i in (1, 2, 3)]
    assert a_log[46:76] == [(2, i, "CT1", i - 4) for i in range(4, 34)]
    assert {t for _, _, t, _ in a_log[76:82]} == {"NONE"}
    assert [(e, t, c) for e, _, t, c in a_log[82:87]] == [(2, "CT2", c) for c in range(5)]
    assert [(e, i, t) for e, i, t, _ in a_log[87:90]] == [(3, i, "HDR") for i in (1, 2, 3)]
    # B→A
    assert b_log[0:2] == [(1, 1, "NONE", None), (1, 2, "NONE", None)]
    assert b_log[2:32] == [(1, i, "CT1", i - 3) for i in range(3, 33)]
    assert {t for _, _, t, _ in b_log[32:38]} == {"NONE"}
    assert [(t, c) for _, _, t, c in b_log[38:43]] == [("CT2", c) for c in range(5)]
    assert b_log[43:46] == [(2, i, "HDR", i - 1) for i in (1, 2, 3)]
    assert [t for _, _, t, _ in b_log[46:75]] == ["EK"] * 29
    assert [(t, c) for _, _, t, c in b_log[75:82]] == [("EK_CT1_ACK", c) for c in range(29, 36)]
    assert [t for _, _, t, _ in b_log[82:86]] == ["CT1_ACK"] * 4
    assert [(e, i, t) for e, i, t, _ in b_log[86:89]] == [(3, i, "NONE") for i in (1, 2, 3)]
    # B already encapsulated for epoch 3 (its first Ct1 of epoch 3 was message 90)
    assert (pair.a.state.chain.current_epoch, pair.b.state.chain.current_epoch) == (2, 3)


def test_bursts_reordering_and_loss_reach_epoch_5_with_every_type_and_state() -> None:
    rnd = random.Random(1234)
    pair = Pair.new(seed=b"bursty", restart=False)
    states: set[str] = set()
    for _ in range(60):
        random_schedule(pair, 25, rnd, loss=0.1)
        states |= pair.states_seen
        if min(pair.a.state.epoch, pair.b.state.epoch) >= 5 and states >= ALL_STATES:
            break
    assert min(pair.a.state.epoch, pair.b.state.epoch) >= 5
    assert pair.types_seen >= {int(t) for t in MessageType}
    assert states >= ALL_STATES - {"ek_received_ct1_sampled"}


def test_ek_received_before_ct1_ack_state_is_reached() -> None:
    """send_ct gets all of ek (plain Ek chunks) before any ct1 acknowledgement."""
    pair = Pair.new(restart=True)
    for _ in range(3):
        pair.send("A")
        pair.deliver("A")  # header complete at B
    pair.send("B")
    pair.deliver("B")  # B's first Ct1 -> A starts ek
    for _ in range(36):
        pair.send("A")  # Ek chunks 0..35; A still lacks ct1
    while pair.in_flight["A"]:
        pair.deliver("A")
    assert pair.b.state.state_name == "ek_received_ct1_sampled"
    while pair.a.state.epoch == 1 or pair.b.state.epoch == 1:
        pair.send("B")
        pair.deliver("B")
        pair.send("A")
        pair.deliver("A")
    assert pair.a.state.epoch == pair.b.state.epoch == 2


def test_parity_only_delivery_completes_every_payload() -> None:
    """Drop every systematic chunk in both directions: payloads are rebuilt from parity."""
    pair = Pair.new(restart=True)
    while min(pair.a.state.epoch, pair.b.state.epoch) < 3:
        for who in "AB":
            msg = pair.send(who)
            m = decode_message(msg)
            limit = {
                MessageType.HDR: 3,
                MessageType.EK: 36,
                MessageType.EK_CT1_ACK: 36,
                MessageType.CT1: 30,
                MessageType.CT2: 5,
            }.get(m.type)
            if limit is not None and m.chunk_index is not None and m.chunk_index < limit:
                pair.drop(who)
            else:
                pair.deliver(who)
    assert pair.a.state.chain.current_epoch >= 2


def test_restart_mid_epoch_at_every_step_keeps_keys_identical() -> None:
    rnd = random.Random(99)
    pair = Pair.new(seed=b"restart", restart=True)
    for _ in range(12):
        random_schedule(pair, 20, rnd, loss=0.05)
    assert min(pair.a.state.epoch, pair.b.state.epoch) >= 2
