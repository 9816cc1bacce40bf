"""Values of the key-transparency core: node labels, proofs, verification results.

The proof classes mirror AKD's (and its protobuf messages in proto/akd.proto) one to one; they
are plain immutable data. Build them with :mod:`securemsg.kt.wire` (from bytes) or
:class:`securemsg.kt.directory.Directory` (from a directory).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import NamedTuple

from securemsg.kt.config import EMPTY_LABEL_LEN, EMPTY_LABEL_VAL, label_hash

__all__ = [
    "AppendOnlyProof",
    "AzksElement",
    "HistoryParams",
    "HistoryProof",
    "LookupProof",
    "MembershipProof",
    "NodeLabel",
    "NonMembershipProof",
    "SiblingProof",
    "SingleAppendOnlyProof",
    "UpdateProof",
    "VerifyResult",
]


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


@dataclass(frozen=True, slots=True)
class AzksElement:
    """A node of the trie as a proof carries it: its label and 32-byte value."""

    label: NodeLabel
    value: bytes


@dataclass(frozen=True, slots=True)
class SiblingProof:
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


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """What a verified proof establishes: ``value`` was set as ``version`` at ``epoch``."""

    epoch: int
    version: int
    value: bytes


class _HistoryKind(enum.Enum):
    COMPLETE = "complete"
    MOST_RECENT = "most-recent"


@dataclass(frozen=True, slots=True)
class HistoryParams:
    """Which versions a key-history proof covers: all (:meth:`complete`) or the ``n`` most
    recent (:meth:`most_recent`)."""

    kind: _HistoryKind
    count: int = 0

    @staticmethod
    def complete() -> HistoryParams:
        return HistoryParams(_HistoryKind.COMPLETE)

    @staticmethod
    def most_recent(count: int) -> HistoryParams:
        if count < 1:
            from securemsg.errors import UsageError

            raise UsageError("most_recent needs a count of at least 1")
        return HistoryParams(_HistoryKind.MOST_RECENT, count)

    @property
    def is_complete(self) -> bool:
        return self.kind is _HistoryKind.COMPLETE
