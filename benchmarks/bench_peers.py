"""Reference points measured in every run: the floor and python-doubleratchet 1.3.0.

Run: ``python -m pytest benchmarks/bench_peers.py --benchmark-only``.

Theory of operation: the floor (:mod:`benchmarks.floor`) is the minimum Python work of one
message; python-doubleratchet (``import doubleratchet``, a benchmark-only dependency, extra
``bench``) is a pure-Python Double Ratchet with no wire format. It is built here from the
concrete pieces the package itself recommends: ``recommended.aead_aes_hmac`` (HKDF -> AES-256-CBC
+ HMAC-SHA256), ``recommended.kdf_hkdf`` for the root chain, ``recommended.kdf_separate_hmacs``
for the message chains (HMAC(ck, 0x01) / HMAC(ck, 0x02), as Signal) and
``recommended.diffie_hellman_ratchet_curve25519``. Its API is ``async`` although nothing in it
awaits real I/O; :func:`run_sync` drives a coroutine to completion with one ``send(None)`` so
that we time the library and not an event loop.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

from benchmarks.floor import FloorPair
from benchmarks.floor_fast_routes import FastRoutesFloorPair

T = TypeVar("T")

PT_100 = b"\x61" * 100
PT_64K = b"\x62" * 65536
PT_1M = b"\x63" * (1 << 20)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Runs a coroutine that never suspends (python-doubleratchet's) to its result."""
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    coro.close()
    raise RuntimeError("coroutine suspended; it needs an event loop")


# -- python-doubleratchet harness --------------------------------------------------------------


def _pydr_classes() -> tuple[type, type, type, type, type]:
    import doubleratchet
    from doubleratchet.recommended import (
        HashFunction,
        aead_aes_hmac,
        diffie_hellman_ratchet_curve25519,
        kdf_hkdf,
        kdf_separate_hmacs,
    )

    class Aead(aead_aes_hmac.AEAD):
        @staticmethod
        def _get_hash_function() -> HashFunction:
            return HashFunction.SHA_256

        @staticmethod
        def _get_info() -> bytes:
            return b"securemsg bench message keys"

    class RootKdf(kdf_hkdf.KDF):
        @staticmethod
        def _get_hash_function() -> HashFunction:
            return HashFunction.SHA_256

        @staticmethod
        def _get_info() -> bytes:
            return b"securemsg bench root chain"

    class MessageKdf(kdf_separate_hmacs.KDF):
        @staticmethod
        def _get_hash_function() -> HashFunction:
            return HashFunction.SHA_256

    class DhRatchet(diffie_hellman_ratchet_curve25519.DiffieHellmanRatchet):
        pass

    class Ratchet(doubleratchet.DoubleRatchet):
        @staticmethod
        def _build_associated_data(associated_data: bytes, header: Any) -> bytes:
            # Fixed-size fields, so (associated data, header) parses uniquely.
            return (
                associated_data
                + header.ratchet_pub
                + header.previous_sending_chain_length.to_bytes(8, "big")
                + header.sending_chain_length.to_bytes(8, "big")
            )

    return Ratchet, DhRatchet, RootKdf, MessageKdf, Aead


class PyDoubleRatchetPair:
    """Alice and Bob with an established python-doubleratchet session (both have sent once)."""

    AD = b"\x05" + b"\xaa" * 32 + b"\x05" + b"\xbb" * 32

    def __init__(self, secret: bytes = b"\x42" * 32) -> None:
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
        from cryptography.hazmat.primitives.serialization import (
            Encoding,
            NoEncryption,
            PrivateFormat,
            PublicFormat,
        )

        ratchet, dh, root_kdf, msg_kdf, aead = _pydr_classes()
        bob_key = X25519PrivateKey.generate()
        bob_priv = bob_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        bob_pub = bob_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        common = (dh, root_kdf, msg_kdf, b"\x01\x02", 1000, 1000, aead, secret)
        self.alice, first = run_sync(
            ratchet.encrypt_initial_message(*common, bob_pub, b"hi bob", self.AD)
        )
        self.bob, text = run_sync(
            ratchet.decrypt_initial_message(*common, bob_priv, first, self.AD)
        )
        assert text == b"hi bob"
        assert self.round_trip(b"hi alice", reverse=True) == b"hi alice"
        self._turn = False

    def round_trip(self, plaintext: bytes, *, reverse: bool = False) -> bytes:
        """Alice encrypts, Bob decrypts (or the other way round)."""
        sender, receiver = (self.bob, self.alice) if reverse else (self.alice, self.bob)
        message = run_sync(sender.encrypt_message(plaintext, self.AD))
        return run_sync(receiver.decrypt_message(message, self.AD))  # type: ignore[no-any-return]

    def ping_pong(self, plaintext: bytes) -> bytes:
        """One RT, alternating direction (a DH ratchet step on every message)."""
        self._turn = not self._turn
        return self.round_trip(plaintext, reverse=not self._turn)


# -- pytest-benchmark cases (names follow libsignal's / vodozemac's benches) -------------------


def test_floor_round_trip_100b(benchmark: Any) -> None:
    pair = FloorPair()
    assert benchmark(pair.round_trip, PT_100) == PT_100


def test_floor_round_trip_64kib(benchmark: Any) -> None:
    pair = FloorPair()
    assert benchmark(pair.round_trip, PT_64K) == PT_64K


def test_floor_round_trip_1mib(benchmark: Any) -> None:
    pair = FloorPair()
    assert benchmark.pedantic(pair.round_trip, (PT_1M,), rounds=30, warmup_rounds=2) == PT_1M


def test_floor_ping_pong(benchmark: Any) -> None:
    pair = FloorPair()
    assert benchmark(pair.ping_pong, PT_100) == PT_100


def test_floor_fast_routes_round_trip_100b(benchmark: Any) -> None:
    pair = FastRoutesFloorPair()
    assert benchmark(pair.round_trip, PT_100) == PT_100


def test_python_doubleratchet_round_trip_100b(benchmark: Any) -> None:
    pair = PyDoubleRatchetPair()
    assert benchmark(pair.round_trip, PT_100) == PT_100


def test_python_doubleratchet_round_trip_64kib(benchmark: Any) -> None:
    pair = PyDoubleRatchetPair()
    assert benchmark(pair.round_trip, PT_64K) == PT_64K


def test_python_doubleratchet_ping_pong(benchmark: Any) -> None:
    pair = PyDoubleRatchetPair()
    assert benchmark(pair.ping_pong, PT_100) == PT_100
