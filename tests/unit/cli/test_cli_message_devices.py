"""chat/receive output: which device a message came from when the sender has several, and
messages we sent from another of our devices (transcripts) marked as ours."""

from __future__ import annotations

import io

from rich.console import Console

from securemsg.cli.main import _print_message
from securemsg.client import ReceivedMessage

ALICE = "00000000-0000-4000-8000-00000000000a"
BOB = "00000000-0000-4000-8000-00000000000b"


def _line(m: ReceivedMessage) -> str:
    out = io.StringIO()
    _print_message(Console(file=out, width=200), m)
    return out.getvalue().strip()


def _message(**kw: object) -> ReceivedMessage:
    fields: dict[str, object] = {
        "sender_aci": BOB,
        "sender_device": 1,
        "text": "hello",
        "sent_timestamp": 1,
        "server_timestamp": 2,
        "group_id": None,
        "group_title": None,
        "sealed": True,
        "envelope_id": b"\x00" * 16,
    }
    fields.update(kw)
    return ReceivedMessage(**fields)  # type: ignore[arg-type]


def test_a_single_device_sender_shows_no_device() -> None:
    assert _line(_message()) == f"{BOB}: hello  (sealed)"


def test_a_sender_with_several_devices_shows_which() -> None:
    assert (
        _line(_message(sender_device=2, sender_devices=2)) == f"{BOB} (device 2): hello  (sealed)"
    )


def test_a_transcript_reads_as_ours() -> None:
    line = _line(_message(sender_aci=ALICE, sender_devices=2, transcript=True, destination_aci=BOB))
    assert line == f"you (device 1) -> {BOB}: hello  (sent from your other device)"
    group = _line(
        _message(
            sender_aci=ALICE,
            sender_device=3,
            sender_devices=3,
            transcript=True,
            group_id=b"g" * 16,
            group_title="trio",
        )
    )
    assert group == "you (device 3) [trio]: hello  (sent from your other device)"
