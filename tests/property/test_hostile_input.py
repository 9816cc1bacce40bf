"""Hostile input to the public API: only typed securemsg errors escape, and failures change nothing.

Audit companion of ``test_decoders_fuzz.py`` (wire / key decoders) and the unit tests of each
module. Covered here:

* ``cipher.message_decrypt`` on **both store implementations** (in memory and SQLite) in three
  receiver situations: no session yet (PreKey message), session set up by a first PreKey message
  (a second PreKey message), and session confirmed by a reply (a Whisper message). Hypothesis
  mutates the valid wire bytes (bit flips, byte sets, insertions, deletions, truncations) and
  rebuilds PreKey messages with hostile fields (unknown / absent prekey ids, foreign base and
  identity keys, random Kyber ciphertexts, other versions). Only ``PeerError`` subclasses,
  ``UntrustedIdentityError`` and ``NoSessionError`` may escape; after every failure the store's
  complete contents (every record's bytes; for SQLite a full SQL dump) are byte-for-byte what
  they were before.
* Arbitrary bytes and mutated valid encodings to the storage decoders: ``SessionRecord``,
  ``SpqrState``, ``decode_session`` / ``decode_record``, ``decode_spqr_state``, ML-KEM-768
  ``EncapsState``, the SPQR message framing; SQLite rows overwritten with hostile blobs raise
  ``StorageError`` on read.
* The crypto layer's public functions with hostile arguments: keys, seeds, signatures,
  ciphertexts of the wrong length or content give ``InvalidKeyError`` /
  ``InvalidSignatureError`` / ``InvalidMessageError`` / ``DecodeError`` (or ``UsageError`` where
  the caller, not a peer, supplied a wrong-sized argument), never ``ValueError`` & co.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from securemsg import cipher
from securemsg.crypto import mlkem768, primitives
from securemsg.crypto.curve25519 import KeyPair, PrivateKey, PublicKey
from securemsg.crypto.kyber1024 import KyberKeyPair, KyberPublicKey
from securemsg.crypto.rng import DeterministicRng
from securemsg.errors import (
    DecodeError,
    InternalError,
    InvalidKeyError,
    InvalidMessageError,
    InvalidSignatureError,
    NoSessionError,
    PeerError,
    SecureMsgError,
    StorageError,
    UntrustedIdentityError,
    UsageError,
)
from securemsg.protocol.address import ProtocolAddress, ServiceId
from securemsg.protocol.identity_and_prekeys import (
    IdentityKey,
    IdentityKeyPair,
    KyberPreKeyRecord,
    PreKeyBundle,
    PreKeyRecord,
    SignedPreKeyRecord,
)
from securemsg.protocol.session_record import SessionRecord
from securemsg.protocol.spqr import SpqrState, spqr_recv
from securemsg.protocol.spqr.message import decode_message
from securemsg.records import session_storage, spqr_state
from securemsg.store.base import ProtocolStore
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.store.sqlite import SqliteProtocolStore
from securemsg.wire.messages import CiphertextMessageType, PreKeySignalMessage, SignalMessage

NOW = 1_760_000_000_000
ALICE = ProtocolAddress("9d0652a3-dcc3-4d11-975f-74d61598733f", 1)
BOB = ProtocolAddress("796abedb-ca4e-4f18-8803-1fde5b921f9f", 1)
PREKEY = CiphertextMessageType.PREKEY
WHISPER = CiphertextMessageType.WHISPER
#: What hostile message bytes may raise (everything else is a bug).
PEER_ERRORS = (PeerError, UntrustedIdentityError, NoSessionError)

_RNG = DeterministicRng(b"hostile-input")
ALICE_ID = IdentityKeyPair.generate(_RNG)
BOB_ID = IdentityKeyPair.generate(_RNG)
BOB_REG = 4321
OPK = PreKeyRecord.generate(1, _RNG)
SPK = SignedPreKeyRecord.generate(1, BOB_ID, NOW, _RNG)
KPK = KyberPreKeyRecord.generate(1, BOB_ID, NOW, _RNG)
STRANGER = KeyPair.generate(_RNG).public_key


def _bob_fresh_memory() -> InMemoryProtocolStore:
    store = InMemoryProtocolStore(BOB_ID, BOB_REG)
    _add_prekeys(store)
    return store


def _add_prekeys(store: ProtocolStore) -> None:
    store.save_pre_key(OPK.id, OPK)
    store.save_signed_pre_key(SPK.id, SPK)
    store.save_kyber_pre_key(KPK.id, KPK)


def _decrypt(store: ProtocolStore, data: bytes, kind: CiphertextMessageType) -> bytes:
    return cipher.message_decrypt(
        data, kind, ALICE, store, now=NOW, rng=DeterministicRng(b"bob"), local_address=BOB
    )


def _conversation() -> dict[str, Any]:
    """Alice's first two PreKey messages, Bob's reply and Alice's next Whisper message."""
    rng = DeterministicRng(b"hostile-conversation")
    alice = InMemoryProtocolStore(ALICE_ID, 1234)
    bob = _bob_fresh_memory()
    bundle = PreKeyBundle(
        registration_id=BOB_REG,
        device_id=BOB.device_id,
        pre_key_id=OPK.id,
        pre_key_public=OPK.public_key,
        signed_pre_key_id=SPK.id,
        signed_pre_key_public=SPK.public_key,
        signed_pre_key_signature=SPK.signature,
        identity_key=BOB_ID.identity_key,
        kyber_pre_key_id=KPK.id,
        kyber_pre_key_public=KPK.public_key,
        kyber_pre_key_signature=KPK.signature,
    )
    cipher.process_prekey_bundle(bundle, BOB, alice, now=NOW, rng=rng, local_address=ALICE)

    def send(src: ProtocolStore, to: ProtocolAddress, me: ProtocolAddress, text: bytes) -> Any:
        return cipher.message_encrypt(text, to, src, now=NOW, rng=rng, local_address=me)

    m0 = send(alice, BOB, ALICE, b"first")
    m1 = send(alice, BOB, ALICE, b"second")
    assert isinstance(m0, PreKeySignalMessage) and isinstance(m1, PreKeySignalMessage)
    assert _decrypt(bob, m0.to_bytes(), PREKEY) == b"first"
    after_first = bob.load_session(ALICE)
    reply = send(bob, ALICE, BOB, b"reply")
    after_reply = bob.load_session(ALICE)
    cipher.message_decrypt(
        reply.to_bytes(), WHISPER, BOB, alice, now=NOW, rng=rng, local_address=ALICE
    )
    m2 = send(alice, BOB, ALICE, b"third")
    assert isinstance(m2, SignalMessage)
    assert after_first is not None and after_reply is not None
    return {
        "m0": m0,
        "m1": m1,
        "m2": m2,
        "after_first": after_first.to_bytes(),
        "after_reply": after_reply.to_bytes(),
    }


CONV = _conversation()

Situation = Literal["fresh", "after_first", "after_reply"]
StoreKind = Literal["memory", "sqlite"]
# situation -> (message, type, plaintext)
SITUATIONS: dict[Situation, tuple[Any, CiphertextMessageType, bytes]] = {
    "fresh": (CONV["m0"], PREKEY, b"first"),
    "after_first": (CONV["m1"], PREKEY, b"second"),
    "after_reply": (CONV["m2"], WHISPER, b"third"),
}


def _make_store(kind: StoreKind, situation: Situation) -> ProtocolStore:
    store: ProtocolStore
    if kind == "memory":
        store = InMemoryProtocolStore(BOB_ID, BOB_REG)
    else:
        store = SqliteProtocolStore.open(":memory:", BOB_ID, BOB_REG)
    store.save_signed_pre_key(SPK.id, SPK)
    if situation == "fresh":
        store.save_pre_key(OPK.id, OPK)
        store.save_kyber_pre_key(KPK.id, KPK)
    else:  # the first PreKey message consumed the one-time EC and Kyber prekeys
        store.save_identity(ALICE, ALICE_ID.identity_key)
        store.store_session(ALICE, SessionRecord.from_bytes(CONV[situation]))
    return store


def snapshot(store: ProtocolStore) -> object:
    """Every byte the store holds."""
    if isinstance(store, SqliteProtocolStore):
        conn = store._conn
        assert isinstance(conn, sqlite3.Connection)
        return tuple(conn.iterdump())
    assert isinstance(store, InMemoryProtocolStore)
    session = store.load_session(ALICE)
    identity = store.get_identity(ALICE)
    return (
        None if session is None else session.to_bytes(),
        None if identity is None else identity.to_bytes(),
        [(i, store.get_pre_key(i).to_bytes()) for i in store.get_pre_key_ids()],
        [(i, store.get_signed_pre_key(i).to_bytes()) for i in store.get_signed_pre_key_ids()],
        [
            (i, store.get_kyber_pre_key(i).to_bytes(), store.is_last_resort_kyber_pre_key(i))
            for i in store.get_kyber_pre_key_ids()
        ],
        sorted(store._kyber_seen),
        sorted(store._sender_keys.items()),
    )


_STORES: dict[tuple[StoreKind, Situation], ProtocolStore] = {}


def _store(kind: StoreKind, situation: Situation) -> ProtocolStore:
    """A cached receiver store (reusable because failed decrypts must not change it)."""
    key = (kind, situation)
    if key not in _STORES:
        _STORES[key] = _make_store(kind, situation)
    return _STORES[key]


def check_hostile_decrypt(
    kind: StoreKind, situation: Situation, data: bytes, msg_type: CiphertextMessageType
) -> None:
    store = _store(kind, situation)
    before = snapshot(store)
    try:
        _decrypt(store, data, msg_type)
    except PEER_ERRORS:
        assert snapshot(store) == before, "a failed decrypt changed the store"
    else:
        # The mutation kept the message valid (e.g. an equivalent encoding): state moved on
        # legitimately, so the next example gets a fresh store.
        _STORES.pop((kind, situation))


# -- mutations --------------------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.sampled_from([0x00, 0x01, 0x33, 0x44, 0x54, 0x7F, 0x80, 0xFF]))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[pos:]
    out = bytes(data)
    return out if out != valid else out + b"\x00"


KINDS: tuple[StoreKind, StoreKind] = ("memory", "sqlite")
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


def test_unmutated_messages_decrypt_in_every_situation() -> None:
    for kind in KINDS:
        for situation, (message, msg_type, plaintext) in SITUATIONS.items():
            store = _make_store(kind, situation)
            assert _decrypt(store, message.to_bytes(), msg_type) == plaintext


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("situation", list(SITUATIONS))
@FUZZ
@given(data=st.data())
def test_mutated_messages_raise_typed_errors_and_change_nothing(
    kind: StoreKind, situation: Situation, data: st.DataObject
) -> None:
    message, msg_type, _ = SITUATIONS[situation]
    check_hostile_decrypt(kind, situation, data.draw(mutated(message.to_bytes())), msg_type)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("situation", list(SITUATIONS))
@settings(max_examples=25, deadline=None, database=None)
@given(blob=st.binary(max_size=200), as_prekey=st.booleans())
def test_arbitrary_bytes_raise_typed_errors_and_change_nothing(
    kind: StoreKind, situation: Situation, blob: bytes, as_prekey: bool
) -> None:
    check_hostile_decrypt(kind, situation, blob, PREKEY if as_prekey else WHISPER)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("situation", list(SITUATIONS))
def test_type_confusion_raises_typed_errors_and_changes_nothing(
    kind: StoreKind, situation: Situation
) -> None:
    m0, m2 = CONV["m0"], CONV["m2"]
    check_hostile_decrypt(kind, situation, m2.to_bytes(), PREKEY)
    check_hostile_decrypt(kind, situation, m0.to_bytes(), WHISPER)
    check_hostile_decrypt(kind, situation, m0.message.to_bytes(), WHISPER)


def _rebuild(msg: PreKeySignalMessage, **changes: Any) -> bytes:
    fields: dict[str, Any] = {
        "message_version": msg.message_version,
        "registration_id": msg.registration_id,
        "pre_key_id": msg.pre_key_id,
        "signed_pre_key_id": msg.signed_pre_key_id,
        "kyber_pre_key_id": msg.kyber_pre_key_id,
        "kyber_ciphertext": msg.kyber_ciphertext,
        "base_key": msg.base_key,
        "identity_key": msg.identity_key,
        "message": msg.message,
    }
    fields.update(changes)
    return PreKeySignalMessage.new(**fields).to_bytes()


FIELD_CHANGES = st.one_of(
    st.fixed_dictionaries({"pre_key_id": st.sampled_from([None, 0, 2, 0xFFFFFFFF])}),
    st.fixed_dictionaries({"signed_pre_key_id": st.sampled_from([0, 2, 0xFFFFFFFF])}),
    st.fixed_dictionaries({"kyber_pre_key_id": st.sampled_from([0, 2, 0xFFFFFFFF])}),
    st.fixed_dictionaries(
        {"kyber_ciphertext": st.binary(min_size=1568, max_size=1568).map(lambda b: b"\x08" + b)}
    ),
    st.fixed_dictionaries({"base_key": st.just(STRANGER)}),
    st.fixed_dictionaries({"identity_key": st.just(STRANGER)}),
    st.fixed_dictionaries({"registration_id": st.integers(0, 0x3FFF)}),
)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("situation", ["fresh", "after_first"])
@settings(max_examples=30, deadline=None, database=None)
@given(changes=FIELD_CHANGES)
def test_prekey_messages_with_hostile_fields(
    kind: StoreKind, situation: Situation, changes: dict[str, Any]
) -> None:
    message, _, _ = SITUATIONS[situation]
    check_hostile_decrypt(kind, situation, _rebuild(message, **changes), PREKEY)


@pytest.mark.parametrize("kind", KINDS)
def test_replayed_prekey_message_after_reply_changes_nothing(kind: StoreKind) -> None:
    # The first PreKey message again, once its prekeys are gone and the session has moved on.
    check_hostile_decrypt(kind, "after_reply", CONV["m0"].to_bytes(), PREKEY)
    check_hostile_decrypt(kind, "after_reply", CONV["m1"].to_bytes(), PREKEY)


# -- storage decoders ---------------------------------------------------------------------------


def _spqr_bytes() -> bytes:
    record = SessionRecord.from_bytes(CONV["after_reply"])
    assert record.current is not None
    return record.current.spqr.to_bytes()


def _session_bytes() -> bytes:
    record = SessionRecord.from_bytes(CONV["after_reply"])
    assert record.current is not None
    return session_storage.encode_session(record.current.to_stored())


_ENCAPS = mlkem768.encaps1(mlkem768.MlKem768KeyPair.generate(_RNG).header, bytes(32))[1]

STORAGE_DECODERS: list[tuple[str, Callable[[bytes], object], bytes]] = [
    ("SessionRecord", SessionRecord.from_bytes, CONV["after_reply"]),
    ("SessionRecord(first)", SessionRecord.from_bytes, CONV["after_first"]),
    ("decode_record", session_storage.decode_record, CONV["after_reply"]),
    ("decode_session", session_storage.decode_session, _session_bytes()),
    ("SpqrState", SpqrState.from_bytes, _spqr_bytes()),
    ("decode_spqr_state", spqr_state.decode_spqr_state, _spqr_bytes()),
    ("EncapsState", mlkem768.EncapsState.from_bytes, _ENCAPS.to_bytes()),
    ("spqr decode_message", decode_message, CONV["m2"].pq_ratchet or b"\x01"),
]
STORAGE_IDS = [name for name, _, _ in STORAGE_DECODERS]


def test_valid_storage_encodings_decode() -> None:
    for _, decode, valid in STORAGE_DECODERS:
        decode(valid)


@pytest.mark.parametrize(("name", "decode", "valid"), STORAGE_DECODERS, ids=STORAGE_IDS)
@settings(max_examples=80, deadline=None, database=None)
@given(data=st.data())
def test_storage_decoders_on_hostile_bytes(
    name: str, decode: Callable[[bytes], object], valid: bytes, data: st.DataObject
) -> None:
    blob = data.draw(st.one_of(st.binary(max_size=300), mutated(valid)))
    with contextlib.suppress(DecodeError):
        decode(blob)


@settings(max_examples=40, deadline=None, database=None)
@given(data=st.data())
def test_spqr_recv_on_hostile_pq_ratchet(data: st.DataObject) -> None:
    state = SpqrState.from_bytes(_spqr_bytes())
    before = state.to_bytes()
    valid = CONV["m2"].pq_ratchet or b"\x01"
    blob = data.draw(st.one_of(st.binary(max_size=120), mutated(valid)))
    with contextlib.suppress(DecodeError, InvalidMessageError):
        spqr_recv(state, blob)
    assert state.to_bytes() == before


_SQLITE_TABLES = {
    "sessions": "UPDATE sessions SET record = ?",
    "pre_keys": "UPDATE pre_keys SET record = ?",
    "signed_pre_keys": "UPDATE signed_pre_keys SET record = ?",
    "kyber_pre_keys": "UPDATE kyber_pre_keys SET record = ?",
    "identities": "UPDATE identities SET identity_key = ?",
}


def _sqlite_reader(store: SqliteProtocolStore, table: str) -> Callable[[], object]:
    readers: dict[str, Callable[[], object]] = {
        "sessions": lambda: store.load_session(ALICE),
        "pre_keys": lambda: store.get_pre_key(OPK.id),
        "signed_pre_keys": lambda: store.get_signed_pre_key(SPK.id),
        "kyber_pre_keys": lambda: store.get_kyber_pre_key(KPK.id),
        "identities": lambda: store.get_identity(ALICE),
    }
    return readers[table]


@contextlib.contextmanager
def _full_sqlite_store() -> Iterator[SqliteProtocolStore]:
    store = SqliteProtocolStore.open(":memory:", BOB_ID, BOB_REG)
    try:
        _add_prekeys(store)
        store.save_identity(ALICE, ALICE_ID.identity_key)
        store.store_session(ALICE, SessionRecord.from_bytes(CONV["after_reply"]))
        yield store
    finally:
        store.close()


@pytest.mark.parametrize("table", list(_SQLITE_TABLES))
@settings(max_examples=30, deadline=None, database=None)
@given(blob=st.binary(max_size=100))
def test_sqlite_hostile_rows_raise_storage_error(table: str, blob: bytes) -> None:
    with _full_sqlite_store() as store:
        conn = store._conn
        assert isinstance(conn, sqlite3.Connection)
        conn.execute(_SQLITE_TABLES[table], (blob,))
        with contextlib.suppress(StorageError):
            _sqlite_reader(store, table)()


# -- crypto and key-level public functions -------------------------------------------------------

ANY_BYTES = st.binary(max_size=80)


@settings(max_examples=60, deadline=None, database=None)
@given(blob=ANY_BYTES)
def test_key_constructors_on_hostile_bytes(blob: bytes) -> None:
    for build in (PublicKey.from_bytes, PublicKey.from_raw, PrivateKey.from_bytes):
        with contextlib.suppress(InvalidKeyError, DecodeError):
            build(blob)
    with contextlib.suppress(InvalidKeyError):
        KyberKeyPair.from_seed(blob)
    with contextlib.suppress(InvalidKeyError):
        KyberPublicKey.from_bytes(blob)
    with contextlib.suppress(InvalidKeyError, UsageError):
        mlkem768.MlKem768KeyPair.from_seed(blob)
    with contextlib.suppress(DecodeError):
        ServiceId.from_fixed_width(blob)


@settings(max_examples=60, deadline=None, database=None)
@given(sig=st.one_of(st.binary(max_size=80), st.binary(min_size=64, max_size=64)), msg=ANY_BYTES)
def test_signature_checks_on_hostile_signatures(sig: bytes, msg: bytes) -> None:
    with contextlib.suppress(InvalidSignatureError):
        ALICE_ID.public_key.verify(msg, sig)
    with contextlib.suppress(InvalidSignatureError):
        ALICE_ID.identity_key.verify_alternate_identity(BOB_ID.identity_key, sig)
    bad = PreKeyBundle(
        registration_id=BOB_REG,
        device_id=1,
        pre_key_id=None,
        pre_key_public=None,
        signed_pre_key_id=SPK.id,
        signed_pre_key_public=SPK.public_key,
        signed_pre_key_signature=sig if len(sig) == 64 else SPK.signature,
        identity_key=BOB_ID.identity_key,
        kyber_pre_key_id=KPK.id,
        kyber_pre_key_public=KPK.public_key,
        kyber_pre_key_signature=KPK.signature,
    )
    with contextlib.suppress(InvalidSignatureError):
        bad.verify_signatures()


_MLKEM = mlkem768.MlKem768KeyPair.generate(_RNG)


@settings(max_examples=40, deadline=None, database=None)
@given(a=st.binary(max_size=1600), b=st.binary(max_size=200), full=st.booleans())
def test_kem_functions_on_hostile_ciphertexts_and_keys(a: bytes, b: bytes, full: bool) -> None:
    kyber_ct = (b"\x08" + a.ljust(1568, b"\x00")[:1568]) if full else a
    with contextlib.suppress(InvalidKeyError):
        assert len(KPK.key_pair.decapsulate(kyber_ct)) == 32
    with contextlib.suppress(InvalidKeyError, InvalidMessageError, DecodeError):
        _MLKEM.decapsulate(a, b)
    with contextlib.suppress(InvalidKeyError, InvalidMessageError, DecodeError):
        mlkem768.validate_ek_vector(_MLKEM.header, a)
    with contextlib.suppress(InvalidKeyError, InvalidMessageError, DecodeError, UsageError):
        mlkem768.encaps1(b[:64], bytes(32))
    with contextlib.suppress(InvalidKeyError, InvalidMessageError, DecodeError):
        mlkem768.encaps2(_ENCAPS, a)


@settings(max_examples=60, deadline=None, database=None)
@given(ct=st.binary(max_size=100), aad=st.binary(max_size=8))
def test_symmetric_decryption_of_hostile_ciphertexts(ct: bytes, aad: bytes) -> None:
    with contextlib.suppress(InvalidMessageError):
        primitives.aes_256_cbc_decrypt(bytes(32), bytes(16), ct)
    with contextlib.suppress(InvalidMessageError):
        primitives.aes_256_gcm_siv_decrypt(bytes(32), bytes(12), ct, aad)


def test_wrong_sized_caller_arguments_are_usage_errors() -> None:
    with pytest.raises(UsageError):
        primitives.aes_256_cbc_decrypt(bytes(31), bytes(16), bytes(16))
    with pytest.raises(UsageError):
        primitives.aes_256_gcm_siv_decrypt(bytes(32), bytes(11), bytes(32))
    with pytest.raises(UsageError):
        cipher.message_decrypt(
            CONV["m2"].to_bytes(),
            CiphertextMessageType.SENDERKEY,
            ALICE,
            _make_store("memory", "after_reply"),
            now=NOW,
            rng=DeterministicRng(b"x"),
            local_address=BOB,
        )


def test_identity_key_from_hostile_bytes() -> None:
    for blob in (b"", b"\x05", b"\x05" + bytes(31), b"\x06" + bytes(32), bytes(33)):
        with pytest.raises((InvalidKeyError, DecodeError)):
            IdentityKey.from_bytes(blob)


def test_no_untyped_error_class_is_a_securemsg_error() -> None:
    # Guard for the assertions above: the allowed classes are all in the one error tree.
    for cls in (*PEER_ERRORS, StorageError, UsageError, InternalError):
        assert issubclass(cls, SecureMsgError)


# Small-order X25519 points (u = 0, 1, p - 1 and an order-8 point): agreement must refuse them.
_LOW_ORDER = [
    bytes(32),
    (1).to_bytes(32, "little"),
    (2**255 - 20).to_bytes(32, "little"),
    bytes.fromhex("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800"),
]


@pytest.mark.parametrize("raw", _LOW_ORDER, ids=lambda r: r[:2].hex())
def test_agreement_with_small_order_points_is_refused(raw: bytes) -> None:
    with pytest.raises(InvalidKeyError):
        ALICE_ID.private_key.agree(PublicKey.from_raw(raw))


@pytest.mark.parametrize("kind", KINDS)
def test_missing_prekeys_are_typed_errors(kind: StoreKind) -> None:
    store = _make_store(kind, "after_reply")
    before = snapshot(store)
    for lookup in (store.get_pre_key, store.get_signed_pre_key, store.get_kyber_pre_key):
        for key_id in (0, 77, 0xFFFFFFFF):
            with pytest.raises((PeerError, UsageError)):
                lookup(key_id)
    assert snapshot(store) == before
