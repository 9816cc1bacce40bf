"""What the relay stores for a send, and how much it may store in all.

* A sealed sender v2 ``SendMultiRecipient`` to N recipients stores its shared part (ephemeral
  key and ciphertext) once, not N times: one 300-recipient send of ~256 KiB used to add
  ~75 MiB to the database. The envelopes delivered are byte for byte the received forms,
  and the shared row goes with the last acknowledgement or the expiry sweep.
* A relay-wide budget of queued bytes (``RelayConfig.max_total_queued_bytes``) counts each
  shared part once and refuses a send beyond it with ``RATE_LIMITED``; the per-device cap
  still counts whole bodies (what the device will be sent).
* A schema v1 database (the frozen one in tests/compat) migrates: the budget counter starts
  at what is queued.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path
from uuid import UUID

from relay_harness import NOW, Device

from securemsg.crypto.rng import SystemRng
from securemsg.protocol.address import ServiceId
from securemsg.protocol.sealed_sender import SealedSenderV2SentMessage
from securemsg.relay.service import RelayConfig, RelayService, Session, envelope_of
from securemsg.relay.store import SCHEMA_VERSION, SqliteRelayStore
from securemsg.relay_protocol import frames as rf
from securemsg.wire.sealed_sender import encode_varint

COMPAT_RELAY_DB = Path(__file__).parents[2] / "compat" / "frozen" / "v1" / "relay_store.sqlite"


def _register(service: RelayService, device: Device) -> Session:
    s = service.new_session()
    out = service.handle(s, rf.ClientFrame(1, device.register(s.nonce)), NOW)
    assert out.response.code == rf.StatusCode.OK, out.response
    return s


def _sent_v2(recipients: list[Device], shared_len: int) -> bytes:
    """A sent sealed sender v2 message as a client builds it (0x22: ACI uuids), with random
    per-recipient key material and shared part: the relay routes it without decrypting."""
    out = bytearray([0x22]) + encode_varint(len(recipients))
    for d in recipients:
        out += d.aci + bytes([d.device_id]) + d.registration_id.to_bytes(2, "big")
        out += os.urandom(48)  # C || AT
    out += os.urandom(shared_len)  # E || ciphertext
    return bytes(out)


def _multi(payload: bytes, recipients: list[Device]) -> rf.ClientFrame:
    access = tuple(rf.RecipientAccess(d.aci, d.access_key) for d in recipients)
    return rf.ClientFrame(7, rf.SendMultiRecipient(payload, access, NOW))


def _disk_bytes(db: Path) -> int:
    """Database plus WAL after a checkpoint that truncates the WAL."""
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    wal = db.with_name(db.name + "-wal")
    return db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


def _count(db: Path, table: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        conn.close()


def test_a_multi_recipient_send_to_300_stores_the_shared_part_once(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    with SqliteRelayStore.open(db) as store:
        # 300 registrations at one instant: past the default registration burst.
        service = RelayService(store, SystemRng(), RelayConfig(registration_burst=300))
        devices = [Device.new(1000 + i, n_pre_keys=0, n_kyber=0) for i in range(300)]
        for d in devices:
            _register(service, d)
        payload = _sent_v2(devices, 250 * 1024)
        frame = _multi(payload, devices)
        request_size = len(rf.encode_client_frame(frame))
        before = _disk_bytes(db)

        out = service.handle(service.new_session(), frame, NOW)
        assert out.response.code == rf.StatusCode.OK, out.response
        growth = _disk_bytes(db) - before
        assert growth <= 2 * request_size, (growth, request_size)  # was ~300x
        assert _count(db, "shared_bodies") == 1

        # Every device is sent exactly the received form it was sent before.
        parsed = SealedSenderV2SentMessage.parse(payload)
        for d in devices:
            (m,) = store.pending(d.aci, 1)
            want = parsed.message_for_recipient(ServiceId.aci(UUID(bytes=d.aci)))
            assert m.body == want
            assert envelope_of(m).body == want and m.source_aci is None
        assert store.queued_bytes() < 2 * request_size

        # The shared part stays until the last recipient acknowledges.
        for d in devices[:-1]:
            (m,) = store.pending(d.aci, 1)
            assert store.ack(d.aci, 1, [m.id]) == 1
        assert _count(db, "shared_bodies") == 1
        last = devices[-1]
        assert store.pending(last.aci, 1)[0].body == parsed.message_for_recipient(
            ServiceId.aci(UUID(bytes=last.aci))
        )
        assert store.ack(last.aci, 1, [store.pending(last.aci, 1)[0].id]) == 1
        assert _count(db, "shared_bodies") == 0 and _count(db, "messages") == 0
        assert store.queued_bytes() == 0


def test_the_expiry_sweep_removes_the_shared_part_with_the_last_envelope(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    with SqliteRelayStore.open(db) as store:
        service = RelayService(store, SystemRng())
        devices = [Device.new(2000 + i) for i in range(3)]
        for d in devices:
            _register(service, d)
        out = service.handle(service.new_session(), _multi(_sent_v2(devices, 5000), devices), NOW)
        assert out.response.code == rf.StatusCode.OK
        assert store.ack(devices[0].aci, 1, [store.pending(devices[0].aci, 1)[0].id]) == 1
        assert service.sweep(NOW + service.config.message_ttl_ms) == 0  # not old enough yet
        assert _count(db, "shared_bodies") == 1
        assert service.sweep(NOW + service.config.message_ttl_ms + 1) == 2
        assert _count(db, "shared_bodies") == 0 and _count(db, "messages") == 0
        assert store.queued_bytes() == 0


def test_the_relay_budget_counts_shared_parts_once_and_refuses_beyond_it(
    tmp_path: Path,
) -> None:
    shared = 4000
    mine = 1 + 48  # version byte, C and AT: each recipient's own part
    per_send = shared + 3 * mine
    config = RelayConfig(max_total_queued_bytes=2 * per_send + 10)
    assert RelayConfig().max_total_queued_bytes == 8 * 1024**3
    with SqliteRelayStore.open(tmp_path / "relay.db") as store:
        service = RelayService(store, SystemRng(), config)
        devices = [Device.new(3000 + i) for i in range(3)]
        for d in devices:
            _register(service, d)
        anon = service.new_session()

        def send() -> rf.Response:
            return service.handle(anon, _multi(_sent_v2(devices, shared), devices), NOW).response

        assert send().code == rf.StatusCode.OK
        assert store.queued_bytes() == per_send  # 3 x 4049 bytes delivered, 4147 stored
        assert send().code == rf.StatusCode.OK
        refused = send()
        assert refused.code == rf.StatusCode.RATE_LIMITED
        assert refused.message == "relay storage full"
        assert [len(store.pending(d.aci, 1)) for d in devices] == [2, 2, 2]  # nothing queued
        assert store.queued_bytes() == 2 * per_send

        # 1:1 sends count too; an acknowledgement frees room.
        one = rf.OutgoingMessage(1, devices[0].registration_id, 6, b"x" * 40)
        sealed = rf.SendSealed(devices[0].aci, devices[0].access_key, 1, (one,))
        assert service.handle(anon, rf.ClientFrame(9, sealed), NOW).response.code == 5
        first = store.pending(devices[0].aci, 1)[0]
        assert store.ack(devices[0].aci, 1, [first.id]) == 1
        assert store.queued_bytes() == 2 * per_send - mine
        assert service.handle(anon, rf.ClientFrame(9, sealed), NOW).response.code == 0


def test_the_mailbox_cap_counts_whole_bodies_of_shared_sends(tmp_path: Path) -> None:
    shared = 4000
    body = 1 + 48 + shared  # what each device is sent
    config = RelayConfig(max_mailbox_bytes=2 * body)
    with SqliteRelayStore.open(tmp_path / "relay.db") as store:
        service = RelayService(store, SystemRng(), config)
        devices = [Device.new(4000 + i) for i in range(3)]
        for d in devices:
            _register(service, d)
        anon = service.new_session()
        for _ in range(2):
            frame = _multi(_sent_v2(devices, shared), devices)
            assert service.handle(anon, frame, NOW).response.code == rf.StatusCode.OK
        refused = service.handle(anon, _multi(_sent_v2(devices, shared), devices), NOW).response
        assert (refused.code, refused.message) == (rf.StatusCode.RATE_LIMITED, "mailbox full")
        assert all(sum(len(m.body) for m in store.pending(d.aci, 1)) == 2 * body for d in devices)


def test_a_schema_v1_database_migrates_and_counts_what_is_queued(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    shutil.copyfile(COMPAT_RELAY_DB, db)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == 1
    v1_bodies = [bytes(r[0]) for r in conn.execute("SELECT body FROM messages ORDER BY seq")]
    conn.close()
    assert v1_bodies
    with SqliteRelayStore.open(db) as store:
        assert store.queued_bytes() == sum(len(b) for b in v1_bodies)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
        rows = conn.execute("SELECT body, size, shared_seq FROM messages ORDER BY seq").fetchall()
        assert [(bytes(b), s, sh) for b, s, sh in rows] == [(b, len(b), None) for b in v1_bodies]
    finally:
        conn.close()
