"""Sender-key groups mixing securemsg and libsignal members, with out-of-order delivery.

Three members: two securemsg clients (A, B) and one libsignal client (C, in the Node peer).
Each hands its SenderKeyDistributionMessage to the others; then 510 messages are sent
(A, B and C taking turns) and every other member receives them in a shuffled order, so skipped
keys are stored and used on both implementations.
"""

from __future__ import annotations

import random
import uuid

from peer_client import LibsignalPeer, PeerCallError, b64, unb64

from securemsg import groups
from securemsg.crypto.rng import DeterministicRng
from securemsg.errors import DuplicateMessageError
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.identity_and_prekeys import IdentityKeyPair
from securemsg.store.memory import InMemoryProtocolStore

MESSAGES_PER_MEMBER = 170


class PyMember:
    def __init__(self, seed: bytes) -> None:
        self.rng = DeterministicRng(seed)
        self.store = InMemoryProtocolStore(IdentityKeyPair.generate(self.rng), 1)
        self.address = ProtocolAddress(str(uuid.UUID(bytes=self.rng.random_bytes(16))), 1)


def test_three_member_group_out_of_order(libsignal_peer: LibsignalPeer, party_label: str) -> None:
    shuffle = random.Random(5)
    dist = uuid.uuid4()
    a, b = PyMember(b"group-a"), PyMember(b"group-b")
    c_name = str(uuid.uuid4())
    libsignal_peer.create_party(party_label, c_name, 2)
    c_addr = ProtocolAddress(c_name, 2)

    skdm_a = groups.create_sender_key_distribution_message(a.address, dist, a.store, rng=a.rng)
    skdm_b = groups.create_sender_key_distribution_message(b.address, dist, b.store, rng=b.rng)
    skdm_c = unb64(
        libsignal_peer.call("skdm_create", party=party_label, distribution_id=str(dist))["skdm"]
    )
    for member, other, skdm in ((a, b, skdm_b), (b, a, skdm_a)):
        groups.process_sender_key_distribution_message(other.address, skdm, member.store)
    for member in (a, b):
        groups.process_sender_key_distribution_message(c_addr, skdm_c, member.store)
    for sender, skdm in ((a, skdm_a), (b, skdm_b)):
        libsignal_peer.call(
            "skdm_process",
            party=party_label,
            sender_name=sender.address.name,
            sender_device=sender.address.device_id,
            skdm=b64(skdm.to_bytes()),
        )

    sent: dict[str, list[tuple[bytes, bytes]]] = {"a": [], "b": [], "c": []}
    for i in range(MESSAGES_PER_MEMBER):
        for key, m in (("a", a), ("b", b)):
            pt = b"%s-%d" % (key.encode(), i)
            sent[key].append(
                (pt, groups.group_encrypt(m.address, dist, pt, m.store, rng=m.rng).to_bytes())
            )
    c_pts = [b"c-%d" % i for i in range(MESSAGES_PER_MEMBER)]
    c_bodies = libsignal_peer.call(
        "group_encrypt_many",
        party=party_label,
        distribution_id=str(dist),
        plaintexts=[b64(p) for p in c_pts],
    )["bodies"]
    sent["c"] = [(p, unb64(x)) for p, x in zip(c_pts, c_bodies, strict=True)]
    assert sum(len(v) for v in sent.values()) >= 500

    senders = {"a": a, "b": b}
    # securemsg receivers
    for receiver_key, receiver in (("a", a), ("b", b)):
        for sender_key, messages in sent.items():
            if sender_key == receiver_key:
                continue
            address = c_addr if sender_key == "c" else senders[sender_key].address
            order = list(messages)
            shuffle.shuffle(order)
            for pt, body in order:
                assert groups.group_decrypt(body, address, receiver.store) == pt
            # a replay is refused as a duplicate
            try:
                groups.group_decrypt(order[0][1], address, receiver.store)
                raise AssertionError("replay accepted")
            except DuplicateMessageError:
                pass
    # the libsignal receiver
    for sender_key in ("a", "b"):
        order = list(sent[sender_key])
        shuffle.shuffle(order)
        results = libsignal_peer.items(
            libsignal_peer.call(
                "group_decrypt_many",
                party=party_label,
                sender_name=senders[sender_key].address.name,
                sender_device=1,
                bodies=[b64(body) for _, body in order],
            )
        )
        for (pt, _), r in zip(order, results, strict=True):
            assert not isinstance(r, PeerCallError), r
            assert unb64(r["plaintext"]) == pt
