"""Key-transparency proofs: AKD's proof objects and their protobuf wire (proto/akd.proto),
strictly decoded. The objects mirror AKD's one to one and are plain immutable data; the
directory (:mod:`securemsg.kt.directory`) builds them, the verifiers
(:mod:`securemsg.kt.verify`) check them. Byte formats: docs/key-transparency.md.

Decoding refuses, with :class:`~securemsg.errors.KeyTransparencyDecodeError`:
input larger than the caller's bound; bytes protobuf cannot parse; a missing field; a digest or
nonce that is not 32 bytes; a VRF proof that is not 80 bytes; a label longer than 32 bytes or
256 bits; a direction other than 0 or 1; a sibling list that does not hold exactly one
element; a non-membership proof without exactly two children; and finally any input that is
not the canonical encoding of what was decoded (so unknown fields, repeated scalars,
non-minimal varints or untrimmed labels never pass). The decoded values are data to verify,
never identifiers to look anything up by.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from google.protobuf.message import DecodeError as _ProtobufDecodeError

from securemsg._proto import akd_pb2
from securemsg.crypto.ecvrf import PROOF_LENGTH
from securemsg.crypto.kt_primitives import blake3_hash
from securemsg.errors import KeyTransparencyDecodeError

__all__ = [
    "EMPTY_LABEL_LEN",
    "EMPTY_LABEL_VAL",
    "AppendOnlyProof",
    "AzksElement",
    "HistoryProof",
    "LookupProof",
    "MembershipProof",
    "NodeLabel",
    "NonMembershipProof",
    "SiblingProof",
    "SingleAppendOnlyProof",
    "UpdateProof",
    "label_bytes",
    "label_hash",
    "MAX_APPEND_ONLY_PROOF_BYTES",
    "MAX_PROOF_BYTES",
    "decode_append_only_proof",
    "decode_history_proof",
    "decode_lookup_proof",
    "decode_single_append_only_proof",
    "encode_append_only_proof",
    "encode_history_proof",
    "encode_lookup_proof",
    "encode_single_append_only_proof",
]

#: Default bound on a lookup or history proof (bytes).
MAX_PROOF_BYTES = 1 << 20
#: Default bound on an append-only (audit) proof (bytes).
MAX_APPEND_ONLY_PROOF_BYTES = 256 << 20
_MAX_DEPTH = 256

_T = TypeVar("_T")


def label_bytes(val: int, length: int) -> bytes:
    """AKD's ``NodeLabel.to_bytes``: ``u32_be(length) || val (32 bytes)``."""
    return length.to_bytes(4, "big") + val.to_bytes(32, "big")


@functools.lru_cache(maxsize=1 << 16)
def label_hash(val: int, length: int) -> bytes:
    """What a label contributes to its parent's hash: BLAKE3 of :func:`label_bytes`
    (memoised: proofs repeat the labels near the root)."""
    return blake3_hash(label_bytes(val, length))


#: The placeholder label of the root's missing child: value ``[1; 32]``, length 0.
EMPTY_LABEL_VAL = int.from_bytes(b"\x01" * 32, "big")
EMPTY_LABEL_LEN = 0


class NodeLabel(NamedTuple):
    """A trie label: the first ``length`` bits (0..256) of the 256-bit big-endian ``val``.

    Equality compares both fields, bits beyond ``length`` included (as AKD does: the
    placeholder :meth:`empty` sets such bits). A named tuple: proofs carry many labels.
    """

    val: int
    length: int

    @staticmethod
    def root() -> NodeLabel:
        return NodeLabel(0, 0)

    @staticmethod
    def empty() -> NodeLabel:
        return NodeLabel(EMPTY_LABEL_VAL, EMPTY_LABEL_LEN)

    @staticmethod
    def from_bytes32(data: bytes) -> NodeLabel:
        return NodeLabel(int.from_bytes(data, "big"), 256)

    def hash(self) -> bytes:
        """BLAKE3 of ``u32_be(length) || val``: what the label contributes to hashes."""
        return label_hash(self.val, self.length)

    def bit(self, index: int) -> int:
        return (self.val >> (255 - index)) & 1

    def is_prefix_of(self, other: NodeLabel) -> bool:
        """True when this label's bits start ``other`` (length 0 is a prefix of anything)."""
        if self.length > other.length:
            return False
        shift = 256 - self.length
        return (self.val >> shift) == (other.val >> shift)

    def prefix(self, length: int) -> NodeLabel:
        if length >= 256:
            return self
        shift = 256 - length
        return NodeLabel((self.val >> shift) << shift, length)

    def common_prefix(self, other: NodeLabel) -> NodeLabel:
        """The longest common prefix; the placeholder if either label is the placeholder."""
        empty = NodeLabel.empty()
        if self == empty or other == empty:
            return empty
        shorter = min(self.length, other.length)
        diff = (self.val ^ other.val) >> (256 - shorter) if shorter else 0
        common = shorter - diff.bit_length()
        return self.prefix(common)


class AzksElement(NamedTuple):
    """A node of the trie as a proof carries it: its label and 32-byte value."""

    label: NodeLabel
    value: bytes


class SiblingProof(NamedTuple):
    """One level of a membership path: the parent's label, the sibling, and the direction
    (0 = the proved node is the left child, 1 = the right child)."""

    label: NodeLabel
    sibling: AzksElement
    direction: int


@dataclass(frozen=True, slots=True)
class MembershipProof:
    label: NodeLabel
    hash_val: bytes
    sibling_proofs: tuple[SiblingProof, ...]


@dataclass(frozen=True, slots=True)
class NonMembershipProof:
    label: NodeLabel
    longest_prefix: NodeLabel
    longest_prefix_children: tuple[AzksElement, AzksElement]
    longest_prefix_membership_proof: MembershipProof


@dataclass(frozen=True, slots=True)
class LookupProof:
    epoch: int
    value: bytes
    version: int
    existence_vrf_proof: bytes
    existence_proof: MembershipProof
    marker_vrf_proof: bytes
    marker_proof: MembershipProof
    freshness_vrf_proof: bytes
    freshness_proof: NonMembershipProof
    commitment_nonce: bytes


@dataclass(frozen=True, slots=True)
class UpdateProof:
    epoch: int
    value: bytes
    version: int
    existence_vrf_proof: bytes
    existence_proof: MembershipProof
    previous_version_vrf_proof: bytes | None
    previous_version_proof: MembershipProof | None
    commitment_nonce: bytes


@dataclass(frozen=True, slots=True)
class HistoryProof:
    update_proofs: tuple[UpdateProof, ...]
    past_marker_vrf_proofs: tuple[bytes, ...]
    existence_of_past_marker_proofs: tuple[MembershipProof, ...]
    future_marker_vrf_proofs: tuple[bytes, ...]
    non_existence_of_future_marker_proofs: tuple[NonMembershipProof, ...]


@dataclass(frozen=True, slots=True)
class SingleAppendOnlyProof:
    """Epoch t -> t+1: the leaves inserted (commitments, without the epoch) and the roots of
    the subtrees that did not change."""

    inserted: tuple[AzksElement, ...]
    unchanged_nodes: tuple[AzksElement, ...]


@dataclass(frozen=True, slots=True)
class AppendOnlyProof:
    proofs: tuple[SingleAppendOnlyProof, ...]
    epochs: tuple[int, ...]


def _fail(what: str) -> KeyTransparencyDecodeError:
    return KeyTransparencyDecodeError(f"key-transparency proof: {what}", "decode")


# ---------------------------------------------------------------- encoding


def _label_pb(label: NodeLabel) -> Any:
    return akd_pb2.NodeLabel(
        label_val=label.val.to_bytes(32, "big").rstrip(b"\x00"), label_len=label.length
    )


def _element_pb(element: AzksElement) -> Any:
    return akd_pb2.AzksElement(label=_label_pb(element.label), value=element.value)


def _membership_pb(proof: MembershipProof) -> Any:
    return akd_pb2.MembershipProof(
        label=_label_pb(proof.label),
        hash_val=proof.hash_val,
        sibling_proofs=[
            akd_pb2.SiblingProof(
                label=_label_pb(s.label), siblings=[_element_pb(s.sibling)], direction=s.direction
            )
            for s in proof.sibling_proofs
        ],
    )


def _non_membership_pb(proof: NonMembershipProof) -> Any:
    return akd_pb2.NonMembershipProof(
        label=_label_pb(proof.label),
        longest_prefix=_label_pb(proof.longest_prefix),
        longest_prefix_children=[_element_pb(c) for c in proof.longest_prefix_children],
        longest_prefix_membership_proof=_membership_pb(proof.longest_prefix_membership_proof),
    )


def _lookup_pb(proof: LookupProof) -> Any:
    return akd_pb2.LookupProof(
        epoch=proof.epoch,
        value=proof.value,
        version=proof.version,
        existence_vrf_proof=proof.existence_vrf_proof,
        existence_proof=_membership_pb(proof.existence_proof),
        marker_vrf_proof=proof.marker_vrf_proof,
        marker_proof=_membership_pb(proof.marker_proof),
        freshness_vrf_proof=proof.freshness_vrf_proof,
        freshness_proof=_non_membership_pb(proof.freshness_proof),
        commitment_nonce=proof.commitment_nonce,
    )


def _update_pb(proof: UpdateProof) -> Any:
    msg = akd_pb2.UpdateProof(
        epoch=proof.epoch,
        value=proof.value,
        version=proof.version,
        existence_vrf_proof=proof.existence_vrf_proof,
        existence_proof=_membership_pb(proof.existence_proof),
        commitment_nonce=proof.commitment_nonce,
    )
    if proof.previous_version_vrf_proof is not None:
        msg.previous_version_vrf_proof = proof.previous_version_vrf_proof
    if proof.previous_version_proof is not None:
        msg.previous_version_proof.CopyFrom(_membership_pb(proof.previous_version_proof))
    return msg


def _history_pb(proof: HistoryProof) -> Any:
    return akd_pb2.HistoryProof(
        update_proofs=[_update_pb(u) for u in proof.update_proofs],
        past_marker_vrf_proofs=list(proof.past_marker_vrf_proofs),
        existence_of_past_marker_proofs=[
            _membership_pb(m) for m in proof.existence_of_past_marker_proofs
        ],
        future_marker_vrf_proofs=list(proof.future_marker_vrf_proofs),
        non_existence_of_future_marker_proofs=[
            _non_membership_pb(n) for n in proof.non_existence_of_future_marker_proofs
        ],
    )


def _single_append_only_pb(proof: SingleAppendOnlyProof) -> Any:
    return akd_pb2.SingleAppendOnlyProof(
        inserted=[_element_pb(e) for e in proof.inserted],
        unchanged_nodes=[_element_pb(e) for e in proof.unchanged_nodes],
    )


def _append_only_pb(proof: AppendOnlyProof) -> Any:
    return akd_pb2.AppendOnlyProof(
        proofs=[_single_append_only_pb(p) for p in proof.proofs], epochs=list(proof.epochs)
    )


def encode_lookup_proof(proof: LookupProof) -> bytes:
    return bytes(_lookup_pb(proof).SerializeToString())


def encode_history_proof(proof: HistoryProof) -> bytes:
    return bytes(_history_pb(proof).SerializeToString())


def encode_single_append_only_proof(proof: SingleAppendOnlyProof) -> bytes:
    return bytes(_single_append_only_pb(proof).SerializeToString())


def encode_append_only_proof(proof: AppendOnlyProof) -> bytes:
    return bytes(_append_only_pb(proof).SerializeToString())


# ---------------------------------------------------------------- decoding


def _require(msg: Any, *fields: str) -> None:
    for field in fields:
        if not msg.HasField(field):
            raise _fail(f"missing field {field}")


def _digest(data: bytes, what: str) -> bytes:
    if len(data) != 32:
        raise _fail(f"{what} must be 32 bytes")
    return bytes(data)


def _vrf_proof(data: bytes) -> bytes:
    if len(data) != PROOF_LENGTH:
        raise _fail("a VRF proof must be 80 bytes")
    return bytes(data)


@functools.lru_cache(maxsize=1 << 14)
def _label_of(raw: bytes, length: int) -> NodeLabel:
    if len(raw) > 32 or length > 256:
        raise _fail("label longer than 32 bytes or 256 bits")
    if raw[-1:] == b"\x00":
        raise _fail("label value not minimal (trailing zero byte)")
    return NodeLabel(int.from_bytes(raw, "big") << (8 * (32 - len(raw))), length)


def _label(msg: Any) -> NodeLabel:
    if not (msg.HasField("label_val") and msg.HasField("label_len")):
        raise _fail("missing label field")
    return _label_of(msg.label_val, msg.label_len)


def _element(msg: Any) -> AzksElement:
    if not (msg.HasField("label") and msg.HasField("value")):
        raise _fail("missing node field")
    value = msg.value
    if len(value) != 32:
        raise _fail("a node value must be 32 bytes")
    return AzksElement(_label(msg.label), value)


def _membership(msg: Any) -> MembershipProof:
    _require(msg, "label", "hash_val")
    if len(msg.sibling_proofs) > _MAX_DEPTH:
        raise _fail("membership path deeper than 256")
    levels: list[SiblingProof] = []
    for level in msg.sibling_proofs:
        if not (level.HasField("label") and level.HasField("direction")):
            raise _fail("missing path field")
        siblings = level.siblings
        direction = level.direction
        if len(siblings) != 1:
            raise _fail("a path level must carry exactly one sibling")
        if direction > 1:
            raise _fail("direction must be 0 or 1")
        levels.append(SiblingProof(_label(level.label), _element(siblings[0]), direction))
    return MembershipProof(_label(msg.label), _digest(msg.hash_val, "a node hash"), tuple(levels))


def _non_membership(msg: Any) -> NonMembershipProof:
    _require(msg, "label", "longest_prefix", "longest_prefix_membership_proof")
    if len(msg.longest_prefix_children) != 2:
        raise _fail("a non-membership proof needs exactly two children")
    left, right = (_element(c) for c in msg.longest_prefix_children)
    return NonMembershipProof(
        _label(msg.label),
        _label(msg.longest_prefix),
        (left, right),
        _membership(msg.longest_prefix_membership_proof),
    )


def _lookup(msg: Any) -> LookupProof:
    _require(
        msg,
        "epoch",
        "value",
        "version",
        "existence_vrf_proof",
        "existence_proof",
        "marker_vrf_proof",
        "marker_proof",
        "freshness_vrf_proof",
        "freshness_proof",
        "commitment_nonce",
    )
    return LookupProof(
        epoch=int(msg.epoch),
        value=bytes(msg.value),
        version=int(msg.version),
        existence_vrf_proof=_vrf_proof(msg.existence_vrf_proof),
        existence_proof=_membership(msg.existence_proof),
        marker_vrf_proof=_vrf_proof(msg.marker_vrf_proof),
        marker_proof=_membership(msg.marker_proof),
        freshness_vrf_proof=_vrf_proof(msg.freshness_vrf_proof),
        freshness_proof=_non_membership(msg.freshness_proof),
        commitment_nonce=_digest(msg.commitment_nonce, "the commitment nonce"),
    )


def _update(msg: Any) -> UpdateProof:
    _require(
        msg,
        "epoch",
        "value",
        "version",
        "existence_vrf_proof",
        "existence_proof",
        "commitment_nonce",
    )
    has_vrf = msg.HasField("previous_version_vrf_proof")
    has_proof = msg.HasField("previous_version_proof")
    if has_vrf != has_proof or has_vrf != (msg.version > 1):
        raise _fail("the previous-version proof must be present exactly when version > 1")
    return UpdateProof(
        epoch=int(msg.epoch),
        value=bytes(msg.value),
        version=int(msg.version),
        existence_vrf_proof=_vrf_proof(msg.existence_vrf_proof),
        existence_proof=_membership(msg.existence_proof),
        previous_version_vrf_proof=_vrf_proof(msg.previous_version_vrf_proof) if has_vrf else None,
        previous_version_proof=_membership(msg.previous_version_proof) if has_proof else None,
        commitment_nonce=_digest(msg.commitment_nonce, "the commitment nonce"),
    )


def _history(msg: Any) -> HistoryProof:
    return HistoryProof(
        update_proofs=tuple(_update(u) for u in msg.update_proofs),
        past_marker_vrf_proofs=tuple(_vrf_proof(p) for p in msg.past_marker_vrf_proofs),
        existence_of_past_marker_proofs=tuple(
            _membership(m) for m in msg.existence_of_past_marker_proofs
        ),
        future_marker_vrf_proofs=tuple(_vrf_proof(p) for p in msg.future_marker_vrf_proofs),
        non_existence_of_future_marker_proofs=tuple(
            _non_membership(n) for n in msg.non_existence_of_future_marker_proofs
        ),
    )


def _single_append_only(msg: Any) -> SingleAppendOnlyProof:
    return SingleAppendOnlyProof(
        inserted=tuple(_element(e) for e in msg.inserted),
        unchanged_nodes=tuple(_element(e) for e in msg.unchanged_nodes),
    )


def _append_only(msg: Any) -> AppendOnlyProof:
    if len(msg.epochs) != len(msg.proofs):
        raise _fail("an append-only proof needs one epoch per step")
    return AppendOnlyProof(
        proofs=tuple(_single_append_only(p) for p in msg.proofs),
        epochs=tuple(int(e) for e in msg.epochs),
    )


def _decode(
    data: bytes,
    max_bytes: int,
    message_type: Any,
    convert: Callable[[Any], _T],
) -> _T:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _fail("expected bytes")
    data = bytes(data)
    if len(data) > max_bytes:
        raise _fail(f"larger than {max_bytes} bytes")
    msg = message_type()
    try:
        msg.ParseFromString(data)
        msg.DiscardUnknownFields()
        canonical = msg.SerializeToString()
    except (_ProtobufDecodeError, RuntimeError, ValueError) as exc:
        raise _fail("not a valid protobuf message") from exc
    # Re-encoding what was parsed, without unknown fields, must give the input back: field
    # order, varint lengths, repeated scalars and unknown fields are all fixed by this.
    if canonical != data:
        raise _fail("not the canonical encoding")
    return convert(msg)


def decode_lookup_proof(data: bytes, *, max_bytes: int = MAX_PROOF_BYTES) -> LookupProof:
    """Strictly decode a LookupProof (see the module docstring)."""
    return _decode(data, max_bytes, akd_pb2.LookupProof, _lookup)


def decode_history_proof(data: bytes, *, max_bytes: int = MAX_PROOF_BYTES) -> HistoryProof:
    """Strictly decode a HistoryProof (see the module docstring)."""
    return _decode(data, max_bytes, akd_pb2.HistoryProof, _history)


def decode_single_append_only_proof(
    data: bytes, *, max_bytes: int = MAX_APPEND_ONLY_PROOF_BYTES
) -> SingleAppendOnlyProof:
    """Strictly decode a SingleAppendOnlyProof (one epoch step)."""
    return _decode(
        data,
        max_bytes,
        akd_pb2.SingleAppendOnlyProof,
        _single_append_only,
    )


def decode_append_only_proof(
    data: bytes, *, max_bytes: int = MAX_APPEND_ONLY_PROOF_BYTES
) -> AppendOnlyProof:
    """Strictly decode an AppendOnlyProof (several consecutive epoch steps)."""
    return _decode(data, max_bytes, akd_pb2.AppendOnlyProof, _append_only)
