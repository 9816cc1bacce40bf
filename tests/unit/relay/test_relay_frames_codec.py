"""The relay frame codec: round trips, and hostile bytes only ever raise DecodeError."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securemsg.errors import DecodeError, UsageError
from securemsg.relay_protocol import frames as rf

EC = b"\x05" + b"e" * 32
KY = b"\x08" + b"k" * 1568
SIG = b"s" * 64
ACI = b"a" * 16

CLIENT_FRAMES = [
    rf.ClientFrame(1, rf.Authenticate(ACI, 1, SIG)),
    rf.ClientFrame(
        2,
        rf.Register(
            ACI,
            1,
            42,
            EC,
            rf.SignedPreKey(1, EC, SIG),
            rf.SignedPreKey(2, KY, SIG),
            (rf.OneTimePreKey(3, EC),),
            (rf.SignedPreKey(4, KY, SIG),),
            b"k" * 16,
            SIG,
        ),
    ),
    rf.ClientFrame(
        3, rf.UploadPreKeys((rf.OneTimePreKey(5, EC),), (), rf.SignedPreKey(6, EC, SIG))
    ),
    rf.ClientFrame(4, rf.GetPreKeyCounts()),
    rf.ClientFrame(5, rf.RotateSignedPreKey(rf.SignedPreKey(7, EC, SIG))),
    rf.ClientFrame(6, rf.FetchBundles(ACI, 0)),
    rf.ClientFrame(7, rf.GetDevices(ACI)),
    rf.ClientFrame(8, rf.SendMessage(ACI, 99, (rf.OutgoingMessage(1, 2, 3, b"body"),))),
    rf.ClientFrame(9, rf.SendSealed(ACI, b"k" * 16, 5, (rf.OutgoingMessage(1, 2, 0, b"x"),))),
    rf.ClientFrame(
        10, rf.SendMultiRecipient(b"\x23payload", (rf.RecipientAccess(ACI, b"k" * 16),), 1)
    ),
    rf.ClientFrame(11, rf.Ack((b"i" * 16, b"j" * 16))),
    rf.ClientFrame(12, rf.GetSenderCertificate()),
    rf.ClientFrame(2**64 - 1, rf.GetServerTrustRoot()),
]

SERVER_FRAMES: list[rf.ServerFrame] = [
    rf.Challenge(b"n" * 32),
    rf.QueueEmpty(),
    rf.Envelope(b"i" * 16, 6, None, 0, 1, 2, b"sealed"),
    rf.Envelope(b"i" * 16, 1, ACI, 3, 4, 5, b"identified"),
    rf.Response(1, rf.StatusCode.OK),
    rf.Response(
        2,
        rf.StatusCode.CONFLICT,
        "device mismatch",
        rf.SendResult((rf.MismatchedDevices(ACI, (1,), (2,), (3,)),)),
    ),
    rf.Response(3, rf.StatusCode.OK, "", rf.PreKeyCounts(4, 5)),
    rf.Response(4, rf.StatusCode.OK, "", rf.Devices(EC, (rf.DeviceInfo(1, 77),))),
    rf.Response(5, rf.StatusCode.OK, "", rf.SenderCertificateResponse(b"cert")),
    rf.Response(6, rf.StatusCode.OK, "", rf.ServerTrustRoot(EC, b"servercert")),
    rf.Response(
        7,
        rf.StatusCode.OK,
        "",
        rf.Bundles(
            (
                rf.DeviceBundle(
                    1,
                    2,
                    EC,
                    rf.SignedPreKey(1, EC, SIG),
                    rf.OneTimePreKey(2, EC),
                    rf.SignedPreKey(3, KY, SIG),
                    False,
                ),
                rf.DeviceBundle(
                    2, 3, EC, rf.SignedPreKey(1, EC, SIG), None, rf.SignedPreKey(9, KY, SIG), True
                ),
            )
        ),
    ),
]


@pytest.mark.parametrize("frame", CLIENT_FRAMES, ids=lambda f: type(f.body).__name__)
def test_client_frames_round_trip(frame: rf.ClientFrame) -> None:
    assert rf.decode_client_frame(rf.encode_client_frame(frame)) == frame
    assert rf.request_id_of(rf.encode_client_frame(frame)) == frame.request_id


@pytest.mark.parametrize("frame", SERVER_FRAMES, ids=lambda f: type(f).__name__)
def test_server_frames_round_trip(frame: rf.ServerFrame) -> None:
    assert rf.decode_server_frame(rf.encode_server_frame(frame)) == frame


def test_unknown_request_decodes_to_no_body_and_empty_server_frame_is_refused() -> None:
    assert rf.decode_client_frame(b"\x08\x07\x9a\x06\x01x") == rf.ClientFrame(7, None)
    assert rf.decode_client_frame(b"") == rf.ClientFrame(0, None)
    with pytest.raises(DecodeError):
        rf.decode_server_frame(b"")


def test_wrong_lengths_and_oversized_frames_are_decode_errors() -> None:
    bad_aci = rf.encode_client_frame(rf.ClientFrame(1, rf.GetDevices(ACI)))
    with pytest.raises(DecodeError):
        rf.decode_client_frame(bad_aci.replace(ACI, ACI[:15] + b"", 1)[:-1])
    with pytest.raises(DecodeError):
        rf.decode_client_frame(b"\x00" * (rf.MAX_FRAME_SIZE + 1))
    with pytest.raises(DecodeError):
        rf.decode_client_frame("text")  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        rf.encode_client_frame(rf.ClientFrame(1, rf.GetDevices(b"short")))
    with pytest.raises(UsageError):
        rf.auth_message(b"n" * 31, ACI, 1)
    assert rf.auth_message(b"n" * 32, ACI, 258).endswith(ACI + b"\x00\x00\x01\x02")


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    for decode in (rf.decode_client_frame, rf.decode_server_frame):
        with contextlib.suppress(DecodeError):
            decode(data)
    assert isinstance(rf.request_id_of(data), int)


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(range(len(CLIENT_FRAMES) + len(SERVER_FRAMES))),
    st.integers(min_value=0, max_value=10_000),
    st.binary(min_size=1, max_size=8),
    st.booleans(),
)
def test_mutated_frames_decode_or_raise_decode_error(
    which: int, pos: int, junk: bytes, truncate: bool
) -> None:
    frames: list[bytes] = [rf.encode_client_frame(f) for f in CLIENT_FRAMES]
    frames += [rf.encode_server_frame(f) for f in SERVER_FRAMES]
    data = frames[which]
    pos %= len(data) + 1
    data = data[:pos] if truncate else data[:pos] + junk + data[pos + len(junk) :]
    for decode in (rf.decode_client_frame, rf.decode_server_frame):
        with contextlib.suppress(DecodeError):
            decode(data)
