"""A relay in its own process, for tests that measure its memory or its log.

Usage: ``python relay_flow_child.py DB CONFIG_JSON [NOFILE]``. Prints ``URL <url>`` once
listening, logs (WARNING and up) to stderr, and serves until stdin is closed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import resource
import sys

from securemsg.relay.server import RelayServer
from securemsg.relay.service import RelayConfig


async def main(db: str, config: dict[str, object]) -> None:
    server = RelayServer(db, config=RelayConfig(**config))  # type: ignore[arg-type]
    await server.start()
    print("URL", server.url, flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await server.stop()


if __name__ == "__main__":
    if len(sys.argv) > 3:
        n = int(sys.argv[3])
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(message)s")
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))
