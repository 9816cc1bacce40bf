"""The durable async store: :class:`SqliteProtocolStore` on its own thread.

Theory of operation
-------------------
:class:`AsyncSqliteProtocolStore` owns ONE SQLite connection (a
:class:`~securemsg.store.sqlite.SqliteProtocolStore`: WAL, ``synchronous=FULL``, the same
schema and file format) and ONE worker thread. Every call -- each coroutine of
:class:`~securemsg.aio.store.AsyncProtocolStore`, a :meth:`~AsyncSqliteProtocolStore.commit`,
a :meth:`~AsyncSqliteProtocolStore.run` -- is queued to that thread and awaited as an asyncio
future, so the event loop never waits for SQLite or an fsync. Calls run one at a time, in the
order they were made.

Files: :meth:`SqliteProtocolStore.open <securemsg.store.sqlite.SqliteProtocolStore.open>`
creates a new database ``0600`` whatever the umask (SQLite gives its ``-wal`` and ``-shm`` files
the database's mode); an existing one that group or others may access is made ``0600`` with a
logged warning.

Cancelling a task that awaits a call does not stop the call: a commit that was queued still
commits (or not) as a whole.
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

from securemsg.aio.store import AsyncStoreAdapter
from securemsg.errors import UsageError
from securemsg.store.sqlite import SqliteProtocolStore

if TYPE_CHECKING:
    from securemsg.aio.store import AsyncProtocolStore
    from securemsg.protocol.identity_and_prekeys import IdentityKeyPair

__all__ = ["AsyncSqliteProtocolStore"]

_T = TypeVar("_T")


class AsyncSqliteProtocolStore(AsyncStoreAdapter):
    """An :class:`~securemsg.aio.store.AsyncProtocolStore` on SQLite that never blocks the loop.

    Open with :meth:`open` (or ``async with await AsyncSqliteProtocolStore.open(...)``);
    close with :meth:`close`.
    """

    __slots__ = ("_executor",)

    store: SqliteProtocolStore

    def __init__(self, store: SqliteProtocolStore, executor: ThreadPoolExecutor) -> None:
        """Wrap a store usable from ``executor``'s one thread (internal: use :meth:`open`)."""
        super().__init__(store)
        self._executor: ThreadPoolExecutor | None = executor

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        identity_key_pair: IdentityKeyPair | None = None,
        registration_id: int | None = None,
    ) -> AsyncSqliteProtocolStore:
        """Create a store at ``path``, or reopen it (see :meth:`SqliteProtocolStore.open`).

        Raises:
            UsageError: see :meth:`SqliteProtocolStore.open`.
            StorageError: the file cannot be opened or made private, or is not a store.
        """
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="securemsg-store")
        loop = asyncio.get_running_loop()
        try:
            store = await loop.run_in_executor(
                executor,
                SqliteProtocolStore.open,
                os.fspath(path),
                identity_key_pair,
                registration_id,
            )
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(store, executor)

    @classmethod
    def _wrap(cls, store: SqliteProtocolStore) -> AsyncSqliteProtocolStore:
        """Serve an already open store whose connection may be used from another thread
        (the client's device database) from a new worker thread (internal)."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="securemsg-store")
        return cls(store, executor)

    def __repr__(self) -> str:
        return f"AsyncSqliteProtocolStore({self.store!r})"

    async def _call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        executor = self._executor
        if executor is None:
            raise UsageError("the store is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(executor, functools.partial(fn, *args, **kwargs))

    async def run(self, fn: Callable[[SqliteProtocolStore], _T]) -> _T:
        """Run ``fn(sync_store)`` on the store's thread and return its result.

        For work the async interface does not cover (the prekey inventory, several writes in
        one ``sync_store.transaction()``, a sync recipe). ``fn`` runs with the loop free; it
        must not touch asyncio objects.

        Raises:
            UsageError: the store is closed.
            whatever ``fn`` raises.
        """
        return await self._call(fn, self.store)

    async def close(self) -> None:
        """Close the database and stop the worker thread. Idempotent."""
        executor = self._executor
        if executor is None:
            return
        try:
            await self._call(self.store.close)
        finally:
            self._executor = None
            executor.shutdown(wait=False)

    async def __aenter__(self) -> AsyncSqliteProtocolStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


if TYPE_CHECKING:

    def _conforms(store: AsyncSqliteProtocolStore) -> AsyncProtocolStore:
        return store
