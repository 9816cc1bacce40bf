"""The benchmark tools keep working: the floor is a real ratchet, the profiler runs.

Speed itself is never asserted here (benchmarks/ measures it); these only keep the tools from
rotting between benchmark runs.
"""

from __future__ import annotations

import pytest

from benchmarks import profile_rt
from benchmarks.floor import FloorPair
from benchmarks.floor_fast_routes import FastRoutesFloorPair


def test_floor_round_trips_and_ping_pong_return_the_plaintext() -> None:
    pair = FloorPair()
    for i in range(5):
        assert pair.round_trip(b"m%d" % i) == b"m%d" % i
        assert pair.ping_pong(b"p%d" % i) == b"p%d" % i


def test_floor_rejects_a_tampered_message() -> None:
    pair = FloorPair()
    wire = bytearray(pair.alice.encrypt(b"x" * 100))
    wire[-1] ^= 1
    with pytest.raises(ValueError):
        pair.bob.decrypt(bytes(wire))


def test_profile_rt_reports_calls_and_bytecodes(capsys: pytest.CaptureFixture[str]) -> None:
    assert profile_rt.main(["--top", "3"]) == 0
    out = capsys.readouterr().out
    assert "function calls" in out and "bytecodes" in out
    assert out.count("  [") >= 3


def test_fast_routes_floor_is_the_same_ratchet() -> None:
    plain, fast = FloorPair(), FastRoutesFloorPair()
    for i in range(3):
        assert fast.round_trip(b"m%d" % i) == b"m%d" % i
        assert fast.ping_pong(b"p%d" % i) == b"p%d" % i
    # Same chain state in, same bytes out: only the primitive routes differ.
    fast.alice.send_ck, fast.alice.send_pq = plain.alice.send_ck, plain.alice.send_pq
    fast.alice.dh_pub33, fast.alice.send_index = plain.alice.dh_pub33, plain.alice.send_index
    fast.alice.prev_counter = plain.alice.prev_counter
    assert fast.alice.encrypt(b"same") == plain.alice.encrypt(b"same")


def test_compare_markdown_report_lists_scenarios_and_targets() -> None:
    from benchmarks.compare import markdown_report

    stats = {"median_us": 40.0, "iqr_us": 1.0, "mb_per_s": 2.5}
    data = {
        "scenarios": {
            "rt_64kib": {"label": "1:1 RT 64 KiB", "bytes": 65536, "impls": {"securemsg": stats}}
        },
        "targets": [{"target": "t", "value": 1.25, "op": "<=", "limit": 1.3, "met": True}],
    }
    report = markdown_report(data)
    assert "| 1:1 RT 64 KiB | 40.0 [1.0] (2 MB/s) | - | - | - |" in report
    assert "| t | 1.25x | <= 1.3x | yes |" in report
