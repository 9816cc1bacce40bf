"""1:1 sessions between securemsg (``securemsg.cipher``) and the real libsignal.

Not in the kit: a chosen Kyber route and libsignal's session record are beyond its protocol.

* PQXDH on each of securemsg's Kyber1024 encapsulation routes (OpenSSL, the portable numpy
  core), in both roles: libsignal decapsulates what each route produced, and the OpenSSL route
  never falls back to the numpy core.
* What libsignal's session record holds about us after a conversation (``session_facts``):
  session version 4, our registration id and identity key, the PreKey acknowledged.

Names are UUID strings, so libsignal binds both addresses into the MAC of its PreKey messages
(the ``addresses`` field) and securemsg must do the same.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal

import pytest
from peer_client import (
    PREKEY,
    WHISPER,
    LibsignalPeer,
    bundle_from_json,
    bundle_to_json,
    unb64,
)

from securemsg import cipher
from securemsg.crypto.backend import KyberBackend
from securemsg.crypto.kyber1024 import KyberPublicKey
from securemsg.crypto.rng import DeterministicRng
from securemsg.errors import SecureMsgError
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.identity_and_prekeys import (
    IdentityKeyPair,
    KyberPreKeyRecord,
    PreKeyBundle,
    PreKeyRecord,
    SignedPreKeyRecord,
    generate_registration_id,
)
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.wire.messages import CiphertextMessageType, PreKeySignalMessage

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

    def facts(self, remote: ProtocolAddress) -> dict[str, Any]:
        return self.peer.call("session_facts", now_ms=NOW, **self._remote(remote))


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


# -- what libsignal records ------------------------------------------------------------------


@pytest.mark.parametrize("initiator", ROLES)
def test_libsignal_records_our_identity_and_registration_id(pair: Pair, initiator: Role) -> None:
    pair.establish(initiator)
    for _ in range(3):
        pair.roundtrip(initiator, [b"ping"])
        pair.roundtrip(Pair.other_role(initiator), [b"pong"])
    facts = pair.ls.facts(pair.sm.address)
    assert facts["session_version"] == 4
    assert facts["remote_registration_id"] == pair.sm.registration_id
    assert unb64(facts["remote_identity_key"]) == pair.sm.identity_key
    assert not facts["has_unacknowledged_pre_key"]


# -- Kyber routes --------------------------------------------------------------------------------


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
