"""The linked-device and provisioning frames: round trips, lengths, hostile bytes."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securemsg._proto import relay_pb2
from securemsg.errors import DecodeError, UsageError
from securemsg.relay_protocol import frames as rf

EC = b"\x05" + b"e" * 32
KY = b"\x08" + b"k" * 1568
SIG = b"s" * 64
ACI = b"a" * 16
ADDR = b"p" * rf.PROVISIONING_ADDRESS_LENGTH


def _register(device_id: int, code: str) -> rf.Register:
    return rf.Register(
        ACI,
        device_id,
        42,
        EC,
        rf.SignedPreKey(1, EC, SIG),
        rf.SignedPreKey(2, KY, SIG),
        (),
        (),
        b"k" * 16,
        SIG,
        linking_code=code,
    )


CLIENT_FRAMES = [
    rf.ClientFrame(1, rf.OpenProvisioning()),
    rf.ClientFrame(2, rf.GetLinkingCode()),
    rf.ClientFrame(3, rf.SendProvisioning(ADDR, b"\x01envelope")),
    rf.ClientFrame(4, rf.SendProvisioning(ADDR, b"")),
    rf.ClientFrame(5, rf.RemoveDevice(2)),
    rf.ClientFrame(6, _register(0, "x" * rf.MAX_LINKING_CODE)),
    rf.ClientFrame(7, _register(3, "")),
]

SERVER_FRAMES: list[rf.ServerFrame] = [
    rf.ProvisionEnvelope(ADDR, b"envelope bytes"),
    rf.DeviceRemoved(),
    rf.Response(1, rf.StatusCode.OK, "", rf.ProvisioningAddress(ADDR, 2**63 - 1)),
    rf.Response(2, rf.StatusCode.OK, "", rf.LinkingCode("ABCD-efgh", 1234)),
    rf.Response(3, rf.StatusCode.OK, "", rf.Registered(5)),
]


@pytest.mark.parametrize("frame", CLIENT_FRAMES)
def test_device_client_frames_round_trip(frame: rf.ClientFrame) -> None:
    assert rf.decode_client_frame(rf.encode_client_frame(frame)) == frame


@pytest.mark.parametrize("frame", SERVER_FRAMES)
def test_device_server_frames_round_trip(frame: rf.ServerFrame) -> None:
    assert rf.decode_server_frame(rf.encode_server_frame(frame)) == frame


def test_register_without_linking_code_is_the_old_wire_form() -> None:
    # An old client's Register (no field 13) decodes to an empty code.
    old = _register(1, "")
    data = rf.encode_client_frame(rf.ClientFrame(1, old))
    pb = relay_pb2.ClientFrame()
    pb.ParseFromString(data)
    assert not pb.register.linking_code
    decoded = rf.decode_client_frame(data).body
    assert isinstance(decoded, rf.Register)
    assert decoded.linking_code == ""


@pytest.mark.parametrize("length", [0, 15, 17, 32])
def test_provisioning_address_of_the_wrong_length_is_refused(length: int) -> None:
    pb = relay_pb2.ClientFrame(request_id=1)
    pb.send_provisioning.address = b"a" * length
    pb.send_provisioning.envelope = b"e"
    with pytest.raises(DecodeError):
        rf.decode_client_frame(pb.SerializeToString())
    spb = relay_pb2.ServerFrame()
    spb.provision.address = b"a" * length
    with pytest.raises(DecodeError):
        rf.decode_server_frame(spb.SerializeToString())
    rpb = relay_pb2.ServerFrame()
    rpb.response.provisioning_address.address = b"a" * length
    with pytest.raises(DecodeError):
        rf.decode_server_frame(rpb.SerializeToString())
    with pytest.raises(UsageError):
        rf.encode_client_frame(rf.ClientFrame(1, rf.SendProvisioning(b"a" * length, b"e")))


@pytest.mark.parametrize("code", ["x" * (rf.MAX_LINKING_CODE + 1), "caf\u00e9"])
def test_linking_code_too_long_or_not_ascii_is_refused(code: str) -> None:
    pb = relay_pb2.ClientFrame(request_id=1)
    pb.register.CopyFrom(
        relay_pb2.ClientFrame.FromString(
            rf.encode_client_frame(rf.ClientFrame(1, _register(0, "")))
        ).register
    )
    pb.register.linking_code = code
    with pytest.raises(DecodeError):
        rf.decode_client_frame(pb.SerializeToString())
    rpb = relay_pb2.ServerFrame()
    rpb.response.linking_code.code = code
    with pytest.raises(DecodeError):
        rf.decode_server_frame(rpb.SerializeToString())
    with pytest.raises(UsageError):
        rf.encode_client_frame(rf.ClientFrame(1, _register(0, code)))
    with pytest.raises(UsageError):
        rf.encode_server_frame(rf.Response(1, rf.StatusCode.OK, "", rf.LinkingCode(code, 1)))


def test_encoders_check_types_and_ranges() -> None:
    with pytest.raises(UsageError):
        rf.encode_client_frame(rf.ClientFrame(1, rf.RemoveDevice(-1)))
    with pytest.raises(UsageError):
        rf.encode_client_frame(rf.ClientFrame(1, rf.SendProvisioning(ADDR, "text")))  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        rf.encode_server_frame(rf.ProvisionEnvelope(b"short", b""))
    with pytest.raises(UsageError):
        rf.encode_server_frame(rf.Response(1, rf.StatusCode.OK, "", rf.Registered(2**32)))
    with pytest.raises(UsageError):
        rf.encode_server_frame(
            rf.Response(1, rf.StatusCode.OK, "", rf.ProvisioningAddress(ADDR, -1))
        )


def test_repr_hides_envelopes_and_codes() -> None:
    assert "secret" not in repr(rf.SendProvisioning(ADDR, b"secret"))
    assert "secret" not in repr(rf.ProvisionEnvelope(ADDR, b"secret"))
    assert "secret" not in repr(rf.LinkingCode("secret", 1))
    assert "secret" not in repr(_register(0, "secret"))


@settings(max_examples=200, deadline=None)
@given(
    index=st.integers(min_value=0, max_value=len(CLIENT_FRAMES) - 1),
    position=st.integers(min_value=0),
    value=st.integers(min_value=0, max_value=255),
)
def test_mutated_device_frames_decode_or_raise_decode_error(
    index: int, position: int, value: int
) -> None:
    data = bytearray(rf.encode_client_frame(CLIENT_FRAMES[index]))
    data[position % len(data)] = value
    with contextlib.suppress(DecodeError):
        rf.decode_client_frame(bytes(data))
    sdata = bytearray(rf.encode_server_frame(SERVER_FRAMES[index % len(SERVER_FRAMES)]))
    sdata[position % len(sdata)] = value
    with contextlib.suppress(DecodeError):
        rf.decode_server_frame(bytes(sdata))
