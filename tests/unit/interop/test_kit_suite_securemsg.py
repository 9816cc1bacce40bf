"""securemsg against securemsg: every scenario passes in both roles, and a seed reproduces a run.

Small sizes keep the run short; the forward-jump scenario runs at its real limit (25 000).
"""

from __future__ import annotations

import pytest

from securemsg.interop.peers import resolve_peer
from securemsg.interop.runner import ROLES, Report, run_suite
from securemsg.interop.scenarios import SCENARIOS, Params

SMALL = Params(
    conversation_messages=30,
    out_of_order_burst=12,
    large_message_bytes=64 * 1024,
    spqr_round_trips=45,
    group_messages=8,
    restart_messages=4,
    fingerprint_iterations=100,
)


@pytest.fixture(scope="module")
def report() -> Report:
    peer = ("securemsg", resolve_peer("securemsg"))
    return run_suite(peer, peer, seed=20261207, params=SMALL)


def test_every_scenario_passes_in_both_roles(report: Report) -> None:
    seen = {(r.scenario, r.role): r for r in report.results}
    assert set(seen) == {(name, role) for name in SCENARIOS for role in ROLES}
    failures = [(r.scenario, r.role, r.divergence) for r in report.results if r.status != "pass"]
    assert failures == []
    assert report.ok
    assert report.counts() == {"pass": 2 * len(SCENARIOS), "fail": 0, "unsupported": 0}


def test_the_suite_covers_the_issue_list() -> None:
    assert {
        "setup_with_otpk",
        "setup_without_otpk",
        "long_conversation",
        "out_of_order",
        "duplicate",
        "tamper",
        "session_reset",
        "identity_change",
        "large_message",
        "forward_jump",
        "spqr_epochs",
        "restart",
        "sealed_v1",
        "sealed_v2",
        "groups",
        "fingerprint",
    } <= set(SCENARIOS)


def test_the_peer_reports_its_implementation(report: Report) -> None:
    assert report.peer_a["implementation"]["name"] == "securemsg"
    assert "snapshot" in report.peer_a["capabilities"]
