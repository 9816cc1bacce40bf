"""The relay over loopback, driven by a raw frame client: registration, authentication,
bundles, identified and sealed delivery, pushes, acks, redelivery and restart; on both stores
(SQLite and PostgreSQL), and several instances on one PostgreSQL database."""

from __future__ import annotations

import asyncio
import uuid

from relay_harness import NOW, Device, RawClient, authenticated, registered, relay, run, to_bundle

from securemsg import cipher
from securemsg.protocol.sealed_sender import SenderCertificate
from securemsg.relay_protocol import frames as rf
from securemsg.sealed_sender import sealed_sender_decrypt, sealed_sender_encrypt
from securemsg.wire.messages import CiphertextMessageType


def test_register_send_identified_and_sealed_receive_ack_reconnect_restart(
    store_db: str,
) -> None:
    db = store_db
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


def test_second_connection_of_a_device_replaces_the_first(store_db: str) -> None:
    alice, bob = Device.new(3), Device.new(4)

    async def body() -> None:
        async with relay(store_db) as server:
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


def test_undelivered_messages_expire_after_the_ttl(store_db: str) -> None:
    db = store_db
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


def test_instances_on_one_postgres_database_push_displace_and_elect_one_leader(
    pg_url: str,
) -> None:
    alice, bob, carol = Device.new(21, n_pre_keys=1), Device.new(22), Device.new(23)

    async def body() -> None:
        async with relay(pg_url) as one, relay(pg_url) as two:
            a = await registered(one.url, alice)
            b = await registered(two.url, bob)
            c = await registered(two.url, carol)

            # Sent through instance two to a device connected to instance one: pushed at
            # once (no ack, no reconnect, no timer: the notification of the commit).
            out = rf.OutgoingMessage(1, alice.registration_id, rf.EnvelopeType.CIPHERTEXT, b"1")
            assert (await b.request(rf.SendMessage(alice.aci, NOW, (out,)))).code == 0
            (env,) = await a.wait_pushes(1)
            assert env.body == b"1" and env.source_aci == bob.aci
            assert (await a.request(rf.Ack((env.id,)))).code == rf.StatusCode.OK

            # One-time prekeys: at most once across instances.
            got = [await x.request(rf.FetchBundles(alice.aci)) for x in (b, c)]
            keys = [
                r.body.bundles[0].pre_key
                for r in got
                if isinstance(r.body, rf.Bundles) and r.body.bundles
            ]
            assert len(keys) == 2 and keys[0] is not None and keys[1] is None

            # A new authentication on instance two displaces the connection on instance one.
            a2 = await authenticated(two.url, alice)
            assert await a.closed() == 4000
            out2 = rf.OutgoingMessage(1, alice.registration_id, rf.EnvelopeType.CIPHERTEXT, b"2")
            r = await c.request(rf.SendMessage(alice.aci, NOW, (out2,)))
            assert r.code == rf.StatusCode.OK
            (env2,) = await a2.wait_pushes(1)
            assert env2.body == b"2"
            # ... and the other way round, with a message waiting in the queue
            a3 = await authenticated(one.url, alice)
            assert await a2.closed() == 4000
            assert [e.body for e in a3.pushes] == [b"2"]

            # One leader (the expiry sweep runs once), and it moves when its instance stops.
            clusters = [s._cluster for s in (one, two)]
            assert all(x is not None for x in clusters)
            assert [x.leader for x in clusters if x is not None].count(True) == 1
            for x in (a3, b, c):
                await x.close()
            leader, other = (one, two) if one._cluster and one._cluster.leader else (two, one)
            await leader.stop()
            other_cluster = other._cluster
            assert other_cluster is not None
            for _ in range(200):  # the other instance retries the lock every few seconds
                if other_cluster.leader:
                    break
                await asyncio.sleep(0.1)
            assert other_cluster.leader

    run(body)
