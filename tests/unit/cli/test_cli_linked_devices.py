"""`securemsg client link|approve|devices|unlink` against a relay on loopback.

The new device (`client link`) runs as a separate process, as it would in a third terminal:
it prints the code and waits; the test reads the code from its output and approves it with
`client approve` in this process.
"""

from __future__ import annotations

import asyncio
import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from securemsg.cli.main import cli
from securemsg.client.devices import LINKING_CODE_SCHEME
from securemsg.relay.server import RelayServer

#: Bounds on waiting for the child process (never reached when it works).
WAIT_S = 120.0


class _RelayThread:
    """A relay on 127.0.0.1 (port chosen by the OS) in a thread of its own."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.ready = threading.Event()
        self.url = ""
        self.trust_root = ""
        self._relay: RelayServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with RelayServer(self.db) as relay:
            self._relay = relay
            self.url = relay.url
            self.trust_root = relay.trust_root_public.to_bytes().hex()
            self.ready.set()
            await self._stop.wait()

    def publish_kt_epoch(self) -> int | None:
        """Publish the queued key-transparency updates now (not after the epoch interval)."""
        assert self._loop is not None and self._relay is not None
        done = asyncio.run_coroutine_threadsafe(self._relay.publish_kt_epoch(), self._loop)
        result: int | None = done.result(WAIT_S)
        return result

    def __enter__(self) -> _RelayThread:
        self._thread.start()
        assert self.ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[_RelayThread]:
    with _RelayThread(tmp_path / "relay.db") as r:
        yield r


def _cli(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


class _LinkProcess:
    """`securemsg client link` in a child process; its stdout read line by line."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "120"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "securemsg.cli.main", "client", "link", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            env=env,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, prefix: str) -> str:
        while True:
            line = self.lines.get(timeout=WAIT_S)
            assert line is not None, "link ended early:\n" + "\n".join(self.seen)
            self.seen.append(line)
            if line.startswith(prefix):
                return line

    def finish(self) -> tuple[int, str]:
        code = self.proc.wait(timeout=WAIT_S)
        while (line := self.lines.get(timeout=WAIT_S)) is not None:
            self.seen.append(line)
        return code, "\n".join(self.seen)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=WAIT_S)


def test_link_approve_devices_unlink(tmp_path: Path, relay: _RelayThread) -> None:
    alice = str(tmp_path / "alice")
    laptop = tmp_path / "alice-laptop"
    _cli(
        "client",
        "register",
        "--home",
        alice,
        "--relay",
        relay.url,
        "--trust-root",
        relay.trust_root,
    )
    link = _LinkProcess(
        "--home", str(laptop), "--relay", relay.url, "--trust-root", relay.trust_root
    )
    try:
        code = link.wait_for(LINKING_CODE_SCHEME)
        link.wait_for("waiting up to")
        qr = [line for line in link.seen if line and set(line) <= set(" \u2580\u2584\u2588")]
        assert len(qr) >= 15, "a QR code is drawn"
        # on standard input: a code in argv is readable by every local user (ps, /proc)
        approved = CliRunner().invoke(cli, ["client", "approve", "--home", alice], input=code)
        assert approved.exit_code == 0, approved.output
        assert "approved" in approved.output
        status, output = link.finish()
    finally:
        link.kill()
    assert status == 0, output
    assert "linked: this is device 2 of" in output
    assert (laptop / "device.db").exists()
    assert oct(laptop.stat().st_mode & 0o777) == oct(0o700)

    listed = _cli("client", "devices", "--home", alice)
    assert "device 1" in listed and "(primary, this device)" in listed and "device 2" in listed
    listed = _cli("client", "devices", "--home", str(laptop))
    assert "device 2" in listed and "this device" in listed.splitlines()[1]
    whoami = _cli("client", "whoami", "--home", str(laptop))
    assert "device: 2" in whoami
    # The laptop is a full device of the account: it connects, and its own key-transparency
    # check finds the account's one key (the same identity key as the primary's).
    assert relay.publish_kt_epoch() == 1
    received = CliRunner().invoke(cli, ["client", "receive", "--home", str(laptop)])
    assert received.exit_code == 0, received.output
    assert "WARNING" not in received.output

    # Only the primary unlinks; the unlinked device then fails with one clear line.
    refused = CliRunner().invoke(cli, ["client", "unlink", "--home", str(laptop), "2"])
    assert refused.exit_code == 1 and "primary" in refused.output
    assert "Traceback" not in refused.output
    assert "unlinked device 2" in _cli("client", "unlink", "--home", alice, "2")
    gone = CliRunner().invoke(cli, ["client", "receive", "--home", str(laptop)])
    assert gone.exit_code == 1
    assert "DeviceRemovedError" in gone.output and "removed" in gone.output
    listed = _cli("client", "devices", "--home", alice)
    assert "device 2" not in listed


def test_a_mistyped_code_and_a_failed_link_leave_nothing(
    tmp_path: Path, relay: _RelayThread
) -> None:
    alice = str(tmp_path / "alice")
    _cli(
        "client",
        "register",
        "--home",
        alice,
        "--relay",
        relay.url,
        "--trust-root",
        relay.trust_root,
    )
    laptop = tmp_path / "new" / "laptop"
    link = _LinkProcess(
        "--home", str(laptop), "--relay", relay.url, "--qr", "none", "--timeout", "3"
    )
    try:
        code = link.wait_for(LINKING_CODE_SCHEME)
        assert not any("\u2588" in line for line in link.seen)  # --qr none
        typo = code[:-1] + ("0" if code[-1] != "0" else "1")
        bad = CliRunner().invoke(cli, ["client", "approve", "--home", alice, typo])
        assert bad.exit_code == 1
        assert "Error:" in bad.output and "LinkingCodeError" in bad.output
        assert len(bad.output.strip().splitlines()) == 1
        status, output = link.finish()
    finally:
        link.kill()
    assert status == 1, output
    assert "expired" in output and "LinkingCodeError" in output
    assert not (tmp_path / "new").exists()  # the directories it created are gone too


def test_link_commands_explain_themselves() -> None:
    for command in ("link", "approve", "devices", "unlink"):
        result = CliRunner().invoke(cli, ["client", command, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output
    unlink_one = CliRunner().invoke(cli, ["client", "unlink", "--home", "x", "1"])
    assert unlink_one.exit_code == 2  # a usage error: the primary is not unlinked
