"""The whole scenario suite through the kit's runner with the libsignal peer on one side.

* libsignal against libsignal: the kit checks itself; every scenario passes in both roles
  (a scenario that failed here would be wrong about libsignal, not about a peer).
* securemsg against libsignal: every scenario passes in both roles (each role has securemsg
  initiate once and answer once).
* the minimal example peer (examples/minimal_peer.py) against libsignal: set-up and 1:1
  scenarios pass, every scenario needing a capability it lacks is "not supported", none fails.

Small sizes keep the runs short; the forward-jump scenario runs at its real limit (25 000).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from securemsg.interop.peers import LIBSIGNAL_VERSION, PeerUnavailable, resolve_peer
from securemsg.interop.runner import ROLES, Report, run_suite
from securemsg.interop.scenarios import SCENARIOS, Params

pytestmark = pytest.mark.interop

SMALL = Params(
    conversation_messages=40,
    out_of_order_burst=16,
    tamper_positions=6,
    large_message_bytes=128 * 1024,
    spqr_round_trips=45,
    group_messages=10,
    restart_messages=6,
    fingerprint_iterations=100,
)
MINIMAL_PEER = Path(__file__).resolve().parents[2] / "examples" / "minimal_peer.py"
# What the minimal example can do: hello, parties, bundles, encrypt and decrypt.
MINIMAL_PASSES = {
    "setup_with_otpk",
    "setup_without_otpk",
    "long_conversation",
    "out_of_order",
    "large_message",
    "spqr_epochs",
}


def _peer(spec: str) -> tuple[str, tuple[str, ...]]:
    try:
        return spec, resolve_peer(spec)
    except PeerUnavailable as exc:
        pytest.fail(f"peer {spec} cannot run: {exc}", pytrace=False)


def _failures(report: Report) -> list[tuple[str, str, str | None]]:
    return [(r.scenario, r.role, r.divergence) for r in report.results if r.status != "pass"]


def _assert_all_pass(report: Report) -> None:
    assert {(r.scenario, r.role) for r in report.results} == {
        (name, role) for name in SCENARIOS for role in ROLES
    }
    assert _failures(report) == []
    assert report.ok


def test_libsignal_against_libsignal_passes_every_scenario_in_both_roles() -> None:
    peer = _peer("libsignal")
    report = run_suite(peer, peer, seed=1207, params=SMALL, timeout=300.0)
    _assert_all_pass(report)
    for side in (report.peer_a, report.peer_b):
        assert side["implementation"] == {"name": "libsignal", "version": LIBSIGNAL_VERSION}


def test_securemsg_against_libsignal_passes_every_scenario_in_both_roles() -> None:
    report = run_suite(
        _peer("securemsg"), _peer("libsignal"), seed=2026, params=SMALL, timeout=300.0
    )
    _assert_all_pass(report)
    assert report.peer_a["implementation"]["name"] == "securemsg"


def test_the_minimal_example_passes_set_up_and_messages_and_is_not_supported_elsewhere() -> None:
    example = (str(MINIMAL_PEER), (sys.executable, str(MINIMAL_PEER)))
    report = run_suite(example, _peer("libsignal"), seed=7, params=SMALL, timeout=300.0)
    status = {(r.scenario, r.role): r.status for r in report.results}
    assert {key for key, s in status.items() if s == "pass"} == {
        (name, role) for name in MINIMAL_PASSES for role in ROLES
    }
    assert {key for key, s in status.items() if s == "unsupported"} == {
        (name, role) for name in set(SCENARIOS) - MINIMAL_PASSES for role in ROLES
    }
    assert report.ok  # "not supported" is not a failure
    assert report.peer_a["capabilities"] == []
    unsupported = [r for r in report.results if r.status == "unsupported"]
    assert all(r.divergence and "lacks" in r.divergence for r in unsupported)
