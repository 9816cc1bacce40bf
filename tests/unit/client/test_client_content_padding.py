"""Content codec and Signal-style padding: round trips, size classes, hostile bytes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securemsg.errors import DecodeError, SecureMsgError, UnsupportedVersionError, UsageError
from securemsg.wire.content import (
    PADDING_BLOCK,
    Content,
    GroupContext,
    decode_content,
    decode_padded_content,
    encode_content,
    encode_padded_content,
    pad,
    unpad,
)

groups = st.builds(
    GroupContext,
    group_id=st.binary(min_size=16, max_size=16),
    title=st.text(max_size=40),
    members=st.lists(st.uuids().map(str), max_size=5).map(tuple),
)
contents = st.builds(
    Content,
    timestamp=st.integers(min_value=0, max_value=2**63 - 1),
    text=st.none() | st.text(max_size=400),
    group=st.none() | groups,
    sender_key_distribution=st.none() | st.binary(max_size=200),
    access_key=st.none() | st.binary(min_size=16, max_size=16),
)


@settings(max_examples=150)
@given(st.binary(max_size=1000))
def test_pad_gives_a_multiple_of_the_block_and_round_trips(data: bytes) -> None:
    padded = pad(data)
    assert len(padded) % PADDING_BLOCK == 0
    assert len(padded) > len(data)
    assert len(padded) - len(data) <= PADDING_BLOCK
    assert unpad(padded) == data


def test_lengths_in_one_block_look_alike() -> None:
    assert {len(pad(b"x" * n)) for n in range(PADDING_BLOCK)} == {PADDING_BLOCK}
    assert len(pad(b"x" * PADDING_BLOCK)) == 2 * PADDING_BLOCK


def test_unpad_accepts_signal_style_length() -> None:
    # Signal's senders pad to 160k - 1 bytes; the marker rule is what matters.
    assert unpad(b"hi" + b"\x80" + bytes(156)) == b"hi"


@pytest.mark.parametrize("bad", [b"", bytes(160), b"abc", b"abc\x01" + bytes(10)])
def test_unpad_refuses_a_missing_marker(bad: bytes) -> None:
    with pytest.raises(DecodeError):
        unpad(bad)


@settings(max_examples=150)
@given(contents)
def test_content_round_trips_padded_and_unpadded(content: Content) -> None:
    assert decode_content(encode_content(content)) == content
    padded = encode_padded_content(content)
    assert len(padded) % PADDING_BLOCK == 0
    assert decode_padded_content(padded) == content


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_hostile_bytes_give_only_typed_errors(data: bytes) -> None:
    for decoder in (decode_content, decode_padded_content, unpad):
        with contextlib.suppress(SecureMsgError):
            decoder(data)


def test_other_versions_are_refused() -> None:
    # field 1 (version) = 2, field 2 (timestamp) = 1
    with pytest.raises(UnsupportedVersionError) as info:
        decode_content(b"\x08\x02\x10\x01")
    assert info.value.version == 2


def test_bad_group_id_length_is_a_decode_error() -> None:
    # Content{version=1, group{id=b"x"}}
    with pytest.raises(DecodeError):
        decode_content(b"\x08\x01\x22\x03\x0a\x01x")


def test_invalid_utf8_text_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode_content(b"\x08\x01\x1a\x01\xff")


def test_constructor_checks_arguments() -> None:
    with pytest.raises(UsageError):
        Content(timestamp=-1)
    with pytest.raises(UsageError):
        GroupContext(b"short", "t", ())
    with pytest.raises(UsageError):
        encode_content("not content")  # type: ignore[arg-type]
