"""The device database is private at rest: 0600 for the file and its -wal/-shm, even under
umask 022, after registration and after a restart; a file others can read is fixed with a
warning."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from client_harness import new_client, run, with_relay

from securemsg.client import Client
from securemsg.relay.server import RelayServer


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _modes(db: Path) -> dict[str, int]:
    out = {}
    for suffix in ("", "-wal", "-shm", "-journal"):
        p = Path(str(db) + suffix)
        if p.exists():
            out[suffix or "db"] = stat.S_IMODE(p.stat().st_mode)
    return out


def test_database_files_are_0600_after_register_and_restart(
    tmp_path: Path, umask_022: None
) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "alice.db")
        bob = await new_client(relay, tmp_path / "bob.db")
        alice.add_contact(bob.contact_card)
        await alice.send_text(bob.aci, "write something")
        assert await bob.receive(timeout=10) is not None
        modes = _modes(tmp_path / "bob.db")
        assert {"db", "-wal", "-shm"} <= modes.keys()  # WAL mode: the side files exist
        assert set(modes.values()) == {0o600}, modes
        await bob.close()
        bob = await Client.open(tmp_path / "bob.db")
        await bob.connect()
        await alice.send_text(bob.aci, "after restart")
        assert await bob.receive(timeout=10) is not None
        modes = _modes(tmp_path / "bob.db")
        assert {"db", "-wal", "-shm"} <= modes.keys()
        assert set(modes.values()) == {0o600}, modes
        await alice.close()
        await bob.close()

    run(with_relay(tmp_path, body))


def test_a_database_readable_by_others_is_fixed_with_a_warning(
    tmp_path: Path, umask_022: None, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "alice.db")
        await alice.close()
        db = tmp_path / "alice.db"
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(db) + suffix)
            if p.exists():
                p.chmod(0o644)
        with caplog.at_level(logging.WARNING, logger="securemsg.client.store"):
            alice = await Client.open(db)
        assert any("accessible to other users" in r.getMessage() for r in caplog.records)
        assert set(_modes(db).values()) == {0o600}
        await alice.connect()
        await alice.close()
        assert set(_modes(db).values()) == {0o600}

    run(with_relay(tmp_path, body))
