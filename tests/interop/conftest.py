"""Fixtures for the libsignal interop tests.

The ``libsignal_peer`` fixture starts one Node process running the real libsignal
(``tests/interop/peer/peer.mjs``) for the whole test session. It never skips: if node or the
peer's ``node_modules`` is missing the tests FAIL with the reason, because interop is the proof
of byte compatibility (CI runs ``npm ci`` in tests/interop/peer before pytest).
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator

import pytest
from peer_client import LibsignalPeer

_party_counter = itertools.count(1)


@pytest.fixture(scope="session")
def libsignal_peer() -> Iterator[LibsignalPeer]:
    problem = LibsignalPeer.check_available()
    if problem is not None:
        pytest.fail(f"libsignal interop peer unavailable: {problem}", pytrace=False)
    peer = LibsignalPeer().start()
    try:
        yield peer
    finally:
        peer.stop()


@pytest.fixture
def party_label() -> str:
    """A fresh peer-side party label (labels are global to the peer process)."""
    return f"party-{next(_party_counter)}-{uuid.uuid4().hex[:8]}"
