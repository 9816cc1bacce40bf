"""``securemsg interop run|peers`` through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from securemsg.cli.main import cli


def test_run_prints_the_table_and_writes_reports(tmp_path: Path) -> None:
    out_json = tmp_path / "r.json"
    out_xml = tmp_path / "r.xml"
    result = CliRunner().invoke(
        cli,
        [
            "interop", "run", "--a", "securemsg", "--b", "securemsg",
            "--only", "setup_with_otpk,fingerprint", "--seed", "9",
            "--json", str(out_json), "--junit", str(out_xml),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "setup_with_otpk" in result.output and "fingerprint" in result.output
    assert "4 passed, 0 failed, 0 not supported" in result.output
    report = json.loads(out_json.read_text())
    assert report["seed"] == 9
    assert [r["status"] for r in report["results"]] == ["pass"] * 4
    assert out_xml.read_bytes().startswith(b"<?xml")


def test_a_report_is_never_written_through_a_symbolic_link(tmp_path: Path) -> None:
    """In a shared directory another user could point the report's name at a file of ours
    (say ~/.profile) to have it overwritten: the run refuses instead."""
    precious = tmp_path / "precious"
    precious.write_text("keep me\n")
    link = tmp_path / "report.json"
    link.symlink_to(precious)
    result = CliRunner().invoke(
        cli,
        [
            "interop", "run", "--a", "securemsg", "--b", "securemsg",
            "--only", "fingerprint", "--seed", "9", "--json", str(link),
        ],
    )  # fmt: skip
    assert result.exit_code == 1 and "symbolic link" in result.output
    assert precious.read_text() == "keep me\n"


def test_a_failing_run_exits_1(tmp_path: Path) -> None:
    broken = Path(__file__).resolve().parent / "broken_peers.py"
    import sys

    result = CliRunner().invoke(
        cli,
        [
            "interop", "run", "--a", "securemsg",
            "--b", f"{sys.executable} {broken} wrong_fingerprint",
            "--only", "fingerprint", "--seed", "1",
        ],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output and "fingerprints differ" in result.output


def test_unknown_scenario_is_a_usage_error() -> None:
    result = CliRunner().invoke(
        cli, ["interop", "run", "--a", "securemsg", "--b", "securemsg", "--only", "nope"]
    )
    assert result.exit_code == 2
    assert "unknown scenario" in result.output


def test_missing_libsignal_peer_says_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECUREMSG_LIBSIGNAL_PEER", str(tmp_path / "absent"))
    result = CliRunner().invoke(cli, ["interop", "run", "--a", "securemsg", "--b", "libsignal"])
    assert result.exit_code == 1
    assert "--libsignal-dir" in result.output
    peers = CliRunner().invoke(cli, ["interop", "peers"])
    assert peers.exit_code == 1
    assert "securemsg" in peers.output and "missing" in peers.output
