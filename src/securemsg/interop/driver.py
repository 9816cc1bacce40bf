"""Driving one interop peer process (protocol ``securemsg-interop/1``).

Theory of operation: :class:`PeerProcess` starts a peer's command line with a private, empty
working directory (also passed as ``SECUREMSG_INTEROP_STATE_DIR``), sends ``hello`` and then
one JSON request per line. A reader thread reads stdout in binary, at most
:data:`MAX_LINE` bytes per line, and hands each line to :meth:`PeerProcess.call` through a
queue, so every call waits at most its timeout. Another thread drains stderr into a bounded
tail that failure reports show. Anything that breaks the protocol (no answer in time, a line
too long, not JSON, a wrong ``id``, the process gone) raises :class:`PeerCrashed` and kills
the process; an ``ok: false`` answer raises :class:`PeerRefusal` with the answer's error kind.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "ERROR_KINDS",
    "MAX_LINE",
    "PROTOCOL",
    "InteropError",
    "PeerCrashed",
    "PeerProcess",
    "PeerRefusal",
    "b64",
    "unb64",
]

PROTOCOL = "securemsg-interop/1"
#: The longest answer line the kit reads (bytes, newline included).
MAX_LINE = 64 * 1024 * 1024
ERROR_KINDS = frozenset({"refused", "untrusted_identity", "unsupported", "internal"})
_STDERR_LINES = 200


def b64(data: bytes) -> str:
    """Standard base64 with padding, as the protocol carries bytes."""
    return base64.b64encode(data).decode("ascii")


def unb64(value: object) -> bytes:
    """Decode a base64 field of an answer.

    Raises:
        PeerCrashed: not a valid base64 string (the peer broke the protocol).
    """
    if not isinstance(value, str):
        raise PeerCrashed(f"expected a base64 string, got {type(value).__name__}")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as exc:
        raise PeerCrashed(f"invalid base64 in an answer: {exc}") from None


class InteropError(Exception):
    """Base of the kit's errors about a peer."""


class PeerCrashed(InteropError):
    """The peer broke the protocol: it died, timed out, or wrote a bad answer."""


class PeerRefusal(InteropError):
    """The peer answered ``ok: false``.

    Attributes:
        kind: one of :data:`ERROR_KINDS`.
        message: the peer's words.
        op: the refused op.
    """

    def __init__(self, op: str, kind: str, message: str) -> None:
        super().__init__(f"{op}: {kind}: {message}")
        self.op = op
        self.kind = kind
        self.message = message


class PeerProcess:
    """One running peer. Use :meth:`start` / :meth:`close` or ``with``.

    Args:
        argv: the command line.
        label: a short name for reports (``securemsg``, ``libsignal``, or the command).
        timeout: seconds to wait for one answer (``call`` may ask for more).
        env: extra environment variables.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        label: str,
        timeout: float = 60.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if not argv:
            raise ValueError("empty peer command line")
        self.argv = list(argv)
        self.label = label
        self.timeout = timeout
        self._env = dict(env or {})
        self._proc: subprocess.Popen[bytes] | None = None
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=_STDERR_LINES)
        self._next_id = 0
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self.implementation: dict[str, str] = {}
        self.capabilities: frozenset[str] = frozenset()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> PeerProcess:
        """Start the process and check its ``hello``.

        Raises:
            PeerCrashed: it cannot start, or its hello is wrong.
        """
        self._dir = tempfile.TemporaryDirectory(prefix="securemsg-interop-")
        env = dict(os.environ)
        env.update(self._env)
        env["SECUREMSG_INTEROP_STATE_DIR"] = self._dir.name
        try:
            self._proc = subprocess.Popen(
                self.argv,
                cwd=self._dir.name,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            self._cleanup_dir()
            raise PeerCrashed(f"cannot start {self.label}: {exc}") from None
        threading.Thread(target=self._read_stdout, args=(self._proc,), daemon=True).start()
        threading.Thread(target=self._read_stderr, args=(self._proc,), daemon=True).start()
        hello = self.call("hello")
        if hello.get("protocol") != PROTOCOL:
            self.close()
            raise PeerCrashed(
                f"{self.label} speaks {hello.get('protocol')!r}, the kit speaks {PROTOCOL!r}"
            )
        impl = hello.get("implementation")
        if isinstance(impl, dict):
            self.implementation = {str(k): str(v) for k, v in impl.items()}
        caps = hello.get("capabilities")
        if not isinstance(caps, list) or not all(isinstance(c, str) for c in caps):
            self.close()
            raise PeerCrashed(f"{self.label}: hello.capabilities must be a list of names")
        self.capabilities = frozenset(caps)
        return self

    def close(self) -> None:
        """Close stdin, give the peer a moment to exit, then kill it."""
        proc, self._proc = self._proc, None
        if proc is not None:
            try:
                if proc.stdin is not None:
                    proc.stdin.close()
            except OSError:
                pass
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._cleanup_dir()

    def _cleanup_dir(self) -> None:
        d, self._dir = self._dir, None
        if d is not None:
            shutil.rmtree(d.name, ignore_errors=True)
            d.cleanup()

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()

    def __enter__(self) -> PeerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def stderr_tail(self) -> str:
        """The last lines the peer wrote to stderr."""
        return "\n".join(self._stderr)

    def _read_stdout(self, proc: subprocess.Popen[bytes]) -> None:
        out = proc.stdout
        assert out is not None
        try:
            while True:
                line = out.readline(MAX_LINE + 1)
                if not line:
                    break
                self._lines.put(line)
        except (OSError, ValueError):
            pass
        self._lines.put(None)

    def _read_stderr(self, proc: subprocess.Popen[bytes]) -> None:
        err = proc.stderr
        assert err is not None
        try:
            for raw in iter(lambda: err.readline(64 * 1024), b""):
                self._stderr.append(raw.decode("utf-8", "replace").rstrip("\n"))
        except (OSError, ValueError):
            pass

    # -- calls -------------------------------------------------------------------------------

    def call(self, op: str, *, timeout: float | None = None, **args: Any) -> dict[str, Any]:
        """Send one request and return its answer's fields.

        Raises:
            PeerRefusal: the peer answered ``ok: false``.
            PeerCrashed: the peer broke the protocol (it is killed).
        """
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise PeerCrashed(f"{self.label} is not running")
        self._next_id += 1
        request_id = self._next_id
        line = json.dumps({"id": request_id, "op": op, **args}, separators=(",", ":")) + "\n"
        try:
            proc.stdin.write(line.encode("utf-8"))
            proc.stdin.flush()
        except OSError as exc:
            self._kill()
            raise PeerCrashed(f"{self.label} died ({exc}); stderr:\n{self.stderr_tail}") from None
        try:
            raw = self._lines.get(timeout=self.timeout if timeout is None else timeout)
        except queue.Empty:
            self._kill()
            raise PeerCrashed(f"{self.label} did not answer {op} in time") from None
        if raw is None:
            self._lines.put(None)
            self._kill()
            raise PeerCrashed(f"{self.label} exited during {op}; stderr:\n{self.stderr_tail}")
        if not raw.endswith(b"\n"):
            self._kill()
            raise PeerCrashed(f"{self.label}: answer to {op} longer than {MAX_LINE} bytes")
        try:
            answer = json.loads(raw)
        except (ValueError, RecursionError):  # nesting too deep is not an answer either
            self._kill()
            raise PeerCrashed(f"{self.label}: answer to {op} is not JSON: {raw[:200]!r}") from None
        if not isinstance(answer, dict) or answer.get("id") != request_id:
            self._kill()
            raise PeerCrashed(f"{self.label}: answer to {op} has the wrong id")
        if answer.get("ok") is True:
            return answer
        error = answer.get("error")
        if answer.get("ok") is not False or not isinstance(error, dict):
            self._kill()
            raise PeerCrashed(f"{self.label}: answer to {op} has no ok/error")
        kind = error.get("kind")
        if kind not in ERROR_KINDS:
            raise PeerCrashed(f"{self.label}: unknown error kind {kind!r} for {op}")
        raise PeerRefusal(op, str(kind), str(error.get("message", "")))
