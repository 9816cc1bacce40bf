"""SPQR v1: the sparse post-quantum ratchet of the triple ratchet (libsignal 0.103.0).

Theory of operation: an :class:`SpqrState` is the pair (braid, chain). The *braid*
(:mod:`.braid`) is the ML-KEM-768 state machine that, spread over many messages in
erasure-coded 32-byte chunks, agrees a fresh secret per epoch; the *chain* (:mod:`.chain`)
turns the PQXDH ``auth_key`` and those epoch secrets into one 32-byte key per message. The
Double Ratchet calls exactly four functions and never learns braid details:

* :func:`spqr_initial_state` after PQXDH (``auth_key`` = okm[64:96]);
* :func:`spqr_send` once per encrypted message -> ``pq_ratchet`` bytes and the message key
  (the HKDF salt of the Double Ratchet message keys);
* :func:`spqr_recv` once per decrypted message -> the key (None only for epoch 1, index 0);
* :meth:`SpqrState.to_bytes` / :meth:`SpqrState.from_bytes` for the session record.

Per message (the SparsePostQuantumRatchet crate, ``src/chain.rs``)::

    send:  (braid', payload, secret?) = braid.send();  chain += secret;
           (index, key) = chain.send_key(epoch - 1);  bytes = 0x01 || epoch || index || payload
    recv:  parse; (braid', secret?) = braid.recv(msg);  chain += secret;
           key = chain.recv_key(msg.epoch - 1, msg.key_index)

Value semantics: states are immutable; send/recv return new states sharing unchanged parts,
so the caller can compute, verify the MAC, and only then commit. What this module does not
know: message counters of the Double Ratchet, sessions, stores.
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

from securemsg.errors import DecodeError, UsageError
from securemsg.limits import DEFAULT_LIMITS, Limits
from securemsg.protocol.spqr.braid import BraidState, braid_from_record, initial_braid
from securemsg.protocol.spqr.chain import Chain, ChainHalf, ChainLink
from securemsg.protocol.spqr.message import decode_message, encode_message
from securemsg.records.spqr_state import (
    ChainRecord,
    HalfRecord,
    LinkRecord,
    SpqrStateRecord,
    decode_spqr_state,
    encode_spqr_state,
)

if TYPE_CHECKING:
    from securemsg.crypto.rng import Rng

__all__ = ["SpqrDirection", "SpqrState", "spqr_initial_state", "spqr_recv", "spqr_send"]

_U32_MAX = 0xFFFFFFFF


class SpqrDirection(IntEnum):
    """Which side of the session: A2B = PQXDH initiator, B2A = recipient."""

    A2B = 0
    B2A = 1


class SpqrState:
    """One session's SPQR state (immutable; ``repr`` shows no secrets).

    Attributes:
        braid: the braid (SCKA) state object.
        chain: the symmetric chain.
    """

    __slots__ = ("braid", "chain")

    braid: BraidState
    chain: Chain

    def __init__(self, braid: BraidState, chain: Chain) -> None:
        self.braid = braid
        self.chain = chain

    @property
    def epoch(self) -> int:
        """The current SCKA (braid) epoch."""
        return self.braid.epoch

    @property
    def state_name(self) -> str:
        """The braid state, e.g. ``"keys_unsampled"`` (libsignal's V1State field names)."""
        return self.braid.NAME

    @property
    def direction(self) -> SpqrDirection:
        return SpqrDirection.A2B if self.chain.a2b else SpqrDirection.B2A

    def __repr__(self) -> str:
        return (
            f"SpqrState(direction={self.direction.name}, epoch={self.epoch}, "
            f"state={self.state_name}, chain_epoch={self.chain.current_epoch})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SpqrState):
            return NotImplemented
        return self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]

    def to_bytes(self) -> bytes:
        """The stored form (``proto/pq_ratchet.proto``, record version 1)."""
        c = self.chain
        links = tuple(LinkRecord(_half_rec(lk.send), _half_rec(lk.recv)) for lk in c.links)
        chain = ChainRecord(
            c.a2b, c.current_epoch, c.send_epoch, c.next_root, links, c.max_jump, c.max_ooo
        )
        return encode_spqr_state(SpqrStateRecord(chain, self.braid.to_record()))

    @classmethod
    def from_bytes(cls, data: bytes) -> SpqrState:
        """Inverse of :meth:`to_bytes`.

        Raises:
            DecodeError: not a stored SPQR state of a version we read, or inconsistent.
        """
        rec = decode_spqr_state(data)
        braid = braid_from_record(rec.braid)
        c = rec.chain
        if len(c.next_root) != 32 or not c.links or c.max_jump < 1 or c.max_ooo_keys < 1:
            raise DecodeError("SPQR state: bad chain")
        if c.send_epoch > c.current_epoch or len(c.links) > c.current_epoch + 1:
            raise DecodeError("SPQR state: bad chain epochs")
        if c.current_epoch not in (braid.epoch - 1, braid.epoch):
            raise DecodeError("SPQR state: chain and braid epochs disagree")
        links = tuple(ChainLink(_half(lk.send), _half(lk.recv)) for lk in c.links)
        chain = Chain(
            c.a2b, c.current_epoch, c.send_epoch, c.next_root, links, c.max_jump, c.max_ooo_keys
        )
        return cls(braid, chain)


def _half_rec(h: ChainHalf) -> HalfRecord:
    hist = b"".join(i.to_bytes(4, "big") + k for i, k in h.history.items())
    return HalfRecord(h.ctr, h.next, hist)


def _half(h: HalfRecord) -> ChainHalf:
    if h.next and len(h.next) != 32:
        raise DecodeError("SPQR state: bad chain key")
    raw = h.history
    if len(raw) % 36:
        raise DecodeError("SPQR state: bad key history")
    hist = {
        int.from_bytes(raw[i : i + 4], "big"): raw[i + 4 : i + 36] for i in range(0, len(raw), 36)
    }
    return ChainHalf(h.ctr, h.next, hist)


def spqr_initial_state(
    auth_key: bytes,
    direction: SpqrDirection,
    *,
    limits: Limits = DEFAULT_LIMITS,
    self_session: bool = False,
) -> SpqrState:
    """The state right after PQXDH.

    Args:
        auth_key: PQXDH ``okm[64:96]`` (32 bytes).
        direction: A2B for the initiator, B2A for the recipient.
        limits: ``spqr_max_jump`` / ``spqr_max_ooo_keys`` are used.
        self_session: a session with oneself: no jump limit (libsignal uses u32::MAX).

    Raises:
        UsageError: ``auth_key`` is not 32 bytes, or limits out of range.
    """
    if not isinstance(auth_key, bytes | bytearray) or len(auth_key) != 32:
        raise UsageError("SPQR auth_key must be 32 bytes")
    max_jump = _U32_MAX if self_session else limits.spqr_max_jump
    max_ooo = limits.spqr_max_ooo_keys
    if not (1 <= max_jump <= _U32_MAX and 1 <= max_ooo <= 100_000_000):
        raise UsageError("SPQR limits out of range")
    auth_key = bytes(auth_key)
    a2b = SpqrDirection(direction) is SpqrDirection.A2B
    chain = Chain.start(auth_key, a2b, max_jump, max_ooo)
    return SpqrState(initial_braid(auth_key, a2b), chain)


def spqr_send(state: SpqrState, rng: Rng) -> tuple[SpqrState, bytes, bytes]:
    """Advance for one outgoing message.

    Returns:
        (new state, ``pq_ratchet`` bytes for the SignalMessage, 32-byte message key).
    """
    epoch = state.braid.epoch
    braid, mtype, chunk_index, chunk, secret = state.braid.send(rng)
    chain = state.chain
    if secret is not None:
        chain = chain.add_epoch(secret[0], secret[1])
    chain, index, key = chain.send_key(epoch - 1)
    return SpqrState(braid, chain), encode_message(epoch, index, mtype, chunk_index, chunk), key


def spqr_recv(state: SpqrState, pq_ratchet: bytes) -> tuple[SpqrState, bytes | None]:
    """Advance for one incoming message (call on the MAC-covered ``pq_ratchet`` field).

    Returns:
        (new state, 32-byte message key, or None for epoch 1 / index 0).

    Raises:
        DecodeError: malformed framing (``UnsupportedVersionError`` for empty / not V1).
        InvalidMessageError: epoch out of range, MAC failure, ek not matching its header,
            key already requested / trimmed / too far ahead. ``state`` is unchanged.
    """
    msg = decode_message(pq_ratchet)
    braid, secret = state.braid.recv(msg)
    chain = state.chain
    if secret is not None:
        chain = chain.add_epoch(secret[0], secret[1])
    if msg.epoch == 1 and msg.key_index == 0:
        return SpqrState(braid, chain), None
    chain, key = chain.recv_key(msg.epoch - 1, msg.key_index)
    return SpqrState(braid, chain), key
