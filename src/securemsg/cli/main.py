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
  ``securemsg client link|approve|devices|unlink`` -- linked devices: a new device shows a
  linking code (text and a QR code) and waits; the primary approves it; the primary lists and
  unlinks devices. ``receive`` and
  ``chat`` also check the account's own key in the relay's key-transparency directory (at
  start; ``chat`` then hourly) and say so in words if the relay published a key it did not create.
* ``securemsg kt audit`` -- audit a relay's key-transparency directory (append-only proofs,
  head chain) and optionally cosign its heads.

Expected failures (a refused request, an unreachable relay, a bad argument, a missing home
directory) print one line ``Error: ...`` and exit with status 1; click's usage errors exit
with 2. No traceback is shown for them. Async work runs in ``asyncio.run`` per command.

Client homes: ``client register`` creates the home directory ``0700`` and the device database
``0600``; a home or database file that other users can access is made private with a warning
on stderr. A failed ``client register`` (relay unreachable, bad URL, another trust root than
``--trust-root``) removes the database and the directories it created: nothing is left
behind. Sends are sealed or refused: ``--allow-identified`` lets a send
that cannot be sealed go identified (the relay then learns the sender).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from securemsg import __version__
from securemsg.cli.interop import interop as _interop_group
from securemsg.errors import DeviceRemovedError, SealedDeliveryRefused, SecureMsgError
from securemsg.relay.service import RelayConfig

__all__ = ["cli", "main"]

_T = TypeVar("_T")
#: The relay's default limits (the `relay serve` option defaults).
_DEFAULTS = RelayConfig()
_MIB = 1024 * 1024
_DEVICE_FILE = "device.db"
_DB_SIDE_FILES = ("", "-wal", "-shm", "-journal")


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
@click.option(
    "--db",
    "db",
    default=None,
    help="Run the relay on this PostgreSQL database (postgresql://...; needs the "
    "'postgres' extra) instead of a temporary SQLite file. The demo's rows stay there.",
)
def demo(db: str | None) -> None:
    """Run the main job end to end on this machine.

    Starts a relay on 127.0.0.1 (ephemeral port) with a temporary SQLite database, creates
    three users (Alice, Bob, Carol), runs a 1:1 and a group conversation, prints what each
    client decrypts, then the relay's disclosure report for Alice. Everything is deleted
    afterwards.
    """
    from securemsg.cli.demo import run_demo
    from securemsg.relay.pgstore import is_postgres_url

    if db is not None and not is_postgres_url(db):
        raise click.UsageError("--db takes a postgresql:// URL")
    _run(run_demo(_console(), db=db))


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
    from securemsg.cli.walkthrough import run_walkthrough

    code = run_walkthrough(messages=messages, seed=seed, out=sys.stdout)
    if code:
        raise click.exceptions.Exit(code)


# -- relay ---------------------------------------------------------------------------------


@cli.group(cls=_Group)
def relay() -> None:
    """Run the reference relay or report what it holds."""


def _auditor_keys(
    _ctx: click.Context, _param: click.Parameter, value: tuple[str, ...]
) -> tuple[bytes, ...]:
    from securemsg.relay_protocol.frames import MAX_KT_COSIGNATURES

    keys: list[bytes] = []
    for text in value:
        try:
            key = bytes.fromhex(text)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise click.BadParameter(f"{text!r} is not a 32-byte public key in hex")
        if key not in keys:
            keys.append(key)
    if len(keys) > MAX_KT_COSIGNATURES:
        raise click.BadParameter(f"at most {MAX_KT_COSIGNATURES} auditors")
    return tuple(keys)


@relay.command("serve")
@click.option(
    "--db",
    "db",
    required=True,
    help="The relay's SQLite database file (created on first start, with its keys), or a "
    "postgresql:// URL: several relays on one PostgreSQL database form a cluster (needs the "
    "'postgres' extra: pip install 'securemsg[postgres]').",
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
    "--registration-token-file",
    "token_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Admit only registrations carrying one of these tokens (one per line; blank lines"
    " and # comments skipped). Without it, registration is open (rate-limited).",
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
    "--kt-epoch-interval",
    "kt_epoch_interval",
    type=click.FloatRange(0.01, 86400),
    default=_DEFAULTS.kt_epoch_interval_s,
    show_default=True,
    help="Seconds between key-transparency epochs (queued identity keys are published).",
)
@click.option(
    "--kt-auditor-key",
    "kt_auditor_keys",
    multiple=True,
    callback=_auditor_keys,
    metavar="HEX",
    help="Public key (64 hex digits) of a key-transparency auditor whose cosignatures of the "
    "epoch heads the relay stores and serves; repeatable, at most 16. Without any, the relay "
    "refuses every cosignature, and clients that require auditor cosignatures accept none of "
    "its heads.",
)
@click.option(
    "--max-batch",
    type=click.IntRange(1),
    default=_DEFAULTS.max_batch,
    show_default=True,
    help="Most requests committed together in one transaction (group commit).",
)
@click.option(
    "--registration-burst",
    type=click.IntRange(1),
    default=_DEFAULTS.registration_burst,
    show_default=True,
    help="Registrations the relay accepts at once, over all connections.",
)
@click.option(
    "--registration-rate",
    type=click.FloatRange(0.001),
    default=_DEFAULTS.registration_refill_per_s,
    show_default=True,
    help="Registrations regained per second after a burst.",
)
@click.option(
    "--one-time-budget",
    type=click.IntRange(0),
    default=_DEFAULTS.one_time_budget,
    show_default=True,
    help="One-time prekeys handed out per target device per hour; beyond it bundles carry "
    "only the signed and last-resort keys.",
)
@click.option(
    "--sealed-burst",
    type=click.IntRange(1),
    default=_DEFAULTS.sealed_burst,
    show_default=True,
    help="Sealed messages one device may be sent at once, whoever sends them.",
)
@click.option(
    "--sealed-rate",
    type=click.FloatRange(0.001),
    default=_DEFAULTS.sealed_refill_per_s,
    show_default=True,
    help="Sealed messages per device regained per second after a burst.",
)
@click.option(
    "--max-queued-mib",
    type=click.IntRange(1),
    default=_DEFAULTS.max_total_queued_bytes // _MIB,
    show_default=True,
    help="Most MiB of queued envelopes the relay stores for all devices together (a "
    "multi-recipient message's shared part counts once); sends beyond it get RATE_LIMITED.",
)
@click.option(
    "--max-account-queued-mib",
    type=click.IntRange(1),
    default=_DEFAULTS.max_account_queued_bytes // _MIB,
    show_default=True,
    help="Most MiB of envelopes queued for all devices of one recipient account: its share "
    "of --max-queued-mib, so no one account can take the whole budget.",
)
@click.option(
    "--identified-burst-mib",
    type=click.IntRange(1),
    default=_DEFAULTS.identified_bytes_burst // _MIB,
    show_default=True,
    help="MiB of identified messages one device may send at once.",
)
@click.option(
    "--identified-rate-kib",
    type=click.IntRange(1),
    default=int(_DEFAULTS.identified_bytes_per_s) // 1024,
    show_default=True,
    help="KiB of identified messages per sending device regained per second after a burst.",
)
@click.option(
    "--refusal-burst",
    type=click.IntRange(1),
    default=_DEFAULTS.refusal_burst,
    show_default=True,
    help="Account lookups the relay spends at once on multi-recipient sends refused for a "
    "wrong access key (relay-wide for unauthenticated connections).",
)
@click.option(
    "--refusal-rate",
    type=click.FloatRange(0.001),
    default=_DEFAULTS.refusal_refill_per_s,
    show_default=True,
    help="Refused-send lookups regained per second.",
)
@click.option(
    "--unauth-lifetime",
    type=click.FloatRange(0.1),
    default=_DEFAULTS.max_unauthenticated_lifetime_s,
    show_default=True,
    help="Seconds an unauthenticated connection may stay open, whatever it sends "
    "(sealed senders reconnect).",
)
@click.option(
    "--unauth-requests",
    type=click.IntRange(1),
    default=_DEFAULTS.max_unauthenticated_requests,
    show_default=True,
    help="Most requests an unauthenticated connection may send before it is closed.",
)
@click.option(
    "--max-unauth-connections",
    type=click.IntRange(1),
    default=None,
    help="Most connections not yet authenticated (handshakes included); more get HTTP 503. "
    "[default: half of --max-connections]",
)
@click.option(
    "--transport-buffer-kib",
    type=click.IntRange(1),
    default=_DEFAULTS.max_transport_buffer_bytes // 1024,
    show_default=True,
    help="KiB (beyond one frame) that may wait in one connection's socket buffer, pongs "
    "included, before the connection is aborted.",
)
@click.option(
    "--batch-result-mib",
    type=click.IntRange(1),
    default=_DEFAULTS.max_batch_result_bytes // _MIB,
    show_default=True,
    help="MiB of results (bodies to push) after which a storage batch is cut.",
)
@click.option(
    "--provisioning-ttl",
    type=click.FloatRange(1.0),
    default=_DEFAULTS.provisioning_ttl_s,
    show_default=True,
    help="Seconds a provisioning address (a new device waiting to be linked) stays open.",
)
@click.option(
    "--max-provisioning",
    type=click.IntRange(1),
    default=_DEFAULTS.max_provisioning_addresses,
    show_default=True,
    help="Most provisioning addresses open at once; one more closes the oldest.",
)
@click.option(
    "--provision-envelope-bytes",
    type=click.IntRange(1, 65536),
    default=_DEFAULTS.max_provision_envelope_bytes,
    show_default=True,
    help="Largest provisioning envelope the relay carries to a new device.",
)
@click.option(
    "--linking-code-ttl",
    type=click.FloatRange(1.0),
    default=_DEFAULTS.linking_code_ttl_s,
    show_default=True,
    help="Seconds a linking code (for registering a new device of an account) stays valid.",
)
@click.option(
    "--linking-code-burst",
    type=click.IntRange(1),
    default=_DEFAULTS.linking_code_burst,
    show_default=True,
    help="Linking codes one account may be issued at once.",
)
@click.option(
    "--linking-code-rate",
    type=click.FloatRange(0.0001),
    default=_DEFAULTS.linking_code_refill_per_s,
    show_default=True,
    help="Linking codes per account regained per second after a burst.",
)
def relay_serve(
    db: str,
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
    registration_burst: int,
    registration_rate: float,
    one_time_budget: int,
    sealed_burst: int,
    sealed_rate: float,
    max_queued_mib: int,
    kt_epoch_interval: float,
    kt_auditor_keys: tuple[bytes, ...],
    max_account_queued_mib: int,
    identified_burst_mib: int,
    identified_rate_kib: int,
    refusal_burst: int,
    refusal_rate: float,
    unauth_lifetime: float,
    unauth_requests: int,
    max_unauth_connections: int | None,
    transport_buffer_kib: int,
    batch_result_mib: int,
    provisioning_ttl: float,
    max_provisioning: int,
    provision_envelope_bytes: int,
    linking_code_ttl: float,
    linking_code_burst: int,
    linking_code_rate: float,
    token_file: Path | None,
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
    from securemsg.relay.service import TokenAdmission

    admission = None
    if token_file is not None:
        try:
            admission = TokenAdmission.from_file(token_file)
        except (OSError, UnicodeDecodeError, SecureMsgError) as exc:
            raise click.UsageError(f"--registration-token-file: {exc}") from None

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
        admission=admission,
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
        max_total_queued_bytes=max_queued_mib * _MIB,
        registration_burst=registration_burst,
        registration_refill_per_s=registration_rate,
        one_time_budget=one_time_budget,
        sealed_burst=sealed_burst,
        sealed_refill_per_s=sealed_rate,
        kt_epoch_interval_s=kt_epoch_interval,
        kt_auditor_keys=kt_auditor_keys,
        max_account_queued_bytes=max_account_queued_mib * _MIB,
        identified_bytes_burst=identified_burst_mib * _MIB,
        identified_bytes_per_s=identified_rate_kib * 1024.0,
        refusal_burst=refusal_burst,
        refusal_refill_per_s=refusal_rate,
        max_unauthenticated_lifetime_s=unauth_lifetime,
        max_unauthenticated_requests=unauth_requests,
        max_unauthenticated_connections=max_unauth_connections,
        max_transport_buffer_bytes=transport_buffer_kib * 1024,
        max_batch_result_bytes=batch_result_mib * _MIB,
        provisioning_ttl_s=provisioning_ttl,
        max_provisioning_addresses=max_provisioning,
        max_provision_envelope_bytes=provision_envelope_bytes,
        linking_code_ttl_s=linking_code_ttl,
        linking_code_burst=linking_code_burst,
        linking_code_refill_per_s=linking_code_rate,
    )

    from securemsg.relay.pgstore import is_postgres_url

    postgres = is_postgres_url(db)
    if not postgres and Path(db).is_dir():
        raise click.UsageError(f"--db: {db} is a directory")

    async def serve() -> None:
        created = not postgres and not Path(db).exists()
        server = RelayServer(db, config=config, ssl=context)
        try:
            await server.start(host, port)
        except BaseException:
            if created:  # e.g. the port is busy: leave no new database (and keys) behind
                for suffix in ("", "-wal", "-shm", "-journal"):
                    Path(db + suffix).unlink(missing_ok=True)
            raise
        click.echo(f"relay listening on {server.url}")
        click.echo(f"trust root: {server.trust_root_public.to_bytes().hex()}")
        kt = server.service.kt
        if kt is not None:
            click.echo(f"key-transparency head key: {kt.head_public_key.hex()}")
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
    required=True,
    help="The relay's SQLite database file, or its postgresql:// URL.",
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
@click.option(
    "--scan-files",
    is_flag=True,
    help="Also search the bytes of the database, WAL and shared-memory files for the "
    "account's identifier outside its live rows, and report any residue.",
)
def relay_disclose(db: str, account: str, fmt: str, scan_files: bool) -> None:
    """Print everything the relay holds about one account.

    What a person answering a legal demand would have to hand over: account and device dates,
    public keys, queued-ciphertext metadata, an explicit list of what is not held, and a
    comparison with Signal's published answer. Deterministic for a given database.
    """
    from securemsg.cli.disclose import disclosure_json, disclosure_text
    from securemsg.relay.pgstore import is_postgres_url

    if not is_postgres_url(db) and not Path(db).is_file():
        raise click.UsageError(f"--db: no relay database file {db}")
    render = disclosure_json if fmt == "json" else disclosure_text
    click.echo(render(db, account, scan_files=scan_files))


# -- client --------------------------------------------------------------------------------


_home_option = click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    required=True,
    help="The device's directory (holds its SQLite database and keys).",
)


@cli.group(cls=_Group)
def client() -> None:
    """A client device in a directory: register, send, receive, chat; link devices."""


def _make_private_dirs(new_dirs: list[Path]) -> None:
    """Create ``new_dirs`` (deepest first, as listed), each ``0700`` whatever the umask: a
    parent left group- or world-writable would let another user move the home away."""
    for d in reversed(new_dirs):
        d.mkdir(mode=0o700)
        d.chmod(0o700)  # mkdir's mode is filtered by the umask


def _private_home(home: Path) -> None:
    """Make an existing home directory owner-only (``0700``), warning if it was not; refuse
    one that belongs to another user (they could plant files SQLite would use)."""
    st = home.stat()
    if st.st_uid != os.geteuid():
        raise click.ClickException(f"{home} belongs to another user: use a directory of your own")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        home.chmod(0o700)
        click.echo(
            f"warning: {home} was accessible to other users (mode {mode:o}); changed to 0700",
            err=True,
        )


async def _open(home: Path, *, allow_identified: bool = False) -> Any:
    from securemsg.client import Client

    if home.is_dir():
        _private_home(home)
    return await Client.open(home / _DEVICE_FILE, allow_identified=allow_identified)


def _remove_device(path: Path) -> None:
    for suffix in _DB_SIDE_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(str(path) + suffix)


_allow_identified_option = click.option(
    "--allow-identified",
    is_flag=True,
    default=False,
    help="If a message cannot be sent sealed (no access key for the recipient, or the relay "
    "refuses), send it identified instead of failing. The relay then learns who sent it.",
)


@client.command("register")
@_home_option
@click.option("--relay", "relay_url", required=True, help="The relay, e.g. ws://127.0.0.1:8765.")
@click.option(
    "--trust-root",
    default=None,
    help="The relay's trust-root key (hex, printed by `relay serve`). Without it the "
    "key is taken from the relay on first contact (trust on first use; a warning shows the "
    "key to compare out of band).",
)
@click.option(
    "--registration-token",
    default=None,
    help="An invitation token, for a relay that admits registrations only with one.",
)
def client_register(
    home: Path, relay_url: str, trust_root: str | None, registration_token: str | None
) -> None:
    """Create a new device in HOME and register it with the relay.

    HOME is created owner-only (0700) and the device database 0600. The relay's trust root is
    checked against --trust-root (one changed nibble is refused). Without --trust-root the
    relay's own trust root is pinned (trust on first use) and a warning shows it, to compare
    out of band. If registration fails, the files and directories it created are removed.

    Prints the account's ACI and its contact card (ACI:ACCESSKEY): give the card to people
    who should be able to send to you with sealed sender.
    """
    from securemsg.client import Client

    created_home = not home.exists()
    new_dirs = [d for d in (home, *home.parents) if not d.exists()]  # deepest first
    path = home / _DEVICE_FILE
    created_db = False

    async def go() -> None:
        nonlocal created_db
        if created_home:
            _make_private_dirs(new_dirs)
        else:
            _private_home(home)
        if path.exists():  # an earlier attempt created the device but did not register it
            c = await Client.open(path, relay_url=relay_url)
            if c.registered:
                await c.close()
                raise click.ClickException(f"{home} already holds a registered device")
        else:
            created_db = True
            c = await Client.create(path, relay_url, trust_root)
        try:
            await c.register(registration_token=(registration_token or "").encode())
            click.echo(f"registered {c.aci} (device {c.device_id})")
            click.echo(f"contact card: {c.contact_card}")
            if trust_root is None and c.trust_root is not None:
                click.echo(
                    "warning: no --trust-root given, so the relay's trust root was taken from"
                    " the relay itself (trust on first use) and is now pinned. Compare it with"
                    " the key `relay serve` printed, over a channel the relay does not"
                    " control; if they differ, this relay can impersonate senders to you.\n"
                    f"pinned trust root: {c.trust_root.to_bytes().hex()}",
                    err=True,
                )
        finally:
            await c.close()

    try:
        _run(go())
    except BaseException:
        if created_db:
            _remove_device(path)
        for d in new_dirs:  # only directories we created, and only if empty
            with contextlib.suppress(OSError):
                d.rmdir()
        raise


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
@click.argument("card", required=False)
def client_add_contact(home: Path, card: str | None) -> None:
    """Remember a contact card (ACI:ACCESSKEY) so messages to it are sealed.

    Leave CARD out (or give `-`) to paste it on standard input: the access key in it is
    visible to every user of this machine (ps, /proc) while a command with it runs.
    """
    if card is None or card == "-":
        card = click.prompt("contact card", prompt_suffix=": ", err=True)

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
    # Which device, when the sender has several (ours included).
    device = f" (device {m.sender_device})" if m.sender_devices > 1 else ""
    if m.transcript:  # a message we sent from another of our devices
        to = f" -> {m.destination_aci}" if m.destination_aci else ""
        console.print(
            f"you{device}{to}{where}: {m.text}  (sent from your other device)", markup=False
        )
        return
    console.print(f"{m.sender_aci}{device}{where}: {m.text}  ({how})", markup=False)


_RETRY_WORDS = {
    "sent": "a retry request was sent to the sender",
    "pending": "a retry request will be sent to the sender",
    "not-sent": "no retry request: it could not be sent sealed",
    "failed": "sending a retry request failed",
    "impossible": "no retry request possible (sender unknown or resending cannot help)",
}


def _print_failure(console: Console, f: Any) -> None:
    who = f.sender_aci if f.sender_aci else "an unknown sender"
    how = "sealed" if f.sealed else "identified"
    retry = _RETRY_WORDS.get(f.retry, f.retry)
    console.print(
        f"could not decrypt a message from {who} ({how}): {f.description}; {retry}",
        markup=False,
    )


@client.command("send")
@_home_option
@click.option(
    "--to", "to", required=True, help="The recipient's ACI, or their contact card (ACI:ACCESSKEY)."
)
@_allow_identified_option
@click.argument("text", required=False)
def client_send(home: Path, to: str, text: str | None, allow_identified: bool) -> None:
    """Send TEXT to one account, sealed (the relay does not learn the sender).

    Leave TEXT out (or give `-`) to read the message from standard input: a message on the
    command line is visible to every user of this machine (ps, /proc) while it is sent.
    Without the recipient's access key (give their contact card as --to, or add-contact it
    first), or if the relay refuses sealed delivery, the send fails and nothing is sent,
    unless --allow-identified.
    """
    if text is None or text == "-":
        text = sys.stdin.read().rstrip("\n")
        if not text:
            raise click.UsageError("no message on standard input")

    async def go() -> None:
        c = await _open(home, allow_identified=allow_identified)
        try:
            aci = c.add_contact(to) if ":" in to else to
            await c.connect()
            await c.send_text(aci, text)
            sealed = c.last_send_sealed
            click.echo(f"sent to {aci} ({'sealed' if sealed else 'identified'})")
        finally:
            await c.close()

    _run(go())


async def _kt_check(c: Any, *, now: bool = False) -> None:
    """Run the client's self-monitoring (``now``, or if due); say in words what it found: a
    warning line for a pending result and for every failure, nothing when all is well."""
    from securemsg.errors import (
        DeviceRemovedError,
        KeyTransparencyError,
        KeyTransparencyHistoryWithheld,
        KeyTransparencyMonitorError,
        RelayError,
    )

    advice = "Compare safety numbers with your contacts and stop trusting this relay."
    try:
        result = await (c.kt_monitor() if now else c.kt_monitor_if_due())
    except KeyTransparencyMonitorError as exc:
        versions = ", ".join(f"version {v} (epoch {e})" for v, e in exc.versions)
        click.echo(
            "WARNING: the relay's key-transparency directory lists an identity key for your "
            f"account that this device did not create ({versions}). People who fetch your "
            f"keys now may be encrypting to someone else. {advice}",
            err=True,
        )
    except KeyTransparencyHistoryWithheld as exc:
        if exc.reason == "queued":
            what = (
                "the relay says an identity key this device did not create is queued for your "
                "account"
            )
        elif exc.published_epoch:
            what = (
                'the relay withholds your account\'s key history (it answers "pending"), '
                f"though this device saw your key published in epoch {exc.published_epoch}"
            )
        else:
            what = (
                "the relay withholds your account's key history: your key is still not "
                "published, long after registration"
            )
        click.echo(
            f"WARNING: {what}. It may be hiding a key it published for you, so people who "
            f"fetch your keys may be encrypting to someone else. {advice}",
            err=True,
        )
    except KeyTransparencyError as exc:
        click.echo(f"WARNING: the relay could not prove your key in its directory: {exc}", err=True)
    except DeviceRemovedError:
        raise
    except RelayError as exc:
        click.echo(f"WARNING: your key-transparency check did not run: {exc}", err=True)
    else:
        if result is not None and result.pending:
            click.echo(
                "WARNING: your identity key is not in the relay's key-transparency directory "
                "yet (pending), so it cannot be checked; the relay publishes it with its next "
                "epoch.",
                err=True,
            )


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
    """Fetch and print the messages waiting on the relay (each is shown once).

    A message that could not be decrypted is shown too, with the reason in words (it stays in
    the device's failure record; if the sender is known, a retry request is sent).
    """
    console = _console()

    async def go() -> None:
        c = await _open(home)
        try:
            await c.connect()
            await _kt_check(c, now=True)
            await c.sync()
            count = 0
            while True:
                m = await c.receive(timeout=wait if wait else 0.2)
                failure = await c.receive_failure(timeout=0)
                if failure is not None:
                    _print_failure(console, failure)
                    count += 1
                if m is None:
                    if failure is None:
                        break
                    continue
                _print_message(console, m)
                count += 1
            while (failure := await c.receive_failure(timeout=0)) is not None:
                _print_failure(console, failure)
                count += 1
            if count == 0:
                click.echo("no new messages")
        finally:
            await c.close()

    _run(go())


@client.command("chat")
@_home_option
@click.option("--to", "to", required=True, help="The other side's ACI or contact card.")
@_allow_identified_option
def client_chat(home: Path, to: str, allow_identified: bool) -> None:
    """Chat with one account: each line you type is sent; incoming messages are printed.

    Lines are sent sealed; one that cannot be is refused (an error line), unless
    --allow-identified. Ends at end of input (Ctrl-D).
    """
    console = _console()

    async def go() -> None:
        c = await _open(home, allow_identified=allow_identified)
        try:
            aci = c.add_contact(to) if ":" in to else to
            await c.connect()

            async def printer() -> None:
                try:
                    async for m in c:
                        _print_message(console, m)
                except DeviceRemovedError as exc:  # unlinked: nothing more will come
                    click.echo(f"Error: {exc}; end the chat with Ctrl-D", err=True)

            async def failure_printer() -> None:
                while (f := await c.receive_failure()) is not None:
                    _print_failure(console, f)

            async def monitor() -> None:
                await _kt_check(c, now=True)
                while True:  # then the client's own interval decides when a check is due
                    await asyncio.sleep(60)
                    await _kt_check(c)

            loop = asyncio.get_running_loop()
            tasks = [
                loop.create_task(printer()),
                loop.create_task(failure_printer()),
                loop.create_task(monitor()),
            ]
            try:
                while True:
                    line = await asyncio.to_thread(sys.stdin.readline)
                    if not line:
                        break
                    if line.strip():
                        try:
                            await c.send_text(aci, line.rstrip("\n"))
                        except SealedDeliveryRefused as exc:
                            click.echo(f"not sent: {exc}", err=True)
            finally:
                for task in tasks:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
        finally:
            await c.close()

    _run(go())


# -- linked devices ------------------------------------------------------------------------


@client.command("link")
@_home_option
@click.option("--relay", "relay_url", required=True, help="The relay, e.g. ws://127.0.0.1:8765.")
@click.option(
    "--trust-root",
    default=None,
    help="The relay's trust-root key (hex). The account's primary device hands over the key it "
    "pins; with this option it must be that key too. Without it, the account's key is used "
    "(and must be the relay's).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(1, 3600),
    default=600.0,
    show_default=True,
    help="Seconds to wait for the primary device to approve the code.",
)
@click.option(
    "--qr",
    type=click.Choice(["dark", "light", "none"]),
    default="dark",
    show_default=True,
    help="Draw the code as a QR code for a terminal with a dark or a light background "
    "(a phone reads it only if drawn for the right one), or not at all.",
)
@click.option(
    "--registration-token",
    default=None,
    help="An invitation token, for a relay that admits registrations only with one.",
)
def client_link(
    home: Path,
    relay_url: str,
    trust_root: str | None,
    timeout: float,
    qr: str,
    registration_token: str | None,
) -> None:
    """Link a NEW device in HOME to an account you already have on another device.

    Prints a linking code (and a QR code) and waits. On the account's primary device, run
    `securemsg client approve --home PRIMARY` and paste that code. This device then gets the
    account's identity and registers with the relay as a new device of the account (the relay
    picks its device id). HOME is created owner-only (0700); if linking fails (a wrong or
    expired code, a refused envelope, another trust root), nothing is left behind.
    """
    from securemsg.cli.devices import qr_lines
    from securemsg.client import Client

    created_home = not home.exists()
    new_dirs = [d for d in (home, *home.parents) if not d.exists()]  # deepest first
    path = home / _DEVICE_FILE
    if path.exists():
        raise click.ClickException(f"{home} already holds a device")

    def show(code: str) -> None:
        click.echo("Linking code (valid for a few minutes; approve it on your primary device):")
        click.echo(code)
        if qr != "none":
            for line in qr_lines(code, dark_background=qr == "dark"):
                click.echo(line)
        click.echo(
            "On the primary device run `securemsg client approve --home <its home>` and paste"
            " the code above when it asks (not on the command line: other users can read that)."
        )
        click.echo(f"waiting up to {timeout:g} s for the approval...")

    async def go() -> None:
        if created_home:
            _make_private_dirs(new_dirs)
        else:
            _private_home(home)
        c = await Client.link(
            path,
            relay_url,
            on_code=show,
            trust_root=trust_root,
            timeout_s=timeout,
            registration_token=(registration_token or "").encode(),
        )
        try:
            click.echo(f"linked: this is device {c.device_id} of {c.aci}")
        finally:
            await c.close()

    try:
        _run(go())
    except BaseException:
        for d in new_dirs:  # only directories we created, and only if empty
            with contextlib.suppress(OSError):
                d.rmdir()
        raise


@client.command("approve")
@_home_option
@click.argument("code", required=False)
def client_approve(home: Path, code: str | None) -> None:
    """Approve a new device: give it this account (primary device only).

    CODE is the linking code the new device shows (`securemsg client link`). Leave it out (or
    give `-`) to paste it on standard input instead: a code on the command line can be read
    by every user of this machine (ps, /proc) while the command runs, and whoever uses it
    first links the new device to their account. A mistyped code is refused before anything
    is sent. The new device receives the account's identity key pair, ACI, access key and
    trust root, encrypted to a one-time key in the code: the relay carries only ciphertext.
    """
    if code is None or code == "-":
        code = click.prompt("linking code", prompt_suffix=": ", err=True)

    async def go() -> None:
        c = await _open(home)
        try:
            await c.connect()
            await c.approve_link(code)
            click.echo("approved: the new device is registering (see `securemsg client devices`)")
        finally:
            await c.close()

    _run(go())


@client.command("devices")
@_home_option
def client_devices(home: Path) -> None:
    """List this account's devices (id, registration id, which is the primary and this one)."""

    async def go() -> None:
        c = await _open(home)
        try:
            await c.connect()
            for d in await c.devices():
                notes = [
                    n for n, on in (("primary", d.primary), ("this device", d.this_device)) if on
                ]
                extra = f"  ({', '.join(notes)})" if notes else ""
                click.echo(f"device {d.device_id}  registration id {d.registration_id}{extra}")
        finally:
            await c.close()

    _run(go())


@client.command("unlink")
@_home_option
@click.argument("device_id", metavar="N", type=click.IntRange(2, 127))
def client_unlink(home: Path, device_id: int) -> None:
    """Remove device N from this account (primary device only).

    The relay deletes the device, its keys and its waiting messages; the device is told and
    stops working (DeviceRemovedError); people sending to this account stop encrypting to it
    at their next send. Its own files stay on that device until deleted there.
    """

    async def go() -> None:
        c = await _open(home)
        try:
            await c.connect()
            await c.unlink(device_id)
            click.echo(f"unlinked device {device_id}")
        finally:
            await c.close()

    _run(go())


@cli.group(cls=_Group)
def kt() -> None:
    """Key transparency: audit a relay's directory of identity keys."""


@kt.command("audit")
@click.option("--relay", "relay_url", default=None, help="The relay's URL (ws://host:port).")
@click.option(
    "--db",
    "db",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="Or the relay's database file.",
)
@click.option(
    "--from",
    "from_epoch",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Start at this epoch (its head is taken on trust); 0 checks everything.",
)
@click.option(
    "--cosign-key",
    "cosign_key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Cosign every verified head with this auditor key (hex seed; created if missing).",
)
@click.option("--head-key", "head_key", default=None, help="Pin the directory's head key (64 hex).")
def kt_audit(
    relay_url: str | None,
    db: Path | None,
    from_epoch: int,
    cosign_key: Path | None,
    head_key: str | None,
) -> None:
    """Verify the append-only proofs between consecutive epochs and the signed head chain.

    Prints a summary; exits 1 if anything does not verify. With --cosign-key, posts a
    cosignature of every verified head (clients can require them). The relay stores and
    serves them only if it runs with --kt-auditor-key naming the printed auditor key; any
    other relay refuses them (FORBIDDEN).
    """
    from securemsg.cli.kt_audit import audit_db, audit_relay, load_auditor_key

    if (relay_url is None) == (db is None):
        raise click.UsageError("give exactly one of --relay and --db")
    pinned = None
    if head_key is not None:
        try:
            pinned = bytes.fromhex(head_key)
        except ValueError:
            raise click.UsageError("--head-key must be 64 hex characters") from None
    key = None if cosign_key is None else load_auditor_key(cosign_key)
    if key is not None:
        click.echo(f"auditor key: {key.public_key.hex()}")
    if db is not None:
        report = audit_db(db, from_epoch=from_epoch, auditor_key=key, head_key=pinned)
    else:
        assert relay_url is not None
        report = _run(
            audit_relay(relay_url, from_epoch=from_epoch, auditor_key=key, head_key=pinned)
        )
    click.echo(report.summary())


# ``securemsg interop run|peers|peer``: the interoperability kit (securemsg.cli.interop).
cli.add_command(_interop_group)


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
