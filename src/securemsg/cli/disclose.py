"""The ``relay disclose`` command's work: open a relay database, render one account's report.

Theory of operation
-------------------
Opens the relay's SQLite database with :class:`~securemsg.relay.store.SqliteRelayStore` (or,
for a ``postgresql://`` URL, :class:`~securemsg.relay.pgstore.PgRelayStore`),
asks :func:`securemsg.relay.disclosure.disclose` for the account's report (with
``scan_files``, also searching the bytes of the database, WAL and shared-memory files for the
account's identifier outside its live rows) and renders it as text or JSON (both
deterministic for given files), then closes the store.
"""

from __future__ import annotations

import os

from securemsg.relay.disclosure import DisclosureReport, disclose
from securemsg.relay.pgstore import PgRelayStore, is_postgres_url
from securemsg.relay.store import RelayStore, SqliteRelayStore

__all__ = ["disclosure_json", "disclosure_report", "disclosure_text"]


def disclosure_report(
    db: str | os.PathLike[str], account: str, *, scan_files: bool = False
) -> DisclosureReport:
    """The disclosure report of ``account`` (an ACI string) from the relay database ``db``
    (with ``scan_files``: and the scan of its files' bytes).

    Raises:
        UsageError: ``account`` is not an ACI.
        StorageError: the database cannot be opened or read.
    """
    postgres = is_postgres_url(db)
    store: RelayStore = PgRelayStore.open(os.fspath(db)) if postgres else SqliteRelayStore.open(db)
    try:
        return disclose(store, account, scan_files=scan_files)
    finally:
        store.close()


def disclosure_text(db: str | os.PathLike[str], account: str, *, scan_files: bool = False) -> str:
    """The report as text (see :func:`disclosure_report`)."""
    return disclosure_report(db, account, scan_files=scan_files).to_text()


def disclosure_json(db: str | os.PathLike[str], account: str, *, scan_files: bool = False) -> str:
    """The report as JSON (see :func:`disclosure_report`)."""
    return disclosure_report(db, account, scan_files=scan_files).to_json()
