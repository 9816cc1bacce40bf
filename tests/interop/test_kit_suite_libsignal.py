"""The interop kit against the libsignal 0.103.0 peer (peers/libsignal): securemsg vs libsignal
and libsignal vs libsignal pass every scenario in both roles, and the broken peers are caught
against libsignal too.

These never skip: a missing Node or package FAILS with the reason (``securemsg interop peers``
says how to get it). Sizes are small; the forward-jump scenario runs at its real limit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from securemsg.interop.peers import PeerUnavailable, resolve_peer
from securemsg.interop.runner import ROLES, Report, run_suite
from securemsg.interop.scenarios import SCENARIOS, Params

pytestmark = pytest.mark.interop

SMALL = Params(
    conversation_messages=40,
    out_of_order_burst=15,
    large_message_bytes=64 * 1024,
    spqr_round_trips=45,
    group_messages=10,
    restart_messages=4,
    fingerprint_iterations=100,
)
BROKEN = Path(__file__).resolve().parents[1] / "unit" / "interop" / "broken_peers.py"


def libsignal() -> tuple[str, tuple[str, ...]]:
    try:
        return ("libsignal", resolve_peer("libsignal"))
    except PeerUnavailable as exc:
        pytest.fail(f"libsignal interop peer unavailable: {exc}", pytrace=False)


def assert_all_pass(report: Report) -> None:
    seen = {(r.scenario, r.role) for r in report.results}
    assert seen == {(name, role) for name in SCENARIOS for role in ROLES}
    problems = [
        (r.scenario, r.role, r.status, r.divergence) for r in report.results if r.status != "pass"
    ]
    assert problems == [], report.results[0].stderr


def test_securemsg_against_libsignal_passes_everything() -> None:
    report = run_suite(("securemsg", resolve_peer("securemsg")), libsignal(), seed=11, params=SMALL)
    assert_all_pass(report)
    assert report.peer_b["implementation"].get("version") == "0.103.0"


def test_libsignal_against_libsignal_passes_everything() -> None:
    assert_all_pass(run_suite(libsignal(), libsignal(), seed=12, params=SMALL))


@pytest.mark.parametrize(
    ("kind", "target"),
    [
        ("accept_tampered", "tamper"),
        ("accept_any_certificate", "sealed_v1"),
        ("wrong_fingerprint", "fingerprint"),
    ],
)
def test_broken_peers_are_caught_against_libsignal(kind: str, target: str) -> None:
    report = run_suite(
        libsignal(),
        (f"broken:{kind}", (sys.executable, str(BROKEN), kind)),
        only=[target],
        seed=13,
        params=SMALL,
    )
    assert any(r.status == "fail" for r in report.results), report.to_json()
