"""The client against hostile relays (in-process): sealed sender fails closed, trust root pinned.

* A relay that refuses sealed delivery (``SendSealed`` and ``SendMultiRecipient`` answered
  ``UNAUTHENTICATED``): 1:1 and group sends raise ``SealedDeliveryRefused`` and the relay sees
  no identified send at all; identified delivery happens only with an explicit opt-in (per
  call, per client).
* A relay presenting another trust root than the pinned one: ``register`` and ``connect``
  raise ``TrustRootMismatch`` and nothing is written.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from client_harness import BATCH, LOW_WATER, new_client, run, with_relay

from securemsg.client import Client
from securemsg.crypto.curve25519 import PrivateKey
from securemsg.crypto.rng import SystemRng
from securemsg.errors import SealedDeliveryRefused, TrustRootMismatch
from securemsg.relay.server import RelayServer
from securemsg.relay.service import Outcome, Session
from securemsg.relay_protocol import frames as rf


class RefusingSealed:
    """Patches a running relay: sealed sends are refused; every request type is recorded."""

    def __init__(self, relay: RelayServer) -> None:
        self.seen: list[str] = []
        self.refusing = True
        service = relay.service
        real = service.handle

        def handle(session: Session, frame: rf.ClientFrame, now: int) -> Outcome:
            body = frame.body
            self.seen.append(type(body).__name__)
            if self.refusing and isinstance(body, rf.SendSealed | rf.SendMultiRecipient):
                return Outcome(
                    rf.Response(frame.request_id, rf.StatusCode.UNAUTHENTICATED, "no sealed")
                )
            return real(session, frame, now)

        service.handle = handle  # type: ignore[method-assign]

    def identified_sends(self) -> int:
        return self.seen.count("SendMessage")


def test_refused_sealed_one_to_one_send_raises_and_sends_nothing_identified(
    tmp_path: Path,
) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "alice.db")
        bob = await new_client(relay, tmp_path / "bob.db")
        try:
            alice.add_contact(bob.contact_card)
            hostile = RefusingSealed(relay)
            with pytest.raises(SealedDeliveryRefused) as info:
                await alice.send_text(bob.aci, "must not go identified")
            assert info.value.reason == "refused" and info.value.recipient == bob.aci
            assert info.value.code == rf.StatusCode.UNAUTHENTICATED
            assert "SendSealed" in hostile.seen and hostile.identified_sends() == 0
            assert await bob.receive(timeout=0.3) is None
            # Opt-in per call: now (and only now) it goes identified.
            await alice.send_text(bob.aci, "identified on purpose", allow_identified=True)
            assert hostile.identified_sends() == 1 and not alice.last_send_sealed
            got = await bob.receive(timeout=10)
            assert got is not None and got.text == "identified on purpose" and not got.sealed
        finally:
            await alice.close()
            await bob.close()

    run(with_relay(tmp_path, body))


def test_client_wide_opt_in_and_its_per_call_override(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "alice.db")
        bob = await new_client(relay, tmp_path / "bob.db")
        await alice.close()
        alice = await Client.open(tmp_path / "alice.db", allow_identified=True)
        try:
            await alice.connect()
            alice.add_contact(bob.contact_card)
            hostile = RefusingSealed(relay)
            with pytest.raises(SealedDeliveryRefused):  # the call says no
                await alice.send_text(bob.aci, "x", allow_identified=False)
            assert hostile.identified_sends() == 0
            await alice.send_text(bob.aci, "client allows it")
            assert hostile.identified_sends() == 1
            got = await bob.receive(timeout=10)
            assert got is not None and got.text == "client allows it" and not got.sealed
        finally:
            await alice.close()
            await bob.close()

    run(with_relay(tmp_path, body))


def test_group_send_never_goes_identified_when_sealed_is_refused(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        a = await new_client(relay, tmp_path / "a.db")
        b = await new_client(relay, tmp_path / "b.db")
        c = await new_client(relay, tmp_path / "c.db")
        try:
            for x in (a, b, c):
                for y in (a, b, c):
                    if x is not y:
                        x.add_contact(y.contact_card)
            group = a.create_group("g", [b.aci, c.aci])
            hostile = RefusingSealed(relay)
            # The sender-key distribution itself is refused: nothing goes identified.
            with pytest.raises(SealedDeliveryRefused):
                await a.send_group_text(group, "first")
            assert hostile.identified_sends() == 0
            # Distribution allowed through, then the SSv2 upload refused.
            hostile.refusing = False
            await a.send_group_text(group, "sealed one")
            for member in (b, c):
                got = await member.receive(timeout=10)
                assert got is not None and got.text == "sealed one" and got.sealed
            hostile.refusing = True
            hostile.seen.clear()
            with pytest.raises(SealedDeliveryRefused) as info:
                await a.send_group_text(group, "second")
            assert info.value.reason == "refused"
            assert "SendMultiRecipient" in hostile.seen and hostile.identified_sends() == 0
            for member in (b, c):
                assert await member.receive(timeout=0.3) is None
        finally:
            for x in (a, b, c):
                await x.close()

    run(with_relay(tmp_path, body))


def _other_root(root: bytes, nibble: int = 40) -> str:
    """The hex of ``root`` with one nibble changed (the type byte kept)."""
    text = root.hex()
    flipped = "0" if text[nibble] != "0" else "1"
    return text[:nibble] + flipped + text[nibble + 1 :]


def test_register_refuses_another_trust_root_and_writes_nothing(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        wrong = _other_root(relay.trust_root_public.to_bytes())
        client = await Client.create(
            tmp_path / "c.db", relay.url, wrong, prekey_batch=BATCH, prekey_low_water=LOW_WATER
        )
        try:
            with pytest.raises(TrustRootMismatch) as info:
                await client.register()
            assert info.value.pinned.hex() == wrong
            assert info.value.presented == relay.trust_root_public.to_bytes()
            assert not client.registered and not client.connected
            assert client.trust_root is not None and client.trust_root.to_bytes().hex() == wrong
            store = client.store
            assert store.get_pre_key_ids() == [] and store.get_signed_pre_key_ids() == []
            assert store.get_kyber_pre_key_ids() == []
            assert (
                relay.service.store.get_account(bytes.fromhex(client.aci.replace("-", ""))) is None
            )
        finally:
            await client.close()

    run(with_relay(tmp_path, body))


def test_connect_refuses_a_relay_whose_trust_root_changed(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "alice.db")
        await alice.close()
        impostor = PrivateKey.generate(SystemRng()).public_key().to_bytes()
        service = relay.service
        real = service.handle
        seen: list[str] = []

        def handle(session: Session, frame: rf.ClientFrame, now: int) -> Outcome:
            seen.append(type(frame.body).__name__)
            if isinstance(frame.body, rf.GetServerTrustRoot):
                body = rf.ServerTrustRoot(impostor, service.server_certificate.to_bytes())
                return Outcome(rf.Response(frame.request_id, rf.StatusCode.OK, "", body))
            return real(session, frame, now)

        service.handle = handle  # type: ignore[method-assign]
        before = (tmp_path / "alice.db").read_bytes()
        alice = await Client.open(tmp_path / "alice.db")
        try:
            with pytest.raises(TrustRootMismatch) as info:
                await alice.connect()
            assert info.value.presented == impostor
            assert not alice.connected
            assert "Authenticate" not in seen  # refused before logging in
            assert alice.trust_root == relay.trust_root_public
        finally:
            await alice.close()
        assert (tmp_path / "alice.db").read_bytes() == before

    run(with_relay(tmp_path, body))
