"""Sync transcripts (Signal's SyncMessage.Sent) in securemsg's Content: field numbers, round
trips, and hostile bytes refused with typed errors."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securemsg._proto import content_pb2
from securemsg.errors import DecodeError, UnsupportedVersionError, UsageError
from securemsg.wire.content import (
    Content,
    GroupContext,
    SentTranscript,
    decode_content,
    decode_padded_content,
    encode_content,
    encode_padded_content,
)

BOB = str(uuid.UUID(int=2))
CAROL = str(uuid.UUID(int=3))


def _numbers(message: type) -> dict[str, int]:
    return {f.name: f.number for f in message.DESCRIPTOR.fields}  # type: ignore[attr-defined]


def test_field_numbers_are_signals() -> None:
    # SignalService.proto: Content.syncMessage is 2 there, but securemsg's Content has its own
    # numbering (2 is its timestamp): the sync message is field 7 of ours. Inside it, Signal's.
    assert _numbers(content_pb2.Content)["sync_message"] == 7
    assert _numbers(content_pb2.SyncMessage) == {"sent": 1}
    assert _numbers(content_pb2.SyncMessage.Sent) == {
        "destination_service_id": 7,
        "timestamp": 2,
        "message": 3,
        "unidentified_status": 5,
    }
    assert _numbers(content_pb2.SyncMessage.Sent.UnidentifiedDeliveryStatus) == {
        "destination_service_id": 3,
        "unidentified": 2,
    }


def test_one_to_one_and_group_transcripts_round_trip() -> None:
    one = Content(5, sync_sent=SentTranscript(BOB, 4, Content(4, "hi"), ((BOB, True),)))
    assert decode_padded_content(encode_padded_content(one)) == one
    group = GroupContext(bytes(range(16)), "g", (BOB, CAROL))
    many = Content(
        9,
        sync_sent=SentTranscript(None, 9, Content(9, "all", group), ((BOB, True), (CAROL, False))),
    )
    assert decode_content(encode_content(many)) == many


def test_transcript_text_stays_out_of_reprs() -> None:
    c = Content(5, sync_sent=SentTranscript(BOB, 4, Content(4, "secret words")))
    assert "secret" not in repr(c) and "secret" not in repr(c.sync_sent)


def test_constructor_refuses_misuse() -> None:
    inner = Content(1, sync_sent=SentTranscript(BOB, 1, Content(1, "x")))
    with pytest.raises(UsageError):
        SentTranscript(BOB, 1, inner)  # nested
    with pytest.raises(UsageError):
        Content(1, "text beside", sync_sent=SentTranscript(BOB, 1, Content(1, "x")))
    with pytest.raises(UsageError):
        SentTranscript(BOB, -1, Content(1, "x"))
    with pytest.raises(UsageError):
        SentTranscript(BOB, 1, Content(1, "x"), ((BOB, 1),))  # type: ignore[arg-type]


def _raw(mutate: object) -> bytes:
    pb = content_pb2.Content(version=1, timestamp=1)
    pb.sync_message.sent.timestamp = 1
    pb.sync_message.sent.destination_service_id = BOB
    pb.sync_message.sent.message.version = 1
    pb.sync_message.sent.message.text = "x"
    mutate(pb)  # type: ignore[operator]
    return pb.SerializeToString()


def _nest(pb: content_pb2.Content) -> None:
    inner = pb.sync_message.sent.message.sync_message.sent
    inner.timestamp = 1
    inner.message.version = 1


def _set(path: str, value: object) -> object:
    def mutate(pb: content_pb2.Content) -> None:
        *parents, last = path.split(".")
        target = pb
        for p in parents:
            target = getattr(target, p)
        setattr(target, last, value)

    return mutate


@pytest.mark.parametrize(
    "mutate",
    [
        _nest,
        _set("text", "beside"),
        _set("sender_key_distribution", b"k"),
        _set("sync_message.sent.destination_service_id", "not-a-uuid"),
        lambda pb: pb.sync_message.sent.ClearField("message"),
        lambda pb: pb.sync_message.ClearField("sent"),
        lambda pb: pb.sync_message.sent.unidentified_status.add(destination_service_id="?"),
    ],
)
def test_hostile_transcripts_are_refused(mutate: object) -> None:
    with pytest.raises(DecodeError):
        decode_content(_raw(mutate))


def test_inner_version_is_checked() -> None:
    with pytest.raises(UnsupportedVersionError):
        decode_content(_raw(_set("sync_message.sent.message.version", 2)))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_garbage_gives_typed_errors_only(data: bytes) -> None:
    with contextlib.suppress(DecodeError, UnsupportedVersionError):
        decode_content(data)
