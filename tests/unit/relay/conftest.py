"""Store fixtures for the relay tests, parametrized over both stores: SQLite (a file in
tmp_path) and PostgreSQL (a fresh database on the session's throwaway server)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from securemsg.relay.store import RelayStore, SqliteRelayStore

StoreOpener = Callable[[], RelayStore]


@pytest.fixture(params=["sqlite", "postgres"])
def store_opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreOpener]:
    """Opens a new store (connection) on one database, the same one each call."""
    if request.param == "sqlite":
        path = tmp_path / "relay.db"
        yield lambda: SqliteRelayStore.open(path)
        return
    from securemsg.relay.pgstore import PgRelayStore

    url: str = request.getfixturevalue("pg_url")
    yield lambda: PgRelayStore.open(url)


@pytest.fixture
def store_db(request: pytest.FixtureRequest, store_opener: StoreOpener) -> str:
    """What ``relay serve --db`` takes for the parametrized store: a path or a URL."""
    if "pg_url" in request.fixturenames:
        return str(request.getfixturevalue("pg_url"))
    return str(request.getfixturevalue("tmp_path") / "relay.db")
