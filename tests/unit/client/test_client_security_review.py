"""Findings of the client security review, each pinned by a test.

* A relay answering a send with a device-list mismatch for an account the send was not
  addressed to (or with impossible device ids) must not make the client drop or refetch
  sessions with that account: the client raises a typed error and changes nothing.
"""

from __future__ import annotations

import dataclasses
import uuid
from pathlib import Path

import pytest
from client_harness import new_client, run, with_relay

from securemsg.errors import DecodeError, RelayError
from securemsg.protocol.address import ProtocolAddress
from securemsg.relay.server import RelayServer
from securemsg.relay.service import Outcome, Session
from securemsg.relay_protocol import frames as rf


@pytest.mark.parametrize("lie", ["other-account", "bad-device-id"])
def test_a_lying_device_list_for_another_account_changes_nothing(tmp_path: Path, lie: str) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "a.db")
        bob = await new_client(relay, tmp_path / "b.db")
        carol = await new_client(relay, tmp_path / "c.db")
        try:
            alice.add_contact(bob.contact_card)
            alice.add_contact(carol.contact_card)
            await alice.send_text(bob.aci, "hi bob")
            await alice.send_text(carol.aci, "hi carol")
            carol_addr = ProtocolAddress(carol.aci, 1)
            bob_addr = ProtocolAddress(bob.aci, 1)
            before = (alice.store.load_session(carol_addr), alice.store.load_session(bob_addr))
            assert None not in before
            if lie == "other-account":
                mismatch = rf.MismatchedDevices(uuid.UUID(carol.aci).bytes, (), (1,), ())
            else:
                mismatch = rf.MismatchedDevices(uuid.UUID(bob.aci).bytes, (0,), (), (4096,))

            def lying(s: Session, rid: int, b: rf.SendSealed, now: int) -> Outcome:
                return Outcome(
                    rf.Response(rid, rf.StatusCode.CONFLICT, "lie", rf.SendResult((mismatch,)))
                )

            relay.service._send_sealed = lying  # type: ignore[method-assign]
            with pytest.raises(RelayError):
                await alice.send_text(bob.aci, "again")
            # Carol's session is untouched; Bob's still exists (encrypting advanced it).
            after = alice.store.load_session(carol_addr)
            assert after is not None and before[0] is not None
            assert after.to_bytes() == before[0].to_bytes()
            assert alice.store.load_session(bob_addr) is not None
        finally:
            for c in (alice, bob, carol):
                await c.close()

    run(with_relay(tmp_path, body))


def test_bundles_for_impossible_or_unrequested_devices_are_refused(tmp_path: Path) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "a.db")
        bob = await new_client(relay, tmp_path / "b.db")
        try:
            service = relay.service
            real = service._fetch

            def lying(s: Session, rid: int, b: rf.FetchBundles, now: int) -> Outcome:
                out = real(s, rid, b, now)
                assert isinstance(out.response.body, rf.Bundles)
                (good,) = out.response.body.bundles
                bad = dataclasses.replace(good, device_id=500)
                bundles = rf.Bundles((good, bad))
                return Outcome(dataclasses.replace(out.response, body=bundles))

            service._fetch = lying  # type: ignore[method-assign]
            with pytest.raises(DecodeError):
                await alice.send_text(bob.aci, "hi", allow_identified=True)
            assert alice.store.get_session_device_ids(bob.aci) == []
        finally:
            for c in (alice, bob):
                await c.close()

    run(with_relay(tmp_path, body))
