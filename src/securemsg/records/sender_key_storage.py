"""Codec for stored sender-key records (``proto/sender_key.proto``, ours, versioned).

Theory of operation
-------------------
The protocol layer (:mod:`securemsg.protocol.sender_keys`) must not see generated protobuf
classes, so this codec speaks plain data: :class:`StoredSenderKeyState` holds only ``bytes`` and
``int`` values, exactly what the schema holds; the protocol layer checks keys. Every record
carries ``version = 1`` (:data:`SENDER_KEY_RECORD_VERSION`); any other value is refused with
:class:`~securemsg.errors.UnsupportedVersionError`. Decoders raise only
:class:`~securemsg.errors.DecodeError` (or that subclass) on hostile bytes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError as _ProtoDecodeError

from securemsg._proto import sender_key_pb2
from securemsg.errors import DecodeError, UnsupportedVersionError

__all__ = [
    "SENDER_KEY_RECORD_VERSION",
    "StoredSenderKeyState",
    "decode_sender_key_record",
    "encode_sender_key_record",
]

#: Current layout version of SenderKeyRecordStructure.
SENDER_KEY_RECORD_VERSION = 1

_SEED_LENGTH = 32
_PUBLIC_LENGTH = 33
_PRIVATE_LENGTH = 32


@dataclass(frozen=True, slots=True)
class StoredSenderKeyState:
    """One chain as plain values. ``message_keys`` is ((iteration, seed), ...), oldest first."""

    message_version: int
    chain_id: int
    chain_iteration: int
    chain_key: bytes = field(repr=False)
    signing_public: bytes = field(repr=False)
    signing_private: bytes = field(repr=False)
    message_keys: tuple[tuple[int, bytes], ...] = field(repr=False)


def encode_sender_key_record(states: Sequence[StoredSenderKeyState]) -> bytes:
    """Serialize the states (newest first) with the current version."""
    pb = sender_key_pb2.SenderKeyRecordStructure(version=SENDER_KEY_RECORD_VERSION)
    for s in states:
        st = pb.states.add()
        st.message_version = s.message_version
        st.chain_id = s.chain_id
        st.chain_iteration = s.chain_iteration
        st.chain_key = s.chain_key
        st.signing_public = s.signing_public
        st.signing_private = s.signing_private
        for iteration, seed in s.message_keys:
            st.message_keys.add(iteration=iteration, seed=seed)
    return pb.SerializeToString()


def decode_sender_key_record(data: bytes) -> tuple[StoredSenderKeyState, ...]:
    """Parse a record into its states (newest first), checking version and lengths.

    Raises:
        UnsupportedVersionError: the version is not 1.
        DecodeError: not bytes, bad protobuf, or a key/seed of the wrong length.
    """
    if not isinstance(data, (bytes, bytearray)):
        raise DecodeError("sender key record must be bytes")
    pb = sender_key_pb2.SenderKeyRecordStructure()
    try:
        pb.ParseFromString(bytes(data))
    except _ProtoDecodeError:
        raise DecodeError("sender key record: invalid protobuf") from None
    if pb.version != SENDER_KEY_RECORD_VERSION:
        raise UnsupportedVersionError("sender key record: unknown version", pb.version)
    out: list[StoredSenderKeyState] = []
    for st in pb.states:
        if (
            len(st.chain_key) != _SEED_LENGTH
            or len(st.signing_public) != _PUBLIC_LENGTH
            or len(st.signing_private) not in (0, _PRIVATE_LENGTH)
        ):
            raise DecodeError("sender key record: bad key length")
        keys: list[tuple[int, bytes]] = []
        for mk in st.message_keys:
            if len(mk.seed) != _SEED_LENGTH:
                raise DecodeError("sender key record: bad message key length")
            keys.append((mk.iteration, mk.seed))
        out.append(
            StoredSenderKeyState(
                st.message_version,
                st.chain_id,
                st.chain_iteration,
                st.chain_key,
                st.signing_public,
                st.signing_private,
                tuple(keys),
            )
        )
    return tuple(out)
