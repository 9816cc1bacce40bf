"""SPQR (the ML-KEM braid of the triple ratchet) between securemsg and the real libsignal 0.103.0.

Each conversation pattern runs in both roles (securemsg initiates / libsignal initiates) for at
least 3000 messages: strict ping-pong, long one-sided bursts (500 messages one way before any
reply), random direction changes, and reordering inside each burst. Every message must decrypt
on the other side (a refusal fails the test at once).

What is observed: every message's ``pq_ratchet`` is parsed (``securemsg.protocol.spqr.message``)
so the tests know which SPQR payload types travelled in each direction and in which epochs.
securemsg's braid is read from the ``SpqrState`` in its stored session record; libsignal's from
its own stored ``SessionRecord`` (field 15, ``PqRatchetState``, read with a minimal protobuf
reader in ``spqr_interop_helpers``) and from the epochs its messages carry. At checkpoints
where every message has been delivered the two braids must be in step
(``check_braids_in_step``).

Persistence: securemsg keeps its state in SQLite and "restarts" (close, reopen from disk) many
times in the middle of epochs; the conversation with libsignal continues.

All schedules and plaintexts are seeded; securemsg uses a ``DeterministicRng``. libsignal draws
its own randomness, which does not change the SPQR message flow (only the bytes).
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from peer_client import LibsignalPeer
from spqr_interop_helpers import (
    ALL_TYPES,
    ROLES,
    SEND_CT_STATES,
    SEND_EK_STATES,
    Role,
    SpqrConversation,
    other,
)

from securemsg.crypto.backend import KyberBackend
from securemsg.protocol.spqr.message import MessageType

pytestmark = pytest.mark.interop

NOW = int(time.time() * 1000)
TOTAL = 3000


BACKENDS = pytest.mark.parametrize(
    "kyber_backend", list(KyberBackend), ids=lambda b: f"kyber-{b.value}"
)


@pytest.fixture(params=list(KyberBackend), ids=lambda b: f"kyber-{b.value}")
def conversation(
    libsignal_peer: LibsignalPeer, request: pytest.FixtureRequest
) -> Iterator[SpqrConversation]:
    """Each conversation runs with securemsg's PQXDH Kyber1024 encapsulation on both routes."""
    conv = SpqrConversation(
        libsignal_peer, request.node.nodeid.encode(), NOW, kyber_backend=request.param
    )
    yield conv
    conv.close()


def plaintexts(rnd: random.Random, count: int) -> list[bytes]:
    return [rnd.randbytes(rnd.choice((0, 1, 16, 100, rnd.randrange(200)))) for _ in range(count)]


def assert_epochs_monotone_and_gapless(conv: SpqrConversation) -> dict[Role, int]:
    """Per direction, message epochs never go down and never skip one. Returns the maxima."""
    highest: dict[Role, int] = {}
    for role, epochs in conv.epochs_by_direction().items():
        assert epochs[0] == 1, role
        for a, b in itertools.pairwise(epochs):
            assert b in (a, a + 1), f"{role} epochs went {a} -> {b}"
        highest[role] = epochs[-1]
    assert abs(highest["securemsg"] - highest["libsignal"]) <= 1, highest
    return highest


def assert_all_types_both_ways(conv: SpqrConversation) -> None:
    for role, seen in conv.types_by_direction().items():
        missing = ALL_TYPES - seen
        assert not missing, f"{role} never sent {sorted(t.name for t in missing)}"


def finish(conv: SpqrConversation, initiator: Role) -> tuple[str, int, str, int]:
    """Final checks shared by all patterns; returns the final braid positions."""
    assert conv.sent >= TOTAL
    highest = assert_epochs_monotone_and_gapless(conv)
    sm_state, sm_epoch, ls_state, ls_epoch = conv.check_braids_in_step(initiator)
    # what each side's stored braid says agrees with the epochs its messages carried
    assert sm_epoch in (highest["securemsg"], highest["securemsg"] + 1)
    assert ls_epoch in (highest["libsignal"], highest["libsignal"] + 1)
    return sm_state, sm_epoch, ls_state, ls_epoch


# -- strict ping-pong -----------------------------------------------------------------------------


@pytest.mark.parametrize("initiator", ROLES)
def test_ping_pong_advances_epochs_in_step(conversation: SpqrConversation, initiator: Role) -> None:
    rnd = random.Random(f"ping-pong/{initiator}")
    conversation.establish(initiator)
    sender = initiator
    for i in range(TOTAL):
        conversation.burst(sender, plaintexts(rnd, 1), None)
        if i % 25 == 24:
            conversation.check_braids_in_step(initiator)
        sender = other(sender)
    _, sm_epoch, _, ls_epoch = finish(conversation, initiator)
    assert min(sm_epoch, ls_epoch) >= 5
    assert_all_types_both_ways(conversation)
    # the observed libsignal transcript: one braid epoch takes 43 messages per direction
    for role in ROLES:
        first_of_epoch2 = conversation.epochs_by_direction()[role].index(2)
        assert first_of_epoch2 == 43, (role, first_of_epoch2)
    # the initiator's first message is (epoch 1, index 1, Hdr, chunk 0); the reply is None
    first = conversation.headers[initiator][0]
    assert (first.epoch, first.key_index, first.type, first.chunk_index) == (
        1,
        1,
        MessageType.HDR,
        0,
    )
    assert conversation.headers[other(initiator)][0].type == MessageType.NONE


# -- long one-sided bursts ------------------------------------------------------------------------


@pytest.mark.parametrize("initiator", ROLES)
def test_long_one_sided_bursts(conversation: SpqrConversation, initiator: Role) -> None:
    """500 messages one way before any reply, then long bursts both ways; the braid keeps
    sending parity chunks far beyond the systematic ones and still completes epochs."""
    rnd = random.Random(f"bursts/{initiator}")
    conversation.establish(initiator)
    conversation.burst(initiator, plaintexts(rnd, 500), None)
    conversation.burst(other(initiator), plaintexts(rnd, 500), None)
    sender = initiator
    while conversation.sent < TOTAL:
        count = rnd.randint(100, 500) if rnd.random() < 0.05 else rnd.randint(1, 8)
        conversation.burst(sender, plaintexts(rnd, count), None)
        conversation.check_braids_in_step(initiator)
        sender = other(sender)
    _, sm_epoch, _, ls_epoch = finish(conversation, initiator)
    assert min(sm_epoch, ls_epoch) >= 3
    # parity chunks: chunk indices well past the systematic ones travelled both ways
    for role in ROLES:
        assert max(h.chunk_index or 0 for h in conversation.headers[role]) >= 400, role


# -- random direction changes ---------------------------------------------------------------------


@pytest.mark.parametrize("initiator", ROLES)
def test_random_direction_changes(conversation: SpqrConversation, initiator: Role) -> None:
    rnd = random.Random(f"random/{initiator}")
    conversation.establish(initiator)
    conversation.burst(initiator, plaintexts(rnd, rnd.randint(1, 5)), None)
    while conversation.sent < TOTAL:
        sender = rnd.choice(ROLES)  # the same side may well go on talking
        count = rnd.choice((rnd.randint(1, 4), rnd.randint(1, 4), rnd.randint(1, 40)))
        conversation.burst(sender, plaintexts(rnd, count), None)
        conversation.check_braids_in_step(initiator)
    _, sm_epoch, _, ls_epoch = finish(conversation, initiator)
    assert min(sm_epoch, ls_epoch) >= 5
    assert_all_types_both_ways(conversation)


# -- reordering inside the window -----------------------------------------------------------------


@pytest.mark.parametrize("initiator", ROLES)
def test_reordering_inside_bursts(conversation: SpqrConversation, initiator: Role) -> None:
    """Every burst is delivered in a random order: chunks of the erasure code and SPQR keys
    arrive out of order (skipped keys are kept, later ones fill in)."""
    rnd = random.Random(f"reorder/{initiator}")
    conversation.establish(initiator)
    conversation.burst(initiator, plaintexts(rnd, 1), None)  # the PreKey message first
    sender: Role = other(initiator)
    while conversation.sent < TOTAL:
        count = rnd.choice((rnd.randint(1, 4), rnd.randint(1, 4), rnd.randint(1, 60)))
        order = list(range(count))
        rnd.shuffle(order)
        conversation.burst(sender, plaintexts(rnd, count), order)
        conversation.check_braids_in_step(initiator)
        sender = rnd.choice(ROLES)
    _, sm_epoch, _, ls_epoch = finish(conversation, initiator)
    assert min(sm_epoch, ls_epoch) >= 5
    assert_all_types_both_ways(conversation)
    # out-of-order delivery drives the send_ct side through every state, including
    # ek_received_ct1_sampled (ek complete before the ct1 acknowledgement)
    assert conversation.sm_states == SEND_EK_STATES | SEND_CT_STATES
    # libsignal's braid is only sampled at checkpoints (after whole bursts), so the short-lived
    # ek_received_ct1_sampled may slip between two samples
    assert (SEND_EK_STATES | SEND_CT_STATES) - conversation.ls_states <= {"ek_received_ct1_sampled"}


# -- persistence: securemsg restarts in the middle of epochs --------------------------------------


@BACKENDS
@pytest.mark.parametrize("initiator", ROLES)
def test_conversation_survives_restarts_mid_epoch(
    libsignal_peer: LibsignalPeer, tmp_path: Path, initiator: Role, kyber_backend: KyberBackend
) -> None:
    rnd = random.Random(f"restart/{initiator}")
    conv = SpqrConversation(
        libsignal_peer,
        f"restart/{initiator}".encode(),
        NOW,
        db_path=tmp_path / "securemsg.db",
        kyber_backend=kyber_backend,
    )
    try:
        conv.establish(initiator)
        conv.restart()  # right after processing the bundle: state never used yet
        sender = initiator
        rounds = 0
        while conv.sent < 1200:
            count = rnd.choice((1, 1, 1, rnd.randint(2, 12)))
            conv.burst(sender, plaintexts(rnd, count), None)
            rounds += 1
            if rounds % 5 == 0:
                conv.restart()
                conv.check_braids_in_step(initiator)
            sender = other(sender)
        _, sm_epoch, _, ls_epoch = finish_short(conv, initiator)
        assert min(sm_epoch, ls_epoch) >= 5
        mid_epoch = set(conv.restart_states) - {"keys_unsampled", "no_header_received"}
        # restarts hit partially sent / partially received payloads of every kind
        assert {"keys_sampled", "header_sent", "ct1_sampled", "ct1_acknowledged"} <= mid_epoch
        assert {"ct1_received", "ek_sent_ct1_received", "ct2_sampled"} & mid_epoch
    finally:
        conv.close()


def finish_short(conv: SpqrConversation, initiator: Role) -> tuple[str, int, str, int]:
    assert_epochs_monotone_and_gapless(conv)
    return conv.check_braids_in_step(initiator)
