"""Benchmarks: key transparency (AKD whatsapp_v1) - verification, proof sizes, publication.

Run: ``pytest benchmarks/bench_kt.py --benchmark-only``. No assertions on time.

The default run builds a directory of 10,000 accounts (a few seconds) and publishes
1000-change epochs over it. ``SECUREMSG_BENCH_KT_ACCOUNTS=100000`` sizes the directory for the
100,000-account case (building it takes about a minute in pure Python). Proof sizes are reported
in each case's ``extra_info`` (``--benchmark-json`` keeps them) and printed with ``-s``.

Targets (from the key-transparency design): lookup-proof verification under 10 ms; a
1000-change epoch over 100,000 accounts published in under 5 s.
"""

from __future__ import annotations

import os
import random
from typing import Any

import pytest

from securemsg.crypto.ecvrf import VrfPrivateKey, VrfPublicKey
from securemsg.kt.directory import Directory
from securemsg.kt.types import HistoryParams
from securemsg.kt.verify import audit_verify, verify_history, verify_lookup
from securemsg.relay_protocol import akd

Benchmark = Any
ACCOUNTS = int(os.environ.get("SECUREMSG_BENCH_KT_ACCOUNTS", "10000"))
CHANGES = 1000
_SEED = bytes([42]) * 32


def _aci(i: int) -> bytes:
    return b"securemsg/aci/" + i.to_bytes(16, "big")


@pytest.fixture(scope="module")
def directory() -> Directory:
    """ACCOUNTS accounts registered in one epoch, then three epochs of key changes, so the
    benchmarked account has four versions."""
    rng = random.Random(1)
    built = Directory(VrfPrivateKey(_SEED))
    built.publish({_aci(i): b"\x05" + rng.randbytes(32) for i in range(ACCOUNTS)})
    for _ in range(3):
        changed = {_aci(0): b"\x05" + rng.randbytes(32)}
        changed.update(
            {_aci(rng.randrange(ACCOUNTS)): b"\x05" + rng.randbytes(32) for _ in range(99)}
        )
        built.publish(changed)
    return built


def _report(benchmark: Benchmark, **sizes: int) -> None:
    benchmark.extra_info.update(sizes)
    benchmark.extra_info["accounts"] = ACCOUNTS
    print(f"\n  accounts={ACCOUNTS} " + " ".join(f"{k}={v}" for k, v in sizes.items()))


def test_kt_lookup_verify(benchmark: Benchmark, directory: Directory) -> None:
    """Decode and verify one lookup proof (a fresh key object per round: no memoised VRF)."""
    data = akd.encode_lookup_proof(directory.lookup(_aci(0)))
    public, root, epoch = bytes(directory.vrf_public_key), directory.root_hash(), directory.epoch

    def run() -> object:
        return verify_lookup(
            VrfPublicKey(public), root, epoch, _aci(0), akd.decode_lookup_proof(data)
        )

    benchmark(run)
    _report(benchmark, lookup_proof_bytes=len(data))


def test_kt_history_verify_complete(benchmark: Benchmark, directory: Directory) -> None:
    """Decode and verify the complete key history of an account with four versions."""
    params = HistoryParams.complete()
    data = akd.encode_history_proof(directory.key_history(_aci(0), params))
    public, root, epoch = bytes(directory.vrf_public_key), directory.root_hash(), directory.epoch

    def run() -> object:
        proof = akd.decode_history_proof(data)
        return verify_history(VrfPublicKey(public), root, epoch, _aci(0), proof, params)

    results = benchmark(run)
    assert isinstance(results, list)
    _report(benchmark, history_proof_bytes=len(data), versions=len(results))


def test_kt_history_verify_most_recent_1(benchmark: Benchmark, directory: Directory) -> None:
    params = HistoryParams.most_recent(1)
    data = akd.encode_history_proof(directory.key_history(_aci(0), params))
    public, root, epoch = bytes(directory.vrf_public_key), directory.root_hash(), directory.epoch

    def run() -> object:
        proof = akd.decode_history_proof(data)
        return verify_history(VrfPublicKey(public), root, epoch, _aci(0), proof, params)

    benchmark(run)
    _report(benchmark, history_proof_bytes=len(data))


def test_kt_lookup_proof_generation(benchmark: Benchmark, directory: Directory) -> None:
    benchmark(directory.lookup, _aci(0))


def test_kt_publish_1000_changes(benchmark: Benchmark, directory: Directory) -> None:
    """One epoch of 1000 key changes (2000 leaves: fresh + stale) over ACCOUNTS accounts."""
    rng = random.Random(2)

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        batch = {_aci(rng.randrange(ACCOUNTS)): b"\x05" + rng.randbytes(32) for _ in range(CHANGES)}
        return (batch,), {}

    benchmark.pedantic(directory.publish, setup=setup, rounds=3, iterations=1)
    _report(benchmark, changes=CHANGES)


def test_kt_audit_verify_1000_change_epoch(benchmark: Benchmark, directory: Directory) -> None:
    """The auditor's check of one append-only step (after the 1000-change publications)."""
    end = directory.epoch
    data = akd.encode_append_only_proof(directory.append_only_proof(end - 1, end))
    roots = [directory.root_hash(end - 1), directory.root_hash(end)]

    def run() -> None:
        audit_verify(roots, akd.decode_append_only_proof(data))

    benchmark(run)
    _report(benchmark, append_only_proof_bytes=len(data))
