"""PQXDH key agreement (X25519 + Kyber1024), as libsignal 0.103.0 ``pqxdh.rs`` does it.

Theory of operation
-------------------
This is the first of the three layers of 1:1 messaging: it turns keys into a session secret and
knows nothing about ratchets or records. The initiator (Alice) returns the data the recipient
needs (the Kyber ciphertext) *and* the secret; the recipient (Bob) returns the secret.

Algorithm (libsignal ``rust/protocol/src/ratchet.rs``)::

    secret = 0xFF*32 || DH(IK_A, SPK_B) || DH(EK_A, IK_B) || DH(EK_A, SPK_B)
             [|| DH(EK_A, OPK_B)] || Kyber1024 shared secret
    okm(96) = HKDF-SHA256(salt = none, ikm = secret,
                          info = "WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024")
    root key = okm[0:32], chain key = okm[32:64], SPQR auth key = okm[64:96]

The recipient first refuses a non-canonical base key (libsignal: "incoming base key is invalid").
Pure: randomness only through ``rng`` (Kyber encapsulation); nothing is stored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from securemsg.crypto.curve25519 import PrivateKey, PublicKey
from securemsg.crypto.kyber1024 import KyberKeyPair, KyberPublicKey
from securemsg.crypto.primitives import hkdf_sha256
from securemsg.crypto.rng import Rng
from securemsg.errors import InvalidKeyError

__all__ = ["PQXDH_INFO", "HandshakeKeys", "derive_handshake_keys", "pqxdh_accept", "pqxdh_initiate"]

PQXDH_INFO = b"WhisperText_X25519_SHA-256_CRYSTALS-KYBER-1024"
_DISCONTINUITY = b"\xff" * 32


@dataclass(frozen=True, slots=True)
class HandshakeKeys:
    """The session secret of a PQXDH run, in the shape the ratchet needs (never printed)."""

    root_key: bytes = field(repr=False)
    chain_key: bytes = field(repr=False)
    spqr_auth_key: bytes = field(repr=False)


def derive_handshake_keys(secret_input: bytes) -> HandshakeKeys:
    """HKDF the concatenated PQXDH secrets into root key, chain key and SPQR auth key."""
    okm = hkdf_sha256(secret_input, None, PQXDH_INFO, 96)
    return HandshakeKeys(okm[:32], okm[32:64], okm[64:])


def pqxdh_initiate(
    *,
    our_identity_private: PrivateKey,
    our_base_private: PrivateKey,
    their_identity: PublicKey,
    their_signed_pre_key: PublicKey,
    their_one_time_pre_key: PublicKey | None,
    their_kyber_pre_key: KyberPublicKey,
    rng: Rng,
) -> tuple[bytes, HandshakeKeys]:
    """The initiator's side.

    Args:
        our_identity_private: IK_A (private).
        our_base_private: EK_A, the fresh base key (private).
        their_identity: IK_B.
        their_signed_pre_key: SPK_B.
        their_one_time_pre_key: OPK_B, or None if the bundle had none.
        their_kyber_pre_key: the recipient's signed Kyber1024 prekey.
        rng: randomness for the Kyber encapsulation.

    Returns:
        ``(kyber_ciphertext, keys)``: the 1569-byte ciphertext for the PreKey message and the
        derived secret.

    Raises:
        InvalidKeyError: a Diffie-Hellman result is all zeros.
    """
    parts = [
        _DISCONTINUITY,
        our_identity_private.agree(their_signed_pre_key),
        our_base_private.agree(their_identity),
        our_base_private.agree(their_signed_pre_key),
    ]
    if their_one_time_pre_key is not None:
        parts.append(our_base_private.agree(their_one_time_pre_key))
    shared_secret, ciphertext = their_kyber_pre_key.encapsulate(rng)
    parts.append(shared_secret)
    return ciphertext, derive_handshake_keys(b"".join(parts))


def pqxdh_accept(
    *,
    our_identity_private: PrivateKey,
    our_signed_pre_key_private: PrivateKey,
    our_one_time_pre_key_private: PrivateKey | None,
    our_kyber_key_pair: KyberKeyPair,
    their_identity: PublicKey,
    their_base_key: PublicKey,
    kyber_ciphertext: bytes,
) -> HandshakeKeys:
    """The recipient's side: the mirror DHs and the Kyber decapsulation.

    Raises:
        InvalidKeyError: the base key is not canonical, a Diffie-Hellman result is all zeros,
            or the Kyber ciphertext is malformed.
    """
    if not their_base_key.is_canonical():
        raise InvalidKeyError("incoming base key is invalid")
    parts = [
        _DISCONTINUITY,
        our_signed_pre_key_private.agree(their_identity),
        our_identity_private.agree(their_base_key),
        our_signed_pre_key_private.agree(their_base_key),
    ]
    if our_one_time_pre_key_private is not None:
        parts.append(our_one_time_pre_key_private.agree(their_base_key))
    parts.append(our_kyber_key_pair.decapsulate(kyber_ciphertext))
    return derive_handshake_keys(b"".join(parts))
