"""Each deliberately broken peer (broken_peers.py) is caught by the scenario that targets it.

The broken peer plays B against a correct securemsg peer A. The targeted scenario must fail in
the role where the broken peer receives (A initiates, ``A->B``) -- or, for fingerprints and
identity changes, wherever the broken code runs -- while plain set-up still passes, so the
failure comes from the broken check and not from a peer that does not work at all.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from broken_peers import TARGETS

from securemsg.interop.peers import resolve_peer
from securemsg.interop.runner import run_suite
from securemsg.interop.scenarios import Params

BROKEN = Path(__file__).resolve().parent / "broken_peers.py"
SMALL = Params(
    conversation_messages=10,
    out_of_order_burst=6,
    large_message_bytes=4096,
    spqr_round_trips=45,
    group_messages=5,
    restart_messages=2,
    fingerprint_iterations=50,
)


@pytest.mark.parametrize("kind", sorted(TARGETS))
def test_broken_peer_is_caught_by_its_scenario(kind: str) -> None:
    target = TARGETS[kind]
    report = run_suite(
        ("securemsg", resolve_peer("securemsg")),
        (f"broken:{kind}", (sys.executable, str(BROKEN), kind)),
        only=["setup_with_otpk", target],
        seed=7,
        params=SMALL,
    )
    by = {(r.scenario, r.role): r for r in report.results}
    assert by[("setup_with_otpk", "A->B")].status == "pass"
    assert by[("setup_with_otpk", "B->A")].status == "pass"
    failed = [r for r in report.results if r.scenario == target and r.status == "fail"]
    assert failed, f"{target} did not catch {kind}: {report.to_json()['results']}"
    assert all(r.divergence for r in failed)
    assert not report.ok


def test_at_least_five_kinds_of_breakage() -> None:
    assert len(TARGETS) >= 5
    assert len(set(TARGETS.values())) >= 5
