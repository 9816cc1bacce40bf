"""The minimal example peer (examples/minimal_peer.py) through the kit's runner against libsignal.

It passes the set-up and 1:1 scenarios; every scenario needing a capability it lacks is "not
supported", and none fails. (securemsg vs libsignal and libsignal vs libsignal over the whole
suite are in test_kit_suite_libsignal.py.)
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from securemsg.interop.peers import PeerUnavailable, resolve_peer
from securemsg.interop.runner import ROLES, run_suite
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


def test_the_minimal_example_answers_ops_it_lacks_with_unsupported() -> None:
    lines = [
        {"id": 1, "op": "hello"},
        {"id": 2, "op": "create_party", "party": "p", "name": "n", "device": 1},
        {"id": 3, "op": "snapshot", "party": "p", "remote": {"name": "m", "device": 1}},
        {"id": 4, "op": "encrypt", "party": "nobody", "remote": {"name": "m", "device": 1}},
        {
            "id": 5,
            "op": "encrypt",
            "party": "p",
            "remote": {"name": "m", "device": 1},
            "plaintext": "",
        },
    ]
    proc = subprocess.run(
        [sys.executable, str(MINIMAL_PEER)],
        input="".join(json.dumps(line) + "\n" for line in lines),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    answers = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [a["id"] for a in answers] == [1, 2, 3, 4, 5]
    assert [a["ok"] for a in answers] == [True, True, False, False, False]
    assert [a["error"]["kind"] for a in answers[2:]] == ["unsupported", "internal", "refused"]
