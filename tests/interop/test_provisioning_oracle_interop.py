"""securemsg's provisioning cipher and ProvisionMessage against Signal's own mock server.

``@signalapp/mock-server`` (pinned in tests/interop/provisioning_oracle/package.json) is the
server Signal Desktop's tests link devices with. Its ``encryptProvisionMessage(data,
remotePubKey)`` seals; its generated ``Proto.ProvisionEnvelope`` / ``Proto.ProvisionMessage``
encode and decode. It exports no decrypt: the oracle script's ``decrypt`` op is a second
implementation written after Signal-Desktop's ``ProvisioningCipher`` on libsignal's ``agree``
and ``hkdf`` (see oracle.mjs).

Never skips: a missing oracle fails with the reason (``./dev setup`` installs it).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from peer_client import b64, unb64
from provisioning_oracle_client import MOCK_SERVER_VERSION, ORACLE_DIR, ProvisioningOracle

from securemsg.crypto.curve25519 import KeyPair
from securemsg.crypto.rng import SystemRng
from securemsg.errors import ProvisioningError
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

pytestmark = pytest.mark.interop

RNG = SystemRng()
ACI = str(uuid.uuid4())
IDENTITY = IdentityKeyPair.generate(RNG)


@pytest.fixture(scope="module")
def oracle() -> Iterator[ProvisioningOracle]:
    problem = ProvisioningOracle.check_available()
    if problem is not None:
        pytest.fail(f"provisioning oracle unavailable: {problem}", pytrace=False)
    proc = ProvisioningOracle().start()
    try:
        yield proc
    finally:
        proc.stop()


def _mock_seal(oracle: ProvisioningOracle, data: bytes, public_key: bytes) -> dict[str, bytes]:
    r = oracle.call("encrypt", data=b64(data), public_key=b64(public_key))
    return {k: unb64(v) for k, v in r.items()}


def _signal_fields() -> dict[str, Any]:
    """What mock-server's server puts into a ProvisionMessage (src/api/server.ts)."""
    pni = IdentityKeyPair.generate(RNG)
    return {
        "aciIdentityKeyPublic": b64(IDENTITY.identity_key.to_bytes()),
        "aciIdentityKeyPrivate": b64(IDENTITY.private_key.to_bytes()),
        "pniIdentityKeyPublic": b64(pni.identity_key.to_bytes()),
        "pniIdentityKeyPrivate": b64(pni.private_key.to_bytes()),
        "number": "+15555550123",
        "aciBinary": b64(uuid.UUID(ACI).bytes),
        "pniBinary": b64(uuid.uuid4().bytes),
        "provisioningCode": "123456",
        "profileKey": b64(os.urandom(32)),
        "userAgent": "OWD",
        "readReceipts": True,
        "provisioningVersion": 1,
        "masterKey": b64(os.urandom(32)),
        "ephemeralBackupKey": b64(os.urandom(32)),
        "mediaRootBackupKey": b64(os.urandom(32)),
        "accountEntropyPool": "a" * 64,
        "authCredentialSalt": b64(os.urandom(32)),
    }


def test_the_oracle_is_the_pinned_mock_server(oracle: ProvisioningOracle) -> None:
    assert oracle.call("ping")["mock_server_version"] == MOCK_SERVER_VERSION
    lock = json.loads((ORACLE_DIR / "package-lock.json").read_text())
    assert lock["packages"]["node_modules/@signalapp/mock-server"]["version"] == "27.0.0"
    package = json.loads((ORACLE_DIR / "package.json").read_text())
    assert package["dependencies"]["@signalapp/mock-server"] == "27.0.0"  # exact, no range


@pytest.mark.parametrize("length", [0, 1, 15, 16, 17, 31, 32, 33, 500, 3900])
def test_mock_server_envelopes_decrypt_with_securemsg(
    oracle: ProvisioningOracle, length: int
) -> None:
    pair = provisioning_key_pair(RNG)
    data = os.urandom(length)
    sealed = _mock_seal(oracle, data, pair.public_key.to_bytes())
    assert decrypt_provision_envelope(sealed["envelope"], pair) == data
    # The envelope is exactly {publicKey: ephemeralKey, body}, as our codec writes it.
    assert (
        codec.encode_provision_envelope(sealed["ephemeral_key"], sealed["body"])
        == (sealed["envelope"])
    )
    # Signal's body layout: version 1, a 16-byte IV, whole AES blocks, a 32-byte MAC.
    body = sealed["body"]
    assert body[0] == 1 and (len(body) - 49) % 16 == 0 and len(body) - 49 >= length


def test_mock_server_envelope_sealed_to_another_key_or_tampered_is_refused(
    oracle: ProvisioningOracle,
) -> None:
    pair = provisioning_key_pair(RNG)
    sealed = _mock_seal(oracle, b"x" * 40, pair.public_key.to_bytes())
    with pytest.raises(ProvisioningError) as info:
        decrypt_provision_envelope(sealed["envelope"], provisioning_key_pair(RNG))
    assert info.value.reason == "mac"
    body = bytearray(sealed["body"])
    body[20] ^= 0x80
    tampered = codec.encode_provision_envelope(sealed["ephemeral_key"], bytes(body))
    with pytest.raises(ProvisioningError) as info:
        decrypt_provision_envelope(tampered, pair)
    assert info.value.reason == "mac"


def test_mock_server_provision_message_reads_field_for_field(oracle: ProvisioningOracle) -> None:
    """A ProvisionMessage as mock-server's server builds it, encoded by mock-server, sealed by
    mock-server: securemsg decrypts it and reads every field; opening it for securemsg fails
    closed (no access key)."""
    signal = _signal_fields()
    message = unb64(oracle.call("encode_message", fields=signal)["message"])
    pair = provisioning_key_pair(RNG)
    envelope = _mock_seal(oracle, message, pair.public_key.to_bytes())["envelope"]
    fields = codec.decode_provision_message(decrypt_provision_envelope(envelope, pair))
    for name, value in signal.items():
        ours = getattr(fields, name)
        assert (b64(ours) if isinstance(ours, bytes) else ours) == value, name
    with pytest.raises(ProvisioningError) as info:
        open_provision(envelope, pair)
    assert info.value.reason == "fields"


def test_mock_server_message_with_securemsg_fields_opens(oracle: ProvisioningOracle) -> None:
    """mock-server's encoding plus securemsg's extension fields (protobuf concatenation merges
    them), sealed by mock-server, opens to the account it describes."""
    message = unb64(oracle.call("encode_message", fields=_signal_fields())["message"])
    access_key = os.urandom(16)
    message += codec.encode_provision_message(
        codec.ProvisionMessageFields(securemsgAccessKey=access_key)
    )
    receiver = ProvisioningReceiver(RNG)
    envelope = _mock_seal(oracle, message, receiver.public_key.to_bytes())["envelope"]
    data = receiver.open(envelope)
    assert data.identity == IDENTITY and data.aci == ACI
    assert (data.provisioning_code, data.access_key, data.user_agent) == (
        "123456",
        access_key,
        "OWD",
    )
    assert data.read_receipts is True and len(data.profile_key) == 32
    with pytest.raises(ProvisioningError) as info:
        receiver.open(envelope)  # the same envelope again: a replay
    assert info.value.reason == "replay"


def test_securemsg_message_parses_with_mock_server(oracle: ProvisioningOracle) -> None:
    """mock-server's ProvisionMessage parser reads securemsg's message: same field numbers and
    types; securemsg's own fields are the only ones it does not know."""
    trust_root = KeyPair.generate(RNG).public_key.to_bytes()
    data = ProvisionData(
        identity=IDENTITY,
        aci=ACI,
        provisioning_code="link-code",
        access_key=os.urandom(16),
        trust_root=trust_root,
        profile_key=os.urandom(32),
        relay_url="ws://127.0.0.1:1",
        user_agent="securemsg",
        read_receipts=True,
    )
    pair = provisioning_key_pair(RNG)
    plaintext = decrypt_provision_envelope(seal_provision(data, pair.public_key, RNG), pair)
    parsed = oracle.call("decode_message", message=b64(plaintext))
    assert parsed["fields"] == {
        "aciIdentityKeyPublic": b64(IDENTITY.identity_key.to_bytes()),
        "aciIdentityKeyPrivate": b64(IDENTITY.private_key.to_bytes()),
        "aciBinary": b64(uuid.UUID(ACI).bytes),
        "provisioningCode": "link-code",
        "userAgent": "securemsg",
        "profileKey": b64(data.profile_key),
        "readReceipts": True,
        "provisioningVersion": 1,
    }
    # aci (8, commented out in mock-server's .proto) and our access key, trust root, relay URL.
    assert parsed["unknown"] == 4


def test_securemsg_envelope_parses_and_decrypts_on_the_node_side(
    oracle: ProvisioningOracle,
) -> None:
    """Our envelope parses with mock-server's ProvisionEnvelope and opens with the
    Desktop-style decrypt on libsignal's primitives."""
    pair = provisioning_key_pair(RNG)
    for length in (0, 16, 333):
        plaintext = os.urandom(length)
        envelope = encrypt_provision_message(plaintext, pair.public_key, RNG)
        parsed = oracle.call("decode_envelope", envelope=b64(envelope))
        assert parsed["unknown"] == 0 and unb64(parsed["public_key"])[0] == 0x05
        opened = oracle.call(
            "decrypt", envelope=b64(envelope), private_key=b64(pair.private_key.to_bytes())
        )
        assert unb64(opened["message"]) == plaintext
