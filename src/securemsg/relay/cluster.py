"""Several relay instances on one PostgreSQL database: push across instances, one live
connection per device, and work that runs once.

Theory of operation
-------------------
:class:`PgCluster` runs on a relay instance's event loop, beside its
:class:`~securemsg.relay.pgstore.PgRelayStore` (which stays on the storage thread). It holds
two connections of its own (psycopg's ``AsyncConnection``, autocommit):

- the **listening** connection ``LISTEN``\\s on two channels. PostgreSQL delivers a
  notification only when the transaction that sent it commits, to every listening session,
  in commit order. :data:`~securemsg.relay.pgstore.DELIVER_CHANNEL` says "envelopes were
  committed for mailbox (ACI, device)" (sent by the store inside the enqueue's transaction):
  the instance holding that device's live connection reads them from the store and pushes
  them at once. :data:`~securemsg.relay.pgstore.TAKEN_CHANNEL` says "device (ACI, device)
  authenticated on instance X with generation G": an instance holding an older connection
  of the device (a smaller generation) closes it with code 4000, as for a replacement on one
  instance. Generations come from a database sequence, so every instance agrees which claim
  is the newest whatever order it hears them in. A third channel,
  :data:`~securemsg.relay.pgstore.REMOVED_CHANNEL`, says "device (ACI, device) was removed"
  (sent in the removal's transaction): the instance holding its connection pushes
  ``DeviceRemoved`` and closes it (4003). A fourth,
  :data:`~securemsg.relay.pgstore.PROVISION_CHANNEL`, carries a provisioning envelope to the
  instance holding its address (sent in the transaction that deletes the address, so at most
  once). Notifications from the instance itself are
  ignored (it already acted on them). If the listening connection drops, notifications may
  have been lost: after reconnecting, the instance re-reads the queue of every live
  connection (``on_resync``); the relay also does that every ``rescan_interval_s`` as a
  safety net, never as the delivery path.
- the **control** connection sends the "taken" notifications and holds a session-level
  advisory lock (:data:`LEADER_LOCK`): the instance holding it is the *leader* and runs the
  work that must run once (the expiry sweep, then ``VACUUM`` of the mailbox tables; epoch
  publication for key transparency would go here too). The lock lives as long as the
  connection: when the leader dies or loses the database, PostgreSQL releases it, and
  another instance's next attempt (every ``lock_retry_s``) takes it.

Connection failures are retried with a bounded delay and logged without their text (a
libpq message can hold a host name or address).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Final

from securemsg.relay.pgstore import (
    DELIVER_CHANNEL,
    PROVISION_CHANNEL,
    REMOVED_CHANNEL,
    TAKEN_CHANNEL,
)

__all__ = ["LEADER_LOCK", "PgCluster"]

_LOG = logging.getLogger("securemsg.relay")
#: ``pg_try_advisory_lock`` key of the leader (work that must run once): "SMRL" + 2.
LEADER_LOCK: Final = 0x534D524C02
_RETRY_S: Final = 1.0


def _parse_mailbox(parts: list[str]) -> tuple[bytes, int] | None:
    try:
        aci = bytes.fromhex(parts[0])
        dev = int(parts[1])
    except (ValueError, IndexError):
        return None
    if len(aci) != 16:
        return None
    return aci, dev


class PgCluster:
    """One instance's view of the cluster (see the module docstring)."""

    def __init__(
        self,
        url: str,
        instance: str,
        *,
        on_deliver: Callable[[bytes, int], None],
        on_taken: Callable[[bytes, int, int], None],
        on_resync: Callable[[], None],
        on_leader: Callable[[], None] | None = None,
        on_removed: Callable[[bytes, int], None] | None = None,
        on_provision: Callable[[bytes, bytes], None] | None = None,
        lock_retry_s: float = 5.0,
    ) -> None:
        self._url = url
        self._instance = instance
        self._on_deliver = on_deliver
        self._on_taken = on_taken
        self._on_resync = on_resync
        self._on_leader = on_leader
        self._on_removed = on_removed
        self._on_provision = on_provision
        self._lock_retry_s = lock_retry_s
        self._control: Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._listening = asyncio.Event()
        self.leader = False

    @property
    def instance(self) -> str:
        """This instance's id."""
        return self._instance

    async def start(self) -> None:
        """Connect and LISTEN, make a first attempt at the leader lock (so :attr:`leader`
        is known on return; ``on_leader`` is not called for it), and start the election.

        Raises:
            StorageError: the first connection failed.
        """
        from securemsg.relay.pgstore import _db_error, _psycopg

        psycopg = _psycopg()
        try:
            listener = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
            await listener.execute("LISTEN " + DELIVER_CHANNEL)
            await listener.execute("LISTEN " + TAKEN_CHANNEL)
            await listener.execute("LISTEN " + REMOVED_CHANNEL)
            await listener.execute("LISTEN " + PROVISION_CHANNEL)
            await self._try_lock()
        except psycopg.Error as exc:
            raise _db_error(exc) from exc
        self._tasks = [
            asyncio.create_task(self._listen(listener)),
            asyncio.create_task(self._elect()),
        ]

    async def stop(self) -> None:
        """Close both connections (releasing the leader lock)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        await self._close_control()

    async def _close_control(self) -> None:
        control, self._control = self._control, None
        self.leader = False
        if control is not None:
            with contextlib.suppress(Exception):
                await control.close()

    async def _connect_control(self) -> Any:
        from securemsg.relay.pgstore import _psycopg

        if self._control is None or self._control.closed:
            self._control = await _psycopg().AsyncConnection.connect(self._url, autocommit=True)
        return self._control

    # -- notifications --------------------------------------------------------------------

    async def _listen(self, conn: Any) -> None:
        from securemsg.relay.pgstore import _psycopg

        psycopg = _psycopg()
        first = True
        while True:
            try:
                if conn is None:
                    conn = await psycopg.AsyncConnection.connect(self._url, autocommit=True)
                    await conn.execute("LISTEN " + DELIVER_CHANNEL)
                    await conn.execute("LISTEN " + TAKEN_CHANNEL)
                    await conn.execute("LISTEN " + REMOVED_CHANNEL)
                    await conn.execute("LISTEN " + PROVISION_CHANNEL)
                if not first:
                    self._on_resync()  # notifications may have been lost meanwhile
                first = False
                async for note in conn.notifies():
                    self._dispatch(note.channel, note.payload)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await conn.close()
                raise
            except psycopg.Error as exc:
                _LOG.warning("relay cluster listener lost the database (%s)", type(exc).__name__)
            with contextlib.suppress(Exception):
                if conn is not None:
                    await conn.close()
            conn = None
            await asyncio.sleep(_RETRY_S)

    def _dispatch(self, channel: str, payload: str) -> None:
        parts = payload.split(" ")
        if channel == DELIVER_CHANNEL and len(parts) == 3:
            if parts[0] == self._instance:
                return
            box = _parse_mailbox(parts[1:])
            if box is not None:
                self._on_deliver(*box)
        elif channel == PROVISION_CHANNEL and len(parts) == 3:
            if parts[0] == self._instance or self._on_provision is None:
                return
            try:
                address = bytes.fromhex(parts[1])
                envelope = base64.b64decode(parts[2], validate=True)
            except ValueError:
                return
            self._on_provision(address, envelope)
        elif channel == REMOVED_CHANNEL and len(parts) == 3:
            if parts[0] == self._instance or self._on_removed is None:
                return
            box = _parse_mailbox(parts[1:])
            if box is not None:
                self._on_removed(*box)
        elif channel == TAKEN_CHANNEL and len(parts) == 4:
            if parts[1] == self._instance:
                return
            box = _parse_mailbox(parts[2:])
            try:
                generation = int(parts[0])
            except ValueError:
                return
            if box is not None:
                self._on_taken(box[0], box[1], generation)

    async def claim(self, aci: bytes, device_id: int) -> int | None:
        """Tell the other instances that the device is now live here; its generation (None
        if the database could not be reached: the claim is then not made)."""
        from securemsg.relay.pgstore import _psycopg

        try:
            control = await self._connect_control()
            cur = await control.execute(
                "SELECT g, pg_notify(%s, g::text || ' ' || %s) FROM"
                " (SELECT nextval('live_generation') AS g) AS n",
                (TAKEN_CHANNEL, f"{self._instance} {aci.hex()} {device_id}"),
            )
            row = await cur.fetchone()
        except _psycopg().Error as exc:
            _LOG.warning("relay cluster could not announce a device (%s)", type(exc).__name__)
            await self._close_control()
            return None
        return None if row is None else int(row[0])

    # -- the leader -----------------------------------------------------------------------

    async def _elect(self) -> None:
        from securemsg.relay.pgstore import _psycopg

        psycopg = _psycopg()
        while True:
            try:
                if not self.leader:
                    if await self._try_lock() and self._on_leader is not None:
                        self._on_leader()
                else:  # still connected, so still holding it
                    await (await self._connect_control()).execute("SELECT 1")
            except psycopg.Error as exc:
                _LOG.warning("relay cluster control connection failed (%s)", type(exc).__name__)
                await self._close_control()
            await asyncio.sleep(self._lock_retry_s)

    async def _try_lock(self) -> bool:
        control = await self._connect_control()
        cur = await control.execute("SELECT pg_try_advisory_lock(%s)", (LEADER_LOCK,))
        row = await cur.fetchone()
        if row is not None and row[0]:
            self.leader = True
            _LOG.info("relay instance holds the cluster's leader lock")
        return self.leader

    async def vacuum(self) -> None:
        """``VACUUM`` the mailbox tables (leader, after a sweep); failures are logged."""
        from securemsg.relay.pgstore import _psycopg

        try:
            control = await self._connect_control()
            await control.execute("VACUUM messages, shared_bodies")
        except _psycopg().Error as exc:
            _LOG.warning("relay cluster vacuum failed (%s)", type(exc).__name__)
