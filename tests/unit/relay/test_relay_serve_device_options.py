"""`securemsg relay serve`: the linked-device limits reach the relay's RelayConfig."""

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


def test_linked_device_options_reach_the_relay_config(
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
    options = {
        "--provisioning-ttl": "120",
        "--max-provisioning": "7",
        "--provision-envelope-bytes": "2048",
        "--linking-code-ttl": "300",
        "--linking-code-burst": "3",
        "--linking-code-rate": "0.5",
    }
    result = CliRunner().invoke(cli, [*args, *(x for kv in options.items() for x in kv)])
    assert isinstance(result.exception, _Captured), result.output
    (config,) = seen
    assert config.provisioning_ttl_s == 120.0
    assert config.max_provisioning_addresses == 7
    assert config.max_provision_envelope_bytes == 2048
    assert config.linking_code_ttl_s == 300.0
    assert config.linking_code_burst == 3
    assert config.linking_code_refill_per_s == 0.5


def test_defaults_are_the_documented_ones() -> None:
    cfg = RelayConfig()
    assert cfg.provisioning_ttl_s == 600.0
    assert cfg.max_provisioning_addresses == 100
    assert cfg.max_provision_envelope_bytes == 4096
    assert cfg.linking_code_ttl_s == 600.0
    assert cfg.linking_code_burst == 5
    assert cfg.linking_code_refill_per_s == pytest.approx(1 / 60)
    doc = (Path(__file__).parents[3] / "docs" / "relay-protocol.md").read_text(encoding="utf-8")
    for text in (
        "`provisioning_ttl_s` (600, `--provisioning-ttl`)",
        "`max_provisioning_addresses` (100,\n  `--max-provisioning`)",
        "`max_provision_envelope_bytes` (4096, `--provision-envelope-bytes`)",
        "`linking_code_ttl_s` (600, `--linking-code-ttl`)",
        "`--linking-code-burst`, `--linking-code-rate`",
    ):
        assert text in doc, text
