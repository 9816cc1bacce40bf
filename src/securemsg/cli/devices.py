"""Terminal output for linked devices: the linking code as a QR code, and the device list.

The QR code (``segno``, pure Python) is drawn with Unicode half blocks, two module rows per
text line, so it fits a terminal: about 45 columns by 23 lines for a linking code. A phone
camera reads light-on-dark as well as dark-on-light only if the quiet zone around the symbol
is light, so the drawing depends on the terminal's background: on a dark background (the
default) the *light* modules are drawn in the foreground colour, on a light one the dark
modules are. No escape sequences are printed (they would end up in logs and pipes).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

__all__ = ["QR_BORDER", "qr_lines"]

#: Quiet-zone width around the symbol, in modules.
QR_BORDER: Final = 2

# (upper module inked, lower module inked) -> character
_HALF_BLOCKS: Final = {
    (False, False): " ",
    (True, False): "\u2580",  # upper half block
    (False, True): "\u2584",  # lower half block
    (True, True): "\u2588",  # full block
}


def qr_lines(text: str, *, dark_background: bool = True) -> list[str]:
    """``text`` as a QR code (error correction level L, the smallest version that fits),
    one string per terminal line.

    Args:
        text: what the code carries.
        dark_background: True if the terminal draws light text on a dark background (then
            the light modules, including the quiet zone, are the ones drawn).
    """
    import segno

    qr = segno.make(text, error="l", micro=False, boost_error=False)
    rows: list[Sequence[bool]] = [
        [bool(m) != dark_background for m in row] for row in qr.matrix_iter(border=QR_BORDER)
    ]
    if len(rows) % 2:
        rows.append([dark_background] * len(rows[0]))  # one more quiet row, as light
    return [
        "".join(_HALF_BLOCKS[(a, b)] for a, b in zip(top, bottom, strict=True)).rstrip()
        for top, bottom in zip(rows[::2], rows[1::2], strict=True)
    ]
