"""Retry requests (``DecryptionErrorMessage`` in ``PlaintextContent``) against libsignal 0.103.0.

* For real PreKey and Whisper messages (and a SenderKey one), ``for_original`` on either side
  gives the same bytes, for the DEM and for its PlaintextContent; each side parses the other's
  and reads the same timestamp, ratchet key and device id.
* Carried as the client carries it: sealed sender v1 with a USMC of type PLAINTEXT. libsignal
  opens our sealed retry request and reads the DEM; we open libsignal's and read it.
"""

from __future__ import annotations

import uuid

import pytest
from peer_client import LibsignalPeer, b64, bundle_from_json, unb64
from test_sealed_sender_interop import (
    NOW,
    PyDevice,
    node_authority,
    node_sender_cert,
    py_authority,
    py_sender_cert,
)

from securemsg import cipher, sealed_sender
from securemsg.crypto.curve25519 import PublicKey
from securemsg.errors import DecodeError
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.sealed_sender import SenderCertificate, UnidentifiedSenderMessageContent
from securemsg.wire.content import (
    DecryptionErrorMessage,
    decryption_error_from_plaintext,
    plaintext_content_for,
)
from securemsg.wire.messages import (
    CiphertextMessageType,
    PlaintextContent,
    PreKeySignalMessage,
    SignalMessage,
)

TIMESTAMP = 1_765_000_000_123


def _real_messages(peer: LibsignalPeer) -> tuple[PyDevice, str, ProtocolAddress, bytes, bytes]:
    """A session Python -> libsignal: our PreKey message and libsignal's Whisper reply."""
    label, node_name = "dem-" + uuid.uuid4().hex[:8], str(uuid.uuid4())
    peer.create_party(label, node_name, 3)
    node_addr = ProtocolAddress(node_name, 3)
    me = PyDevice(str(uuid.uuid4()), 2)
    bundle = bundle_from_json(
        peer.call(
            "generate_bundle", party=label, pre_key_id=5, signed_pre_key_id=6, kyber_pre_key_id=7
        )
    )
    cipher.process_prekey_bundle(
        bundle, node_addr, me.store, now=NOW, rng=me.rng, local_address=me.address
    )
    prekey = cipher.message_encrypt(
        b"hello", node_addr, me.store, now=NOW, rng=me.rng, local_address=me.address
    )
    assert isinstance(prekey, PreKeySignalMessage)
    peer.call(
        "decrypt",
        party=label,
        remote_name=me.address.name,
        remote_device=2,
        type=int(CiphertextMessageType.PREKEY),
        body=b64(prekey.to_bytes()),
    )
    reply = peer.call(
        "encrypt", party=label, remote_name=me.address.name, remote_device=2, plaintext=b64(b"hi")
    )
    assert reply["type"] == int(CiphertextMessageType.WHISPER)
    return me, label, node_addr, prekey.to_bytes(), unb64(reply["body"])


def _check_facts(facts: dict[str, object], dem: DecryptionErrorMessage) -> None:
    assert facts["timestamp"] == dem.timestamp
    assert facts["device_id"] == dem.device_id
    key = facts["ratchet_key"]
    if dem.ratchet_key is None:
        assert key is None
    else:
        assert isinstance(key, str) and unb64(key) == dem.ratchet_key.to_bytes()


def test_for_original_is_byte_identical_and_parsed_both_ways(libsignal_peer: LibsignalPeer) -> None:
    _, _, _, prekey, whisper = _real_messages(libsignal_peer)
    expected_keys = {
        CiphertextMessageType.PREKEY: PreKeySignalMessage.from_bytes(prekey).message.ratchet_key,
        CiphertextMessageType.WHISPER: SignalMessage.from_bytes(whisper).ratchet_key,
    }
    for msg_type, original, device in (
        (CiphertextMessageType.PREKEY, prekey, 2),
        (CiphertextMessageType.WHISPER, whisper, 3),
        (CiphertextMessageType.SENDERKEY, b"", 127),
    ):
        ours = DecryptionErrorMessage.for_original(original, msg_type, TIMESTAMP, device)
        theirs = libsignal_peer.call(
            "dem_for_original",
            original=b64(original),
            type=int(msg_type),
            timestamp=TIMESTAMP,
            device_id=device,
        )
        # Same bytes, for the DEM and for the PlaintextContent around it.
        assert unb64(theirs["dem"]) == ours.to_bytes()
        ours_pc = plaintext_content_for(ours)
        assert unb64(theirs["plaintext_content"]) == ours_pc.to_bytes()
        assert unb64(theirs["body"]) == ours_pc.body
        # The fields: libsignal reads ours, we read libsignal's.
        key = expected_keys.get(msg_type)
        assert ours.ratchet_key == key if key is not None else ours.ratchet_key is None
        assert (ours.timestamp, ours.device_id) == (TIMESTAMP, device)
        _check_facts(libsignal_peer.call("dem_parse", dem=b64(ours.to_bytes())), ours)
        _check_facts(
            libsignal_peer.call(
                "dem_from_plaintext_content", plaintext_content=b64(ours_pc.to_bytes())
            ),
            ours,
        )
        parsed = decryption_error_from_plaintext(
            PlaintextContent.from_bytes(unb64(theirs["plaintext_content"]))
        )
        assert parsed == DecryptionErrorMessage.from_bytes(unb64(theirs["dem"]))
        _check_facts(theirs, parsed)
        assert parsed.to_bytes() == ours.to_bytes()


def test_a_dem_without_a_device_id_reads_as_zero_on_both_sides(
    libsignal_peer: LibsignalPeer,
) -> None:
    only_timestamp = bytes((0x10,)) + (TIMESTAMP).to_bytes(8, "little")  # not a varint: refused
    with pytest.raises(DecodeError):
        DecryptionErrorMessage.from_bytes(only_timestamp)
    varint = DecryptionErrorMessage.new(TIMESTAMP, 0).to_bytes()[:-2]  # drop "device_id = 0"
    ours = DecryptionErrorMessage.from_bytes(varint)
    theirs = libsignal_peer.call("dem_parse", dem=b64(varint))
    assert (theirs["timestamp"], theirs["device_id"], theirs["ratchet_key"]) == (TIMESTAMP, 0, None)
    assert (ours.timestamp, ours.device_id, ours.ratchet_key) == (TIMESTAMP, 0, None)


def test_sealed_retry_requests_both_ways(libsignal_peer: LibsignalPeer) -> None:
    me, label, node_addr, prekey, whisper = _real_messages(libsignal_peer)
    py_auth, node_auth = py_authority(), node_authority(libsignal_peer)

    # securemsg -> libsignal: our sealed retry request for libsignal's Whisper message.
    my_cert = SenderCertificate.from_bytes(
        node_sender_cert(
            libsignal_peer, node_auth, me.address.name, 2, me.ik.identity_key.to_bytes()
        )
    )
    ours = DecryptionErrorMessage.for_original(whisper, CiphertextMessageType.WHISPER, TIMESTAMP, 3)
    usmc = UnidentifiedSenderMessageContent.new(
        CiphertextMessageType.PLAINTEXT, my_cert, plaintext_content_for(ours).to_bytes()
    )
    body = sealed_sender.sealed_sender_encrypt_from_usmc(node_addr, usmc, me.store, rng=me.rng)
    opened = libsignal_peer.call("ss_decrypt_to_usmc", party=label, body=b64(body))
    assert opened["msg_type"] == int(CiphertextMessageType.PLAINTEXT)
    assert opened["sender_uuid"] == me.address.name
    facts = libsignal_peer.call("dem_from_plaintext_content", plaintext_content=opened["contents"])
    _check_facts(facts, ours)
    assert facts["ratchet_key"] == b64(SignalMessage.from_bytes(whisper).ratchet_key.to_bytes())

    # libsignal -> securemsg: libsignal's sealed retry request for our PreKey message.
    node_ik = libsignal_peer.call("export_identity", party=label)["identity_key"]
    node_cert = py_sender_cert(py_auth, node_addr.name, 3, PublicKey.from_bytes(unb64(node_ik)))
    theirs = libsignal_peer.call(
        "dem_for_original",
        original=b64(prekey),
        type=int(CiphertextMessageType.PREKEY),
        timestamp=TIMESTAMP,
        device_id=2,
    )
    their_usmc = libsignal_peer.call(
        "ss_usmc_plaintext",
        contents=theirs["plaintext_content"],
        sender_certificate=b64(node_cert.to_bytes()),
        content_hint=0,
        group_id=None,
    )["usmc"]
    sealed_body = unb64(
        libsignal_peer.call(
            "ss_seal_usmc",
            party=label,
            remote_name=me.address.name,
            remote_device=2,
            usmc=their_usmc,
        )["body"]
    )
    got = sealed_sender.sealed_sender_decrypt_to_usmc(sealed_body, me.store)
    assert got.msg_type == CiphertextMessageType.PLAINTEXT
    got.sender.validate(py_auth.root_public, NOW)
    dem = decryption_error_from_plaintext(PlaintextContent.from_bytes(got.contents))
    _check_facts(theirs, dem)
    assert dem.ratchet_key == PreKeySignalMessage.from_bytes(prekey).message.ratchet_key
    assert (dem.timestamp, dem.device_id) == (TIMESTAMP, 2)
