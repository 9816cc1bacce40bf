"""``securemsg``: the command-line entry point (click + rich).

Theory of operation
-------------------
One click group with these commands:

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

from securemsg.errors import SecureMsgError
from securemsg.relay.service import RelayConfig

__all__ = ["cli", "main"]

_T = TypeVar("_T")
#: The relay's default limits (the `relay serve` option defaults).
_DEFAULTS = RelayConfig()
_MIB = 1024 * 1024
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
@click.option(
    "--tls-cert",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="PEM certificate chain: serve wss:// (needs --tls-key).",
)
@click.option(
    "--tls-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="PEM private key of --tls-cert.",
)
@click.option(
    "--allow-origin",
    "allow_origins",
    multiple=True,
    help="A browser origin (e.g. https://app.example) allowed to connect; repeatable. "
    "Requests with any other Origin header are refused; clients sending none are accepted.",
)
@click.option(
    "--max-connections",
    type=click.IntRange(1),
    default=_DEFAULTS.max_connections,
    show_default=True,
    help="Most open connections (also capped by the file-descriptor limit); more get HTTP 503.",
)
@click.option(
    "--max-buffered-mib",
    type=click.IntRange(1),
    default=_DEFAULTS.max_buffered_bytes // _MIB,
    show_default=True,
    help="Most MiB waiting to be handled or written over all connections; above it new "
    "connections get HTTP 503 and requests wait.",
)
@click.option(
    "--window",
    type=click.IntRange(1),
    default=_DEFAULTS.window_envelopes,
    show_default=True,
    help="Most unacknowledged envelopes pushed to one connection.",
)
@click.option(
    "--window-kib",
    type=click.IntRange(1),
    default=_DEFAULTS.window_bytes // 1024,
    show_default=True,
    help="Most KiB of unacknowledged envelope bodies pushed to one connection.",
)
@click.option(
    "--write-timeout",
    type=click.FloatRange(0.1),
    default=_DEFAULTS.write_timeout_s,
    show_default=True,
    help="Seconds a write may make no progress before the connection is aborted.",
)
@click.option(
    "--idle-timeout",
    type=click.FloatRange(0.1),
    default=_DEFAULTS.idle_timeout_s,
    show_default=True,
    help="Seconds an unauthenticated connection may stay silent before it is closed.",
)
@click.option(
    "--ping-interval",
    type=click.FloatRange(0.1),
    default=_DEFAULTS.ping_interval_s,
    show_default=True,
    help="Seconds between keepalive pings.",
)
@click.option(
    "--ping-timeout",
    type=click.FloatRange(0.1),
    default=_DEFAULTS.ping_timeout_s,
    show_default=True,
    help="Seconds to wait for a keepalive pong before closing.",
)
@click.option(
    "--max-inflight",
    type=click.IntRange(1),
    default=_DEFAULTS.max_inflight_requests,
    show_default=True,
    help="Most requests of one connection read but not yet answered.",
)
@click.option(
    "--outbox-kib",
    type=click.IntRange(1),
    default=_DEFAULTS.max_outbox_bytes // 1024,
    show_default=True,
    help="KiB waiting to be written to an authenticated connection before its requests "
    "are no longer read.",
)
@click.option(
    "--unauth-outbox-kib",
    type=click.IntRange(1),
    default=_DEFAULTS.max_unauthenticated_outbox_bytes // 1024,
    show_default=True,
    help="The same for a connection that has not authenticated.",
)
@click.option(
    "--max-incoming-frames",
    type=click.IntRange(1),
    default=_DEFAULTS.max_incoming_frames,
    show_default=True,
    help="Received frames buffered per connection before the socket is no longer read.",
)
@click.option(
    "--max-inflight-kib",
    type=click.IntRange(1),
    default=_DEFAULTS.max_inflight_bytes // 1024,
    show_default=True,
    help="Most KiB of one connection's requests read but not yet answered.",
)
@click.option(
    "--max-batch",
    type=click.IntRange(1),
    default=_DEFAULTS.max_batch,
    show_default=True,
    help="Most requests committed together in one transaction (group commit).",
)
def relay_serve(
    db: Path,
    host: str,
    port: int,
    tls_cert: Path | None,
    tls_key: Path | None,
    allow_origins: tuple[str, ...],
    max_connections: int,
    max_buffered_mib: int,
    window: int,
    window_kib: int,
    write_timeout: float,
    idle_timeout: float,
    ping_interval: float,
    ping_timeout: float,
    max_inflight: int,
    max_inflight_kib: int,
    outbox_kib: int,
    unauth_outbox_kib: int,
    max_incoming_frames: int,
    max_batch: int,
) -> None:
    """Serve the relay until interrupted (Ctrl-C).

    Prints the URL clients connect to and the trust-root public key they should pin
    (`securemsg client register --trust-root HEX`). Without --tls-cert/--tls-key it speaks
    plain ws://: fine on loopback or behind a TLS-terminating proxy; bound to another
    address it logs a warning.
    """
    import dataclasses
    import ssl

    from securemsg.relay.server import RelayServer

    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("--tls-cert and --tls-key go together")
    context: ssl.SSLContext | None = None
    if tls_cert is not None and tls_key is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(tls_cert, tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise click.ClickException(f"cannot load the TLS certificate or key: {exc}") from None
    config = dataclasses.replace(
        _DEFAULTS,
        allowed_origins=tuple(allow_origins),
        max_connections=max_connections,
        max_buffered_bytes=max_buffered_mib * _MIB,
        window_envelopes=window,
        window_bytes=window_kib * 1024,
        write_timeout_s=write_timeout,
        idle_timeout_s=idle_timeout,
        ping_interval_s=ping_interval,
        ping_timeout_s=ping_timeout,
        max_inflight_requests=max_inflight,
        max_inflight_bytes=max_inflight_kib * 1024,
        max_outbox_bytes=outbox_kib * 1024,
        max_unauthenticated_outbox_bytes=unauth_outbox_kib * 1024,
        max_incoming_frames=max_incoming_frames,
        max_batch=max_batch,
    )

    async def serve() -> None:
        server = RelayServer(db, config=config, ssl=context)
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
