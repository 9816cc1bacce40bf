"""A first message from an account is held to key transparency too.

Bundles the client fetches are checked against the relay's key-transparency directory, but a
PreKey message arriving from an account the client did not know created a session with
whatever identity key it carried. The relay (which can stamp any source, and issues sender
certificates) could so plant a session "with Carol" under a key of its own, even in strict
mode (``kt_pending="wait"``): Bob saw a forged message and later sent Carol's messages to
the relay. Such a message now waits for a lookup of the sender's key: published -> accepted;
another key published, or (strict mode) none yet -> refused, recorded as a failure, no
session, no identity stored.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

from client_harness import new_client, run, with_relay

from securemsg import cipher
from securemsg.client import Client
from securemsg.crypto.rng import SystemRng
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.identity_and_prekeys import IdentityKeyPair
from securemsg.relay.server import RelayServer
from securemsg.relay.store import QueuedMessage
from securemsg.relay_protocol import frames as rf
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.wire.content import Content, encode_padded_content


def test_a_forged_first_prekey_message_is_refused_by_key_transparency(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        rng = SystemRng()
        carol = await new_client(relay, tmp_path / "carol.db")
        bob = await new_client(relay, tmp_path / "bob.db", kt_pending="wait")
        tool = await new_client(relay, tmp_path / "tool.db")
        try:
            assert await relay.publish_kt_epoch() >= 1  # Carol's real key is published
            bob.add_contact(carol.contact_card)
            carol.add_contact(bob.contact_card)
            carol_addr = ProtocolAddress(carol.aci, 1)
            bob_addr = ProtocolAddress(bob.aci, 1)
            await bob.close()
            # the relay: a key pair of its own speaking as Carol, from Bob's public bundle
            fake = InMemoryProtocolStore(IdentityKeyPair.generate(rng), 4242)
            resp = await tool._request(rf.FetchBundles(uuid.UUID(bob.aci).bytes, 1))
            assert isinstance(resp.body, rf.Bundles)
            now = int(time.time() * 1000)
            cipher.process_prekey_bundle(
                tool._bundle(resp.body.bundles[0]),
                bob_addr,
                fake,
                now=now,
                rng=rng,
                local_address=carol_addr,
            )
            forged = cipher.message_encrypt(
                encode_padded_content(Content(now, "hi Bob, it's Carol")),
                bob_addr,
                fake,
                now=now,
                rng=rng,
                local_address=carol_addr,
            )
            relay.service._queue(
                [
                    QueuedMessage(
                        id=os.urandom(16),
                        aci=uuid.UUID(bob.aci).bytes,
                        device_id=1,
                        type=int(rf.EnvelopeType.PREKEY_BUNDLE),
                        source_aci=uuid.UUID(carol.aci).bytes,
                        source_device_id=1,
                        client_timestamp=now,
                        received_at=now,
                        body=forged.to_bytes(),
                    )
                ],
                0,
            )
            await carol.send_text(bob.aci, "the real Carol")  # queued behind the forgery
            bob = await Client.open(tmp_path / "bob.db", kt_pending="wait")
            await bob.connect()
            got = []
            while (m := await bob.receive(timeout=3)) is not None:
                got.append(m.text)
            assert got == ["the real Carol"]
            assert [f.reason for f in bob.failures()] == ["key-transparency"]
            stored = bob.store.get_identity(carol_addr)
            assert stored is not None
            assert stored.to_bytes() == carol.store.get_identity_key_pair().identity_key.to_bytes()
        finally:
            for c in (bob, carol, tool):
                await c.close()

    run(with_relay(tmp_path, body), timeout=120)
