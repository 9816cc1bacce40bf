"""The floor with securemsg's primitive routes: how much of securemsg's ratio is routes.

:mod:`benchmarks.floor` prices the primitives by their plain public routes (HKDF and AES-CBC
through ``cryptography``'s public API). securemsg takes faster routes for the same work: RFC 5869
over :mod:`hashlib` for per-message HKDFs, and AES-CBC contexts from the Rust constructors behind
``Cipher`` with argument objects built without re-checks. :class:`FastRoutesFloorPair` is the
floor's message with exactly those routes (imported from securemsg, so it moves when they do);
everything else is the floor's. Comparing securemsg with it shows the Python overhead of
securemsg's structure alone. Only the two message methods differ from :class:`FloorParty`.
"""

from __future__ import annotations

from benchmarks.floor import _PKCS7, _VERSION, FloorPair, FloorParty, _hmac, _SignalMessage
from securemsg.crypto.primitives import _aes_cbc, _create_dec, _create_enc, hkdf_sha256

__all__ = ["FastRoutesFloorPair"]


class FastRoutesFloorParty(FloorParty):
    """A floor party whose HKDFs and AES-CBC take securemsg's routes."""

    __slots__ = ()

    def encrypt(self, plaintext: bytes) -> bytes:
        ck = self.send_ck
        seed = _hmac(ck, b"\x01")
        self.send_ck = _hmac(ck, b"\x02")
        pq = hkdf_sha256(b"\x01", self.send_pq, b"Floor SPQR Chain", 64)
        self.send_pq = pq[:32]
        keys = hkdf_sha256(seed, pq[32:], b"WhisperMessageKeys", 80)
        body = _create_enc(*_aes_cbc(keys[:32], keys[64:])).update(
            plaintext + _PKCS7[16 - (len(plaintext) & 15)]
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
        msg = _SignalMessage()
        msg.ParseFromString(wire[1:-8])
        if msg.ratchet_key != self.their_pub33:
            self._dh_step(msg.ratchet_key)
        ck = self.recv_ck
        seed = _hmac(ck, b"\x01")
        self.recv_ck = _hmac(ck, b"\x02")
        self.recv_index += 1
        pq = hkdf_sha256(b"\x01", self.recv_pq, b"Floor SPQR Chain", 64)
        self.recv_pq = pq[:32]
        keys = hkdf_sha256(seed, pq[32:], b"WhisperMessageKeys", 80)
        mac = _hmac(keys[32:64], self.id_remote + self.id_local + wire[:-8])[:8]
        if mac != wire[-8:]:
            raise ValueError("floor: bad MAC")
        padded = _create_dec(*_aes_cbc(keys[:32], keys[64:])).update(msg.ciphertext)
        return padded[: len(padded) - padded[-1]]


class FastRoutesFloorPair(FloorPair):
    """:class:`FloorPair` with :class:`FastRoutesFloorParty` on both sides."""

    party_class = FastRoutesFloorParty
