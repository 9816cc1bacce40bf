"""The linking code's terminal QR code: the drawing is exactly segno's symbol, both ways."""

from __future__ import annotations

import os

import pytest
import segno

from securemsg.cli.devices import QR_BORDER, qr_lines
from securemsg.client.devices import format_linking_code
from securemsg.crypto.curve25519 import KeyPair
from securemsg.crypto.rng import SystemRng

_INK = {
    " ": (False, False),
    "\u2580": (True, False),
    "\u2584": (False, True),
    "\u2588": (True, True),
}


def _modules(lines: list[str], width: int) -> list[list[bool]]:
    rows: list[list[bool]] = []
    for line in lines:
        padded = line.ljust(width)
        rows.append([_INK[c][0] for c in padded])
        rows.append([_INK[c][1] for c in padded])
    return rows


@pytest.mark.parametrize("dark", [True, False])
def test_drawing_is_the_symbol(dark: bool) -> None:
    code = format_linking_code(os.urandom(16), KeyPair.generate(SystemRng()).public_key)
    lines = qr_lines(code, dark_background=dark)
    assert all(set(line) <= set(_INK) for line in lines)
    symbol = [list(map(bool, r)) for r in segno.make(code, error="l").matrix_iter(border=QR_BORDER)]
    width = len(symbol[0])
    assert width <= 60 and len(lines) <= 30, "must fit an ordinary terminal"
    drawn = _modules(lines, width)
    # On a dark background the light modules are drawn (inked); on a light one the dark ones.
    expected = [[m != dark for m in row] for row in symbol]
    assert drawn[: len(symbol)] == expected
    assert all(m == dark for m in (drawn[len(symbol) :] or [[dark]])[0])
