"""Child process of the crash test: a client that is killed between commit and ack.

Usage: ``python integration_crash_child.py DB URL``. Opens the client database, connects,
and withholds every acknowledgement (as if each ack were still on its way). It hands the first
message to the application (prints ``APP <text>``), waits until the second one is committed
to its inbox too (without taking it), prints ``READY`` and waits to be killed (SIGKILL).
"""

from __future__ import annotations

import asyncio
import sys

from securemsg.client import Client
from securemsg.client.connection import RelayConnection


async def main(db: str, url: str) -> None:
    client = await Client.open(db, relay_url=url)

    async def withheld(conn: RelayConnection, envelope_ids: tuple[bytes, ...]) -> None:
        for envelope_id in envelope_ids:  # one ack per committed batch
            print("COMMITTED", envelope_id.hex(), flush=True)

    client._ack = withheld  # type: ignore[method-assign]
    await client.connect()
    first = await client.receive(timeout=30)
    assert first is not None
    print("APP", first.text, flush=True)
    for _ in range(1500):  # bounded: 30 s
        if client.store.inbox_count("message") >= 2:
            break
        await asyncio.sleep(0.02)
    print("READY", flush=True)
    await asyncio.sleep(60)  # the parent kills us here; exit by ourselves otherwise


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
