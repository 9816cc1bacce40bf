"""``securemsg interop``: run the interoperability kit from the command line.

Theory of operation
-------------------
* ``securemsg interop run --a PEER --b PEER`` resolves both PEER arguments
  (:func:`securemsg.interop.peers.resolve_peer`: ``securemsg``, ``libsignal`` or a command
  line), runs the scenario suite with a rich progress bar, prints the summary table
  (scenario x role: pass / FAIL / not supported, time, the first divergence in words), writes
  ``--junit`` / ``--json`` reports when asked, and exits 1 when any scenario failed.
* ``securemsg interop peers`` lists the bundled peers and whether each can run here (Node and
  the pinned libsignal package for ``libsignal``).
* ``securemsg interop peer`` serves the securemsg peer on stdin/stdout (what ``--a securemsg``
  starts).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from securemsg.interop.driver import InteropError
from securemsg.interop.peers import PeerUnavailable, bundled_peers, resolve_peer
from securemsg.interop.runner import ROLES, Report, Result, run_suite, select
from securemsg.interop.scenarios import SCENARIOS, Params

__all__ = ["interop", "summary_table"]

_STATUS = {
    "pass": "[green]pass[/]",
    "fail": "[red]FAIL[/]",
    "unsupported": "[yellow]not supported[/]",
}


def summary_table(report: Report) -> Table:
    """Scenario x role: status and time, then the first divergence in words."""
    table = Table(
        title=f"{report.peer_a['peer']} (A) vs {report.peer_b['peer']} (B), seed {report.seed}"
    )
    table.add_column("scenario")
    for role in ROLES:
        table.add_column(role)
    table.add_column("first divergence")
    rows: dict[str, dict[str, Result]] = {}
    for r in report.results:
        rows.setdefault(r.scenario, {})[r.role] = r
    for name, by_role in rows.items():
        cells = []
        first = ""
        for role in ROLES:
            cell = by_role.get(role)
            if cell is None:
                cells.append("")
                continue
            cells.append(f"{_STATUS[cell.status]} {cell.seconds:.1f}s")
            if not first and cell.status != "pass" and cell.divergence:
                first = f"{role}: {cell.divergence}"
        table.add_row(name, *cells, first)
    counts = report.counts()
    table.caption = (
        f"{counts['pass']} passed, {counts['fail']} failed, {counts['unsupported']} not supported"
        f" in {report.seconds:.1f}s"
    )
    return table


@click.group()
def interop() -> None:
    """Interoperability testing between Signal-protocol implementations."""


@interop.command("run")
@click.option(
    "--a", "peer_a", required=True, help="Peer A: securemsg, libsignal, or a command line."
)
@click.option(
    "--b", "peer_b", required=True, help="Peer B: securemsg, libsignal, or a command line."
)
@click.option(
    "--only",
    multiple=True,
    help="Run only this scenario (repeatable; comma-separated lists work). "
    f"Known: {', '.join(SCENARIOS)}.",
)
@click.option(
    "--seed", type=int, default=None, help="Seed that reproduces a run (default: random)."
)
@click.option(
    "--junit", type=click.Path(dir_okay=False, path_type=Path), help="Write JUnit XML here."
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the JSON report here.",
)
@click.option(
    "--messages",
    type=int,
    default=Params.conversation_messages,
    show_default=True,
    help="Messages in the long conversation.",
)
@click.option(
    "--large-size",
    type=int,
    default=Params.large_message_bytes,
    show_default=True,
    help="Bytes of the large message.",
)
@click.option(
    "--spqr-round-trips",
    type=int,
    default=Params.spqr_round_trips,
    show_default=True,
    help="Round trips of the SPQR scenario.",
)
@click.option(
    "--libsignal-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory of the libsignal peer (default: peers/libsignal of the checkout, "
    "or $SECUREMSG_LIBSIGNAL_PEER).",
)
@click.option(
    "--timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds a peer may take to answer one request.",
)
def run_command(
    peer_a: str,
    peer_b: str,
    only: tuple[str, ...],
    seed: int | None,
    junit: Path | None,
    json_path: Path | None,
    messages: int,
    large_size: int,
    spqr_round_trips: int,
    libsignal_dir: Path | None,
    timeout: float,
) -> None:
    """Run the scenario suite between peer A and peer B, in both roles."""
    names = [n.strip() for item in only for n in item.split(",") if n.strip()]
    try:
        selected = select(names)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if messages < 1 or large_size < 0 or spqr_round_trips < 1 or timeout <= 0:
        raise click.UsageError("sizes must be positive")
    try:
        argv_a = resolve_peer(peer_a, libsignal=libsignal_dir)
        argv_b = resolve_peer(peer_b, libsignal=libsignal_dir)
    except PeerUnavailable as exc:
        raise click.ClickException(str(exc)) from None
    params = Params(
        conversation_messages=messages,
        large_message_bytes=large_size,
        spqr_round_trips=spqr_round_trips,
    )
    console = Console(highlight=False, soft_wrap=False)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    with progress:
        task = progress.add_task("interop", total=len(selected) * len(ROLES))

        def advance(result: Result) -> None:
            progress.update(task, advance=1, description=f"{result.scenario} {result.role}")

        try:
            report = run_suite(
                (peer_a, argv_a),
                (peer_b, argv_b),
                only=selected,
                seed=seed,
                params=params,
                on_result=advance,
                timeout=timeout,
            )
        except InteropError as exc:
            raise click.ClickException(str(exc)) from None
    console.print(summary_table(report))
    if junit is not None:
        _write_report(junit, report.to_junit())
    if json_path is not None:
        _write_report(json_path, (json.dumps(report.to_json(), indent=2) + "\n").encode())
    if not report.ok:
        for r in report.results:
            if r.status == "fail":
                click.echo(f"FAIL {r.scenario} {r.role}: {r.divergence}")
        raise SystemExit(1)


@interop.command("peers")
@click.option(
    "--libsignal-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory of the libsignal peer.",
)
def peers_command(libsignal_dir: Path | None) -> None:
    """List the bundled peers and whether each can run here."""
    console = Console(highlight=False, soft_wrap=False)
    table = Table(title="bundled interop peers")
    table.add_column("peer")
    table.add_column("status")
    table.add_column("command line")
    missing = False
    for peer in bundled_peers(libsignal=libsignal_dir):
        ok = peer.status == "ok"
        missing = missing or not ok
        table.add_row(
            peer.name,
            "[green]ready[/]" if ok else f"[red]missing[/]: {peer.status}",
            " ".join(peer.argv or ()),
        )
    console.print(table)
    if missing:
        raise SystemExit(1)


@interop.command("peer")
def peer_command() -> None:
    """Serve the securemsg peer on stdin/stdout (protocol securemsg-interop/1)."""
    from securemsg.interop.peer import main

    main()


def _write_report(path: Path, data: bytes) -> None:
    """Write a report, never through a symbolic link (in a shared directory another user
    could point ``path`` at a file of ours to overwrite), at most ``0644``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise click.ClickException(
                f"{path} is a symbolic link: not writing through it"
            ) from None
        raise click.ClickException(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(data)
