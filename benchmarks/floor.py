"""The floor: the minimum Python work of one Double Ratchet message (+ the SPQR chain step).

Theory of operation
-------------------
Every implementation of libsignal's 1:1 message, in Python, must at least do this per message
and direction:

* a symmetric chain step: two HMAC-SHA256 (message seed ``0x01``, next chain key ``0x02``);
* the SPQR chain step: one HKDF-SHA256 (new SPQR chain key + message key), whose output salts
  the next derivation, as libsignal mixes the SPQR key into the message keys;
* the message keys: HKDF-SHA256, 80 bytes -> AES key, MAC key, IV;
* AES-256-CBC with PKCS#7 (``cryptography``);
* the 8-byte truncated HMAC-SHA256 over both identities and the serialized message;
* the protobuf ``SignalMessage`` build (sender) and parse (receiver).

Nothing else: no store, no record (de)serialization, no skipped keys, no checks beyond the MAC,
no copies that can be avoided. It is a real, working minimal ratchet (the RT asserts the
plaintext comes back), written with the primitives by their plain public routes: HMAC
as RFC 2104 over :mod:`hashlib`, HKDF and AES-CBC through ``cryptography``'s public API. It is
deliberately self-contained (it does not import securemsg's crypto), so optimising securemsg
never moves the floor. It is NOT secure (fixed identities, no replay protection) and exists only
to be timed.

It is not the fastest Python possible. securemsg takes three faster routes: RFC 5869 over
:mod:`hashlib` for every per-message HKDF, and AES contexts built by the Rust constructors behind
``Cipher`` from argument objects built without re-checks (both guarded by an import-time self
test). That floor, :mod:`benchmarks.floor_fast_routes`, measured 29.5 µs against this one's
33.1 µs (2026-11-30), which puts securemsg at 1.48x it instead of about 1.32x this one;
docs/benchmarks.md quotes both.

:class:`FloorPair` also has the DH ratchet step (X25519 key generation + two agreements + two
root-key HKDFs on the receiving side; the sender of the next message then has a fresh chain), so
"ping-pong" can be compared with floor + DH step.
"""

from __future__ import annotations

from hashlib import sha256 as _sha256

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from securemsg._proto import wire_pb2

__all__ = ["FloorPair", "FloorParty"]

_SHA = SHA256()
_PAD36 = bytes(x ^ 0x36 for x in range(256))
_PAD5C = bytes(x ^ 0x5C for x in range(256))
_PKCS7 = tuple(bytes((n,)) * n for n in range(17))
_VERSION = b"\x44"
_ZERO32 = bytes(32)
_RAW = (Encoding.Raw, PublicFormat.Raw)
_SignalMessage = wire_pb2.SignalMessage


def _hmac(key32: bytes, data: bytes) -> bytes:
    k = key32 + _ZERO32  # 64-byte block
    return _sha256(k.translate(_PAD5C) + _sha256(k.translate(_PAD36) + data).digest()).digest()


def _hkdf(salt: bytes, ikm: bytes, info: bytes, n: int) -> bytes:
    return HKDF(_SHA, n, salt, info).derive(ikm)


class FloorParty:
    """One side of a floor session: a sender chain, a receiver chain, SPQR chains, a DH key."""

    __slots__ = (
        "dh_priv",
        "dh_pub33",
        "id_local",
        "id_remote",
        "prev_counter",
        "recv_ck",
        "recv_index",
        "recv_pq",
        "root",
        "send_ck",
        "send_index",
        "send_pq",
        "their_pub33",
    )

    def __init__(self, root: bytes, id_local: bytes, id_remote: bytes) -> None:
        self.root = root
        self.id_local = id_local
        self.id_remote = id_remote
        self.dh_priv = X25519PrivateKey.generate()
        self.dh_pub33 = b"\x05" + self.dh_priv.public_key().public_bytes(*_RAW)
        self.their_pub33 = b""
        self.send_ck = self.recv_ck = b""
        self.send_pq = self.recv_pq = b""
        self.send_index = self.recv_index = self.prev_counter = 0

    # -- one message -------------------------------------------------------------------------

    def encrypt(self, plaintext: bytes) -> bytes:
        """Chain step + SPQR step + message keys + AES-CBC + protobuf + MAC."""
        ck = self.send_ck
        seed = _hmac(ck, b"\x01")
        self.send_ck = _hmac(ck, b"\x02")
        pq = _hkdf(self.send_pq, b"\x01", b"Floor SPQR Chain", 64)
        self.send_pq = pq[:32]
        keys = _hkdf(pq[32:], seed, b"WhisperMessageKeys", 80)
        body = (
            Cipher(algorithms.AES(keys[:32]), modes.CBC(keys[64:]))
            .encryptor()
            .update(plaintext + _PKCS7[16 - (len(plaintext) & 15)])
        )
        msg = _SignalMessage(
            ratchet_key=self.dh_pub33,
            counter=self.send_index,
            previous_counter=self.prev_counter,
            ciphertext=body,
        )
        self.send_index += 1
        data = _VERSION + msg.SerializeToString()
        return data + _hmac(keys[32:64], self.id_local + self.id_remote + data)[:8]

    def decrypt(self, wire: bytes) -> bytes:
        """Parse + (DH step if the ratchet key is new) + chain step + SPQR step + MAC + AES."""
        msg = _SignalMessage()
        msg.ParseFromString(wire[1:-8])
        if msg.ratchet_key != self.their_pub33:
            self._dh_step(msg.ratchet_key)
        ck = self.recv_ck
        seed = _hmac(ck, b"\x01")
        self.recv_ck = _hmac(ck, b"\x02")
        self.recv_index += 1
        pq = _hkdf(self.recv_pq, b"\x01", b"Floor SPQR Chain", 64)
        self.recv_pq = pq[:32]
        keys = _hkdf(pq[32:], seed, b"WhisperMessageKeys", 80)
        mac = _hmac(keys[32:64], self.id_remote + self.id_local + wire[:-8])[:8]
        if mac != wire[-8:]:
            raise ValueError("floor: bad MAC")
        padded = (
            Cipher(algorithms.AES(keys[:32]), modes.CBC(keys[64:]))
            .decryptor()
            .update(msg.ciphertext)
        )
        return padded[: len(padded) - padded[-1]]

    # -- DH ratchet step (receiving a new ratchet key) --------------------------------------

    def _dh_step(self, their33: bytes) -> None:
        their = X25519PublicKey.from_public_bytes(their33[1:])
        rk = _hkdf(self.root, self.dh_priv.exchange(their), b"WhisperRatchet", 64)
        self.recv_ck, self.recv_index = rk[32:], 0
        self.dh_priv = X25519PrivateKey.generate()
        self.dh_pub33 = b"\x05" + self.dh_priv.public_key().public_bytes(*_RAW)
        rk = _hkdf(rk[:32], self.dh_priv.exchange(their), b"WhisperRatchet", 64)
        self.root, self.send_ck = rk[:32], rk[32:]
        self.prev_counter, self.send_index = self.send_index, 0
        self.their_pub33 = their33


class FloorPair:
    """Alice and Bob with a floor session; both have sent once (steady state).

    Args:
        secret: the shared root secret (32 bytes).
    """

    party_class: type[FloorParty] = FloorParty

    def __init__(self, secret: bytes = b"\x42" * 32) -> None:
        ida, idb = b"\x05" + b"\xaa" * 32, b"\x05" + b"\xbb" * 32
        self.alice = self.party_class(secret, ida, idb)
        self.bob = self.party_class(secret, idb, ida)
        a, b = self.alice, self.bob
        # Alice starts with a sending chain towards Bob's ratchet key (as after PQXDH).
        a.their_pub33 = b.dh_pub33
        rk = _hkdf(
            secret,
            a.dh_priv.exchange(X25519PublicKey.from_public_bytes(b.dh_pub33[1:])),
            b"WhisperRatchet",
            64,
        )
        a.root, a.send_ck = rk[:32], rk[32:]
        a.send_pq = b.recv_pq = _sha256(secret + b"a2b").digest()
        a.recv_pq = b.send_pq = _sha256(secret + b"b2a").digest()
        assert b.decrypt(a.encrypt(b"hi bob")) == b"hi bob"
        assert a.decrypt(b.encrypt(b"hi alice")) == b"hi alice"
        self._turn = False

    def round_trip(self, plaintext: bytes) -> bytes:
        """Alice encrypts, Bob decrypts (same chain every time: no DH step)."""
        return self.bob.decrypt(self.alice.encrypt(plaintext))

    def ping_pong(self, plaintext: bytes) -> bytes:
        """One RT, alternating direction: every message carries a new ratchet key (DH step)."""
        sender, receiver = (self.bob, self.alice) if self._turn else (self.alice, self.bob)
        self._turn = not self._turn
        return receiver.decrypt(sender.encrypt(plaintext))
