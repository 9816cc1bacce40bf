"""The libsignal peer's transport (peers/libsignal/peer.mjs): lines, ids, bad input, exit.

These run the Node peer as a plain process with a whole stdin prepared in advance, so they see
exactly what it writes (the kit's driver would stop at the first broken answer): one JSON
answer per request line, in order, nothing else on stdout, errors of the protocol's kinds, a
too-long line refused without stopping the peer, exit status 0 when stdin closes.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from securemsg.interop.driver import ERROR_KINDS
from securemsg.interop.peers import PeerUnavailable, resolve_peer

pytestmark = pytest.mark.interop


def _run(lines: list[bytes], *args: str, cwd: Path) -> tuple[int, list[dict[str, Any]], str]:
    try:
        argv = resolve_peer("libsignal")
    except PeerUnavailable as exc:
        pytest.fail(f"the kit's libsignal peer cannot run: {exc}", pytrace=False)
    proc = subprocess.run(
        [*argv, *args],
        input=b"".join(lines),
        capture_output=True,
        cwd=cwd,
        env={**os.environ, "SECUREMSG_INTEROP_STATE_DIR": str(cwd)},
        timeout=300,
        check=False,
    )
    out = proc.stdout.decode("utf-8")
    assert out == "" or out.endswith("\n")
    answers = [json.loads(line) for line in out.splitlines()]
    return proc.returncode, answers, proc.stderr.decode("utf-8", "replace")


def _req(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode() + b"\n"


def test_one_answer_per_request_in_order_then_exit_zero(tmp_path: Path) -> None:
    lines = [_req({"id": i, "op": "hello"}) for i in range(1, 6)]
    code, answers, stderr = _run(lines, cwd=tmp_path)
    assert code == 0, stderr
    assert [a["id"] for a in answers] == [1, 2, 3, 4, 5]
    assert all(a["ok"] is True and a["protocol"] == "securemsg-interop/1" for a in answers)
    assert "ready" in stderr  # logs go to stderr, never stdout


def test_bad_lines_get_internal_errors_and_the_peer_goes_on(tmp_path: Path) -> None:
    lines = [
        b"this is not json\n",
        b"[1, 2, 3]\n",
        b"\n",  # blank lines are not requests
        _req({"id": 7, "op": "create_party", "party": "p", "name": "n", "device": 1})[:-1]
        + b"\r\n",  # CRLF is accepted
        _req({"id": 8, "op": "encrypt", "party": "p", "remote": {"name": "q", "device": 1}}),
        _req({"id": 9, "op": "beam_me_up"}),
        _req({"id": 10, "op": "hello"}),
    ]
    code, answers, _ = _run(lines, cwd=tmp_path)
    assert code == 0
    assert [a["id"] for a in answers] == [None, None, 7, 8, 9, 10]
    kinds = [a["error"]["kind"] if not a["ok"] else "ok" for a in answers]
    assert kinds == ["internal", "internal", "ok", "internal", "unsupported", "ok"]
    for a in answers:
        if not a["ok"]:
            assert a["error"]["kind"] in ERROR_KINDS
            assert isinstance(a["error"]["message"], str) and a["error"]["message"]


def test_a_line_over_the_limit_is_refused_and_skipped(tmp_path: Path) -> None:
    huge = _req({"id": 2, "op": "hello", "padding": "x" * 5000})
    lines = [_req({"id": 1, "op": "hello"}), huge, huge, _req({"id": 3, "op": "hello"})]
    code, answers, _ = _run(lines, "--max-line-bytes", "1000", cwd=tmp_path)
    assert code == 0
    assert [a["id"] for a in answers] == [1, None, None, 3]
    assert [a["ok"] for a in answers] == [True, False, False, True]
    assert answers[1]["error"]["kind"] == "internal"
    assert "1000" in answers[1]["error"]["message"]


def test_a_last_line_without_newline_is_still_answered(tmp_path: Path) -> None:
    code, answers, _ = _run([_req({"id": 1, "op": "hello"})[:-1]], cwd=tmp_path)
    assert code == 0
    assert [a["id"] for a in answers] == [1]


def test_restart_writes_its_state_file_in_the_kit_state_dir(tmp_path: Path) -> None:
    lines = [
        _req({"id": 1, "op": "create_party", "party": "p", "name": "n", "device": 1}),
        _req({"id": 2, "op": "restart"}),
        _req({"id": 3, "op": "snapshot", "party": "p", "remote": {"name": "m", "device": 1}}),
    ]
    code, answers, _ = _run(lines, cwd=tmp_path)
    assert code == 0
    assert [a["ok"] for a in answers] == [True, True, True]
    state = json.loads((tmp_path / "libsignal-peer-state.json").read_text())
    assert list(state["parties"]) == ["p"]


def test_an_unknown_command_line_argument_stops_with_status_2(tmp_path: Path) -> None:
    code, answers, stderr = _run([], "--frobnicate", cwd=tmp_path)
    assert code == 2
    assert answers == []
    assert "--frobnicate" in stderr


_OPS = [
    "create_party",
    "create_bundle",
    "process_bundle",
    "encrypt",
    "decrypt",
    "encrypt_many",
    "snapshot",
    "has_session",
    "archive_session",
    "restart",
    "reset_identity",
    "trust",
    "ss_create_issuer",
    "ss_issue_sender_certificate",
    "ss_encrypt",
    "ss_decrypt",
    "ss_multi_encrypt",
    "ss_multi_split",
    "group_create",
    "group_process",
    "group_encrypt",
    "group_decrypt",
    "fingerprint",
]
_FIELDS = [
    "party",
    "name",
    "device",
    "registration_id",
    "pre_key_id",
    "signed_pre_key_id",
    "kyber_pre_key_id",
    "remote",
    "bundle",
    "plaintext",
    "type",
    "body",
    "count",
    "keep",
    "identity_key",
    "issuer",
    "key_id",
    "sender_uuid",
    "sender_device",
    "expiration_ms",
    "sender_e164",
    "sender_certificate",
    "trust_root",
    "now_ms",
    "distribution_id",
    "recipients",
    "group_id",
    "sender",
    "skdm",
    "version",
    "iterations",
    "local_id",
    "local_key",
    "remote_id",
    "remote_key",
]
_GARBAGE: tuple[Any, ...] = (
    None,
    -1,
    2**60,
    1.5,
    "",
    "!!not base64",
    "AAAA",
    [],
    [{"name": 1}],
    {},
    {"name": "x", "device": 1},
    True,
)


def test_hostile_requests_get_one_error_each_and_never_stop_the_peer(tmp_path: Path) -> None:
    """Every op with every field set to each kind of garbage, after a real party exists."""
    lines = [_req({"id": 0, "op": "create_party", "party": "p", "name": "n", "device": 1})]
    n = 0
    for op in _OPS:
        for i, junk in enumerate(_GARBAGE):
            n += 1
            request: dict[str, Any] = {"id": n, "op": op}
            request.update({field: junk for field in _FIELDS})
            if i % 2:
                request["party"] = "p"  # get past the party lookup into the op itself
            lines.append(_req(request))
    lines.append(_req({"id": n + 1, "op": "hello"}))
    code, answers, stderr = _run(lines, cwd=tmp_path)
    assert code == 0, stderr
    assert [a["id"] for a in answers] == list(range(n + 2))
    assert answers[-1]["ok"] is True
    for a in answers[1:-1]:
        if not a["ok"]:
            assert a["error"]["kind"] in ERROR_KINDS - {"unsupported"}
