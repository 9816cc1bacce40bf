"""Loads AKD's whatsapp_v1 vector file (tests/vectors/akd/, see its PROVENANCE.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

VECTOR_FILE = Path(__file__).resolve().parents[2] / "vectors" / "akd" / "whatsapp_v1.yaml"
VECTOR_SHA256 = "b85747b7e8f5eabaf0c3840ef741fabd580881fd52681b6b09d747415926bf90"
#: AKD's HardCodedAkdVRF key, the generator's VRF private key.
AKD_TEST_VRF_SEED = bytes.fromhex(
    "c9afa9d845ba75166b5c215767b1d6934e50c3db36e89b127b8a622b120f6721"
)


@dataclass(frozen=True)
class AkdVectors:
    public_key: bytes
    root_hash: bytes
    epoch: int
    label: bytes
    lookup_proof: bytes
    history_most_recent_1: bytes
    history_complete: bytes


def load_vectors() -> AkdVectors:
    text = VECTOR_FILE.read_text()
    blocks = dict(re.findall(r"^# (.*)\n---\n(.*?)\n", text, re.M))
    complete = next(
        v for k, v in blocks.items() if k.startswith("History Proof (HistoryParams::Complete")
    )
    label = blocks["Label"].strip("'")
    return AkdVectors(
        public_key=bytes.fromhex(blocks["Public Key"]),
        root_hash=bytes.fromhex(blocks["Epoch Hash"]),
        epoch=int(blocks["Epoch"]),
        label=bytes.fromhex(label),
        lookup_proof=bytes.fromhex(blocks["Lookup Proof"]),
        history_most_recent_1=bytes.fromhex(blocks["History Proof (HistoryParams::MostRecent(1))"]),
        history_complete=bytes.fromhex(complete),
    )


def generator_updates(epoch: int) -> list[tuple[bytes, bytes]]:
    """AKD's generator schedule: labels "1","2","4","8","16"; label i gets "i,epoch" when
    epoch % i == 0."""
    return [
        (str(index).encode(), f"{index},{epoch}".encode())
        for index in (1, 2, 4, 8, 16)
        if epoch % index == 0
    ]
