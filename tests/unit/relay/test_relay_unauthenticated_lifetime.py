"""Unauthenticated connections cannot hold the relay's connection slots.

The idle timeout alone closes an unauthenticated connection only when it sends nothing, and
a client with no account may send ``GetServerTrustRoot`` (or sealed sends) as often as it
likes. So the relay also bounds an unauthenticated connection's lifetime
(``max_unauthenticated_lifetime_s``) and request count (``max_unauthenticated_requests``)
whatever it sends, and counts unauthenticated connections (handshakes included) against
their own cap (``max_unauthenticated_connections``, half of ``max_connections`` by
default), so the rest of the slots stays reserved for authenticated devices.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from relay_harness import Device, RawClient, relay, run
from websockets.exceptions import InvalidStatus

from securemsg.client import Client
from securemsg.client.connection import RelayConnection
from securemsg.relay_protocol import frames as rf

SLOTS = 6
IDLE_S = 1.0


def test_trickling_unauthenticated_connections_do_not_hold_the_connection_cap(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        server = relay(
            tmp_path / "r.db",
            max_connections=SLOTS,
            max_unauthenticated_connections=SLOTS,  # the lifetime alone must free them
            idle_timeout_s=IDLE_S,
            max_unauthenticated_lifetime_s=3 * IDLE_S,
        )
        await server.start()
        attackers: list[RawClient] = []
        stop = asyncio.Event()
        try:
            for _ in range(SLOTS):
                try:
                    attackers.append(await RawClient.open(server.url))
                except InvalidStatus:
                    break  # the cap counts handshakes too: we hold every slot already

            async def trickle(c: RawClient) -> None:
                # One tiny unauthenticated request per 0.3 s: never idle for IDLE_S.
                while not stop.is_set():
                    try:
                        r = await c.request(rf.GetServerTrustRoot())
                    except Exception:
                        return  # closed by the relay: the slot is free again
                    assert r.code == rf.StatusCode.OK
                    await asyncio.sleep(0.3)

            tasks = [asyncio.create_task(trickle(c)) for c in attackers]
            # Well past the idle timeout (8x): an unauthenticated connection that never
            # authenticates must have been closed by now.
            await asyncio.sleep(8 * IDLE_S)
            honest = Device.new(7001)
            refused = None
            try:
                c = await RawClient.open(server.url)
                r = await c.request(honest.register(c.nonce))
                assert r.code == rf.StatusCode.OK, r
                await c.close()
            except InvalidStatus as exc:
                refused = exc.response.status_code
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            assert refused is None, (
                f"honest client refused with HTTP {refused}: {len(attackers)} unauthenticated"
                " connections that never authenticate still hold every slot"
            )
        finally:
            stop.set()
            for c in attackers:
                await c.ws.close()
            await server.stop()

    run(body)


def test_an_unauthenticated_connection_is_closed_after_its_request_budget(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        async with relay(tmp_path / "r.db", max_unauthenticated_requests=5) as server:
            c = await RawClient.open(server.url)
            answered = 0
            for _ in range(20):  # bounded: the relay closes it after five
                try:
                    r = await c.request(rf.GetServerTrustRoot())
                except Exception:
                    break
                assert r.code == rf.StatusCode.OK
                answered += 1
            assert answered == 5
            assert await asyncio.wait_for(c.closed(), 10) == 1008

    run(body)


def test_a_login_within_the_request_budget_lifts_the_limits(tmp_path: Path) -> None:
    async def body() -> None:
        async with relay(
            tmp_path / "r.db", max_unauthenticated_requests=3, max_unauthenticated_lifetime_s=1.0
        ) as server:
            c = await RawClient.open(server.url)
            assert (await c.request(rf.GetServerTrustRoot())).code == rf.StatusCode.OK
            r = await c.request(Device.new(7002).register(c.nonce))
            assert r.code == rf.StatusCode.OK, r
            for _ in range(6):  # past both the request budget and the lifetime
                assert (await c.request(rf.GetServerTrustRoot())).code == rf.StatusCode.OK
                await asyncio.sleep(0.3)
            await c.close()

    run(body)


def test_unauthenticated_connections_cannot_take_the_slots_reserved_for_devices(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        async with relay(tmp_path / "r.db", max_connections=4) as server:
            devices = [Device.new(7100 + i) for i in range(2)]
            held = [await RawClient.open(server.url) for _ in range(2)]  # half of the cap
            with pytest.raises(InvalidStatus) as info:
                await RawClient.open(server.url)
            assert info.value.response.status_code == 503
            # Authenticated devices still get in: the unauthenticated ones hold only their
            # half. A held connection that logs in moves out of the unauthenticated count.
            r = await held[0].request(devices[0].register(held[0].nonce))
            assert r.code == rf.StatusCode.OK, r
            c = await RawClient.open(server.url)
            r = await c.request(devices[1].register(c.nonce))
            assert r.code == rf.StatusCode.OK, r
            for h in [*held, c]:
                await h.close()

    run(body)


def test_the_client_sdk_reopens_its_sealed_connection_after_the_relay_closes_it(
    tmp_path: Path,
) -> None:
    """Sealed sends go over an unauthenticated connection: when the relay closes it (its
    request budget or lifetime is spent), the next sealed send opens a new one."""

    async def body() -> None:
        async with relay(
            tmp_path / "r.db", max_unauthenticated_requests=3, max_unauthenticated_lifetime_s=1.0
        ) as server:
            clients = []
            for name in ("alice", "bob"):
                c = await Client.create(
                    tmp_path / f"{name}.db", server.url, server.trust_root_public
                )
                await c.register()
                clients.append(c)
            alice, bob = clients
            alice.add_contact(bob.contact_card)
            bob.add_contact(alice.contact_card)
            await alice.send_text(bob.aci, "first")  # bob learns alice's access key
            got = await bob.receive(timeout=10)
            assert got is not None and got.text == "first"
            for i in range(6):  # past the budget of 3 requests (and the trust-root check)
                await alice.send_text(bob.aci, f"m{i}")
            await asyncio.sleep(1.5)  # past the lifetime: the sealed connection is closed
            await alice.send_text(bob.aci, "late")
            # Sending without pause across lifetimes: a send the relay reads after the
            # lifetime is left unanswered by its policy close and sent again, transparently.
            loop = asyncio.get_running_loop()
            start, sent = loop.time(), 0
            while loop.time() - start < 2.5 and sent < 300:  # bounded in time and count
                await alice.send_text(bob.aci, f"s{sent}")
                sent += 1
            expected = [f"m{i}" for i in range(6)] + ["late"] + [f"s{i}" for i in range(sent)]
            texts = []
            for _ in expected:
                m = await bob.receive(timeout=10)
                assert m is not None
                assert m.sealed
                texts.append(m.text)
            assert texts == expected
            assert await bob.receive(timeout=0.2) is None  # none twice
            for c in clients:
                await c.close()

    run(body)


def test_requests_left_unread_by_a_policy_close_are_sent_again_on_a_new_connection(
    tmp_path: Path,
) -> None:
    """Pipelined past the request budget: the relay answers what it read, closes (1008)
    and never reads the rest; the SDK's connection sends those again on a new one."""

    async def body() -> None:
        async with relay(tmp_path / "r.db", max_unauthenticated_requests=3) as server:
            opened: list[RelayConnection] = []

            async def reopen() -> RelayConnection:
                conn = await RelayConnection.open(server.url)
                conn.reopen = reopen
                opened.append(conn)
                return conn

            first = await reopen()
            answers = await asyncio.gather(
                *(first.request(rf.GetServerTrustRoot()) for _ in range(5))
            )
            assert [a.code for a in answers] == [rf.StatusCode.OK] * 5
            assert len(opened) >= 2  # the first was closed by its request budget
            for conn in opened:
                await conn.close()

    run(body)
