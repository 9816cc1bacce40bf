"""Decoders turn protobuf's own refusal into DecodeError, and nothing else.

A bug under a decoder (here: the generated class raising AttributeError) must surface as the
bug it is, not be disguised as a peer's malformed bytes. And bytes that protobuf accepts but
that do not make sense (a proto2 string that is not UTF-8) are refused explicitly.
"""

from __future__ import annotations

import types
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from securemsg._proto import sealed_sender_pb2
from securemsg.errors import DecodeError
from securemsg.records import key_storage as wire_keys
from securemsg.records import sender_key_storage as wire_sender_keys
from securemsg.wire import fingerprint as wire_fingerprint
from securemsg.wire import messages as wire_messages
from securemsg.wire import sealed_sender as wire_sealed


class _Buggy:
    """Stands in for a generated protobuf class whose parser has a bug."""

    def ParseFromString(self, data: bytes) -> int:
        raise AttributeError("a bug, not bad input")

    @classmethod
    def FromString(cls, data: bytes) -> Any:
        raise AttributeError("a bug, not bad input")


def _ns(**names: type) -> types.SimpleNamespace:
    return types.SimpleNamespace(**names)


_TRUNCATED = b"\x0a\xff"  # a length-delimited field that claims 255 bytes: not protobuf
_LONG = bytes([0x44]) + _TRUNCATED + bytes(8)  # a version byte we accept, then a bad body
_SK = bytes([0x33]) + _TRUNCATED + bytes(64)

CASES: list[tuple[str, Any, str, Any, Callable[[], object]]] = [
    (
        "SignalMessage",
        wire_messages,
        "_SignalMessagePb",
        _Buggy,
        lambda: wire_messages.SignalMessage.from_bytes(_LONG),
    ),
    (
        "PreKeySignalMessage",
        wire_messages,
        "_PreKeySignalMessagePb",
        _Buggy,
        lambda: wire_messages.PreKeySignalMessage.from_bytes(_LONG),
    ),
    (
        "SenderKeyMessage",
        wire_messages,
        "_SenderKeyMessagePb",
        _Buggy,
        lambda: wire_messages.SenderKeyMessage.from_bytes(_SK),
    ),
    (
        "SenderKeyDistributionMessage",
        wire_messages,
        "_SenderKeyDistributionMessagePb",
        _Buggy,
        lambda: wire_messages.SenderKeyDistributionMessage.from_bytes(_SK),
    ),
    (
        "CombinedFingerprints",
        wire_fingerprint,
        "fingerprint_pb2",
        _ns(CombinedFingerprints=_Buggy),
        lambda: wire_fingerprint.decode_combined(_TRUNCATED),
    ),
    (
        "ServerCertificate",
        wire_sealed,
        "sealed_sender_pb2",
        _ns(ServerCertificate=_Buggy, SenderCertificate=_Buggy),
        lambda: wire_sealed.decode_server_certificate(_TRUNCATED),
    ),
    (
        "SenderKeyRecord",
        wire_sender_keys,
        "sender_key_pb2",
        _ns(SenderKeyRecordStructure=_Buggy),
        lambda: wire_sender_keys.decode_sender_key_record(_TRUNCATED),
    ),
    (
        "IdentityKeyPair",
        wire_keys,
        "storage_pb2",
        _ns(IdentityKeyPairStructure=_Buggy),
        lambda: wire_keys.decode_identity_key_pair(_TRUNCATED),
    ),
]


@pytest.mark.parametrize(
    ("label", "module", "name", "fake", "decode"), CASES, ids=[c[0] for c in CASES]
)
def test_a_bug_under_a_decoder_propagates(
    monkeypatch: pytest.MonkeyPatch,
    label: str,
    module: Any,
    name: str,
    fake: Any,
    decode: Callable[[], object],
) -> None:
    monkeypatch.setattr(module, name, fake)
    with pytest.raises(AttributeError, match="a bug"):
        decode()


@pytest.mark.parametrize(
    ("label", "module", "name", "fake", "decode"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_protobuf_is_still_a_decode_error(
    label: str, module: Any, name: str, fake: Any, decode: Callable[[], object]
) -> None:
    # the same inputs, with the real generated classes: protobuf refuses them
    with pytest.raises(DecodeError):
        decode()


def _certificate_with(**fields: Any) -> bytes:
    c = sealed_sender_pb2.SenderCertificate.Certificate(
        senderDevice=1, expires=1, identityKey=b"\x05" + bytes(32), id=7, **fields
    )
    inner = c.SerializeToString()
    return sealed_sender_pb2.SenderCertificate(
        certificate=inner, signature=bytes(64)
    ).SerializeToString()


def _raw_string_field(number: int, value: bytes) -> bytes:
    return bytes([(number << 3) | 2, len(value)]) + value


def test_a_sender_certificate_string_that_is_not_utf8_is_a_decode_error() -> None:
    good = _certificate_with(uuidString=str(uuid.UUID(int=1)))
    assert wire_sealed.decode_sender_certificate(good).sender_uuid == str(uuid.UUID(int=1))
    for number, extra in ((6, {}), (1, {"uuidString": str(uuid.UUID(int=1))})):
        inner = sealed_sender_pb2.SenderCertificate.Certificate(
            senderDevice=1, expires=1, identityKey=b"\x05" + bytes(32), id=7, **extra
        ).SerializeToString() + _raw_string_field(number, b"\xff\xfe")  # field 6 uuid, 1 e164
        data = sealed_sender_pb2.SenderCertificate(
            certificate=inner, signature=bytes(64)
        ).SerializeToString()
        with pytest.raises(DecodeError, match="UTF-8"):
            wire_sealed.decode_sender_certificate(data)
