"""A throwaway PostgreSQL server for the relay's tests (used by the ``pg_server`` and
``pg_url`` fixtures in tests/conftest.py).

``initdb`` + ``pg_ctl start`` from ``pg_config --bindir`` (or Debian's
/usr/lib/postgresql/<N>/bin) into a temporary directory: data directory and unix socket
there, no TCP listener, a free port number for the socket's name, ``fsync`` on. As root the
server runs as the ``postgres`` user (``runuser``), which owns the directory. Stopped and
removed at the end of the session.

Without the binaries the tests skip, except with ``CI=true``: there they fail, saying what
to install.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

INSTALL_HINT = (
    "the PostgreSQL server binaries (initdb, pg_ctl) were not found: install them"
    " (Debian/Ubuntu: apt-get install postgresql) or put pg_config on PATH"
)


def find_bindir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``, or None."""
    candidates: list[str] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, check=True, timeout=30
            ).stdout.strip()
            candidates.append(out)
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    for c in candidates:
        if c and (Path(c) / "initdb").exists() and (Path(c) / "pg_ctl").exists():
            return Path(c)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PgCluster:
    """A running throwaway server; :meth:`url` names a database on it."""

    def __init__(self, bindir: Path, base: str | None = None) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="securemsg-pg-", dir=base))
        self.data = self.root / "data"
        self.sock = self.root / "sock"
        self.port = _free_port()
        self._as: list[str] = []
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.sock.mkdir() if not self._as else self._run(["mkdir", str(self.sock)])

    def _run(self, argv: list[str]) -> None:
        proc = subprocess.run(
            self._as + argv, capture_output=True, text=True, timeout=120, check=False
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {proc.stdout}\n{proc.stderr}")

    def start(self) -> None:
        self._run(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ]
        )
        options = self._options = (
            f"-c listen_addresses='' -c unix_socket_directories='{self.sock}'"
            f" -p {self.port} -c fsync=on -c synchronous_commit=on -c max_connections=200"
            " -c shared_buffers=32MB"
        )
        self._run(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(self.root / "server.log"),
                "-w",
                "-t",
                "60",
                "start",
            ]
        )

    def crash_and_restart(self) -> None:
        """``pg_ctl stop -m immediate`` (no checkpoint: recovery replays the WAL), then start."""
        pg_ctl = str(self.bindir / "pg_ctl")
        self._run([pg_ctl, "-D", str(self.data), "-m", "immediate", "stop"])
        self._run([pg_ctl, "-D", str(self.data), "-l", str(self.root / "server.log"), "-w",
                   "-t", "60", "-o", self._options, "start"])  # fmt: skip

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@/{dbname}?host={self.sock}&port={self.port}"

    def create_database(self) -> str:
        """A fresh empty database; its URL."""
        import psycopg

        name = "t_" + secrets.token_hex(6)
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute("CREATE DATABASE " + name)
        return self.url(name)

    def drop_database(self, url: str) -> None:
        import psycopg

        name = url.split("/")[3].split("?")[0]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)")

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run(
                    [str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]
                )
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
