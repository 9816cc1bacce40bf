"""Codec for the stored SPQR state (``proto/pq_ratchet.proto``, package ``securemsg.spqr``).

Theory of operation: ``protocol/spqr`` turns its immutable state objects into the plain
records below and back; this module only maps those records to and from protobuf bytes, so
the generated ``_pb2`` stays quarantined in the byte-format packages. Semantic checks (key
lengths, which fields a braid state needs) belong to the protocol side; here protobuf errors
and unknown record versions become :class:`~securemsg.errors.DecodeError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from google.protobuf.message import DecodeError as _PbDecodeError

from securemsg._proto import pq_ratchet_pb2 as pb
from securemsg.errors import DecodeError

__all__ = [
    "SPQR_RECORD_VERSION",
    "BraidRecord",
    "ChainRecord",
    "DecoderRecord",
    "EncoderRecord",
    "HalfRecord",
    "LinkRecord",
    "SpqrStateRecord",
    "decode_spqr_state",
    "encode_spqr_state",
]

SPQR_RECORD_VERSION = 1


@dataclass(frozen=True, slots=True)
class HalfRecord:
    ctr: int
    next: bytes = field(repr=False)
    history: bytes = field(repr=False)  # (BE32 index || key32)*


@dataclass(frozen=True, slots=True)
class LinkRecord:
    send: HalfRecord
    recv: HalfRecord


@dataclass(frozen=True, slots=True)
class ChainRecord:
    a2b: bool
    current_epoch: int
    send_epoch: int
    next_root: bytes = field(repr=False)
    links: tuple[LinkRecord, ...]
    max_jump: int
    max_ooo_keys: int


@dataclass(frozen=True, slots=True)
class EncoderRecord:
    payload: bytes = field(repr=False)
    next_index: int


@dataclass(frozen=True, slots=True)
class DecoderRecord:
    payload_length: int
    chunks: tuple[tuple[int, bytes], ...] = field(repr=False)


@dataclass(frozen=True, slots=True)
class BraidRecord:
    state: int  # BraidStateKind value 1..11
    epoch: int
    auth_root_key: bytes = field(repr=False)
    auth_mac_key: bytes = field(repr=False)
    kem_seed: bytes = field(default=b"", repr=False)
    header: bytes = field(default=b"", repr=False)
    ek_vector: bytes = field(default=b"", repr=False)
    ct1: bytes = field(default=b"", repr=False)
    encaps_state: bytes = field(default=b"", repr=False)
    encoder: EncoderRecord | None = None
    decoder: DecoderRecord | None = None


@dataclass(frozen=True, slots=True)
class SpqrStateRecord:
    chain: ChainRecord
    braid: BraidRecord


def _half_pb(h: HalfRecord, out: pb.Half) -> None:
    out.ctr = h.ctr
    out.next = h.next
    out.history = h.history


def encode_spqr_state(rec: SpqrStateRecord) -> bytes:
    """Serialize a record (deterministic: fields in number order, defaults omitted)."""
    msg = pb.SpqrStateRecord()
    msg.version = SPQR_RECORD_VERSION
    c = rec.chain
    mc = msg.chain
    mc.a2b = c.a2b
    mc.current_epoch = c.current_epoch
    mc.send_epoch = c.send_epoch
    mc.next_root = c.next_root
    for link in c.links:
        ml = mc.links.add()
        _half_pb(link.send, ml.send)
        _half_pb(link.recv, ml.recv)
    mc.max_jump = c.max_jump
    mc.max_ooo_keys = c.max_ooo_keys
    b = rec.braid
    mb = msg.braid
    mb.state = b.state  # type: ignore[assignment]
    mb.epoch = b.epoch
    mb.auth_root_key = b.auth_root_key
    mb.auth_mac_key = b.auth_mac_key
    mb.kem_seed = b.kem_seed
    mb.header = b.header
    mb.ek_vector = b.ek_vector
    mb.ct1 = b.ct1
    mb.encaps_state = b.encaps_state
    if b.encoder is not None:
        mb.encoder.payload = b.encoder.payload
        mb.encoder.next_index = b.encoder.next_index
    if b.decoder is not None:
        mb.decoder.payload_length = b.decoder.payload_length
        for index, data in b.decoder.chunks:
            ch = mb.decoder.chunks.add()
            ch.index = index
            ch.data = data
    return msg.SerializeToString(deterministic=True)


def _half(h: pb.Half) -> HalfRecord:
    return HalfRecord(h.ctr, h.next, h.history)


def decode_spqr_state(data: bytes) -> SpqrStateRecord:
    """Parse a record.

    Raises:
        DecodeError: not a protobuf of this schema, missing parts, or an unknown version.
    """
    msg = pb.SpqrStateRecord()
    try:
        msg.ParseFromString(bytes(data))
    except (_PbDecodeError, ValueError, TypeError, RuntimeError) as exc:
        raise DecodeError("SPQR state: not a valid record") from exc
    if msg.version != SPQR_RECORD_VERSION:
        raise DecodeError("SPQR state: unknown record version")
    if not msg.HasField("chain") or not msg.HasField("braid"):
        raise DecodeError("SPQR state: missing chain or braid")
    c = msg.chain
    links = []
    for ml in c.links:
        if not ml.HasField("send") or not ml.HasField("recv"):
            raise DecodeError("SPQR state: incomplete chain link")
        links.append(LinkRecord(_half(ml.send), _half(ml.recv)))
    chain = ChainRecord(
        c.a2b,
        c.current_epoch,
        c.send_epoch,
        c.next_root,
        tuple(links),
        c.max_jump,
        c.max_ooo_keys,
    )
    b = msg.braid
    encoder = None
    if b.HasField("encoder"):
        encoder = EncoderRecord(b.encoder.payload, b.encoder.next_index)
    decoder = None
    if b.HasField("decoder"):
        decoder = DecoderRecord(
            b.decoder.payload_length, tuple((ch.index, ch.data) for ch in b.decoder.chunks)
        )
    braid = BraidRecord(
        int(b.state),
        b.epoch,
        b.auth_root_key,
        b.auth_mac_key,
        b.kem_seed,
        b.header,
        b.ek_vector,
        b.ct1,
        b.encaps_state,
        encoder,
        decoder,
    )
    return SpqrStateRecord(chain, braid)
