"""Shared helpers for the SPQR tests: an independent HKDF and a two-party link simulator."""

from __future__ import annotations

import hashlib
import hmac
import random
from dataclasses import dataclass, field

from securemsg.crypto.rng import DeterministicRng
from securemsg.protocol.spqr import (
    SpqrDirection,
    SpqrState,
    spqr_initial_state,
    spqr_recv,
    spqr_send,
)

AUTH_KEY = bytes(range(32))


def hkdf(ikm: bytes, salt: bytes | None, info: bytes, length: int) -> bytes:
    """RFC 5869 written out (independent of securemsg.crypto.primitives)."""
    prk = hmac.new(salt if salt is not None else bytes(32), ikm, hashlib.sha256).digest()
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes((i,)), hashlib.sha256).digest()
        out += block
        i += 1
    return out[:length]


@dataclass
class Party:
    state: SpqrState
    sent_keys: dict[bytes, bytes | None] = field(default_factory=dict)


@dataclass
class Pair:
    """A and B over two in-flight queues; every delivered key is checked against the sender's."""

    a: Party
    b: Party
    rng: DeterministicRng
    restart: bool = False
    types_seen: set[int] = field(default_factory=set)
    states_seen: set[str] = field(default_factory=set)
    in_flight: dict[str, list[tuple[bytes, bytes]]] = field(
        default_factory=lambda: {"A": [], "B": []}
    )

    @classmethod
    def new(cls, seed: bytes = b"pair", restart: bool = False) -> Pair:
        a = spqr_initial_state(AUTH_KEY, SpqrDirection.A2B)
        b = spqr_initial_state(AUTH_KEY, SpqrDirection.B2A)
        return cls(Party(a), Party(b), DeterministicRng(seed), restart)

    def party(self, who: str) -> Party:
        return self.a if who == "A" else self.b

    def _note(self, p: Party) -> None:
        self.states_seen.add(p.state.state_name)
        if self.restart:
            again = SpqrState.from_bytes(p.state.to_bytes())
            assert again.to_bytes() == p.state.to_bytes()
            p.state = again

    def send(self, who: str) -> bytes:
        p = self.party(who)
        p.state, msg, key = spqr_send(p.state, self.rng)
        assert len(key) == 32
        self.types_seen.add(msg[3] if msg[1] < 128 and msg[2] < 128 else -1)
        self.in_flight[who].append((msg, key))
        self._note(p)
        return msg

    def deliver(self, who: str, pos: int = 0) -> None:
        """Deliver the message at ``pos`` of ``who``'s outgoing queue to the other party."""
        msg, key = self.in_flight[who].pop(pos)
        other = self.party("B" if who == "A" else "A")
        other.state, got = spqr_recv(other.state, msg)
        assert got == key
        self._note(other)

    def drop(self, who: str, pos: int = 0) -> None:
        self.in_flight[who].pop(pos)


def random_schedule(pair: Pair, steps: int, rnd: random.Random, loss: float = 0.1) -> None:
    """Bursts, reordering and loss in both directions."""
    for _ in range(steps):
        who = rnd.choice("AB")
        for _ in range(rnd.randint(1, 4)):
            pair.send(who)
        for side in "AB":
            q = pair.in_flight[side]
            while q and rnd.random() < 0.7:
                pos = rnd.randrange(len(q))
                if rnd.random() < loss:
                    pair.drop(side, pos)
                else:
                    pair.deliver(side, pos)
