"""Helpers for the SPQR interop tests: a securemsg user and a libsignal user in conversation.

Theory of operation: a :class:`SpqrConversation` holds one securemsg user (store in memory or
in SQLite, driven through ``securemsg.cipher``) and one libsignal user living in the peer
process. Every message either side sends is recorded with the SPQR header parsed from its
``pq_ratchet`` field (:func:`spqr_header`), so the tests can see what travelled: per direction,
the epochs and the seven payload types. libsignal's own SPQR epoch is not exposed by its API;
it is *observed* from the ``pq_ratchet`` of the messages it sends (the header carries the
sender's current SCKA epoch). securemsg's epoch and braid state are read from the
``SpqrState`` in its stored session record.

Batches go through the peer's ``encrypt_many`` / ``decrypt_many`` (one round trip per burst).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from peer_client import PREKEY, WHISPER, LibsignalPeer, b64, bundle_from_json, unb64

from securemsg import cipher
from securemsg.crypto.backend import KyberBackend
from securemsg.crypto.rng import DeterministicRng
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.identity_and_prekeys import (
    IdentityKeyPair,
    KyberPreKeyRecord,
    PreKeyRecord,
    SignedPreKeyRecord,
    generate_registration_id,
)
from securemsg.protocol.spqr import SpqrState
from securemsg.protocol.spqr.message import MessageType, SpqrMessage, decode_message
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.store.sqlite import SqliteProtocolStore
from securemsg.wire.messages import CiphertextMessageType, PreKeySignalMessage, SignalMessage

Role = Literal["securemsg", "libsignal"]
ROLES: tuple[Role, Role] = ("securemsg", "libsignal")
Wire = tuple[int, bytes]

ALL_TYPES = frozenset(MessageType)


def other(role: Role) -> Role:
    return "libsignal" if role == "securemsg" else "securemsg"


def spqr_header(wire: Wire) -> SpqrMessage:
    """The parsed ``pq_ratchet`` of a serialized Whisper or PreKey message."""
    kind, body = wire
    if kind == PREKEY:
        inner = PreKeySignalMessage.from_bytes(body).message
    else:
        inner = SignalMessage.from_bytes(body)
    return decode_message(inner.pq_ratchet)


class SpqrConversation:
    """A securemsg user and a libsignal user, with a log of every message's SPQR header.

    Args:
        peer: the running libsignal peer.
        seed: seeds securemsg's ``DeterministicRng``.
        now: the clock (Unix ms) both sides use.
        db_path: if given, securemsg keeps its state in SQLite there (see :meth:`restart`).
        kyber_backend: the route of securemsg's PQXDH Kyber1024 encapsulation (SPQR's
            ML-KEM-768 has one route: numpy encapsulation, OpenSSL key generation and
            decapsulation).
    """

    def __init__(
        self,
        peer: LibsignalPeer,
        seed: bytes,
        now: int,
        db_path: Path | None = None,
        kyber_backend: KyberBackend = KyberBackend.PORTABLE,
    ) -> None:
        self.peer = peer
        self.now = now
        self.rng = DeterministicRng(seed, kyber_backend=kyber_backend)
        self.identity = IdentityKeyPair.generate(self.rng)
        self.registration_id = generate_registration_id(self.rng)
        self.sm_address = ProtocolAddress(str(uuid.uuid4()), 1)
        self.ls_address = ProtocolAddress(str(uuid.uuid4()), 2)
        self.db_path = db_path
        self.store: InMemoryProtocolStore | SqliteProtocolStore
        if db_path is None:
            self.store = InMemoryProtocolStore(self.identity, self.registration_id)
        else:
            self.store = SqliteProtocolStore.open(db_path, self.identity, self.registration_id)
        self.label = f"spqr-{uuid.uuid4()}"
        peer.create_party(self.label, self.ls_address.name, self.ls_address.device_id)
        self.sent = 0
        #: per sender role: the SPQR headers of its messages, in sending order
        self.headers: dict[Role, list[SpqrMessage]] = {"securemsg": [], "libsignal": []}
        #: braid state names securemsg's session went through (after every operation)
        self.sm_states: set[str] = set()
        #: braid state names libsignal's stored record showed at checkpoints
        self.ls_states: set[str] = set()
        #: the braid state names securemsg was in when it "restarted"
        self.restart_states: list[str] = []

    # -- setup --------------------------------------------------------------------------------

    def _ls(self) -> dict[str, Any]:
        return {
            "party": self.label,
            "remote_name": self.sm_address.name,
            "remote_device": self.sm_address.device_id,
        }

    def establish(self, initiator: Role) -> None:
        """The initiator processes the other's bundle; no message is sent yet."""
        if initiator == "securemsg":
            bundle = self.peer.call(
                "generate_bundle",
                party=self.label,
                pre_key_id=1,
                signed_pre_key_id=1,
                kyber_pre_key_id=1,
                timestamp_ms=self.now,
            )
            cipher.process_prekey_bundle(
                bundle_from_json(bundle),
                self.ls_address,
                self.store,
                now=self.now,
                rng=self.rng,
                local_address=self.sm_address,
            )
        else:
            pre_key = PreKeyRecord.generate(1, self.rng)
            signed = SignedPreKeyRecord.generate(1, self.identity, self.now, self.rng)
            kyber = KyberPreKeyRecord.generate(1, self.identity, self.now, self.rng)
            self.store.save_pre_key(1, pre_key)
            self.store.save_signed_pre_key(1, signed)
            self.store.save_kyber_pre_key(1, kyber)
            bundle_json = {
                "registration_id": self.registration_id,
                "device_id": self.sm_address.device_id,
                "pre_key_id": 1,
                "pre_key_public": b64(pre_key.public_key.to_bytes()),
                "signed_pre_key_id": 1,
                "signed_pre_key_public": b64(signed.public_key.to_bytes()),
                "signed_pre_key_signature": b64(signed.signature),
                "identity_key": b64(self.identity.identity_key.to_bytes()),
                "kyber_pre_key_id": 1,
                "kyber_pre_key_public": b64(kyber.public_key.to_bytes()),
                "kyber_pre_key_signature": b64(kyber.signature),
            }
            self.peer.call("process_bundle", bundle=bundle_json, now_ms=self.now, **self._ls())

    # -- securemsg side -----------------------------------------------------------------------

    def sm_spqr(self) -> SpqrState:
        record = self.store.load_session(self.ls_address)
        assert record is not None and record.current is not None
        return record.current.spqr

    def _note_state(self) -> None:
        self.sm_states.add(self.sm_spqr().state_name)

    def sm_encrypt(self, plaintexts: Sequence[bytes]) -> list[Wire]:
        out: list[Wire] = []
        for plaintext in plaintexts:
            message = cipher.message_encrypt(
                plaintext,
                self.ls_address,
                self.store,
                now=self.now,
                rng=self.rng,
                local_address=self.sm_address,
            )
            kind = PREKEY if isinstance(message, PreKeySignalMessage) else WHISPER
            out.append((kind, message.to_bytes()))
            self._note_state()
        return out

    def sm_decrypt(self, wires: Sequence[Wire]) -> list[bytes]:
        out: list[bytes] = []
        for kind, body in wires:
            out.append(
                cipher.message_decrypt(
                    body,
                    CiphertextMessageType(kind),
                    self.ls_address,
                    self.store,
                    now=self.now,
                    rng=self.rng,
                    local_address=self.sm_address,
                )
            )
            self._note_state()
        return out

    def restart(self) -> None:
        """securemsg "restarts": the SQLite store is closed and reopened from disk."""
        assert isinstance(self.store, SqliteProtocolStore) and self.db_path is not None
        before = self.store.load_session(self.ls_address)
        if before is not None:
            self.restart_states.append(self.sm_spqr().state_name)
        self.store.close()
        self.store = SqliteProtocolStore.open(self.db_path)
        after = self.store.load_session(self.ls_address)
        assert (None if after is None else after.to_bytes()) == (
            None if before is None else before.to_bytes()
        )

    # -- libsignal side -----------------------------------------------------------------------

    def ls_encrypt(self, plaintexts: Sequence[bytes]) -> list[Wire]:
        return self.peer.encrypt_many(
            self.label,
            self.sm_address.name,
            self.sm_address.device_id,
            plaintexts,
            now_ms=self.now,
        )

    def ls_decrypt(self, wires: Sequence[Wire]) -> list[bytes]:
        results = self.peer.decrypt_many(
            self.label, self.sm_address.name, self.sm_address.device_id, wires
        )
        for i, r in enumerate(results):
            if not isinstance(r, bytes):
                header = spqr_header(wires[i])
                raise AssertionError(
                    f"libsignal refused message {i} of the batch ({header}): {r}\n"
                    + self.peer.stderr_tail[-3000:]
                )
        return [r for r in results if isinstance(r, bytes)]

    # -- conversation -------------------------------------------------------------------------

    def send(self, sender: Role, plaintexts: Sequence[bytes]) -> list[Wire]:
        wires = (
            self.sm_encrypt(plaintexts) if sender == "securemsg" else self.ls_encrypt(plaintexts)
        )
        self.headers[sender].extend(spqr_header(w) for w in wires)
        self.sent += len(wires)
        return wires

    def deliver(self, sender: Role, wires: Sequence[Wire]) -> list[bytes]:
        """The other side decrypts ``wires`` in the given order (a refusal fails the test)."""
        if sender == "securemsg":
            return self.ls_decrypt(wires)
        return self.sm_decrypt(wires)

    def burst(self, sender: Role, plaintexts: Sequence[bytes], order: Sequence[int] | None) -> None:
        """``sender`` sends a burst; the other side gets it in ``order`` (indices) or in order."""
        wires = self.send(sender, plaintexts)
        if order is None:
            assert self.deliver(sender, wires) == list(plaintexts)
        else:
            got = self.deliver(sender, [wires[i] for i in order])
            assert got == [plaintexts[i] for i in order]

    # -- observations -------------------------------------------------------------------------

    def types_by_direction(self) -> dict[Role, set[MessageType]]:
        return {role: {h.type for h in hs} for role, hs in self.headers.items()}

    def epochs_by_direction(self) -> dict[Role, list[int]]:
        return {role: [h.epoch for h in hs] for role, hs in self.headers.items()}

    def type_counts(self) -> dict[Role, dict[str, int]]:
        counts: dict[Role, dict[str, int]] = {}
        for role, hs in self.headers.items():
            c: dict[str, int] = defaultdict(int)
            for h in hs:
                c[h.type.name] += 1
            counts[role] = dict(c)
        return counts

    def libsignal_braid(self) -> tuple[str, int]:
        """libsignal's braid (state name, epoch), read from its stored session record."""
        record = self.peer.call("get_session_record", **self._ls())["record"]
        state, epoch = libsignal_braid(unb64(record))
        self.ls_states.add(state)
        return state, epoch

    def check_braids_in_step(self, initiator: Role) -> tuple[str, int, str, int]:
        """Asserts the two braids are consistent right now (all sent messages delivered).

        Either both are in the same epoch with complementary roles (the initiator is send_ek in
        odd epochs), or the one that just decapsulated is one epoch ahead in
        ``no_header_received`` while the other still waits in ``ct2_sampled``.
        Returns (securemsg state, epoch, libsignal state, epoch).
        """
        sm = self.sm_spqr()
        sm_state, sm_epoch = sm.state_name, sm.epoch
        ls_state, ls_epoch = self.libsignal_braid()
        where = f"securemsg {sm_state}@{sm_epoch}, libsignal {ls_state}@{ls_epoch}"
        if sm_epoch == ls_epoch:
            ek_role: Role = initiator if sm_epoch % 2 == 1 else other(initiator)
            ek_state, ct_state = (
                (sm_state, ls_state) if ek_role == "securemsg" else (ls_state, sm_state)
            )
            assert ek_state in SEND_EK_STATES and ct_state in SEND_CT_STATES, where
        else:
            assert abs(sm_epoch - ls_epoch) == 1, where
            ahead, behind = (sm_state, ls_state) if sm_epoch > ls_epoch else (ls_state, sm_state)
            assert (ahead, behind) == ("no_header_received", "ct2_sampled"), where
        return sm_state, sm_epoch, ls_state, ls_epoch

    def libsignal_epoch(self) -> int:
        """libsignal's SCKA epoch as carried by its most recent message."""
        return self.headers["libsignal"][-1].epoch

    def close(self) -> None:
        if isinstance(self.store, SqliteProtocolStore):
            self.store.close()
        self.peer.call("delete_party", party=self.label)


# -- reading libsignal's stored SPQR state --------------------------------------------------------


def _proto_fields(data: bytes) -> dict[int, list[bytes | int]]:
    """A minimal protobuf reader: field number -> values (varints as int, LEN as bytes)."""
    fields: dict[int, list[bytes | int]] = defaultdict(list)
    at = 0

    def varint() -> int:
        nonlocal at
        value = shift = 0
        while True:
            b = data[at]
            at += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value

    while at < len(data):
        key = varint()
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            fields[number].append(varint())
        elif wire_type == 2:
            n = varint()
            fields[number].append(data[at : at + n])
            at += n
        elif wire_type == 1:
            at += 8
        elif wire_type == 5:
            at += 4
        else:
            raise ValueError(f"unexpected wire type {wire_type}")
    return fields


#: libsignal's ``V1State`` oneof field numbers -> braid state names (libsignal's SPQR v1
#: state protobuf)
V1_STATE_NAMES = {
    1: "keys_unsampled",
    2: "keys_sampled",
    3: "header_sent",
    4: "ct1_received",
    5: "ek_sent_ct1_received",
    6: "no_header_received",
    7: "header_received",
    8: "ct1_sampled",
    9: "ek_received_ct1_sampled",
    10: "ct1_acknowledged",
    11: "ct2_sampled",
}
SEND_EK_STATES = frozenset(
    ("keys_unsampled", "keys_sampled", "header_sent", "ct1_received", "ek_sent_ct1_received")
)
SEND_CT_STATES = frozenset(V1_STATE_NAMES.values()) - SEND_EK_STATES


def _only_bytes(fields: dict[int, list[bytes | int]], number: int) -> bytes:
    [value] = fields[number]
    assert isinstance(value, bytes)
    return value


def libsignal_braid(record: bytes) -> tuple[str, int]:
    """(braid state name, SCKA epoch) of the current session in a libsignal ``SessionRecord``.

    Path: ``RecordStructure.current_session`` (1) -> ``SessionStructure.pq_ratchet_state`` (15)
    -> ``PqRatchetState.v1`` (3) -> the one set ``V1State`` variant -> its ``uc`` (1) ->
    ``epoch`` (1).
    """
    session = _only_bytes(_proto_fields(record), 1)
    pq = _only_bytes(_proto_fields(session), 15)
    v1 = _proto_fields(_only_bytes(_proto_fields(pq), 3))
    [number] = [n for n in v1 if n in V1_STATE_NAMES]
    chunked = _proto_fields(_only_bytes(v1, number))
    unchunked = _proto_fields(_only_bytes(chunked, 1))
    epoch = unchunked[1][0] if unchunked.get(1) else 0
    assert isinstance(epoch, int)
    return V1_STATE_NAMES[number], epoch
