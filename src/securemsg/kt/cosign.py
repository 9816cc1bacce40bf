"""Auditor cosignatures of epoch heads.

An auditor that verified the append-only proofs up to an epoch signs that epoch's head with
its own Ed25519 key over ``b"securemsg-kt-cosign-v1\\x00" || head`` (the 80-byte head
encoding of :mod:`securemsg.kt.heads`). The relay stores cosignatures and serves them with
the heads; a client configured with auditor keys and a threshold ``k`` accepts a head only
when ``k`` distinct configured auditors cosigned it (:func:`count_cosignatures`).
"""

from __future__ import annotations

from collections.abc import Iterable

from securemsg.crypto.kt_primitives import Ed25519SigningKey, ed25519_verify
from securemsg.kt.heads import EpochHead

__all__ = ["COSIGN_DOMAIN", "cosign_head", "count_cosignatures", "verify_cosignature"]

COSIGN_DOMAIN = b"securemsg-kt-cosign-v1\x00"


def cosign_head(auditor_key: Ed25519SigningKey, head: EpochHead) -> bytes:
    """The auditor's 64-byte cosignature of ``head``."""
    return auditor_key.sign(COSIGN_DOMAIN + head.to_bytes())


def verify_cosignature(auditor_public_key: bytes, head: EpochHead, signature: bytes) -> bool:
    """True when ``signature`` is the auditor's cosignature of ``head``."""
    return ed25519_verify(auditor_public_key, COSIGN_DOMAIN + head.to_bytes(), signature)


def count_cosignatures(
    head: EpochHead, cosignatures: Iterable[tuple[bytes, bytes]], auditors: Iterable[bytes]
) -> int:
    """How many distinct keys of ``auditors`` validly cosigned ``head`` among the
    (auditor key, signature) pairs of ``cosignatures``."""
    wanted = {bytes(a) for a in auditors}
    valid: set[bytes] = set()
    for key, signature in cosignatures:
        if key in wanted and key not in valid and verify_cosignature(key, head, signature):
            valid.add(key)
    return len(valid)
