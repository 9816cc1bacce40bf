"""`securemsg relay serve`: the storage-share and request-cost options reach RelayConfig."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import securemsg.relay.server as server_module
from securemsg.cli.main import cli
from securemsg.relay.service import RelayConfig


class _Captured(Exception):
    pass


def _config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *options: str) -> RelayConfig:
    seen: list[RelayConfig] = []

    class FakeServer:
        def __init__(self, db: Any, *, config: RelayConfig, ssl: Any = None) -> None:
            seen.append(config)

        async def start(self, host: str, port: int) -> None:
            raise _Captured

    monkeypatch.setattr(server_module, "RelayServer", FakeServer)
    args = ["relay", "serve", "--db", str(tmp_path / "r.db"), "--port", "0", *options]
    result = CliRunner().invoke(cli, args)
    assert isinstance(result.exception, _Captured), result.output
    (config,) = seen
    return config


def test_share_and_cost_options_reach_the_relay_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(
        tmp_path,
        monkeypatch,
        *("--max-account-queued-mib", "32"),
        *("--identified-burst-mib", "8"),
        *("--identified-rate-kib", "256"),
        *("--refusal-burst", "500"),
        *("--refusal-rate", "50"),
    )
    assert config.max_account_queued_bytes == 32 * 1024 * 1024
    assert config.identified_bytes_burst == 8 * 1024 * 1024
    assert config.identified_bytes_per_s == 256 * 1024
    assert config.refusal_burst == 500
    assert config.refusal_refill_per_s == 50.0


def test_share_and_cost_defaults_are_the_relay_config_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config(tmp_path, monkeypatch)
    d = RelayConfig()
    assert config.max_account_queued_bytes == d.max_account_queued_bytes
    assert config.identified_bytes_burst == d.identified_bytes_burst
    assert config.identified_bytes_per_s == d.identified_bytes_per_s
    assert config.refusal_burst == d.refusal_burst
    assert config.refusal_refill_per_s == d.refusal_refill_per_s
    assert config.max_total_queued_bytes == d.max_total_queued_bytes
