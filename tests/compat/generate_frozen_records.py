#!/usr/bin/env python3
"""Write frozen stored records for one format version under ``tests/compat/frozen/<version>/``.

Theory of operation: everything is drawn from :class:`DeterministicRng`, and every record is
produced through the public API (``to_bytes()``, ``cipher.*``, ``groups.*``, the SQLite stores'
methods), exactly as a real installation would have written it. What is captured:

* ``records/*.bin`` -- one serialized record of each storage type (identity key pair, prekey,
  signed prekey, Kyber prekey, prekey bundle with and without a one-time key, sender key).
* ``sessions.json`` -- a scripted Alice/Bob conversation; before a message is delivered, the
  receiver's SessionRecord is captured the first time it is in a given SPQR braid state (plus
  a record holding skipped message keys and one with an archived previous session), together
  with the sender's record at that moment and the message itself (base64).
* ``group.json`` -- a SenderKeyRecord of a receiver and the sender's next group messages.
* ``protocol_store.sqlite``, ``client_store.sqlite``, ``relay_store.sqlite`` -- small databases
  created through ``SqliteProtocolStore.open``, ``ClientStore.open_client`` and
  ``SqliteRelayStore.open``; what they hold (and the messages to decrypt with them) is in
  ``manifest.json``.

RULE: a folder under ``frozen/`` is never regenerated. The script refuses to write into an
existing folder; a new storage format gets a new version folder (``python
tests/compat/generate_frozen_records.py v2``) and the old folders must keep loading forever.

Usage: ``python tests/compat/generate_frozen_records.py v1``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sys
import uuid
from pathlib import Path
from typing import Any

from securemsg import cipher, groups
from securemsg.client.store import ClientStore
from securemsg.crypto.rng import DeterministicRng, Rng
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.identity_and_prekeys import (
    IdentityKeyPair,
    KyberPreKeyRecord,
    PreKeyBundle,
    PreKeyRecord,
    SignedPreKeyRecord,
)
from securemsg.relay.store import KeyRow, NewDevice, QueuedMessage, ServerKeysRow, SqliteRelayStore
from securemsg.store.base import ProtocolStore
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.store.sqlite import SqliteProtocolStore
from securemsg.wire.messages import CiphertextMessageType, PreKeySignalMessage, SignalMessage

HERE = Path(__file__).resolve().parent
NOW = 1_760_000_000_000
ALICE = ProtocolAddress("9d0652a3-dcc3-4d11-975f-74d61598733f", 1)
BOB = ProtocolAddress("796abedb-ca4e-4f18-8803-1fde5b921f9f", 1)
CAROL = ProtocolAddress("0b8d1c6e-52a4-4b8e-9d0a-3c1f2e4d5a6b", 2)
DISTRIBUTION_ID = uuid.UUID("d1a2b3c4-0000-4000-8000-00000000f00d")
REG = {"alice": 1111, "bob": 2222, "carol": 3333}
# Who sends in the scripted conversation (1 = Alice, 2 = Bob): alternation and bursts walk
# both braids through every state of both roles over three epochs.
SCRIPT = [1, 1, 1, 2, 2, 1, 2, 1, 1, 1, 1, 2, 2, 2, 2, 2, 1, 2, 1, 2] * 6


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Party:
    """A client with an in-memory store and its own deterministic rng."""

    def __init__(self, name: str, address: ProtocolAddress) -> None:
        self.name = name
        self.address = address
        self.rng: Rng = DeterministicRng(b"frozen v1 " + name.encode())
        self.identity = IdentityKeyPair.generate(self.rng)
        self.store: ProtocolStore = InMemoryProtocolStore(self.identity, REG[name])
        self.next_id = 1
        # Every prekey record this party published: (kind, serialized record).
        self.pre_keys: list[tuple[str, bytes]] = []

    def bundle(self, store: ProtocolStore | None = None, *, one_time: bool = True) -> PreKeyBundle:
        store = store or self.store
        i = self.next_id
        self.next_id += 1
        spk = SignedPreKeyRecord.generate(i, self.identity, NOW, self.rng)
        kpk = KyberPreKeyRecord.generate(i, self.identity, NOW, self.rng)
        store.save_signed_pre_key(i, spk)
        store.save_kyber_pre_key(i, kpk)
        self.pre_keys += [("signed", spk.to_bytes()), ("kyber", kpk.to_bytes())]
        opk = PreKeyRecord.generate(i, self.rng) if one_time else None
        if opk is not None:
            store.save_pre_key(i, opk)
            self.pre_keys.append(("one_time", opk.to_bytes()))
        return PreKeyBundle(
            registration_id=REG[self.name],
            device_id=self.address.device_id,
            pre_key_id=None if opk is None else i,
            pre_key_public=None if opk is None else opk.public_key,
            signed_pre_key_id=i,
            signed_pre_key_public=spk.public_key,
            signed_pre_key_signature=spk.signature,
            identity_key=self.identity.identity_key,
            kyber_pre_key_id=i,
            kyber_pre_key_public=kpk.public_key,
            kyber_pre_key_signature=kpk.signature,
        )

    def start(self, bundle: PreKeyBundle, to: ProtocolAddress) -> None:
        cipher.process_prekey_bundle(
            bundle, to, self.store, now=NOW, rng=self.rng, local_address=self.address
        )

    def encrypt(self, to: Party, text: bytes) -> PreKeySignalMessage | SignalMessage:
        return cipher.message_encrypt(
            text, to.address, self.store, now=NOW, rng=self.rng, local_address=self.address
        )

    def decrypt(self, sender: Party, data: bytes, mtype: CiphertextMessageType) -> bytes:
        return cipher.message_decrypt(
            data,
            mtype,
            sender.address,
            self.store,
            now=NOW,
            rng=self.rng,
            local_address=self.address,
        )

    def record(self, other: Party) -> bytes:
        rec = self.store.load_session(other.address)
        assert rec is not None
        return rec.to_bytes()

    def braid(self, other: Party) -> tuple[str, int] | None:
        rec = self.store.load_session(other.address)
        if rec is None or rec.current is None:
            return None
        return rec.current.spqr.state_name, rec.current.spqr.epoch


def _mtype(message: PreKeySignalMessage | SignalMessage) -> CiphertextMessageType:
    if isinstance(message, PreKeySignalMessage):
        return CiphertextMessageType.PREKEY
    return CiphertextMessageType.WHISPER


def _capture(
    label: str, receiver: Party, sender: Party, data: bytes, mtype: int, text: bytes
) -> dict[str, Any]:
    state = receiver.braid(sender)
    assert state is not None
    return {
        "label": label,
        "receiver": receiver.name,
        "sender": sender.name,
        "receiver_braid_state": state[0],
        "receiver_epoch": state[1],
        "receiver_record": b64(receiver.record(sender)),
        "sender_record": b64(sender.record(receiver)),
        "message_type": mtype,
        "message": b64(data),
        "plaintext": b64(text),
        # A PreKey message also needs the receiver's prekeys (in its store, not the record).
        "receiver_pre_keys": [
            {"kind": kind, "record": b64(data)}
            for kind, data in (receiver.pre_keys if mtype == CiphertextMessageType.PREKEY else [])
        ],
    }


def sessions() -> tuple[dict[str, Any], Party, Party]:
    """The scripted conversation and its captures (see the module docstring)."""
    alice, bob = Party("alice", ALICE), Party("bob", BOB)
    alice.start(bob.bundle(), BOB)
    parties = {1: (alice, bob), 2: (bob, alice)}
    captures: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for i, who in enumerate(SCRIPT):
        sender, receiver = parties[who]
        text = b"message %d from %s" % (i, sender.name.encode())
        message = sender.encrypt(receiver, text)
        data, mtype = message.to_bytes(), _mtype(message)
        state = receiver.braid(sender)
        if state is not None and (receiver.name, state[0]) not in seen:
            seen.add((receiver.name, state[0]))
            label = f"{receiver.name}_{state[0]}_epoch{state[1]}"
            captures.append(_capture(label, receiver, sender, data, int(mtype), text))
        assert receiver.decrypt(sender, data, mtype) == text
    # Skipped message keys: Bob sends three, Alice reads the third first.
    held = [bob.encrypt(alice, b"held %d" % i) for i in range(3)]
    assert alice.decrypt(bob, held[2].to_bytes(), _mtype(held[2])) == b"held 2"
    captures.append(
        _capture(
            "alice_with_skipped_message_keys",
            alice,
            bob,
            held[0].to_bytes(),
            int(_mtype(held[0])),
            b"held 0",
        )
    )
    assert alice.decrypt(bob, held[0].to_bytes(), _mtype(held[0])) == b"held 0"
    assert alice.decrypt(bob, held[1].to_bytes(), _mtype(held[1])) == b"held 1"
    # An archived previous session: Alice starts over from a fresh bundle; Bob (whose
    # record archives the old session on the PreKey message) is captured before that.
    alice.start(bob.bundle(), BOB)
    fresh = alice.encrypt(bob, b"a new session")
    captures.append(
        _capture(
            "bob_before_session_reset_prekey_message",
            bob,
            alice,
            fresh.to_bytes(),
            int(_mtype(fresh)),
            b"a new session",
        )
    )
    assert bob.decrypt(alice, fresh.to_bytes(), _mtype(fresh)) == b"a new session"
    reply = bob.encrypt(alice, b"ok, new session")
    assert alice.decrypt(bob, reply.to_bytes(), _mtype(reply)) == b"ok, new session"
    again = alice.encrypt(bob, b"after the reset")
    captures.append(
        _capture(
            "bob_with_archived_previous_session",
            bob,
            alice,
            again.to_bytes(),
            int(_mtype(again)),
            b"after the reset",
        )
    )
    assert bob.decrypt(alice, again.to_bytes(), _mtype(again)) == b"after the reset"
    doc = {
        "comment": "Captured SessionRecords; each receiver_record must decrypt its message.",
        "now_ms": NOW,
        "alice": {"name": ALICE.name, "device_id": ALICE.device_id, "registration_id": 1111},
        "bob": {"name": BOB.name, "device_id": BOB.device_id, "registration_id": 2222},
        "alice_identity_key_pair": b64(alice.identity.to_bytes()),
        "bob_identity_key_pair": b64(bob.identity.to_bytes()),
        "captures": captures,
    }
    return doc, alice, bob


def group(alice: Party, bob: Party) -> dict[str, Any]:
    """Bob's SenderKeyRecord for Alice's chain, and Alice's next messages (one held back)."""
    skdm = groups.create_sender_key_distribution_message(
        ALICE, DISTRIBUTION_ID, alice.store, rng=alice.rng
    )
    groups.process_sender_key_distribution_message(ALICE, skdm.to_bytes(), bob.store)
    first = groups.group_encrypt(ALICE, DISTRIBUTION_ID, b"group 0", alice.store, rng=alice.rng)
    assert groups.group_decrypt(first.to_bytes(), ALICE, bob.store) == b"group 0"
    receiver = bob.store.load_sender_key(ALICE, DISTRIBUTION_ID)
    texts = [b"group 1", b"group 2", b"group 3"]
    messages = [
        groups.group_encrypt(ALICE, DISTRIBUTION_ID, t, alice.store, rng=alice.rng).to_bytes()
        for t in texts
    ]
    sender = alice.store.load_sender_key(ALICE, DISTRIBUTION_ID)  # after those messages
    assert receiver is not None and sender is not None
    return {
        "comment": "Bob's record decrypts messages (any order); Alice's record continues.",
        "distribution_id": str(DISTRIBUTION_ID),
        "sender": {"name": ALICE.name, "device_id": ALICE.device_id},
        "receiver_record": b64(receiver.to_bytes()),
        "sender_record": b64(sender.to_bytes()),
        "distribution_message": b64(skdm.to_bytes()),
        "messages": [
            {"message": b64(m), "plaintext": b64(t)} for m, t in zip(messages, texts, strict=True)
        ],
    }


def records(out: Path) -> dict[str, str]:
    """One serialized record of each key type."""
    rng = DeterministicRng(b"frozen v1 records")
    ik = IdentityKeyPair.generate(rng)
    opk = PreKeyRecord.generate(7, rng)
    spk = SignedPreKeyRecord.generate(8, ik, NOW, rng)
    kpk = KyberPreKeyRecord.generate(9, ik, NOW, rng)
    full = PreKeyBundle(
        registration_id=4321,
        device_id=3,
        pre_key_id=opk.id,
        pre_key_public=opk.public_key,
        signed_pre_key_id=spk.id,
        signed_pre_key_public=spk.public_key,
        signed_pre_key_signature=spk.signature,
        identity_key=ik.identity_key,
        kyber_pre_key_id=kpk.id,
        kyber_pre_key_public=kpk.public_key,
        kyber_pre_key_signature=kpk.signature,
    )
    bare = PreKeyBundle(
        registration_id=4321,
        device_id=3,
        pre_key_id=None,
        pre_key_public=None,
        signed_pre_key_id=spk.id,
        signed_pre_key_public=spk.public_key,
        signed_pre_key_signature=spk.signature,
        identity_key=ik.identity_key,
        kyber_pre_key_id=kpk.id,
        kyber_pre_key_public=kpk.public_key,
        kyber_pre_key_signature=kpk.signature,
    )
    files = {
        "identity_key_pair.bin": ik.to_bytes(),
        "pre_key_record.bin": opk.to_bytes(),
        "signed_pre_key_record.bin": spk.to_bytes(),
        "kyber_pre_key_record.bin": kpk.to_bytes(),
        "pre_key_bundle.bin": full.to_bytes(),
        "pre_key_bundle_without_one_time_key.bin": bare.to_bytes(),
    }
    (out / "records").mkdir()
    for name, data in files.items():
        (out / "records" / name).write_bytes(data)
    return {
        "identity_key": ik.identity_key.to_bytes().hex(),
        "pre_key_public": opk.public_key.to_bytes().hex(),
        "signed_pre_key_public": spk.public_key.to_bytes().hex(),
        "kyber_pre_key_public": kpk.public_key.to_bytes().hex(),
    }


def protocol_store(out: Path, alice: Party, bob: Party) -> dict[str, Any]:
    """Bob's SqliteProtocolStore: identity, prekeys, a session with Alice, her sender key.

    Returns what the test needs: messages from Alice (session, group) and from Carol (a
    PreKey message for the one-time prekey still in the store).
    """
    db = SqliteProtocolStore.open(out / "protocol_store.sqlite", bob.identity, REG["bob"])
    with db.transaction():
        bundle = bob.bundle(db)  # prekey id N for Carol
        bob.bundle(db, one_time=False)  # a second signed/Kyber pair without one-time key
        db.save_identity(ALICE, alice.identity.identity_key)
        rec = bob.store.load_session(ALICE)
        assert rec is not None
        db.store_session(ALICE, rec)
        skr = bob.store.load_sender_key(ALICE, DISTRIBUTION_ID)
        assert skr is not None
        db.store_sender_key(ALICE, DISTRIBUTION_ID, skr)
    carol = Party("carol", CAROL)
    carol.start(bundle, BOB)
    carol_msg = carol.encrypt(bob, b"hello from carol")
    session_msg = alice.encrypt(bob, b"to bob's sqlite store")
    group_msg = groups.group_encrypt(
        ALICE, DISTRIBUTION_ID, b"group to sqlite", alice.store, rng=alice.rng
    )
    expected = {
        "pre_key_ids": db.get_pre_key_ids(),
        "signed_pre_key_ids": db.get_signed_pre_key_ids(),
        "kyber_pre_key_ids": db.get_kyber_pre_key_ids(),
        "session_device_ids": db.get_session_device_ids(ALICE.name),
        "session_record": b64(rec.to_bytes()),
        "sender_key_record": b64(skr.to_bytes()),
    }
    db.close()
    return {
        "file": "protocol_store.sqlite",
        "owner": "bob",
        "registration_id": REG["bob"],
        "identity_key_pair": b64(bob.identity.to_bytes()),
        "expected": expected,
        "carol": {
            "name": CAROL.name,
            "device_id": CAROL.device_id,
            "identity_key_pair": b64(carol.identity.to_bytes()),
            "registration_id": REG["carol"],
            "message_type": int(_mtype(carol_msg)),
            "message": b64(carol_msg.to_bytes()),
            "plaintext": b64(b"hello from carol"),
        },
        "alice_message": {
            "message_type": int(_mtype(session_msg)),
            "message": b64(session_msg.to_bytes()),
            "plaintext": b64(b"to bob's sqlite store"),
        },
        "alice_group_message": {
            "message": b64(group_msg.to_bytes()),
            "plaintext": b64(b"group to sqlite"),
        },
    }


def client_store(out: Path) -> dict[str, Any]:
    """A ClientStore with settings, a contact, a group and inbox rows."""
    rng = DeterministicRng(b"frozen v1 client store")
    ik = IdentityKeyPair.generate(rng)
    db = ClientStore.open_client(out / "client_store.sqlite", ik, 3456)
    group_id = bytes(range(16))
    with db.transaction():
        db.set_meta("aci", ALICE.name)
        db.set_meta("device_id", 1)
        db.set_meta("profile_key", bytes(range(32)))
        db.set_meta("unset", None)
        db.next_id("pre_key_id", 5)
        db.set_access_key(BOB.name, bytes(range(16, 32)))
        db.save_group(group_id, "frozen group", [ALICE.name, BOB.name])
        db.mark_group_key_sent(group_id, BOB.name, 1)
        db.inbox_add(
            envelope_id=b"\x01" * 16,
            server_timestamp=NOW,
            kind="message",
            sealed=True,
            sender=BOB.name,
            sender_device=1,
            sent_timestamp=NOW - 5,
            body="waiting for the app",
        )
        db.inbox_add(
            envelope_id=b"\x02" * 16,
            server_timestamp=NOW + 1,
            kind="receipt",
            sealed=False,
            sender=BOB.name,
            sender_device=1,
            sent_timestamp=NOW - 4,
        )
        db.inbox_add(
            envelope_id=b"\x03" * 16,
            server_timestamp=NOW + 2,
            kind="message",
            sealed=False,
            sender=BOB.name,
            sender_device=1,
            sent_timestamp=NOW - 3,
            group_id=group_id,
            body="group hello",
        )
    seq = db.inbox_pending()[0].seq
    db.inbox_mark_delivered(seq)
    expected = {
        "meta": {
            "aci": ALICE.name,
            "device_id": 1,
            "profile_key": b64(bytes(range(32))),
            "pre_key_id_next": db.get_meta_int("pre_key_id"),
        },
        "access_key": {BOB.name: b64(bytes(range(16, 32)))},
        "group": {"id": b64(group_id), "title": "frozen group", "members": [ALICE.name, BOB.name]},
        "inbox_pending": [
            {"envelope_id": b64(r.envelope_id), "body": r.body, "sealed": r.sealed}
            for r in db.inbox_pending()
        ],
        "inbox_count": db.inbox_count(),
    }
    db.close()
    return {
        "file": "client_store.sqlite",
        "registration_id": 3456,
        "identity_key_pair": b64(ik.to_bytes()),
        "expected": expected,
    }


def relay_store(out: Path) -> dict[str, Any]:
    """A SqliteRelayStore with server keys, two accounts, prekeys and queued messages."""
    rng = DeterministicRng(b"frozen v1 relay store")
    db = SqliteRelayStore.open(out / "relay_store.sqlite")
    keys = ServerKeysRow(
        trust_root_private=rng.random_bytes(32),
        trust_root_public=b"\x05" + rng.random_bytes(32),
        server_key_id=1,
        server_private=rng.random_bytes(32),
        server_public=b"\x05" + rng.random_bytes(32),
        server_certificate=rng.random_bytes(100),
    )
    db.init_server_keys(keys)
    acis = [bytes([0xA0 + n]) * 16 for n in range(2)]
    for n, aci in enumerate(acis):
        device = NewDevice(
            aci=aci,
            device_id=1,
            registration_id=100 + n,
            identity_key=b"\x05" + rng.random_bytes(32),
            access_key_digest=rng.random_bytes(32),
            signed_pre_key=KeyRow(1, b"\x05" + rng.random_bytes(32), rng.random_bytes(64)),
            last_resort_kyber_pre_key=KeyRow(2, b"\x08" + rng.random_bytes(1568), b"s" * 64),
            pre_keys=tuple(KeyRow(10 + k, b"\x05" + rng.random_bytes(32)) for k in range(2)),
            kyber_pre_keys=(KeyRow(20, b"\x08" + rng.random_bytes(1568), b"k" * 64),),
        )
        assert db.create_device(device, "2025-10-09").value == "created"
    queued = [
        QueuedMessage(
            id=bytes([k]) * 16,
            aci=acis[1],
            device_id=1,
            type=[1, 3, 6][k],
            source_aci=None if k == 2 else acis[0],
            source_device_id=0 if k == 2 else 1,
            client_timestamp=NOW + k,
            received_at=NOW + 10 + k,
            body=rng.random_bytes(40 + k),
        )
        for k in range(3)
    ]
    assert db.enqueue(queued, 100)
    expected = {
        "server_keys": {
            "trust_root_public": b64(keys.trust_root_public),
            "server_public": b64(keys.server_public),
            "server_certificate": b64(keys.server_certificate),
        },
        "accounts": [b64(a) for a in acis],
        "devices": {
            b64(a): [[d.device_id, d.registration_id] for d in db.list_devices(a)] for a in acis
        },
        "pre_key_counts": {b64(a): list(db.pre_key_counts(a, 1)) for a in acis},
        "pending": [
            {
                "id": b64(m.id),
                "type": m.type,
                "sealed": m.source_aci is None,
                "body": b64(m.body),
                "received_at": m.received_at,
            }
            for m in db.pending(acis[1], 1)
        ],
        "schema": {k: list(v) for k, v in db.schema().items()},
    }
    db.close()
    return {"file": "relay_store.sqlite", "expected": expected}


def main(argv: list[str]) -> int:
    version = argv[1] if len(argv) > 1 else "v1"
    out = HERE / "frozen" / version
    if out.exists():
        print(f"{out} exists: frozen folders are never regenerated", file=sys.stderr)
        return 1
    out.mkdir(parents=True)
    manifest: dict[str, Any] = {"version": version, "now_ms": NOW}
    manifest["records"] = records(out)
    doc, alice, bob = sessions()
    manifest["group"] = "group.json"
    (out / "group.json").write_text(json.dumps(group(alice, bob), indent=1) + "\n")
    manifest["protocol_store"] = protocol_store(out, alice, bob)
    (out / "sessions.json").write_text(json.dumps(doc, indent=1) + "\n")
    manifest["client_store"] = client_store(out)
    manifest["relay_store"] = relay_store(out)
    manifest["sha256"] = {
        str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(out.rglob("*"))
        if p.is_file()
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
