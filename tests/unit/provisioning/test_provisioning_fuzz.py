"""Hostile provisioning bytes (Hypothesis): a ProvisionData or a ProvisioningError, nothing else.

Arbitrary envelopes, mutations of a valid one (flips, truncations, insertions, splices), and
arbitrary plaintexts under a valid cipher (what a primary that holds the key could send).
"""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from securemsg.crypto.rng import DeterministicRng
from securemsg.errors import ProvisioningError, UsageError
from securemsg.protocol.identity_and_prekeys import IdentityKeyPair
from securemsg.provisioning import (
    ProvisionData,
    ProvisioningReceiver,
    decrypt_provision_envelope,
    encrypt_provision_message,
    open_provision,
    provisioning_key_pair,
    seal_provision,
)
from securemsg.wire import provisioning as codec

RNG = DeterministicRng(b"provisioning fuzz")
PAIR = provisioning_key_pair(RNG)
IDENTITY = IdentityKeyPair.generate(RNG)
DATA = ProvisionData(
    identity=IDENTITY,
    aci=str(uuid.UUID(int=7)),
    provisioning_code="code",
    access_key=bytes(16),
)
VALID = seal_provision(DATA, PAIR.public_key, RNG)


def _open(envelope: bytes) -> ProvisionData | None:
    try:
        return open_provision(envelope, PAIR)
    except ProvisioningError:
        return None


@given(st.binary(max_size=600))
def test_arbitrary_envelopes(envelope: bytes) -> None:
    assert _open(envelope) is None  # never an unsealed message out of random bytes


@st.composite
def _mutations(draw: st.DrawFn) -> bytes:
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "splice"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        else:
            data[pos:] = draw(st.binary(max_size=64))
    return bytes(data)


@given(_mutations())
def test_mutated_envelopes(envelope: bytes) -> None:
    result = _open(envelope)
    if result is not None:
        # Only a change the protobuf framing absorbs (e.g. an appended unknown field) may
        # still open, and then it opens to exactly what was sealed.
        assert result == DATA
        assert decrypt_provision_envelope(envelope, PAIR) == decrypt_provision_envelope(VALID, PAIR)


@given(st.binary(max_size=400))
def test_arbitrary_plaintexts_under_a_valid_cipher(plaintext: bytes) -> None:
    envelope = encrypt_provision_message(plaintext, PAIR.public_key, RNG)
    assert decrypt_provision_envelope(envelope, PAIR) == plaintext
    result = _open(envelope)
    assert result is None or isinstance(result, ProvisionData)


_FIELD_VALUES = st.one_of(st.none(), st.binary(max_size=40))
_STRING_VALUES = st.one_of(st.none(), st.text(max_size=40))


@settings(max_examples=200)
@given(
    st.fixed_dictionaries(
        {
            "aciIdentityKeyPublic": st.one_of(
                _FIELD_VALUES, st.just(IDENTITY.identity_key.to_bytes())
            ),
            "aciIdentityKeyPrivate": st.one_of(
                _FIELD_VALUES, st.just(IDENTITY.private_key.to_bytes())
            ),
            "aci": _STRING_VALUES,
            "aciBinary": st.one_of(_FIELD_VALUES, st.binary(min_size=16, max_size=16)),
            "provisioningCode": _STRING_VALUES,
            "profileKey": _FIELD_VALUES,
            "securemsgAccessKey": st.one_of(_FIELD_VALUES, st.binary(min_size=16, max_size=16)),
            "securemsgTrustRoot": _FIELD_VALUES,
            "securemsgRelayUrl": _STRING_VALUES,
            "readReceipts": st.one_of(st.none(), st.booleans()),
            "provisioningVersion": st.one_of(st.none(), st.integers(0, 2**32 - 1)),
        }
    )
)
def test_arbitrary_field_values(values: dict[str, object]) -> None:
    try:
        plaintext = codec.encode_provision_message(codec.ProvisionMessageFields(**values))  # type: ignore[arg-type]
    except UsageError:  # a lone surrogate cannot be encoded: the caller's mistake
        return
    receiver = ProvisioningReceiver(RNG)
    try:
        opened = receiver.open(encrypt_provision_message(plaintext, receiver.public_key, RNG))
    except ProvisioningError as exc:
        assert exc.reason in ("decode", "fields")
        assert not receiver.used
        return
    assert receiver.used
    assert len(opened.access_key) == 16
    assert opened.identity.private_key.to_bytes() == IDENTITY.private_key.to_bytes() or (
        values["aciIdentityKeyPublic"] is None
    )
