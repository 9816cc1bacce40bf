"""`securemsg relay serve`: every limit option reaches the relay's RelayConfig."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import securemsg.relay.server as server_module
from securemsg.cli.main import cli
from securemsg.relay.service import RelayConfig
from securemsg.relay_protocol import frames as rf


class _Captured(Exception):
    pass


def test_limit_options_reach_the_relay_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[RelayConfig] = []

    class FakeServer:
        def __init__(self, db: Any, *, config: RelayConfig, ssl: Any = None) -> None:
            seen.append(config)

        async def start(self, host: str, port: int) -> None:
            raise _Captured

    monkeypatch.setattr(server_module, "RelayServer", FakeServer)
    tokens = tmp_path / "tokens"
    tokens.write_text("invite\n", encoding="utf-8")
    args = ["relay", "serve", "--db", str(tmp_path / "r.db"), "--port", "0"]
    limits = {
        "--registration-burst": "7",
        "--registration-rate": "0.5",
        "--one-time-budget": "3",
        "--sealed-burst": "40",
        "--sealed-rate": "2",
        "--max-queued-mib": "100",
        "--max-connections": "50",
        "--window": "8",
        "--write-timeout": "5",
        "--idle-timeout": "4",
        "--max-batch": "16",
        "--unauth-lifetime": "30",
        "--unauth-requests": "50",
        "--max-unauth-connections": "20",
        "--transport-buffer-kib": "512",
        "--batch-result-mib": "4",
    }
    flat = [x for kv in limits.items() for x in kv]
    result = CliRunner().invoke(cli, [*args, *flat, "--registration-token-file", str(tokens)])
    assert isinstance(result.exception, _Captured), result.output
    (config,) = seen
    assert config.registration_burst == 7
    assert config.registration_refill_per_s == 0.5
    assert config.one_time_budget == 3
    assert config.sealed_burst == 40
    assert config.sealed_refill_per_s == 2.0
    assert config.max_total_queued_bytes == 100 * 1024 * 1024
    assert config.max_connections == 50
    assert config.window_envelopes == 8
    assert config.write_timeout_s == 5.0
    assert config.idle_timeout_s == 4.0
    assert config.max_batch == 16
    assert config.max_unauthenticated_lifetime_s == 30.0
    assert config.max_unauthenticated_requests == 50
    assert config.max_unauthenticated_connections == 20
    assert config.max_transport_buffer_bytes == 512 * 1024
    assert config.max_batch_result_bytes == 4 * 1024 * 1024
    assert config.admission is not None  # the token file survives the other options


def test_kt_auditor_keys_reach_the_relay_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[RelayConfig] = []

    class FakeServer:
        def __init__(self, db: Any, *, config: RelayConfig, ssl: Any = None) -> None:
            seen.append(config)

        async def start(self, host: str, port: int) -> None:
            raise _Captured

    monkeypatch.setattr(server_module, "RelayServer", FakeServer)
    args = ["relay", "serve", "--db", str(tmp_path / "r.db"), "--port", "0"]
    a, b = "a1" * 32, "B2" * 32
    result = CliRunner().invoke(cli, [*args, "--kt-auditor-key", a, "--kt-auditor-key", b])
    assert isinstance(result.exception, _Captured), result.output
    assert seen[0].kt_auditor_keys == (bytes.fromhex(a), bytes.fromhex(b))
    result = CliRunner().invoke(cli, args)
    assert isinstance(result.exception, _Captured), result.output
    assert seen[1].kt_auditor_keys == ()
    for bad in ("a1" * 31, "zz" * 32, "a1" * 33):
        refused = CliRunner().invoke(cli, [*args, "--kt-auditor-key", bad])
        assert refused.exit_code == 2 and "--kt-auditor-key" in refused.output
    many = [x for i in range(rf.MAX_KT_COSIGNATURES + 1) for x in ("--kt-auditor-key", f"{i:064x}")]
    refused = CliRunner().invoke(cli, [*args, *many])
    assert refused.exit_code == 2 and "--kt-auditor-key" in refused.output
    assert len(seen) == 2
