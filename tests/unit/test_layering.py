"""The dependency direction of architecture.md, checked on the source tree.

crypto/ <- wire/, records/, relay_protocol/ <- protocol/ <- store/ <- cipher.py
<- relay/, client/, cli/.
Only crypto/ may import the crypto libraries; only the three byte-format packages (wire/,
records/, relay_protocol/) may import the generated protobuf modules; the pure core (crypto/,
the byte formats, protocol/) never touches the clock, the OS, sockets or asyncio.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "securemsg"

# The packages that turn values into bytes: client-to-client messages, the clients' storage
# records, and the client-relay protocol.
BYTE_FORMATS = ("wire", "records", "relay_protocol")
CRYPTO_LIBS = {"cryptography", "nacl", "numpy", "kyber_py", "blake3"}
IMPURE = {
    "asyncio",
    "socket",
    "time",
    "os",
    "random",
    "secrets",
    "sqlite3",
    "threading",
    "datetime",
}
# Layer rank: a module may import only from its own rank or lower ones.
RANK = {
    "errors": 0,
    "limits": 0,
    "crypto": 1,
    "_proto": 1,
    "wire": 2,
    "records": 2,
    "relay_protocol": 2,
    "protocol": 3,
    "provisioning": 3,
    "store": 4,
    "cipher": 5,
    "batch": 5,
    "sealed_sender": 5,
    "relay": 6,
    "client": 6,
    "aio": 6,
    "cli": 7,
}


def _modules() -> list[Path]:
    return sorted(p for p in SRC.rglob("*.py") if "_proto" not in p.parts)


def _layer(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".py")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(SRC)))
def test_dependency_direction(path: Path) -> None:
    layer = _layer(path)
    for name in _imports(path):
        top = name.split(".")[0]
        if top in CRYPTO_LIBS:
            assert layer == "crypto", f"{name} imported outside crypto/"
        if name.startswith("securemsg._proto"):
            assert layer in BYTE_FORMATS, f"only {BYTE_FORMATS} may import generated protobuf"
        if top in IMPURE and layer in (*BYTE_FORMATS, "protocol", "provisioning"):
            pytest.fail(f"pure core module imports {name}")
        if top == "os" and layer == "crypto":
            assert path.name == "rng.py", "only crypto/rng.py may read the OS (for randomness)"
        if name.startswith("securemsg.") and layer in RANK:
            target = name.split(".")[1]
            if target in RANK:
                assert RANK[target] <= RANK[layer], f"{layer} must not import {name}"


def test_there_are_modules_to_check() -> None:
    assert len(_modules()) > 5
