"""pq_ratchet framing (protocol/spqr/message.py): varints, limits, trailing bytes, bad input."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securemsg.errors import DecodeError, UnsupportedVersionError
from securemsg.protocol.spqr.message import (
    MessageType,
    SpqrMessage,
    decode_message,
    encode_message,
    encode_varint,
)

CHUNKED = [
    MessageType.HDR,
    MessageType.EK,
    MessageType.EK_CT1_ACK,
    MessageType.CT1,
    MessageType.CT2,
]

messages = st.one_of(
    st.builds(
        SpqrMessage,
        st.integers(1, 2**64 - 1),
        st.integers(0, 2**32 - 1),
        st.sampled_from([MessageType.NONE, MessageType.CT1_ACK]),
        st.none(),
        st.none(),
    ),
    st.builds(
        SpqrMessage,
        st.integers(1, 2**64 - 1),
        st.integers(0, 2**32 - 1),
        st.sampled_from(CHUNKED),
        st.integers(0, 65535),
        st.binary(min_size=32, max_size=32),
    ),
)


@settings(max_examples=150)
@given(messages, st.binary(max_size=8))
def test_round_trip_and_trailing_bytes_ignored(msg: SpqrMessage, trailer: bytes) -> None:
    data = encode_message(*msg)
    assert decode_message(data) == msg
    assert decode_message(data + trailer) == msg


@settings(max_examples=200)
@given(st.binary(max_size=60))
def test_any_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode_message(data)


def test_observed_first_messages() -> None:
    assert encode_message(1, 1, MessageType.NONE) == bytes.fromhex("01010100")
    m = encode_message(1, 1, MessageType.HDR, 0, bytes(32))
    assert m[:5] == bytes.fromhex("0101010100") and len(m) == 37


def test_varint_minimal_and_non_minimal_accepted() -> None:
    assert encode_varint(0) == b"\x00"
    assert encode_varint(127) == b"\x7f"
    assert encode_varint(128) == b"\x80\x01"
    assert encode_varint(300) == b"\xac\x02"
    assert decode_message(bytes.fromhex("01810001" + "00")) == SpqrMessage(1, 1, MessageType.NONE)
    big = decode_message(b"\x01" + encode_varint(2**64 - 1) + b"\x05\x00")
    assert big.epoch == 2**64 - 1 and big.key_index == 5


@pytest.mark.parametrize(
    "hex_data",
    [
        "0100010100",  # epoch 0
        "01",  # truncated
        "0101",  # no index
        "010101",  # no type
        "01010107",  # unknown type
        "01010101",  # chunked type without chunk
        "0101010100" + "00" * 31,  # 31 chunk bytes
        "01010101808004" + "00" * 32,  # chunk index 65536
        "0101" + "8080808010" + "00",  # index 2**32
        "01" + "ff" * 10 + "0100",  # varint longer than 10 bytes
    ],
)
def test_malformed_is_decode_error(hex_data: str) -> None:
    with pytest.raises(DecodeError):
        decode_message(bytes.fromhex(hex_data))


def test_chunk_index_65535_accepted() -> None:
    m = decode_message(bytes.fromhex("01010101ffff03") + bytes(32))
    assert m.chunk_index == 65535


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x02\x01\x01\x00"])
def test_not_v1_is_unsupported_version(data: bytes) -> None:
    with pytest.raises(UnsupportedVersionError):
        decode_message(data)


def _leb128(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


@pytest.mark.parametrize(
    "value", [0, 1, 0x7F, 0x80, 0x81, 0x3FFF, 0x4000, 0x4001, 2**21, 2**32 - 1]
)
def test_varint_fast_paths_agree_with_plain_leb128(value: int) -> None:
    assert encode_varint(value) == _leb128(value)
    epoch = max(value, 1)
    msg = SpqrMessage(epoch, value, MessageType.EK, value & 0xFFFF, bytes(range(32)))
    assert decode_message(encode_message(*msg)) == msg


def _reference_decode(data: bytes) -> SpqrMessage | None:
    """A plain, slow reading of the framing (None where decode_message must raise)."""

    def varint(at: int) -> tuple[int, int] | None:
        value = 0
        for i in range(10):
            if at + i >= len(data):
                return None
            value |= (data[at + i] & 0x7F) << (7 * i)
            if not data[at + i] & 0x80:
                return value & (2**64 - 1), at + i + 1
        return None

    if len(data) < 2 or data[0] != 1:
        return None
    got = varint(1)
    if got is None or got[0] == 0:
        return None
    epoch, at = got
    got = varint(at)
    if got is None or got[0] > 2**32 - 1:
        return None
    index, at = got
    if at >= len(data) or data[at] > 6:
        return None
    mtype = MessageType(data[at])
    if mtype not in CHUNKED:
        return SpqrMessage(epoch, index, mtype)
    got = varint(at + 1)
    if got is None or got[0] > 0xFFFF or got[1] + 32 > len(data):
        return None
    return SpqrMessage(epoch, index, mtype, got[0], data[got[1] : got[1] + 32])


# Varints as they arrive: minimal or padded with 0x80 continuation bytes, possibly truncated.
_raw_varint = st.builds(
    lambda v, pad, cut: (
        (_leb128(v)[:-1] + bytes([_leb128(v)[-1] | 0x80]) + b"\x80" * pad + b"\x00")
        if pad
        else _leb128(v)[: len(_leb128(v)) - cut]
    ),
    st.integers(0, 2**35),
    st.integers(0, 2),
    st.integers(0, 1),
)


@settings(max_examples=400)
@given(_raw_varint, _raw_varint, st.integers(0, 7), _raw_varint, st.binary(max_size=34))
def test_inline_varint_paths_agree_with_a_plain_reader(
    epoch: bytes, index: bytes, mtype: int, chunk_index: bytes, rest: bytes
) -> None:
    data = b"\x01" + epoch + index + bytes([mtype]) + chunk_index + rest
    expected = _reference_decode(data)
    if expected is None:
        with pytest.raises(DecodeError):
            decode_message(data)
    else:
        assert decode_message(data) == expected
