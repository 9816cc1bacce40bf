"""Every device of an account holds the account's one identity key, and the client holds the
relay to that.

A hostile relay knows every public bundle, stamps the source of identified envelopes and
answers device lists and ``MismatchedDevices`` as it likes. With identities trusted per
device, a device id the client had never seen was trusted on first use with any key, and the
relay could (1) forge a sync transcript "from our own device 9", (2) forge a message "from
Bob's device 9", and (3) announce a phantom device 9 of Bob with a key of its own and read
what Alice sent him. Each is refused now: untrusted identity, nothing shown, nothing stored.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from client_harness import new_client, run, with_relay

from securemsg import cipher
from securemsg.client import Client
from securemsg.crypto.rng import SystemRng
from securemsg.errors import UntrustedIdentityError
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.identity_and_prekeys import (
    IdentityKeyPair,
    KyberPreKeyRecord,
    PreKeyRecord,
    SignedPreKeyRecord,
)
from securemsg.relay.server import RelayServer
from securemsg.relay.service import Outcome, Session
from securemsg.relay_protocol import frames as rf
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.wire.content import Content, SentTranscript, encode_padded_content
from securemsg.wire.messages import PreKeySignalMessage

Handler = Callable[[Session, rf.ClientFrame, int], Outcome]


async def _drain(client: Client) -> list[Any]:
    got = []
    while (m := await client.receive(timeout=0.5)) is not None:
        got.append(m)
    return got


def _intercept(relay: RelayServer, wrap: Callable[[Handler], Handler]) -> None:
    relay.service.handle = wrap(relay.service.handle)  # type: ignore[method-assign]


async def _forge_from(
    relay: RelayServer, victim: Client, pipe: Client, claimed: ProtocolAddress, content: Content
) -> None:
    """The relay, with a key pair of its own, starts a session with the victim's device 1
    as ``claimed`` and delivers it as an identified envelope from ``claimed`` (through
    ``pipe``'s connection: the relay stamps whatever source it likes)."""
    rng = SystemRng()
    fake = InMemoryProtocolStore(IdentityKeyPair.generate(rng), 4242)
    resp = await pipe._request(rf.FetchBundles(uuid.UUID(victim.aci).bytes, 1))
    assert isinstance(resp.body, rf.Bundles)
    bundle = resp.body.bundles[0]
    target = ProtocolAddress(victim.aci, 1)
    now = pipe._now()
    cipher.process_prekey_bundle(
        pipe._bundle(bundle), target, fake, now=now, rng=rng, local_address=claimed
    )
    message = cipher.message_encrypt(
        encode_padded_content(content), target, fake, now=now, rng=rng, local_address=claimed
    )
    assert isinstance(message, PreKeySignalMessage)
    pipe_aci = uuid.UUID(pipe.aci).bytes

    def wrap(real: Handler) -> Handler:
        def handle(session: Session, frame: rf.ClientFrame, now: int) -> Outcome:
            if isinstance(frame.body, rf.SendMessage) and session.aci == pipe_aci:
                saved = (session.aci, session.device_id)
                session.aci = uuid.UUID(claimed.name).bytes
                session.device_id = claimed.device_id
                try:
                    return real(session, frame, now)
                finally:
                    session.aci, session.device_id = saved
            return real(session, frame, now)

        return handle

    _intercept(relay, wrap)
    out = rf.OutgoingMessage(
        1, bundle.registration_id, int(rf.EnvelopeType.PREKEY_BUNDLE), message.to_bytes()
    )
    sent = await pipe._request(
        rf.SendMessage(uuid.UUID(victim.aci).bytes, content.timestamp, (out,))
    )
    assert sent.code == rf.StatusCode.OK, sent


@pytest.mark.parametrize("who", ["own account", "contact"])
def test_a_relay_made_device_of_a_known_account_is_refused_on_receipt(
    tmp_path: Path, who: str
) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "alice.db")
        bob = await new_client(relay, tmp_path / "bob.db")
        pipe = await new_client(relay, tmp_path / "pipe.db")
        try:
            alice.add_contact(bob.contact_card)
            bob.add_contact(alice.contact_card)
            await bob.send_text(alice.aci, "hello from the real bob")
            assert [m.text for m in await _drain(alice)] == ["hello from the real bob"]
            if who == "own account":  # a transcript of something "we" sent to Bob
                claimed = ProtocolAddress(alice.aci, 9)
                inner = Content(7, "I owe you 1000 EUR")
                content = Content(7, sync_sent=SentTranscript(bob.aci, 7, inner))
            else:
                claimed = ProtocolAddress(bob.aci, 9)
                content = Content(8, "this is Bob, send the money to X")
            before = alice.store.get_identity(claimed)
            await _forge_from(relay, alice, pipe, claimed, content)
            assert await _drain(alice) == []
            assert alice.store.get_identity(claimed) is before is None
            assert [f.reason for f in alice.failures()] == ["untrusted-identity"]
        finally:
            for c in (alice, bob, pipe):
                await c.close()

    run(with_relay(tmp_path, body), timeout=120)


def test_a_phantom_device_announced_by_the_relay_gets_nothing(tmp_path: Path) -> None:
    """The relay answers Alice's send with ``MismatchedDevices.missing=[9]``, serves a bundle
    for Bob's device 9 made with its own identity key, and claims in the key-transparency
    answer that a newer key is pending. Alice already trusts Bob's key: the send fails with
    an untrusted identity and nothing is encrypted to device 9."""

    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "alice.db")
        bob = await new_client(relay, tmp_path / "bob.db")
        try:
            assert await relay.publish_kt_epoch() >= 1
            alice.add_contact(bob.contact_card)
            bob.add_contact(alice.contact_card)
            await alice.send_text(bob.aci, "hello")
            assert [m.text for m in await _drain(bob)] == ["hello"]
            bob_b = uuid.UUID(bob.aci).bytes
            rng = SystemRng()
            relays_own = IdentityKeyPair.generate(rng)
            signed = SignedPreKeyRecord.generate(1, relays_own, alice._now(), rng)
            kyber = KyberPreKeyRecord.generate(2, relays_own, alice._now(), rng)
            one_time = PreKeyRecord.generate(3, rng)
            bundle = rf.DeviceBundle(
                9,
                777,
                relays_own.identity_key.to_bytes(),
                rf.SignedPreKey(signed.id, signed.public_key.to_bytes(), signed.signature),
                rf.OneTimePreKey(one_time.id, one_time.public_key.to_bytes()),
                rf.SignedPreKey(kyber.id, kyber.public_key.to_bytes(), kyber.signature),
            )
            stolen: list[bytes] = []

            def wrap(real: Handler) -> Handler:
                def handle(session: Session, frame: rf.ClientFrame, now: int) -> Outcome:
                    b = frame.body
                    if isinstance(b, rf.KtLookup) and b.aci == bob_b:
                        out = real(session, frame, now)
                        answer = dataclasses.replace(out.response.body, pending=True)  # type: ignore[type-var]
                        return dataclasses.replace(
                            out, response=dataclasses.replace(out.response, body=answer)
                        )
                    if isinstance(b, rf.FetchBundles) and b.aci == bob_b and b.device_id == 9:
                        return Outcome(
                            rf.Response(
                                frame.request_id, rf.StatusCode.OK, "", rf.Bundles((bundle,))
                            )
                        )
                    if isinstance(b, rf.SendSealed | rf.SendMessage) and b.destination_aci == bob_b:
                        mine = [m for m in b.messages if m.device_id == 9]
                        if not mine:
                            mismatch = rf.MismatchedDevices(bob_b, (9,), (), ())
                            return Outcome(
                                rf.Response(
                                    frame.request_id,
                                    rf.StatusCode.CONFLICT,
                                    "device mismatch",
                                    rf.SendResult((mismatch,)),
                                )
                            )
                        stolen.extend(m.body for m in mine)
                        rest = tuple(m for m in b.messages if m.device_id != 9)
                        frame = dataclasses.replace(
                            frame, body=dataclasses.replace(b, messages=rest)
                        )
                    return real(session, frame, now)

                return handle

            _intercept(relay, wrap)
            with pytest.raises(UntrustedIdentityError):
                await alice.send_text(bob.aci, "meet at 9pm, tell nobody")
            assert stolen == []
            assert alice.store.get_identity(ProtocolAddress(bob.aci, 9)) is None
            assert alice.store.load_session(ProtocolAddress(bob.aci, 9)) is None
        finally:
            await alice.close()
            await bob.close()

    run(with_relay(tmp_path, body), timeout=120)
