"""The peer driver: typed errors for every way a peer can break the protocol, and the
securemsg peer's answers to bad requests (an error, never a stop)."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from securemsg.interop import driver
from securemsg.interop.driver import PeerCrashed, PeerProcess, PeerRefusal
from securemsg.interop.peers import resolve_peer


def fake_peer(tmp_path: Path, body: str) -> list[str]:
    """A tiny peer: says hello correctly, then runs ``body`` for every other request."""
    script = tmp_path / "fake_peer.py"
    script.write_text(
        textwrap.dedent(
            """
            import json, sys, time
            for line in sys.stdin:
                req = json.loads(line)
                if req["op"] == "hello":
                    ans = {"id": req["id"], "ok": True, "protocol": "securemsg-interop/1",
                           "implementation": {"name": "fake"}, "capabilities": []}
                    print(json.dumps(ans), flush=True)
                    continue
            """
        )
        + textwrap.indent(textwrap.dedent(body), "    ")
    )
    return [sys.executable, str(script)]


def test_wrong_protocol_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "old.py"
    script.write_text(
        "import json,sys\n"
        "for l in sys.stdin:\n"
        "    r=json.loads(l); print(json.dumps({'id':r['id'],'ok':True,'protocol':'x/0',"
        "'capabilities':[]}),flush=True)\n"
    )
    with pytest.raises(PeerCrashed, match="speaks"):
        PeerProcess([sys.executable, str(script)], label="old").start()


def test_a_missing_program_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(PeerCrashed, match="cannot start"):
        PeerProcess([str(tmp_path / "nope")], label="nope").start()


def test_a_peer_that_dies_is_reported_with_its_stderr(tmp_path: Path) -> None:
    argv = fake_peer(tmp_path, 'sys.stderr.write("boom\\n"); sys.stderr.flush(); sys.exit(3)\n')
    with PeerProcess(argv, label="dies") as peer:
        with pytest.raises(PeerCrashed, match="exited"):
            peer.call("encrypt")
        assert not peer.alive


def test_a_silent_peer_times_out(tmp_path: Path) -> None:
    argv = fake_peer(tmp_path, "time.sleep(30)\n")
    with PeerProcess(argv, label="silent", timeout=0.5) as peer:
        with pytest.raises(PeerCrashed, match="in time"):
            peer.call("encrypt")
        assert not peer.alive


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ('print("not json", flush=True)\n', "not JSON"),
        ('print(json.dumps({"id": 999, "ok": True}), flush=True)\n', "wrong id"),
        ('print(json.dumps({"id": req["id"]}), flush=True)\n', "no ok/error"),
        (
            'print(json.dumps({"id": req["id"], "ok": False, "error": {"kind": "x"}}),'
            " flush=True)\n",
            "unknown error kind",
        ),
    ],
)
def test_bad_answers_are_protocol_errors(tmp_path: Path, body: str, match: str) -> None:
    with (
        PeerProcess(fake_peer(tmp_path, body), label="bad") as peer,
        pytest.raises(PeerCrashed, match=match),
    ):
        peer.call("encrypt")


def test_an_answer_line_over_the_limit_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(driver, "MAX_LINE", 1000)
    body = 'print(json.dumps({"id": req["id"], "ok": True, "pad": "x" * 5000}), flush=True)\n'
    with (
        PeerProcess(fake_peer(tmp_path, body), label="long") as peer,
        pytest.raises(PeerCrashed, match="longer than"),
    ):
        peer.call("encrypt")


def test_the_securemsg_peer_answers_bad_requests_and_keeps_going() -> None:
    with PeerProcess(resolve_peer("securemsg"), label="securemsg") as peer:
        assert "sealed_v2" in peer.capabilities
        with pytest.raises(PeerRefusal) as unknown:
            peer.call("no_such_op")
        assert unknown.value.kind == "unsupported"
        with pytest.raises(PeerRefusal) as missing:
            peer.call("encrypt", party="nobody")
        assert missing.value.kind == "internal"
        name = "3a1f8d4e-5b6c-4d7e-8f90-a1b2c3d4e5f6"
        peer.call("create_party", party="p", name=name, device=1)
        with pytest.raises(PeerRefusal) as garbage:
            peer.call(
                "decrypt",
                party="p",
                remote={"name": name, "device": 2},
                type=2,
                body=driver.b64(b"\x44garbage"),
            )
        assert garbage.value.kind == "refused"
        assert peer.call("hello")["protocol"] == driver.PROTOCOL


def test_the_securemsg_peer_uses_only_the_public_api() -> None:
    import ast

    from securemsg.interop import peer as peer_module

    tree = ast.parse(Path(peer_module.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("securemsg"):
            assert node.module == "securemsg", f"peer imports {node.module}"
        if isinstance(node, ast.Import):
            assert all(not a.name.startswith("securemsg") for a in node.names)


def test_a_peer_that_crashes_fails_one_call_and_is_restarted(tmp_path: Path) -> None:
    from securemsg.interop.runner import run_suite
    from securemsg.interop.scenarios import Params

    crash = tmp_path / "crash_peer.py"
    crash.write_text(
        "import sys\n"
        "from securemsg.interop.peer import SecuremsgPeer, main\n"
        "class Crash(SecuremsgPeer):\n"
        "    def op_fingerprint(self, args):\n"
        "        sys.exit(9)\n"
        "main(Crash)\n"
    )
    report = run_suite(
        ("securemsg", resolve_peer("securemsg")),
        ("crash", (sys.executable, str(crash))),
        only=["fingerprint", "groups"],
        seed=3,
        params=Params(fingerprint_iterations=10, group_messages=3),
    )
    status = {(r.scenario, r.role): r.status for r in report.results}
    assert status[("fingerprint", "A->B")] == "fail"
    assert status[("fingerprint", "B->A")] == "fail"
    assert status[("groups", "A->B")] == "pass"
    assert status[("groups", "B->A")] == "pass"
    failed = next(r for r in report.results if r.status == "fail")
    assert failed.divergence is not None and "broke the protocol" in failed.divergence


def test_the_securemsg_peer_refuses_deep_nesting_and_over_long_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JSON nested too deep raised RecursionError (a traceback; the peer stopped answering),
    and one huge line was held whole in memory. Both get an error answer now, and the peer
    goes on."""
    import io
    import json

    from securemsg.interop import peer as peer_module

    monkeypatch.setattr(peer_module, "MAX_REQUEST_LINE", 1_000_000)
    requests = "[" * 200_000 + "\n" + '{"id": 1, "op": "' + "x" * 1_500_000 + '"}\n'
    requests += json.dumps({"id": 2, "op": "hello"}) + "\n"
    out = io.StringIO()
    peer_module.SecuremsgPeer(tmp_path).serve(io.StringIO(requests), out)
    answers = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [a["ok"] for a in answers] == [False, False, True]
    assert answers[0]["error"]["message"] == "bad JSON"
    assert answers[1]["error"]["message"] == "line too long"
    assert answers[2]["id"] == 2


def test_an_answer_nested_too_deep_is_a_protocol_error(tmp_path: Path) -> None:
    body = 'print("[" * 200000, flush=True)\n'
    with (
        PeerProcess(fake_peer(tmp_path, body), label="deep") as peer,
        pytest.raises(PeerCrashed, match="not JSON"),
    ):
        peer.call("encrypt")
