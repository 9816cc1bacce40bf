"""1:1 sessions between securemsg (``securemsg.cipher``) and the real libsignal.

Every scenario runs in both roles: securemsg initiates (processes libsignal's bundle and sends
the first PreKey message) and libsignal initiates. Names are UUID strings, so libsignal binds
both addresses into the MAC of its PreKey messages (the ``addresses`` field) and securemsg must
do the same.

Covered: long conversations with random direction changes; out-of-order delivery inside the
limits; duplicates; tampered messages (securemsg's stored session bytes unchanged afterwards);
session resets from either side with late messages of the archived session; identity-key
changes; bundles without a one-time prekey; and the forward-jump limits (MAX_FORWARD_JUMPS and
SPQR's own limit, to the exact boundary libsignal draws).

Batches go through the peer's ``encrypt_many`` / ``decrypt_many`` so a run of messages costs one
round trip. All randomness is seeded (``random.Random`` for schedules and plaintexts,
``DeterministicRng`` for securemsg's keys), so a failure replays identically on the securemsg
side; libsignal draws its own randomness.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal

import pytest
from peer_client import (
    PREKEY,
    WHISPER,
    LibsignalPeer,
    PeerCallError,
    b64,
    bundle_from_json,
    bundle_to_json,
    unb64,
)

from securemsg import cipher
from securemsg.crypto.backend import KyberBackend
from securemsg.crypto.kyber1024 import KyberPublicKey
from securemsg.crypto.rng import DeterministicRng
from securemsg.errors import (
    DuplicateMessageError,
    MessageGapTooLargeError,
    PeerError,
    SecureMsgError,
    UntrustedIdentityError,
)
from securemsg.limits import MAX_FORWARD_JUMPS
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.identity_and_prekeys import (
    IdentityKey,
    IdentityKeyPair,
    KyberPreKeyRecord,
    PreKeyBundle,
    PreKeyRecord,
    SignedPreKeyRecord,
    generate_registration_id,
)
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.wire.messages import CiphertextMessageType, PreKeySignalMessage, SignalMessage

pytestmark = pytest.mark.interop

#: One fixed clock for the whole module (Unix ms), given to both implementations.
NOW = int(time.time() * 1000)

Wire = tuple[int, bytes]  # (CiphertextMessageType value, serialized message)
Result = bytes | Exception  # a plaintext, or the error the receiver raised
Role = Literal["securemsg", "libsignal"]
ROLES: tuple[Role, Role] = ("securemsg", "libsignal")


# -- the two sides, behind one small interface --------------------------------------------------


class SecureMsgSide:
    """A securemsg user: an InMemoryProtocolStore driven through ``securemsg.cipher``."""

    kind: Role = "securemsg"

    def __init__(
        self,
        name: str,
        device_id: int,
        seed: bytes,
        kyber_backend: KyberBackend = KyberBackend.PORTABLE,
    ) -> None:
        self.rng = DeterministicRng(seed, kyber_backend=kyber_backend)
        self.identity = IdentityKeyPair.generate(self.rng)
        self.registration_id = generate_registration_id(self.rng)
        self.address = ProtocolAddress(name, device_id)
        self.store = InMemoryProtocolStore(self.identity, self.registration_id)
        self._next_id = 1

    @property
    def identity_key(self) -> bytes:
        return self.identity.identity_key.to_bytes()

    def publish_bundle(self, *, one_time_pre_key: bool = True) -> dict[str, Any]:
        """Makes fresh prekeys (stored) and returns the bundle in the peer's JSON form."""
        base, self._next_id = self._next_id, self._next_id + 1
        pre_key = PreKeyRecord.generate(base, self.rng) if one_time_pre_key else None
        signed = SignedPreKeyRecord.generate(base, self.identity, NOW, self.rng)
        kyber = KyberPreKeyRecord.generate(base, self.identity, NOW, self.rng)
        if pre_key is not None:
            self.store.save_pre_key(pre_key.id, pre_key)
        self.store.save_signed_pre_key(signed.id, signed)
        self.store.save_kyber_pre_key(kyber.id, kyber)
        bundle = PreKeyBundle(
            registration_id=self.registration_id,
            device_id=self.address.device_id,
            pre_key_id=None if pre_key is None else pre_key.id,
            pre_key_public=None if pre_key is None else pre_key.public_key,
            signed_pre_key_id=signed.id,
            signed_pre_key_public=signed.public_key,
            signed_pre_key_signature=signed.signature,
            identity_key=self.identity.identity_key,
            kyber_pre_key_id=kyber.id,
            kyber_pre_key_public=kyber.public_key,
            kyber_pre_key_signature=kyber.signature,
        )
        return bundle_to_json(bundle)

    def process_bundle(self, remote: ProtocolAddress, bundle: dict[str, Any]) -> None:
        cipher.process_prekey_bundle(
            bundle_from_json(bundle),
            remote,
            self.store,
            now=NOW,
            rng=self.rng,
            local_address=self.address,
        )

    def encrypt_all(self, remote: ProtocolAddress, plaintexts: Sequence[bytes]) -> list[Wire]:
        out: list[Wire] = []
        for plaintext in plaintexts:
            message = cipher.message_encrypt(
                plaintext, remote, self.store, now=NOW, rng=self.rng, local_address=self.address
            )
            kind = PREKEY if isinstance(message, PreKeySignalMessage) else WHISPER
            out.append((kind, message.to_bytes()))
        return out

    def decrypt(self, remote: ProtocolAddress, wire: Wire) -> bytes:
        return cipher.message_decrypt(
            wire[1],
            CiphertextMessageType(wire[0]),
            remote,
            self.store,
            now=NOW,
            rng=self.rng,
            local_address=self.address,
        )

    def decrypt_all(self, remote: ProtocolAddress, wires: Sequence[Wire]) -> list[Result]:
        out: list[Result] = []
        for wire in wires:
            try:
                out.append(self.decrypt(remote, wire))
            except SecureMsgError as exc:
                out.append(exc)
        return out

    def session_bytes(self, remote: ProtocolAddress) -> bytes | None:
        record = self.store.load_session(remote)
        return None if record is None else record.to_bytes()

    def trust(self, remote: ProtocolAddress, identity_key: bytes) -> None:
        self.store.save_identity(remote, IdentityKey.from_bytes(identity_key))


class LibsignalSide:
    """A libsignal user living in the peer process."""

    kind: Role = "libsignal"

    def __init__(self, peer: LibsignalPeer, name: str, device_id: int) -> None:
        self.peer = peer
        self.label = f"ls-{uuid.uuid4()}"
        self.address = ProtocolAddress(name, device_id)
        info = peer.create_party(self.label, name, device_id)
        self.identity_key: bytes = unb64(info["identity_key"])
        self.registration_id: int = info["registration_id"]
        self._next_id = 1

    def _remote(self, remote: ProtocolAddress) -> dict[str, Any]:
        return {"party": self.label, "remote_name": remote.name, "remote_device": remote.device_id}

    def publish_bundle(self, *, one_time_pre_key: bool = True) -> dict[str, Any]:
        base, self._next_id = self._next_id, self._next_id + 1
        return self.peer.call(
            "generate_bundle",
            party=self.label,
            pre_key_id=base if one_time_pre_key else None,
            signed_pre_key_id=base,
            kyber_pre_key_id=base,
            timestamp_ms=NOW,
        )

    def process_bundle(self, remote: ProtocolAddress, bundle: dict[str, Any]) -> None:
        self.peer.call("process_bundle", bundle=bundle, now_ms=NOW, **self._remote(remote))

    def encrypt_all(self, remote: ProtocolAddress, plaintexts: Sequence[bytes]) -> list[Wire]:
        return self.peer.encrypt_many(
            self.label, remote.name, remote.device_id, plaintexts, now_ms=NOW
        )

    def decrypt(self, remote: ProtocolAddress, wire: Wire) -> bytes:
        return self.peer.decrypt(self.label, remote.name, remote.device_id, *wire)

    def decrypt_all(self, remote: ProtocolAddress, wires: Sequence[Wire]) -> list[Result]:
        return list(self.peer.decrypt_many(self.label, remote.name, remote.device_id, wires))

    def session_bytes(self, remote: ProtocolAddress) -> bytes | None:
        record = self.peer.call("get_session_record", **self._remote(remote))["record"]
        return None if record is None else unb64(record)

    def facts(self, remote: ProtocolAddress) -> dict[str, Any]:
        return self.peer.call("session_facts", now_ms=NOW, **self._remote(remote))

    def trust(self, remote: ProtocolAddress, identity_key: bytes) -> None:
        self.peer.call("trust", identity_key=b64(identity_key), **self._remote(remote))


Side = SecureMsgSide | LibsignalSide


class Pair:
    """One securemsg user and one libsignal user talking to each other."""

    def __init__(self, peer: LibsignalPeer, seed: bytes, kyber_backend: KyberBackend) -> None:
        self.peer = peer
        self.kyber_backend = kyber_backend
        self.sm = SecureMsgSide(str(uuid.uuid4()), 1, seed, kyber_backend)
        self.ls = LibsignalSide(peer, str(uuid.uuid4()), 2)

    def side(self, role: Role) -> Side:
        return self.sm if role == "securemsg" else self.ls

    def other(self, role: Role) -> Side:
        return self.ls if role == "securemsg" else self.sm

    def send(self, sender: Role, plaintexts: Sequence[bytes]) -> list[Wire]:
        return self.side(sender).encrypt_all(self.other(sender).address, plaintexts)

    def deliver(self, sender: Role, wires: Sequence[Wire]) -> list[Result]:
        """The receiver (the other side of ``sender``) decrypts ``wires`` in the given order."""
        return self.other(sender).decrypt_all(self.side(sender).address, wires)

    def roundtrip(self, sender: Role, plaintexts: Sequence[bytes]) -> list[Wire]:
        wires = self.send(sender, plaintexts)
        assert self.deliver(sender, wires) == list(plaintexts)
        return wires

    def establish(
        self, initiator: Role, *, one_time_pre_key: bool = True, reply: bool = True
    ) -> Wire:
        """The initiator fetches the responder's bundle and sends a first message; with
        ``reply`` the responder answers, so both sides have a complete session. Returns the
        initiator's first (PreKey) message."""
        responder = self.other(initiator)
        bundle = responder.publish_bundle(one_time_pre_key=one_time_pre_key)
        self.side(initiator).process_bundle(responder.address, bundle)
        [first] = self.roundtrip(initiator, [b"hello from the " + initiator.encode()])
        assert first[0] == PREKEY
        if reply:
            [answer] = self.roundtrip(self.other_role(initiator), [b"hello back"])
            assert answer[0] == WHISPER
        return first

    @staticmethod
    def other_role(role: Role) -> Role:
        return "libsignal" if role == "securemsg" else "securemsg"


@pytest.fixture(params=list(KyberBackend), ids=lambda b: f"kyber-{b.value}")
def pair(libsignal_peer: LibsignalPeer, request: pytest.FixtureRequest) -> Pair:
    """Every scenario runs with securemsg's Kyber1024 encapsulation on both routes: OpenSSL
    (production) and the portable numpy core (what vectors use)."""
    return Pair(libsignal_peer, request.node.nodeid.encode(), request.param)


def random_plaintexts(rnd: random.Random, count: int) -> list[bytes]:
    return [
        rnd.randbytes(rnd.choice([0, 1, 15, 16, 17, rnd.randrange(0, 400)])) for _ in range(count)
    ]


def flip_bit(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def assert_rejected(result: Result, sender: Role, what: str = "") -> None:
    """The receiver (the other side of ``sender``) refused a message."""
    if sender == "libsignal":  # securemsg received it
        assert isinstance(result, PeerError), (
            f"securemsg accepted or misreported {what}: {result!r}"
        )
    else:
        assert isinstance(result, PeerCallError), f"libsignal accepted {what}: {result!r}"


def assert_duplicate(result: Result, sender: Role) -> None:
    if sender == "libsignal":
        assert isinstance(result, DuplicateMessageError), repr(result)
    else:
        assert isinstance(result, PeerCallError) and result.type == "DuplicatedMessage", repr(
            result
        )


# -- long conversations --------------------------------------------------------------------------


@pytest.mark.parametrize("initiator", ROLES)
def test_long_conversation_with_random_direction_changes(pair: Pair, initiator: Role) -> None:
    rnd = random.Random(f"conversation/{initiator}")
    responder = Pair.other_role(initiator)
    responder_side = pair.other(initiator)
    bundle = responder_side.publish_bundle()
    pair.side(initiator).process_bundle(responder_side.address, bundle)

    sent = 0
    initiator_has_received = False
    sender: Role = initiator
    while sent < 2000:
        count = rnd.randint(1, 40)
        plaintexts = random_plaintexts(rnd, count)
        wires = pair.send(sender, plaintexts)
        expected_type = PREKEY if sender == initiator and not initiator_has_received else WHISPER
        assert [kind for kind, _ in wires] == [expected_type] * count
        assert pair.deliver(sender, wires) == plaintexts
        if sender == responder:
            initiator_has_received = True
        sent += count
        sender = rnd.choice(ROLES)  # the same side may well go on talking

    facts = pair.ls.facts(pair.sm.address)
    assert facts["session_version"] == 4
    assert facts["remote_registration_id"] == pair.sm.registration_id
    assert unb64(facts["remote_identity_key"]) == pair.sm.identity_key
    assert not facts["has_unacknowledged_pre_key"]


# -- out-of-order delivery -----------------------------------------------------------------------


@pytest.mark.parametrize("initiator", ROLES)
@pytest.mark.parametrize("sender", ROLES)
def test_out_of_order_delivery_across_chains(pair: Pair, initiator: Role, sender: Role) -> None:
    """Messages of two sending chains arrive shuffled and interleaved."""
    rnd = random.Random(f"ooo/{initiator}/{sender}")
    pair.establish(initiator)
    receiver = Pair.other_role(sender)

    plaintexts_a = random_plaintexts(rnd, 120)
    wires_a = pair.send(sender, plaintexts_a)
    order_a = list(range(len(wires_a)))
    rnd.shuffle(order_a)
    early, late = order_a[:50], order_a[50:]
    assert pair.deliver(sender, [wires_a[i] for i in early]) == [plaintexts_a[i] for i in early]

    # the receiver answers, so the sender's next messages start a new chain
    pair.roundtrip(receiver, [b"turn the ratchet"])
    plaintexts_b = random_plaintexts(rnd, 80)
    wires_b = pair.send(sender, plaintexts_b)

    mixed = [("a", i) for i in late] + [("b", i) for i in range(len(wires_b))]
    rnd.shuffle(mixed)
    wires = [(wires_a if c == "a" else wires_b)[i] for c, i in mixed]
    expected = [(plaintexts_a if c == "a" else plaintexts_b)[i] for c, i in mixed]
    assert pair.deliver(sender, wires) == expected
    # and the conversation goes on normally in both directions
    pair.roundtrip(receiver, [b"still here"])
    pair.roundtrip(sender, [b"me too"])


@pytest.mark.parametrize("sender", ROLES)
def test_out_of_order_delivery_with_a_large_skip(pair: Pair, sender: Role) -> None:
    """The last of 1500 messages arrives first (1499 keys skipped, under MAX_MESSAGE_KEYS),
    then the rest in random order."""
    rnd = random.Random(f"ooo-large/{sender}")
    pair.establish(Pair.other_role(sender))
    plaintexts = [i.to_bytes(2, "big") for i in range(1500)]
    wires = pair.send(sender, plaintexts)
    order = list(range(len(wires) - 1))
    rnd.shuffle(order)
    order.insert(0, len(wires) - 1)
    assert pair.deliver(sender, [wires[i] for i in order]) == [plaintexts[i] for i in order]


# -- duplicates --------------------------------------------------------------------------------


@pytest.mark.parametrize("initiator", ROLES)
@pytest.mark.parametrize("sender", ROLES)
def test_duplicates_are_rejected(pair: Pair, initiator: Role, sender: Role) -> None:
    pair.establish(initiator)
    in_order = pair.roundtrip(sender, [b"one", b"two", b"three"])
    # skipped then used: deliver 3rd before 1st and 2nd
    wires = pair.send(sender, [b"four", b"five", b"six"])
    assert pair.deliver(sender, [wires[2], wires[0]]) == [b"six", b"four"]

    for result in pair.deliver(sender, [*in_order, wires[2], wires[0]]):
        assert_duplicate(result, sender)
    # the one never delivered still decrypts, once
    assert pair.deliver(sender, [wires[1]]) == [b"five"]
    assert_duplicate(pair.deliver(sender, [wires[1]])[0], sender)
    pair.roundtrip(sender, [b"after the duplicates"])


@pytest.mark.parametrize("initiator", ROLES)
def test_duplicate_prekey_message_is_rejected(pair: Pair, initiator: Role) -> None:
    first = pair.establish(initiator, reply=False)
    [result] = pair.deliver(initiator, [first])
    assert_duplicate(result, initiator)
    pair.roundtrip(Pair.other_role(initiator), [b"the session still works"])
    pair.roundtrip(initiator, [b"both ways"])


# -- tampering -----------------------------------------------------------------------------------


def tampered_whisper_variants(rnd: random.Random, body: bytes, count: int) -> list[bytes]:
    variants = [flip_bit(body, rnd.randrange(0, 8 * len(body))) for _ in range(count)]
    variants += [
        flip_bit(body, 8 * (len(body) - 1)),  # last MAC byte
        flip_bit(body, 8),  # first protobuf byte
        body[:-1],  # short MAC
        body + b"\x00",  # extra byte (MAC read from the wrong place)
        body[:1],
        b"\x34" + body[1:],  # version 3 (X3DH era)
        b"\x54" + body[1:],  # version 5
    ]
    return variants


@pytest.mark.parametrize("initiator", ROLES)
@pytest.mark.parametrize("sender", ROLES)
def test_tampered_messages_are_rejected_without_touching_state(
    pair: Pair, initiator: Role, sender: Role
) -> None:
    rnd = random.Random(f"tamper/{initiator}/{sender}")
    pair.establish(initiator)
    receiver = pair.other(sender)
    [real] = pair.send(sender, [b"the real message"])
    assert real[0] == WHISPER

    before = receiver.session_bytes(pair.side(sender).address)
    variants = tampered_whisper_variants(rnd, real[1], 40)
    results = pair.deliver(sender, [(WHISPER, v) for v in variants])
    for variant, result in zip(variants, results, strict=True):
        assert_rejected(result, sender)
        assert variant != real[1]
    assert receiver.session_bytes(pair.side(sender).address) == before

    # a tampered message of the right type but the wrong framing
    assert_rejected(pair.deliver(sender, [(PREKEY, real[1])])[0], sender)
    assert receiver.session_bytes(pair.side(sender).address) == before

    assert pair.deliver(sender, [real]) == [b"the real message"]


def prekey_regions(body: bytes) -> dict[str, tuple[int, int]]:
    """Byte ranges of the authenticated parts of a serialized PreKeySignalMessage."""
    message = PreKeySignalMessage.from_bytes(body)
    regions = {}
    for name, part in (
        ("inner message", message.message.serialized),
        ("base key", message.base_key.to_bytes()),
        ("identity key", message.identity_key.to_bytes()),
        ("kyber ciphertext", message.kyber_ciphertext),
    ):
        start = body.find(part)
        assert start > 0 and body.find(part, start + 1) == -1, name
        regions[name] = (start, start + len(part))
    return regions


@pytest.mark.parametrize("initiator", ROLES)
def test_tampered_prekey_messages_are_rejected_without_touching_state(
    pair: Pair, initiator: Role
) -> None:
    rnd = random.Random(f"tamper-prekey/{initiator}")
    responder_role = Pair.other_role(initiator)
    responder = pair.side(responder_role)
    bundle = responder.publish_bundle()
    pair.side(initiator).process_bundle(responder.address, bundle)
    [real] = pair.send(initiator, [b"first contact"])
    assert real[0] == PREKEY

    variants = []
    for name, (start, end) in prekey_regions(real[1]).items():
        skip_type_byte = 1 if name in ("base key", "identity key") else 0
        for _ in range(6):
            bit = rnd.randrange(8 * (start + skip_type_byte), 8 * end)
            variants.append((name, flip_bit(real[1], bit)))
    variants.append(("truncated", real[1][:-10]))

    initiator_address = pair.side(initiator).address
    before = responder.session_bytes(initiator_address)
    assert before is None
    results = pair.deliver(initiator, [(PREKEY, v) for _, v in variants])
    for (name, _), result in zip(variants, results, strict=True):
        assert_rejected(result, initiator, name)
    assert responder.session_bytes(initiator_address) is None
    if isinstance(responder, SecureMsgSide):
        # nothing consumed, nothing trusted
        assert responder.store.get_identity(initiator_address) is None
        responder.store.get_pre_key(bundle["pre_key_id"])
        responder.store.get_kyber_pre_key(bundle["kyber_pre_key_id"])

    assert pair.deliver(initiator, [real]) == [b"first contact"]
    pair.roundtrip(responder_role, [b"welcome"])


# -- session resets ------------------------------------------------------------------------------


@pytest.mark.parametrize("initiator", ROLES)
@pytest.mark.parametrize("resetter", ROLES)
def test_session_reset_keeps_late_messages_of_the_archived_session(
    pair: Pair, initiator: Role, resetter: Role
) -> None:
    """The resetter starts a new session (new PreKey message) while one exists; messages both
    sides sent on the old session and that arrive late still decrypt."""
    rnd = random.Random(f"reset/{initiator}/{resetter}")
    pair.establish(initiator)
    other: Role = Pair.other_role(resetter)
    pair.roundtrip(resetter, random_plaintexts(rnd, 5))
    pair.roundtrip(other, random_plaintexts(rnd, 5))

    # in flight on the old session, in both directions
    late_from_resetter_text = random_plaintexts(rnd, 4)
    late_from_resetter = pair.send(resetter, late_from_resetter_text)
    late_from_other_text = random_plaintexts(rnd, 4)
    late_from_other = pair.send(other, late_from_other_text)

    # the reset: a fresh bundle, a new session, a new PreKey message
    reset_side = pair.side(resetter)
    reset_side.process_bundle(pair.side(other).address, pair.side(other).publish_bundle())
    [new_first] = pair.send(resetter, [b"new session"])
    assert new_first[0] == PREKEY
    assert pair.deliver(resetter, [new_first]) == [b"new session"]

    # late messages of the archived session, both directions
    assert pair.deliver(other, late_from_other) == late_from_other_text
    assert pair.deliver(resetter, late_from_resetter) == late_from_resetter_text

    # and the conversation continues both ways
    for _ in range(3):
        pair.roundtrip(other, random_plaintexts(rnd, 3))
        pair.roundtrip(resetter, random_plaintexts(rnd, 3))
    facts = pair.ls.facts(pair.sm.address)
    assert facts["previous_sessions"] >= 1


# -- identity changes ----------------------------------------------------------------------------


def test_securemsg_refuses_a_changed_identity(pair: Pair, libsignal_peer: LibsignalPeer) -> None:
    pair.establish("securemsg")
    sm, remote = pair.sm, pair.ls.address
    before = sm.session_bytes(remote)

    # same address, new identity key (e.g. the user reinstalled)
    impostor = LibsignalSide(libsignal_peer, remote.name, remote.device_id)
    with pytest.raises(UntrustedIdentityError):
        sm.process_bundle(remote, impostor.publish_bundle())
    assert sm.session_bytes(remote) == before

    impostor.process_bundle(sm.address, sm.publish_bundle())
    [first] = impostor.encrypt_all(sm.address, [b"it's me, new phone"])
    with pytest.raises(UntrustedIdentityError):
        sm.decrypt(remote, first)
    assert sm.session_bytes(remote) == before

    # after the user accepts the new key, the same message decrypts
    sm.trust(remote, impostor.identity_key)
    assert sm.decrypt(remote, first) == b"it's me, new phone"


def test_libsignal_refuses_a_changed_securemsg_identity(pair: Pair) -> None:
    pair.establish("libsignal")
    ls, remote = pair.ls, pair.sm.address
    before = ls.session_bytes(remote)

    impostor = SecureMsgSide(remote.name, remote.device_id, b"impostor")
    with pytest.raises(PeerCallError) as refused:
        ls.process_bundle(remote, impostor.publish_bundle())
    assert refused.value.type == "UntrustedIdentity"
    assert ls.session_bytes(remote) == before

    impostor.process_bundle(ls.address, ls.publish_bundle())
    [first] = impostor.encrypt_all(ls.address, [b"it's me, new phone"])
    with pytest.raises(PeerCallError) as refused:
        ls.decrypt(remote, first)
    assert refused.value.type == "UntrustedIdentity"
    assert ls.session_bytes(remote) == before

    ls.trust(remote, impostor.identity_key)
    assert ls.decrypt(remote, first) == b"it's me, new phone"


# -- bundles without a one-time prekey -----------------------------------------------------------


@pytest.mark.parametrize("initiator", ROLES)
def test_bundle_without_one_time_prekey(pair: Pair, initiator: Role) -> None:
    first = pair.establish(initiator, one_time_pre_key=False)
    assert PreKeySignalMessage.from_bytes(first[1]).pre_key_id is None
    for _ in range(3):
        pair.roundtrip(initiator, [b"ping"])
        pair.roundtrip(Pair.other_role(initiator), [b"pong"])


# -- forward-jump limit --------------------------------------------------------------------------


def test_forward_jump_limits_match_libsignal(pair: Pair, libsignal_peer: LibsignalPeer) -> None:
    """libsignal sends MAX_FORWARD_JUMPS + 2 messages (counters 0..25001) on a fresh chain.

    1. securemsg gets counter 25001 first: a jump of 25001 > MAX_FORWARD_JUMPS from index 0 is
       refused (MessageGapTooLargeError) and the stored session does not change.
    2. Counter 0 decrypts. Counter 25001 is now a Double Ratchet jump of exactly 25000, but its
       SPQR index is one further (SPQR counts from 1), and libsignal 0.103.0 refuses it
       ("post-quantum ratchet error: Key jump"); securemsg must refuse it too, unchanged.
    3. Counter 25000 (SPQR jump of exactly 25000) decrypts, after which 25001 does too.
    """
    pair.establish("securemsg", reply=False)
    count = MAX_FORWARD_JUMPS + 2
    result = libsignal_peer.call(
        "encrypt_many",
        party=pair.ls.label,
        remote_name=pair.sm.address.name,
        remote_device=pair.sm.address.device_id,
        count=count,
        plaintext=b64(b"far"),
        keep=[0, count - 2, count - 1],
        now_ms=NOW,
    )
    items = result["results"]
    assert [item["ok"] for item in items] == [True, True, True]
    counter_0, counter_25000, counter_25001 = ((i["type"], unb64(i["body"])) for i in items)
    assert SignalMessage.from_bytes(counter_25001[1]).counter == MAX_FORWARD_JUMPS + 1

    remote = pair.ls.address
    before = pair.sm.session_bytes(remote)
    with pytest.raises(MessageGapTooLargeError) as refused:
        pair.sm.decrypt(remote, counter_25001)
    assert refused.value.gap >= MAX_FORWARD_JUMPS
    assert pair.sm.session_bytes(remote) == before

    assert pair.sm.decrypt(remote, counter_0) == b"far"
    after_first = pair.sm.session_bytes(remote)
    with pytest.raises(PeerError):
        pair.sm.decrypt(remote, counter_25001)
    assert pair.sm.session_bytes(remote) == after_first

    assert pair.sm.decrypt(remote, counter_25000) == b"far"
    assert pair.sm.decrypt(remote, counter_25001) == b"far"


@pytest.mark.parametrize("initiator", ROLES)
def test_pqxdh_encapsulates_on_the_chosen_kyber_route(
    pair: Pair, initiator: Role, monkeypatch: pytest.MonkeyPatch
) -> None:
    """securemsg's PQXDH encapsulation takes the pair's route (and libsignal decapsulates it);
    the OpenSSL route never falls back to the numpy core."""
    portable_calls: list[bytes] = []
    real = KyberPublicKey._encapsulate_round3

    def spy(self: KyberPublicKey, m: bytes) -> tuple[bytes, bytes]:
        portable_calls.append(m)
        return real(self, m)

    monkeypatch.setattr(KyberPublicKey, "_encapsulate_round3", spy)
    pair.establish(initiator)
    pair.roundtrip("securemsg", [b"after the handshake"])
    encapsulated = initiator == "securemsg"
    portable = pair.kyber_backend is KyberBackend.PORTABLE
    assert len(portable_calls) == (1 if encapsulated and portable else 0)
