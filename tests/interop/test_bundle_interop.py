"""Prekey bundles cross between securemsg and libsignal, and both refuse bad signatures.

* A libsignal bundle parses into ``securemsg.protocol.identity_and_prekeys.PreKeyBundle`` (every key
  round-trips byte for byte) and ``verify_signatures()`` accepts it.
* A bundle made from securemsg records (``SignedPreKeyRecord.generate``,
  ``KyberPreKeyRecord.generate``) is accepted by libsignal's ``processPreKeyBundle``.
* A bundle with a broken signed-prekey or Kyber-prekey signature is refused by both.

libsignal's JS API has no Kyber encapsulate/decapsulate, so here Kyber keys are only checked to
cross intact in both directions (libsignal parses securemsg's 1569-byte keys and vice versa);
encapsulation interop is proved by the PQXDH sessions of test_session_interop.py (on each
encapsulation route) and of the kit's session scenarios (test_kit_suite_libsignal.py).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from peer_client import LibsignalPeer, PeerCallError, b64, bundle_from_json, bundle_to_json, unb64

from securemsg.crypto.kyber1024 import KyberKeyPair, KyberPublicKey
from securemsg.crypto.rng import DeterministicRng
from securemsg.errors import InvalidSignatureError
from securemsg.protocol.identity_and_prekeys import (
    IdentityKeyPair,
    KyberPreKeyRecord,
    PreKeyBundle,
    PreKeyRecord,
    SignedPreKeyRecord,
    generate_registration_id,
)

pytestmark = pytest.mark.interop

DEVICE_ID = 3


def flip_first_bit(data: bytes) -> bytes:
    return bytes([data[0] ^ 0x01]) + data[1:]


def securemsg_bundle(seed: bytes, *, with_pre_key: bool = True) -> PreKeyBundle:
    rng = DeterministicRng(seed)
    identity = IdentityKeyPair.generate(rng)
    now = int(time.time() * 1000)
    pre_key = PreKeyRecord.generate(11, rng) if with_pre_key else None
    signed = SignedPreKeyRecord.generate(22, identity, now, rng)
    kyber = KyberPreKeyRecord.generate(33, identity, now, rng)
    return PreKeyBundle(
        registration_id=generate_registration_id(rng),
        device_id=DEVICE_ID,
        pre_key_id=None if pre_key is None else pre_key.id,
        pre_key_public=None if pre_key is None else pre_key.public_key,
        signed_pre_key_id=signed.id,
        signed_pre_key_public=signed.public_key,
        signed_pre_key_signature=signed.signature,
        identity_key=identity.identity_key,
        kyber_pre_key_id=kyber.id,
        kyber_pre_key_public=kyber.public_key,
        kyber_pre_key_signature=kyber.signature,
    )


@pytest.fixture
def libsignal_bundle(libsignal_peer: LibsignalPeer, party_label: str) -> dict[str, Any]:
    libsignal_peer.create_party(party_label, str(uuid.uuid4()), DEVICE_ID)
    return libsignal_peer.call(
        "generate_bundle",
        party=party_label,
        pre_key_id=101,
        signed_pre_key_id=202,
        kyber_pre_key_id=303,
    )


def libsignal_processes(peer: LibsignalPeer, label: str, bundle: dict[str, Any]) -> str:
    """A fresh libsignal party processes ``bundle`` (raises PeerCallError if refused) and
    returns the remote name it used."""
    processor = label + "-processor"
    peer.create_party(processor, str(uuid.uuid4()), 1)
    remote_name = str(uuid.uuid4())
    peer.call(
        "process_bundle",
        party=processor,
        remote_name=remote_name,
        remote_device=bundle["device_id"],
        bundle=bundle,
    )
    return remote_name


# -- libsignal -> securemsg -------------------------------------------------------------------


def test_libsignal_bundle_parses_and_verifies_in_securemsg(
    libsignal_bundle: dict[str, Any],
) -> None:
    bundle = bundle_from_json(libsignal_bundle)
    bundle.verify_signatures()
    # every field survives the trip unchanged
    assert bundle_to_json(bundle) == libsignal_bundle


def test_libsignal_bundle_without_one_time_prekey_parses(
    libsignal_peer: LibsignalPeer, party_label: str
) -> None:
    libsignal_peer.create_party(party_label, str(uuid.uuid4()), DEVICE_ID)
    data = libsignal_peer.call(
        "generate_bundle",
        party=party_label,
        pre_key_id=None,
        signed_pre_key_id=1,
        kyber_pre_key_id=2,
    )
    bundle = bundle_from_json(data)
    assert bundle.pre_key_id is None and bundle.pre_key_public is None
    bundle.verify_signatures()


@pytest.mark.parametrize("field", ["signed_pre_key_signature", "kyber_pre_key_signature"])
def test_bad_signature_in_libsignal_bundle_is_refused_by_both(
    libsignal_peer: LibsignalPeer,
    libsignal_bundle: dict[str, Any],
    field: str,
    party_label: str,
) -> None:
    tampered = dict(libsignal_bundle)
    tampered[field] = b64(flip_first_bit(unb64(tampered[field])))
    with pytest.raises(InvalidSignatureError):
        bundle_from_json(tampered).verify_signatures()
    with pytest.raises(PeerCallError, match="signature"):
        libsignal_processes(libsignal_peer, party_label, tampered)


@pytest.mark.parametrize("field", ["signed_pre_key_public", "kyber_pre_key_public"])
def test_swapped_prekey_in_libsignal_bundle_is_refused_by_both(
    libsignal_peer: LibsignalPeer,
    libsignal_bundle: dict[str, Any],
    field: str,
    party_label: str,
) -> None:
    """A valid key that is not the one the identity signed."""
    rng = DeterministicRng(b"bundle-interop/swap")
    tampered = dict(libsignal_bundle)
    if field == "signed_pre_key_public":
        other = securemsg_bundle(b"bundle-interop/other").signed_pre_key_public.to_bytes()
    else:
        other = KyberKeyPair.generate(rng).public_key.to_bytes()
    tampered[field] = b64(other)
    with pytest.raises(InvalidSignatureError):
        bundle_from_json(tampered).verify_signatures()
    with pytest.raises(PeerCallError, match="signature"):
        libsignal_processes(libsignal_peer, party_label, tampered)


# -- securemsg -> libsignal -------------------------------------------------------------------


@pytest.mark.parametrize("with_pre_key", [True, False], ids=["one-time-prekey", "no-prekey"])
def test_libsignal_accepts_securemsg_bundle(
    libsignal_peer: LibsignalPeer, party_label: str, with_pre_key: bool
) -> None:
    bundle = securemsg_bundle(b"bundle-interop/accept", with_pre_key=with_pre_key)
    bundle.verify_signatures()
    data = bundle_to_json(bundle)
    remote_name = libsignal_processes(libsignal_peer, party_label, data)
    has = libsignal_peer.call(
        "has_session",
        party=party_label + "-processor",
        remote_name=remote_name,
        remote_device=DEVICE_ID,
    )
    assert has == {"has_session": True}


def test_libsignal_session_from_securemsg_bundle_records_bundle_facts(
    libsignal_peer: LibsignalPeer, party_label: str
) -> None:
    bundle = securemsg_bundle(b"bundle-interop/facts")
    data = bundle_to_json(bundle)
    remote_name = str(uuid.uuid4())
    libsignal_peer.create_party(party_label, str(uuid.uuid4()), 1)
    libsignal_peer.call(
        "process_bundle",
        party=party_label,
        remote_name=remote_name,
        remote_device=DEVICE_ID,
        bundle=data,
    )
    facts = libsignal_peer.call(
        "session_facts", party=party_label, remote_name=remote_name, remote_device=DEVICE_ID
    )
    assert facts["exists"] and facts["session_version"] == 4
    assert facts["remote_registration_id"] == bundle.registration_id
    assert unb64(facts["remote_identity_key"]) == bundle.identity_key.to_bytes()
    assert facts["has_unacknowledged_pre_key"] and facts["has_pending_kyber_pre_key"]
    identity = libsignal_peer.call(
        "get_identity", party=party_label, remote_name=remote_name, remote_device=DEVICE_ID
    )
    assert unb64(identity["identity_key"]) == bundle.identity_key.to_bytes()


@pytest.mark.parametrize("field", ["signed_pre_key_signature", "kyber_pre_key_signature"])
def test_bad_signature_in_securemsg_bundle_is_refused_by_both(
    libsignal_peer: LibsignalPeer, party_label: str, field: str
) -> None:
    data = bundle_to_json(securemsg_bundle(b"bundle-interop/bad-sig"))
    data[field] = b64(flip_first_bit(unb64(data[field])))
    with pytest.raises(InvalidSignatureError):
        bundle_from_json(data).verify_signatures()
    with pytest.raises(PeerCallError, match="signature"):
        libsignal_processes(libsignal_peer, party_label, data)


# -- Kyber keys -------------------------------------------------------------------------------


def test_kyber_public_keys_cross_intact(libsignal_peer: LibsignalPeer) -> None:
    theirs = unb64(libsignal_peer.call("kem_generate")["public"])
    assert len(theirs) == 1569 and theirs[0] == 0x08
    assert KyberPublicKey.from_bytes(theirs).to_bytes() == theirs

    ours = KyberKeyPair.generate(DeterministicRng(b"bundle-interop/kyber")).public_key.to_bytes()
    assert unb64(libsignal_peer.call("kem_check_public", public=b64(ours))["public"]) == ours
