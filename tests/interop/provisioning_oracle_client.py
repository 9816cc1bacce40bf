"""Python side of the provisioning oracle (tests/interop/provisioning_oracle/oracle.mjs).

The oracle is a Node process running Signal's own ``@signalapp/mock-server`` (pinned in
``provisioning_oracle/package.json``), spoken to like the libsignal peer: one JSON object per
line on stdin/stdout, answered in order (see the op list at the top of ``oracle.mjs``). It
reuses :class:`peer_client.LibsignalPeer` for the line protocol and the stderr drain.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from pathlib import Path

from peer_client import LibsignalPeer, PeerUnavailableError

ORACLE_DIR = Path(__file__).resolve().parent / "provisioning_oracle"
ORACLE_SCRIPT = ORACLE_DIR / "oracle.mjs"
#: The mock-server version pinned in provisioning_oracle/package.json.
MOCK_SERVER_VERSION = "27.0.0"


class ProvisioningOracle(LibsignalPeer):
    """A running oracle process (:meth:`start` / :meth:`stop`, or ``with``)."""

    def __init__(self, node: str | None = None) -> None:
        super().__init__(node, ORACLE_SCRIPT)

    @staticmethod
    def check_available(node: str | None = None) -> str | None:
        """Returns why the oracle cannot start here, or None if it can."""
        node = node or shutil.which("node")
        if node is None:
            return "node is not installed (Node >= 20 is needed for the provisioning oracle)"
        if not (ORACLE_DIR / "node_modules" / "@signalapp" / "mock-server").is_dir():
            return (
                f"{ORACLE_DIR}/node_modules is missing: run `npm ci` in "
                "tests/interop/provisioning_oracle (./dev setup and CI do this)"
            )
        return None

    def start(self) -> ProvisioningOracle:
        problem = self.check_available(self._node)
        if problem is not None:
            raise PeerUnavailableError(problem)
        assert self._node is not None
        self._proc = subprocess.Popen(
            [self._node, str(self._script)],
            cwd=str(ORACLE_DIR),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        pong = self.call("ping")
        if pong.get("mock_server_version") != MOCK_SERVER_VERSION:
            raise PeerUnavailableError(f"unexpected mock-server version {pong!r}")
        return self
