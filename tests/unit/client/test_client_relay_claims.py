"""What the client takes from its relay is checked, escaped, and kept out of reprs.

* A sender certificate the relay issues is used only if it names our own ACI, device id and
  identity key and chains to the pinned trust root; otherwise a typed error
  (``SealedSenderError``, reason ``key-mismatch`` or the validation's reason), nothing is sent
  and the certificate is not cached.
* Text from the relay (a response's status message) reaches exceptions and log lines
  escaped (no control characters) and bounded in length.
* No client class holding message text shows it in its repr or str.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from client_harness import new_client, run, with_relay

from securemsg.client import ReceivedMessage
from securemsg.client.connection import MAX_RELAY_TEXT, relay_text
from securemsg.client.store import InboxRow
from securemsg.crypto.curve25519 import PrivateKey
from securemsg.crypto.rng import SystemRng
from securemsg.errors import RelayError, SealedSenderError
from securemsg.protocol.sealed_sender import SenderCertificate, ServerCertificate
from securemsg.relay.server import RelayServer
from securemsg.relay.service import Outcome, Session
from securemsg.relay_protocol import frames as rf


@pytest.mark.parametrize("wrong", ["identity-key", "aci", "device", "trust-root"])
def test_a_sender_certificate_that_is_not_ours_is_refused_and_not_used(
    tmp_path: Path, wrong: str
) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "alice.db")
        bob = await new_client(relay, tmp_path / "bob.db")
        try:
            alice.add_contact(bob.contact_card)
            service = relay.service
            real = service.handle
            rng = SystemRng()
            sealed_sends: list[rf.SendSealed] = []
            signer, signer_key = service.server_certificate, service._server_private
            if wrong == "trust-root":
                other_root = PrivateKey.generate(rng)
                signer_key = PrivateKey.generate(rng)
                signer = ServerCertificate.new(1, signer_key.public_key(), other_root, rng)
            ours = alice.store.get_identity_key_pair().identity_key.public_key

            def handle(session: Session, frame: rf.ClientFrame, now: int) -> Outcome:
                if isinstance(frame.body, rf.SendSealed):
                    sealed_sends.append(frame.body)
                if not isinstance(frame.body, rf.GetSenderCertificate):
                    return real(session, frame, now)
                cert = SenderCertificate.new(
                    sender_uuid=str(uuid.uuid4()) if wrong == "aci" else alice.aci,
                    sender_e164=None,
                    sender_device_id=2 if wrong == "device" else alice.device_id,
                    key=PrivateKey.generate(rng).public_key() if wrong == "identity-key" else ours,
                    expiration=now + 86_400_000,
                    signer=signer,
                    signer_key=signer_key,
                    rng=rng,
                )
                return Outcome(
                    rf.Response(
                        frame.request_id,
                        rf.StatusCode.OK,
                        "",
                        rf.SenderCertificateResponse(cert.to_bytes()),
                    )
                )

            service.handle = handle  # type: ignore[method-assign]
            with pytest.raises(SealedSenderError):
                await alice.send_text(bob.aci, "never sent under another's certificate")
            assert sealed_sends == []
            assert alice.store.get_meta_bytes("sender_certificate") is None
        finally:
            await alice.close()
            await bob.close()

    run(with_relay(tmp_path, body))


_HOSTILE = "\x1b[2J\x1b[31mrelay says\r\nFAKE LOG LINE: all good\x00\x07" + "A" * 5000


def test_relay_text_is_escaped_and_bounded() -> None:
    shown = relay_text(_HOSTILE)
    assert len(shown) <= MAX_RELAY_TEXT + 2  # the quotes of its repr-style form
    assert all(c.isprintable() for c in shown)
    assert "\x1b" not in shown and "\n" not in shown and "\r" not in shown
    assert shown.startswith("'") and "relay says" in shown
    assert relay_text("") == "''"


def test_a_refusal_from_the_relay_reaches_the_error_escaped(tmp_path: Path) -> None:
    """Client log lines show relay refusals through this error's str, so they are escaped
    at the source."""

    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "alice.db", allow_identified=True)
        bob = await new_client(relay, tmp_path / "bob.db")
        try:
            service = relay.service
            real = service.handle

            def handle(session: Session, frame: rf.ClientFrame, now: int) -> Outcome:
                if isinstance(frame.body, rf.SendMessage):
                    return Outcome(
                        rf.Response(frame.request_id, rf.StatusCode.RATE_LIMITED, _HOSTILE)
                    )
                return real(session, frame, now)

            service.handle = handle  # type: ignore[method-assign]
            with pytest.raises(RelayError) as info:
                await alice.send_text(bob.aci, "x")
            assert info.value.code == rf.StatusCode.RATE_LIMITED
            for text in (str(info.value), repr(info.value), *map(str, info.value.args)):
                assert "relay says" in text
                assert all(c.isprintable() for c in text), text
                assert len(text) < MAX_RELAY_TEXT + 100
        finally:
            await alice.close()
            await bob.close()

    run(with_relay(tmp_path, body))


def test_client_classes_holding_message_text_do_not_show_it() -> None:
    secret = "PLAINTEXT-THAT-MUST-NOT-SHOW"
    received = ReceivedMessage(
        sender_aci=str(uuid.uuid4()),
        sender_device=1,
        text=secret,
        sent_timestamp=1,
        server_timestamp=2,
        group_id=None,
        group_title=None,
        sealed=True,
        envelope_id=b"\x01" * 16,
    )
    row = InboxRow(1, b"\x01" * 16, str(uuid.uuid4()), 1, 1, 2, None, secret, True)
    for obj in (received, row):
        for show in (repr, str):
            assert secret not in show(obj), type(obj).__name__
        assert str(len(secret)) in repr(obj)  # the length, for debugging
    assert received.text == secret and row.body == secret
