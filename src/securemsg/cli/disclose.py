"""The ``relay disclose`` command's work: open a relay database, render one account's report.

Theory of operation
-------------------
Opens the relay's SQLite database with :class:`~securemsg.relay.store.SqliteRelayStore`,
asks :func:`securemsg.relay.disclosure.disclose` for the account's report and renders it as
text or JSON (both deterministic for a given database), then closes the store.
"""

from __future__ import annotations

import os

from securemsg.relay.disclosure import DisclosureReport, disclose
from securemsg.relay.store import SqliteRelayStore

__all__ = ["disclosure_json", "disclosure_report", "disclosure_text"]


def disclosure_report(db: str | os.PathLike[str], account: str) -> DisclosureReport:
    """The disclosure report of ``account`` (an ACI string) from the relay database ``db``.

    Raises:
        UsageError: ``account`` is not an ACI.
        StorageError: the database cannot be opened or read.
    """
    store = SqliteRelayStore.open(db)
    try:
        return disclose(store, account)
    finally:
        store.close()


def disclosure_text(db: str | os.PathLike[str], account: str) -> str:
    """The report as text (see :func:`disclosure_report`)."""
    return disclosure_report(db, account).to_text()


def disclosure_json(db: str | os.PathLike[str], account: str) -> str:
    """The report as JSON (see :func:`disclosure_report`)."""
    return disclosure_report(db, account).to_json()
