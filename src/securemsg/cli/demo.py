"""``securemsg demo``: the main job, end to end over a real relay on loopback.

Theory of operation
-------------------
Starts an embedded :class:`~securemsg.relay.server.RelayServer` on ``127.0.0.1`` (ephemeral
port) with a SQLite database in a temporary directory, creates three client devices (Alice,
Bob, Carol; each its own SQLite file and keys), lets them exchange contact cards (ACI and
access key, as a QR code would), then runs a 1:1 conversation (sealed sender v1) and a group
conversation (sender keys fanned out with sealed sender v2). It prints what each client
decrypts as it happens, a per-client table of its inbox, and finally the relay's disclosure
report for Alice: everything the relay could hand over about her.

Everything lives in the temporary directory and is deleted at the end. With ``db`` (a
``postgresql://`` URL: ``securemsg demo --db ...``) the relay runs on that PostgreSQL database
instead, as one instance of a cluster; the demo's accounts and what is still queued stay in
that database.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from securemsg.client import Client, ReceivedMessage
from securemsg.relay.server import RelayServer

__all__ = ["run_demo"]

_NAMES = ("Alice", "Bob", "Carol")


def _short(aci: str) -> str:
    return aci[:8] + "…"


async def run_demo(
    console: Console, *, prekey_batch: int = 10, db: str | None = None
) -> dict[str, object]:
    """Run the demo, printing to ``console`` (on the PostgreSQL database ``db`` if given).

    Returns:
        A summary for tests: ``{"views": {name: [texts]}, "disclosure": str, "aci": {...}}``.

    Raises:
        SecureMsgError: a step failed (the relay or a client refused something).
    """
    views: dict[str, list[ReceivedMessage]] = {n: [] for n in _NAMES}
    with tempfile.TemporaryDirectory(prefix="securemsg-demo-") as tmp_name:
        tmp = Path(tmp_name)
        where: str | Path = tmp / "relay.db" if db is None else db
        relay = RelayServer(where)
        await relay.start("127.0.0.1", 0)
        clients: dict[str, Client] = {}
        try:
            console.rule("[bold]securemsg demo: a relay, three clients, keys only on the clients")
            kind = "SQLite database relay.db" if db is None else "PostgreSQL database"
            console.print(f"Relay listening on [cyan]{relay.url}[/] ({kind})")
            console.print(
                "Trust root (clients pin it for sealed sender): "
                + relay.trust_root_public.to_bytes().hex()[:24]
                + "…"
            )
            for name in _NAMES:
                client = await Client.create(
                    tmp / (name.lower() + ".db"),
                    relay.url,
                    relay.trust_root_public,
                    prekey_batch=prekey_batch,
                )
                await client.register()
                clients[name] = client
            table = Table(title="1. Registration (public keys only are uploaded)")
            for col in ("user", "ACI", "device", "identity key (public)"):
                table.add_column(col)
            for name, c in clients.items():
                identity = c.store.get_identity_key_pair().identity_key.to_bytes()
                table.add_row(name, c.aci, str(c.device_id), identity.hex()[:20] + "…")
            console.print(table)
            console.print(
                "2. The users exchange contact cards (ACI + access key) out of band, as a QR "
                "code would; the access key lets them send sealed: the relay never learns who "
                "sent a message."
            )
            for a in clients.values():
                for b in clients.values():
                    if a is not b:
                        a.add_contact(b.contact_card)

            async def deliver(sender: str, recipients: tuple[str, ...]) -> None:
                for r in recipients:
                    got = await clients[r].receive(timeout=15)
                    if got is None:
                        console.print(f"   [red]{r} received nothing[/]")
                        continue
                    views[r].append(got)
                    where = f" in '{got.group_title}'" if got.group_title else ""
                    how = "sealed" if got.sealed else "identified"
                    console.print(
                        f"   {r:>5} decrypts from {sender}{where}: [green]{got.text!r}[/]  ({how})"
                    )

            alice, bob, carol = clients["Alice"], clients["Bob"], clients["Carol"]
            console.print("\n3. A 1:1 conversation (PQXDH + Double Ratchet with SPQR, sealed v1)")
            await alice.send_text(bob.aci, "Hi Bob! Lunch tomorrow?")
            await deliver("Alice", ("Bob",))
            await bob.send_text(alice.aci, "Sure, 12:30 at the usual place.")
            await deliver("Bob", ("Alice",))
            await alice.send_text(bob.aci, "Great, see you there.")
            await deliver("Alice", ("Bob",))

            console.print("\n4. A group conversation (sender keys, one sealed sender v2 upload)")
            group = alice.create_group("Weekend hike", [bob.aci, carol.aci])
            await alice.send_group_text(group, "Hike on Saturday? Meet at 9.")
            await deliver("Alice", ("Bob", "Carol"))
            await carol.send_group_text(group, "I'm in, I'll bring snacks.")
            await deliver("Carol", ("Alice", "Bob"))
            await bob.send_group_text(group, "Count me in too.")
            await deliver("Bob", ("Alice", "Carol"))

            names = {c.aci: n for n, c in clients.items()}
            console.print("\n5. What each client sees (decrypted on the device, nowhere else)")
            for name in _NAMES:
                t = Table(title=f"{name}'s inbox")
                for col in ("from", "conversation", "text", "relay saw sender?"):
                    t.add_column(col)
                for m in views[name]:
                    t.add_row(
                        names.get(m.sender_aci, _short(m.sender_aci)),
                        m.group_title or "1:1",
                        m.text,
                        "no (sealed)" if m.sealed else "yes",
                    )
                console.print(t)
            alice_aci = alice.aci
            aci_map = {n: c.aci for n, c in clients.items()}
        finally:
            for c in clients.values():
                await c.close()
            await relay.stop()

        from securemsg.cli.disclose import disclosure_text

        console.print("\n6. The relay's disclosure report for Alice: everything it could hand over")
        report = disclosure_text(where, alice_aci)
        console.print(report, markup=False, highlight=False, soft_wrap=True)
    return {
        "views": {n: [m.text for m in views[n]] for n in _NAMES},
        "disclosure": report,
        "aci": aci_map,
    }
