"""The SPQR symmetric chain (protocol/spqr/chain.py), recomputed by hand from the labels."""

from __future__ import annotations

import pytest
from spqr_helpers import AUTH_KEY, hkdf

from securemsg.errors import InvalidMessageError
from securemsg.protocol.spqr.chain import Chain


def manual_keys(seed: bytes, count: int) -> list[bytes]:
    keys, nxt = [], seed
    for ctr in range(1, count + 1):
        o = hkdf(nxt, None, ctr.to_bytes(4, "big") + b"Signal PQ Ratchet V1 Chain Next", 64)
        nxt = o[:32]
        keys.append(o[32:])
    return keys


def test_start_and_steps_match_manual_kdf() -> None:
    g = hkdf(AUTH_KEY, bytes(32), b"Signal PQ Ratchet V1 Chain  Start", 96)
    a = Chain.start(AUTH_KEY, True, 25_000, 2_000)
    b = Chain.start(AUTH_KEY, False, 25_000, 2_000)
    assert a.next_root == g[:32]
    want_a2b = manual_keys(g[32:64], 3)
    want_b2a = manual_keys(g[64:96], 2)
    for i, want in enumerate(want_a2b, start=1):
        a, idx, key = a.send_key(0)
        assert (idx, key) == (i, want)
        b, got = b.recv_key(0, i)
        assert got == want
    b, idx, key = b.send_key(0)
    assert (idx, key) == (1, want_b2a[0])


def test_add_epoch_matches_manual_kdf() -> None:
    secret = bytes([7]) * 32
    a = Chain.start(AUTH_KEY, True, 25_000, 2_000)
    g0 = hkdf(AUTH_KEY, None, b"Signal PQ Ratchet V1 Chain  Start", 96)
    g1 = hkdf(secret, g0[:32], b"Signal PQ Ratchet V1 Chain Add Epoch", 96)
    a = a.add_epoch(1, secret)
    assert a.current_epoch == 1 and a.next_root == g1[:32]
    a, idx, key = a.send_key(1)
    assert (idx, key) == (1, manual_keys(g1[32:64], 1)[0])
    b = Chain.start(AUTH_KEY, False, 25_000, 2_000).add_epoch(1, secret)
    _, got = b.recv_key(1, 1)
    assert got == key


def test_out_of_order_within_window_and_duplicates_refused() -> None:
    a = Chain.start(AUTH_KEY, True, 25_000, 5)
    b = Chain.start(AUTH_KEY, False, 25_000, 5)
    keys = {}
    for _ in range(10):
        a, i, k = a.send_key(0)
        keys[i] = k
    b, k = b.recv_key(0, 8)
    assert k == keys[8]
    for i in (3, 4, 7, 5):
        b, k = b.recv_key(0, i)
        assert k == keys[i]
    for i in (8, 3):
        with pytest.raises(InvalidMessageError):
            b.recv_key(0, i)
    with pytest.raises(InvalidMessageError):  # trimmed: 2 + 5 < 8
        b.recv_key(0, 2)
    b, k = b.recv_key(0, 10)
    assert k == keys[10]
    b, k = b.recv_key(0, 9)
    assert k == keys[9]


def test_jump_limit_and_unknown_epoch() -> None:
    b = Chain.start(AUTH_KEY, False, 10, 2_000)
    with pytest.raises(InvalidMessageError):
        b.recv_key(0, 11)
    b.recv_key(0, 10)
    with pytest.raises(InvalidMessageError):
        b.recv_key(1, 1)


def test_history_gc_keeps_exactly_the_window() -> None:
    a = Chain.start(AUTH_KEY, True, 25_000, 10)
    b = Chain.start(AUTH_KEY, False, 25_000, 10)
    keys = {}
    for _ in range(40):
        a, i, k = a.send_key(0)
        keys[i] = k
    b, _ = b.recv_key(0, 12)
    b, _ = b.recv_key(0, 25)  # 13..24 skipped; only >= 15 kept
    assert sorted(b.links[0].recv.history) == list(range(15, 25))
    with pytest.raises(InvalidMessageError):
        b.recv_key(0, 14)
    _, k = b.recv_key(0, 15)
    assert k == keys[15]


def test_send_epoch_advance_drops_old_links_and_wipes_send_halves() -> None:
    a = Chain.start(AUTH_KEY, True, 25_000, 2_000)
    for e in (1, 2):
        a = a.add_epoch(e, bytes([e]) * 32)
    assert len(a.links) == 3
    a, _, _ = a.send_key(2)
    assert len(a.links) == 2 and a.send_epoch == 2
    assert a.links[0].send.next == b"" and a.links[1].send.next != b""
    # receiving on the kept older epoch still works; on the dropped one it does not
    a.recv_key(1, 1)
    with pytest.raises(InvalidMessageError):
        a.recv_key(0, 1)


def test_chain_objects_are_not_mutated() -> None:
    a = Chain.start(AUTH_KEY, False, 25_000, 2_000)
    before = (a.links[0].recv.ctr, dict(a.links[0].recv.history))
    a2, _ = a.recv_key(0, 5)
    a2.recv_key(0, 3)
    assert (a.links[0].recv.ctr, dict(a.links[0].recv.history)) == before
