"""Hostile bytes: every decoder either decodes or raises a documented PeerError.

For each ``from_bytes``/decoder owned by the wire and key layers, Hypothesis feeds arbitrary
bytes and mutations (flips, insertions, deletions, truncations, splices) of valid encodings.
Allowed outcomes: a value, :class:`DecodeError` (incl. :class:`UnsupportedVersionError`), or
:class:`InvalidKeyError` where an embedded public key is parsed. Anything else is a bug.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from securemsg.crypto.curve25519 import KeyPair, PublicKey
from securemsg.crypto.kyber1024 import KyberPublicKey
from securemsg.crypto.rng import DeterministicRng
from securemsg.errors import DecodeError, InvalidKeyError
from securemsg.protocol.address import ServiceId
from securemsg.protocol.identity_and_prekeys import (
    IdentityKey,
    IdentityKeyPair,
    KyberPreKeyRecord,
    PreKeyBundle,
    PreKeyRecord,
    SignedPreKeyRecord,
)
from securemsg.records import key_storage as codec
from securemsg.wire.messages import (
    PlaintextContent,
    PreKeySignalMessage,
    SenderKeyDistributionMessage,
    SenderKeyMessage,
    SignalMessage,
)

RNG = DeterministicRng(b"fuzz")
ID_A = IdentityKeyPair.generate(RNG)
ID_B = IdentityKeyPair.generate(RNG)
SPK = SignedPreKeyRecord.generate(1, ID_A, 1000, RNG)
KPK = KyberPreKeyRecord.generate(2, ID_A, 1000, RNG)
OPK = PreKeyRecord.generate(3, RNG)
SIGNAL = SignalMessage.new(
    message_version=4,
    mac_key=bytes(32),
    sender_identity=ID_A.identity_key.to_bytes(),
    receiver_identity=ID_B.identity_key.to_bytes(),
    ratchet_key=KeyPair.generate(RNG).public_key,
    counter=5,
    previous_counter=2,
    ciphertext=bytes(range(48)),
    pq_ratchet=b"\x01\x01\x01\x00",
    addresses=bytes(36),
)
PREKEY = PreKeySignalMessage.new(
    message_version=4,
    registration_id=77,
    pre_key_id=3,
    signed_pre_key_id=1,
    kyber_pre_key_id=2,
    kyber_ciphertext=b"\x08" + bytes(1568),
    base_key=KeyPair.generate(RNG).public_key,
    identity_key=ID_A.public_key,
    message=SIGNAL,
)
SKM = SenderKeyMessage.new(
    distribution_id=uuid.UUID(int=1),
    chain_id=9,
    iteration=4,
    ciphertext=bytes(32),
    signing_key=ID_A.private_key,
    rng=RNG,
)
SKDM = SenderKeyDistributionMessage.new(
    distribution_id=uuid.UUID(int=1),
    chain_id=9,
    iteration=4,
    chain_key=bytes(32),
    signing_key=ID_A.public_key,
)
BUNDLE = PreKeyBundle(
    registration_id=77,
    device_id=1,
    pre_key_id=3,
    pre_key_public=OPK.public_key,
    signed_pre_key_id=1,
    signed_pre_key_public=SPK.public_key,
    signed_pre_key_signature=SPK.signature,
    identity_key=ID_A.identity_key,
    kyber_pre_key_id=2,
    kyber_pre_key_public=KPK.public_key,
    kyber_pre_key_signature=KPK.signature,
)

Decoder = Callable[[bytes], object]

DECODERS: list[tuple[str, Decoder, bytes]] = [
    ("SignalMessage", SignalMessage.from_bytes, SIGNAL.to_bytes()),
    ("PreKeySignalMessage", PreKeySignalMessage.from_bytes, PREKEY.to_bytes()),
    ("SenderKeyMessage", SenderKeyMessage.from_bytes, SKM.to_bytes()),
    ("SenderKeyDistributionMessage", SenderKeyDistributionMessage.from_bytes, SKDM.to_bytes()),
    (
        "PlaintextContent",
        PlaintextContent.from_bytes,
        PlaintextContent.from_content(b"x").serialized,
    ),
    ("PublicKey", PublicKey.from_bytes, ID_A.public_key.to_bytes()),
    ("KyberPublicKey", KyberPublicKey.from_bytes, KPK.public_key.to_bytes()),
    ("IdentityKey", IdentityKey.from_bytes, ID_A.identity_key.to_bytes()),
    ("IdentityKeyPair", IdentityKeyPair.from_bytes, ID_A.to_bytes()),
    ("PreKeyRecord", PreKeyRecord.from_bytes, OPK.to_bytes()),
    ("SignedPreKeyRecord", SignedPreKeyRecord.from_bytes, SPK.to_bytes()),
    ("KyberPreKeyRecord", KyberPreKeyRecord.from_bytes, KPK.to_bytes()),
    ("PreKeyBundle", PreKeyBundle.from_bytes, BUNDLE.to_bytes()),
    ("decode_identity_key_pair", codec.decode_identity_key_pair, ID_A.to_bytes()),
    ("decode_pre_key_record", codec.decode_pre_key_record, OPK.to_bytes()),
    ("decode_signed_pre_key_record", codec.decode_signed_pre_key_record, SPK.to_bytes()),
    ("decode_kyber_pre_key_record", codec.decode_kyber_pre_key_record, KPK.to_bytes()),
    ("decode_pre_key_bundle", codec.decode_pre_key_bundle, BUNDLE.to_bytes()),
    (
        "ServiceId.from_fixed_width",
        ServiceId.from_fixed_width,
        ServiceId.pni(uuid.UUID(int=7)).to_fixed_width(),
    ),
]
IDS = [name for name, _, _ in DECODERS]
ALLOWED = (DecodeError, InvalidKeyError)


def check(decode: Decoder, data: bytes) -> None:
    with contextlib.suppress(*ALLOWED):
        decode(data)


@st.composite
def mutations(draw: st.DrawFn, valid: bytes) -> bytes:
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "splice"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(
                st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xFF, 0x08, 0x0A, 0x44, 0x33])
            )
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and data:
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[pos:]
        elif op == "splice":
            data[pos:] = draw(st.binary(max_size=16)) + bytes(data[pos:])
    return bytes(data)


def test_valid_encodings_decode() -> None:
    for _, decode, valid in DECODERS:
        decode(valid)


@pytest.mark.parametrize(("name", "decode", "valid"), DECODERS, ids=IDS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes(name: str, decode: Decoder, valid: bytes, data: bytes) -> None:
    check(decode, data)


@pytest.mark.parametrize(("name", "decode", "valid"), DECODERS, ids=IDS)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_valid_encodings(
    name: str, decode: Decoder, valid: bytes, data: st.DataObject
) -> None:
    check(decode, data.draw(mutations(valid)))


@pytest.mark.parametrize(("name", "decode", "valid"), DECODERS, ids=IDS)
@settings(max_examples=40, deadline=None)
@given(
    prefix=st.sampled_from([b"\x44", b"\x33", b"\x08\x01", b"\xc0", b"\x05", b"\x01"]),
    tail=st.binary(max_size=120),
)
def test_plausible_prefixes(
    name: str, decode: Decoder, valid: bytes, prefix: bytes, tail: bytes
) -> None:
    check(decode, prefix + tail)


@settings(max_examples=100)
@given(st.text(max_size=45))
def test_service_id_strings(text: str) -> None:
    assert ServiceId.try_parse(text) is None or str(ServiceId.parse(text)).lower() == text.lower()
