"""The interop kit's libsignal peer (peers/libsignal/peer.mjs), op family by op family.

Each test drives the Node peer over securemsg-interop/1 through the kit's own driver
(:class:`~securemsg.interop.driver.PeerProcess`) and checks what the protocol document promises:
answer fields, error kinds, and that a refused input leaves the stored state (``snapshot``)
unchanged. Where bytes can be checked independently, securemsg's public API checks them (a
bundle's signatures, a safety number), so the peer is proved to be libsignal speaking the
protocol, not merely something that answers. These tests never skip: without Node or the
pinned package they fail with the reason.
"""

from __future__ import annotations

import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from securemsg import Fingerprint, IdentityKey, KyberPublicKey, PublicKey
from securemsg.interop.driver import PeerProcess, PeerRefusal, b64, unb64
from securemsg.interop.peers import LIBSIGNAL_VERSION, PeerUnavailable, resolve_peer

pytestmark = pytest.mark.interop

PREKEY = 3
WHISPER = 2
SENDERKEY = 7
CAPABILITIES = {
    "session",
    "encrypt_many",
    "snapshot",
    "archive",
    "restart",
    "identity_change",
    "sealed_v1",
    "sealed_v2",
    "groups",
    "fingerprint",
}


def _argv() -> tuple[str, ...]:
    try:
        return resolve_peer("libsignal")
    except PeerUnavailable as exc:
        pytest.fail(f"the kit's libsignal peer cannot run: {exc}", pytrace=False)


@pytest.fixture(scope="module")
def peer() -> Iterator[PeerProcess]:
    with PeerProcess(_argv(), label="libsignal") as process:
        yield process


class P:
    """A party in the peer: its label and address."""

    _n = 0

    def __init__(self, peer: PeerProcess, device: int = 1) -> None:
        P._n += 1
        self.peer = peer
        self.label = f"party-{P._n}-{uuid.uuid4().hex[:6]}"
        self.name = str(uuid.uuid4())
        self.device = device
        r = peer.call("create_party", party=self.label, name=self.name, device=device)
        self.identity_key = unb64(r["identity_key"])
        self.registration_id = int(r["registration_id"])
        self._ids = 100 * P._n

    @property
    def address(self) -> dict[str, Any]:
        return {"name": self.name, "device": self.device}

    def bundle(self, *, one_time: bool = True) -> dict[str, Any]:
        self._ids += 3
        r = self.peer.call(
            "create_bundle",
            party=self.label,
            pre_key_id=self._ids if one_time else None,
            signed_pre_key_id=self._ids + 1,
            kyber_pre_key_id=self._ids + 2,
        )
        return {k: v for k, v in r.items() if k not in ("id", "ok")}

    def encrypt(self, to: P, plaintext: bytes) -> tuple[int, bytes]:
        r = self.peer.call("encrypt", party=self.label, remote=to.address, plaintext=b64(plaintext))
        return int(r["type"]), unb64(r["body"])

    def decrypt(self, sender: P, kind: int, body: bytes) -> bytes:
        r = self.peer.call(
            "decrypt", party=self.label, remote=sender.address, type=kind, body=b64(body)
        )
        return unb64(r["plaintext"])

    def refused(self, op: str, **args: Any) -> PeerRefusal:
        with pytest.raises(PeerRefusal) as info:
            self.peer.call(op, party=self.label, **args)
        return info.value

    def snapshot(self, remote: P) -> bytes:
        return unb64(self.peer.call("snapshot", party=self.label, remote=remote.address)["state"])


def _session(peer: PeerProcess, *, one_time: bool = True) -> tuple[P, P]:
    a, b = P(peer), P(peer)
    peer.call("process_bundle", party=a.label, remote=b.address, bundle=b.bundle(one_time=one_time))
    kind, body = a.encrypt(b, b"hello")
    assert kind == PREKEY
    assert b.decrypt(a, kind, body) == b"hello"
    kind, body = b.encrypt(a, b"hi")
    assert kind == WHISPER
    assert a.decrypt(b, kind, body) == b"hi"
    return a, b


# -- hello, parties, bundles -----------------------------------------------------------------


def test_hello_names_libsignal_its_pinned_version_and_every_capability(
    peer: PeerProcess,
) -> None:
    assert peer.implementation == {"name": "libsignal", "version": LIBSIGNAL_VERSION}
    assert peer.capabilities == CAPABILITIES
    assert peer.call("hello")["protocol"] == "securemsg-interop/1"


def test_create_party_honours_a_registration_id_and_refuses_a_label_twice(
    peer: PeerProcess,
) -> None:
    r = peer.call(
        "create_party", party="fixed-reg", name=str(uuid.uuid4()), device=3, registration_id=4242
    )
    assert r["registration_id"] == 4242
    assert IdentityKey.from_bytes(unb64(r["identity_key"]))  # a 33-byte 0x05 key
    with pytest.raises(PeerRefusal) as info:
        peer.call("create_party", party="fixed-reg", name=str(uuid.uuid4()), device=1)
    assert info.value.kind == "internal"


@pytest.mark.parametrize("one_time", [True, False])
def test_a_bundle_is_signed_by_the_party_and_starts_a_session(
    peer: PeerProcess, one_time: bool
) -> None:
    b = P(peer, device=2)
    bundle = b.bundle(one_time=one_time)
    identity = IdentityKey.from_bytes(unb64(bundle["identity_key"]))
    assert unb64(bundle["identity_key"]) == b.identity_key
    assert bundle["registration_id"] == b.registration_id and bundle["device"] == 2
    assert (bundle["pre_key_id"] is None) is (not one_time)
    assert (bundle["pre_key_public"] is None) is (not one_time)
    signed = unb64(bundle["signed_pre_key_public"])
    kyber = unb64(bundle["kyber_pre_key_public"])
    assert len(PublicKey.from_bytes(signed).to_bytes()) == 33
    assert len(KyberPublicKey.from_bytes(kyber).to_bytes()) == 1569
    identity.public_key.verify(signed, unb64(bundle["signed_pre_key_signature"]))  # raises if bad
    identity.public_key.verify(kyber, unb64(bundle["kyber_pre_key_signature"]))
    a = P(peer)
    peer.call("process_bundle", party=a.label, remote=b.address, bundle=bundle)
    kind, body = a.encrypt(b, b"first")
    assert kind == PREKEY
    assert b.decrypt(a, kind, body) == b"first"


def test_a_bundle_with_a_forged_signature_is_refused(peer: PeerProcess) -> None:
    a, b = P(peer), P(peer)
    bundle = b.bundle()
    sig = bytearray(unb64(bundle["signed_pre_key_signature"]))
    sig[5] ^= 1
    refusal = a.refused(
        "process_bundle",
        remote=b.address,
        bundle=dict(bundle, signed_pre_key_signature=b64(bytes(sig))),
    )
    assert refusal.kind == "refused"
    assert peer.call("has_session", party=a.label, remote=b.address)["has_session"] is False


# -- 1:1 messages ---------------------------------------------------------------------------------


def test_messages_flow_both_ways_and_a_duplicate_is_refused_with_state_unchanged(
    peer: PeerProcess,
) -> None:
    a, b = _session(peer)
    for i in range(5):
        kind, body = a.encrypt(b, b"m%d" % i)
        assert kind == WHISPER
        assert b.decrypt(a, kind, body) == b"m%d" % i
    before = b.snapshot(a)
    refusal = b.refused("decrypt", remote=a.address, type=kind, body=b64(body))
    assert refusal.kind == "refused"
    assert "Duplicate" in refusal.message
    assert b.snapshot(a) == before


def test_a_tampered_message_is_refused_with_state_unchanged_then_the_original_decrypts(
    peer: PeerProcess,
) -> None:
    a, b = _session(peer)
    kind, body = a.encrypt(b, b"tamper me")
    before = b.snapshot(a)
    for index in (0, len(body) // 2, len(body) - 1):
        mutated = bytearray(body)
        mutated[index] ^= 0x04
        refusal = b.refused("decrypt", remote=a.address, type=kind, body=b64(bytes(mutated)))
        assert refusal.kind == "refused"
        assert b.snapshot(a) == before
    assert b.decrypt(a, kind, body) == b"tamper me"


def test_decrypt_without_a_session_or_of_a_group_type_is_refused(peer: PeerProcess) -> None:
    a, b = _session(peer)
    kind, body = a.encrypt(b, b"x")
    stranger = P(peer)
    assert (
        stranger.refused("decrypt", remote=a.address, type=kind, body=b64(body)).kind == "refused"
    )
    assert b.refused("decrypt", remote=a.address, type=SENDERKEY, body=b64(body)).kind == "refused"
    assert b.decrypt(a, kind, body) == b"x"


def test_encrypt_many_returns_the_kept_indices_in_order(peer: PeerProcess) -> None:
    a, b = _session(peer)
    r = peer.call(
        "encrypt_many",
        party=a.label,
        remote=b.address,
        plaintext=b64(b"bulk"),
        count=50,
        keep=[49, 0, 17],
    )
    indices = [m["index"] for m in r["messages"]]
    assert indices == [0, 17, 49]
    for m in reversed(r["messages"]):  # out of order, inside the limits
        assert b.decrypt(a, m["type"], unb64(m["body"])) == b"bulk"
    with pytest.raises(PeerRefusal) as info:
        peer.call(
            "encrypt_many", party=a.label, remote=b.address, plaintext="", count=100001, keep=[]
        )
    assert info.value.kind == "internal"


# -- stored state -----------------------------------------------------------------------------


def test_archive_keeps_in_flight_messages_and_stops_sending(peer: PeerProcess) -> None:
    a, b = _session(peer)
    kind, body = a.encrypt(b, b"in flight")
    assert peer.call("has_session", party=b.label, remote=a.address)["has_session"] is True
    peer.call("archive_session", party=b.label, remote=a.address)
    assert peer.call("has_session", party=b.label, remote=a.address)["has_session"] is False
    assert b.refused("encrypt", remote=a.address, plaintext=b64(b"no")).kind == "refused"
    # the archived state still decrypts (and libsignal makes it current again)
    assert b.decrypt(a, kind, body) == b"in flight"
    peer.call("process_bundle", party=b.label, remote=a.address, bundle=a.bundle())
    kind, body = b.encrypt(a, b"again")
    assert kind == PREKEY
    assert a.decrypt(b, kind, body) == b"again"


def test_snapshot_changes_with_the_session_and_the_trusted_identity(peer: PeerProcess) -> None:
    a, b = P(peer), P(peer)
    empty = a.snapshot(b)
    peer.call("process_bundle", party=a.label, remote=b.address, bundle=b.bundle())
    started = a.snapshot(b)
    assert started != empty
    assert a.snapshot(b) == started  # reading changes nothing
    a.encrypt(b, b"x")
    assert a.snapshot(b) != started


def test_identity_change_is_untrusted_until_trusted(peer: PeerProcess) -> None:
    a, b = _session(peer)
    old_registration = b.registration_id
    fresh = peer.call("reset_identity", party=b.label, registration_id=old_registration + 1)
    new_key = unb64(fresh["identity_key"])
    assert new_key != b.identity_key
    assert fresh["registration_id"] == old_registration + 1
    # a reinstall: the session with a is gone on b's side
    assert peer.call("has_session", party=b.label, remote=a.address)["has_session"] is False
    bundle = b.bundle()
    before = a.snapshot(b)
    refusal = a.refused("process_bundle", remote=b.address, bundle=bundle)
    assert refusal.kind == "untrusted_identity"
    assert a.snapshot(b) == before
    peer.call("trust", party=a.label, remote=b.address, identity_key=b64(new_key))
    peer.call("process_bundle", party=a.label, remote=b.address, bundle=bundle)
    kind, body = a.encrypt(b, b"after the change")
    assert b.decrypt(a, kind, body) == b"after the change"


def test_restart_reloads_every_party_and_issuer_from_a_private_state_file(
    tmp_path: Path,
) -> None:
    state = tmp_path / "peer-state.json"
    with PeerProcess((*_argv(), "--state", str(state)), label="libsignal") as peer:
        a, b = _session(peer)
        root = peer.call("ss_create_issuer", issuer="iss", key_id=7)["trust_root"]
        kind, body = a.encrypt(b, b"sent before the restart")
        before = b.snapshot(a)
        peer.call("restart")
        assert stat.S_IMODE(state.stat().st_mode) == 0o600
        assert b.snapshot(a) == before
        assert b.decrypt(a, kind, body) == b"sent before the restart"
        kind, body = b.encrypt(a, b"and after")
        assert a.decrypt(b, kind, body) == b"and after"
        cert = peer.call(
            "ss_issue_sender_certificate",
            issuer="iss",
            sender_uuid=a.name,
            sender_device=1,
            identity_key=b64(a.identity_key),
            expiration_ms=2**42,
        )["certificate"]
        peer.call("restart")  # the state file now holds the latest state
        held = b.snapshot(a)
    # a new process given the same file starts where the last restart left off
    with PeerProcess((*_argv(), "--state", str(state)), label="libsignal") as again:
        a.peer = b.peer = again
        assert b.snapshot(a) == held
        sealed = again.call(
            "ss_encrypt",
            party=a.label,
            remote=b.address,
            plaintext=b64(b"sealed"),
            sender_certificate=cert,
        )["body"]
        r = again.call("ss_decrypt", party=b.label, body=sealed, trust_root=root)
        assert unb64(r["plaintext"]) == b"sealed"


# -- sealed sender ------------------------------------------------------------------------------


def _issue(peer: PeerProcess, sender: P, *, expiration_ms: int = 2**41) -> tuple[str, str]:
    issuer = f"issuer-{uuid.uuid4().hex[:8]}"
    root = peer.call("ss_create_issuer", issuer=issuer, key_id=3)["trust_root"]
    cert = peer.call(
        "ss_issue_sender_certificate",
        issuer=issuer,
        sender_uuid=sender.name,
        sender_device=sender.device,
        identity_key=b64(sender.identity_key),
        expiration_ms=expiration_ms,
        sender_e164="+15555550100",
    )["certificate"]
    return root, cert


def test_sealed_v1_opens_with_the_right_root_and_refuses_bad_certificates(
    peer: PeerProcess,
) -> None:
    a, b = _session(peer)
    root, cert = _issue(peer, a)
    r = peer.call(
        "ss_encrypt", party=a.label, remote=b.address, plaintext=b64(b"s"), sender_certificate=cert
    )
    opened = peer.call("ss_decrypt", party=b.label, body=r["body"], trust_root=root, now_ms=10**12)
    assert opened["sender"] == a.address
    assert opened["type"] == WHISPER
    assert unb64(opened["plaintext"]) == b"s"
    other_root, _ = _issue(peer, a)
    _, expired = _issue(peer, a, expiration_ms=10**12)
    for use_cert, use_root, now in ((cert, other_root, 10**12), (expired, root, 10**12 + 1)):
        body = peer.call(
            "ss_encrypt",
            party=a.label,
            remote=b.address,
            plaintext=b64(b"t"),
            sender_certificate=use_cert,
        )["body"]
        before = b.snapshot(a)
        refusal = b.refused("ss_decrypt", body=body, trust_root=use_root, now_ms=now)
        assert refusal.kind == "refused"
        assert b.snapshot(a) == before


def test_sealed_v1_from_ourselves_is_refused(peer: PeerProcess) -> None:
    a, b = _session(peer)
    root, cert = _issue(peer, b)  # a certificate naming b, sent by a to b
    body = peer.call(
        "ss_encrypt",
        party=a.label,
        remote=b.address,
        plaintext=b64(b"me?"),
        sender_certificate=cert,
    )["body"]
    refusal = b.refused("ss_decrypt", body=body, trust_root=root)
    assert refusal.kind == "refused"


def test_sealed_v2_is_split_per_recipient_in_order_and_each_opens_it(peer: PeerProcess) -> None:
    sender = P(peer)
    recipients = [P(peer), P(peer, device=2)]
    for r in recipients:
        peer.call("process_bundle", party=sender.label, remote=r.address, bundle=r.bundle())
        kind, body = sender.encrypt(r, b"hello")
        r.decrypt(sender, kind, body)
    dist = str(uuid.uuid4())
    skdm = peer.call("group_create", party=sender.label, distribution_id=dist)["skdm"]
    for r in recipients:
        peer.call("group_process", party=r.label, sender=sender.address, skdm=skdm)
    root, cert = _issue(peer, sender)
    sent = peer.call(
        "ss_multi_encrypt",
        party=sender.label,
        distribution_id=dist,
        plaintext=b64(b"to the group"),
        sender_certificate=cert,
        recipients=[r.address for r in recipients],
        group_id=b64(b"g" * 32),
    )["body"]
    split = peer.call("ss_multi_split", body=sent)["recipients"]
    assert [(s["service_id"], s["devices"]) for s in split] == [
        (r.name, [r.device]) for r in recipients
    ]
    for r, part in zip(recipients, split, strict=True):
        opened = peer.call("ss_decrypt", party=r.label, body=part["message"], trust_root=root)
        assert opened["type"] == SENDERKEY
        assert opened["sender"] == sender.address
        assert unb64(opened["plaintext"]) == b"to the group"


# -- groups and fingerprints ---------------------------------------------------------------------


def test_group_messages_decrypt_out_of_order_and_a_replay_is_refused(peer: PeerProcess) -> None:
    a, b = P(peer), P(peer)
    dist = str(uuid.uuid4())
    skdm = peer.call("group_create", party=a.label, distribution_id=dist)["skdm"]
    peer.call("group_process", party=b.label, sender=a.address, skdm=skdm)
    bodies = [
        peer.call("group_encrypt", party=a.label, distribution_id=dist, plaintext=b64(b"g%d" % i))[
            "body"
        ]
        for i in range(6)
    ]
    for i in (3, 0, 5, 1, 4, 2):
        r = peer.call("group_decrypt", party=b.label, sender=a.address, body=bodies[i])
        assert unb64(r["plaintext"]) == b"g%d" % i
    assert b.refused("group_decrypt", sender=a.address, body=bodies[2]).kind == "refused"
    stranger = P(peer)
    assert stranger.refused("group_decrypt", sender=a.address, body=bodies[0]).kind == "refused"
    with pytest.raises(PeerRefusal) as info:
        peer.call("group_create", party=a.label, distribution_id="not-a-uuid")
    assert info.value.kind == "internal"


@pytest.mark.parametrize("version", [1, 2])
def test_fingerprint_is_the_safety_number_securemsg_computes(
    peer: PeerProcess, version: int
) -> None:
    a, b = P(peer), P(peer)
    args = {
        "version": version,
        "iterations": 1024,
        "local_id": b64(a.name.encode()),
        "local_key": b64(a.identity_key),
        "remote_id": b64(b.name.encode()),
        "remote_key": b64(b.identity_key),
    }
    r = peer.call("fingerprint", **args)
    ours = Fingerprint.create(
        version=version,
        iterations=1024,
        local_id=a.name.encode(),
        local_key=IdentityKey.from_bytes(a.identity_key),
        remote_id=b.name.encode(),
        remote_key=IdentityKey.from_bytes(b.identity_key),
    )
    assert r["displayable"] == str(ours.displayable)
    assert len(r["displayable"]) == 60
    assert unb64(r["scannable"]) == ours.scannable.to_bytes()


# -- bad requests ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "request_args",
    [
        {"op": "encrypt", "party": "nobody", "remote": {"name": "x", "device": 1}, "plaintext": ""},
        {"op": "create_party", "party": "p", "name": "x", "device": 0},
        {"op": "create_party", "party": "p", "name": "x", "device": "1"},
        {"op": "fingerprint", "version": 2, "iterations": 5, "local_id": "!!", "local_key": ""},
        {"op": "process_bundle", "party": "nobody"},
        {"op": "ss_issue_sender_certificate", "issuer": "nobody"},
    ],
)
def test_a_bad_request_is_internal_and_the_peer_goes_on(
    peer: PeerProcess, request_args: dict[str, Any]
) -> None:
    op = request_args.pop("op")
    with pytest.raises(PeerRefusal) as info:
        peer.call(op, **request_args)
    assert info.value.kind == "internal"
    assert peer.call("hello")["protocol"] == "securemsg-interop/1"


def test_an_unknown_op_is_unsupported(peer: PeerProcess) -> None:
    with pytest.raises(PeerRefusal) as info:
        peer.call("teleport")
    assert info.value.kind == "unsupported"
