"""Two securemsg parties over a link that reorders, drops and duplicates (Hypothesis state machine).

Alice starts a PQXDH session with Bob (a SQLite store that is also closed and reopened at random)
and both send whenever they can. Checked after every step:

* a delivered message decrypts to exactly what was sent, at most once; delivering it again
  raises DuplicateMessageError while its chain is still kept;
* a message the protocol *must* accept (no newer ratchet key of its sender already processed,
  its chain never had more than ``max_message_keys`` pending skipped keys, the counter jump
  within ``max_forward_jumps``) is accepted;
* every refused delivery raises a typed error and leaves the receiver's record byte-identical;
* stored skipped keys and receiver chains never exceed the (small) limits.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from securemsg import cipher
from securemsg.crypto.rng import DeterministicRng
from securemsg.errors import DuplicateMessageError, InvalidMessageError, MessageGapTooLargeError
from securemsg.limits import Limits
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.identity_and_prekeys import (
    IdentityKeyPair,
    KyberPreKeyRecord,
    PreKeyBundle,
    PreKeyRecord,
    SignedPreKeyRecord,
)
from securemsg.store.base import ProtocolStore
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.store.sqlite import SqliteProtocolStore
from securemsg.wire.messages import CiphertextMessageType, PreKeySignalMessage

LIMITS = Limits(max_forward_jumps=5, max_message_keys=3, max_receiver_chains=3)
NOW = 1_760_000_000_000
ADDRESSES = (
    ProtocolAddress("9d0652a3-dcc3-4d11-975f-74d61598733f", 1),
    ProtocolAddress("796abedb-ca4e-4f18-8803-1fde5b921f9f", 2),
)
REFUSALS = (DuplicateMessageError, InvalidMessageError, MessageGapTooLargeError)


@dataclass
class Sent:
    sender: int
    seq: int
    ratchet_key: bytes
    counter: int
    data: bytes
    mtype: CiphertextMessageType
    plaintext: bytes
    delivered: bool = False
    dropped: bool = False
    #: a skipped key of this message's chain may have been evicted (too many pending)
    overflow: bool = False


class Conversation(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="securemsg-sm-"))
        self.rngs = (DeterministicRng(b"sm-alice"), DeterministicRng(b"sm-bob"))
        alice_ik = IdentityKeyPair.generate(self.rngs[0])
        bob_ik = IdentityKeyPair.generate(self.rngs[1])
        alice: ProtocolStore = InMemoryProtocolStore(alice_ik, 1001)
        bob: ProtocolStore = SqliteProtocolStore.open(self.tmp / "bob.db", bob_ik, 2002)
        self.stores: list[ProtocolStore] = [alice, bob]
        r = self.rngs[1]
        spk = SignedPreKeyRecord.generate(1, bob_ik, NOW, r)
        kpk = KyberPreKeyRecord.generate(1, bob_ik, NOW, r)
        opk = PreKeyRecord.generate(1, r)
        bob.save_signed_pre_key(1, spk)
        bob.save_kyber_pre_key(1, kpk)
        bob.save_pre_key(1, opk)
        bundle = PreKeyBundle(
            2002, 2, 1, opk.public_key, 1, spk.public_key, spk.signature,
            bob_ik.identity_key, 1, kpk.public_key, kpk.signature,
        )  # fmt: skip
        cipher.process_prekey_bundle(
            bundle, ADDRESSES[1], alice, now=NOW, rng=self.rngs[0],
            local_address=ADDRESSES[0], limits=LIMITS,
        )  # fmt: skip
        self.sent: list[Sent] = []
        self.in_flight: list[Sent] = []
        self.seq = [0, 0]

    def teardown(self) -> None:
        bob = self.stores[1]
        if isinstance(bob, SqliteProtocolStore):
            bob.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ------------------------------------------------------------------------------- model

    def _record_bytes(self, who: int) -> bytes | None:
        rec = self.stores[who].load_session(ADDRESSES[1 - who])
        return None if rec is None else rec.to_bytes()

    def _chain(self, m: Sent) -> list[Sent]:
        return [x for x in self.sent if x.sender == m.sender and x.ratchet_key == m.ratchet_key]

    def _must_accept(self, m: Sent) -> bool:
        if m.delivered:
            return False
        newer_key_seen = any(
            x.delivered
            and x.sender == m.sender
            and x.seq > m.seq
            and x.ratchet_key != m.ratchet_key
            for x in self.sent
        )
        if newer_key_seen:
            return False
        chain = self._chain(m)
        delivered = [x.counter for x in chain if x.delivered]
        top = max(delivered, default=-1)
        if m.counter > top and m.counter - (top + 1) > LIMITS.max_forward_jumps:
            return False
        # no skipped key of this chain may have been evicted
        return not m.overflow

    def _note_delivery(self, m: Sent) -> None:
        chain = self._chain(m)
        top = max(x.counter for x in chain if x.delivered)
        pending = [x for x in chain if not x.delivered and x.counter < top]
        if len(pending) > LIMITS.max_message_keys:
            for x in chain:
                x.overflow = True

    # ------------------------------------------------------------------------------- rules

    def _can_send(self, who: int) -> bool:
        rec = self.stores[who].load_session(ADDRESSES[1 - who])
        return rec is not None and rec.current is not None and len(self.in_flight) < 8

    @rule(who=st.sampled_from([0, 1]), size=st.integers(0, 40))
    def send(self, who: int, size: int) -> None:
        if not self._can_send(who):
            return
        text = bytes([who]) + self.seq[who].to_bytes(4, "big") + bytes(size)
        msg = cipher.message_encrypt(
            text, ADDRESSES[1 - who], self.stores[who], now=NOW, rng=self.rngs[who],
            local_address=ADDRESSES[who], limits=LIMITS,
        )  # fmt: skip
        inner = msg.message if isinstance(msg, PreKeySignalMessage) else msg
        mtype = (
            CiphertextMessageType.PREKEY
            if isinstance(msg, PreKeySignalMessage)
            else CiphertextMessageType.WHISPER
        )
        m = Sent(
            who, self.seq[who], inner.ratchet_key.raw, inner.counter, msg.to_bytes(), mtype, text
        )
        self.seq[who] += 1
        self.sent.append(m)
        self.in_flight.append(m)

    @rule(who=st.sampled_from([0, 1]), burst=st.integers(1, 4))
    def send_and_deliver(self, who: int, burst: int) -> None:
        """Progress on a good link: a burst of messages delivered in order."""
        for _ in range(burst):
            n = len(self.sent)
            self.send(who, 3)
            if len(self.sent) > n:
                m = self.sent[-1]
                self.in_flight.remove(m)
                self._deliver(m)

    def _deliver(self, m: Sent) -> None:
        receiver = 1 - m.sender
        before = self._record_bytes(receiver)
        must = self._must_accept(m)
        try:
            out = cipher.message_decrypt(
                m.data, m.mtype, ADDRESSES[m.sender], self.stores[receiver], now=NOW,
                rng=self.rngs[receiver], local_address=ADDRESSES[receiver], limits=LIMITS,
            )  # fmt: skip
        except REFUSALS as exc:
            assert self._record_bytes(receiver) == before
            assert not must, "refused a message the protocol must accept: " + repr(exc)
            if m.delivered and not isinstance(exc, DuplicateMessageError):
                newer_keys = {
                    x.ratchet_key
                    for x in self.sent
                    if x.delivered and x.sender == m.sender and x.seq > m.seq
                } - {m.ratchet_key}
                assert len(newer_keys) >= LIMITS.max_receiver_chains - 1
            return
        assert not m.delivered, "a message decrypted twice"
        assert out == m.plaintext
        event("delivered " + m.mtype.name)
        m.delivered = True
        self._note_delivery(m)

    @precondition(lambda self: self.in_flight)
    @rule(i=st.integers(0, 7))
    def deliver(self, i: int) -> None:
        self._deliver(self.in_flight.pop(i % len(self.in_flight)))

    @precondition(lambda self: self.in_flight)
    @rule(i=st.integers(0, 7))
    def drop(self, i: int) -> None:
        self.in_flight.pop(i % len(self.in_flight)).dropped = True

    @precondition(lambda self: any(m.delivered for m in self.sent))
    @rule(i=st.integers(0, 1000))
    def duplicate(self, i: int) -> None:
        done = [m for m in self.sent if m.delivered]
        self._deliver(done[i % len(done)])

    @rule()
    def reopen_bob(self) -> None:
        bob = self.stores[1]
        assert isinstance(bob, SqliteProtocolStore)
        bob.close()
        self.stores[1] = SqliteProtocolStore.open(self.tmp / "bob.db")

    # -------------------------------------------------------------------------- invariants

    @invariant()
    def limits_hold(self) -> None:
        for who in (0, 1):
            rec = self.stores[who].load_session(ADDRESSES[1 - who])
            if rec is None or rec.current is None:
                continue
            chains = rec.current.ratchet.receiver_chains
            assert len(chains) <= LIMITS.max_receiver_chains
            assert all(len(c.skipped) <= LIMITS.max_message_keys for c in chains)


Conversation.TestCase.settings = settings(max_examples=60, stateful_step_count=50, deadline=None)
test_conversation = Conversation.TestCase
