"""The ProvisionMessage / ProvisionEnvelope codec: types checked on the way out, framing and
UTF-8 on the way in (securemsg.wire.provisioning)."""

from __future__ import annotations

import pytest

from securemsg.errors import DecodeError, UsageError
from securemsg.wire import provisioning as codec


def test_round_trip_of_every_field() -> None:
    fields = codec.ProvisionMessageFields(
        aciIdentityKeyPublic=b"\x05" + bytes(32),
        aciIdentityKeyPrivate=bytes(32),
        pniIdentityKeyPublic=b"p",
        pniIdentityKeyPrivate=b"q",
        aci="a",
        pni="b",
        number="+1",
        provisioningCode="code",
        userAgent="ua",
        profileKey=bytes(32),
        readReceipts=False,
        provisioningVersion=0,
        masterKey=b"m",
        ephemeralBackupKey=b"e",
        accountEntropyPool="pool",
        mediaRootBackupKey=b"r",
        aciBinary=bytes(16),
        pniBinary=bytes(16),
        authCredentialSalt=b"s",
        securemsgAccessKey=bytes(16),
        securemsgTrustRoot=b"t",
        securemsgRelayUrl="ws://x",
    )
    assert codec.decode_provision_message(codec.encode_provision_message(fields)) == fields
    assert codec.decode_provision_message(b"") == codec.ProvisionMessageFields()


@pytest.mark.parametrize(
    "overrides",
    [
        {"aciIdentityKeyPrivate": "not bytes"},
        {"aci": b"not a str"},
        {"userAgent": "\ud800"},
        {"provisioningVersion": -1},
        {"provisioningVersion": 2**32},
        {"provisioningVersion": True},
    ],
    ids=repr,
)
def test_wrong_types_are_usage_errors(overrides: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        codec.encode_provision_message(codec.ProvisionMessageFields(**overrides))  # type: ignore[arg-type]


@pytest.mark.parametrize("data", ["text", None, 7])
def test_decoders_want_bytes(data: object) -> None:
    with pytest.raises(DecodeError):
        codec.decode_provision_message(data)  # type: ignore[arg-type]
    with pytest.raises(DecodeError):
        codec.decode_provision_envelope(data)  # type: ignore[arg-type]


def test_envelope_fields_may_be_absent() -> None:
    assert codec.decode_provision_envelope(b"") == codec.ProvisionEnvelopeFields(None, None)
    assert codec.decode_provision_envelope(bytearray(b"\x0a\x01\x05")).public_key == b"\x05"
    with pytest.raises(DecodeError):
        codec.decode_provision_envelope(b"\x0a\x05\x05")  # a length past the end
