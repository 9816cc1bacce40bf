"""The SPQR symmetric chain: per-epoch send/receive key chains (SPQR ``src/chain.rs``).

Theory of operation: the chain holds one *link* per SCKA epoch still in use (oldest first).
Each link has a send half and a receive half; a half is a KDF chain ``{ctr, next, history}``:

* Start: ``g = HKDF(0, auth_key, "Signal PQ Ratchet V1 Chain  Start", 96)`` (two spaces);
  ``next_root = g[0:32]``, link 0 with the A2B half ``g[32:64]`` and the B2A half ``g[64:96]``.
* Add Epoch e: ``g = HKDF(next_root, secret_e, "Signal PQ Ratchet V1 Chain Add Epoch", 96)``;
  same split; link e appended.
* Step: ``ctr += 1; o = HKDF(0, next, BE32(ctr) || "Signal PQ Ratchet V1 Chain Next", 64)``;
  ``next = o[:32]``, key(ctr) = ``o[32:]``.

Sending with key epoch k moves ``send_epoch`` to k, drops every link older than k-1 and wipes
the send halves of the kept older links. Receiving never drops links; skipped keys are kept
while their index >= (highest derived index) - max_ooo_keys.

Every object here is immutable: each operation returns a new :class:`Chain` sharing the
unchanged halves, links and histories (histories are dicts never mutated once built).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from securemsg.crypto.primitives import hkdf_sha256
from securemsg.errors import InternalError, InvalidMessageError

__all__ = ["Chain", "ChainHalf", "ChainLink"]

_START: Final = b"Signal PQ Ratchet V1 Chain  Start"
_NEXT: Final = b"Signal PQ Ratchet V1 Chain Next"
_ADD_EPOCH: Final = b"Signal PQ Ratchet V1 Chain Add Epoch"
_U32_MAX: Final = 0xFFFFFFFF
_EMPTY: Final[Mapping[int, bytes]] = {}
#: Links kept before the current send epoch.
_EPOCHS_KEPT_BEFORE_SEND: Final = 1


def _step(next_key: bytes, ctr: int) -> tuple[bytes, bytes]:
    """One chain step to index ``ctr``: returns (new next, key(ctr))."""
    o = hkdf_sha256(next_key, None, ctr.to_bytes(4, "big") + _NEXT, 64)
    return o[:32], o[32:]


class ChainHalf:
    """One direction of one epoch: counter, next chain key, skipped keys (index -> key)."""

    __slots__ = ("ctr", "history", "next")

    ctr: int
    next: bytes
    history: Mapping[int, bytes]

    def __init__(self, ctr: int, next: bytes, history: Mapping[int, bytes] = _EMPTY) -> None:
        self.ctr = ctr
        self.next = next
        self.history = history

    def __repr__(self) -> str:
        return f"ChainHalf(ctr={self.ctr}, wiped={not self.next}, history={len(self.history)})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChainHalf):
            return NotImplemented
        return (
            self.ctr == other.ctr
            and self.next == other.next
            and dict(self.history) == dict(other.history)
        )

    __hash__ = None  # type: ignore[assignment]

    def next_key(self) -> tuple[ChainHalf, int, bytes]:
        """Step once (sending). Returns (new half, index, key)."""
        if not self.next or self.ctr >= _U32_MAX:
            raise InternalError("SPQR send chain exhausted or wiped")
        ctr = self.ctr + 1
        nxt, key = _step(self.next, ctr)
        return ChainHalf(ctr, nxt, self.history), ctr, key

    def key_at(self, at: int, max_jump: int, max_ooo: int) -> tuple[ChainHalf, bytes]:
        """The receive key for index ``at`` (SPQR ``src/chain.rs``).

        Raises:
            InvalidMessageError: already requested, trimmed, too far ahead, or wiped half.
        """
        ctr = self.ctr
        nxt = self.next
        if at == ctr + 1 and nxt:  # the usual case: the next key in order (checks below pass)
            nxt, key = _step(nxt, at)
            return ChainHalf(at, nxt, self.history), key
        if at == ctr:
            raise InvalidMessageError("SPQR: key already requested")
        if at < ctr:
            if at + max_ooo < ctr:
                raise InvalidMessageError("SPQR: key trimmed")
            old_key = self.history.get(at)
            if old_key is None:
                raise InvalidMessageError("SPQR: key already requested")
            remaining = dict(self.history)
            del remaining[at]
            return ChainHalf(ctr, nxt, remaining), old_key
        if at - ctr > max_jump:
            raise InvalidMessageError("SPQR: key jump too large")
        if not nxt:
            raise InvalidMessageError("SPQR: chain wiped")
        hist: dict[int, bytes] = {} if at > ctr + max_ooo else dict(self.history)
        lowest_kept = at - max_ooo
        while ctr + 1 < at:
            ctr += 1
            nxt, key = _step(nxt, ctr)
            if ctr >= lowest_kept:
                hist[ctr] = key
        if len(hist) >= (max_ooo * 11) // 10 + 1:
            horizon = ctr - max_ooo
            hist = {i: k for i, k in hist.items() if i >= horizon}
        nxt, key = _step(nxt, at)
        return ChainHalf(at, nxt, hist), key

    def wiped(self) -> ChainHalf:
        return ChainHalf(self.ctr, b"", self.history)


class ChainLink:
    """The two halves of one epoch."""

    __slots__ = ("recv", "send")

    send: ChainHalf
    recv: ChainHalf

    def __init__(self, send: ChainHalf, recv: ChainHalf) -> None:
        self.send = send
        self.recv = recv

    def __repr__(self) -> str:
        return f"ChainLink(send={self.send!r}, recv={self.recv!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ChainLink):
            return NotImplemented
        return self.send == other.send and self.recv == other.recv

    __hash__ = None  # type: ignore[assignment]


def _link_from(g: bytes, a2b: bool) -> ChainLink:
    a, b = ChainHalf(0, g[32:64]), ChainHalf(0, g[64:96])
    return ChainLink(a, b) if a2b else ChainLink(b, a)


class Chain:
    """The whole SPQR chain (immutable; see the module docstring).

    Attributes:
        a2b: True for the session initiator (sends on the A2B halves).
        current_epoch: the newest epoch added.
        send_epoch: the key epoch last used for sending.
        next_root: the root for the next Add Epoch (secret).
        links: links for epochs ``current_epoch - len(links) + 1 .. current_epoch``.
        max_jump, max_ooo: limits of the receive halves.
    """

    __slots__ = ("a2b", "current_epoch", "links", "max_jump", "max_ooo", "next_root", "send_epoch")

    a2b: bool
    current_epoch: int
    send_epoch: int
    next_root: bytes
    links: tuple[ChainLink, ...]
    max_jump: int
    max_ooo: int

    def __init__(
        self,
        a2b: bool,
        current_epoch: int,
        send_epoch: int,
        next_root: bytes,
        links: tuple[ChainLink, ...],
        max_jump: int,
        max_ooo: int,
    ) -> None:
        self.a2b = a2b
        self.current_epoch = current_epoch
        self.send_epoch = send_epoch
        self.next_root = next_root
        self.links = links
        self.max_jump = max_jump
        self.max_ooo = max_ooo

    def __repr__(self) -> str:
        return (
            f"Chain(a2b={self.a2b}, current_epoch={self.current_epoch}, "
            f"send_epoch={self.send_epoch}, links={len(self.links)})"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Chain):
            return NotImplemented
        return (
            self.a2b == other.a2b
            and self.current_epoch == other.current_epoch
            and self.send_epoch == other.send_epoch
            and self.next_root == other.next_root
            and self.links == other.links
            and self.max_jump == other.max_jump
            and self.max_ooo == other.max_ooo
        )

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def start(cls, auth_key: bytes, a2b: bool, max_jump: int, max_ooo: int) -> Chain:
        """Chain Start from the PQXDH ``auth_key``."""
        g = hkdf_sha256(auth_key, None, _START, 96)
        return cls(a2b, 0, 0, g[:32], (_link_from(g, a2b),), max_jump, max_ooo)

    def _replace_link(self, pos: int, link: ChainLink) -> tuple[ChainLink, ...]:
        links = self.links
        if pos == len(links) - 1:
            return (*links[:-1], link)
        return (*links[:pos], link, *links[pos + 1 :])

    def add_epoch(self, epoch: int, secret: bytes) -> Chain:
        """Add Epoch ``epoch`` (must be ``current_epoch + 1``)."""
        if epoch != self.current_epoch + 1:
            raise InternalError("SPQR chain: epochs must be added in order")
        g = hkdf_sha256(secret, self.next_root, _ADD_EPOCH, 96)
        return Chain(
            self.a2b,
            epoch,
            self.send_epoch,
            g[:32],
            (*self.links, _link_from(g, self.a2b)),
            self.max_jump,
            self.max_ooo,
        )

    def _position(self, epoch: int) -> int | None:
        if epoch > self.current_epoch:
            return None
        back = self.current_epoch - epoch
        n = len(self.links)
        if back >= n:
            return None
        return n - 1 - back

    def send_key(self, epoch: int) -> tuple[Chain, int, bytes]:
        """The next send key of key epoch ``epoch``: returns (new chain, index, key).

        Raises:
            InternalError: the epoch went backwards or is not held (cannot happen through
                the braid, which only moves forward).
        """
        links = self.links
        if epoch == self.send_epoch and epoch == self.current_epoch:
            # Fast path (almost every message): sending on the newest link, nothing to drop.
            link = links[-1]
            half, index, key = link.send.next_key()
            return (
                Chain(
                    self.a2b,
                    epoch,
                    epoch,
                    self.next_root,
                    (*links[:-1], ChainLink(half, link.recv)),
                    self.max_jump,
                    self.max_ooo,
                ),
                index,
                key,
            )
        pos = self._position(epoch)
        if epoch < self.send_epoch or pos is None:
            raise InternalError("SPQR chain: send epoch not available")
        if epoch != self.send_epoch:
            drop = max(0, pos - _EPOCHS_KEPT_BEFORE_SEND)
            links = tuple(
                ChainLink(lk.send.wiped(), lk.recv) if i < pos - drop else lk
                for i, lk in enumerate(links[drop:])
            )
            pos -= drop
        link = links[pos]
        half, index, key = link.send.next_key()
        new_link = ChainLink(half, link.recv)
        if pos == len(links) - 1:
            new_links = (*links[:-1], new_link)
        else:
            new_links = (*links[:pos], new_link, *links[pos + 1 :])
        return (
            Chain(
                self.a2b,
                self.current_epoch,
                epoch,
                self.next_root,
                new_links,
                self.max_jump,
                self.max_ooo,
            ),
            index,
            key,
        )

    def recv_key(self, epoch: int, index: int) -> tuple[Chain, bytes]:
        """The receive key for (key epoch, index).

        Raises:
            InvalidMessageError: epoch not held, key already requested, trimmed, or a jump
                larger than ``max_jump``.
        """
        # The newest epoch is the usual case (key_at's own fast path takes the next index).
        pos = len(self.links) - 1 if epoch == self.current_epoch else self._position(epoch)
        if pos is None:
            raise InvalidMessageError("SPQR: epoch out of range")
        link = self.links[pos]
        half, key = link.recv.key_at(index, self.max_jump, self.max_ooo)
        return (
            Chain(
                self.a2b,
                self.current_epoch,
                self.send_epoch,
                self.next_root,
                self._replace_link(pos, ChainLink(link.send, half)),
                self.max_jump,
                self.max_ooo,
            ),
            key,
        )
