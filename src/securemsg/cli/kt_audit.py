"""The ``kt audit`` command's work: audit a relay's key-transparency directory.

Theory of operation
-------------------
An auditor checks that the relay's directory only ever grew: for every pair of consecutive
epochs from ``--from`` on, the relay's append-only proof must lead from one epoch's root to the
next (:func:`securemsg.kt.verify.audit_verify`), and the signed heads carrying those roots must
form one hash chain signed by the directory's head key
(:class:`~securemsg.kt.heads.HeadChainVerifier`). The auditor reads either a running relay
(:func:`audit_relay`, over the relay protocol with no account: ``KtGetKeys``, ``KtGetHeads``,
``KtAppendOnly``) or the relay's database (:func:`audit_db`). With an auditor key it then
cosigns every head it verified (``KtCosign``; into the database with ``--db``), so clients
that require auditor cosignatures accept them. The relay stores and serves only the
cosignatures of the auditors it is configured with (``relay serve --kt-auditor-key``): it
refuses any other key's ``KtCosign`` (FORBIDDEN), and one written with ``--db`` for a key it
is not configured with stays unserved.

The head key is taken from the relay (or database) unless the caller pins one
(``head_key``); when ``from_epoch`` is above 0 the head of that epoch is taken on trust.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from securemsg.client.connection import RelayConnection
from securemsg.crypto.ecvrf import VrfPrivateKey
from securemsg.crypto.kt_primitives import Ed25519SigningKey
from securemsg.errors import KeyTransparencyHeadError, RelayError, UsageError
from securemsg.kt.config import EMPTY_ROOT_VALUE, root_hash_from_value
from securemsg.kt.cosign import cosign_head
from securemsg.kt.directory import Directory
from securemsg.kt.heads import HeadChainVerifier, SignedEpochHead
from securemsg.kt.verify import audit_verify
from securemsg.relay.kt_store import SqliteKtStore
from securemsg.relay.store import SqliteRelayStore
from securemsg.relay_protocol import frames as rf
from securemsg.relay_protocol.akd import decode_append_only_proof, encode_append_only_proof

__all__ = ["AuditReport", "audit_db", "audit_relay", "load_auditor_key"]

#: Most KtGetHeads pages one audit reads (256 heads each).
_MAX_PAGES = 1 << 16


@dataclass(frozen=True, slots=True)
class AuditReport:
    """What an audit verified.

    Attributes:
        from_epoch: the first epoch of the verified range (its root was the starting point).
        to_epoch: the last epoch verified (the directory's latest).
        head_key: the head-signing public key the chain was verified with (hex).
        cosigned: how many heads were cosigned.
    """

    from_epoch: int
    to_epoch: int
    head_key: str
    cosigned: int

    def summary(self) -> str:
        """One paragraph for the command line."""
        steps = self.to_epoch - self.from_epoch
        text = (
            f"verified epochs {self.from_epoch}..{self.to_epoch}: {steps} append-only "
            f"step(s) and the signed head chain (head key {self.head_key})"
        )
        if self.cosigned:
            text += f"; cosigned {self.cosigned} head(s)"
        return text


def load_auditor_key(path: str | os.PathLike[str]) -> Ed25519SigningKey:
    """The auditor's Ed25519 key from ``path`` (64 hex characters, its seed); a new key is
    created there (mode 0600) if the file does not exist.

    An existing file must be ours and private, as ssh asks of its keys: a link, a file of
    another user or one that group or others may read or write is refused (a planted or
    readable seed would let someone else cosign as this auditor).

    Raises:
        UsageError: the file does not hold 64 hex characters, or is not private.
        OSError: the file cannot be read or created.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        fd = -1
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UsageError("the auditor key file is a symbolic link; refusing it") from None
        raise
    if fd >= 0:
        with os.fdopen(fd, encoding="ascii") as f:
            st = os.fstat(f.fileno())
            if st.st_uid != os.geteuid() or st.st_mode & 0o077:
                raise UsageError(
                    "the auditor key file must belong to you and be readable by you only "
                    "(chmod 600)"
                )
            text = f.read(200).strip()
    else:
        seed = os.urandom(32)
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600
        )
        with os.fdopen(fd, "w", encoding="ascii") as f:
            f.write(seed.hex() + "\n")
        return Ed25519SigningKey(seed)
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        raise UsageError("the auditor key file must hold 64 hex characters") from None
    if len(seed) != 32:
        raise UsageError("the auditor key file must hold 64 hex characters")
    return Ed25519SigningKey(seed)


def _verify(
    head_key: bytes,
    heads: Sequence[SignedEpochHead],
    from_epoch: int,
    proof_of: Callable[[int], bytes],
) -> None:
    """Check the chain of ``heads`` (epochs ``from_epoch`` or ``from_epoch + 1`` on) and the
    append-only proof of every step."""
    if from_epoch == 0:
        verifier = HeadChainVerifier(head_key)
        start_root = root_hash_from_value(EMPTY_ROOT_VALUE)
        chain = list(heads)
    else:
        if not heads or heads[0].head.epoch != from_epoch:
            raise KeyTransparencyHeadError("the starting head is missing", "chain")
        verifier = HeadChainVerifier(head_key, heads[0])
        start_root = heads[0].head.root_hash
        chain = list(heads[1:])
    verifier.advance(chain)
    previous = start_root
    for signed in chain:
        epoch = signed.head.epoch
        proof = decode_append_only_proof(proof_of(epoch - 1))
        audit_verify([previous, signed.head.root_hash], proof)
        previous = signed.head.root_hash


async def audit_relay(
    url: str,
    *,
    from_epoch: int = 0,
    auditor_key: Ed25519SigningKey | None = None,
    head_key: bytes | None = None,
) -> AuditReport:
    """Audit the directory of the relay at ``url`` (see the module docstring).

    Raises:
        KeyTransparencyError: a head, the chain or an append-only proof does not verify.
        RelayError: the relay refused or is unreachable.
        UsageError: ``from_epoch`` is negative or past the latest epoch.
    """
    if from_epoch < 0:
        raise UsageError("--from must be at least 0")
    conn = await RelayConnection.open(url)
    try:
        keys = (await conn.request(rf.KtGetKeys())).body
        if not isinstance(keys, rf.KtKeys):
            raise RelayError("relay sent no key-transparency keys", int(rf.StatusCode.INTERNAL))
        if head_key is not None and head_key != keys.head_public_key:
            raise KeyTransparencyHeadError("the relay's head key is not the pinned one", "keys")
        key = keys.head_public_key
        heads: list[SignedEpochHead] = []
        since = max(0, from_epoch - 1)
        for _ in range(_MAX_PAGES):
            body = (await conn.request(rf.KtGetHeads(since))).body
            if not isinstance(body, rf.KtHeads):
                raise RelayError("relay sent no heads", int(rf.StatusCode.INTERNAL))
            page = [SignedEpochHead.from_bytes(h.signed_head) for h in body.heads]
            heads.extend(page)
            if not page or page[-1].head.epoch >= body.latest_epoch:
                break
            since = page[-1].head.epoch
        if from_epoch and (not heads or heads[0].head.epoch != from_epoch):
            raise UsageError("--from names an epoch the relay has not published")
        proofs: dict[int, bytes] = {}
        first = from_epoch
        for start in range(first, heads[-1].head.epoch if heads else 0):
            body2 = (await conn.request(rf.KtAppendOnly(start, start + 1))).body
            if not isinstance(body2, rf.KtAppendOnlyResult):
                raise RelayError("relay sent no append-only proof", int(rf.StatusCode.INTERNAL))
            proofs[start] = body2.proof
        _verify(key, heads, from_epoch, lambda e: proofs[e])
        cosigned = 0
        if auditor_key is not None:
            for signed in heads:
                if signed.head.epoch <= from_epoch and from_epoch:
                    continue
                signature = cosign_head(auditor_key, signed.head)
                await conn.request(
                    rf.KtCosign(signed.head.epoch, auditor_key.public_key, signature)
                )
                cosigned += 1
        latest = heads[-1].head.epoch if heads else from_epoch
        return AuditReport(from_epoch, latest, key.hex(), cosigned)
    finally:
        await conn.close()


def audit_db(
    db: str | os.PathLike[str],
    *,
    from_epoch: int = 0,
    auditor_key: Ed25519SigningKey | None = None,
    head_key: bytes | None = None,
) -> AuditReport:
    """Audit the directory in the relay database ``db`` (the relay may be stopped); with
    ``auditor_key``, store the cosignatures in it.

    Raises:
        KeyTransparencyError: a head, the chain or an append-only proof does not verify.
        StorageError: the database cannot be opened or read.
        UsageError: ``from_epoch`` is negative or past the latest epoch.
    """
    if from_epoch < 0:
        raise UsageError("--from must be at least 0")
    store = SqliteRelayStore.open(db)
    try:
        kt = SqliteKtStore(store)
        stored = kt.keys()
        if stored is None:
            raise UsageError("the database holds no key-transparency directory yet")
        vrf_seed, head_seed = stored
        key = Ed25519SigningKey(head_seed).public_key
        if head_key is not None and head_key != key:
            raise KeyTransparencyHeadError("the database's head key is not the pinned one", "keys")
        directory = Directory(VrfPrivateKey(vrf_seed), kt)
        latest = directory.epoch
        if from_epoch > latest:
            raise UsageError("--from names an epoch the relay has not published")
        raw = kt.signed_heads(max(0, from_epoch - 1), latest + 1)
        heads = [SignedEpochHead.from_bytes(h) for h in raw]

        def proof_of(epoch: int) -> bytes:
            return encode_append_only_proof(directory.append_only_proof(epoch, epoch + 1))

        _verify(key, heads, from_epoch, proof_of)
        cosigned = 0
        if auditor_key is not None:
            for signed in heads:
                if from_epoch and signed.head.epoch <= from_epoch:
                    continue
                kt.add_cosignature(
                    signed.head.epoch,
                    auditor_key.public_key,
                    cosign_head(auditor_key, signed.head),
                )
                cosigned += 1
        return AuditReport(from_epoch, latest, key.hex(), cosigned)
    finally:
        store.close()
