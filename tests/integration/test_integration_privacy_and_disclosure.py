"""What the relay holds after a demo-sized run through the real client SDK.

One run (module fixture) on a real file system: three users register; a first-contact 1:1
message goes identified, the replies sealed (sealed sender v1 on an unauthenticated
connection); Carol's one-time prekeys run out so Bob's session with her starts from her signed
and last-resort Kyber prekeys; a group talks over sender keys fanned out with sealed sender
v2; finally Carol is offline while one sealed and one identified message wait for her. The
relay's loggers run at DEBUG (more than any deployment would log) and are captured.

Then, over every table and row of the relay's SQLite database, its raw file and its WAL (taken
while the relay runs, and again after it stopped) and the captured logs:

* no known plaintext (UTF-8, UTF-16, any 8-byte window of it), no group title;
* no private key material of any client (identity, one-time / signed / Kyber prekey seeds,
  session root, chain and ratchet keys, harvested from the clients' stores during the run),
  no access key in clear;
* no IP address (text forms anywhere, packed forms in non-random columns);
* every table and column is classified in :mod:`securemsg.relay.disclosure` (from
  ``sqlite_master`` and ``PRAGMA table_info`` of the database the run produced), and the
  date columns hold dates only;
* every row that mentions an account (its ACI in any form, its identity key, any prekey it
  uploaded) appears in that account's disclosure report (JSON), nothing left out, and the
  report's scan of the files' bytes finds the account's identifier nowhere else (no residue
  of acknowledged envelopes, which used to stay readable in the WAL).

The unit version of the scan (raw frames, no SDK) is tests/unit/relay/
test_relay_disclosure_and_scan.py; the schema unit test is
test_relay_store_contract.py::test_every_column_of_the_relay_schema_is_classified.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from integration_harness import (
    IPV4,
    IPV6_LOOPBACK,
    RelayLogCapture,
    Secrets,
    db_files,
    introduce,
    new_client,
    public_identifiers,
    read_all_rows,
    receive_n,
    run,
    schema_columns,
)

from securemsg.client import Client
from securemsg.relay.disclosure import (
    SCHEMA_CLASSIFICATION,
    SENDER_UNKNOWN,
    ColumnClass,
    disclose,
)
from securemsg.relay.server import RelayServer
from securemsg.relay.store import SqliteRelayStore
from securemsg.relay_protocol.frames import EnvelopeType

GROUP_TITLE = "Saturday Ridge Hikers"
PLAINTEXTS = (
    "Quixotic zebra: first contact, identified envelope",
    "Marmalade falcon replies, sealed this time",
    "Obsidian walrus to Carol: sealed, consumes her one-time prekey",
    "Tangerine heron from Bob: Carol's one-time keys are gone now",
    "Group hello: periwinkle kangaroo at the trailhead",
    "Carol answers the group: saffron armadillo brings snacks",
    "Waiting for Carol (sealed): vermilion pangolin",
    "Waiting for Carol (identified): cerulean axolotl",
)
RELAY_LOGGERS = ("securemsg.relay", "securemsg.relay.websockets", "websockets.server")


@dataclass
class DemoRun:
    db: Path
    snapshots: list[dict[str, bytes]]
    logs: list[str]
    secrets: Secrets
    identifiers: dict[str, dict[bytes, str]]  # ACI text -> identifier bytes -> what
    names: dict[str, str]  # ACI text -> name


async def _demo(tmp: Path, capture: RelayLogCapture) -> DemoRun:
    db = tmp / "relay.db"
    secrets = Secrets()
    identifiers: dict[str, dict[bytes, str]] = {}
    snapshots: list[dict[str, bytes]] = []
    relay = RelayServer(db)
    await relay.start()
    for name in RELAY_LOGGERS:  # start() caps the websockets logger; open it up all the way
        logging.getLogger(name).setLevel(logging.DEBUG)
    clients: list[Client] = []
    try:
        alice = await new_client(relay, tmp / "alice.db", batch=3, low_water=0)
        bob = await new_client(relay, tmp / "bob.db", batch=3, low_water=0)
        carol = await new_client(relay, tmp / "carol.db", batch=1, low_water=0)
        clients += [alice, bob, carol]
        acis = [c.aci for c in clients]
        offline: list[Client] = []

        def harvest() -> None:
            for c in (x for x in clients if x not in offline):
                secrets.harvest(c, acis)
                identifiers.setdefault(c.aci, {}).update(public_identifiers(c))

        harvest()  # every one-time prekey, before any is consumed
        p = iter(PLAINTEXTS)
        await alice.send_text(bob.aci, next(p), sealed=False)  # first contact: identified
        assert await receive_n(bob, 1) == [PLAINTEXTS[0]]
        await bob.send_text(alice.aci, next(p))  # Bob learned Alice's access key: sealed
        assert await receive_n(alice, 1) == [PLAINTEXTS[1]]
        harvest()

        introduce(alice, bob, carol)
        await alice.send_text(carol.aci, next(p))  # takes Carol's only one-time prekeys
        assert await receive_n(carol, 1) == [PLAINTEXTS[2]]
        counts = await carol.prekey_counts()
        assert (counts.ec_count, counts.kyber_count) == (0, 0)  # exhausted, no top-up
        await bob.send_text(carol.aci, next(p))  # signed + last-resort Kyber prekey
        assert await receive_n(carol, 1) == [PLAINTEXTS[3]]
        assert carol.store.get_kyber_pre_key_ids(last_resort=True)  # reusable, still there
        harvest()

        group = alice.create_group(GROUP_TITLE, [bob.aci, carol.aci])
        await alice.send_group_text(group, next(p))
        for member in (bob, carol):
            assert await receive_n(member, 1) == [PLAINTEXTS[4]]
        await carol.send_group_text(group, next(p))
        for member in (alice, bob):
            assert await receive_n(member, 1) == [PLAINTEXTS[5]]
        harvest()

        harvest()
        offline.append(carol)
        await carol.close()  # offline: the next two wait in her mailbox
        await alice.send_text(carol.aci, next(p))
        await bob.send_text(carol.aci, next(p), sealed=False)
        harvest()
        snapshots.append(db_files(db))  # database and WAL while the relay runs
    finally:
        for c in clients:
            await c.close()
        await relay.stop()
    snapshots.append(db_files(db))  # after a clean stop
    names = dict(zip(acis, ("alice", "bob", "carol"), strict=True))
    return DemoRun(db, snapshots, capture.lines, secrets, identifiers, names)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoRun:
    capture = RelayLogCapture()
    with capture.installed(*RELAY_LOGGERS):
        return run(_demo(tmp_path_factory.mktemp("privacy"), capture))


def _plaintext_needles() -> dict[bytes, str]:
    needles: dict[bytes, str] = {}
    for text in (*PLAINTEXTS, GROUP_TITLE):
        for encoding in ("utf-8", "utf-16-le", "utf-16-be"):
            data = text.encode(encoding)
            needles[data] = f"{text!r} ({encoding})"
            for i in range(len(data) - 7):  # every 8-byte window
                needles.setdefault(data[i : i + 8], f"8 bytes of {text!r} ({encoding})")
    return needles


def _blobs(demo: DemoRun, db: Path | None = None) -> list[tuple[str, bytes]]:
    """Every byte string to scan: raw files, then every cell of every table (text as UTF-8)."""
    out = [
        (f"file {name} (snapshot {i})", content)
        for i, snap in enumerate(demo.snapshots)
        for name, content in snap.items()
    ]
    for table, (cols, rows) in read_all_rows(db or demo.db).items():
        for row in rows:
            for col, value in zip(cols, row, strict=True):
                if isinstance(value, bytes):
                    out.append((f"{table}.{col}", value))
                elif isinstance(value, str):
                    out.append((f"{table}.{col}", value.encode()))
    return out


def test_the_run_left_a_wal_and_queued_messages(demo: DemoRun) -> None:
    assert any(n.endswith("-wal") for n in demo.snapshots[0]), demo.snapshots[0].keys()
    rows = read_all_rows(demo.db)
    assert len(rows["messages"][1]) == 2  # the two waiting for Carol
    assert len(demo.secrets.items) > 20 and demo.logs  # the scan has something to look for


def _findings(blobs: list[tuple[str, bytes]], needles: dict[bytes, str]) -> list[str]:
    return [f"{what} in {where}" for where, b in blobs for n, what in needles.items() if n in b]


def test_no_plaintext_private_key_or_access_key_anywhere_in_the_database(demo: DemoRun) -> None:
    needles = {**_plaintext_needles(), **demo.secrets.items}
    assert _findings(_blobs(demo), needles) == []


def test_the_scan_finds_planted_plaintext_and_keys(demo: DemoRun, tmp_path: Path) -> None:
    """Control: the same scan over a copy with a planted row does find what it looks for."""
    copy = tmp_path / "planted.db"
    src = sqlite3.connect(demo.db)
    dst = sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    secret = next(iter(demo.secrets.items))
    body = b"\x01" + PLAINTEXTS[3].encode("utf-16-le")[10:26] + secret
    dst.execute("UPDATE messages SET body = ? WHERE seq = (SELECT MIN(seq) FROM messages)", (body,))
    dst.commit()
    dst.close()
    found = _findings(_blobs(demo, copy), {**_plaintext_needles(), **demo.secrets.items})
    assert any("utf-16-le" in f and "messages.body" in f for f in found), found
    assert any(demo.secrets.items[secret] in f for f in found), found


def test_no_plaintext_or_secret_in_the_relay_logs(demo: DemoRun) -> None:
    text = "\n".join(demo.logs)
    for p in (*PLAINTEXTS, GROUP_TITLE):
        for i in range(len(p) - 7):
            assert p[i : i + 8] not in text, p
    for secret, what in demo.secrets.items.items():
        assert secret.hex() not in text.lower(), what
        assert secret.hex().upper() not in text, what


def test_no_ip_address_in_the_database_or_the_logs(demo: DemoRun) -> None:
    text_forms = [b"127.0.0.1", "127.0.0.1".encode("utf-16-le"), b"::1", b"localhost"]
    for where, blob in _blobs(demo):
        for form in text_forms[:2]:
            assert form not in blob, where
    random_classes = (ColumnClass.OPAQUE_CIPHERTEXT, ColumnClass.PUBLIC_KEY)
    packed = (bytes([127, 0, 0, 1]), bytes(15) + b"\x01")
    for table, (cols, rows) in read_all_rows(demo.db).items():
        for row in rows:
            for col, value in zip(cols, row, strict=True):
                cls = SCHEMA_CLASSIFICATION.get((table, col), (None, ""))[0]
                if isinstance(value, str):
                    assert not IPV4.search(value) and not IPV6_LOOPBACK.search(value), (table, col)
                    assert "localhost" not in value
                elif isinstance(value, bytes) and cls not in random_classes:
                    if col in ("trust_root_private", "server_private", "server_certificate"):
                        continue  # the relay's own random keys
                    assert not any(p in value for p in packed), (table, col)
    for line in demo.logs:
        assert not IPV4.search(line), line
        assert not IPV6_LOOPBACK.search(line), line
        assert "localhost" not in line, line


def test_every_table_and_column_of_the_produced_database_is_classified(demo: DemoRun) -> None:
    live = schema_columns(demo.db)
    unclassified = sorted(live - set(SCHEMA_CLASSIFICATION))
    assert unclassified == [], f"classify these in securemsg.relay.disclosure: {unclassified}"
    # queue_usage.shard and provisioning_addresses are the PostgreSQL store's
    # (test_relay_store_contract compares both)
    postgres_only = {
        ("queue_usage", "shard"),
        ("provisioning_addresses", "digest"),
        ("provisioning_addresses", "expires"),
    }
    sqlite_classified = set(SCHEMA_CLASSIFICATION) - postgres_only
    assert sqlite_classified <= live, "classified columns that no longer exist"
    # Dates are dates: no time of day for creation or last connection.
    rows = read_all_rows(demo.db)
    for table, column in live:
        if column.endswith("_date"):
            cols, values = rows[table]
            for row in values:
                assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(row[cols.index(column)]))


def _uuid_text(value: Any) -> str | None:
    return str(uuid.UUID(bytes=value)) if isinstance(value, bytes) and len(value) == 16 else None


def _mentions(value: Any, identifiers: dict[bytes, str]) -> str | None:
    data = value.encode() if isinstance(value, str) else value
    if not isinstance(data, bytes):
        return None
    for ident, what in identifiers.items():
        if ident in data:
            return what
    return None


def test_every_row_about_an_account_is_in_its_disclosure_report(demo: DemoRun) -> None:
    rows = read_all_rows(demo.db)
    with SqliteRelayStore.open(demo.db) as store:
        reports = {
            aci: json.loads(disclose(store, aci, scan_files=True).to_json())
            for aci in demo.identifiers
        }
    kinds = {
        "signed_pre_keys": "signed prekey",
        "last_resort_kyber_pre_keys": "last-resort Kyber prekey",
        "one_time_pre_keys": "one-time prekey",
        "one_time_kyber_pre_keys": "one-time Kyber prekey",
    }
    checked = 0
    for aci, idents in demo.identifiers.items():
        report = reports[aci]
        assert report["found"] and report["aci"] == aci
        # Nothing about the account in any byte of the files beyond the rows checked below.
        scan = report["file_scan"]
        assert scan["residue"] == [], (demo.names[aci], scan)
        assert {f[0] for f in scan["files"]} >= {"relay.db", "relay.db-wal", "relay.db-shm"}
        devices = {d["device_id"]: d for d in report["devices"]}
        for table, (cols, values) in rows.items():
            for raw in values:
                row = dict(zip(cols, raw, strict=True))
                hits = {c: w for c, v in row.items() if (w := _mentions(v, idents))}
                if not hits:
                    continue
                checked += 1
                where = f"{table} row mentioning {demo.names[aci]} ({hits})"
                if table == "accounts":
                    assert _uuid_text(row["aci"]) == aci, where
                    assert report["identity_key"] == row["identity_key"].hex(), where
                    assert report["created_date"] == row["created_date"], where
                    assert "digest" in report["access_key"], where
                elif table == "devices":
                    d = devices[row["device_id"]]
                    got = (d["registration_id"], d["created_date"], d["last_seen_date"])
                    want = (row["registration_id"], row["created_date"], row["last_seen_date"])
                    assert got == want, where
                elif table in kinds:
                    keys = devices[row["device_id"]]["keys"]
                    entry = {
                        "kind": kinds[table],
                        "key_id": row["key_id"],
                        "public_key": row["public_key"].hex(),
                        "signature": row.get("signature", b"").hex(),
                    }
                    assert entry in keys, where
                elif table == "messages":
                    _check_message(row, aci, report, where)
                elif table == "kt_pending":
                    kt = report["key_transparency"]
                    assert kt["queued_identity_key"] == row["value"].hex(), where
                elif table == "kt_values":
                    published = {
                        (v["version"], v["epoch"], v["identity_key"])
                        for v in report["key_transparency"]["versions"]
                    }
                    assert (row["version"], row["epoch"], row["value"].hex()) in published, where
                else:
                    raise AssertionError(f"{where}: the report has no section for {table}")
    assert checked >= 3 * 4  # each account: account, device, signed and last-resort keys


def _check_message(row: dict[str, Any], aci: str, report: dict[str, Any], where: str) -> None:
    source = _uuid_text(row["source_aci"])
    entry = {
        "recipient": _uuid_text(row["aci"]),
        "recipient_device_id": row["device_id"],
        "type": EnvelopeType(row["type"]).name,
        "size_bytes": row["size"],  # the whole body (a shared part is stored apart)
        "received_at": datetime.fromtimestamp(row["received_at"] / 1000, tz=UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z"),
        "sender": SENDER_UNKNOWN
        if source is None
        else f"{source} device {row['source_device_id']}",
        "client_timestamp": row["client_timestamp"],
    }
    mine = [
        *(report["queued_for_account"] if entry["recipient"] == aci else []),
        *(report["queued_from_account"] if source == aci else []),
    ]
    assert entry in mine, f"{where}: not attributed to the account in its report"
