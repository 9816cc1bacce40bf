"""SignalMessage / PreKeySignalMessage framing, MAC, versions and protobuf tolerance."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securemsg._proto import wire_pb2
from securemsg.crypto.curve25519 import KeyPair
from securemsg.crypto.rng import DeterministicRng
from securemsg.errors import DecodeError, InvalidKeyError, UnsupportedVersionError, UsageError
from securemsg.wire.messages import (
    CiphertextMessageType,
    PlaintextContent,
    PreKeySignalMessage,
    SignalMessage,
)

RNG = DeterministicRng(b"wire-tests")
RATCHET = KeyPair.generate(RNG).public_key
BASE = KeyPair.generate(RNG).public_key
IDENTITY = KeyPair.generate(RNG).public_key
SENDER = KeyPair.generate(RNG).public_key.to_bytes()
RECEIVER = KeyPair.generate(RNG).public_key.to_bytes()
MAC_KEY = bytes(range(32))


def varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def ld(field: int, value: bytes) -> bytes:
    return varint(field << 3 | 2) + varint(len(value)) + value


def vi(field: int, value: int) -> bytes:
    return varint(field << 3) + varint(value)


def with_mac(body: bytes) -> bytes:
    framed = b"\x44" + body
    return framed + hmac.digest(MAC_KEY, SENDER + RECEIVER + framed, hashlib.sha256)[:8]


def make(**kw: object) -> SignalMessage:
    args: dict[str, object] = {
        "message_version": 4,
        "mac_key": MAC_KEY,
        "sender_identity": SENDER,
        "receiver_identity": RECEIVER,
        "ratchet_key": RATCHET,
        "counter": 7,
        "previous_counter": 3,
        "ciphertext": b"\x01" * 48,
        "pq_ratchet": b"\x01\x01\x01\x00",
    }
    args.update(kw)
    return SignalMessage.new(**args)  # type: ignore[arg-type]


def test_message_type_values_match_libsignal() -> None:
    assert [int(t) for t in CiphertextMessageType] == [2, 3, 7, 8]


def test_exact_layout_fields_in_number_order_and_mac() -> None:
    msg = make(counter=0, previous_counter=0, pq_ratchet=b"")
    body = ld(1, RATCHET.to_bytes()) + vi(2, 0) + vi(3, 0) + ld(4, b"\x01" * 48)
    assert msg.to_bytes() == with_mac(body)


def test_optional_fields_are_emitted_after_required_ones() -> None:
    msg = make(addresses=b"\xaa" * 36)
    body = (
        ld(1, RATCHET.to_bytes())
        + vi(2, 7)
        + vi(3, 3)
        + ld(4, b"\x01" * 48)
        + ld(5, b"\x01\x01\x01\x00")
        + ld(6, b"\xaa" * 36)
    )
    assert msg.serialized == with_mac(body)


def test_round_trip_and_mac_verifies() -> None:
    msg = make(addresses=b"\x00" * 36)
    parsed = SignalMessage.from_bytes(msg.to_bytes())
    assert parsed == msg
    assert parsed.verify_mac(SENDER, RECEIVER, MAC_KEY)


def test_absent_optional_fields_parse_to_defaults() -> None:
    parsed = SignalMessage.from_bytes(with_mac(ld(1, RATCHET.to_bytes()) + vi(2, 1) + ld(4, b"")))
    assert (parsed.previous_counter, parsed.pq_ratchet, parsed.addresses) == (0, b"", None)


@pytest.mark.parametrize("index", [0, 1, 10, 40, 60, -9, -1])
def test_any_flipped_bit_fails_the_mac_or_the_parse(index: int) -> None:
    data = bytearray(make().serialized)
    data[index] ^= 0x01
    try:
        parsed = SignalMessage.from_bytes(bytes(data))
    except (DecodeError, InvalidKeyError):
        return
    assert not parsed.verify_mac(SENDER, RECEIVER, MAC_KEY)


def test_mac_depends_on_identities_and_key() -> None:
    msg = make()
    assert not msg.verify_mac(RECEIVER, SENDER, MAC_KEY)
    assert not msg.verify_mac(SENDER, RECEIVER, bytes(32))


@pytest.mark.parametrize("first", [0x33, 0x34, 0x24, 0x54, 0xF4, 0x04])
def test_versions_other_than_4_are_refused(first: int) -> None:
    data = bytes((first,)) + make().serialized[1:]
    with pytest.raises(UnsupportedVersionError) as info:
        SignalMessage.from_bytes(data)
    assert info.value.version == first >> 4


def test_low_nibble_is_ignored_like_libsignal() -> None:
    data = b"\x43" + make().serialized[1:]
    assert SignalMessage.from_bytes(data).counter == 7


@pytest.mark.parametrize(
    "body",
    [
        vi(2, 1) + ld(4, b"x"),  # no ratchet key
        ld(1, RATCHET.to_bytes()) + ld(4, b"x"),  # no counter
        ld(1, RATCHET.to_bytes()) + vi(2, 1),  # no ciphertext
        ld(1, RATCHET.to_bytes()) + ld(2, b"\x01") + ld(4, b"x"),  # counter with wrong wire type
    ],
)
def test_missing_required_fields_are_decode_errors(body: bytes) -> None:
    with pytest.raises(DecodeError):
        SignalMessage.from_bytes(with_mac(body))


def test_short_and_truncated_inputs() -> None:
    with pytest.raises(DecodeError):
        SignalMessage.from_bytes(b"\x44" + b"\x00" * 7)
    with pytest.raises(DecodeError):
        SignalMessage.from_bytes(with_mac(ld(1, RATCHET.to_bytes())[:-3]))


def test_bad_ratchet_key_is_invalid_key() -> None:
    body = ld(1, b"\x07" + bytes(32)) + vi(2, 1) + ld(4, b"x")
    with pytest.raises(InvalidKeyError):
        SignalMessage.from_bytes(with_mac(body))


def test_unknown_fields_reordering_and_last_wins_are_accepted() -> None:
    other = KeyPair.generate(RNG).public_key
    body = (
        vi(99, 5)
        + ld(4, b"old")
        + vi(2, 1)
        + ld(1, other.to_bytes())
        + ld(1, RATCHET.to_bytes())
        + ld(4, b"new")
        + ld(77, b"junk")
        + vi(2, 9)
    )
    parsed = SignalMessage.from_bytes(with_mac(body))
    assert (parsed.ratchet_key, parsed.counter, parsed.ciphertext) == (RATCHET, 9, b"new")
    assert parsed.verify_mac(SENDER, RECEIVER, MAC_KEY)
    assert parsed.serialized == with_mac(body)


@pytest.mark.parametrize(
    "kw",
    [
        {"message_version": 3},
        {"mac_key": b"short"},
        {"sender_identity": b"\x05" * 32},
        {"counter": -1},
        {"counter": 2**32},
        {"previous_counter": 2**32},
        {"ciphertext": "text"},
    ],
)
def test_new_refuses_misuse(kw: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        make(**kw)


@settings(max_examples=100)
@given(
    counter=st.integers(0, 2**32 - 1),
    previous=st.integers(0, 2**32 - 1),
    ciphertext=st.binary(max_size=200),
    pq=st.binary(max_size=80),
    addresses=st.none() | st.binary(max_size=40),
)
def test_encoding_equals_protobuf_and_round_trips(
    counter: int, previous: int, ciphertext: bytes, pq: bytes, addresses: bytes | None
) -> None:
    msg = make(
        counter=counter,
        previous_counter=previous,
        ciphertext=ciphertext,
        pq_ratchet=pq,
        addresses=addresses,
    )
    pb = wire_pb2.SignalMessage(
        ratchet_key=RATCHET.to_bytes(),
        counter=counter,
        previous_counter=previous,
        ciphertext=ciphertext,
    )
    if pq:
        pb.pq_ratchet = pq
    if addresses is not None:
        pb.addresses = addresses
    assert msg.serialized == with_mac(pb.SerializeToString())
    assert SignalMessage.from_bytes(msg.serialized) == msg


# -- PreKeySignalMessage ----------------------------------------------------------------------


def make_prekey(**kw: object) -> PreKeySignalMessage:
    args: dict[str, object] = {
        "message_version": 4,
        "registration_id": 1234,
        "pre_key_id": 17,
        "signed_pre_key_id": 5,
        "kyber_pre_key_id": 9,
        "kyber_ciphertext": b"\x08" + b"\x33" * 1568,
        "base_key": BASE,
        "identity_key": IDENTITY,
        "message": make(),
    }
    args.update(kw)
    return PreKeySignalMessage.new(**args)  # type: ignore[arg-type]


def test_prekey_exact_layout_in_field_number_order() -> None:
    msg = make_prekey()
    body = (
        vi(1, 17)
        + ld(2, BASE.to_bytes())
        + ld(3, IDENTITY.to_bytes())
        + ld(4, make().serialized)
        + vi(5, 1234)
        + vi(6, 5)
        + vi(7, 9)
        + ld(8, b"\x08" + b"\x33" * 1568)
    )
    assert msg.to_bytes() == b"\x44" + body


def test_prekey_round_trip_with_and_without_one_time_prekey() -> None:
    for pre_key_id in (17, 0, None):
        msg = make_prekey(pre_key_id=pre_key_id)
        parsed = PreKeySignalMessage.from_bytes(msg.to_bytes())
        assert parsed == msg
        assert parsed.pre_key_id == pre_key_id
        assert parsed.message.verify_mac(SENDER, RECEIVER, MAC_KEY)


def _prekey_pb() -> wire_pb2.PreKeySignalMessage:
    pb = wire_pb2.PreKeySignalMessage()
    pb.ParseFromString(make_prekey().serialized[1:])
    return pb


@pytest.mark.parametrize(
    "field",
    [
        "base_key",
        "identity_key",
        "message",
        "signed_pre_key_id",
        "kyber_pre_key_id",
        "kyber_ciphertext",
    ],
)
def test_prekey_required_fields(field: str) -> None:
    pb = _prekey_pb()
    pb.ClearField(field)
    with pytest.raises(DecodeError):
        PreKeySignalMessage.from_bytes(b"\x44" + pb.SerializeToString())


def test_prekey_missing_registration_id_defaults_to_zero() -> None:
    pb = _prekey_pb()
    pb.ClearField("registration_id")
    assert PreKeySignalMessage.from_bytes(b"\x44" + pb.SerializeToString()).registration_id == 0


@pytest.mark.parametrize("first", [0x33, 0x23, 0x54])
def test_prekey_versions_other_than_4_are_refused(first: int) -> None:
    with pytest.raises(UnsupportedVersionError):
        PreKeySignalMessage.from_bytes(bytes((first,)) + make_prekey().serialized[1:])


def test_prekey_inner_message_version_is_checked() -> None:
    pb = _prekey_pb()
    pb.message = b"\x34" + pb.message[1:]
    with pytest.raises(UnsupportedVersionError):
        PreKeySignalMessage.from_bytes(b"\x44" + pb.SerializeToString())


def test_prekey_empty_and_bad_keys() -> None:
    with pytest.raises(DecodeError):
        PreKeySignalMessage.from_bytes(b"")
    pb = _prekey_pb()
    pb.base_key = b"\x05" + bytes(10)
    with pytest.raises(InvalidKeyError):
        PreKeySignalMessage.from_bytes(b"\x44" + pb.SerializeToString())


def test_prekey_new_refuses_misuse() -> None:
    with pytest.raises(UsageError):
        make_prekey(message_version=3)
    with pytest.raises(UsageError):
        make_prekey(registration_id=-1)
    with pytest.raises(UsageError):
        make_prekey(pre_key_id=2**32)


def test_repr_shows_no_bytes() -> None:
    text = repr(make_prekey()) + repr(make())
    assert MAC_KEY.hex() not in text
    assert "\\x" not in text


# -- PlaintextContent -------------------------------------------------------------------------


def test_plaintext_content_framing() -> None:
    framed = PlaintextContent.from_content(b"\x42\x00")
    assert framed.to_bytes() == b"\xc0\x42\x00\x80"
    assert PlaintextContent.from_bytes(framed.to_bytes()).body == b"\x42\x00\x80"
    for bad in (b"", b"\x44abc"):
        with pytest.raises(DecodeError):
            PlaintextContent.from_bytes(bad)


def test_from_bytes_refuses_non_bytes() -> None:
    with pytest.raises(UsageError):
        SignalMessage.from_bytes("44")  # type: ignore[arg-type]
    assert SignalMessage.from_bytes(bytearray(make().serialized)) == make()  # type: ignore[arg-type]
