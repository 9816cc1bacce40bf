"""Linked devices over a real relay: every message on every device, exactly once.

Three accounts (Alice, Bob, Carol), up to three devices each, linked through the real
provisioning flow and unlinked by their primary mid-conversation. Each device sends 1:1
and group messages; a model of the current device lists says which devices must show each
message: every current device of the recipient (every other member's for a group message)
and every *other* current device of the sender (a sync transcript). Checked per device:
exactly that multiset, no message missing, none twice. Also:

* a removed device receives nothing new, and learns it was removed;
* no ``MismatchedDevices`` loop: the relay's ``CONFLICT`` answers are counted; a round of
  sends after the device lists changed needs some, the next round (no change) none;
* a device killed (SIGKILL, a separate process) after committing messages but before
  acknowledging them receives them again on restart, and the app sees each once.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections import Counter
from pathlib import Path

import pytest
from integration_harness import new_client, run, until

from securemsg.client import Client
from securemsg.errors import DeviceRemovedError
from securemsg.relay.server import RelayServer
from securemsg.relay.service import Outcome, Session
from securemsg.relay_protocol import frames as rf

CHILD = Path(__file__).with_name("integration_crash_child.py")

#: What a device shows for one message: (sender ACI, sender device, timestamp, text, ours).
Seen = tuple[str, int, int, str, bool]


class World:
    """The accounts' current devices and what each device must have shown."""

    def __init__(self, relay: RelayServer, tmp: Path) -> None:
        self.relay = relay
        self.tmp = tmp
        self.devices: dict[str, dict[int, Client]] = {}  # account name -> device id -> client
        self.removed: list[Client] = []
        self.expected: dict[tuple[str, int], Counter[Seen]] = {}
        self.seen: dict[tuple[str, int], Counter[Seen]] = {}
        self.conflicts = 0
        self.sends = 0
        real = relay.service.handle

        def counting(session: Session, frame: rf.ClientFrame, now: int) -> Outcome:
            outcome = real(session, frame, now)
            if isinstance(frame.body, rf.SendMessage | rf.SendSealed | rf.SendMultiRecipient):
                self.sends += 1
                if outcome.response.code == rf.StatusCode.CONFLICT:
                    self.conflicts += 1
            return outcome

        relay.service.handle = counting  # type: ignore[method-assign]

    def aci(self, name: str) -> str:
        return self.devices[name][1].aci

    def all_clients(self) -> list[Client]:
        return [c for devs in self.devices.values() for c in devs.values()]

    def _introduce(self, client: Client) -> None:
        for devs in self.devices.values():
            other = devs[1]
            if other.aci != client.aci:
                client.add_contact(other.contact_card)

    async def new_account(self, name: str) -> Client:
        client = await new_client(self.relay, self.tmp / f"{name}1.db")
        self.devices[name] = {1: client}
        for c in self.all_clients():
            self._introduce(c)
        return client

    async def link(self, name: str) -> Client:
        primary = self.devices[name][1]
        codes: asyncio.Queue[str] = asyncio.Queue()
        n = len(self.removed) + len(self.all_clients()) + 1
        task = asyncio.create_task(
            Client.link(
                self.tmp / f"{name}-linked-{n}.db",
                self.relay.url,
                on_code=codes.put_nowait,
                trust_root=self.relay.trust_root_public,
                timeout_s=60.0,
                prekey_batch=4,
                prekey_low_water=2,
            )
        )
        async with asyncio.timeout(60):
            await primary.approve_link(await codes.get())
        client = await task
        assert client.aci == primary.aci and client.device_id not in self.devices[name]
        self.devices[name][client.device_id] = client
        self._introduce(client)
        return client

    async def unlink(self, name: str, device_id: int) -> Client:
        client = self.devices[name].pop(device_id)
        await self.devices[name][1].unlink(device_id)
        self.removed.append(client)
        return client

    def _expect(self, name: str, exclude: Client | None, seen: Seen) -> None:
        for dev, client in self.devices[name].items():
            if client is not exclude:
                self.expected.setdefault((name, dev), Counter())[seen] += 1

    def _name(self, client: Client) -> str:
        return next(n for n, devs in self.devices.items() if client in devs.values())

    async def send(self, sender: Client, to: str, text: str) -> None:
        ts = await sender.send_text(self.aci(to), text)
        self._expect(to, None, (sender.aci, sender.device_id, ts, text, False))
        own = self._name(sender)
        self._expect(own, sender, (sender.aci, sender.device_id, ts, text, True))

    async def send_group(self, sender: Client, group: bytes, text: str) -> None:
        ts = await sender.send_group_text(group, text)
        for name in self.devices:
            ours = name == self._name(sender)
            self._expect(name, sender, (sender.aci, sender.device_id, ts, text, ours))

    async def drain(self) -> None:
        """Take every message each current device has (bounded waits)."""
        for name, devs in self.devices.items():
            for dev, client in devs.items():
                got = self.seen.setdefault((name, dev), Counter())
                for _ in range(200):
                    m = await client.receive(timeout=1.5)
                    if m is None:
                        break
                    got[
                        (m.sender_aci, m.sender_device, m.sent_timestamp, m.text, m.transcript)
                    ] += 1

    def check(self) -> None:
        assert self.expected and all(self.expected.values())
        for key in set(self.expected) | set(self.seen):
            want = self.expected.get(key, Counter())
            have = self.seen.get(key, Counter())
            assert have == want, (key, "missing", want - have, "extra", have - want)


def test_three_accounts_linked_and_unlinked_mid_conversation(tmp_path: Path) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            world = World(relay, tmp_path)
            alice = await world.new_account("alice")
            await world.new_account("bob")
            await world.new_account("carol")
            await world.link("alice")  # alice 2
            bob2 = await world.link("bob")  # bob 2
            try:
                group = alice.create_group("three", [world.aci("bob"), world.aci("carol")])

                # Round 1: two accounts with two devices, one with one.
                await world.send_group(alice, group, "r1 group from alice 1")
                await world.drain()  # every device now knows the group
                for name, to in (("alice", "bob"), ("bob", "carol"), ("carol", "alice")):
                    for client in list(world.devices[name].values()):
                        await world.send(client, to, f"r1 {name} {client.device_id} to {to}")
                        await world.send_group(client, group, f"r1 group {client.address}")
                await world.drain()
                world.check()

                # Mid-conversation: Carol and Alice link a device, Bob unlinks his second.
                await world.link("carol")  # carol 2
                await world.link("alice")  # alice 3
                removed_rows = bob2.store.inbox_count()
                await world.unlink("bob", 2)
                await until(lambda: bob2.removed)  # the relay told it
                conflicts_before = world.conflicts

                # Round 2: every device sends 1:1 and to the group.
                for name, to in (("alice", "bob"), ("bob", "carol"), ("carol", "alice")):
                    for client in list(world.devices[name].values()):
                        await world.send(client, to, f"r2 {name} {client.device_id} to {to}")
                        await world.send_group(client, group, f"r2 group {client.address}")
                await world.drain()
                world.check()
                repairs = world.conflicts - conflicts_before
                print(
                    "round 2:",
                    world.sends,
                    "sends",
                    repairs,
                    "conflicts",
                    {k: sum(v.values()) for k, v in world.seen.items()},
                )
                assert repairs > 0  # the changed lists were found out ...
                sends_in_round = 2 * len(world.all_clients())
                assert repairs <= 2 * sends_in_round  # ... with at most a few, never a loop

                # Round 3: nothing changed, so no device list is wrong any more.
                conflicts_before = world.conflicts
                for name, to in (("alice", "carol"), ("bob", "alice"), ("carol", "bob")):
                    for client in list(world.devices[name].values()):
                        await world.send(client, to, f"r3 {name} {client.device_id} to {to}")
                        await world.send_group(client, group, f"r3 group {client.address}")
                await world.drain()
                world.check()
                assert world.conflicts == conflicts_before

                # The removed device received nothing new and is told so when it tries.
                assert bob2.store.inbox_count() == removed_rows
                with pytest.raises(DeviceRemovedError):
                    await bob2.send_text(world.aci("alice"), "from a removed device")
                for client in world.all_clients():
                    assert client.failures() == [], client.address
            finally:
                for client in world.all_clients() + world.removed:
                    await client.close()

    run(body(), timeout=600)


def test_a_linked_device_killed_before_acking_sees_each_message_once(tmp_path: Path) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            world = World(relay, tmp_path)
            alice = await world.new_account("alice")
            await world.new_account("bob")
            bob2 = await world.link("bob")
            bob2_db = tmp_path / "bob-linked-3.db"
            assert bob2_db.exists()
            await bob2.close()  # its process will be the child
            try:
                await world.send(alice, "bob", "first: the app sees it before the kill")
                await world.send(alice, "bob", "second: committed, not yet shown, then kill")
                child = await asyncio.create_subprocess_exec(
                    sys.executable,
                    str(CHILD),
                    str(bob2_db),
                    relay.url,
                    stdout=asyncio.subprocess.PIPE,
                )
                assert child.stdout is not None
                lines: list[str] = []
                try:
                    async with asyncio.timeout(60):
                        while not lines or lines[-1] != "READY":
                            line = await child.stdout.readline()
                            assert line, f"child ended early: {lines}"
                            lines.append(line.decode().strip())
                finally:
                    child.kill()  # SIGKILL: no close, no ack, no cleanup
                    await child.wait()
                assert "APP first: the app sees it before the kill" in lines
                store = relay.service.store
                bob_aci = uuid.UUID(world.aci("bob")).bytes
                assert len(store.pending(bob_aci, 2)) == 2  # never acknowledged

                bob2 = await Client.open(bob2_db)
                world.devices["bob"][2] = bob2
                await bob2.connect()
                await bob2.sync()
                got = await bob2.receive(timeout=10)
                assert got is not None and got.text.startswith("second:")
                assert await bob2.receive(timeout=0.5) is None  # the first is not shown again
                await until(lambda: not store.pending(bob_aci, 2))
                # The first was shown by the killed process: count it as seen there.
                world.seen.setdefault(("bob", 2), Counter())[
                    next(s for s in world.expected[("bob", 2)] if s[3].startswith("first:"))
                ] += 1
                world.seen[("bob", 2)][
                    (got.sender_aci, got.sender_device, got.sent_timestamp, got.text, False)
                ] += 1
                await world.send(alice, "bob", "third: after the restart")
                await world.drain()
                world.check()
            finally:
                for client in world.all_clients():
                    await client.close()

    run(body(), timeout=300)
