"""Sealed sender v1 and v2 against libsignal 0.103.0, certificates issued by either side.

* Certificates: each side issues server + sender certificates the other validates (and both
  refuse an expired one and one under another trust root).
* v1 with an inner SenderKey message (sealed layer only) and with real 1:1 sessions (PreKey
  then Whisper inner messages), both directions.
* v2: one side encrypts to 1, 10 and 100 recipients (up to 3 devices each, plus excluded
  recipients), both splits (securemsg's and libsignal's) are compared byte for byte, and every
  device of the other implementation decrypts its copy. Both directions.
"""

from __future__ import annotations

import itertools
import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from peer_client import LibsignalPeer, PeerCallError, b64, bundle_from_json, bundle_to_json, unb64

from securemsg import cipher, groups, sealed_sender
from securemsg.crypto.curve25519 import PrivateKey, PublicKey
from securemsg.crypto.rng import DeterministicRng, SystemRng
from securemsg.errors import SealedSenderError, UsageError
from securemsg.protocol.address import ProtocolAddress, ServiceId
from securemsg.protocol.identity_and_prekeys import (
    IdentityKey,
    IdentityKeyPair,
    KyberPreKeyRecord,
    PreKeyBundle,
    SignedPreKeyRecord,
)
from securemsg.protocol.sealed_sender import (
    SealedSenderV2SentMessage,
    SenderCertificate,
    ServerCertificate,
    UnidentifiedSenderMessageContent,
)
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.wire.messages import CiphertextMessageType, PlaintextContent

NOW = 1_700_000_000_000
EXPIRES = NOW + 86_400_000
_labels = itertools.count(1)
_rng = SystemRng()


def _label() -> str:
    return "ss-" + str(next(_labels)) + "-" + uuid.uuid4().hex[:6]


@dataclass
class Authority:
    """A trust root and a server key (the relay's)."""

    root: PrivateKey
    server: PrivateKey
    server_cert: bytes

    @property
    def root_public(self) -> PublicKey:
        return self.root.public_key()


def py_authority() -> Authority:
    root, server = PrivateKey.generate(_rng), PrivateKey.generate(_rng)
    cert = ServerCertificate.new(7, server.public_key(), root, _rng)
    return Authority(root, server, cert.to_bytes())


def node_authority(peer: LibsignalPeer) -> Authority:
    _root_pub, root_priv = peer.generate_keypair()
    server_pub, server_priv = peer.generate_keypair()
    cert = unb64(
        peer.call(
            "ss_server_certificate",
            key_id=9,
            server_public=b64(server_pub),
            trust_root_private=b64(root_priv),
        )["certificate"]
    )
    return Authority(PrivateKey.from_bytes(root_priv), PrivateKey.from_bytes(server_priv), cert)


def py_sender_cert(
    auth: Authority, name: str, device: int, key: PublicKey, expires: int = EXPIRES
) -> SenderCertificate:
    return SenderCertificate.new(
        sender_uuid=name,
        sender_e164=None,
        sender_device_id=device,
        key=key,
        expiration=expires,
        signer=ServerCertificate.from_bytes(auth.server_cert),
        signer_key=auth.server,
        rng=_rng,
    )


def node_sender_cert(
    peer: LibsignalPeer, auth: Authority, name: str, device: int, key: bytes, expires: int = EXPIRES
) -> bytes:
    return unb64(
        peer.call(
            "ss_sender_certificate",
            sender_uuid=name,
            sender_e164="+15550001111",
            device_id=device,
            identity_key=b64(key),
            expiration_ms=expires,
            server_certificate=b64(auth.server_cert),
            server_private=b64(auth.server.to_bytes()),
        )["certificate"]
    )


class PyDevice:
    def __init__(self, name: str, device: int) -> None:
        self.rng = DeterministicRng(uuid.uuid4().bytes)
        self.ik = IdentityKeyPair.generate(self.rng)
        self.store = InMemoryProtocolStore(self.ik, 1 + device * 100 + len(name) % 50)
        self.address = ProtocolAddress(name, device)

    def bundle(self, kyber: KyberPreKeyRecord | None = None) -> PreKeyBundle:
        spk = SignedPreKeyRecord.generate(1, self.ik, NOW, self.rng)
        kpk = kyber or KyberPreKeyRecord.generate(1, self.ik, NOW, self.rng)
        self.store.save_signed_pre_key(1, spk)
        self.store.save_kyber_pre_key(1, kpk, last_resort=True)
        return PreKeyBundle(
            registration_id=self.store.get_local_registration_id(),
            device_id=self.address.device_id,
            pre_key_id=None,
            pre_key_public=None,
            signed_pre_key_id=1,
            signed_pre_key_public=spk.public_key,
            signed_pre_key_signature=spk.signature,
            identity_key=self.ik.identity_key,
            kyber_pre_key_id=1,
            kyber_pre_key_public=kpk.public_key,
            kyber_pre_key_signature=self.ik.sign(kpk.public_key.to_bytes(), self.rng),
        )


# --- certificates ---------------------------------------------------------------------------------


def test_certificates_issued_by_either_side_validate_on_the_other(
    libsignal_peer: LibsignalPeer,
) -> None:
    py_auth, node_auth = py_authority(), node_authority(libsignal_peer)
    key = IdentityKeyPair.generate(_rng).identity_key.public_key
    name = str(uuid.uuid4())

    ours = py_sender_cert(py_auth, name, 3, key)
    r = libsignal_peer.call(
        "ss_validate_sender_certificate",
        certificate=b64(ours.to_bytes()),
        trust_roots=[b64(node_auth.root_public.to_bytes()), b64(py_auth.root_public.to_bytes())],
        now_ms=NOW,
    )
    assert r["valid"] and r["sender_uuid"] == name and r["device_id"] == 3
    for roots, now in (([py_auth.root_public], EXPIRES + 1), ([node_auth.root_public], NOW)):
        assert not libsignal_peer.call(
            "ss_validate_sender_certificate",
            certificate=b64(ours.to_bytes()),
            trust_roots=[b64(k.to_bytes()) for k in roots],
            now_ms=now,
        )["valid"]

    theirs = SenderCertificate.from_bytes(
        node_sender_cert(libsignal_peer, node_auth, name, 4, key.to_bytes())
    )
    assert theirs.sender_e164 == "+15550001111" and theirs.key == key
    theirs.validate([py_auth.root_public, node_auth.root_public], NOW)
    theirs.validate(node_auth.root_public, EXPIRES)  # expiry is inclusive
    with pytest.raises(SealedSenderError) as info:
        theirs.validate(node_auth.root_public, EXPIRES + 1)
    assert info.value.reason == "expired"
    with pytest.raises(SealedSenderError) as info:
        theirs.validate(py_auth.root_public, NOW)
    assert info.value.reason == "untrusted"


# --- v1 -------------------------------------------------------------------------------------------


def test_v1_sender_key_inner_both_ways(libsignal_peer: LibsignalPeer) -> None:
    auth = node_authority(libsignal_peer)
    label, node_name = _label(), str(uuid.uuid4())
    node_ik = unb64(libsignal_peer.create_party(label, node_name, 1)["identity_key"])
    node_addr = ProtocolAddress(node_name, 1)
    me = PyDevice(str(uuid.uuid4()), 2)
    me.store.save_identity(node_addr, IdentityKey.from_bytes(node_ik))
    libsignal_peer.call(
        "trust",
        party=label,
        remote_name=me.address.name,
        remote_device=2,
        identity_key=b64(me.ik.identity_key.to_bytes()),
    )
    dist = uuid.uuid4()

    # securemsg -> libsignal
    cert = py_sender_cert(py_authority(), me.address.name, 2, me.ik.identity_key.public_key)
    skdm = groups.create_sender_key_distribution_message(me.address, dist, me.store, rng=me.rng)
    libsignal_peer.call(
        "skdm_process",
        party=label,
        sender_name=me.address.name,
        sender_device=2,
        skdm=b64(skdm.to_bytes()),
    )
    skm = groups.group_encrypt(me.address, dist, b"sealed group hello", me.store, rng=me.rng)
    usmc = UnidentifiedSenderMessageContent.new(
        CiphertextMessageType.SENDERKEY, cert, skm.to_bytes(), 1, b"group-id-1234"
    )
    body = sealed_sender.sealed_sender_encrypt_from_usmc(node_addr, usmc, me.store, rng=me.rng)
    facts = libsignal_peer.call("ss_decrypt_to_usmc", party=label, body=b64(body))
    assert unb64(facts["usmc"]) == usmc.to_bytes()
    assert facts["msg_type"] == 7 and facts["content_hint"] == 1
    assert unb64(facts["group_id"]) == b"group-id-1234"
    (r,) = libsignal_peer.items(
        libsignal_peer.call(
            "group_decrypt_many",
            party=label,
            sender_name=me.address.name,
            sender_device=2,
            bodies=[facts["contents"]],
        )
    )
    assert not isinstance(r, PeerCallError) and unb64(r["plaintext"]) == b"sealed group hello"

    # libsignal -> securemsg
    node_cert = node_sender_cert(libsignal_peer, auth, node_name, 1, node_ik)
    skdm_c = unb64(
        libsignal_peer.call("skdm_create", party=label, distribution_id=str(dist))["skdm"]
    )
    groups.process_sender_key_distribution_message(node_addr, skdm_c, me.store)
    out = libsignal_peer.call(
        "group_encrypt_many",
        party=label,
        distribution_id=str(dist),
        plaintexts=[b64(b"from libsignal %d" % i) for i in range(3)],
        sender_certificate=b64(node_cert),
    )
    for i, u in enumerate(out["usmcs"]):
        body = unb64(
            libsignal_peer.call(
                "ss_seal_usmc", party=label, remote_name=me.address.name, remote_device=2, usmc=u
            )["body"]
        )
        assert body[0] == 0x11
        got = sealed_sender.sealed_sender_decrypt_to_usmc(body, me.store)
        got.sender.validate(auth.root_public, NOW)
        assert (
            got.sender.sender_uuid == node_name and got.msg_type is CiphertextMessageType.SENDERKEY
        )
        assert groups.group_decrypt(got.contents, node_addr, me.store) == b"from libsignal %d" % i


def test_v1_one_to_one_sessions_both_ways(libsignal_peer: LibsignalPeer) -> None:
    py_auth, node_auth = py_authority(), node_authority(libsignal_peer)
    label, node_name = _label(), str(uuid.uuid4())
    node_ik = unb64(libsignal_peer.create_party(label, node_name, 1)["identity_key"])
    node_addr = ProtocolAddress(node_name, 1)
    me = PyDevice(str(uuid.uuid4()), 1)
    # we hold a libsignal-issued certificate, libsignal holds a securemsg-issued one
    my_cert = SenderCertificate.from_bytes(
        node_sender_cert(
            libsignal_peer, node_auth, me.address.name, 1, me.ik.identity_key.to_bytes()
        )
    )
    node_cert = py_sender_cert(py_auth, node_name, 1, PublicKey.from_bytes(node_ik))

    bundle = bundle_from_json(
        libsignal_peer.call(
            "generate_bundle", party=label, pre_key_id=5, signed_pre_key_id=6, kyber_pre_key_id=7
        )
    )
    cipher.process_prekey_bundle(
        bundle, node_addr, me.store, now=NOW, rng=me.rng, local_address=me.address
    )
    for i in range(6):
        body = sealed_sender.sealed_sender_encrypt(
            node_addr, my_cert, b"py->ls %d" % i, me.store, now=NOW, rng=me.rng
        )
        r = libsignal_peer.call(
            "ss_decrypt",
            party=label,
            body=b64(body),
            trust_root=b64(node_auth.root_public.to_bytes()),
            now_ms=NOW,
        )
        assert unb64(r["plaintext"]) == b"py->ls %d" % i
        assert r["sender_uuid"] == me.address.name and r["device_id"] == 1
        if i % 2:
            reply = unb64(
                libsignal_peer.call(
                    "ss_encrypt",
                    party=label,
                    remote_name=me.address.name,
                    remote_device=1,
                    plaintext=b64(b"ls->py %d" % i),
                    sender_certificate=b64(node_cert.to_bytes()),
                )["body"]
            )
            res = sealed_sender.sealed_sender_decrypt(
                reply,
                py_auth.root_public,
                me.store,
                now=NOW,
                local_uuid=me.address.name,
                local_device_id=1,
                rng=me.rng,
            )
            assert res == (node_addr, b"ls->py %d" % i)
    # self-send is refused before any session work
    own = SenderCertificate.from_bytes(
        node_sender_cert(
            libsignal_peer, node_auth, me.address.name, 1, me.ik.identity_key.to_bytes()
        )
    )
    usmc = UnidentifiedSenderMessageContent.new(CiphertextMessageType.WHISPER, own, b"\x44" * 40)
    me.store.save_identity(me.address, me.ik.identity_key)
    body = sealed_sender.sealed_sender_encrypt_from_usmc(me.address, usmc, me.store, rng=me.rng)
    with pytest.raises(SealedSenderError) as info:
        sealed_sender.sealed_sender_decrypt(
            body,
            node_auth.root_public,
            me.store,
            now=NOW,
            local_uuid=me.address.name,
            local_device_id=1,
            rng=me.rng,
        )
    assert info.value.reason == "self-send"


# --- v2 -------------------------------------------------------------------------------------------


def _plaintext_usmc(cert: SenderCertificate) -> UnidentifiedSenderMessageContent:
    content = PlaintextContent.from_content(b"\x42\x05hello")
    return UnidentifiedSenderMessageContent.new(
        CiphertextMessageType.PLAINTEXT, cert, content.to_bytes(), 2, b"gid"
    )


def _devices_for(n: int) -> list[int]:
    return [1 + (i % 3) for i in range(n)]  # 1, 2, 3 devices round robin


def _split_both(
    peer: LibsignalPeer, sent: bytes
) -> tuple[SealedSenderV2SentMessage, dict[str, Any]]:
    ours = SealedSenderV2SentMessage.parse(sent)
    theirs = peer.call("ss_multi_split", body=b64(sent))
    assert set(theirs["recipients"]) == {str(s) for s in ours.recipients}
    assert sorted(theirs["excluded"]) == sorted(str(s) for s in ours.excluded_recipients)
    for sid, devices in ours.recipients.items():
        t = theirs["recipients"][str(sid)]
        assert list(zip(t["device_ids"], t["registration_ids"], strict=True)) == list(devices)
        assert unb64(t["message"]) == ours.message_for_recipient(sid)
    return ours, theirs


@pytest.mark.parametrize("n_recipients", [1, 10, 100])
def test_v2_securemsg_to_libsignal(libsignal_peer: LibsignalPeer, n_recipients: int) -> None:
    me = PyDevice(str(uuid.uuid4()), 1)
    cert = py_sender_cert(py_authority(), me.address.name, 1, me.ik.identity_key.public_key)
    destinations: list[ProtocolAddress] = []
    labels: dict[ProtocolAddress, str] = {}
    for n_dev in _devices_for(n_recipients):
        name = str(uuid.uuid4())
        for d in range(1, n_dev + 1):
            label = _label()
            libsignal_peer.create_party(label, name, d, registration_id=100 + d)
            # one account = one identity key: every device of it shares device 1's key
            if d > 1:
                ident = libsignal_peer.call(
                    "export_identity", party=labels[ProtocolAddress(name, 1)]
                )
                libsignal_peer.call("delete_party", party=label)
                libsignal_peer.call(
                    "create_party",
                    party=label,
                    name=name,
                    device_id=d,
                    identity_private=ident["identity_private"],
                    registration_id=100 + d,
                )
            bundle = bundle_from_json(
                libsignal_peer.call(
                    "generate_bundle", party=label, signed_pre_key_id=1, kyber_pre_key_id=1
                )
            )
            addr = ProtocolAddress(name, d)
            cipher.process_prekey_bundle(
                bundle, addr, me.store, now=NOW, rng=me.rng, local_address=me.address
            )
            destinations.append(addr)
            labels[addr] = label
    excluded = [ServiceId.aci(uuid.uuid4()), ServiceId.pni(uuid.uuid4())]
    usmc = _plaintext_usmc(cert)
    sent = sealed_sender.sealed_sender_multi_recipient_encrypt(
        destinations, usmc, me.store, rng=me.rng, excluded_recipients=excluded
    )
    ours, _ = _split_both(libsignal_peer, sent)
    assert set(ours.excluded_recipients) == set(excluded)
    for addr in destinations:
        received = ours.message_for_recipient(ServiceId.parse(addr.name))
        facts = libsignal_peer.call("ss_decrypt_to_usmc", party=labels[addr], body=b64(received))
        assert unb64(facts["usmc"]) == usmc.to_bytes()
    if n_recipients == 1:
        alone = sealed_sender.sealed_sender_multi_recipient_encrypt(
            destinations, usmc, me.store, rng=me.rng
        )
        single = sealed_sender.sealed_sender_multi_recipient_message_for_single_recipient(alone)
        assert (
            unb64(libsignal_peer.call("ss_single_recipient", body=b64(alone))["message"]) == single
        )
        with pytest.raises(UsageError):
            sealed_sender.sealed_sender_multi_recipient_message_for_single_recipient(sent)


@pytest.mark.parametrize("n_recipients", [1, 10, 100])
def test_v2_libsignal_to_securemsg(libsignal_peer: LibsignalPeer, n_recipients: int) -> None:
    auth = node_authority(libsignal_peer)
    label, node_name = _label(), str(uuid.uuid4())
    node_ik = unb64(libsignal_peer.create_party(label, node_name, 1)["identity_key"])
    cert = SenderCertificate.from_bytes(
        node_sender_cert(libsignal_peer, auth, node_name, 1, node_ik)
    )
    kyber = None
    devices: list[PyDevice] = []
    for n_dev in _devices_for(n_recipients):
        first = PyDevice(str(uuid.uuid4()), 1)
        account = [first]
        for d in range(2, n_dev + 1):
            dev = PyDevice(first.address.name, d)
            dev.ik = first.ik
            dev.store = InMemoryProtocolStore(first.ik, 300 + d)
            account.append(dev)
        for dev in account:
            if kyber is None:
                kyber = KyberPreKeyRecord.generate(1, dev.ik, NOW, dev.rng)
            libsignal_peer.call(
                "process_bundle",
                party=label,
                remote_name=dev.address.name,
                remote_device=dev.address.device_id,
                bundle=bundle_to_json(dev.bundle(kyber)),
                now_ms=NOW,
            )
            devices.append(dev)
    excluded = [str(ServiceId.aci(uuid.uuid4()))]
    usmc = _plaintext_usmc(cert)
    sent = unb64(
        libsignal_peer.call(
            "ss_multi_encrypt",
            party=label,
            usmc=b64(usmc.to_bytes()),
            recipients=[{"name": d.address.name, "device": d.address.device_id} for d in devices],
            excluded=excluded,
        )["body"]
    )
    ours, _ = _split_both(libsignal_peer, sent)
    assert [str(s) for s in ours.excluded_recipients] == excluded
    for dev in devices:
        regs = dict(ours.recipients[ServiceId.parse(dev.address.name)])
        assert regs[dev.address.device_id] == dev.store.get_local_registration_id()
        got = sealed_sender.sealed_sender_decrypt_to_usmc(
            ours.message_for_recipient(ServiceId.parse(dev.address.name)), dev.store
        )
        assert got.to_bytes() == usmc.to_bytes()
        got.sender.validate(auth.root_public, NOW)
