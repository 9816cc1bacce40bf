"""The bundled peers, and how a PEER argument becomes a command line.

``securemsg`` is this package's peer (``python -m securemsg.interop.peer``). ``libsignal`` is
the Node peer in ``peers/libsignal/`` of a securemsg checkout (``@signalapp/libsignal-client``
pinned at :data:`LIBSIGNAL_VERSION`); ``SECUREMSG_LIBSIGNAL_PEER`` (or ``--libsignal-dir``)
names that directory when securemsg is installed elsewhere. Anything else is a command line,
split like a shell would (``shlex``).
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "LIBSIGNAL_VERSION",
    "BundledPeer",
    "PeerUnavailable",
    "bundled_peers",
    "libsignal_dir",
    "resolve_peer",
]

LIBSIGNAL_VERSION = "0.103.0"
_ENV = "SECUREMSG_LIBSIGNAL_PEER"


class PeerUnavailable(Exception):
    """A peer cannot run here; the message says how to get it."""


@dataclass(frozen=True)
class BundledPeer:
    name: str
    argv: tuple[str, ...] | None
    status: str  # "ok" or why not


def libsignal_dir(configured: str | Path | None = None) -> Path:
    """Where the libsignal peer lives: the argument, ``$SECUREMSG_LIBSIGNAL_PEER``, or
    ``peers/libsignal`` of the checkout this package runs from."""
    if configured:
        return Path(configured)
    env = os.environ.get(_ENV)
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "peers" / "libsignal"


def _libsignal_argv(configured: str | Path | None) -> tuple[str, ...]:
    directory = libsignal_dir(configured)
    script = directory / "peer.mjs"
    if not script.is_file():
        raise PeerUnavailable(
            f"the libsignal peer is not at {directory}: use a securemsg checkout (peers/libsignal) "
            f"or point {_ENV} / --libsignal-dir at its directory"
        )
    node = shutil.which("node")
    if node is None:
        raise PeerUnavailable("node is not installed (Node >= 20 runs the libsignal peer)")
    package = directory / "node_modules" / "@signalapp" / "libsignal-client" / "package.json"
    if not package.is_file():
        raise PeerUnavailable(
            f"@signalapp/libsignal-client is not installed: run `npm ci` in {directory} "
            "(`./dev setup` does it)"
        )
    try:
        version = json.loads(package.read_text()).get("version")
    except (OSError, ValueError):
        version = None
    if version != LIBSIGNAL_VERSION:
        raise PeerUnavailable(
            f"{directory} has @signalapp/libsignal-client {version}, the kit needs "
            f"{LIBSIGNAL_VERSION}: run `npm ci` there"
        )
    return (node, str(script))


def resolve_peer(spec: str, *, libsignal: str | Path | None = None) -> tuple[str, ...]:
    """The command line for a PEER argument.

    Raises:
        PeerUnavailable: ``libsignal`` cannot run here, or an empty command line.
    """
    if spec == "securemsg":
        return (sys.executable, "-m", "securemsg.interop.peer")
    if spec == "libsignal":
        return _libsignal_argv(libsignal)
    argv = tuple(shlex.split(spec))
    if not argv:
        raise PeerUnavailable("empty peer command line")
    return argv


def bundled_peers(*, libsignal: str | Path | None = None) -> list[BundledPeer]:
    """The bundled peers and whether each can run here."""
    out = [BundledPeer("securemsg", resolve_peer("securemsg"), "ok")]
    try:
        out.append(BundledPeer("libsignal", _libsignal_argv(libsignal), "ok"))
    except PeerUnavailable as exc:
        out.append(BundledPeer("libsignal", None, str(exc)))
    return out
