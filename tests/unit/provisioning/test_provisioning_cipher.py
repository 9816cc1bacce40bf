"""The provisioning cipher and ProvisionMessage: Signal's layout, round trips, hostile input.

The reference computations here use the ``cryptography`` package directly (X25519, HKDF,
AES-CBC, HMAC), independently of securemsg's crypto layer, following the layout of
Signal-Desktop's ``ProvisioningCipher`` and mock-server's ``encryptProvisionMessage``.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid

import pytest
from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from securemsg._proto import provisioning_pb2
from securemsg.crypto.curve25519 import KeyPair, PublicKey
from securemsg.crypto.rng import DeterministicRng
from securemsg.errors import PeerError, ProvisioningError, UsageError
from securemsg.protocol.identity_and_prekeys import IdentityKeyPair
from securemsg.provisioning import (
    MAX_PROVISION_ENVELOPE_LENGTH,
    MAX_PROVISION_MESSAGE_LENGTH,
    PROVISIONING_INFO,
    ProvisionData,
    ProvisioningReceiver,
    decrypt_provision_envelope,
    encrypt_provision_message,
    open_provision,
    provisioning_key_pair,
    seal_provision,
)
from securemsg.wire import provisioning as codec

RNG = DeterministicRng(b"provisioning tests")
ACI = "5b1a7c3e-2f4d-4e6a-9b8c-0d1e2f3a4b5c"
IDENTITY = IdentityKeyPair.generate(RNG)
TRUST_ROOT = KeyPair.generate(RNG).public_key.to_bytes()


def _data(**overrides: object) -> ProvisionData:
    values: dict[str, object] = {
        "identity": IDENTITY,
        "aci": ACI,
        "provisioning_code": "code-123456",
        "access_key": bytes(range(16)),
        "trust_root": TRUST_ROOT,
        "profile_key": bytes(range(32, 64)),
        "relay_url": "ws://127.0.0.1:8765",
        "user_agent": "securemsg-tests",
        "read_receipts": True,
    }
    values.update(overrides)
    return ProvisionData(**values)  # type: ignore[arg-type]


def _ref_seal(
    plaintext: bytes,
    their_public: PublicKey,
    *,
    version: int = 1,
    pad: bool = True,
    iv: bytes = b"\x11" * 16,
    sender_key: bytes = b"\x22" * 32,
) -> bytes:
    """The provisioning cipher written with ``cryptography`` alone, with knobs for hostile
    variants (another version byte, no PKCS#7 padding); the MAC is always valid."""
    ephemeral = X25519PrivateKey.from_private_bytes(sender_key)
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(their_public.raw))
    okm = HKDF(hashes.SHA256(), 64, bytes(32), PROVISIONING_INFO).derive(shared)
    aes_key, mac_key = okm[:32], okm[32:]
    if pad:
        padder = padding.PKCS7(128).padder()
        plaintext = padder.update(plaintext) + padder.finalize()
    enc = Cipher(algorithms.AES(aes_key), modes.CBC(iv)).encryptor()
    signed = bytes((version,)) + iv + enc.update(plaintext) + enc.finalize()
    body = signed + hmac.new(mac_key, signed, hashlib.sha256).digest()
    from cryptography.hazmat.primitives import serialization

    pub = ephemeral.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return provisioning_pb2.ProvisionEnvelope(
        publicKey=b"\x05" + pub, body=body
    ).SerializeToString()


def _envelope_parts(envelope: bytes) -> tuple[bytes, bytes]:
    pb = provisioning_pb2.ProvisionEnvelope()
    pb.ParseFromString(envelope)
    return pb.publicKey, pb.body


def _rewrap(
    envelope: bytes, *, public_key: bytes | None = None, body: bytes | None = None
) -> bytes:
    old_pub, old_body = _envelope_parts(envelope)
    pb = provisioning_pb2.ProvisionEnvelope()
    pb.publicKey = old_pub if public_key is None else public_key
    pb.body = old_body if body is None else body
    return pb.SerializeToString()


# --- the format -----------------------------------------------------------------------------


def test_round_trip_keeps_every_field() -> None:
    receiver = ProvisioningReceiver(RNG)
    data = _data()
    opened = receiver.open(seal_provision(data, receiver.public_key, RNG))
    assert opened.identity == IDENTITY
    assert opened.identity.identity_key == IDENTITY.identity_key
    assert (opened.aci, opened.provisioning_code, opened.access_key) == (
        ACI,
        "code-123456",
        bytes(range(16)),
    )
    assert (opened.trust_root, opened.profile_key) == (TRUST_ROOT, bytes(range(32, 64)))
    assert (opened.relay_url, opened.user_agent, opened.read_receipts) == (
        "ws://127.0.0.1:8765",
        "securemsg-tests",
        True,
    )


def test_optional_fields_may_be_empty() -> None:
    pair = provisioning_key_pair(RNG)
    data = _data(trust_root=b"", profile_key=b"", relay_url="", user_agent="", read_receipts=False)
    opened = open_provision(seal_provision(data, pair.public_key, RNG), pair)
    assert opened == data


def test_aci_is_stored_in_canonical_form() -> None:
    assert _data(aci=ACI.upper()).aci == ACI


def test_envelope_layout_is_signals() -> None:
    """ProvisionEnvelope{publicKey=1, body=2}; body = 0x01 || iv || AES-CBC || HMAC over the rest;
    keys from HKDF(salt=0^32, info="TextSecure Provisioning Message")."""
    ours = KeyPair.generate(RNG)
    plaintext = b"a provision message"
    envelope = encrypt_provision_message(plaintext, ours.public_key, RNG)
    public_key, body = _envelope_parts(envelope)
    assert len(public_key) == 33 and public_key[0] == 0x05
    assert body[0] == 1
    assert (len(body) - 1 - 16 - 32) % 16 == 0
    # Decrypt with cryptography alone.
    mine = X25519PrivateKey.from_private_bytes(ours.private_key.to_bytes())
    shared = mine.exchange(X25519PublicKey.from_public_bytes(public_key[1:]))
    okm = HKDF(hashes.SHA256(), 64, None, b"TextSecure Provisioning Message").derive(shared)
    signed, mac = body[:-32], body[-32:]
    assert hmac.compare_digest(hmac.new(okm[32:], signed, hashlib.sha256).digest(), mac)
    dec = Cipher(algorithms.AES(okm[:32]), modes.CBC(signed[1:17])).decryptor()
    padded = dec.update(signed[17:]) + dec.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    assert unpadder.update(padded) + unpadder.finalize() == plaintext


def test_reference_sealed_envelope_opens() -> None:
    ours = KeyPair.generate(RNG)
    plaintext = codec.encode_provision_message(
        codec.ProvisionMessageFields(
            aciIdentityKeyPrivate=IDENTITY.private_key.to_bytes(),
            aciBinary=uuid.UUID(ACI).bytes,
            provisioningCode="abc",
            securemsgAccessKey=bytes(16),
        )
    )
    envelope = _ref_seal(plaintext, ours.public_key)
    assert decrypt_provision_envelope(envelope, ours) == plaintext
    opened = open_provision(envelope, ours)
    assert opened.identity == IDENTITY and opened.aci == ACI


def test_message_field_numbers_are_signals() -> None:
    """Field numbers from Signal-Android's Provisioning.proto (and mock-server's
    authCredentialSalt = 19); securemsg's own at 1001..1003."""
    fields = provisioning_pb2.ProvisionMessage.DESCRIPTOR.fields_by_name
    expected = {
        "aciIdentityKeyPublic": 1,
        "aciIdentityKeyPrivate": 2,
        "number": 3,
        "provisioningCode": 4,
        "userAgent": 5,
        "profileKey": 6,
        "readReceipts": 7,
        "aci": 8,
        "provisioningVersion": 9,
        "pni": 10,
        "pniIdentityKeyPublic": 11,
        "pniIdentityKeyPrivate": 12,
        "masterKey": 13,
        "ephemeralBackupKey": 14,
        "accountEntropyPool": 15,
        "mediaRootBackupKey": 16,
        "aciBinary": 17,
        "pniBinary": 18,
        "authCredentialSalt": 19,
        "securemsgAccessKey": 1001,
        "securemsgTrustRoot": 1002,
        "securemsgRelayUrl": 1003,
    }
    assert {name: f.number for name, f in fields.items()} == expected
    env = provisioning_pb2.ProvisionEnvelope.DESCRIPTOR.fields_by_name
    assert {name: f.number for name, f in env.items()} == {"publicKey": 1, "body": 2}


def test_sealed_message_carries_signal_fields() -> None:
    pair = provisioning_key_pair(RNG)
    plaintext = decrypt_provision_envelope(seal_provision(_data(), pair.public_key, RNG), pair)
    fields = codec.decode_provision_message(plaintext)
    assert fields.aciIdentityKeyPublic == IDENTITY.identity_key.to_bytes()
    assert fields.aciIdentityKeyPrivate == IDENTITY.private_key.to_bytes()
    assert fields.aciBinary == uuid.UUID(ACI).bytes
    assert fields.aci == ACI
    assert fields.provisioningVersion == 1
    assert fields.provisioningCode == "code-123456"


def test_rng_draws_make_the_envelope_deterministic() -> None:
    their = KeyPair.generate(DeterministicRng(b"them")).public_key
    one = encrypt_provision_message(b"x", their, DeterministicRng(b"seed"))
    two = encrypt_provision_message(b"x", their, DeterministicRng(b"seed"))
    assert one == two
    assert one != encrypt_provision_message(b"x", their, DeterministicRng(b"other seed"))


# --- hostile envelopes ----------------------------------------------------------------------


def _reason(envelope: object, key_pair: KeyPair) -> str:
    with pytest.raises(ProvisioningError) as info:
        open_provision(envelope, key_pair)  # type: ignore[arg-type]
    assert isinstance(info.value, PeerError)
    return info.value.reason


def test_wrong_key_is_refused_as_bad_mac() -> None:
    pair = provisioning_key_pair(RNG)
    other = provisioning_key_pair(RNG)
    assert _reason(seal_provision(_data(), pair.public_key, RNG), other) == "mac"


@pytest.mark.parametrize("where", ["version", "iv", "ciphertext", "mac", "last"])
def test_every_tampered_byte_of_the_body_is_refused(where: str) -> None:
    pair = provisioning_key_pair(RNG)
    envelope = seal_provision(_data(), pair.public_key, RNG)
    _, body = _envelope_parts(envelope)
    index = {"version": 0, "iv": 5, "ciphertext": 40, "mac": len(body) - 20, "last": -1}[where]
    tampered = bytearray(body)
    tampered[index] ^= 0x01
    reason = _reason(_rewrap(envelope, body=bytes(tampered)), pair)
    assert reason == ("version" if where == "version" else "mac")


def test_tampered_sender_key_is_refused() -> None:
    pair = provisioning_key_pair(RNG)
    envelope = seal_provision(_data(), pair.public_key, RNG)
    public_key, _ = _envelope_parts(envelope)
    other = KeyPair.generate(RNG).public_key.to_bytes()
    assert _reason(_rewrap(envelope, public_key=other), pair) == "mac"
    assert _reason(_rewrap(envelope, public_key=b"\x06" + public_key[1:]), pair) == "key"
    assert _reason(_rewrap(envelope, public_key=public_key[:32]), pair) == "key"
    assert _reason(_rewrap(envelope, public_key=public_key + b"\x00"), pair) == "key"
    small_order = b"\x05" + bytes(32)  # u = 0: the all-zero shared secret
    assert _reason(_rewrap(envelope, public_key=small_order), pair) == "key"


@pytest.mark.parametrize("version", [0, 2, 0x41, 0xFF])
def test_other_versions_are_refused(version: int) -> None:
    pair = provisioning_key_pair(RNG)
    envelope = _ref_seal(b"whatever", pair.public_key, version=version)
    assert _reason(envelope, pair) == "version"


def test_bad_padding_under_a_valid_mac_is_refused() -> None:
    pair = provisioning_key_pair(RNG)
    envelope = _ref_seal(b"sixteen bytes!!!" * 2, pair.public_key, pad=False)
    assert _reason(envelope, pair) == "padding"


def test_truncations_are_refused() -> None:
    pair = provisioning_key_pair(RNG)
    envelope = seal_provision(_data(), pair.public_key, RNG)
    _, body = _envelope_parts(envelope)
    for cut in (1, 16, 17, 31, 32, 33, 48, 64):
        reason = _reason(_rewrap(envelope, body=body[:-cut]), pair)
        assert reason in ("decode", "mac")
    for keep in (0, 1, 17, 33, 64):
        reason = _reason(_rewrap(envelope, body=body[:keep]), pair)
        assert reason in ("decode", "version")
    for cut in range(1, len(envelope)):
        _reason(envelope[:cut], pair)


def test_missing_fields_and_garbage_are_refused() -> None:
    pair = provisioning_key_pair(RNG)
    envelope = seal_provision(_data(), pair.public_key, RNG)
    public_key, body = _envelope_parts(envelope)
    only_body = provisioning_pb2.ProvisionEnvelope(body=body).SerializeToString()
    only_key = provisioning_pb2.ProvisionEnvelope(publicKey=public_key).SerializeToString()
    assert _reason(only_body, pair) == "decode"
    assert _reason(only_key, pair) == "decode"
    assert _reason(b"", pair) == "decode"
    assert _reason(b"\xff\xff\xff", pair) == "decode"
    assert _reason("not bytes", pair) == "decode"


def test_oversize_envelope_is_refused_before_any_work() -> None:
    pair = provisioning_key_pair(RNG)
    assert _reason(bytes(MAX_PROVISION_ENVELOPE_LENGTH + 1), pair) == "size"


def test_largest_message_fits_the_envelope_limit() -> None:
    pair = provisioning_key_pair(RNG)
    big = bytes(MAX_PROVISION_MESSAGE_LENGTH)
    envelope = encrypt_provision_message(big, pair.public_key, RNG)
    assert len(envelope) <= MAX_PROVISION_ENVELOPE_LENGTH
    assert decrypt_provision_envelope(envelope, pair) == big
    with pytest.raises(UsageError):
        encrypt_provision_message(bytes(MAX_PROVISION_MESSAGE_LENGTH + 1), pair.public_key, RNG)


def test_sealing_to_a_small_order_key_is_refused() -> None:
    with pytest.raises(ProvisioningError) as info:
        seal_provision(_data(), PublicKey.from_raw(bytes(32)), RNG)
    assert info.value.reason == "key"


# --- hostile messages (valid cipher, bad content) ---------------------------------------------


def _fields(**overrides: object) -> codec.ProvisionMessageFields:
    values: dict[str, object] = {
        "aciIdentityKeyPublic": IDENTITY.identity_key.to_bytes(),
        "aciIdentityKeyPrivate": IDENTITY.private_key.to_bytes(),
        "aciBinary": uuid.UUID(ACI).bytes,
        "provisioningCode": "code",
        "securemsgAccessKey": bytes(16),
    }
    values.update(overrides)
    return codec.ProvisionMessageFields(**values)  # type: ignore[arg-type]


def _sealed_fields(pair: KeyPair, **overrides: object) -> bytes:
    return encrypt_provision_message(
        codec.encode_provision_message(_fields(**overrides)), pair.public_key, RNG
    )


def test_minimal_valid_message_opens() -> None:
    pair = provisioning_key_pair(RNG)
    opened = open_provision(_sealed_fields(pair), pair)
    assert (opened.trust_root, opened.profile_key, opened.relay_url) == (b"", b"", "")


def test_public_key_is_optional_as_in_signal() -> None:
    pair = provisioning_key_pair(RNG)
    assert (
        open_provision(_sealed_fields(pair, aciIdentityKeyPublic=None), pair).identity == IDENTITY
    )


def test_aci_as_a_string_alone_is_accepted() -> None:
    pair = provisioning_key_pair(RNG)
    opened = open_provision(_sealed_fields(pair, aciBinary=None, aci=ACI.upper()), pair)
    assert opened.aci == ACI


OTHER = IdentityKeyPair.generate(RNG)


@pytest.mark.parametrize(
    "overrides",
    [
        {"aciIdentityKeyPrivate": None},
        {"aciIdentityKeyPrivate": bytes(31)},
        {"aciIdentityKeyPrivate": bytes(33)},
        {"aciIdentityKeyPublic": OTHER.identity_key.to_bytes()},
        {"aciIdentityKeyPublic": b"\x05" + bytes(31)},
        {"aciIdentityKeyPublic": b"\x06" + IDENTITY.identity_key.to_bytes()[1:]},
        {"aciBinary": None},
        {"aciBinary": bytes(15)},
        {"aciBinary": None, "aci": "not-a-uuid"},
        {"aci": "00000000-0000-4000-8000-000000000000"},
        {"provisioningCode": None},
        {"provisioningCode": ""},
        {"securemsgAccessKey": None},
        {"securemsgAccessKey": bytes(15)},
        {"securemsgAccessKey": bytes(17)},
        {"securemsgTrustRoot": bytes(33)},
        {"securemsgTrustRoot": b"\x05" + bytes(31)},
        {"profileKey": bytes(16)},
    ],
    ids=repr,
)
def test_missing_or_malformed_fields_are_refused(overrides: dict[str, object]) -> None:
    pair = provisioning_key_pair(RNG)
    assert _reason(_sealed_fields(pair, **overrides), pair) == "fields"


def test_non_utf8_string_and_non_protobuf_plaintext_are_refused() -> None:
    pair = provisioning_key_pair(RNG)
    good = codec.encode_provision_message(_fields())
    bad_utf8 = good + b"\x22\x02\xff\xfe"  # provisioningCode = 0xff 0xfe (last one wins)
    assert _reason(encrypt_provision_message(bad_utf8, pair.public_key, RNG), pair) == "decode"
    assert _reason(encrypt_provision_message(b"\xff\xff", pair.public_key, RNG), pair) == "decode"


def test_signal_message_without_securemsg_fields_is_refused_fail_closed() -> None:
    """What a Signal primary sends (no access key): decrypts, but securemsg cannot link with it."""
    pair = provisioning_key_pair(RNG)
    signal_only = _sealed_fields(pair, securemsgAccessKey=None, pni="x", masterKey=bytes(32))
    assert codec.decode_provision_message(decrypt_provision_envelope(signal_only, pair)).pni == "x"
    assert _reason(signal_only, pair) == "fields"


# --- one-time receiver ----------------------------------------------------------------------


def test_receiver_opens_once_then_refuses_replays() -> None:
    receiver = ProvisioningReceiver(RNG)
    envelope = seal_provision(_data(), receiver.public_key, RNG)
    assert not receiver.used
    receiver.open(envelope)
    assert receiver.used
    for again in (envelope, seal_provision(_data(), receiver.public_key, RNG)):
        with pytest.raises(ProvisioningError) as info:
            receiver.open(again)
        assert info.value.reason == "replay"
    assert "used=True" in repr(receiver)


def test_refused_envelope_does_not_use_the_receiver_up() -> None:
    receiver = ProvisioningReceiver(RNG)
    with pytest.raises(ProvisioningError):
        receiver.open(b"garbage")
    with pytest.raises(ProvisioningError):
        receiver.open(seal_provision(_data(), provisioning_key_pair(RNG).public_key, RNG))
    assert not receiver.used
    assert receiver.open(seal_provision(_data(), receiver.public_key, RNG)).aci == ACI


# --- usage errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [
        {"identity": "not a key pair"},
        {"aci": "nope"},
        {"aci": 7},
        {"provisioning_code": ""},
        {"provisioning_code": b"bytes"},
        {"access_key": bytes(15)},
        {"access_key": "0" * 16},
        {"trust_root": bytes(32)},
        {"trust_root": b"\x06" + bytes(32)},
        {"profile_key": bytes(31)},
        {"relay_url": None},
        {"user_agent": "\ud800"},
        {"read_receipts": 1},
    ],
    ids=repr,
)
def test_bad_provision_data_is_a_usage_error(overrides: dict[str, object]) -> None:
    with pytest.raises(UsageError):
        _data(**overrides)


def test_usage_errors_of_the_functions() -> None:
    pair = provisioning_key_pair(RNG)
    with pytest.raises(UsageError):
        seal_provision("data", pair.public_key, RNG)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        seal_provision(_data(), pair.public_key.to_bytes(), RNG)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        encrypt_provision_message("text", pair.public_key, RNG)  # type: ignore[arg-type]
    with pytest.raises(UsageError):
        decrypt_provision_envelope(b"", pair.private_key)  # type: ignore[arg-type]


def test_repr_shows_no_secret() -> None:
    data = _data()
    text = repr(data) + str(data) + repr(codec.decode_provision_message(b""))
    assert IDENTITY.private_key.to_bytes().hex() not in text
    assert "code-123456" not in text
    assert repr(bytes(range(16))) not in text
