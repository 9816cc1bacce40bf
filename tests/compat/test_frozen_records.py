"""Stored records written by earlier releases keep loading (openmls ``kat_storage_stability``).

Every folder under ``tests/compat/frozen/`` was written once by ``generate_frozen_records.py``
and is never regenerated (see ``tests/compat/README.md``). With today's code: each record
decodes and re-encodes to the same bytes; each captured SessionRecord (one per SPQR braid
state reached in the scripted conversation) decrypts the message its peer sent next and then
carries on a short conversation in both directions; the SenderKeyRecord decrypts its group
messages; and the SQLite databases open (migrating if needed) and yield what was put in them.
A failure here means a storage format changed: add a migration, or a new format version.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

import pytest

from securemsg import cipher, groups
from securemsg.client.store import ClientStore
from securemsg.crypto.rng import DeterministicRng
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.identity_and_prekeys import (
    IdentityKeyPair,
    KyberPreKeyRecord,
    PreKeyBundle,
    PreKeyRecord,
    SignedPreKeyRecord,
)
from securemsg.protocol.sender_keys import SenderKeyRecord
from securemsg.protocol.session_record import SessionRecord
from securemsg.relay.store import ServerKeysRow, SqliteRelayStore
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.store.sqlite import SqliteProtocolStore
from securemsg.wire.messages import CiphertextMessageType, PreKeySignalMessage

FROZEN = Path(__file__).resolve().parent / "frozen"
VERSIONS = sorted(p.name for p in FROZEN.iterdir() if p.is_dir())


def _b(text: str) -> bytes:
    return base64.b64decode(text)


def _json(version: str, name: str) -> Any:
    return json.loads((FROZEN / version / name).read_text())


def _manifest(version: str) -> Any:
    return _json(version, "manifest.json")


def _captures() -> list[tuple[str, dict[str, Any]]]:
    return [(v, c) for v in VERSIONS for c in _json(v, "sessions.json")["captures"]]


def test_there_is_at_least_the_v1_folder() -> None:
    assert "v1" in VERSIONS


@pytest.mark.parametrize("version", VERSIONS)
def test_frozen_files_are_unchanged_since_they_were_written(version: str) -> None:
    root = FROZEN / version
    recorded = _manifest(version)["sha256"]
    present = {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }
    assert present == set(recorded)
    for name, digest in recorded.items():
        assert hashlib.sha256((root / name).read_bytes()).hexdigest() == digest, name


@pytest.mark.parametrize("version", VERSIONS)
def test_key_records_decode_and_reencode_to_the_same_bytes(version: str) -> None:
    root = FROZEN / version / "records"
    expected = _manifest(version)["records"]
    ik_data = (root / "identity_key_pair.bin").read_bytes()
    ik = IdentityKeyPair.from_bytes(ik_data)
    assert ik.to_bytes() == ik_data
    assert ik.identity_key.to_bytes().hex() == expected["identity_key"]

    opk_data = (root / "pre_key_record.bin").read_bytes()
    opk = PreKeyRecord.from_bytes(opk_data)
    assert opk.to_bytes() == opk_data
    assert opk.id == 7
    assert opk.public_key.to_bytes().hex() == expected["pre_key_public"]

    spk_data = (root / "signed_pre_key_record.bin").read_bytes()
    spk = SignedPreKeyRecord.from_bytes(spk_data)
    assert spk.to_bytes() == spk_data
    assert spk.id == 8
    assert spk.public_key.to_bytes().hex() == expected["signed_pre_key_public"]
    ik.identity_key.public_key.verify(spk.public_key.to_bytes(), spk.signature)

    kpk_data = (root / "kyber_pre_key_record.bin").read_bytes()
    kpk = KyberPreKeyRecord.from_bytes(kpk_data)
    assert kpk.to_bytes() == kpk_data
    assert kpk.id == 9
    assert kpk.public_key.to_bytes().hex() == expected["kyber_pre_key_public"]
    ik.identity_key.public_key.verify(kpk.public_key.to_bytes(), kpk.signature)

    for name, has_one_time in (
        ("pre_key_bundle.bin", True),
        ("pre_key_bundle_without_one_time_key.bin", False),
    ):
        data = (root / name).read_bytes()
        bundle = PreKeyBundle.from_bytes(data)
        assert bundle.to_bytes() == data
        assert (bundle.pre_key_id is not None) == has_one_time
        assert bundle.identity_key.to_bytes() == ik.identity_key.to_bytes()
        assert bundle.kyber_pre_key_public.to_bytes() == kpk.public_key.to_bytes()
        bundle.verify_signatures()


def _party(doc: dict[str, Any], who: str, peer: str, record: bytes) -> InMemoryProtocolStore:
    ik = IdentityKeyPair.from_bytes(_b(doc[who + "_identity_key_pair"]))
    peer_ik = IdentityKeyPair.from_bytes(_b(doc[peer + "_identity_key_pair"]))
    store = InMemoryProtocolStore(ik, doc[who]["registration_id"])
    store.save_identity(_address(doc[peer]), peer_ik.identity_key)
    store.store_session(_address(doc[peer]), SessionRecord.from_bytes(record))
    return store


def _address(entry: dict[str, Any]) -> ProtocolAddress:
    return ProtocolAddress(entry["name"], entry["device_id"])


@pytest.mark.parametrize(
    ("version", "capture"), _captures(), ids=[f"{v}-{c['label']}" for v, c in _captures()]
)
def test_captured_session_decrypts_the_next_message_and_continues(
    version: str, capture: dict[str, Any]
) -> None:
    doc = _json(version, "sessions.json")
    now = doc["now_ms"]
    rx, tx = capture["receiver"], capture["sender"]
    rx_record, tx_record = _b(capture["receiver_record"]), _b(capture["sender_record"])
    for data in (rx_record, tx_record):
        assert SessionRecord.from_bytes(data).to_bytes() == data
    loaded = SessionRecord.from_bytes(rx_record)
    assert loaded.current is not None
    assert loaded.current.spqr.state_name == capture["receiver_braid_state"]
    assert loaded.current.spqr.epoch == capture["receiver_epoch"]

    rx_addr, tx_addr = _address(doc[rx]), _address(doc[tx])
    stores = {rx: _party(doc, rx, tx, rx_record), tx: _party(doc, tx, rx, tx_record)}
    addresses = {rx: rx_addr, tx: tx_addr}
    for entry in capture["receiver_pre_keys"]:
        data = _b(entry["record"])
        if entry["kind"] == "signed":
            spk = SignedPreKeyRecord.from_bytes(data)
            stores[rx].save_signed_pre_key(spk.id, spk)
        elif entry["kind"] == "kyber":
            kpk = KyberPreKeyRecord.from_bytes(data)
            stores[rx].save_kyber_pre_key(kpk.id, kpk)
        else:
            opk = PreKeyRecord.from_bytes(data)
            stores[rx].save_pre_key(opk.id, opk)
    rng = DeterministicRng(b"compat continuation " + capture["label"].encode())

    out = cipher.message_decrypt(
        _b(capture["message"]),
        CiphertextMessageType(capture["message_type"]),
        tx_addr,
        stores[rx],
        now=now,
        rng=rng,
        local_address=rx_addr,
    )
    assert out == _b(capture["plaintext"])

    # A short conversation: replies, a burst, and back, all through the loaded records.
    for n, (sender, receiver) in enumerate([(rx, tx), (tx, rx), (tx, rx), (rx, tx), (rx, tx)]):
        text = b"continued %d" % n
        message = cipher.message_encrypt(
            text,
            addresses[receiver],
            stores[sender],
            now=now,
            rng=rng,
            local_address=addresses[sender],
        )
        mtype = (
            CiphertextMessageType.PREKEY
            if isinstance(message, PreKeySignalMessage)
            else CiphertextMessageType.WHISPER
        )
        got = cipher.message_decrypt(
            message.to_bytes(),
            mtype,
            addresses[sender],
            stores[receiver],
            now=now,
            rng=rng,
            local_address=addresses[receiver],
        )
        assert got == text


@pytest.mark.parametrize("version", VERSIONS)
def test_sender_key_record_decrypts_its_group_messages(version: str) -> None:
    doc = _json(version, "group.json")
    sender = _address(doc["sender"])
    distribution_id = uuid.UUID(doc["distribution_id"])
    rx_data, tx_data = _b(doc["receiver_record"]), _b(doc["sender_record"])
    for data in (rx_data, tx_data):
        assert SenderKeyRecord.from_bytes(data).to_bytes() == data
    rng = DeterministicRng(b"compat group")
    rx = InMemoryProtocolStore(IdentityKeyPair.generate(rng), 1)
    rx.store_sender_key(sender, distribution_id, SenderKeyRecord.from_bytes(rx_data))
    # Out of order on purpose: the gap leaves stored message keys behind.
    for entry in reversed(doc["messages"]):
        assert groups.group_decrypt(_b(entry["message"]), sender, rx) == _b(entry["plaintext"])
    # The sender's record keeps encrypting, and a receiver set up from the frozen
    # distribution message reads it.
    tx = InMemoryProtocolStore(IdentityKeyPair.generate(rng), 2)
    tx.store_sender_key(sender, distribution_id, SenderKeyRecord.from_bytes(tx_data))
    message = groups.group_encrypt(sender, distribution_id, b"still here", tx, rng=rng)
    assert groups.group_decrypt(message.to_bytes(), sender, rx) == b"still here"


def _copy(version: str, name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copyfile(FROZEN / version / name, target)
    return target


@pytest.mark.parametrize("version", VERSIONS)
def test_protocol_store_database_opens_and_decrypts(version: str, tmp_path: Path) -> None:
    info = _manifest(version)["protocol_store"]
    expected = info["expected"]
    now = _manifest(version)["now_ms"]
    doc = _json(version, "sessions.json")
    alice = _address(doc["alice"])
    bob = _address(doc["bob"])
    carol = _address(info["carol"])
    path = _copy(version, info["file"], tmp_path)
    ik = IdentityKeyPair.from_bytes(_b(info["identity_key_pair"]))

    db = SqliteProtocolStore.open(path)
    try:
        assert db.get_identity_key_pair().to_bytes() == ik.to_bytes()
        assert db.get_local_registration_id() == info["registration_id"]
        assert db.get_pre_key_ids() == expected["pre_key_ids"]
        assert db.get_signed_pre_key_ids() == expected["signed_pre_key_ids"]
        assert db.get_kyber_pre_key_ids() == expected["kyber_pre_key_ids"]
        assert db.get_session_device_ids(alice.name) == expected["session_device_ids"]
        record = db.load_session(alice)
        assert record is not None and record.to_bytes() == _b(expected["session_record"])
        distribution_id = uuid.UUID(_json(version, "group.json")["distribution_id"])
        skr = db.load_sender_key(alice, distribution_id)
        assert skr is not None and skr.to_bytes() == _b(expected["sender_key_record"])

        rng = DeterministicRng(b"compat sqlite")
        msg = info["alice_message"]
        out = cipher.message_decrypt(
            _b(msg["message"]),
            CiphertextMessageType(msg["message_type"]),
            alice,
            db,
            now=now,
            rng=rng,
            local_address=bob,
        )
        assert out == _b(msg["plaintext"])
        group_msg = info["alice_group_message"]
        assert groups.group_decrypt(_b(group_msg["message"]), alice, db) == _b(
            group_msg["plaintext"]
        )
        c = info["carol"]
        out = cipher.message_decrypt(
            _b(c["message"]),
            CiphertextMessageType(c["message_type"]),
            carol,
            db,
            now=now,
            rng=rng,
            local_address=bob,
        )
        assert out == _b(c["plaintext"])
        assert len(db.get_pre_key_ids()) == len(expected["pre_key_ids"]) - 1
    finally:
        db.close()

    # Reopened, the new state is there (and Carol's session answers).
    db = SqliteProtocolStore.open(path, ik, info["registration_id"])
    try:
        assert db.load_session(carol) is not None
        assert db.get_session_device_ids(alice.name) == expected["session_device_ids"]
    finally:
        db.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_client_store_database_opens_and_yields_its_rows(version: str, tmp_path: Path) -> None:
    info = _manifest(version)["client_store"]
    expected = info["expected"]
    path = _copy(version, info["file"], tmp_path)
    db = ClientStore.open_client(path)
    try:
        ik = IdentityKeyPair.from_bytes(_b(info["identity_key_pair"]))
        assert db.get_identity_key_pair().to_bytes() == ik.to_bytes()
        assert db.get_local_registration_id() == info["registration_id"]
        meta = expected["meta"]
        assert db.get_meta_str("aci") == meta["aci"]
        assert db.get_meta_int("device_id") == meta["device_id"]
        assert db.get_meta_bytes("profile_key") == _b(meta["profile_key"])
        assert db.get_meta("unset") is None
        assert db.next_id("pre_key_id") == meta["pre_key_id_next"]
        for aci, key in expected["access_key"].items():
            assert db.get_access_key(aci) == _b(key)
        group = db.get_group(_b(expected["group"]["id"]))
        assert group is not None
        assert group.title == expected["group"]["title"]
        assert list(group.members) == expected["group"]["members"]
        assert db.group_key_sent(group.group_id, expected["group"]["members"][1], 1)
        pending = db.inbox_pending()
        assert [(_b64(r.envelope_id), r.body, r.sealed) for r in pending] == [
            (r["envelope_id"], r["body"], r["sealed"]) for r in expected["inbox_pending"]
        ]
        assert db.inbox_count() == expected["inbox_count"]
        assert db.inbox_has_envelope(b"\x01" * 16)
    finally:
        db.close()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@pytest.mark.parametrize("version", VERSIONS)
def test_relay_store_database_opens_and_yields_its_rows(version: str, tmp_path: Path) -> None:
    expected = _manifest(version)["relay_store"]["expected"]
    path = _copy(version, _manifest(version)["relay_store"]["file"], tmp_path)
    db = SqliteRelayStore.open(path)
    try:
        for table, columns in expected["schema"].items():
            # Later versions may add columns or tables; what v1 wrote must still be there.
            assert set(columns) <= set(db.schema()[table]), table
        keys = expected["server_keys"]
        stored = db.init_server_keys(
            ServerKeysRow(b"\x00" * 32, b"\x05" * 33, 9, b"\x00" * 32, b"\x05" * 33, b"")
        )
        assert stored.trust_root_public == _b(keys["trust_root_public"])
        assert stored.server_public == _b(keys["server_public"])
        assert stored.server_certificate == _b(keys["server_certificate"])
        for aci_text in expected["accounts"]:
            aci = _b(aci_text)
            assert db.get_account(aci) is not None
            devices = [[d.device_id, d.registration_id] for d in db.list_devices(aci)]
            assert devices == expected["devices"][aci_text]
            assert list(db.pre_key_counts(aci, 1)) == expected["pre_key_counts"][aci_text]
        receiver = _b(expected["accounts"][1])
        pending = db.pending(receiver, 1)
        assert [
            {
                "id": _b64(m.id),
                "type": m.type,
                "sealed": m.source_aci is None,
                "body": _b64(m.body),
                "received_at": m.received_at,
            }
            for m in pending
        ] == expected["pending"]
        bundles = db.take_bundles(receiver, 1)
        assert len(bundles) == 1 and bundles[0].pre_key is not None
        assert db.ack(receiver, 1, [pending[0].id]) == 1
    finally:
        db.close()
