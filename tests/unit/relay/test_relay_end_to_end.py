"""The relay over loopback, driven by a raw frame client: registration, authentication,
bundles, identified and sealed delivery, pushes, acks, redelivery and restart."""

from __future__ import annotations

import uuid
from pathlib import Path

from relay_harness import NOW, Device, RawClient, authenticated, registered, relay, run, to_bundle

from securemsg import cipher
from securemsg.protocol.sealed_sender import SenderCertificate
from securemsg.sealed import sealed_sender_decrypt, sealed_sender_encrypt
from securemsg.wire import relay_frames as rf
from securemsg.wire.messages import CiphertextMessageType


def test_register_send_identified_and_sealed_receive_ack_reconnect_restart(
    tmp_path: Path,
) -> None:
    db = tmp_path / "relay.db"
    alice, bob = Device.new(1), Device.new(2)

    async def body() -> None:
        async with relay(db) as server:
            a = await registered(server.url, alice)
            b = await registered(server.url, bob)

            # Alice fetches Bob's bundle: one-time keys are handed out once each.
            r = await a.request(rf.FetchBundles(bob.aci))
            assert r.code == rf.StatusCode.OK and isinstance(r.body, rf.Bundles)
            (bundle,) = r.body.bundles
            assert bundle.pre_key is not None and not bundle.kyber_last_resort
            assert (await b.request(rf.GetPreKeyCounts())).body == rf.PreKeyCounts(1, 0)

            # Identified 1:1 message (PQXDH + ratchet from the fetched bundle).
            assert alice.store is not None and bob.store is not None
            core = to_bundle(bundle)
            core.verify_signatures()
            cipher.process_prekey_bundle(
                core, bob.address, alice.store, now=NOW, rng=alice.rng,
                local_address=alice.address,
            )  # fmt: skip
            msg = cipher.message_encrypt(
                b"hello bob", bob.address, alice.store, now=NOW, rng=alice.rng,
                local_address=alice.address,
            )  # fmt: skip
            out = rf.OutgoingMessage(
                1, bob.registration_id, rf.EnvelopeType.PREKEY_BUNDLE, msg.to_bytes()
            )
            r = await a.request(rf.SendMessage(bob.aci, NOW, (out,)))
            assert r.code == rf.StatusCode.OK, r
            (env,) = await b.wait_pushes(1)
            assert env.source_aci == alice.aci and env.source_device_id == 1
            plain = cipher.message_decrypt(
                env.body, CiphertextMessageType.PREKEY, alice.address, bob.store,
                now=NOW, rng=bob.rng, local_address=bob.address,
            )  # fmt: skip
            assert plain == b"hello bob"

            # Sealed reply from Bob over an unauthenticated connection.
            r = await b.request(rf.GetSenderCertificate())
            assert isinstance(r.body, rf.SenderCertificateResponse)
            cert = SenderCertificate.from_bytes(r.body.certificate)
            cert.validate(server.trust_root_public, NOW)
            sealed = sealed_sender_encrypt(
                alice.address, cert, b"hi alice, sealed", bob.store, now=NOW, rng=bob.rng
            )
            anon = await RawClient.open(server.url)
            wrong = rf.SendSealed(alice.aci, bytes(16), NOW, (rf.OutgoingMessage(
                1, alice.registration_id, 0, sealed),))  # fmt: skip
            assert (await anon.request(wrong)).code == rf.StatusCode.UNAUTHENTICATED
            good = rf.SendSealed(alice.aci, alice.access_key, NOW, wrong.messages)
            assert (await anon.request(good)).code == rf.StatusCode.OK
            (env2,) = await a.wait_pushes(1)
            assert env2.type == rf.EnvelopeType.UNIDENTIFIED_SENDER
            assert env2.source_aci is None and env2.source_device_id == 0
            result = sealed_sender_decrypt(
                env2.body, server.trust_root_public, alice.store, now=NOW,
                local_uuid=str(uuid.UUID(bytes=alice.aci)), local_device_id=1, rng=alice.rng,
            )  # fmt: skip
            assert result.plaintext == b"hi alice, sealed"
            assert result.sender == bob.address
            await anon.close()

            # Bob does not ack: a reconnect gets the message again; after the ack, never.
            await b.close()
            b = await authenticated(server.url, bob)
            assert [e.id for e in b.pushes] == [env.id]
            assert (await b.request(rf.Ack((env.id,)))).code == rf.StatusCode.OK
            await b.close()
            b = await authenticated(server.url, bob)
            assert b.pushes == []
            await b.close()

            # Alice leaves her sealed message un-acked across a relay restart.
            await a.close()
            trust_root = server.trust_root_public

        async with relay(db) as server2:
            assert server2.trust_root_public == trust_root  # keys survive restarts
            a = await authenticated(server2.url, alice)
            assert [e.id for e in a.pushes] == [env2.id]
            assert a.pushes[0].body == env2.body
            await a.close()

    run(body)


def test_second_connection_of_a_device_replaces_the_first(tmp_path: Path) -> None:
    alice, bob = Device.new(3), Device.new(4)

    async def body() -> None:
        async with relay(tmp_path / "r.db") as server:
            a1 = await registered(server.url, alice)
            b = await registered(server.url, bob)
            a2 = await authenticated(server.url, alice)
            assert await a1.closed() == 4000
            out = rf.OutgoingMessage(1, alice.registration_id, rf.EnvelopeType.CIPHERTEXT, b"x")
            assert (await b.request(rf.SendMessage(alice.aci, 1, (out,)))).code == 0
            (env,) = await a2.wait_pushes(1)
            assert env.body == b"x"
            await a2.close()
            await b.close()

    run(body)


def test_undelivered_messages_expire_after_the_ttl(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    alice, bob = Device.new(5), Device.new(6)
    day = 24 * 3600 * 1000

    async def body() -> None:
        async with relay(db, clock=lambda: NOW) as server:
            await (await registered(server.url, alice)).close()
            b = await registered(server.url, bob)
            out = rf.OutgoingMessage(1, alice.registration_id, rf.EnvelopeType.CIPHERTEXT, b"x")
            assert (await b.request(rf.SendMessage(alice.aci, 1, (out,)))).code == 0
            await b.close()
        async with relay(db, clock=lambda: NOW + 29 * day) as server:
            a = await authenticated(server.url, alice)
            assert len(a.pushes) == 1  # still there after 29 days
            await a.close()
        async with relay(db, clock=lambda: NOW + 31 * day) as server:  # swept at start
            a = await authenticated(server.url, alice)
            assert a.pushes == []
            await a.close()

    run(body)
