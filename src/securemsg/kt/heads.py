"""Signed, hash-chained epoch heads, and a verifier that refuses forks and rollbacks.

An epoch head is ``{epoch, root hash, time (ms since the Unix epoch), previous head hash}``,
encoded in 80 bytes::

    u64_be epoch || root hash (32) || u64_be time_ms || previous head hash (32)

signed with Ed25519 over ``b"securemsg-kt-epoch-head-v1/whatsapp_v1\\x00" || encoding`` by the
directory's head-signing key (its own key: not the VRF key, not the sender-certificate key).
A head's hash is ``BLAKE3(b"securemsg-kt-head-hash-v1\\x00" || encoding)``; epoch 1 names 32
zero bytes as its previous head. The domain strings name the trie configuration, so heads of a
future configuration can never be confused with these. See docs/key-transparency.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from securemsg.crypto.kt_primitives import Ed25519SigningKey, blake3_hash, ed25519_verify
from securemsg.errors import KeyTransparencyDecodeError, KeyTransparencyHeadError, UsageError

__all__ = [
    "GENESIS_PREVIOUS_HASH",
    "HEAD_LENGTH",
    "SIGNED_HEAD_LENGTH",
    "EpochHead",
    "HeadChainVerifier",
    "SignedEpochHead",
    "sign_epoch_head",
]

HEAD_LENGTH = 80
SIGNED_HEAD_LENGTH = HEAD_LENGTH + 64
GENESIS_PREVIOUS_HASH = bytes(32)
_SIGN_DOMAIN = b"securemsg-kt-epoch-head-v1/whatsapp_v1\x00"
_HASH_DOMAIN = b"securemsg-kt-head-hash-v1\x00"
_U64 = 1 << 64


@dataclass(frozen=True, slots=True)
class EpochHead:
    epoch: int
    root_hash: bytes
    time_ms: int
    previous_head_hash: bytes

    def __post_init__(self) -> None:
        if not 1 <= self.epoch < _U64 or not 0 <= self.time_ms < _U64:
            raise UsageError("epoch head: epoch or time out of range")
        if len(self.root_hash) != 32 or len(self.previous_head_hash) != 32:
            raise UsageError("epoch head: hashes are 32 bytes")

    def to_bytes(self) -> bytes:
        return (
            self.epoch.to_bytes(8, "big")
            + self.root_hash
            + self.time_ms.to_bytes(8, "big")
            + self.previous_head_hash
        )

    @staticmethod
    def from_bytes(data: bytes) -> EpochHead:
        if len(data) != HEAD_LENGTH:
            raise KeyTransparencyDecodeError("an epoch head is 80 bytes", "decode")
        epoch = int.from_bytes(data[:8], "big")
        if epoch == 0:
            raise KeyTransparencyDecodeError("an epoch head names epoch 0", "decode")
        return EpochHead(
            epoch, bytes(data[8:40]), int.from_bytes(data[40:48], "big"), bytes(data[48:80])
        )

    def hash(self) -> bytes:
        """The hash the next head names as its previous head."""
        return blake3_hash(_HASH_DOMAIN + self.to_bytes())

    @staticmethod
    def next_after(
        previous: EpochHead | None, epoch: int, root_hash: bytes, time_ms: int
    ) -> EpochHead:
        """The head of ``epoch`` chained to ``previous`` (None only for epoch 1)."""
        if previous is None:
            if epoch != 1:
                raise UsageError("only epoch 1 starts a head chain")
            return EpochHead(epoch, root_hash, time_ms, GENESIS_PREVIOUS_HASH)
        if epoch != previous.epoch + 1 or time_ms < previous.time_ms:
            raise UsageError("the next head must follow the previous one")
        return EpochHead(epoch, root_hash, time_ms, previous.hash())


@dataclass(frozen=True, slots=True)
class SignedEpochHead:
    head: EpochHead
    signature: bytes

    def to_bytes(self) -> bytes:
        return self.head.to_bytes() + self.signature

    @staticmethod
    def from_bytes(data: bytes) -> SignedEpochHead:
        if len(data) != SIGNED_HEAD_LENGTH:
            raise KeyTransparencyDecodeError("a signed epoch head is 144 bytes", "decode")
        return SignedEpochHead(EpochHead.from_bytes(data[:HEAD_LENGTH]), bytes(data[HEAD_LENGTH:]))

    def verify(self, public_key: bytes) -> None:
        """Raises KeyTransparencyHeadError (reason ``"signature"``) unless the signature by
        the head-signing key ``public_key`` (32 bytes) holds."""
        if not ed25519_verify(public_key, _SIGN_DOMAIN + self.head.to_bytes(), self.signature):
            raise KeyTransparencyHeadError("the epoch head signature does not verify", "signature")


def sign_epoch_head(signing_key: Ed25519SigningKey, head: EpochHead) -> SignedEpochHead:
    """Sign ``head`` with the directory's head-signing key."""
    return SignedEpochHead(head, signing_key.sign(_SIGN_DOMAIN + head.to_bytes()))


class HeadChainVerifier:
    """Accepts signed heads only when they extend the last accepted head (sans-IO).

    Start from a stored head (or None: the first head is then taken on trust, and must name
    the genesis hash if it is epoch 1). :meth:`advance` takes the heads after the stored one,
    in order, and refuses with :class:`~securemsg.errors.KeyTransparencyHeadError`:

    - ``"signature"``: a head not signed by the directory's key;
    - ``"rollback"``: a head older than the stored one;
    - ``"fork"``: a different head for an epoch already accepted, or a head whose previous
      hash does not name the head before it;
    - ``"chain"``: a gap in the epochs or time going backwards.

    A refusal changes nothing: the stored head stays :attr:`latest`.
    """

    def __init__(self, public_key: bytes, latest: SignedEpochHead | None = None) -> None:
        if len(public_key) != 32:
            raise UsageError("a head-signing public key is 32 bytes")
        self._key = bytes(public_key)
        if latest is not None:
            latest.verify(self._key)
        self._latest = latest

    @property
    def latest(self) -> SignedEpochHead | None:
        return self._latest

    def check_known(self, signed: SignedEpochHead) -> None:
        """Refuse a head for the stored head's epoch (or older) that is not the stored head:
        ``"fork"`` for the same epoch, ``"rollback"`` for an older one."""
        signed.verify(self._key)
        latest = self._latest
        if latest is None:
            return
        if signed.head.epoch < latest.head.epoch:
            raise KeyTransparencyHeadError("the head is older than the stored head", "rollback")
        if signed.head.epoch == latest.head.epoch and signed.head != latest.head:
            raise KeyTransparencyHeadError("two different heads for one epoch", "fork")

    def advance(self, heads: Sequence[SignedEpochHead]) -> SignedEpochHead | None:
        """Verify ``heads`` (consecutive, oldest first) and make the last one the stored head.

        A first element equal to the stored head is allowed and skipped. Returns the new
        stored head.
        """
        previous = self._latest
        items = list(heads)
        if previous is not None and items and items[0].head == previous.head:
            items = items[1:]
        for signed in items:
            signed.verify(self._key)
            head = signed.head
            if previous is None:
                if head.epoch == 1 and head.previous_head_hash != GENESIS_PREVIOUS_HASH:
                    raise KeyTransparencyHeadError("epoch 1 must start the chain", "fork")
            else:
                last = previous.head
                if head.epoch < last.epoch:
                    raise KeyTransparencyHeadError("a head goes back in epochs", "rollback")
                if head.epoch == last.epoch:
                    raise KeyTransparencyHeadError("two different heads for one epoch", "fork")
                if head.epoch != last.epoch + 1:
                    raise KeyTransparencyHeadError("the heads skip an epoch", "chain")
                if head.previous_head_hash != last.hash():
                    raise KeyTransparencyHeadError(
                        "the head does not chain to the previous head", "fork"
                    )
                if head.time_ms < last.time_ms:
                    raise KeyTransparencyHeadError("the head goes back in time", "chain")
            previous = signed
        self._latest = previous
        return previous
