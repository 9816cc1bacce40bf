"""SenderKeyMessage (signed) and SenderKeyDistributionMessage framing."""

from __future__ import annotations

import uuid

import pytest

from securemsg._proto import wire_pb2
from securemsg.crypto.curve25519 import KeyPair
from securemsg.crypto.rng import DeterministicRng
from securemsg.errors import DecodeError, InvalidSignatureError, UnsupportedVersionError, UsageError
from securemsg.wire.messages import SenderKeyDistributionMessage, SenderKeyMessage

RNG = DeterministicRng(b"sender-key-tests")
SIGNER = KeyPair.generate(RNG)
OTHER = KeyPair.generate(RNG)
DIST = uuid.UUID("8c78cd2a-16ff-427d-83dc-1a5e36ce713d")


def make_skm(**kw: object) -> SenderKeyMessage:
    args: dict[str, object] = {
        "distribution_id": DIST,
        "chain_id": 0x7FFF_FFFF,
        "iteration": 3,
        "ciphertext": b"\x10" * 32,
        "signing_key": SIGNER.private_key,
        "rng": RNG,
    }
    args.update(kw)
    return SenderKeyMessage.new(**args)  # type: ignore[arg-type]


def test_sender_key_message_layout_and_signature() -> None:
    msg = make_skm()
    data = msg.to_bytes()
    assert data[0] == 0x33
    pb = wire_pb2.SenderKeyMessage(
        distribution_uuid=DIST.bytes, chain_id=0x7FFF_FFFF, iteration=3, ciphertext=b"\x10" * 32
    )
    assert data[1:-64] == pb.SerializeToString()
    SIGNER.public_key.verify(data[:-64], data[-64:])
    parsed = SenderKeyMessage.from_bytes(data)
    assert parsed == msg
    parsed.verify_signature(SIGNER.public_key)
    with pytest.raises(InvalidSignatureError):
        parsed.verify_signature(OTHER.public_key)


@pytest.mark.parametrize("index", [1, 5, -1, -64])
def test_tampered_sender_key_message_fails_signature_or_parse(index: int) -> None:
    data = bytearray(make_skm().to_bytes())
    data[index] ^= 0x04
    try:
        parsed = SenderKeyMessage.from_bytes(bytes(data))
    except DecodeError:
        return
    with pytest.raises(InvalidSignatureError):
        parsed.verify_signature(SIGNER.public_key)


@pytest.mark.parametrize("first", [0x22, 0x44, 0x43])
def test_sender_key_message_version(first: int) -> None:
    with pytest.raises(UnsupportedVersionError):
        SenderKeyMessage.from_bytes(bytes((first,)) + make_skm().to_bytes()[1:])


@pytest.mark.parametrize("field", ["distribution_uuid", "chain_id", "iteration", "ciphertext"])
def test_sender_key_message_required_fields(field: str) -> None:
    pb = wire_pb2.SenderKeyMessage()
    pb.ParseFromString(make_skm().to_bytes()[1:-64])
    pb.ClearField(field)
    with pytest.raises(DecodeError):
        SenderKeyMessage.from_bytes(b"\x33" + pb.SerializeToString() + bytes(64))


def test_sender_key_message_bad_uuid_and_short() -> None:
    pb = wire_pb2.SenderKeyMessage(
        distribution_uuid=b"x" * 15, chain_id=1, iteration=1, ciphertext=b""
    )
    with pytest.raises(DecodeError):
        SenderKeyMessage.from_bytes(b"\x33" + pb.SerializeToString() + bytes(64))
    with pytest.raises(DecodeError):
        SenderKeyMessage.from_bytes(b"\x33" + bytes(63))
    with pytest.raises(UsageError):
        make_skm(chain_id=-1)
    with pytest.raises(UsageError):
        make_skm(message_version=4)


def make_skdm(**kw: object) -> SenderKeyDistributionMessage:
    args: dict[str, object] = {
        "distribution_id": DIST,
        "chain_id": 42,
        "iteration": 0,
        "chain_key": bytes(range(32)),
        "signing_key": SIGNER.public_key,
    }
    args.update(kw)
    return SenderKeyDistributionMessage.new(**args)  # type: ignore[arg-type]


def test_distribution_message_round_trip_and_layout() -> None:
    msg = make_skdm()
    pb = wire_pb2.SenderKeyDistributionMessage(
        distribution_uuid=DIST.bytes,
        chain_id=42,
        iteration=0,
        chain_key=bytes(range(32)),
        signing_key=SIGNER.public_key.to_bytes(),
    )
    assert msg.to_bytes() == b"\x33" + pb.SerializeToString()
    assert SenderKeyDistributionMessage.from_bytes(msg.to_bytes()) == msg
    assert bytes(range(32)).hex() not in repr(msg)


@pytest.mark.parametrize(
    ("field", "value"), [("chain_key", bytes(31)), ("signing_key", b"\x05" * 32)]
)
def test_distribution_message_lengths(field: str, value: bytes) -> None:
    pb = wire_pb2.SenderKeyDistributionMessage()
    pb.ParseFromString(make_skdm().to_bytes()[1:])
    setattr(pb, field, value)
    with pytest.raises(DecodeError):
        SenderKeyDistributionMessage.from_bytes(b"\x33" + pb.SerializeToString())


@pytest.mark.parametrize(
    "field", ["distribution_uuid", "chain_id", "iteration", "chain_key", "signing_key"]
)
def test_distribution_message_required_fields(field: str) -> None:
    pb = wire_pb2.SenderKeyDistributionMessage()
    pb.ParseFromString(make_skdm().to_bytes()[1:])
    pb.ClearField(field)
    data = b"\x33" + pb.SerializeToString()
    with pytest.raises(DecodeError):
        SenderKeyDistributionMessage.from_bytes(data)


def test_distribution_message_version_and_misuse() -> None:
    with pytest.raises(UnsupportedVersionError):
        SenderKeyDistributionMessage.from_bytes(b"\x43" + make_skdm().to_bytes()[1:])
    with pytest.raises(DecodeError):
        SenderKeyDistributionMessage.from_bytes(b"\x33" + bytes(10))
    with pytest.raises(UsageError):
        make_skdm(chain_key=bytes(16))
