"""A relay that forges sealed envelopes (it holds the trust root, so it can), for the tests.

:class:`EnvelopeForger` patches a running :class:`RelayServer`'s service so that the next
``SendSealed`` to one account has every message body replaced by a sealed envelope the relay
made itself: a sender certificate naming the real sender (signed with the relay's own server
key, or with another trust root's) around a SignalMessage that does not decrypt. The recipient
opens the envelope (or fails to validate the certificate) and the inner decrypt fails: a
decryption failure whose sender is known, as a corrupted message in flight would give.
"""

from __future__ import annotations

import dataclasses
import uuid

from securemsg.crypto.curve25519 import KeyPair, PrivateKey
from securemsg.crypto.rng import SystemRng
from securemsg.protocol.identity_and_prekeys import IdentityKey, IdentityKeyPair
from securemsg.protocol.sealed_sender import (
    SenderCertificate,
    ServerCertificate,
    UnidentifiedSenderMessageContent,
    seal_v1,
)
from securemsg.relay.server import RelayServer
from securemsg.relay.service import Outcome, Session
from securemsg.relay_protocol import frames as rf
from securemsg.wire.messages import CiphertextMessageType, SignalMessage

_DAY_MS = 86_400_000


class EnvelopeForger:
    """Forges the next ``times`` sealed sends to ``victim_aci``, claiming they come from
    ``sender`` (the real sender: a sealed send does not tell the relay, the test does).

    Attributes:
        forged: how many sends were forged.
        bodies: the forged envelope bodies (as the victim receives them).
    """

    def __init__(
        self,
        relay: RelayServer,
        victim_aci: str,
        sender: tuple[str, int],
        *,
        times: int = 1,
        other_root: bool = False,
    ) -> None:
        self.forged = 0
        self.bodies: list[bytes] = []
        self._times = times
        self._rng = SystemRng()
        service = relay.service
        victim = uuid.UUID(victim_aci).bytes
        account = service.store.get_account(victim)
        assert account is not None
        victim_identity = IdentityKey.from_bytes(account.identity_key)
        if other_root:
            root = PrivateKey.generate(self._rng)
            server = PrivateKey.generate(self._rng)
            signer = ServerCertificate.new(1, server.public_key(), root, self._rng)
        else:
            signer, server = service.server_certificate, service._server_private
        real = service.handle

        def handle(session: Session, frame: rf.ClientFrame, now: int) -> Outcome:
            body = frame.body
            if (
                isinstance(body, rf.SendSealed)
                and body.destination_aci == victim
                and self.forged < self._times
            ):
                self.forged += 1
                messages = tuple(
                    dataclasses.replace(
                        m, body=self._forge(sender, victim_identity, signer, server, now)
                    )
                    for m in body.messages
                )
                body = dataclasses.replace(body, messages=messages)
                frame = dataclasses.replace(frame, body=body)
            return real(session, frame, now)

        service.handle = handle  # type: ignore[method-assign]

    def _forge(
        self,
        sender: tuple[str, int],
        victim: IdentityKey,
        signer: ServerCertificate,
        server: PrivateKey,
        now: int,
    ) -> bytes:
        fake = IdentityKeyPair.generate(self._rng)
        cert = SenderCertificate.new(
            sender_uuid=sender[0],
            sender_e164=None,
            sender_device_id=sender[1],
            key=fake.identity_key.public_key,
            expiration=now + _DAY_MS,
            signer=signer,
            signer_key=server,
            rng=self._rng,
        )
        garbage = SignalMessage.new(
            message_version=4,
            mac_key=bytes(32),
            sender_identity=fake.identity_key.to_bytes(),
            receiver_identity=victim.to_bytes(),
            ratchet_key=KeyPair.generate(self._rng).public_key,
            counter=3,
            previous_counter=0,
            ciphertext=bytes(48),
            pq_ratchet=b"",
        )
        usmc = UnidentifiedSenderMessageContent.new(
            CiphertextMessageType.WHISPER, cert, garbage.to_bytes()
        )
        body = seal_v1(usmc, fake, victim, self._rng)
        self.bodies.append(body)
        return body
