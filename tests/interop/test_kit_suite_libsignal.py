"""The interop kit against the libsignal 0.103.0 peer (peers/libsignal).

securemsg vs libsignal: one test per scenario and role, at the sizes the README's capability
table claims (:data:`FULL`); the suite runs once per scenario (both roles) and each test reads
its own result, so a failure names the scenario, who initiated and the scenario's words for the
difference. libsignal vs libsignal must pass everything too (the kit checking itself, at small
sizes), and the broken peers are caught against libsignal.

These never skip: a missing Node or package FAILS with the reason (``securemsg interop peers``
says how to get it).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from securemsg.interop.peers import LIBSIGNAL_VERSION, PeerUnavailable, resolve_peer
from securemsg.interop.runner import ROLES, Report, run_suite
from securemsg.interop.scenarios import SCENARIOS, Params

pytestmark = pytest.mark.interop

#: securemsg vs libsignal. The README's claims rest on these sizes: 2000-message conversations,
#: a 1500-message chain whose last message arrives first (1499 keys skipped, under the
#: 2000-key limit), 40 random bit flips per tampered message, 170 group messages from each of
#: three members (510), 100 random fingerprint pairs; the forward jump runs at its real limit.
FULL = Params(
    conversation_messages=2000,
    out_of_order_burst=1500,
    tamper_positions=40,
    large_message_bytes=1024 * 1024,
    spqr_round_trips=200,
    group_messages=170,
    restart_messages=40,
    fingerprint_iterations=5200,
    fingerprint_pairs=100,
)
SMALL = Params(
    conversation_messages=40,
    out_of_order_burst=15,
    large_message_bytes=64 * 1024,
    spqr_round_trips=45,
    group_messages=10,
    restart_messages=4,
    fingerprint_iterations=100,
    fingerprint_pairs=3,
)
BROKEN = Path(__file__).resolve().parents[1] / "unit" / "interop" / "broken_peers.py"
#: Role A->B: securemsg (peer A) initiates; B->A: libsignal does.
INITIATOR = {"A->B": "securemsg", "B->A": "libsignal"}


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


@pytest.fixture(scope="module")
def securemsg_vs_libsignal() -> Iterator[Callable[[str], Report]]:
    """The report of one scenario between securemsg (A) and libsignal (B), both roles: run on
    first use, then kept for the other role's test."""
    reports: dict[str, Report] = {}

    def report(name: str) -> Report:
        if name not in reports:
            reports[name] = run_suite(
                ("securemsg", resolve_peer("securemsg")),
                libsignal(),
                only=[name],
                seed=11,
                params=FULL,
            )
        return reports[name]

    yield report


@pytest.mark.parametrize(
    ("scenario", "role"),
    [(name, role) for name in SCENARIOS for role in ROLES],
    ids=[f"{name}-{INITIATOR[role]}-initiates" for name in SCENARIOS for role in ROLES],
)
def test_securemsg_against_libsignal(
    securemsg_vs_libsignal: Callable[[str], Report], scenario: str, role: str
) -> None:
    report = securemsg_vs_libsignal(scenario)
    assert report.peer_b["implementation"].get("version") == LIBSIGNAL_VERSION
    [result] = [r for r in report.results if r.role == role]
    if result.status != "pass":
        pytest.fail(
            f"{scenario}, {INITIATOR[role]} initiating: {result.status}: {result.divergence}"
            + (f"\n{result.stderr}" if result.stderr else ""),
            pytrace=False,
        )


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
