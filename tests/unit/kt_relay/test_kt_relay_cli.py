"""The CLI tells the user, in words, when the relay published a key for their account that
their device did not create; ``relay serve`` takes ``--kt-epoch-interval``."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from kt_relay_harness import publish_false_key
from test_kt_relay_self_monitoring import answer_history_pending

from securemsg.cli.main import cli
from securemsg.relay.server import RelayServer


class _RelayThread:
    """A relay on loopback in its own thread (the CLI runs its own asyncio.run)."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.ready = threading.Event()
        self.relay: RelayServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with RelayServer(self.db) as relay:
            self.relay = relay
            self.ready.set()
            await self._stop.wait()

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(60)

    def __enter__(self) -> _RelayThread:
        self._thread.start()
        assert self.ready.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


def test_client_receive_reports_a_key_it_did_not_create(tmp_path: Path) -> None:
    with _RelayThread(tmp_path / "relay.db") as thread:
        relay = thread.relay
        assert relay is not None
        root = relay.trust_root_public.to_bytes().hex()
        home = tmp_path / "bob"
        runner = CliRunner()
        args = ["client", "register", "--home", str(home), "--relay", relay.url]
        assert runner.invoke(cli, [*args, "--trust-root", root]).exit_code == 0
        aci = runner.invoke(cli, ["client", "whoami", "--home", str(home)]).output
        bob = uuid.UUID(aci.split()[1]).bytes
        thread.run(relay.publish_kt_epoch())
        ok = runner.invoke(cli, ["client", "receive", "--home", str(home)])
        assert ok.exit_code == 0, ok.output
        assert "WARNING" not in ok.output
        thread.run(publish_false_key(relay, bob, b"\x05" + b"\x66" * 32))
        warned = runner.invoke(cli, ["client", "receive", "--home", str(home)])
        assert warned.exit_code == 0, warned.output
        assert "did not create (version 2 (epoch 2))" in warned.output
        assert "Compare safety numbers" in warned.output


def test_client_receive_says_when_its_key_is_pending_or_its_history_withheld(
    tmp_path: Path,
) -> None:
    with _RelayThread(tmp_path / "relay.db") as thread:
        relay = thread.relay
        assert relay is not None
        root = relay.trust_root_public.to_bytes().hex()
        home = tmp_path / "bob"
        runner = CliRunner()
        args = ["client", "register", "--home", str(home), "--relay", relay.url]
        assert runner.invoke(cli, [*args, "--trust-root", root]).exit_code == 0
        pending = runner.invoke(cli, ["client", "receive", "--home", str(home)])
        assert pending.exit_code == 0, pending.output
        assert "WARNING: your identity key is not in the relay's key-transparency" in (
            pending.output
        )
        thread.run(relay.publish_kt_epoch())
        ok = runner.invoke(cli, ["client", "receive", "--home", str(home)])
        assert ok.exit_code == 0, ok.output
        assert "WARNING" not in ok.output
        answer_history_pending(relay)
        withheld = runner.invoke(cli, ["client", "receive", "--home", str(home)])
        assert withheld.exit_code == 0, withheld.output
        assert "WARNING: the relay withholds your account's key history" in withheld.output
        assert "published in epoch 1" in withheld.output


def test_relay_serve_has_a_kt_epoch_interval_option() -> None:
    result = CliRunner().invoke(cli, ["relay", "serve", "--help"])
    assert "--kt-epoch-interval" in result.output
    bad = CliRunner().invoke(cli, ["relay", "serve", "--db", "x.db", "--kt-epoch-interval", "0"])
    assert bad.exit_code == 2
