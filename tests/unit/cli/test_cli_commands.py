"""The `securemsg` command through click's CliRunner: demo, disclose, client commands, errors."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from securemsg.cli.main import cli, main
from securemsg.relay.server import RelayServer


def test_demo_runs_end_to_end_and_prints_views_and_disclosure() -> None:
    result = CliRunner().invoke(cli, ["demo"])
    assert result.exit_code == 0, result.output
    out = result.output
    for name in ("Alice's inbox", "Bob's inbox", "Carol's inbox"):
        assert name in out
    for text in (
        "Hi Bob! Lunch tomorrow?",
        "Sure, 12:30 at the usual place.",
        "Hike on Saturday? Meet at 9.",
        "I'm in, I'll bring snacks.",
    ):
        assert text in out
    assert "Disclosure report for account" in out
    assert "Not held by the relay" in out
    assert "Signal" in out


def test_demo_runs_on_postgres_and_relay_serve_takes_a_postgres_url(pg_url: str) -> None:
    result = CliRunner().invoke(cli, ["demo", "--db", pg_url])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "PostgreSQL database" in out and "Count me in too." in out
    assert "Disclosure report for account" in out
    assert "does not overwrite deleted rows" in out  # said honestly for PostgreSQL
    bad = CliRunner().invoke(cli, ["demo", "--db", "relay.db"])
    assert bad.exit_code != 0 and "postgresql://" in bad.output
    aci = next(line.split()[-1] for line in out.splitlines() if "Disclosure report" in line)
    report = CliRunner().invoke(cli, ["relay", "disclose", "--db", pg_url, "--account", aci])
    assert report.exit_code == 0, report.output
    assert "Account created (date only)" in report.output


def test_walkthrough_still_runs() -> None:
    result = CliRunner().invoke(cli, ["walkthrough", "--messages", "2", "--seed", "cli"])
    assert result.exit_code == 0, result.output
    assert "Alice" in result.output and "reads" in result.output


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["demo"],
        ["walkthrough"],
        ["relay"],
        ["relay", "serve"],
        ["relay", "disclose"],
        ["client"],
        ["client", "register"],
        ["client", "send"],
        ["client", "receive"],
        ["client", "chat"],
        ["client", "whoami"],
        ["client", "add-contact"],
    ],
)
def test_every_command_explains_itself(args: list[str]) -> None:
    result = CliRunner().invoke(cli, [*args, "--help"])
    assert result.exit_code == 0
    assert "Usage:" in result.output and len(result.output.splitlines()) > 3


class _RelayThread:
    """A relay on loopback in its own thread and event loop (the CLI runs asyncio.run)."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.ready = threading.Event()
        self.url = ""
        self.trust_root = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with RelayServer(self.db) as relay:
            self.url = relay.url
            self.trust_root = relay.trust_root_public.to_bytes().hex()
            self.ready.set()
            await self._stop.wait()

    def __enter__(self) -> _RelayThread:
        self._thread.start()
        assert self.ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture
def relay_thread(tmp_path: Path) -> Iterator[_RelayThread]:
    with _RelayThread(tmp_path / "relay.db") as r:
        yield r


def test_two_homes_talk_through_a_running_relay_and_disclose_json(
    tmp_path: Path, relay_thread: _RelayThread
) -> None:
    runner = CliRunner()
    cards = {}
    for name in ("a", "b"):
        r = runner.invoke(
            cli,
            [
                "client",
                "register",
                "--home",
                str(tmp_path / name),
                "--relay",
                relay_thread.url,
                "--trust-root",
                relay_thread.trust_root,
            ],
        )
        assert r.exit_code == 0, r.output
        cards[name] = r.output.split("contact card: ")[1].strip()
    bob_aci = cards["b"].split(":")[0]
    r = runner.invoke(
        cli, ["client", "send", "--home", str(tmp_path / "a"), "--to", cards["b"], "hello from a"]
    )
    assert r.exit_code == 0, r.output
    assert "sealed" in r.output
    r = runner.invoke(cli, ["client", "receive", "--home", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert "hello from a" in r.output and "(sealed)" in r.output
    r = runner.invoke(cli, ["client", "receive", "--home", str(tmp_path / "b")])
    assert "no new messages" in r.output  # shown exactly once

    r = runner.invoke(
        cli,
        [
            "relay",
            "disclose",
            "--db",
            str(relay_thread.db),
            "--account",
            bob_aci,
            "--format",
            "json",
        ],
    )
    assert r.exit_code == 0, r.output
    report = json.loads(r.output)
    assert bob_aci in json.dumps(report)
    again = runner.invoke(
        cli,
        [
            "relay",
            "disclose",
            "--db",
            str(relay_thread.db),
            "--account",
            bob_aci,
            "--format",
            "json",
        ],
    )
    assert again.output == r.output  # deterministic


def test_expected_errors_are_one_line_and_nonzero(tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(
        cli,
        [
            "client",
            "send",
            "--home",
            str(tmp_path / "none"),
            "--to",
            "00000000-0000-4000-8000-000000000000",
            "x",
        ],
    )
    assert r.exit_code == 1
    assert r.output.startswith("Error: ") and len(r.output.strip().splitlines()) == 1
    assert "Traceback" not in r.output
    r = runner.invoke(
        cli, ["client", "register", "--home", str(tmp_path / "h"), "--relay", "ws://127.0.0.1:9"]
    )
    assert r.exit_code == 1 and r.output.startswith("Error: ")
    assert len(r.output.strip().splitlines()) == 1


def test_main_returns_an_exit_status() -> None:
    assert main(["--help"]) == 0
    assert main(["no-such-command"]) == 2


def test_message_and_card_can_come_on_standard_input(
    tmp_path: Path, relay_thread: _RelayThread
) -> None:
    """What is on a command line every user of the machine can read (ps, /proc): the text
    and the contact card (its access key) may come on standard input instead."""
    runner = CliRunner()
    cards = {}
    for name in ("a", "b"):
        r = runner.invoke(
            cli,
            [
                "client", "register", "--home", str(tmp_path / name),
                "--relay", relay_thread.url, "--trust-root", relay_thread.trust_root,
            ],
        )  # fmt: skip
        assert r.exit_code == 0, r.output
        cards[name] = r.output.split("contact card: ")[1].strip()
    bob_aci = cards["b"].split(":")[0]
    r = runner.invoke(cli, ["client", "add-contact", "--home", str(tmp_path / "a")], cards["b"])
    assert r.exit_code == 0 and "added " + bob_aci in r.output, r.output
    r = runner.invoke(
        cli,
        ["client", "send", "--home", str(tmp_path / "a"), "--to", bob_aci],
        input="my bank PIN is 4321\n",
    )
    assert r.exit_code == 0 and "sealed" in r.output, r.output
    r = runner.invoke(cli, ["client", "receive", "--home", str(tmp_path / "b")])
    assert "my bank PIN is 4321" in r.output
    empty = runner.invoke(
        cli, ["client", "send", "--home", str(tmp_path / "a"), "--to", bob_aci], input=""
    )
    assert empty.exit_code == 2 and "no message" in empty.output


def test_homes_are_private_all_the_way_and_never_another_users(
    tmp_path: Path, relay_thread: _RelayThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a permissive umask the directories a command creates are 0700 each (a parent
    others may write lets them move the home away); a home of another user is refused."""
    old = os.umask(0)
    try:
        home = tmp_path / "p1" / "p2" / "alice"
        r = CliRunner().invoke(
            cli,
            [
                "client", "register", "--home", str(home),
                "--relay", relay_thread.url, "--trust-root", relay_thread.trust_root,
            ],
        )  # fmt: skip
    finally:
        os.umask(old)
    assert r.exit_code == 0, r.output
    for d in (tmp_path / "p1", tmp_path / "p1" / "p2", home):
        assert d.stat().st_mode & 0o777 == 0o700, d
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    monkeypatch.setattr(os, "geteuid", lambda: os.getuid() + 4242)  # it is not ours
    r = CliRunner().invoke(cli, ["client", "whoami", "--home", str(theirs)])
    assert r.exit_code == 1 and "belongs to another user" in r.output
