"""Key transparency: an AKD ``whatsapp_v1`` directory and its verifiers (sans-IO).

- :mod:`securemsg.kt.directory` - the append-only directory (publish epochs, serve lookup,
  key-history and append-only proofs) over a small storage protocol;
- :mod:`securemsg.kt.verify` - client and auditor verification of those proofs;
- :mod:`securemsg.kt.heads` - signed, hash-chained epoch heads and a fork/rollback-refusing
  chain verifier;
- :mod:`securemsg.kt.config` - the configuration's hashes and marker versions.

The VRF (ECVRF-EDWARDS25519-SHA512-TAI, RFC 9381) is :mod:`securemsg.crypto.ecvrf` and the
proof codec is :mod:`securemsg.relay_protocol.akd` (the layering keeps crypto libraries and
generated protobuf code in those packages). Byte formats: docs/key-transparency.md.
Not here: the relay's directory service (:mod:`securemsg.relay.kt`) and the client's monitor
(:mod:`securemsg.client.kt`).
"""

from __future__ import annotations

from securemsg.crypto.ecvrf import VrfPrivateKey, VrfPublicKey
from securemsg.kt.directory import Directory, InMemoryKtStore, KtStore, PublishedEpoch
from securemsg.kt.heads import EpochHead, HeadChainVerifier, SignedEpochHead, sign_epoch_head
from securemsg.kt.types import HistoryParams, VerifyResult
from securemsg.kt.verify import audit_verify, verify_append_only, verify_history, verify_lookup

__all__ = [
    "Directory",
    "EpochHead",
    "HeadChainVerifier",
    "HistoryParams",
    "InMemoryKtStore",
    "KtStore",
    "PublishedEpoch",
    "SignedEpochHead",
    "VerifyResult",
    "VrfPrivateKey",
    "VrfPublicKey",
    "audit_verify",
    "sign_epoch_head",
    "verify_append_only",
    "verify_history",
    "verify_lookup",
]
