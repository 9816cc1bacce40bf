"""Results and parameters of key-transparency verification.

The proof classes themselves (``LookupProof``, ``HistoryProof``, ...) are wire objects and live
in :mod:`securemsg.relay_protocol.akd` with their strict codec; they are re-exported here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from securemsg.relay_protocol.akd import (
    AppendOnlyProof,
    AzksElement,
    HistoryProof,
    LookupProof,
    MembershipProof,
    NodeLabel,
    NonMembershipProof,
    SiblingProof,
    SingleAppendOnlyProof,
    UpdateProof,
)

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
