"""``securemsg``: the command-line entry point (click + rich).

Theory of operation
-------------------
One click group (``securemsg --version`` prints the package version) with these commands:

* ``securemsg demo`` -- the main job: an embedded relay on loopback, three clients, a 1:1 and
  a group conversation, each client's view, and the relay's disclosure report.
* ``securemsg walkthrough`` -- the in-process walkthrough of one session (no network).
* ``securemsg relay serve`` / ``securemsg relay disclose`` -- run a relay; report everything
  it holds about one account.
* ``securemsg client register|whoami|add-contact|send|receive|chat`` -- a device in a
  directory (``--home``), so two terminals can talk through a running relay.

Expected failures (a refused request, an unreachable relay, a bad argument, a missing home
directory) print one line ``Error: ...`` and exit with status 1; click's usage errors exit
with 2. No traceback is shown for them. Async work runs in ``asyncio.run`` per command.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from securemsg import __version__
from securemsg.errors import SecureMsgError

__all__ = ["cli", "main"]

_T = TypeVar("_T")
_DEVICE_FILE = "device.db"


class _Group(click.Group):
    """A group that turns securemsg's typed errors into a one-line ``Error:`` and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SecureMsgError as exc:
            raise click.ClickException(f"{exc} ({type(exc).__name__})") from None
        except OSError as exc:
            raise click.ClickException(f"{exc.strerror or exc} ({type(exc).__name__})") from None


def _run(coro: Awaitable[_T]) -> _T:
    async def wrapper() -> _T:
        return await coro

    return asyncio.run(wrapper())


def _console() -> Console:
    return Console(highlight=False, soft_wrap=False)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    __version__, "--version", prog_name="securemsg", message="%(prog)s %(version)s"
)
def cli() -> None:
    """End-to-end encrypted messaging, byte-compatible with libsignal 0.103.0.

    Keys live only on the clients; the relay stores public keys and ciphertext. Start with
    `securemsg demo`.
    """


# -- demo and walkthrough ------------------------------------------------------------------


@cli.command()
def demo() -> None:
    """Run the main job end to end on this machine.

    Starts a relay on 127.0.0.1 (ephemeral port) with a temporary SQLite database, creates
    three users (Alice, Bob, Carol), runs a 1:1 and a group conversation, prints what each
    client decrypts, then the relay's disclosure report for Alice. Everything is deleted
    afterwards.
    """
    from securemsg.cli.network_demo import run_network_demo

    _run(run_network_demo(_console()))


@cli.command()
@click.option(
    "--messages",
    type=click.IntRange(1, 1000),
    default=6,
    show_default=True,
    help="How many messages Alice and Bob exchange.",
)
@click.option(
    "--seed",
    default=None,
    help="Reproducible run with a deterministic RNG (TESTING ONLY: keys become predictable).",
)
def walkthrough(messages: int, seed: str | None) -> None:
    """Walk through one session in this process, no network.

    Two clients with in-memory stores: Bob publishes a prekey bundle, Alice runs PQXDH, and
    they exchange messages over the Double Ratchet with SPQR, showing the bytes a relay would
    carry.
    """
    from securemsg.demo import run_demo

    code = run_demo(messages=messages, seed=seed, out=sys.stdout)
    if code:
        raise click.exceptions.Exit(code)


# -- relay ---------------------------------------------------------------------------------


@cli.group(cls=_Group)
def relay() -> None:
    """Run the reference relay or report what it holds."""


@relay.command("serve")
@click.option(
    "--db",
    "db",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The relay's SQLite database (created on first start, with its keys).",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port to listen on (0: pick a free one).",
)
def relay_serve(db: Path, host: str, port: int) -> None:
    """Serve the relay until interrupted (Ctrl-C).

    Prints the URL clients connect to and the trust-root public key they should pin
    (`securemsg client register --trust-root HEX`).
    """
    from securemsg.relay.server import RelayServer

    async def serve() -> None:
        server = RelayServer(db)
        await server.start(host, port)
        click.echo(f"relay listening on {server.url}")
        click.echo(f"trust root: {server.trust_root_public.to_bytes().hex()}")
        try:
            await server.serve_forever()
        finally:
            await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        _run(serve())


@relay.command("disclose")
@click.option(
    "--db",
    "db",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="The relay's SQLite database.",
)
@click.option("--account", required=True, help="The account's ACI (a UUID).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Human-readable text or JSON.",
)
def relay_disclose(db: Path, account: str, fmt: str) -> None:
    """Print everything the relay holds about one account.

    What a person answering a legal demand would have to hand over: account and device dates,
    public keys, queued-ciphertext metadata, an explicit list of what is not held, and a
    comparison with Signal's published answer. Deterministic for a given database.
    """
    from securemsg.cli.disclose import disclosure_json, disclosure_text

    click.echo(disclosure_json(db, account) if fmt == "json" else disclosure_text(db, account))


# -- client --------------------------------------------------------------------------------


_home_option = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The device's directory (holds its SQLite database and keys).",
)


@cli.group(cls=_Group)
def client() -> None:
    """A client device in a directory: register, send, receive, chat."""


async def _open(home: Path) -> Any:
    from securemsg.client import Client

    return await Client.open(home / _DEVICE_FILE)


@client.command("register")
@_home_option
@click.option("--relay", "relay_url", required=True, help="The relay, e.g. ws://127.0.0.1:8765.")
@click.option(
    "--trust-root",
    default=None,
    help="The relay's trust-root key (hex, printed by `relay serve`). Without it the "
    "key is taken from the relay on first contact.",
)
def client_register(home: Path, relay_url: str, trust_root: str | None) -> None:
    """Create a new device in HOME and register it with the relay.

    Prints the account's ACI and its contact card (ACI:ACCESSKEY): give the card to people
    who should be able to send to you with sealed sender.
    """
    from securemsg.client import Client

    async def go() -> None:
        home.mkdir(parents=True, exist_ok=True)
        path = home / _DEVICE_FILE
        if path.exists():  # an earlier attempt created the device but did not register it
            c = await Client.open(path, relay_url=relay_url)
            if c.registered:
                await c.close()
                raise click.ClickException(f"{home} already holds a registered device")
        else:
            c = await Client.create(path, relay_url, trust_root)
        try:
            await c.register()
            click.echo(f"registered {c.aci} (device {c.device_id})")
            click.echo(f"contact card: {c.contact_card}")
        finally:
            await c.close()

    _run(go())


@client.command("whoami")
@_home_option
def client_whoami(home: Path) -> None:
    """Print this device's ACI, device id, relay and contact card."""

    async def go() -> None:
        c = await _open(home)
        try:
            click.echo(f"aci: {c.aci}\ndevice: {c.device_id}\nrelay: {c.relay_url}")
            click.echo(f"contact card: {c.contact_card}")
        finally:
            await c.close()

    _run(go())


@client.command("add-contact")
@_home_option
@click.argument("card")
def client_add_contact(home: Path, card: str) -> None:
    """Remember a contact card (ACI:ACCESSKEY) so messages to it are sealed."""

    async def go() -> None:
        c = await _open(home)
        try:
            click.echo(f"added {c.add_contact(card)}")
        finally:
            await c.close()

    _run(go())


def _print_message(console: Console, m: Any) -> None:
    where = f" [{m.group_title}]" if m.group_title else ""
    how = "sealed" if m.sealed else "identified"
    console.print(f"{m.sender_aci}{where}: {m.text}  ({how})", markup=False)


@client.command("send")
@_home_option
@click.option(
    "--to", "to", required=True, help="The recipient's ACI, or their contact card (ACI:ACCESSKEY)."
)
@click.argument("text")
def client_send(home: Path, to: str, text: str) -> None:
    """Send TEXT to one account (sealed if its access key is known)."""

    async def go() -> None:
        c = await _open(home)
        try:
            aci = c.add_contact(to) if ":" in to else to
            await c.connect()
            await c.send_text(aci, text)
            sealed = c.store.get_access_key(aci) is not None
            click.echo(f"sent to {aci} ({'sealed' if sealed else 'identified'})")
        finally:
            await c.close()

    _run(go())


@client.command("receive")
@_home_option
@click.option(
    "--wait",
    type=click.FloatRange(0, 3600),
    default=0.0,
    show_default=True,
    help="Keep listening this many seconds after the backlog.",
)
def client_receive(home: Path, wait: float) -> None:
    """Fetch and print the messages waiting on the relay (each is shown once)."""
    console = _console()

    async def go() -> None:
        c = await _open(home)
        try:
            await c.connect()
            await c.sync()
            count = 0
            while True:
                m = await c.receive(timeout=wait if wait else 0.2)
                if m is None:
                    break
                _print_message(console, m)
                count += 1
            if count == 0:
                click.echo("no new messages")
        finally:
            await c.close()

    _run(go())


@client.command("chat")
@_home_option
@click.option("--to", "to", required=True, help="The other side's ACI or contact card.")
def client_chat(home: Path, to: str) -> None:
    """Chat with one account: each line you type is sent; incoming messages are printed.

    Ends at end of input (Ctrl-D).
    """
    console = _console()

    async def go() -> None:
        c = await _open(home)
        try:
            aci = c.add_contact(to) if ":" in to else to
            await c.connect()

            async def printer() -> None:
                async for m in c:
                    _print_message(console, m)

            task = asyncio.get_running_loop().create_task(printer())
            try:
                while True:
                    line = await asyncio.to_thread(sys.stdin.readline)
                    if not line:
                        break
                    if line.strip():
                        await c.send_text(aci, line.rstrip("\n"))
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        finally:
            await c.close()

    _run(go())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (the ``securemsg`` entry point)."""
    try:
        cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="securemsg",
            standalone_mode=True,
        )
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
