"""Linked devices at the protocol level: libsignal plays some devices of accounts securemsg
plays the others of.

One account = one ACI and one identity key pair, shared by all its devices; each device has its
own registration id, prekeys, sessions and sender-key chains. The libsignal peer plays device 3
of Alice and device 2 of Bob (``dev_add_device`` links a party to an account's identity). A
client's fan-out is played here as a client does it: one message goes, on its own session, to
every current device of the recipient account and to every other device of the sender's own
account (Signal's sync transcript), and a sealed sender v2 upload is split per recipient as the
relay does. There is no relay: the device lists are the test's.

* 1:1 identified and sealed sender v1: every device of both accounts, sent from every device of
  both implementations, reaches every other device exactly once (a second delivery is refused).
* Sealed sender v2 + sender keys (Signal's group send): one upload reaches every device of every
  member and the sender's own other devices; both implementations send.
* A new device of a member (libsignal and securemsg) receives the group's sender keys and reads
  the next group messages, not the earlier ones.
* A removed device: sessions with it are archived, nothing new is encrypted to it, and the
  rotated group sender key does not reach it.
"""

from __future__ import annotations

import collections
import itertools
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from peer_client import LibsignalPeer, PeerCallError, b64, bundle_from_json, bundle_to_json, unb64

from securemsg import cipher, groups, sealed_sender
from securemsg.crypto.curve25519 import PrivateKey, PublicKey
from securemsg.crypto.rng import DeterministicRng
from securemsg.errors import DuplicateMessageError, NoSessionError, PeerError
from securemsg.protocol.address import ProtocolAddress, ServiceId
from securemsg.protocol.identity_and_prekeys import (
    IdentityKeyPair,
    KyberPreKeyRecord,
    PreKeyBundle,
    PreKeyRecord,
    SignedPreKeyRecord,
)
from securemsg.protocol.sealed_sender import (
    SealedSenderV2SentMessage,
    SenderCertificate,
    ServerCertificate,
    UnidentifiedSenderMessageContent,
)
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.wire.messages import CiphertextMessageType

pytestmark = pytest.mark.interop

NOW = int(time.time() * 1000)
EXPIRES = NOW + 86_400_000
GROUP_ID = b"linked-devices-group-id-00000000"
_labels = itertools.count(1)
_rng = DeterministicRng(uuid.uuid4().bytes)


@dataclass(frozen=True)
class Sent:
    """One ciphertext on its way to one device (``type`` None: sealed sender)."""

    sender: ProtocolAddress
    recipient: ProtocolAddress
    type: int | None
    body: bytes


class Authority:
    """The relay's trust root and server certificate; issues sender certificates."""

    def __init__(self) -> None:
        self.root = PrivateKey.generate(_rng)
        self.server = PrivateKey.generate(_rng)
        self.server_cert = ServerCertificate.new(1, self.server.public_key(), self.root, _rng)

    @property
    def root_public(self) -> PublicKey:
        return self.root.public_key()

    def certificate(self, address: ProtocolAddress, key: PublicKey) -> SenderCertificate:
        return SenderCertificate.new(
            sender_uuid=address.name,
            sender_e164=None,
            sender_device_id=address.device_id,
            key=key,
            expiration=EXPIRES,
            signer=self.server_cert,
            signer_key=self.server,
            rng=_rng,
        )


class Device:
    """One device of an account; the two implementations below answer the same calls."""

    kind = ""

    def __init__(self, account: Account, device_id: int) -> None:
        self.account = account
        self.address = ProtocolAddress(account.aci, device_id)
        self.registration_id = 0

    @property
    def certificate(self) -> SenderCertificate:
        return self.account.authority.certificate(self.address, self.account.identity_key)

    def __repr__(self) -> str:
        return f"{self.kind}:{self.account.label}.{self.address.device_id}"

    # Each of these is implemented by both kinds.
    def bundle(self) -> PreKeyBundle:
        raise NotImplementedError

    def process_bundle(self, remote: ProtocolAddress, bundle: PreKeyBundle) -> None:
        raise NotImplementedError

    def encrypt_many(
        self, targets: list[ProtocolAddress], plaintext: bytes, sealed_v1: bool
    ) -> list[Sent]:
        raise NotImplementedError

    def receive_many(self, messages: list[Sent]) -> list[tuple[ProtocolAddress, bytes] | Exception]:
        raise NotImplementedError

    def skdm(self, distribution_id: uuid.UUID) -> bytes:
        raise NotImplementedError

    def process_skdm(self, sender: ProtocolAddress, skdm: bytes) -> None:
        raise NotImplementedError

    def group_send(
        self, distribution_id: uuid.UUID, plaintexts: list[bytes], targets: list[ProtocolAddress]
    ) -> list[bytes]:
        """Sender-key messages in a sealed sender v2 upload each (sent form)."""
        raise NotImplementedError

    def receive_group(self, received: bytes) -> tuple[ProtocolAddress, bytes] | Exception:
        raise NotImplementedError

    def session_devices(self, name: str) -> list[int]:
        raise NotImplementedError

    def archive_sessions(self, name: str, device_ids: list[int]) -> None:
        raise NotImplementedError


class SmDevice(Device):
    kind = "securemsg"

    def __init__(self, account: Account, device_id: int) -> None:
        super().__init__(account, device_id)
        self.rng = DeterministicRng(uuid.uuid4().bytes)
        self.registration_id = 1 + (device_id * 997 + len(account.label) * 31) % 0x3FFE
        self.store = InMemoryProtocolStore(account.identity, self.registration_id)
        self._ids = itertools.count(1)

    def bundle(self) -> PreKeyBundle:
        ik = self.account.identity
        n = next(self._ids)
        pre = PreKeyRecord.generate(n, self.rng)
        spk = SignedPreKeyRecord.generate(n, ik, NOW, self.rng)
        kpk = KyberPreKeyRecord.generate(n, ik, NOW, self.rng)
        self.store.save_pre_key(n, pre)
        self.store.save_signed_pre_key(n, spk)
        self.store.save_kyber_pre_key(n, kpk, last_resort=False)
        return PreKeyBundle(
            registration_id=self.registration_id,
            device_id=self.address.device_id,
            pre_key_id=n,
            pre_key_public=pre.public_key,
            signed_pre_key_id=n,
            signed_pre_key_public=spk.public_key,
            signed_pre_key_signature=spk.signature,
            identity_key=ik.identity_key,
            kyber_pre_key_id=n,
            kyber_pre_key_public=kpk.public_key,
            kyber_pre_key_signature=kpk.signature,
        )

    def process_bundle(self, remote: ProtocolAddress, bundle: PreKeyBundle) -> None:
        cipher.process_prekey_bundle(
            bundle, remote, self.store, now=NOW, rng=self.rng, local_address=self.address
        )

    def encrypt_many(
        self, targets: list[ProtocolAddress], plaintext: bytes, sealed_v1: bool
    ) -> list[Sent]:
        out = []
        for target in targets:
            if sealed_v1:
                body = sealed_sender.sealed_sender_encrypt(
                    target, self.certificate, plaintext, self.store, now=NOW, rng=self.rng
                )
                out.append(Sent(self.address, target, None, body))
            else:
                message = cipher.message_encrypt(
                    plaintext, target, self.store, now=NOW, rng=self.rng, local_address=self.address
                )
                out.append(
                    Sent(self.address, target, int(message.message_type), message.to_bytes())
                )
        return out

    def receive_many(self, messages: list[Sent]) -> list[tuple[ProtocolAddress, bytes] | Exception]:
        out: list[tuple[ProtocolAddress, bytes] | Exception] = []
        for m in messages:
            try:
                if m.type is None:
                    result = sealed_sender.sealed_sender_decrypt(
                        m.body,
                        self.account.authority.root_public,
                        self.store,
                        now=NOW,
                        local_uuid=self.address.name,
                        local_device_id=self.address.device_id,
                        rng=self.rng,
                    )
                    out.append((result.sender, result.plaintext))
                else:
                    plaintext = cipher.message_decrypt(
                        m.body,
                        CiphertextMessageType(m.type),
                        m.sender,
                        self.store,
                        now=NOW,
                        rng=self.rng,
                        local_address=self.address,
                    )
                    out.append((m.sender, plaintext))
            except PeerError as exc:
                out.append(exc)
        return out

    def skdm(self, distribution_id: uuid.UUID) -> bytes:
        return groups.create_sender_key_distribution_message(
            self.address, distribution_id, self.store, rng=self.rng
        ).to_bytes()

    def process_skdm(self, sender: ProtocolAddress, skdm: bytes) -> None:
        groups.process_sender_key_distribution_message(sender, skdm, self.store)

    def group_send(
        self, distribution_id: uuid.UUID, plaintexts: list[bytes], targets: list[ProtocolAddress]
    ) -> list[bytes]:
        out = []
        for plaintext in plaintexts:
            skm = groups.group_encrypt(
                self.address, distribution_id, plaintext, self.store, rng=self.rng
            )
            usmc = UnidentifiedSenderMessageContent.new(
                CiphertextMessageType.SENDERKEY, self.certificate, skm.to_bytes(), 1, GROUP_ID
            )
            out.append(
                sealed_sender.sealed_sender_multi_recipient_encrypt(
                    targets, usmc, self.store, rng=self.rng
                )
            )
        return out

    def receive_group(self, received: bytes) -> tuple[ProtocolAddress, bytes] | Exception:
        try:
            usmc = sealed_sender.sealed_sender_decrypt_to_usmc(received, self.store)
            usmc.sender.validate(self.account.authority.root_public, NOW)
            assert usmc.msg_type is CiphertextMessageType.SENDERKEY
            assert usmc.group_id == GROUP_ID
            sender = ProtocolAddress(usmc.sender.sender_uuid, usmc.sender.sender_device_id)
            return sender, groups.group_decrypt(usmc.contents, sender, self.store)
        except (PeerError, NoSessionError) as exc:
            return exc

    def session_devices(self, name: str) -> list[int]:
        return [
            d
            for d in self.store.get_session_device_ids(name)
            if (r := self.store.load_session(ProtocolAddress(name, d))) is not None
            and r.current is not None
        ]

    def archive_sessions(self, name: str, device_ids: list[int]) -> None:
        for d in device_ids:
            address = ProtocolAddress(name, d)
            record = self.store.load_session(address)
            if record is not None:
                self.store.store_session(address, record.archive_current_state())


class LsDevice(Device):
    kind = "libsignal"

    def __init__(self, account: Account, device_id: int, peer: LibsignalPeer) -> None:
        super().__init__(account, device_id)
        self.peer = peer
        self.label = f"dev-{next(_labels)}-{uuid.uuid4().hex[:6]}"
        self.registration_id = 1 + (device_id * 463 + len(account.label) * 17) % 0x3FFE
        if account.anchor is None:
            r = peer.call(
                "create_party",
                party=self.label,
                name=account.aci,
                device_id=device_id,
                identity_private=b64(account.identity.private_key.to_bytes()),
                registration_id=self.registration_id,
            )
            account.anchor = self.label
        else:  # a linked device: the account's identity, its own registration id and stores
            r = peer.call(
                "dev_add_device",
                party=self.label,
                account_party=account.anchor,
                device_id=device_id,
                registration_id=self.registration_id,
            )
        assert unb64(r["identity_key"]) == account.identity.identity_key.to_bytes()
        self._ids = itertools.count(1)

    def bundle(self) -> PreKeyBundle:
        n = next(self._ids)
        return bundle_from_json(
            self.peer.call(
                "generate_bundle",
                party=self.label,
                pre_key_id=n,
                signed_pre_key_id=n,
                kyber_pre_key_id=n,
                timestamp_ms=NOW,
            )
        )

    def process_bundle(self, remote: ProtocolAddress, bundle: PreKeyBundle) -> None:
        self.peer.call(
            "process_bundle",
            party=self.label,
            remote_name=remote.name,
            remote_device=remote.device_id,
            bundle=bundle_to_json(bundle),
            now_ms=NOW,
        )

    def encrypt_many(
        self, targets: list[ProtocolAddress], plaintext: bytes, sealed_v1: bool
    ) -> list[Sent]:
        args: dict[str, Any] = {
            "party": self.label,
            "plaintext": b64(plaintext),
            "recipients": [{"name": t.name, "device": t.device_id} for t in targets],
        }
        if sealed_v1:
            args["sender_certificate"] = b64(self.certificate.to_bytes())
        out = []
        for target, item in zip(
            targets, self.peer.items(self.peer.call("dev_fanout_encrypt", **args)), strict=True
        ):
            if isinstance(item, PeerCallError):
                raise item
            assert (item["name"], item["device"]) == (target.name, target.device_id)
            out.append(Sent(self.address, target, item["type"], unb64(item["body"])))
        return out

    def receive_many(self, messages: list[Sent]) -> list[tuple[ProtocolAddress, bytes] | Exception]:
        items = []
        for m in messages:
            item: dict[str, Any] = {"body": b64(m.body)}
            if m.type is not None:
                item.update(
                    type=m.type, sender_name=m.sender.name, sender_device=m.sender.device_id
                )
            items.append(item)
        result = self.peer.call(
            "dev_receive_many",
            party=self.label,
            trust_root=b64(self.account.authority.root_public.to_bytes()),
            now_ms=NOW,
            messages=items,
        )
        out: list[tuple[ProtocolAddress, bytes] | Exception] = []
        for r in self.peer.items(result):
            if isinstance(r, PeerCallError):
                out.append(r)
            else:
                sender = ProtocolAddress(r["sender_name"], r["sender_device"])
                out.append((sender, unb64(r["plaintext"])))
        return out

    def skdm(self, distribution_id: uuid.UUID) -> bytes:
        r = self.peer.call("skdm_create", party=self.label, distribution_id=str(distribution_id))
        return unb64(r["skdm"])

    def process_skdm(self, sender: ProtocolAddress, skdm: bytes) -> None:
        self.peer.call(
            "skdm_process",
            party=self.label,
            sender_name=sender.name,
            sender_device=sender.device_id,
            skdm=b64(skdm),
        )

    def group_send(
        self, distribution_id: uuid.UUID, plaintexts: list[bytes], targets: list[ProtocolAddress]
    ) -> list[bytes]:
        r = self.peer.call(
            "group_encrypt_many",
            party=self.label,
            distribution_id=str(distribution_id),
            plaintexts=[b64(p) for p in plaintexts],
            sender_certificate=b64(self.certificate.to_bytes()),
            group_id=b64(GROUP_ID),
        )
        recipients = [{"name": t.name, "device": t.device_id} for t in targets]
        return [
            unb64(
                self.peer.call("ss_multi_encrypt", party=self.label, usmc=u, recipients=recipients)[
                    "body"
                ]
            )
            for u in r["usmcs"]
        ]

    def receive_group(self, received: bytes) -> tuple[ProtocolAddress, bytes] | Exception:
        try:
            facts = self.peer.call("ss_decrypt_to_usmc", party=self.label, body=b64(received))
        except PeerCallError as exc:
            return exc
        valid = self.peer.call(
            "ss_validate_sender_certificate",
            certificate=facts["sender_certificate"],
            trust_roots=[b64(self.account.authority.root_public.to_bytes())],
            now_ms=NOW,
        )
        assert valid["valid"] and facts["msg_type"] == 7 and unb64(facts["group_id"]) == GROUP_ID
        sender = ProtocolAddress(facts["sender_uuid"], facts["sender_device"])
        (r,) = self.peer.items(
            self.peer.call(
                "group_decrypt_many",
                party=self.label,
                sender_name=sender.name,
                sender_device=sender.device_id,
                bodies=[facts["contents"]],
            )
        )
        if isinstance(r, PeerCallError):
            return r
        return sender, unb64(r["plaintext"])

    def session_devices(self, name: str) -> list[int]:
        r = self.peer.call("dev_session_devices", party=self.label, name=name)
        return list(r["device_ids"])

    def archive_sessions(self, name: str, device_ids: list[int]) -> None:
        self.peer.call("dev_archive_sessions", party=self.label, name=name, device_ids=device_ids)


@dataclass
class Account:
    label: str
    authority: Authority
    aci: str = field(default_factory=lambda: str(uuid.uuid4()))
    identity: IdentityKeyPair = field(default_factory=lambda: IdentityKeyPair.generate(_rng))
    devices: dict[int, Device] = field(default_factory=dict)
    anchor: str | None = None  # the first libsignal party of this account

    @property
    def identity_key(self) -> PublicKey:
        return self.identity.identity_key.public_key

    def add(self, device: Device) -> Device:
        assert device.address.device_id not in self.devices
        self.devices[device.address.device_id] = device
        return device


class World:
    """Accounts, their current device lists (the relay's role), and what each device got."""

    def __init__(self, peer: LibsignalPeer) -> None:
        self.peer = peer
        self.authority = Authority()
        self.accounts: dict[str, Account] = {}
        self.inbox: dict[ProtocolAddress, list[tuple[ProtocolAddress, bytes]]] = (
            collections.defaultdict(list)
        )
        self._serial = itertools.count(1)

    def account(self, label: str, kinds: dict[int, str]) -> Account:
        account = Account(label, self.authority)
        self.accounts[label] = account
        for device_id, kind in kinds.items():
            self.link(account, device_id, kind)
        return account

    def link(self, account: Account, device_id: int, kind: str) -> Device:
        if kind == "sm":
            return account.add(SmDevice(account, device_id))
        return account.add(LsDevice(account, device_id, self.peer))

    def device(self, address: ProtocolAddress) -> Device:
        for account in self.accounts.values():
            if account.aci == address.name and address.device_id in account.devices:
                return account.devices[address.device_id]
        raise KeyError(address)

    def all_devices(self) -> list[Device]:
        return [d for a in self.accounts.values() for d in a.devices.values()]

    def targets(self, sender: Device, *accounts: Account) -> list[ProtocolAddress]:
        """Every current device of the given accounts and of the sender's own, but the sender."""
        out = []
        for account in (*accounts, sender.account):
            for d in account.devices.values():
                if d is not sender and d.address not in out:
                    out.append(d.address)
        return out

    def ensure_sessions(self, sender: Device, targets: list[ProtocolAddress]) -> None:
        have = collections.defaultdict(set)
        for t in targets:
            if t.device_id not in have[t.name]:
                have[t.name] = set(sender.session_devices(t.name))
            if t.device_id not in have[t.name]:
                sender.process_bundle(t, self.device(t).bundle())
                have[t.name].add(t.device_id)

    def message(self, sender: Device) -> bytes:
        return f"#{next(self._serial)} from {sender!r}".encode()

    def send(self, sender: Device, to: Account, *, sealed_v1: bool) -> tuple[bytes, list[Sent]]:
        """A 1:1 send as a client does it: to every device of ``to`` and our other devices."""
        targets = self.targets(sender, to)
        self.ensure_sessions(sender, targets)
        plaintext = self.message(sender)
        return plaintext, sender.encrypt_many(targets, plaintext, sealed_v1)

    def deliver(self, sent: list[Sent]) -> None:
        by_device: dict[ProtocolAddress, list[Sent]] = collections.defaultdict(list)
        for s in sent:
            by_device[s.recipient].append(s)
        for address, messages in by_device.items():
            results = self.device(address).receive_many(messages)
            for m, r in zip(messages, results, strict=True):
                assert not isinstance(r, Exception), f"{address} could not read {m}: {r!r}"
                sender, plaintext = r
                assert sender == m.sender
                self.inbox[address].append((sender, plaintext))


def _expect_once(world: World, plaintext: bytes, sender: Device, to: list[ProtocolAddress]) -> None:
    for address in to:
        got = collections.Counter(p for s, p in world.inbox[address] if s == sender.address)
        assert got[plaintext] == 1, f"{address} got {plaintext!r} {got[plaintext]} times"


@pytest.fixture
def world(libsignal_peer: LibsignalPeer) -> World:
    return World(libsignal_peer)


def _alice_and_bob(world: World) -> tuple[Account, Account]:
    alice = world.account("alice", {1: "sm", 2: "sm", 3: "ls"})
    bob = world.account("bob", {1: "sm", 2: "ls"})
    return alice, bob


# --- 1:1 ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sealed_v1", [False, True], ids=["identified", "sealed-v1"])
def test_one_to_one_reaches_every_device_of_both_accounts(world: World, sealed_v1: bool) -> None:
    alice, bob = _alice_and_bob(world)
    for _round in range(2):  # the second round runs on established (Whisper) sessions
        for sender_account, other in ((alice, bob), (bob, alice)):
            for sender in sender_account.devices.values():
                plaintext, sent = world.send(sender, other, sealed_v1=sealed_v1)
                world.deliver(sent)
                _expect_once(world, plaintext, sender, world.targets(sender, other))
    # Every device holds a session with every other device of both accounts, in both
    # implementations; nobody holds one with itself.
    for device in world.all_devices():
        for account in (alice, bob):
            expected = [d for d in account.devices if account.devices[d] is not device]
            assert device.session_devices(account.aci) == expected
    # 5 devices, 4 senders' worth of messages each way: each device read 4 * 2 rounds.
    for device in world.all_devices():
        assert len(world.inbox[device.address]) == 4 * 2


def test_a_second_delivery_is_refused_by_both_implementations(world: World) -> None:
    alice, bob = _alice_and_bob(world)
    for sealed_v1 in (False, True):
        for sender in (alice.devices[1], alice.devices[3]):
            _, sent = world.send(sender, bob, sealed_v1=sealed_v1)
            world.deliver(sent)
            for s in sent:
                (again,) = world.device(s.recipient).receive_many([s])
                assert isinstance(again, (DuplicateMessageError, PeerCallError)), again
                if isinstance(again, PeerCallError):
                    assert again.type == "DuplicatedMessage"


# --- groups: sender keys over sealed sender v2 -----------------------------------------------


def _split_and_deliver(world: World, sender: Device, sent: bytes) -> list[ProtocolAddress]:
    """The relay's split of a v2 upload, checked against libsignal's; every listed device
    reads its copy. Returns the devices that read it."""
    ours = SealedSenderV2SentMessage.parse(sent)
    theirs = world.peer.call("ss_multi_split", body=b64(sent))
    assert set(theirs["recipients"]) == {str(s) for s in ours.recipients}
    reached = []
    for sid, devices in ours.recipients.items():
        received = ours.message_for_recipient(sid)
        assert unb64(theirs["recipients"][str(sid)]["message"]) == received
        for device_id, registration_id in devices:
            device = world.device(ProtocolAddress(str(sid), device_id))
            # the relay refuses a stale device list by comparing registration ids
            assert registration_id == device.registration_id
            result = device.receive_group(received)
            assert not isinstance(result, Exception), f"{device!r}: {result!r}"
            from_, plaintext = result
            assert from_ == sender.address
            world.inbox[device.address].append((from_, plaintext))
            reached.append(device.address)
    return reached


class Group:
    def __init__(self, world: World, members: list[Account]) -> None:
        self.world = world
        self.members = members
        self.distribution: dict[ProtocolAddress, uuid.UUID] = {}

    def targets(self, sender: Device) -> list[ProtocolAddress]:
        # v2 groups consecutive devices of one account into one recipient: keep them together
        return self.world.targets(sender, *self.members)

    def distribute(self, sender: Device, to: list[ProtocolAddress] | None = None) -> None:
        """The sender's SKDM over 1:1 sessions (sealed v1) to every device of every member."""
        dist = self.distribution.setdefault(sender.address, uuid.uuid4())
        targets = self.targets(sender) if to is None else to
        self.world.ensure_sessions(sender, targets)
        skdm = sender.skdm(dist)
        for s in sender.encrypt_many(targets, skdm, sealed_v1=True):
            device = self.world.device(s.recipient)
            (r,) = device.receive_many([s])
            assert not isinstance(r, Exception), r
            assert r == (sender.address, skdm)
            device.process_skdm(sender.address, skdm)

    def send(self, sender: Device, count: int = 2) -> list[tuple[bytes, bytes]]:
        """``count`` group messages, each one v2 upload; returns (plaintext, upload) pairs."""
        plaintexts = [self.world.message(sender) for _ in range(count)]
        uploads = sender.group_send(
            self.distribution[sender.address], plaintexts, self.targets(sender)
        )
        return list(zip(plaintexts, uploads, strict=True))


def test_group_messages_reach_every_device_of_every_member(world: World) -> None:
    alice, bob = _alice_and_bob(world)
    carol = world.account("carol", {1: "ls", 2: "sm"})
    group = Group(world, [alice, bob, carol])
    senders = [alice.devices[1], alice.devices[3], bob.devices[2], carol.devices[2]]
    for sender in senders:
        group.distribute(sender)
    for sender in senders:
        for plaintext, upload in group.send(sender):
            reached = _split_and_deliver(world, sender, upload)
            expected = group.targets(sender)
            assert sorted(reached, key=str) == sorted(expected, key=str)
            _expect_once(world, plaintext, sender, expected)
    # 7 devices; each reads 2 messages from each of the 4 senders but itself.
    for device in world.all_devices():
        own = 2 if device in senders else 0
        assert len(world.inbox[device.address]) == 2 * len(senders) - own


def test_a_new_device_of_a_member_receives_the_group_sender_keys(world: World) -> None:
    alice, bob = _alice_and_bob(world)
    carol = world.account("carol", {1: "sm"})
    group = Group(world, [alice, bob, carol])
    senders = [alice.devices[1], alice.devices[3], bob.devices[2], carol.devices[1]]
    for sender in senders:
        group.distribute(sender)
    before = {sender: group.send(sender, 1) for sender in senders}
    for sender, sends in before.items():
        for _plaintext, upload in sends:
            _split_and_deliver(world, sender, upload)

    # Bob links a libsignal device 3, Alice a securemsg device 4. Every sender hands the new
    # devices its current sender key (a client does so when the device list grows).
    bob3 = world.link(bob, 3, "ls")
    alice4 = world.link(alice, 4, "sm")
    for sender in senders:
        group.distribute(sender, to=[bob3.address, alice4.address])
    for sender in senders:
        for plaintext, upload in group.send(sender):
            reached = _split_and_deliver(world, sender, upload)
            assert bob3.address in reached and alice4.address in reached
            _expect_once(world, plaintext, sender, group.targets(sender))
    # History stays history: the earlier messages do not open on the new devices.
    for sends in before.values():
        for _plaintext, upload in sends:
            ours = SealedSenderV2SentMessage.parse(upload)
            for new in (bob3, alice4):
                assert ServiceId.parse(new.address.name) in ours.recipients
                assert (new.address.device_id, new.registration_id) not in ours.recipients[
                    ServiceId.parse(new.address.name)
                ]
            # Even handed the copy meant for its account, a new device cannot read it.
            for new in (bob3, alice4):
                received = ours.message_for_recipient(ServiceId.parse(new.address.name))
                assert isinstance(new.receive_group(received), Exception)
    # The new devices send to the group too, and every device reads them.
    for new in (bob3, alice4):
        group.distribute(new)
        for plaintext, upload in group.send(new):
            _split_and_deliver(world, new, upload)
            _expect_once(world, plaintext, new, group.targets(new))


def test_a_removed_device_gets_nothing_new(world: World) -> None:
    alice, bob = _alice_and_bob(world)
    group = Group(world, [alice, bob])
    for sender in (alice.devices[1], alice.devices[3], bob.devices[1]):
        group.distribute(sender)
        for plaintext, upload in group.send(sender, 1):
            _split_and_deliver(world, sender, upload)
            _expect_once(world, plaintext, sender, group.targets(sender))

    # Bob removes his libsignal device 2. The others learn it from the device list (the
    # relay's mismatch answer), archive their sessions with it and rotate their sender keys.
    removed = bob.devices.pop(2)
    for device in world.all_devices():
        device.archive_sessions(bob.aci, [2])
        assert 2 not in device.session_devices(bob.aci)
    with pytest.raises(NoSessionError):
        alice.devices[1].encrypt_many([removed.address], b"x", sealed_v1=False)
    with pytest.raises(PeerCallError):
        alice.devices[3].encrypt_many([removed.address], b"x", sealed_v1=False)

    received_before = len(world.inbox[removed.address])
    for sender in (alice.devices[1], alice.devices[3], bob.devices[1]):
        other = bob if sender.account is alice else alice
        plaintext, sent = world.send(sender, other, sealed_v1=True)
        assert removed.address not in {s.recipient for s in sent}
        world.deliver(sent)
        _expect_once(world, plaintext, sender, world.targets(sender, other))
        group.distribution.pop(sender.address)  # a fresh sender key, sent to current devices
        group.distribute(sender)
        for _plaintext, upload in group.send(sender, 1):
            reached = _split_and_deliver(world, sender, upload)
            assert removed.address not in reached
            ours = SealedSenderV2SentMessage.parse(upload)
            bob_sid = ServiceId.parse(bob.aci)
            if bob_sid not in ours.recipients:  # Bob's only device sent it
                assert sender.account is bob and list(bob.devices) == [1]
                continue
            # Even handed Bob's copy, the removed device cannot read the new chain.
            assert isinstance(removed.receive_group(ours.message_for_recipient(bob_sid)), Exception)
    assert len(world.inbox[removed.address]) == received_before
