"""Benchmarks: sealed sender v1 encrypt/decrypt, SSv2 fan-out, the relay split, safety numbers.

Run: ``pytest benchmarks/bench_sealed_sender.py --benchmark-only``. No assertions on time.
SSv2 is measured through the recipe (sessions loaded from an in-memory store for each device's
registration id), like libsignal's ``sealedSenderMultiRecipientEncrypt`` in the Node peer's
``bench_sealed_sender_v2`` op; :func:`multi_recipient_encrypt_step` is what
``benchmarks/compare.py`` calls for the side-by-side figures.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest

from securemsg import cipher, groups, sealed_sender
from securemsg.crypto.curve25519 import PrivateKey
from securemsg.crypto.rng import DeterministicRng
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.fingerprint import Fingerprint
from securemsg.protocol.identity_and_prekeys import (
    IdentityKeyPair,
    KyberPreKeyRecord,
    PreKeyBundle,
    SignedPreKeyRecord,
)
from securemsg.protocol.sealed_sender import (
    SenderCertificate,
    ServerCertificate,
    UnidentifiedSenderMessageContent,
)
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.wire.messages import CiphertextMessageType

Benchmark = Any
NOW = 1_700_000_000_000
_RNG = DeterministicRng(b"bench_sealed_sender")
_ROOT = PrivateKey.generate(_RNG)
_SERVER = PrivateKey.generate(_RNG)
_SERVER_CERT = ServerCertificate.new(1, _SERVER.public_key(), _ROOT, _RNG)


class _Sender:
    def __init__(self) -> None:
        self.ik = IdentityKeyPair.generate(_RNG)
        self.store = InMemoryProtocolStore(self.ik, 1)
        self.address = ProtocolAddress(str(uuid.UUID(bytes=_RNG.random_bytes(16))), 1)
        self.cert = SenderCertificate.new(
            sender_uuid=self.address.name,
            sender_e164=None,
            sender_device_id=1,
            key=self.ik.identity_key.public_key,
            expiration=NOW + 10**9,
            signer=_SERVER_CERT,
            signer_key=_SERVER,
            rng=_RNG,
        )


_KYBER_OWNER = IdentityKeyPair.generate(_RNG)
_KYBER = KyberPreKeyRecord.generate(1, _KYBER_OWNER, NOW, _RNG)


def _bundle_for(ik: IdentityKeyPair, device: int, reg: int) -> PreKeyBundle:
    spk = SignedPreKeyRecord.generate(1, ik, NOW, _RNG)
    return PreKeyBundle(
        registration_id=reg,
        device_id=device,
        pre_key_id=None,
        pre_key_public=None,
        signed_pre_key_id=1,
        signed_pre_key_public=spk.public_key,
        signed_pre_key_signature=spk.signature,
        identity_key=ik.identity_key,
        kyber_pre_key_id=1,
        kyber_pre_key_public=_KYBER.public_key,
        kyber_pre_key_signature=ik.sign(_KYBER.public_key.to_bytes(), _RNG),
    )


def _ssv2_fixture(
    recipients: int, devices: int
) -> tuple[_Sender, list[ProtocolAddress], UnidentifiedSenderMessageContent]:
    s = _Sender()
    destinations = []
    for r in range(recipients):
        ik = IdentityKeyPair.generate(_RNG)
        name = str(uuid.UUID(bytes=_RNG.random_bytes(16)))
        for d in range(1, devices + 1):
            addr = ProtocolAddress(name, d)
            cipher.process_prekey_bundle(
                _bundle_for(ik, d, 1 + r % 0x3FFE),
                addr,
                s.store,
                now=NOW,
                rng=_RNG,
                local_address=s.address,
            )
            destinations.append(addr)
    dist = uuid.UUID(bytes=_RNG.random_bytes(16))
    groups.create_sender_key_distribution_message(s.address, dist, s.store, rng=_RNG)
    inner = groups.group_encrypt(s.address, dist, b"a" * 100, s.store, rng=_RNG)
    usmc = UnidentifiedSenderMessageContent.new(
        CiphertextMessageType.SENDERKEY, s.cert, inner.to_bytes(), 0, bytes([7] * 16)
    )
    return s, destinations, usmc


def multi_recipient_encrypt_step(recipients: int, devices: int = 1) -> Callable[[object], object]:
    """A step for benchmarks/compare.py: one SSv2 encrypt to ``recipients`` x ``devices``."""
    s, destinations, usmc = _ssv2_fixture(recipients, devices)

    def step(_ctx: object) -> object:
        return sealed_sender.sealed_sender_multi_recipient_encrypt(
            destinations, usmc, s.store, rng=_RNG
        )

    return step


@pytest.mark.parametrize("recipients", [2, 5, 10, 100, 1000])
def test_ssv2_encrypt_one_device(benchmark: Benchmark, recipients: int) -> None:
    step = multi_recipient_encrypt_step(recipients)
    benchmark.pedantic(step, args=(None,), rounds=5 if recipients == 1000 else 20, warmup_rounds=1)


@pytest.mark.parametrize("devices", [2, 5, 10])
def test_ssv2_encrypt_ten_recipients(benchmark: Benchmark, devices: int) -> None:
    step = multi_recipient_encrypt_step(10, devices)
    benchmark.pedantic(step, args=(None,), rounds=20, warmup_rounds=1)


def test_ssv2_relay_split_100(benchmark: Benchmark) -> None:
    sent = multi_recipient_encrypt_step(100)(None)
    assert isinstance(sent, bytes)

    def split() -> int:
        from securemsg.protocol.sealed_sender import SealedSenderV2SentMessage

        m = SealedSenderV2SentMessage.parse(sent)
        return sum(len(m.message_for_recipient(sid)) for sid in m.recipients)

    benchmark(split)


def _v1_pair() -> tuple[_Sender, InMemoryProtocolStore, ProtocolAddress]:
    s = _Sender()
    bob_ik = IdentityKeyPair.generate(_RNG)
    bob = InMemoryProtocolStore(bob_ik, 2)
    bob_addr = ProtocolAddress(str(uuid.UUID(bytes=_RNG.random_bytes(16))), 1)
    spk = SignedPreKeyRecord.generate(1, bob_ik, NOW, _RNG)
    kpk = KyberPreKeyRecord.generate(1, bob_ik, NOW, _RNG)
    bob.save_signed_pre_key(1, spk)
    bob.save_kyber_pre_key(1, kpk, last_resort=True)
    bundle = PreKeyBundle(
        registration_id=2,
        device_id=1,
        pre_key_id=None,
        pre_key_public=None,
        signed_pre_key_id=1,
        signed_pre_key_public=spk.public_key,
        signed_pre_key_signature=spk.signature,
        identity_key=bob_ik.identity_key,
        kyber_pre_key_id=1,
        kyber_pre_key_public=kpk.public_key,
        kyber_pre_key_signature=kpk.signature,
    )
    cipher.process_prekey_bundle(
        bundle, bob_addr, s.store, now=NOW, rng=_RNG, local_address=s.address
    )
    return s, bob, bob_addr


def test_v1_encrypt(benchmark: Benchmark) -> None:
    s, _bob, bob_addr = _v1_pair()
    benchmark(
        lambda: sealed_sender.sealed_sender_encrypt(
            bob_addr, s.cert, b"a" * 100, s.store, now=NOW, rng=_RNG
        )
    )


def test_v1_encrypt_decrypt_round_trip(benchmark: Benchmark) -> None:
    """Seal (1:1 encrypt + v1) then unseal + validate + 1:1 decrypt, in order."""
    s, bob, bob_addr = _v1_pair()

    def round_trip() -> bytes:
        env = sealed_sender.sealed_sender_encrypt(
            bob_addr, s.cert, b"a" * 100, s.store, now=NOW, rng=_RNG
        )
        return sealed_sender.sealed_sender_decrypt(
            env,
            _ROOT.public_key(),
            bob,
            now=NOW,
            local_uuid=bob_addr.name,
            local_device_id=1,
            rng=_RNG,
        ).plaintext

    assert benchmark(round_trip) == b"a" * 100


def test_safety_number(benchmark: Benchmark) -> None:
    a = IdentityKeyPair.generate(_RNG).identity_key
    b = IdentityKeyPair.generate(_RNG).identity_key
    benchmark(
        lambda: Fingerprint.create(
            version=2,
            iterations=5200,
            local_id=b"+14152222222",
            local_key=a,
            remote_id=b"+14153333333",
            remote_key=b,
        ).display_string()
    )
