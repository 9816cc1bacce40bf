"""Which bytes of a SQLite database image belong to no live row: the residue a byte scan finds.

Theory of operation
-------------------
:func:`blank_live` takes the image of a database (every page, as
``sqlite3.Connection.serialize`` returns it) and the root pages of its b-trees, walks every
b-tree from its root (interior pages to their children, cells to their overflow chains) and
the freelist's trunk pages, and returns a copy in which every byte that is file or page
structure or part of a live cell is zero. What is left non-zero is data no live row holds:
deleted cells not overwritten, stale bytes in free space, the content of free pages. With
``secure_delete`` the relay keeps that empty; the disclosure scan searches it for an account's
identifier (:meth:`securemsg.relay.store.SqliteRelayStore.scan_residue`).

The layout is SQLite's file format (https://www.sqlite.org/fileformat2.html): page header of
8 (leaf) or 12 (interior) bytes, a cell pointer array, cells holding a payload of which a
page keeps a local part and chains the rest through overflow pages. Pointer-map pages
(auto-vacuum) are not used by the relay and not interpreted. A malformed image raises
:class:`~securemsg.errors.StorageError`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from securemsg.errors import StorageError

__all__ = ["blank_live"]

_MAGIC: Final = b"SQLite format 3\x00"
_INDEX_INTERIOR, _TABLE_INTERIOR, _INDEX_LEAF, _TABLE_LEAF = 2, 5, 10, 13


def _corrupt(what: str) -> StorageError:
    return StorageError("malformed database image: " + what)


class _Image:
    __slots__ = ("data", "out", "page_size", "pages", "usable")

    def __init__(self, data: bytes) -> None:
        if len(data) < 100 or data[:16] != _MAGIC:
            raise _corrupt("not a SQLite database")
        size = int.from_bytes(data[16:18], "big")
        self.page_size = 65536 if size == 1 else size
        if self.page_size < 512 or self.page_size & (self.page_size - 1):
            raise _corrupt("page size")
        self.usable = self.page_size - data[20]
        self.pages = len(data) // self.page_size
        self.data = data
        self.out = bytearray(data)

    def blank(self, start: int, end: int) -> None:
        if not 0 <= start <= end <= len(self.data):
            raise _corrupt("a cell or header runs past the end of the file")
        self.out[start:end] = bytes(end - start)

    def offset(self, page: int) -> int:
        if not 1 <= page <= self.pages:
            raise _corrupt("page number out of range")
        return (page - 1) * self.page_size

    def u16(self, at: int) -> int:
        return int.from_bytes(self.data[at : at + 2], "big")

    def u32(self, at: int) -> int:
        return int.from_bytes(self.data[at : at + 4], "big")

    def varint(self, at: int) -> tuple[int, int]:
        value = 0
        for i in range(9):
            if at + i >= len(self.data):
                raise _corrupt("truncated varint")
            byte = self.data[at + i]
            if i == 8:
                return (value << 8) | byte, at + 9
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                return value, at + i + 1
        raise AssertionError("unreachable")  # pragma: no cover

    def local_size(self, payload: int, table_leaf: bool) -> int:
        u = self.usable
        x = u - 35 if table_leaf else (u - 12) * 64 // 255 - 23
        if payload <= x:
            return payload
        m = (u - 12) * 32 // 255 - 23
        k = m + (payload - m) % (u - 4)
        return k if k <= x else m


def blank_live(image: bytes, roots: Iterable[int]) -> bytes:
    """``image`` with every structural or live byte set to zero (see the module docstring).

    Args:
        image: the whole database image (``Connection.serialize()``).
        roots: the root page of every table and index (``sqlite_master.rootpage``); page 1
            (``sqlite_master`` itself) is always included.

    Raises:
        StorageError: the image is not a well-formed database.
    """
    img = _Image(image)
    img.blank(0, 100)
    seen: set[int] = set()
    stack = [1, *roots]
    while stack:
        page = stack.pop()
        if page in seen:
            continue
        seen.add(page)
        start = img.offset(page)
        header = start + (100 if page == 1 else 0)
        kind = img.data[header]
        if kind not in (_INDEX_INTERIOR, _TABLE_INTERIOR, _INDEX_LEAF, _TABLE_LEAF):
            raise _corrupt("a b-tree page of unknown type")
        interior = kind in (_INDEX_INTERIOR, _TABLE_INTERIOR)
        header_len = 12 if interior else 8
        cells = img.u16(header + 3)
        img.blank(header, header + header_len + 2 * cells)
        if interior:
            stack.append(img.u32(header + 8))
        free = img.u16(header + 1)
        for _ in range(img.page_size // 4):  # freeblock headers (bounded walk)
            if not free:
                break
            nxt = img.u16(start + free)
            img.blank(start + free, start + free + 4)
            free = nxt
        for i in range(cells):
            cell = start + img.u16(header + header_len + 2 * i)
            at = cell
            if interior:
                stack.append(img.u32(at))
                at += 4
            if kind == _TABLE_INTERIOR:
                _, at = img.varint(at)  # the key (rowid)
                img.blank(cell, at)
                continue
            payload, at = img.varint(at)
            if kind == _TABLE_LEAF:
                _, at = img.varint(at)  # rowid
            local = img.local_size(payload, kind == _TABLE_LEAF)
            end = at + local
            if local < payload:
                _overflow(img, img.u32(end), payload - local, seen)
                end += 4
            img.blank(cell, end)
    trunk = int.from_bytes(image[32:36], "big")
    for _ in range(img.pages):  # the freelist's trunk pages (bounded walk)
        if not trunk:
            break
        at = img.offset(trunk)
        count = img.u32(at + 4)
        if count > (img.usable - 8) // 4:
            raise _corrupt("freelist trunk")
        img.blank(at, at + 8 + 4 * count)
        trunk = img.u32(at)
    return bytes(img.out)


def _overflow(img: _Image, page: int, remaining: int, seen: set[int]) -> None:
    while remaining > 0:
        if page == 0 or page in seen:
            raise _corrupt("overflow chain")
        seen.add(page)
        at = img.offset(page)
        take = min(remaining, img.usable - 4)
        nxt = img.u32(at)
        img.blank(at, at + 4 + take)
        remaining -= take
        page = nxt
