"""A demo-sized run through the relay (three users, 1:1 identified and sealed messages, a
sender-key group message fanned out with sealed sender v2), then: the relay's database, WAL
and logs hold no plaintext, no client private key and no IP address; the disclosure report
is complete for what is queued and deterministic."""

from __future__ import annotations

import json
import logging
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from relay_harness import NOW, Device, RawClient, registered, relay, run, to_bundle

from securemsg import cipher, groups
from securemsg.cli.main import cli
from securemsg.crypto.rng import SystemRng
from securemsg.errors import StorageError
from securemsg.protocol.sealed_sender import SenderCertificate, UnidentifiedSenderMessageContent
from securemsg.relay.disclosure import SENDER_UNKNOWN, disclose
from securemsg.relay.service import RelayService, Session
from securemsg.relay.store import SqliteRelayStore
from securemsg.relay_protocol import frames as rf
from securemsg.sealed_sender import (
    sealed_sender_decrypt,
    sealed_sender_decrypt_to_usmc,
    sealed_sender_encrypt,
    sealed_sender_multi_recipient_encrypt,
)
from securemsg.wire.messages import CiphertextMessageType, PreKeySignalMessage

PLAINTEXTS = {
    "to_bob": b"PLAINTEXT-1: hello bob, meet at the usual place",
    "to_carol": b"PLAINTEXT-2: hello carol, bring the documents",
    "unacked": b"PLAINTEXT-3: this one carol never acknowledges",
    "group": b"PLAINTEXT-4: group hello to everyone in the group",
}


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # Everything the process logs except the test's own client side (its Host header).
        if not record.name.startswith("websockets.client"):
            self.lines.append(self.format(record))


def _private_material(d: Device) -> list[bytes]:
    out = [d.identity.private_key.to_bytes()]
    out += [k.key_pair.private_key.to_bytes() for k in d.pre_keys]
    assert d.signed is not None and d.last_resort is not None
    out.append(d.signed.key_pair.private_key.to_bytes())
    out += [k.key_pair.seed for k in [d.last_resort, *d.kyber]]
    out.append(d.access_key)  # only its digest may be stored
    return out


def _files(db: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in db.parent.iterdir() if p.name.startswith(db.name)}


async def _demo_traffic(
    db: Path | str, alice: Device, bob: Device, carol: Device, snapshot: Callable[[], None]
) -> None:
    """Three users, 1:1 identified and sealed, a sealed v2 group message, one unacked."""
    async with relay(db, clock=lambda: NOW) as server:
        trust = server.trust_root_public
        a = await registered(server.url, alice)
        b = await registered(server.url, bob)
        c = await registered(server.url, carol)
        assert alice.store and bob.store and carol.store

        r = await a.request(rf.GetSenderCertificate())
        assert isinstance(r.body, rf.SenderCertificateResponse)
        cert = SenderCertificate.from_bytes(r.body.certificate)

        async def identified(to: Device, plain: bytes) -> None:
            assert alice.store is not None
            if alice.store.load_session(to.address) is None:
                r = await a.request(rf.FetchBundles(to.aci, 1))
                assert isinstance(r.body, rf.Bundles)
                cipher.process_prekey_bundle(
                    to_bundle(r.body.bundles[0]), to.address, alice.store, now=NOW,
                    rng=alice.rng, local_address=alice.address,
                )  # fmt: skip
            m = cipher.message_encrypt(
                plain, to.address, alice.store, now=NOW, rng=alice.rng,
                local_address=alice.address,
            )  # fmt: skip
            prekey = isinstance(m, PreKeySignalMessage)
            etype = rf.EnvelopeType.PREKEY_BUNDLE if prekey else rf.EnvelopeType.CIPHERTEXT
            out = rf.OutgoingMessage(1, to.registration_id, etype, m.to_bytes())
            assert (await a.request(rf.SendMessage(to.aci, NOW, (out,)))).code == 0

        await identified(bob, PLAINTEXTS["to_bob"])
        await identified(carol, PLAINTEXTS["to_carol"])
        for dev, conn in ((bob, b), (carol, c)):
            (env,) = await conn.wait_pushes(1)
            assert dev.store is not None
            got = cipher.message_decrypt(
                env.body, CiphertextMessageType.PREKEY, alice.address, dev.store,
                now=NOW, rng=dev.rng, local_address=dev.address,
            )  # fmt: skip
            assert got in PLAINTEXTS.values()
            assert (await conn.request(rf.Ack((env.id,)))).code == 0

        # Sender-key distribution, sealed (v1) over the 1:1 sessions, on an anonymous socket.
        dist = uuid.UUID(int=7)
        skdm = groups.create_sender_key_distribution_message(
            alice.address, dist, alice.store, rng=alice.rng
        )
        anon = await RawClient.open(server.url)
        for to, conn in ((bob, b), (carol, c)):
            sealed = sealed_sender_encrypt(
                to.address, cert, skdm.to_bytes(), alice.store, now=NOW, rng=alice.rng
            )
            out = rf.OutgoingMessage(1, to.registration_id, 0, sealed)
            r = await anon.request(rf.SendSealed(to.aci, to.access_key, NOW, (out,)))
            assert r.code == 0, r
            env = (await conn.wait_pushes(2))[1]
            assert to.store is not None
            res = sealed_sender_decrypt(
                env.body, trust, to.store, now=NOW, local_uuid=str(uuid.UUID(bytes=to.aci)),
                local_device_id=1, rng=to.rng,
            )  # fmt: skip
            groups.process_sender_key_distribution_message(alice.address, res.plaintext, to.store)
            assert (await conn.request(rf.Ack((env.id,)))).code == 0

        # The group message, fanned out with sealed sender v2 and split by the relay.
        gm = groups.group_encrypt(
            alice.address, dist, PLAINTEXTS["group"], alice.store, rng=alice.rng
        )
        usmc = UnidentifiedSenderMessageContent.new(
            CiphertextMessageType.SENDERKEY, cert, gm.to_bytes(), 0, b"group-id-1"
        )
        payload = sealed_sender_multi_recipient_encrypt(
            [bob.address, carol.address], usmc, alice.store, rng=alice.rng
        )
        access = (
            rf.RecipientAccess(bob.aci, bob.access_key),
            rf.RecipientAccess(carol.aci, carol.access_key),
        )
        wrong = (access[0], rf.RecipientAccess(carol.aci, bytes(16)))
        r = await anon.request(rf.SendMultiRecipient(payload, wrong, NOW))
        assert r.code == rf.StatusCode.UNAUTHENTICATED
        r = await anon.request(rf.SendMultiRecipient(payload, access, NOW))
        assert r.code == rf.StatusCode.OK, r
        for to, conn, ack in ((bob, b, True), (carol, c, False)):
            env = (await conn.wait_pushes(3))[2]
            assert env.type == rf.EnvelopeType.UNIDENTIFIED_SENDER and env.source_aci is None
            assert to.store is not None
            u = sealed_sender_decrypt_to_usmc(env.body, to.store)
            u.sender.validate(trust, NOW)
            assert groups.group_decrypt(u.contents, alice.address, to.store) == PLAINTEXTS["group"]
            if ack:
                assert (await conn.request(rf.Ack((env.id,)))).code == 0
        await anon.close()

        # One identified message Carol never acknowledges.
        await identified(carol, PLAINTEXTS["unacked"])
        await c.wait_pushes(4)
        for conn in (a, b, c):
            await conn.close()
        snapshot()  # DB and WAL while the relay runs

    snapshot()  # after a clean stop


def test_demo_sized_run_leaves_no_plaintext_key_or_address_and_is_disclosed(
    tmp_path: Path,
) -> None:
    db = tmp_path / "relay.db"
    alice, bob, carol = Device.new(31), Device.new(32), Device.new(33)
    capture = _Capture()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    snapshots: list[dict[str, bytes]] = []

    async def body() -> None:
        await _demo_traffic(db, alice, bob, carol, lambda: snapshots.append(_files(db)))

    try:
        run(body)
    finally:
        root.removeHandler(capture)
        root.setLevel(old_level)

    assert any(name.endswith("-wal") for name in snapshots[0])
    forbidden = list(PLAINTEXTS.values())
    for d in (alice, bob, carol):
        forbidden += _private_material(d)
    forbidden += [b"127.0.0.1", "127.0.0.1".encode("utf-16-le"), bytes([127, 0, 0, 1])]
    for snap in snapshots:
        for name, content in snap.items():
            for needle in forbidden:
                assert needle not in content, (name, needle[:12])
    log_text = "\n".join(capture.lines)
    assert "127.0.0.1" not in log_text
    for p in PLAINTEXTS.values():
        assert p.decode() not in log_text

    # Disclosure: what is still queued, dates, keys; deterministic.
    with SqliteRelayStore.open(db) as store:
        scans = [disclose(store, d.aci, scan_files=True).file_scan for d in (alice, bob, carol)]
        carol_report = disclose(store, carol.aci)
        alice_report = disclose(store, str(uuid.UUID(bytes=alice.aci)))
        again = disclose(store, carol.aci)
        nobody = disclose(store, uuid.UUID(int=1))
    assert carol_report.to_json() == again.to_json()
    assert carol_report.to_text() == again.to_text()
    assert carol_report.found and carol_report.created_date == "2025-06-15"
    (dev,) = carol_report.devices
    assert dev.last_seen_date == "2025-06-15"
    queued = carol_report.queued_for_account
    assert [q.type for q in queued] == ["UNIDENTIFIED_SENDER", "PREKEY_BUNDLE"]
    assert queued[0].sender == SENDER_UNKNOWN
    assert queued[1].sender == f"{uuid.UUID(bytes=alice.aci)} device 1"
    assert SENDER_UNKNOWN in carol_report.to_text()
    assert len(alice_report.queued_from_account) == 1  # her identified, unacked message
    data = json.loads(alice_report.to_json())
    assert data["identity_key"] == alice.identity.identity_key.to_bytes().hex()
    assert any("IP addresses" in item for item in data["not_held"])
    assert "creation date" in data["signal_comparison"] or "created" in data["signal_comparison"]
    assert not nobody.found and "holds no account" in nobody.to_text()
    # Nothing about any of them is left in the files beyond the rows the reports list.
    for scan in scans:
        assert scan is not None and scan.residue == ()
        assert {name for name, _ in scan.files} >= {"relay.db", "relay.db-wal", "relay.db-shm"}
    assert carol_report.file_scan is None and "--scan-files" in carol_report.to_text()


def _login(service: RelayService, device: Device, *, register: bool) -> Session:
    s = service.new_session()
    body = device.register(s.nonce) if register else device.authenticate(s.nonce)
    assert service.handle(s, rf.ClientFrame(1, body), NOW).response.code == rf.StatusCode.OK
    return s


def test_disclosure_names_sender_pairs_and_scans_the_files_for_residue(tmp_path: Path) -> None:
    """The sender's report lists the identified envelopes it sent that still wait (recipient,
    sender pair); its file scan finds nothing once the others are acknowledged; and a row
    deleted without overwriting (a relay without secure_delete) is reported as residue."""
    db = tmp_path / "relay.db"
    alice, bob = Device.new(41), Device.new(42)
    with SqliteRelayStore.open(db) as store:
        service = RelayService(store, SystemRng())
        _login(service, bob, register=True)
        _login(service, alice, register=True)
        s = _login(service, alice, register=False)
        for i in range(3):
            out = rf.OutgoingMessage(1, bob.registration_id, 1, bytes([i]) * 300)
            frame = rf.ClientFrame(2, rf.SendMessage(bob.aci, NOW + i, (out,)))
            assert service.handle(s, frame, NOW).response.code == rf.StatusCode.OK
        first, second, third = store.pending(bob.aci, 1)
        assert store.ack(bob.aci, 1, [first.id, second.id]) == 2

        report = disclose(store, alice.aci, scan_files=True)
        alice_text = str(uuid.UUID(bytes=alice.aci))
        bob_text = str(uuid.UUID(bytes=bob.aci))
        (sent,) = report.queued_from_account
        assert (sent.recipient, sent.sender) == (bob_text, f"{alice_text} device 1")
        assert f"to {bob_text} device 1" in report.to_text()
        assert report.file_scan is not None and report.file_scan.residue == ()
        assert "nothing: the account's identifier" in report.to_text()
        (waiting,) = disclose(store, bob.aci).queued_for_account
        assert waiting.sender == f"{alice_text} device 1"

        # A deletion that does not overwrite leaves the pair behind: the scan reports it.
        raw = sqlite3.connect(db)
        try:
            raw.execute("PRAGMA secure_delete=OFF")
            raw.execute("DELETE FROM messages WHERE id = ?", (third.id,))
            raw.commit()
        finally:
            raw.close()
        report = disclose(store, alice.aci, scan_files=True)
        assert report.queued_from_account == ()
        assert report.file_scan is not None
        assert [name for name, _ in report.file_scan.residue] == ["relay.db"]
        assert "RESIDUE" in report.to_text()
        assert json.loads(report.to_json())["file_scan"]["residue"][0][0] == "relay.db"

    runner = CliRunner()
    args = ["relay", "disclose", "--db", str(db), "--account", alice_text, "--scan-files"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "RESIDUE" in result.output and "relay.db: " in result.output


def _pg_files(root: Path) -> dict[str, bytes]:
    """The server's table and WAL files (not its configuration: pg_hba.conf names 127.0.0.1)."""
    out: dict[str, bytes] = {}
    for sub in ("base", "global", "pg_wal", "pg_xact", "pg_notify", "pg_multixact"):
        for p in (root / sub).rglob("*"):
            if p.is_file():
                out[str(p.relative_to(root))] = p.read_bytes()
    return out


def test_demo_sized_run_on_postgres_leaves_no_plaintext_key_or_address_and_is_disclosed(
    pg_server: Any, pg_url: str
) -> None:
    """The same run on PostgreSQL: no table row, and no byte of the server's table, WAL or
    notification files, holds a plaintext, a client private key or an IP address; the
    disclosure report is complete and says honestly what PostgreSQL's files may keep."""
    import psycopg

    from securemsg.relay.pgstore import PgRelayStore

    alice, bob, carol = Device.new(51), Device.new(52), Device.new(53)
    rows: list[bytes] = []

    def dump() -> None:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            tables = conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
            ).fetchall()
            for (table,) in tables:
                for row in conn.execute("SELECT * FROM " + table).fetchall():
                    for value in row:
                        rows.append(value if isinstance(value, bytes) else str(value).encode())
            conn.execute("CHECKPOINT")  # the WAL's content reaches the table files too

    run(lambda: _demo_traffic(pg_url, alice, bob, carol, dump))
    forbidden = list(PLAINTEXTS.values())
    for d in (alice, bob, carol):
        forbidden += _private_material(d)
    addresses = [b"127.0.0.1", "127.0.0.1".encode("utf-16-le"), bytes([127, 0, 0, 1])]
    for value in rows:
        for needle in forbidden + addresses[:2]:
            assert needle not in value, needle[:12]
    files = _pg_files(Path(pg_server.data))
    assert any(name.startswith("pg_wal/") for name in files)
    for name, content in files.items():
        for needle in forbidden + addresses[:2]:
            assert needle not in content, (name, needle[:12])

    with PgRelayStore.open(pg_url) as store:
        carol_report = disclose(store, carol.aci)
        again = disclose(store, carol.aci)
        with pytest.raises(StorageError, match="database server"):
            disclose(store, carol.aci, scan_files=True)  # fail closed: it cannot look
    assert carol_report.to_json() == again.to_json()
    queued = carol_report.queued_for_account
    assert [q.type for q in queued] == ["UNIDENTIFIED_SENDER", "PREKEY_BUNDLE"]
    assert queued[0].sender == SENDER_UNKNOWN
    text = carol_report.to_text()
    assert "does not overwrite deleted rows" in text and "secure_delete" not in text
    assert not any("overwritten" in item for item in carol_report.not_held)


def test_postgres_keeps_deleted_envelopes_only_until_vacuum_and_reuse(
    pg_server: Any, pg_url: str
) -> None:
    """What PostgreSQL keeps after an ack, measured on the server's files: the bytes stay in
    the table's pages until VACUUM frees the space and new rows overwrite it, and in the WAL
    (the window docs/scaling.md states). The mailbox tables carry the aggressive autovacuum
    settings."""
    import os

    import psycopg

    from securemsg.relay.pgstore import PgRelayStore
    from securemsg.relay.store import QueuedMessage

    def in_tables(marker: bytes) -> int:
        with psycopg.connect(pg_server.url(), autocommit=True) as c:
            c.execute("CHECKPOINT")
        files = _pg_files(Path(pg_server.data))
        return sum(v.count(marker) for k, v in files.items() if k.startswith("base/"))

    marker = b"ACKED-" + os.urandom(8).hex().encode()
    aci, other = b"\xaa" * 16, b"\xbb" * 16
    with PgRelayStore.open(pg_url) as store:
        acked = [
            QueuedMessage(os.urandom(16), aci, 1, 6, None, 0, 1, 1, marker + bytes(i))
            for i in range(40)
        ]
        live = QueuedMessage(os.urandom(16), other, 1, 6, None, 0, 1, 1, b"live")
        assert store.enqueue([*acked, live], 1000)
        assert in_tables(marker) == 40
        assert store.ack(aci, 1, [m.id for m in acked]) == 40
        assert in_tables(marker) == 40  # dead tuples: deleted, not yet reclaimed
        store.vacuum()
        # Freed, not zeroed: the page that still holds a live row keeps the bytes ...
        assert in_tables(marker) > 0
        for _ in range(5):  # ... until new rows are written over them
            batch = [
                QueuedMessage(os.urandom(16), other, 1, 6, None, 0, 1, 1, os.urandom(64))
                for _ in range(200)
            ]
            assert store.enqueue(batch, 10_000)
        assert in_tables(marker) == 0
        (opts,) = store._read("SELECT reloptions FROM pg_class WHERE relname = 'messages'")
        assert "autovacuum_vacuum_scale_factor=0" in opts[0]
