"""Retry requests between accounts with several devices: the request reaches the sending
account's every device (the relay takes complete device lists only), the device it names
sends the content again, and the others ignore it; the app sees the message once."""

from __future__ import annotations

from pathlib import Path

from client_harness import new_client, run, with_relay
from hostile_relay import EnvelopeForger
from linked_device_harness import add_device

from securemsg.relay.server import RelayServer


def test_a_retry_request_reaches_the_sending_device_of_a_linked_account(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "a1.db")
        bob = await new_client(relay, tmp_path / "b1.db")
        alice2 = await add_device(alice, relay, tmp_path / "a2.db", 2)
        try:
            for c in (alice, alice2):
                c.add_contact(bob.contact_card)
            bob.add_contact(alice.contact_card)
            await alice2.send_text(bob.aci, "first")
            got = await bob.receive(timeout=10)
            assert got is not None and got.sender_device == 2
            forger = EnvelopeForger(relay, bob.aci, (alice.aci, 2))
            ts = await alice2.send_text(bob.aci, "second")
            assert forger.forged == 1
            failure = await bob.receive_failure(timeout=10)
            assert failure is not None and (failure.sender_aci, failure.sender_device) == (
                alice.aci,
                2,
            )
            got = await bob.receive(timeout=10)
            assert got is not None and got.text == "second" and got.sent_timestamp == ts
            assert await bob.receive(timeout=0.5) is None  # exactly once
            assert bob.failures()[0].retry == "sent"
            sent = alice2.store.sent_get(bob.aci, ts, alice2._now())
            assert sent is not None and sent.resend_status == "resent"
            # Alice's first device saw the request (a retry-request row) and ignored it.
            assert alice.store.inbox_count("retry-request") == 1
            assert alice.store.resend_pending() == []
        finally:
            for c in (alice, alice2, bob):
                await c.close()

    run(with_relay(tmp_path, body), timeout=120)
