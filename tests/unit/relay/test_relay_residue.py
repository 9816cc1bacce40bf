"""Nothing about an acknowledged or expired envelope is left in any file the relay writes,
and those files are the owner's only.

Found by scanning a relay's files: five identified messages, received and acknowledged, left
their bodies, envelope ids and records pairing recipient and sender ACIs readable in
``relay.db-wal`` while the relay ran and after ``kill -9``; only a graceful stop removed them.
Here the bytes of ``relay.db``, ``relay.db-wal`` and ``relay.db-shm`` are scanned for every
32-byte window of each body, each envelope id and the sender's ACI (bytes, hex and UUID text):

* after acknowledgement, with the relay running as a separate process, again after SIGKILL,
  and again after a restart;
* after the expiry sweep (in process, fake clock), for identified and multi-recipient sends;
* in a crash image taken between a deleting commit and its checkpoint (the control: that
  image does hold the envelopes), once the relay has reopened it.

The sender's ACI also lives in its own account rows, so for it the scan compares the number of
occurrences with the count before any message was sent. The database and its companions are
created 0600 under any umask; a database others could read is tightened with a warning; and
``relay serve`` on a busy port leaves no new database behind.
"""

from __future__ import annotations

import logging
import os
import re
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner
from relay_harness import NOW, Device, RawClient, run

from securemsg.cli.main import cli
from securemsg.crypto.rng import SystemRng
from securemsg.errors import StorageError
from securemsg.relay.filescan import blank_live
from securemsg.relay.service import RelayService, Session
from securemsg.relay.store import QueuedMessage, SqliteRelayStore
from securemsg.relay_protocol import frames as rf
from securemsg.wire.sealed_sender import encode_varint

SIZES = (40, 700, 3000, 9000, 70_000)  # inline cells, overflow chains, several pages


def _files(db: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name)}


def _id_forms(value: bytes) -> list[bytes]:
    text = str(uuid.UUID(bytes=value))
    return [value, value.hex().encode(), value.hex().upper().encode(), text.encode()]


def _body_needles(bodies: list[bytes]) -> dict[bytes, str]:
    needles: dict[bytes, str] = {}
    for n, body in enumerate(bodies):
        for i in range(0, max(1, len(body) - 31), 32):
            needles[body[i : i + 32]] = f"bytes {i}.. of body {n}"
        needles[body[-32:]] = f"the end of body {n}"
    return needles


def _scan(db: Path, needles: dict[bytes, str]) -> list[str]:
    return [
        f"{what} in {name}"
        for name, b in _files(db).items()
        for n, what in needles.items()
        if n in b
    ]


def _counts(db: Path, value: bytes) -> list[int]:
    files = _files(db)
    return [sum(b.count(form) for b in files.values()) for form in _id_forms(value)]


def _register(service: RelayService, device: Device, now: int) -> Session:
    s = service.new_session()
    out = service.handle(s, rf.ClientFrame(1, device.register(s.nonce)), now)
    assert out.response.code == rf.StatusCode.OK, out.response
    return s


def _identified(to: Device, body: bytes, ts: int) -> rf.SendMessage:
    out = rf.OutgoingMessage(1, to.registration_id, rf.EnvelopeType.CIPHERTEXT, body)
    return rf.SendMessage(to.aci, ts, (out,))


# -- the relay as a process, acknowledged envelopes -----------------------------------------


class _RelayProcess:
    def __init__(self, db: Path) -> None:
        code = "import sys; from securemsg.cli.main import main; sys.exit(main())"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, "relay", "serve", "--db", str(db), "--port", "0"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 60)  # bounded wait
        if not ready:  # pragma: no cover - reported by the assertion below
            self.kill()
        line = self.proc.stdout.readline().decode() if ready else "(no output in 60 s)"
        assert line.startswith("relay listening on "), line
        self.url = line.split()[-1]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # pragma: no cover - reported by the test
                self.kill()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@contextmanager
def _relay_process(db: Path) -> Iterator[_RelayProcess]:
    relay = _RelayProcess(db)
    try:
        yield relay
    finally:
        relay.stop()


def test_acknowledged_envelopes_leave_nothing_in_any_file_running_killed_or_restarted(
    tmp_path: Path,
) -> None:
    db = tmp_path / "relay.db"
    alice, bob = Device.new(71), Device.new(72)
    today = int(time.time() * 1000)  # the relay process uses the real clock
    with SqliteRelayStore.open(db) as store:
        service = RelayService(store, SystemRng())
        _register(service, alice, today)
        _register(service, bob, today)
    baseline = _counts(db, alice.aci)  # her account, device and key rows
    assert baseline[0] > 0 and baseline[1:] == [0, 0, 0]
    bodies = [os.urandom(n) for n in SIZES]
    ids: list[bytes] = []

    async def exchange(url: str) -> None:
        a = await RawClient.open(url)
        b = await RawClient.open(url)
        try:
            for dev, conn in ((alice, a), (bob, b)):
                r = await conn.request(dev.authenticate(conn.nonce))
                assert r.code == rf.StatusCode.OK, r
            for body in bodies:
                assert (await a.request(_identified(bob, body, NOW))).code == rf.StatusCode.OK
            pushed = await b.wait_pushes(len(bodies))
            assert [e.body for e in pushed] == bodies
            assert all(e.source_aci == alice.aci for e in pushed)
            ids.extend(e.id for e in pushed)
            assert (await b.request(rf.Ack(tuple(ids)))).code == rf.StatusCode.OK
        finally:
            await a.ws.close()
            await b.ws.close()

    needles = _body_needles(bodies)
    with _relay_process(db) as relay:
        run(lambda: exchange(relay.url))
        for i in ids:
            needles.update({form: f"envelope id {i.hex()}" for form in _id_forms(i)})
        assert len(needles) > 5 * 5
        assert _scan(db, needles) == [], "while running"
        assert _counts(db, alice.aci) == baseline, "while running"
        relay.kill()
    assert _scan(db, needles) == [], "after SIGKILL"
    assert _counts(db, alice.aci) == baseline, "after SIGKILL"
    with _relay_process(db):
        assert _scan(db, needles) == [], "after a restart"
        assert _counts(db, alice.aci) == baseline, "after a restart"
    assert _scan(db, needles) == [], "after a graceful stop"


# -- in process: expiry, multi-recipient, crash image -----------------------------------------


def _sent_v2(recipients: list[Device], shared: bytes) -> bytes:
    out = bytearray([0x22]) + encode_varint(len(recipients))
    for d in recipients:
        out += d.aci + bytes([d.device_id]) + d.registration_id.to_bytes(2, "big")
        out += os.urandom(48)
    return bytes(out + shared)


def test_expired_envelopes_leave_nothing_in_any_file(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    alice, bob, carol = Device.new(81), Device.new(82), Device.new(83)
    with SqliteRelayStore.open(db) as store:
        service = RelayService(store, SystemRng())
        _register(service, alice, NOW)
        _register(service, bob, NOW)
        _register(service, carol, NOW)
    baseline = _counts(db, alice.aci)
    bodies = [os.urandom(n) for n in SIZES]
    shared = os.urandom(20_000)
    with SqliteRelayStore.open(db) as store:
        service = RelayService(store, SystemRng())
        s = service.new_session()
        auth = service.handle(s, rf.ClientFrame(1, alice.authenticate(s.nonce)), NOW)
        assert auth.response.code == rf.StatusCode.OK
        for body in bodies:
            out = service.handle(s, rf.ClientFrame(2, _identified(bob, body, NOW)), NOW)
            assert out.response.code == rf.StatusCode.OK
        access = tuple(rf.RecipientAccess(d.aci, d.access_key) for d in (bob, carol))
        multi = rf.SendMultiRecipient(_sent_v2([bob, carol], shared), access, NOW)
        assert service.handle(s, rf.ClientFrame(3, multi), NOW).response.code == 0
        queued = store.queued_for(bob.aci) + store.queued_for(carol.aci)
        assert len(queued) == len(bodies) + 2
        needles = _body_needles([*bodies, shared])
        for m in queued:
            needles.update({form: f"envelope id {m.id.hex()}" for form in _id_forms(m.id)})
        assert _scan(db, needles) != []  # queued: the scan sees them

        assert service.sweep(NOW + service.config.message_ttl_ms + 1) == len(queued)
        assert _scan(db, needles) == [], "after the sweep, while open"
        assert _counts(db, alice.aci) == baseline
        conn = store._c()
        assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1
        assert conn.execute("PRAGMA freelist_count").fetchone()[0] > 0  # freed pages, zeroed
    assert _scan(db, needles) == [], "after close"


def test_a_crash_between_commit_and_checkpoint_is_scrubbed_when_the_relay_reopens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "relay.db"
    crash = tmp_path / "crash"
    crash.mkdir()
    sender = uuid.uuid4().bytes
    msgs = [
        QueuedMessage(os.urandom(16), b"\xbb" * 16, 1, 1, sender, 2, 1, NOW, os.urandom(n))
        for n in SIZES
    ]
    needles = _body_needles([m.body for m in msgs])
    for m in msgs:
        needles.update({form: "envelope id" for form in _id_forms(m.id)})
    needles.update({form: "sender ACI" for form in _id_forms(sender)})
    with SqliteRelayStore.open(db) as store:
        assert store.enqueue(msgs, 100)
        monkeypatch.setattr(SqliteRelayStore, "_after_commit", lambda self: None)
        assert store.ack(b"\xbb" * 16, 1, [m.id for m in msgs]) == len(msgs)
        image = _files(db)  # what kill -9 right now would leave on disk
        monkeypatch.undo()
    for name, content in image.items():
        (crash / name).write_bytes(content)
    assert _scan(crash / db.name, needles) != []  # the finding: the WAL still holds them
    with SqliteRelayStore.open(crash / db.name) as reopened:
        assert reopened.pending(b"\xbb" * 16, 1) == []
        assert _scan(crash / db.name, needles) == []
    assert _scan(crash / db.name, needles) == []


# -- file modes ---------------------------------------------------------------------------


def _modes(db: Path) -> dict[str, int]:
    return {
        p.name: p.stat().st_mode & 0o777 for p in db.parent.iterdir() if p.name.startswith(db.name)
    }


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _churn(store: SqliteRelayStore) -> None:
    m = QueuedMessage(os.urandom(16), b"\xaa" * 16, 1, 6, None, 0, 1, NOW, b"x" * 5000)
    assert store.enqueue([m], 10)
    assert store.ack(m.aci, 1, [m.id]) == 1  # a deleting commit: checkpoint and truncate


@pytest.mark.parametrize("mask", [0o022, 0o000])
def test_the_database_and_its_companions_are_created_0600_under_any_umask(
    tmp_path: Path, mask: int
) -> None:
    db = tmp_path / "relay.db"
    with _umask(mask):
        for _ in range(2):  # first start, then a restart
            with SqliteRelayStore.open(db) as store:
                modes = _modes(db)
                assert set(modes) >= {"relay.db", "relay.db-wal", "relay.db-shm"}, modes
                assert set(modes.values()) == {0o600}, modes
                _churn(store)
                assert set(_modes(db).values()) == {0o600}
    assert set(_modes(db).values()) == {0o600}


def test_a_database_readable_by_others_is_made_private_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "relay.db"
    with SqliteRelayStore.open(db):
        pass
    os.chmod(db, 0o644)
    (tmp_path / "relay.db-wal").touch(mode=0o644)
    os.chmod(tmp_path / "relay.db-wal", 0o644)
    with caplog.at_level(logging.WARNING, logger="securemsg.relay"), SqliteRelayStore.open(db) as s:
        assert set(_modes(db).values()) == {0o600}, _modes(db)
        _churn(s)
    warned = [r.getMessage() for r in caplog.records if "readable by others" in r.getMessage()]
    assert any("relay.db " in w for w in warned) and any("relay.db-wal" in w for w in warned)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="securemsg.relay"), SqliteRelayStore.open(db):
        assert set(_modes(db).values()) == {0o600}
    assert not [r for r in caplog.records if "readable by others" in r.getMessage()]


def test_relay_serve_on_a_busy_port_leaves_no_new_database_behind(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        db = tmp_path / "new.db"
        result = CliRunner().invoke(
            cli, ["relay", "serve", "--db", str(db), "--host", "127.0.0.1", "--port", str(port)]
        )
        assert result.exit_code != 0
        assert "Error" in result.output
        assert [p.name for p in tmp_path.iterdir()] == []
        # An existing database is never removed.
        with SqliteRelayStore.open(db):
            pass
        result = CliRunner().invoke(cli, ["relay", "serve", "--db", str(db), "--port", str(port)])
        assert result.exit_code != 0 and db.exists()
        conn = sqlite3.connect(db)
        try:
            assert conn.execute("SELECT COUNT(*) FROM server_keys").fetchone()[0] == 1
        finally:
            conn.close()


def test_the_residue_scan_rejects_a_malformed_image_with_a_typed_error(tmp_path: Path) -> None:
    with SqliteRelayStore.open(tmp_path / "relay.db") as store:
        _churn(store)
        conn = store._c()
        image = conn.serialize()
        roots = [r[0] for r in conn.execute("SELECT rootpage FROM sqlite_master WHERE rootpage")]
    # What no live row explains is at most stale 2-byte cell pointers and freeblock sizes.
    assert re.search(rb"[^\x00]{3,}", blank_live(image, roots)) is None
    bad_type = bytearray(image)
    bad_type[image.index(b"SQLite format 3") + 100] = 0x42  # page 1's b-tree type
    for broken, page_roots in (
        (b"not a database" * 10, roots),
        (image[:1000], roots),
        (bytes(bad_type), roots),
        (image, [len(image) // 512 + 10]),
    ):
        with pytest.raises(StorageError):
            blank_live(broken, page_roots)


def test_a_path_that_is_not_a_file_is_refused_and_left_alone(tmp_path: Path) -> None:
    folder = tmp_path / "relay.db"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    with pytest.raises(StorageError):
        SqliteRelayStore.open(folder)
    assert folder.stat().st_mode & 0o777 == 0o755
