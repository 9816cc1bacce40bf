"""The hashes of AKD's ``whatsapp_v1`` configuration (BLAKE3), and the marker versions.

Every function here is a byte-level fact documented in docs/key-transparency.md; the vectors in
tests/vectors/akd/ check them. Labels of the trie are 256-bit big-endian integers plus a bit
length (``val``, ``length``): bit ``i`` of a label is ``(val >> (255 - i)) & 1``.
"""

from __future__ import annotations

from securemsg.crypto.kt_primitives import blake3_hash
from securemsg.relay_protocol.akd import EMPTY_LABEL_LEN, EMPTY_LABEL_VAL, label_bytes, label_hash

__all__ = [
    "EMPTY_LABEL_LEN",
    "EMPTY_LABEL_VAL",
    "EMPTY_NODE_DIGEST",
    "EMPTY_NODE_HASH",
    "EMPTY_ROOT_VALUE",
    "ROOT_LABEL_HASH",
    "STALE_VALUE",
    "blake3_hash",
    "commitment",
    "commitment_nonce",
    "i2osp",
    "label_bytes",
    "label_hash",
    "leaf_hash",
    "marker_versions",
    "parent_hash",
    "root_hash_from_value",
    "vrf_input",
]


def i2osp(data: bytes) -> bytes:
    """AKD's ``i2osp_array``: ``u64_be(len(data)) || data``."""
    return len(data).to_bytes(8, "big") + data


def vrf_input(akd_label: bytes, fresh: bool, version: int) -> bytes:
    """The VRF input for (label, freshness, version): BLAKE3(i2osp(label) || 0|1 || u64 version)."""
    return blake3_hash(
        i2osp(akd_label) + (b"\x01" if fresh else b"\x00") + version.to_bytes(8, "big")
    )


def commitment_nonce(
    commitment_key: bytes, node_label_val: int, version: int, value: bytes
) -> bytes:
    """The server's deterministic nonce.

    BLAKE3(commitment key || NodeLabel bytes || u64 version || i2osp(value)).

    ``node_label_val`` is the 256-bit fresh-version node label (the VRF output).
    """
    data = (
        commitment_key
        + label_bytes(node_label_val, 256)
        + version.to_bytes(8, "big")
        + i2osp(value)
    )
    return blake3_hash(data)


def commitment(value: bytes, nonce: bytes) -> bytes:
    """BLAKE3(i2osp(value) || i2osp(nonce))."""
    return blake3_hash(i2osp(value) + i2osp(nonce))


def leaf_hash(commitment_value: bytes, epoch: int) -> bytes:
    """The value of a leaf inserted at ``epoch``: BLAKE3(commitment || u64 epoch)."""
    return blake3_hash(commitment_value + epoch.to_bytes(8, "big"))


def parent_hash(
    left_value: bytes, left_label_hash: bytes, right_value: bytes, right_label_hash: bytes
) -> bytes:
    """BLAKE3(BLAKE3(left value || left label hash) || BLAKE3(right value || right label hash))."""
    return blake3_hash(
        blake3_hash(left_value + left_label_hash) + blake3_hash(right_value + right_label_hash)
    )


#: AKD's ``EMPTY_VALUE`` is the single byte 0x00.
STALE_VALUE = blake3_hash(b"\x00")
#: The value of a root with no children.
EMPTY_ROOT_VALUE = STALE_VALUE
EMPTY_NODE_HASH = blake3_hash(STALE_VALUE + label_hash(EMPTY_LABEL_VAL, EMPTY_LABEL_LEN))
#: BLAKE3(value || label hash) of the missing child (a building block of ``parent_hash``).
EMPTY_NODE_DIGEST = blake3_hash(EMPTY_NODE_HASH + label_hash(EMPTY_LABEL_VAL, EMPTY_LABEL_LEN))
#: The root label is length 0, value 0.
ROOT_LABEL_HASH = label_hash(0, 0)


def root_hash_from_value(root_value: bytes) -> bytes:
    """The published root: BLAKE3(root node value || label hash of the root label)."""
    return blake3_hash(root_value + ROOT_LABEL_HASH)


_SKIPLIST = (1, 2, 4, 16, 256, 65536, 1 << 32)


def _skiplist_index(value: int) -> int:
    """Index of the largest skiplist element <= value (value >= 1)."""
    index = 0
    for i, element in enumerate(_SKIPLIST):
        if element <= value:
            index = i
    return index


def marker_versions(
    start_version: int, end_version: int, epoch: int
) -> tuple[list[int], list[int]]:
    """Past markers (proved present) and future markers (proved absent) of a key history.

    Requires ``1 <= start_version <= end_version <= epoch``. Past markers are below
    ``start_version``: the largest skiplist element below it, the largest power of two below
    it, and ``start_version`` with each set bit cleared together with every lower bit. Future
    markers lie in ``(end_version, epoch]``: ``end_version`` with each clear bit set and every
    lower bit cleared, further powers of two up to the next skiplist element, and the
    skiplist elements up to ``epoch``.
    """
    past: list[int] = []
    first = _SKIPLIST[_skiplist_index(start_version)]
    if first != start_version:
        past.append(first)
    power = 1 << (start_version.bit_length() - 1)
    if power != start_version and (not past or past[-1] != power):
        past.append(power)
    for i in range(start_version.bit_length() - 1, -1, -1):
        bit = 1 << i
        if start_version & bit:
            candidate = start_version & ~((bit << 1) - 1)
            if candidate != 0 and (not past or past[-1] != candidate):
                past.append(candidate)

    future: list[int] = []
    candidate = end_version
    for i in range(end_version.bit_length()):
        bit = 1 << i
        if not end_version & bit:
            candidate = (candidate | bit) & ~(bit - 1)
            if candidate <= epoch:
                future.append(candidate)
    skip = list(_SKIPLIST[_skiplist_index(end_version) + 1 : _skiplist_index(epoch) + 1])
    for exponent in range(end_version.bit_length(), epoch.bit_length()):
        power = 1 << exponent
        if skip and power >= skip[0]:
            break
        future.append(power)
    future.extend(skip)
    return past, future
