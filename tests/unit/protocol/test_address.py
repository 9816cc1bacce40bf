"""ServiceId and ProtocolAddress: parsing, binary forms, validation."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from securemsg.errors import DecodeError, UsageError
from securemsg.protocol.address import (
    ProtocolAddress,
    ServiceId,
    ServiceIdKind,
    serialize_addresses,
)

U = uuid.UUID("8c78cd2a-16ff-427d-83dc-1a5e36ce713d")


def test_string_forms() -> None:
    aci = ServiceId.aci(U)
    pni = ServiceId.pni(U)
    assert str(aci) == "8c78cd2a-16ff-427d-83dc-1a5e36ce713d"
    assert str(pni) == "PNI:8c78cd2a-16ff-427d-83dc-1a5e36ce713d"
    assert ServiceId.parse(str(aci)) == aci
    assert ServiceId.parse(str(pni)) == pni
    assert ServiceId.parse("PNI:8C78CD2A-16FF-427D-83DC-1A5E36CE713D") == pni


@pytest.mark.parametrize(
    "text",
    [
        "",
        "11",
        "8c78cd2a16ff427d83dc1a5e36ce713d",
        "{8c78cd2a-16ff-427d-83dc-1a5e36ce713d}",
        "urn:uuid:8c78cd2a-16ff-427d-83dc-1a5e36ce713d",
        "PNI:",
        "PNI:8c78cd2a16ff427d83dc1a5e36ce713d",
        "ACI:8c78cd2a-16ff-427d-83dc-1a5e36ce713d",
        "pni:8c78cd2a-16ff-427d-83dc-1a5e36ce713d",
        "8c78cd2a-16ff-427d-83dc-1a5e36ce713d\n",
        "8c78cd2a-16ff-427d-83dc-1a5e36ce713\u0661",
        "8c78cd2a-16ff-427d-83dc-1a5e36ce71-3",
    ],
)
def test_invalid_strings(text: str) -> None:
    assert ServiceId.try_parse(text) is None
    with pytest.raises(UsageError):
        ServiceId.parse(text)


def test_fixed_width() -> None:
    assert ServiceId.aci(U).to_fixed_width() == b"\x00" + U.bytes
    assert ServiceId.pni(U).to_fixed_width() == b"\x01" + U.bytes
    assert ServiceId.from_fixed_width(b"\x01" + U.bytes) == ServiceId.pni(U)
    for bad in (b"\x02" + U.bytes, U.bytes, b"\x00" + U.bytes + b"\x00"):
        with pytest.raises(DecodeError):
            ServiceId.from_fixed_width(bad)


@settings(max_examples=50)
@given(st.uuids(), st.sampled_from(ServiceIdKind))
def test_round_trips(value: uuid.UUID, kind: ServiceIdKind) -> None:
    sid = ServiceId(kind, value)
    assert ServiceId.parse(str(sid)) == sid
    assert ServiceId.from_fixed_width(sid.to_fixed_width()) == sid


def test_protocol_address() -> None:
    addr = ProtocolAddress(str(U), 3)
    assert str(addr) == str(U) + ".3"
    assert addr == ProtocolAddress(str(U), 3)
    assert len({addr, ProtocolAddress(str(U), 3)}) == 1
    assert addr.service_id() == ServiceId.aci(U)
    assert ProtocolAddress("+14155550100", 1).service_id() is None


@pytest.mark.parametrize("device", [0, 128, -1, True, 1.0, "1"])
def test_invalid_device_ids(device: object) -> None:
    with pytest.raises(UsageError):
        ProtocolAddress("alice", device)  # type: ignore[arg-type]


def test_valid_device_id_bounds() -> None:
    assert ProtocolAddress("a", 1).device_id == 1
    assert ProtocolAddress("a", 127).device_id == 127
    with pytest.raises(UsageError):
        ProtocolAddress(b"alice", 1)  # type: ignore[arg-type]


def test_serialize_addresses() -> None:
    other = uuid.UUID(int=5)
    sender = ProtocolAddress(str(U), 2)
    recipient = ProtocolAddress("PNI:" + str(other), 7)
    blob = serialize_addresses(sender, recipient)
    assert blob == b"\x00" + U.bytes + b"\x02" + b"\x01" + other.bytes + b"\x07"
    assert blob is not None and len(blob) == 36
    assert serialize_addresses(ProtocolAddress("bob", 1), recipient) is None
