"""Linking and unlinking devices over a real relay (loopback): the SDK's link, approve_link,
devices and unlink, and every way linking can be refused without leaving a file behind."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from client_harness import BATCH, LOW_WATER, new_client, run

from securemsg.client import Client
from securemsg.client.devices import format_linking_code, parse_linking_code
from securemsg.crypto.curve25519 import KeyPair, PrivateKey
from securemsg.crypto.rng import SystemRng
from securemsg.errors import (
    DeviceRemovedError,
    LinkingCodeError,
    ProvisioningError,
    RelayError,
    TrustRootMismatch,
    UsageError,
)
from securemsg.relay.server import RelayServer
from securemsg.relay.service import Outcome, Session
from securemsg.relay_protocol import frames as rf

#: A bound on waiting for an approval in these tests (never reached when the flow works).
WAIT_S = 60.0


def _leftovers(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name))


#: Errors raised by approval tasks (each test checks there were none it did not expect).
task_errors: list[BaseException] = []


@pytest.fixture(autouse=True)
def _clear_task_errors() -> None:
    task_errors.clear()


async def _link(
    relay: RelayServer,
    path: Path,
    approve: Callable[[str], object],
    *,
    timeout_s: float = WAIT_S,
    trust_root: object = None,
) -> Client:
    """Link a new device at ``path``; ``approve(code)`` runs as a task when the code is shown
    (its error, if any, goes into :data:`task_errors`)."""
    tasks: list[asyncio.Task[object]] = []

    def on_code(code: str) -> None:
        async def go() -> object:
            result = approve(code)
            return await result if asyncio.iscoroutine(result) else result

        tasks.append(asyncio.get_running_loop().create_task(go()))

    try:
        return await Client.link(
            path,
            relay.url,
            on_code=on_code,
            timeout_s=timeout_s,
            trust_root=trust_root,  # type: ignore[arg-type]
            prekey_batch=BATCH,
            prekey_low_water=LOW_WATER,
        )
    finally:
        for task in tasks:
            (outcome,) = await asyncio.gather(task, return_exceptions=True)
            if isinstance(outcome, BaseException):
                task_errors.append(outcome)


def _tamper(
    relay: RelayServer, change: Callable[[rf.SendProvisioning], rf.SendProvisioning]
) -> None:
    """A relay in the middle: every SendProvisioning passes through ``change`` first."""
    service = relay.service
    real = service.handle

    def handle(session: Session, frame: rf.ClientFrame, now: int) -> Outcome:
        if isinstance(frame.body, rf.SendProvisioning):
            frame = dataclasses.replace(frame, body=change(frame.body))
        return real(session, frame, now)

    service.handle = handle  # type: ignore[method-assign]


def test_link_a_device_end_to_end(tmp_path: Path) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            alice = await new_client(relay, tmp_path / "alice.db")
            codes: list[str] = []

            async def approve(code: str) -> None:
                codes.append(code)
                await alice.approve_link(code)

            laptop = await _link(relay, tmp_path / "laptop.db", approve)
            try:
                assert laptop.aci == alice.aci
                assert laptop.device_id == 2
                assert laptop.registered and laptop.connected
                ours = alice.store.get_identity_key_pair().identity_key.to_bytes()
                theirs = laptop.store.get_identity_key_pair().identity_key.to_bytes()
                assert theirs == ours
                assert laptop.contact_card == alice.contact_card  # same account, same access key
                assert laptop.trust_root == alice.trust_root == relay.trust_root_public
                assert laptop.store.get_local_registration_id() != 0
                mode = stat.S_IMODE(os.stat(tmp_path / "laptop.db").st_mode)
                assert mode == 0o600
                seen = await alice.devices()
                assert [(d.device_id, d.this_device, d.primary) for d in seen] == [
                    (1, True, True),
                    (2, False, False),
                ]
                from_laptop = await laptop.devices()
                assert [(d.device_id, d.this_device) for d in from_laptop] == [
                    (1, False),
                    (2, True),
                ]
                assert from_laptop[1].registration_id == laptop.store.get_local_registration_id()
                # The code was the address and key of the laptop's provisioning connection.
                assert len(codes) == 1 and parse_linking_code(codes[0]).address
            finally:
                await laptop.close()
            # The linked device reopens as device 2 and authenticates as it.
            again = await Client.open(tmp_path / "laptop.db")
            try:
                assert again.device_id == 2
                await again.connect()
            finally:
                await again.close()
            await alice.close()

    run(body(), timeout=120)
    assert not task_errors


def test_a_mistyped_code_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            alice = await new_client(relay, tmp_path / "alice.db")
            refused: list[LinkingCodeError] = []

            async def approve(code: str) -> None:
                i = code.index("pub_key=") + 10
                typo = code[:i] + ("A" if code[i] != "A" else "B") + code[i + 1 :]
                try:
                    await alice.approve_link(typo)
                except LinkingCodeError as exc:
                    refused.append(exc)

            path = tmp_path / "laptop.db"
            with pytest.raises(LinkingCodeError) as err:
                await _link(relay, path, approve, timeout_s=3)
            assert err.value.reason == "expired"  # nothing came: the new device gave up
            assert [e.reason for e in refused] == ["checksum"]
            assert _leftovers(path) == []
            assert [d.device_id for d in await alice.devices()] == [1]
            await alice.close()

    run(body())


def test_an_expired_or_unknown_code_is_refused_on_the_primary(tmp_path: Path) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            alice = await new_client(relay, tmp_path / "alice.db")
            nowhere = format_linking_code(os.urandom(16), KeyPair.generate(SystemRng()).public_key)
            with pytest.raises(LinkingCodeError) as err:
                await alice.approve_link(nowhere)
            assert err.value.reason == "expired"
            assert [d.device_id for d in await alice.devices()] == [1]
            await alice.close()

    run(body())


def test_a_code_whose_provisioning_connection_is_gone_is_expired(tmp_path: Path) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            alice = await new_client(relay, tmp_path / "alice.db")
            shown: list[str] = []
            path = tmp_path / "laptop.db"
            with pytest.raises(LinkingCodeError):
                await _link(relay, path, shown.append, timeout_s=1)
            assert _leftovers(path) == []
            (code,) = shown
            for _ in range(200):  # the relay forgets the address once it sees the close
                if not relay.service._provisioning:
                    break
                await asyncio.sleep(0.05)
            with pytest.raises(LinkingCodeError) as err:  # the laptop stopped waiting
                await alice.approve_link(code)
            assert err.value.reason == "expired"
            await alice.close()

    run(body())


def test_a_tampered_envelope_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            alice = await new_client(relay, tmp_path / "alice.db")

            def flip(body: rf.SendProvisioning) -> rf.SendProvisioning:
                data = bytearray(body.envelope)
                data[len(data) // 2] ^= 0x01
                return dataclasses.replace(body, envelope=bytes(data))

            _tamper(relay, flip)
            path = tmp_path / "laptop.db"
            with pytest.raises(ProvisioningError):
                await _link(relay, path, alice.approve_link)
            assert _leftovers(path) == []
            assert [d.device_id for d in await alice.devices()] == [1]
            await alice.close()

    run(body())
    assert not task_errors


def test_a_replayed_envelope_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            alice = await new_client(relay, tmp_path / "alice.db")
            captured: list[bytes] = []

            def replay(body: rf.SendProvisioning) -> rf.SendProvisioning:
                if not captured:
                    captured.append(body.envelope)
                    return body
                return dataclasses.replace(body, envelope=captured[0])  # the first, again

            _tamper(relay, replay)
            first = await _link(relay, tmp_path / "laptop.db", alice.approve_link)
            await first.close()
            path = tmp_path / "tablet.db"
            with pytest.raises(ProvisioningError):
                await _link(relay, path, alice.approve_link)
            assert _leftovers(path) == []
            assert [d.device_id for d in await alice.devices()] == [1, 2]
            await alice.close()

    run(body(), timeout=120)


def test_a_used_up_registration_code_leaves_no_file(tmp_path: Path) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            alice = await new_client(relay, tmp_path / "alice.db")

            async def approve_then_replace(code: str) -> None:
                await alice.approve_link(code)
                await alice._request(rf.GetLinkingCode())  # replaces the code just sent

            path = tmp_path / "laptop.db"
            with pytest.raises(RelayError) as err:
                await _link(relay, path, approve_then_replace)
            assert err.value.code == rf.StatusCode.FORBIDDEN
            assert _leftovers(path) == []
            assert [d.device_id for d in await alice.devices()] == [1]
            await alice.close()

    run(body())


def test_another_trust_root_is_refused_before_a_code_is_shown(tmp_path: Path) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            other = PrivateKey.generate(SystemRng()).public_key()
            shown: list[str] = []
            path = tmp_path / "laptop.db"
            with pytest.raises(TrustRootMismatch):
                await _link(relay, path, shown.append, trust_root=other)
            assert shown == [] and _leftovers(path) == []

    run(body())


def test_the_account_pins_another_trust_root_than_the_relay_presents(tmp_path: Path) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            alice = await new_client(relay, tmp_path / "alice.db")
            other = PrivateKey.generate(SystemRng()).public_key()
            alice._trust_root = other  # the primary pins a root this relay does not have
            path = tmp_path / "laptop.db"
            with pytest.raises(TrustRootMismatch):
                await _link(relay, path, alice.approve_link)
            assert _leftovers(path) == []
            await alice.close()

    run(body())


def test_only_the_primary_links_and_unlinks(tmp_path: Path) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            alice = await new_client(relay, tmp_path / "alice.db")
            laptop = await _link(relay, tmp_path / "laptop.db", alice.approve_link)
            code = format_linking_code(os.urandom(16), KeyPair.generate(SystemRng()).public_key)
            with pytest.raises(UsageError):
                await laptop.approve_link(code)
            with pytest.raises(UsageError):
                await laptop.unlink(2)
            # The relay refuses too, whatever a modified client sends.
            for request in (rf.GetLinkingCode(), rf.RemoveDevice(1), rf.RemoveDevice(2)):
                with pytest.raises(RelayError) as err:
                    await laptop._request(request)
                assert err.value.code == rf.StatusCode.FORBIDDEN
            with pytest.raises(UsageError):
                await alice.unlink(1)  # the primary cannot unlink itself
            with pytest.raises(RelayError) as missing:
                await alice.unlink(9)
            assert missing.value.code == rf.StatusCode.NOT_FOUND
            assert [d.device_id for d in await alice.devices()] == [1, 2]
            await laptop.close()
            await alice.close()

    run(body(), timeout=120)


def test_an_unlinked_device_learns_it_online_and_offline(tmp_path: Path) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            alice = await new_client(relay, tmp_path / "alice.db")
            laptop = await _link(relay, tmp_path / "laptop.db", alice.approve_link)
            tablet = await _link(relay, tmp_path / "tablet.db", alice.approve_link)
            assert (laptop.device_id, tablet.device_id) == (2, 3)
            await tablet.close()  # offline while it is removed
            await alice.unlink(2)
            await alice.unlink(3)
            assert [d.device_id for d in await alice.devices()] == [1]
            # Online: the relay tells the connected laptop; receive() raises, nothing reconnects.
            with pytest.raises(DeviceRemovedError):
                await laptop.receive(timeout=WAIT_S)
            assert laptop.removed and not laptop.connected
            assert laptop._reconnector is None  # it does not try to come back
            with pytest.raises(DeviceRemovedError):
                await laptop.devices()
            with pytest.raises(DeviceRemovedError):
                await laptop.connect()
            await laptop.close()
            # Offline: the tablet learns it when it next proves who it is.
            tablet = await Client.open(tmp_path / "tablet.db")
            with pytest.raises(DeviceRemovedError) as err:
                await tablet.connect()
            assert err.value.code == rf.StatusCode.NOT_FOUND
            assert tablet.removed
            await tablet.close()
            await alice.close()

    run(body(), timeout=120)


def test_link_refuses_bad_arguments_without_contacting_the_relay(tmp_path: Path) -> None:
    async def body() -> None:
        existing = tmp_path / "exists.db"
        existing.write_bytes(b"")
        with pytest.raises(UsageError):
            await Client.link(existing, "ws://127.0.0.1:0", on_code=print)
        for bad in (0, -1, 3601):
            with pytest.raises(UsageError):
                await Client.link(
                    tmp_path / "x.db", "ws://127.0.0.1:0", on_code=print, timeout_s=bad
                )
        assert not (tmp_path / "x.db").exists()
        with pytest.raises(UsageError):
            await Client.link(tmp_path / "x.db", "http://example", on_code=print)

    run(body())


def test_aci_of_a_linked_device_is_the_accounts(tmp_path: Path) -> None:
    """The ACI comes from the provision, canonical, as the primary registered it."""

    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            aci = str(uuid.uuid4()).upper()
            alice = await new_client(relay, tmp_path / "alice.db", aci=aci)
            laptop = await _link(relay, tmp_path / "laptop.db", alice.approve_link)
            assert laptop.aci == aci.lower() == alice.aci
            await laptop.close()
            await alice.close()

    run(body())


def test_the_relay_letting_the_address_expire_is_an_expired_code(tmp_path: Path) -> None:
    from securemsg.relay.service import RelayConfig

    async def body() -> None:
        # A short-lived address; the relay's reader looks at it at least every idle timeout.
        config = RelayConfig(provisioning_ttl_s=2.0, idle_timeout_s=1.0, write_timeout_s=2.0)
        async with RelayServer(tmp_path / "relay.db", config=config) as relay:
            shown: list[str] = []
            path = tmp_path / "laptop.db"
            with pytest.raises(LinkingCodeError) as err:
                await _link(relay, path, shown.append)  # waits up to WAIT_S; the relay ends it
            assert err.value.reason == "expired"
            assert len(shown) == 1 and _leftovers(path) == []

    run(body())


def test_link_on_a_relay_that_admits_by_invitation(tmp_path: Path) -> None:
    from securemsg.relay.service import RelayConfig, TokenAdmission

    async def body() -> None:
        config = RelayConfig(admission=TokenAdmission([b"invite-1", b"invite-2"]))
        async with RelayServer(tmp_path / "relay.db", config=config) as relay:
            alice = await Client.create(tmp_path / "alice.db", relay.url, relay.trust_root_public)
            await alice.register(registration_token=b"invite-1")
            approvals: list[asyncio.Task[None]] = []

            def on_code(code: str) -> None:
                approvals.append(asyncio.get_running_loop().create_task(alice.approve_link(code)))

            laptop = await Client.link(
                tmp_path / "laptop.db",
                relay.url,
                on_code=on_code,
                registration_token=b"invite-2",
                timeout_s=WAIT_S,
            )
            await approvals[0]
            assert laptop.device_id == 2 and laptop.aci == alice.aci
            await laptop.close()
            await alice.close()

    run(body())


@pytest.mark.parametrize("assigned", [0, 1, 128])
def test_an_impossible_assigned_device_id_is_refused(tmp_path: Path, assigned: int) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            alice = await new_client(relay, tmp_path / "alice.db")
            service = relay.service
            real = service.handle

            def handle(session: Session, frame: rf.ClientFrame, now: int) -> Outcome:
                outcome = real(session, frame, now)
                if isinstance(frame.body, rf.Register) and frame.body.linking_code:
                    lie = dataclasses.replace(outcome.response, body=rf.Registered(assigned))
                    outcome = dataclasses.replace(outcome, response=lie)
                return outcome

            service.handle = handle  # type: ignore[method-assign]
            path = tmp_path / "laptop.db"
            with pytest.raises(RelayError) as err:
                await _link(relay, path, alice.approve_link)
            assert "device id" in str(err.value)
            assert _leftovers(path) == []
            await alice.close()

    run(body())


def test_a_file_that_appears_while_linking_is_left_alone(tmp_path: Path) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            alice = await new_client(relay, tmp_path / "alice.db")
            path = tmp_path / "laptop.db"

            async def someone_else_then_approve(code: str) -> None:
                path.write_bytes(b"not ours")
                await alice.approve_link(code)

            with pytest.raises(UsageError):
                await _link(relay, path, someone_else_then_approve)
            assert path.read_bytes() == b"not ours"
            assert _leftovers(path) == ["laptop.db"]
            await alice.close()

    run(body())
