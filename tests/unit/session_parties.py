"""Two-party helpers for the 1:1 session tests: clients with stores, bundles, a send/receive pair.

Imported by tests/unit/test_cipher*.py (pytest puts this directory on sys.path).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from securemsg import cipher
from securemsg.crypto.rng import DeterministicRng, Rng
from securemsg.limits import DEFAULT_LIMITS, Limits
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.identity_and_prekeys import (
    IdentityKeyPair,
    KyberPreKeyRecord,
    PreKeyBundle,
    PreKeyRecord,
    SignedPreKeyRecord,
    generate_registration_id,
)
from securemsg.store.base import ProtocolStore
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.wire.messages import CiphertextMessageType, PreKeySignalMessage, SignalMessage

NOW = 1_760_000_000_000  # Unix ms
ALICE_ADDRESS = ProtocolAddress("9d0652a3-dcc3-4d11-975f-74d61598733f", 1)
BOB_ADDRESS = ProtocolAddress("796abedb-ca4e-4f18-8803-1fde5b921f9f", 1)


@dataclass
class Party:
    """One client: its store and address, and counters for fresh prekey ids."""

    store: ProtocolStore
    address: ProtocolAddress
    rng: Rng
    limits: Limits = DEFAULT_LIMITS
    next_id: int = 1
    prekeys: list[int] = field(default_factory=list)

    def publish_bundle(
        self, *, one_time: bool = True, last_resort: bool = False, now: int = NOW
    ) -> PreKeyBundle:
        """Generate and store fresh prekeys; return the public bundle."""
        ik = self.store.get_identity_key_pair()
        i = self.next_id
        self.next_id += 1
        spk = SignedPreKeyRecord.generate(i, ik, now, self.rng)
        kpk = KyberPreKeyRecord.generate(i, ik, now, self.rng)
        self.store.save_signed_pre_key(i, spk)
        self.store.save_kyber_pre_key(i, kpk, last_resort=last_resort)
        opk = None
        if one_time:
            opk = PreKeyRecord.generate(i, self.rng)
            self.store.save_pre_key(i, opk)
            self.prekeys.append(i)
        return PreKeyBundle(
            registration_id=self.store.get_local_registration_id(),
            device_id=self.address.device_id,
            pre_key_id=None if opk is None else i,
            pre_key_public=None if opk is None else opk.public_key,
            signed_pre_key_id=i,
            signed_pre_key_public=spk.public_key,
            signed_pre_key_signature=spk.signature,
            identity_key=ik.identity_key,
            kyber_pre_key_id=i,
            kyber_pre_key_public=kpk.public_key,
            kyber_pre_key_signature=kpk.signature,
        )

    def start_session(
        self, other: Party, bundle: PreKeyBundle | None = None, now: int = NOW
    ) -> None:
        """process_prekey_bundle with ``other``'s (fresh) bundle."""
        cipher.process_prekey_bundle(
            bundle or other.publish_bundle(),
            other.address,
            self.store,
            now=now,
            rng=self.rng,
            local_address=self.address,
            limits=self.limits,
        )

    def encrypt(
        self, other: Party, plaintext: bytes, now: int = NOW
    ) -> PreKeySignalMessage | SignalMessage:
        return cipher.message_encrypt(
            plaintext,
            other.address,
            self.store,
            now=now,
            rng=self.rng,
            local_address=self.address,
            limits=self.limits,
        )

    def decrypt(
        self,
        sender: Party,
        message: PreKeySignalMessage | SignalMessage | bytes,
        message_type: CiphertextMessageType | None = None,
        now: int = NOW,
    ) -> bytes:
        if isinstance(message, bytes):
            assert message_type is not None
            data, mtype = message, message_type
        else:
            data = message.to_bytes()
            mtype = (
                CiphertextMessageType.PREKEY
                if isinstance(message, PreKeySignalMessage)
                else CiphertextMessageType.WHISPER
            )
        return cipher.message_decrypt(
            data,
            mtype,
            sender.address,
            self.store,
            now=now,
            rng=self.rng,
            local_address=self.address,
            limits=self.limits,
        )

    def record_bytes(self, other: Party) -> bytes | None:
        rec = self.store.load_session(other.address)
        return None if rec is None else rec.to_bytes()


def message_type(message: PreKeySignalMessage | SignalMessage) -> CiphertextMessageType:
    if isinstance(message, PreKeySignalMessage):
        return CiphertextMessageType.PREKEY
    return CiphertextMessageType.WHISPER


def new_party(
    seed: bytes,
    address: ProtocolAddress,
    *,
    limits: Limits = DEFAULT_LIMITS,
    store: ProtocolStore | None = None,
) -> Party:
    rng = DeterministicRng(seed)
    if store is None:
        store = InMemoryProtocolStore(IdentityKeyPair.generate(rng), generate_registration_id(rng))
    return Party(store, address, rng, limits)


def new_pair(limits: Limits = DEFAULT_LIMITS) -> tuple[Party, Party]:
    """Alice and Bob with in-memory stores (no session yet)."""
    return (
        new_party(b"alice", ALICE_ADDRESS, limits=limits),
        new_party(b"bob", BOB_ADDRESS, limits=limits),
    )


def established_pair(limits: Limits = DEFAULT_LIMITS) -> tuple[Party, Party]:
    """Alice and Bob after PQXDH, one PreKey message and one reply: both send Whispers."""
    alice, bob = new_pair(limits)
    alice.start_session(bob)
    assert bob.decrypt(alice, alice.encrypt(bob, b"hi bob")) == b"hi bob"
    assert alice.decrypt(bob, bob.encrypt(alice, b"hi alice")) == b"hi alice"
    return alice, bob
