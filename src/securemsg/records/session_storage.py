"""Codec for stored 1:1 session records (``proto/session.proto``, package ``securemsg.session``).

Theory of operation
-------------------
The protocol layer must not see generated protobuf classes, and this layer must not know the
protocol's domain types. So the codec speaks plain data: :class:`StoredSession`,
:class:`StoredChain` and :class:`StoredPendingPreKey` hold only ``bytes`` and ``int`` values,
exactly what the schema holds. :mod:`securemsg.protocol.session_state` converts them to and
from its working objects (and checks lengths and keys there).

A record is encoded as its current session plus the archived sessions *as bytes*: archived
sessions are never decoded here unless :func:`decode_session` is called for one of them. Every
decoder answers hostile bytes with :class:`~securemsg.errors.DecodeError` (or
:class:`~securemsg.errors.UnsupportedVersionError` for an unknown layout version).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError as _ProtoDecodeError
from google.protobuf.message import EncodeError as _ProtoEncodeError

from securemsg._proto import session_pb2
from securemsg.errors import DecodeError, UnsupportedVersionError

__all__ = [
    "STORAGE_VERSION",
    "StoredChain",
    "StoredPendingPreKey",
    "StoredRecord",
    "StoredSession",
    "decode_record",
    "decode_session",
    "encode_record",
    "encode_session",
]

#: Current layout version written into every RecordStructure and SessionStructure.
STORAGE_VERSION = 1


@dataclass(slots=True)
class StoredChain:
    """One chain as stored. ``message_keys`` are ``(index, seed)`` pairs, newest first."""

    ratchet_key: bytes
    ratchet_private_key: bytes = field(repr=False)
    chain_key: bytes = field(repr=False)
    index: int
    message_keys: list[tuple[int, bytes]] = field(default_factory=list, repr=False)


@dataclass(slots=True)
class StoredPendingPreKey:
    """The unacknowledged-PreKey data of an initiator session."""

    pre_key_id: int | None
    signed_pre_key_id: int
    base_key: bytes
    timestamp_ms: int
    kyber_pre_key_id: int
    kyber_ciphertext: bytes


@dataclass(slots=True)
class StoredSession:
    """One session as stored (all fields of ``SessionStructure`` except the layout version)."""

    session_version: int
    local_identity_public: bytes
    remote_identity_public: bytes
    root_key: bytes = field(repr=False)
    previous_counter: int
    sender_chain: StoredChain | None
    receiver_chains: list[StoredChain]
    pending_pre_key: StoredPendingPreKey | None
    remote_registration_id: int
    local_registration_id: int
    alice_base_key: bytes
    pq_ratchet_state: bytes = field(repr=False)


@dataclass(slots=True)
class StoredRecord:
    """A record: the current session (decoded) and the archived ones (bytes, newest first)."""

    current_session: StoredSession | None
    previous_sessions: list[bytes]


# ----------------------------------------------------------------------------------- encoding


def _fill_chain(pb: session_pb2.Chain, chain: StoredChain) -> None:
    pb.ratchet_key = chain.ratchet_key
    if chain.ratchet_private_key:
        pb.ratchet_private_key = chain.ratchet_private_key
    pb.chain_key = chain.chain_key
    pb.index = chain.index
    if chain.message_keys:
        add = pb.message_keys.add
        for index, seed in chain.message_keys:
            add(index=index, seed=seed)


def _fill_session(pb: session_pb2.SessionStructure, s: StoredSession) -> None:
    pb.version = STORAGE_VERSION
    pb.session_version = s.session_version
    pb.local_identity_public = s.local_identity_public
    pb.remote_identity_public = s.remote_identity_public
    pb.root_key = s.root_key
    pb.previous_counter = s.previous_counter
    if s.sender_chain is not None:
        _fill_chain(pb.sender_chain, s.sender_chain)
    for chain in s.receiver_chains:
        _fill_chain(pb.receiver_chains.add(), chain)
    pending = s.pending_pre_key
    if pending is not None:
        pp = pb.pending_pre_key
        if pending.pre_key_id is not None:
            pp.pre_key_id = pending.pre_key_id
        pp.signed_pre_key_id = pending.signed_pre_key_id
        pp.base_key = pending.base_key
        pp.timestamp_ms = pending.timestamp_ms
        pp.kyber_pre_key_id = pending.kyber_pre_key_id
        pp.kyber_ciphertext = pending.kyber_ciphertext
    pb.remote_registration_id = s.remote_registration_id
    pb.local_registration_id = s.local_registration_id
    pb.alice_base_key = s.alice_base_key
    pb.pq_ratchet_state = s.pq_ratchet_state


def encode_session(session: StoredSession) -> bytes:
    """Serialize one session (used for archived sessions).

    Raises:
        DecodeError: a value does not fit the schema (e.g. a negative counter); a bug upstream.
    """
    pb = session_pb2.SessionStructure()
    try:
        _fill_session(pb, session)
        return pb.SerializeToString()
    except (ValueError, TypeError, _ProtoEncodeError) as exc:
        raise DecodeError("session does not fit the storage schema") from exc


def encode_record(current: StoredSession | None, previous: Sequence[bytes]) -> bytes:
    """Serialize a record from its current session and the archived sessions' bytes.

    Raises:
        DecodeError: a value does not fit the schema; a bug upstream.
    """
    pb = session_pb2.RecordStructure()
    pb.version = STORAGE_VERSION
    try:
        if current is not None:
            _fill_session(pb.current_session, current)
        pb.previous_sessions.extend(previous)
        return pb.SerializeToString()
    except (ValueError, TypeError, _ProtoEncodeError) as exc:
        raise DecodeError("record does not fit the storage schema") from exc


# ----------------------------------------------------------------------------------- decoding


def _chain_from_pb(pb: session_pb2.Chain) -> StoredChain:
    return StoredChain(
        ratchet_key=pb.ratchet_key,
        ratchet_private_key=pb.ratchet_private_key,
        chain_key=pb.chain_key,
        index=pb.index,
        message_keys=[(mk.index, mk.seed) for mk in pb.message_keys],
    )


def _session_from_pb(pb: session_pb2.SessionStructure) -> StoredSession:
    if pb.version != STORAGE_VERSION:
        raise UnsupportedVersionError("unknown session storage version", pb.version)
    pending: StoredPendingPreKey | None = None
    if pb.HasField("pending_pre_key"):
        pp = pb.pending_pre_key
        pending = StoredPendingPreKey(
            pre_key_id=pp.pre_key_id if pp.HasField("pre_key_id") else None,
            signed_pre_key_id=pp.signed_pre_key_id,
            base_key=pp.base_key,
            timestamp_ms=pp.timestamp_ms,
            kyber_pre_key_id=pp.kyber_pre_key_id,
            kyber_ciphertext=pp.kyber_ciphertext,
        )
    return StoredSession(
        session_version=pb.session_version,
        local_identity_public=pb.local_identity_public,
        remote_identity_public=pb.remote_identity_public,
        root_key=pb.root_key,
        previous_counter=pb.previous_counter,
        sender_chain=_chain_from_pb(pb.sender_chain) if pb.HasField("sender_chain") else None,
        receiver_chains=[_chain_from_pb(c) for c in pb.receiver_chains],
        pending_pre_key=pending,
        remote_registration_id=pb.remote_registration_id,
        local_registration_id=pb.local_registration_id,
        alice_base_key=pb.alice_base_key,
        pq_ratchet_state=pb.pq_ratchet_state,
    )


def decode_session(data: bytes) -> StoredSession:
    """Parse one serialized ``SessionStructure`` (an archived session).

    Raises:
        DecodeError: not a valid SessionStructure.
        UnsupportedVersionError: an unknown layout version.
    """
    pb = session_pb2.SessionStructure()
    try:
        pb.ParseFromString(bytes(data))
    except (_ProtoDecodeError, ValueError, TypeError) as exc:
        raise DecodeError("stored session does not parse") from exc
    return _session_from_pb(pb)


def decode_record(data: bytes) -> StoredRecord:
    """Parse a serialized ``RecordStructure``; archived sessions stay bytes.

    Raises:
        DecodeError: not a valid RecordStructure.
        UnsupportedVersionError: an unknown layout version.
    """
    pb = session_pb2.RecordStructure()
    try:
        pb.ParseFromString(bytes(data))
    except (_ProtoDecodeError, ValueError, TypeError) as exc:
        raise DecodeError("stored session record does not parse") from exc
    if pb.version != STORAGE_VERSION:
        raise UnsupportedVersionError("unknown session record storage version", pb.version)
    current = _session_from_pb(pb.current_session) if pb.HasField("current_session") else None
    return StoredRecord(current_session=current, previous_sessions=list(pb.previous_sessions))
