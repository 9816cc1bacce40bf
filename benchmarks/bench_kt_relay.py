"""Benchmarks: the relay's key-transparency directory in its SQLite database.

Run: ``pytest benchmarks/bench_kt_relay.py --benchmark-only``. No assertions on time.

- publishing a 1000-account epoch into the relay database (``RelayKeyTransparency.publish``:
  VRF evaluations, trie reads and writes through SQLite, the signed head, one transaction);
- answering a ``KtLookup`` (proof generation from the database and encoding), the cost a
  bundle fetch adds on the relay.

The server runs publication on a thread and connection of its own (``KtPublisherThread``), so
this time is not spent on the storage thread that serves sends.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from securemsg.crypto.rng import SystemRng
from securemsg.relay.service import RelayConfig, RelayService, Session
from securemsg.relay.store import SqliteRelayStore
from securemsg.relay_protocol import frames as rf

Benchmark = Any
CHANGES = 1000


@pytest.fixture
def service(tmp_path: Path) -> Any:  # an Iterator[RelayService] fixture
    store = SqliteRelayStore.open(tmp_path / "relay.db")
    try:
        # lookups share the bundle-fetch rate; lift it so the benchmark is not refused
        yield RelayService(store, SystemRng(), RelayConfig(bundle_burst=1 << 40))
    finally:
        store.close()


def _queue(service: RelayService, count: int) -> list[bytes]:
    kt = service.kt
    assert kt is not None
    labels = [os.urandom(16) for _ in range(count)]
    for label in labels:
        kt.store.queue(label, b"\x05" + os.urandom(32))
    return labels


def test_kt_relay_publish_1000_accounts(benchmark: Benchmark, service: RelayService) -> None:
    epochs = [0]

    def setup() -> tuple[tuple[int], dict[str, Any]]:
        _queue(service, CHANGES)
        epochs[0] += 1
        return (epochs[0],), {}

    benchmark.pedantic(service.publish_kt_epoch, setup=setup, rounds=5, iterations=1)


def test_kt_relay_lookup_answer(benchmark: Benchmark, service: RelayService) -> None:
    labels = _queue(service, 5000)
    while service.publish_kt_epoch(1) is not None:  # at most 1000 per epoch
        pass
    session = Session(nonce=bytes(32), aci=b"\x01" * 16, device_id=1)
    frame = rf.ClientFrame(1, rf.KtLookup(labels[0]))

    def lookup() -> rf.Response:
        return service.handle(session, frame, 1).response

    response = benchmark(lookup)
    assert isinstance(response.body, rf.KtProofResult) and response.body.head is not None
