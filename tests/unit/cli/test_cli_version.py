"""`securemsg --version` prints the package version and exits."""

from __future__ import annotations

from click.testing import CliRunner

import securemsg
from securemsg.cli.main import cli


def test_version_option_prints_the_package_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"securemsg {securemsg.__version__}\n"
