"""The retry-request codec (DecryptionErrorMessage, PlaintextContent): exact bytes and hostile
input (typed errors only). Interop with libsignal is in tests/interop/."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from securemsg.crypto.curve25519 import KeyPair
from securemsg.crypto.rng import SystemRng
from securemsg.errors import DecodeError, InvalidKeyError, UsageError
from securemsg.wire.content import (
    DecryptionErrorMessage,
    decryption_error_from_plaintext,
    plaintext_content_for,
)
from securemsg.wire.messages import CiphertextMessageType, PlaintextContent


def test_bytes_are_libsignals_layout() -> None:
    key = KeyPair.generate(SystemRng()).public_key
    dem = DecryptionErrorMessage.new(123, 1, key)
    # ratchet_key (1), timestamp (2), device_id (3), in field order as prost writes them
    assert dem.to_bytes() == b"\x0a\x21" + key.to_bytes() + b"\x10\x7b\x18\x01"
    pc = plaintext_content_for(dem)
    assert pc.to_bytes() == b"\xc0\x42\x27" + dem.to_bytes() + b"\x80"
    assert decryption_error_from_plaintext(pc) == dem
    assert DecryptionErrorMessage.from_bytes(dem.to_bytes()) == dem


def test_for_original_refuses_plaintext_and_unparsable_originals() -> None:
    with pytest.raises(UsageError):
        DecryptionErrorMessage.for_original(b"", CiphertextMessageType.PLAINTEXT, 1, 1)
    with pytest.raises(DecodeError):
        DecryptionErrorMessage.for_original(b"\x44junk", CiphertextMessageType.WHISPER, 1, 1)
    sk = DecryptionErrorMessage.for_original(b"", CiphertextMessageType.SENDERKEY, 5, 2)
    assert (sk.ratchet_key, sk.timestamp, sk.device_id) == (None, 5, 2)


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", DecodeError),  # no timestamp
        (b"\x18\x01", DecodeError),  # device id only
        (b"\xff\xff", DecodeError),  # not protobuf
        (b"\x0a\x02\x05\x00\x10\x01", InvalidKeyError),  # a short ratchet key
    ],
)
def test_hostile_dem_bytes_get_typed_errors(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        DecryptionErrorMessage.from_bytes(data)


@pytest.mark.parametrize(
    "data",
    [b"\xc0", b"\xc0\x42\x04\x10\x7b\x18\x01", b"\xc0\x0a\x00\x80", b"\xc0\xff\xff\x80"],
)
def test_plaintext_content_without_a_request_is_refused(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decryption_error_from_plaintext(PlaintextContent.from_bytes(data))


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_the_taxonomy(data: bytes) -> None:
    for parse in (
        DecryptionErrorMessage.from_bytes,
        lambda d: decryption_error_from_plaintext(PlaintextContent.from_bytes(b"\xc0" + d)),
    ):
        with contextlib.suppress(DecodeError, InvalidKeyError):
            parse(data)
