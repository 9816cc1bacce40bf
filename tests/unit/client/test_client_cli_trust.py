"""The `securemsg client ...` commands refuse what the SDK refuses and leave nothing behind.

* ``client register`` creates HOME 0700 and the database 0600 (umask 022); a failed register
  (relay unreachable, bad URL, one nibble of --trust-root changed) leaves no files, and none
  of the directories it created.
* ``client send`` fails closed without --allow-identified.
* ``client receive`` shows an undecryptable message with its reason in words.
"""

from __future__ import annotations

import asyncio
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hostile_relay import EnvelopeForger

from securemsg.cli.main import cli
from securemsg.relay.server import RelayServer


class RelayThread:
    """A relay on loopback in its own thread (the CLI runs its own asyncio.run)."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.ready = threading.Event()
        self.relay: RelayServer | None = None
        self.url = ""
        self.trust_root = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with RelayServer(self.db) as relay:
            self.relay = relay
            self.url = relay.url
            self.trust_root = relay.trust_root_public.to_bytes().hex()
            self.ready.set()
            await self._stop.wait()

    def call(self, fn: object) -> None:
        """Run ``fn()`` on the relay's loop and wait for it."""
        assert self._loop is not None and callable(fn)
        done = threading.Event()

        def go() -> None:
            try:
                fn()
            finally:
                done.set()

        self._loop.call_soon_threadsafe(go)
        assert done.wait(30)

    def __enter__(self) -> RelayThread:
        self._thread.start()
        assert self.ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[RelayThread]:
    old = os.umask(0o022)
    try:
        with RelayThread(tmp_path / "relay.db") as r:
            yield r
    finally:
        os.umask(old)


def _register(runner: CliRunner, home: Path, url: str, root: str | None) -> object:
    args = ["client", "register", "--home", str(home), "--relay", url]
    if root is not None:
        args += ["--trust-root", root]
    return runner.invoke(cli, args)


def _one_nibble_off(root: str) -> str:
    i = 20
    return root[:i] + ("0" if root[i] != "0" else "1") + root[i + 1 :]


def test_register_makes_a_private_home(tmp_path: Path, relay: RelayThread) -> None:
    home = tmp_path / "alice"
    r = _register(CliRunner(), home, relay.url, relay.trust_root)
    assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for p in home.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600, p


def test_an_existing_home_readable_by_others_is_made_private(
    tmp_path: Path, relay: RelayThread
) -> None:
    home = tmp_path / "shared"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    r = _register(CliRunner(), home, relay.url, relay.trust_root)
    assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
    assert "accessible to other users" in r.output  # type: ignore[attr-defined]
    assert stat.S_IMODE(home.stat().st_mode) == 0o700


@pytest.mark.parametrize("how", ["wrong-trust-root", "unreachable", "bad-url"])
def test_a_failed_register_leaves_nothing_behind(
    tmp_path: Path, relay: RelayThread, how: str
) -> None:
    home = tmp_path / "nested" / "home"
    url = {"unreachable": "ws://127.0.0.1:9", "bad-url": "ws://[::1"}.get(how, relay.url)
    root = _one_nibble_off(relay.trust_root) if how == "wrong-trust-root" else relay.trust_root
    r = _register(CliRunner(), home, url, root)
    assert r.exit_code == 1, r.output  # type: ignore[attr-defined]
    assert r.output.startswith("Error: ")  # type: ignore[attr-defined]
    if how == "wrong-trust-root":
        assert "TrustRootMismatch" in r.output  # type: ignore[attr-defined]
    assert not home.exists() and not (tmp_path / "nested").exists()
    assert {p.name for p in tmp_path.iterdir() if not p.name.startswith("relay.db")} == set()


def test_a_failed_register_in_an_existing_home_keeps_the_home_and_its_files(
    tmp_path: Path, relay: RelayThread
) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    (home / "notes.txt").write_text("mine")
    r = _register(CliRunner(), home, relay.url, _one_nibble_off(relay.trust_root))
    assert r.exit_code == 1
    assert sorted(p.name for p in home.iterdir()) == ["notes.txt"]


def test_send_fails_closed_and_receive_explains_a_failure(
    tmp_path: Path, relay: RelayThread
) -> None:
    runner = CliRunner()
    cards = {}
    for name in ("a", "b"):
        r = _register(runner, tmp_path / name, relay.url, relay.trust_root)
        assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
        cards[name] = r.output.split("contact card: ")[1].strip()  # type: ignore[attr-defined]
    a_aci, b_aci = cards["a"].split(":")[0], cards["b"].split(":")[0]
    send = ["client", "send", "--home", str(tmp_path / "a"), "--to"]
    r = runner.invoke(cli, [*send, b_aci, "no card: refused"])
    assert r.exit_code == 1 and "SealedDeliveryRefused" in r.output, r.output
    r = runner.invoke(cli, [*send, b_aci, "--allow-identified", "identified on purpose"])
    assert r.exit_code == 0 and "(identified)" in r.output, r.output
    r = runner.invoke(cli, ["client", "receive", "--home", str(tmp_path / "b")])
    assert "identified on purpose" in r.output and "(identified)" in r.output, r.output

    def forge() -> None:
        assert relay.relay is not None
        EnvelopeForger(relay.relay, b_aci, (a_aci, 1), other_root=True)

    relay.call(forge)
    r = runner.invoke(cli, [*send, cards["b"], "forged on the way"])
    assert r.exit_code == 0 and "(sealed)" in r.output, r.output
    r = runner.invoke(cli, ["client", "receive", "--home", str(tmp_path / "b")])
    assert r.exit_code == 0, r.output
    assert "could not decrypt a message from an unknown sender (sealed)" in r.output
    assert "not signed by the pinned trust root" in r.output
    assert "SealedSenderError" not in r.output


def test_register_without_a_trust_root_warns_and_shows_the_key_to_compare(
    tmp_path: Path, relay: RelayThread
) -> None:
    r = _register(CliRunner(), tmp_path / "tofu", relay.url, None)
    assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
    out = r.output  # type: ignore[attr-defined]
    assert "warning" in out.lower() and "trust on first use" in out
    assert relay.trust_root in out  # the pinned key, to compare out of band
    r = _register(CliRunner(), tmp_path / "pinned", relay.url, relay.trust_root)
    assert r.exit_code == 0, r.output  # type: ignore[attr-defined]
    assert "trust on first use" not in r.output  # type: ignore[attr-defined]
