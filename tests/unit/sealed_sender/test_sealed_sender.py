"""Sealed sender: round trips, refused certificates, tampered envelopes, hostile bytes."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securemsg import sealed_sender
from securemsg.crypto.curve25519 import PrivateKey, PublicKey
from securemsg.crypto.rng import DeterministicRng
from securemsg.errors import (
    DecodeError,
    InvalidKeyError,
    InvalidMessageError,
    PeerError,
    SealedSenderError,
    UsageError,
)
from securemsg.protocol import identity_and_prekeys as keys_module
from securemsg.protocol import sealed_sender as sealed_sender_module
from securemsg.protocol.address import ProtocolAddress, ServiceId
from securemsg.protocol.identity_and_prekeys import IdentityKeyPair
from securemsg.protocol.sealed_sender import (
    MultiRecipient,
    SealedSenderV2SentMessage,
    SenderCertificate,
    ServerCertificate,
    UnidentifiedSenderMessageContent,
    multi_recipient_encrypt,
    seal_v1,
    unseal,
)
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.wire.messages import CiphertextMessageType

RNG = DeterministicRng(b"sealed")
ROOT = PrivateKey.generate(RNG)
SERVER = PrivateKey.generate(RNG)
SERVER_CERT = ServerCertificate.new(1, SERVER.public_key(), ROOT, RNG)
ALICE = IdentityKeyPair.generate(RNG)
BOB = IdentityKeyPair.generate(RNG)
CAROL = IdentityKeyPair.generate(RNG)
ALICE_UUID = str(uuid.UUID(int=1))
NOW = 1_700_000_000_000


def cert(
    key: IdentityKeyPair = ALICE, expires: int = NOW + 1000, server: ServerCertificate = SERVER_CERT
) -> SenderCertificate:
    return SenderCertificate.new(
        sender_uuid=ALICE_UUID,
        sender_e164=None,
        sender_device_id=1,
        key=key.identity_key.public_key,
        expiration=expires,
        signer=server,
        signer_key=SERVER,
        rng=RNG,
    )


def usmc(c: SenderCertificate | None = None) -> UnidentifiedSenderMessageContent:
    return UnidentifiedSenderMessageContent.new(
        CiphertextMessageType.SENDERKEY, c or cert(), b"inner", 1, b"g"
    )


def test_v1_round_trip() -> None:
    u = usmc()
    env = seal_v1(u, ALICE, BOB.identity_key, RNG)
    assert env[0] == 0x11
    got = unseal(env, BOB)
    assert got.to_bytes() == u.to_bytes() and got.group_id == b"g" and got.content_hint == 1


def test_tampered_v1_envelope_is_invalid_message() -> None:
    env = bytearray(seal_v1(usmc(), ALICE, BOB.identity_key, RNG))
    for i in range(40, len(env), 7):
        bad = bytearray(env)
        bad[i] ^= 0x01
        with pytest.raises(PeerError):
            unseal(bytes(bad), BOB)
    bad = bytearray(env)
    bad[-1] ^= 0x80  # the message MAC
    with pytest.raises(InvalidMessageError):
        unseal(bytes(bad), BOB)
    with pytest.raises(InvalidMessageError):
        unseal(bytes(env), CAROL)  # not for us


def test_sender_key_must_match_certificate() -> None:
    env = seal_v1(usmc(cert(key=CAROL)), ALICE, BOB.identity_key, RNG)
    with pytest.raises(SealedSenderError) as info:
        unseal(env, BOB)
    assert info.value.reason == "key-mismatch"


def test_certificate_refusals() -> None:
    c = SenderCertificate.from_bytes(cert().to_bytes())
    c.validate(ROOT.public_key(), NOW)
    cases = [
        (cert(), PrivateKey.generate(RNG).public_key(), NOW, "untrusted"),
        (cert(expires=NOW - 1), ROOT.public_key(), NOW, "expired"),
        (
            cert(server=ServerCertificate.new(0xDEADC357, SERVER.public_key(), ROOT, RNG)),
            ROOT.public_key(),
            NOW,
            "revoked",
        ),
    ]
    other_server = ServerCertificate.new(2, PrivateKey.generate(RNG).public_key(), ROOT, RNG)
    cases.append((cert(server=other_server), ROOT.public_key(), NOW, "bad-signature"))
    for c, root, now, reason in cases:
        with pytest.raises(SealedSenderError) as info:
            c.validate(root, now)
        assert info.value.reason == reason


def test_sealed_sender_decrypt_refuses_bad_certificate_without_state_change() -> None:
    store = InMemoryProtocolStore(BOB, 5)
    env = seal_v1(usmc(cert(expires=NOW - 1)), ALICE, BOB.identity_key, RNG)
    with pytest.raises(SealedSenderError):
        sealed_sender.sealed_sender_decrypt(
            env, ROOT.public_key(), store, now=NOW, local_uuid="bob", local_device_id=1, rng=RNG
        )
    env = seal_v1(usmc(), ALICE, BOB.identity_key, RNG)
    with pytest.raises(SealedSenderError) as info:
        sealed_sender.sealed_sender_decrypt(
            env, ROOT.public_key(), store, now=NOW, local_uuid="bob", local_device_id=1, rng=RNG
        )
    assert info.value.reason == "unexpected-type"


def test_v2_round_trip_and_split() -> None:
    b_sid, c_sid = ServiceId.aci(uuid.UUID(int=2)), ServiceId.pni(uuid.UUID(int=3))
    excluded = ServiceId.aci(uuid.UUID(int=4))
    u = usmc()
    sent = multi_recipient_encrypt(
        u,
        [
            MultiRecipient(b_sid, BOB.identity_key, ((1, 10), (2, 11))),
            MultiRecipient(c_sid, CAROL.identity_key, ((5, 0x3FFF),)),
        ],
        ALICE,
        RNG,
        [excluded],
    )
    parsed = SealedSenderV2SentMessage.parse(sent)
    assert parsed.recipients == {b_sid: ((1, 10), (2, 11)), c_sid: ((5, 0x3FFF),)}
    assert parsed.excluded_recipients == (excluded,)
    assert unseal(parsed.message_for_recipient(b_sid), BOB).to_bytes() == u.to_bytes()
    assert unseal(parsed.message_for_recipient(c_sid), CAROL).to_bytes() == u.to_bytes()
    with pytest.raises(InvalidMessageError):
        unseal(parsed.message_for_recipient(b_sid), CAROL)
    received = bytearray(parsed.message_for_recipient(b_sid))
    received[40] ^= 1  # the auth tag
    with pytest.raises(SealedSenderError):
        unseal(bytes(received), BOB)
    for cut in (1, 2, 20, 40, len(sent) - len(parsed._shared) + 31):
        with pytest.raises(DecodeError):
            SealedSenderV2SentMessage.parse(sent[:cut])


def test_v2_sent_with_redundant_excluded_recipient_is_rejected() -> None:
    sid = ServiceId.aci(uuid.UUID(int=9))
    sent = multi_recipient_encrypt(
        usmc(), [MultiRecipient(sid, BOB.identity_key, ((1, 1),))], ALICE, RNG, [sid]
    )
    with pytest.raises(DecodeError):
        SealedSenderV2SentMessage.parse(sent)


def test_multi_recipient_recipe_uses_sessions() -> None:
    store = InMemoryProtocolStore(ALICE, 5)
    with pytest.raises(Exception) as info:
        sealed_sender.sealed_sender_multi_recipient_encrypt(
            [ProtocolAddress("not-a-uuid", 1)], usmc(), store, rng=RNG
        )
    assert type(info.value).__name__ == "UsageError"


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_decoders_take_arbitrary_bytes(data: bytes) -> None:
    for decode in (
        SenderCertificate.from_bytes,
        ServerCertificate.from_bytes,
        UnidentifiedSenderMessageContent.from_bytes,
        SealedSenderV2SentMessage.parse,
    ):
        with contextlib.suppress(DecodeError):
            decode(data)
    for prefix in (b"", b"\x11", b"\x22"):
        with contextlib.suppress(
            DecodeError, InvalidMessageError, InvalidKeyError, SealedSenderError
        ):
            unseal(prefix + data, BOB)


def test_v2_remembered_static_agreement_lives_on_the_key_pair_and_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(keys_module, "STATIC_AGREEMENTS_MAX", 2)
    pairs = [
        IdentityKeyPair(k.identity_key, k.private_key) for k in (ALICE, BOB, CAROL)
    ]  # fresh objects: fresh, empty memos
    alice, bob, carol = pairs
    b_sid = ServiceId.aci(uuid.UUID(int=2))
    for sender, recipient in ((alice, bob), (carol, bob), (alice, bob), (bob, carol)):
        u = usmc(cert(sender))
        to = MultiRecipient(b_sid, recipient.identity_key, ((1, 1),))
        sent = SealedSenderV2SentMessage.parse(multi_recipient_encrypt(u, [to], sender, RNG))
        # the receiver's remembered value is the sender's, seen from the other side
        assert unseal(sent.message_for_recipient(b_sid), recipient).to_bytes() == u.to_bytes()
        for pair in pairs:
            memo = pair._agreements
            assert len(memo) <= 2
            for theirs, shared in memo.items():
                assert shared == pair.private_key.agree(PublicKey.from_raw(theirs))
    assert set(bob._agreements) == {alice.public_key.raw, carol.public_key.raw}
    # nothing of it is left in a module global
    assert not hasattr(sealed_sender_module, "_STATIC_AGREEMENTS")


def test_sealed_sender_decrypt_needs_our_address_and_checks_its_type_first() -> None:
    store = InMemoryProtocolStore(BOB, 5)
    env = seal_v1(usmc(cert(expires=NOW - 1)), ALICE, BOB.identity_key, RNG)
    with pytest.raises(TypeError, match=r"local_uuid|local_device_id"):
        sealed_sender.sealed_sender_decrypt(env, ROOT.public_key(), store, now=NOW, rng=RNG)  # type: ignore[call-arg]
    # a wrong type is the caller's error, before the (expired) certificate is even looked at
    for local_uuid, device in ((None, 1), ("bob", "1"), ("bob", 0), (b"bob", 1)):
        with pytest.raises(UsageError):
            sealed_sender.sealed_sender_decrypt(
                env,
                ROOT.public_key(),
                store,
                now=NOW,
                local_uuid=local_uuid,  # type: ignore[arg-type]
                local_device_id=device,  # type: ignore[arg-type]
                rng=RNG,
            )
    with pytest.raises(UsageError):
        sealed_sender.sealed_sender_decrypt(
            env,
            ROOT.public_key(),
            store,
            now=NOW,
            local_uuid="bob",
            local_device_id=1,
            rng=RNG,
            local_e164=5,  # type: ignore[arg-type]
        )
