"""Sealed sender: certificates, the inner content (USMC), v1 envelopes, v2 multi-recipient.

Theory of operation
-------------------
Sealed sender hides the sender from the relay. The relay (server) issues a
:class:`SenderCertificate` binding (uuid, e164, device, identity key, expiry) and signed by a
:class:`ServerCertificate`, itself signed by a trust root the clients know. The sender wraps an
already-encrypted 1:1 or group message in an :class:`UnidentifiedSenderMessageContent` (USMC)
carrying that certificate, then encrypts the USMC to the recipient's identity key
(libsignal ``rust/protocol/src/sealed_sender.rs``):

* **v1** (``0x11``): ephemeral ``E``; ``(chain, cipher, mac) =
  HKDF(salt = "UnidentifiedDelivery" || IK_R || E_pub, ikm = DH(E, IK_R))``;
  the sender's identity key is AES-CTR+HMAC(10) encrypted under those; then
  ``(_, cipher2, mac2) = HKDF(salt = chain || encryptedStatic, ikm = DH(IK_S, IK_R))`` encrypts
  the USMC. The recipient checks the decrypted static key equals the certificate's key.
* **v2** (sent ``0x23`` / received ``0x22``): one AES-256-GCM-SIV encryption of the USMC under
  ``K = HKDF(M, "Sealed Sender v2: K")``; per recipient identity only 48 bytes
  (``C = M xor HKDF(DH(E, R) || E || R)``, ``AT = HKDF(DH(S, R) || E || C || S || R)[:16]``),
  where ``E`` is derived from ``M`` so the recipient can check it. The relay splits the sent
  form into one received message per recipient
  (:meth:`SealedSenderV2SentMessage.message_for_recipient`).

Unsealing yields the USMC only; certificate validation (trust roots, expiry, revocation) is a
separate, explicit step (:meth:`SenderCertificate.validate`) done by the recipes in
:mod:`securemsg.sealed_sender`. Errors: malformed bytes -> :class:`DecodeError`; failed
authentication of the envelope -> :class:`InvalidMessageError`; an envelope whose
sender key disagrees with its certificate, or a refused certificate ->
:class:`SealedSenderError` with ``reason``. Pure: no store, clock or OS access.

Sealed sender lives in three modules, one per layer:

* :mod:`securemsg.sealed_sender` -- the recipes over a store (what an application calls);
* :mod:`securemsg.protocol.sealed_sender` -- the cryptography (certificates, sealing and
  unsealing, pure: no store);
* :mod:`securemsg.wire.sealed_sender` -- the bytes (protobuf and hand-framed v2 formats).
This module is the second: the cryptography, between the recipes and the bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum

from securemsg.crypto.curve25519 import KeyPair, PrivateKey, PublicKey
from securemsg.crypto.primitives import (
    aes_256_ctr,
    aes_256_gcm_siv_decrypt,
    aes_256_gcm_siv_encrypt,
    constant_time_eq,
    hkdf_sha256,
    hmac_sha256,
)
from securemsg.crypto.rng import Rng
from securemsg.errors import (
    DecodeError,
    InternalError,
    InvalidKeyError,
    InvalidMessageError,
    InvalidSignatureError,
    SealedSenderError,
    UsageError,
)
from securemsg.limits import MAX_DEVICE_ID, REGISTRATION_ID_MASK
from securemsg.protocol.address import ServiceId
from securemsg.protocol.identity_and_prekeys import IdentityKey, IdentityKeyPair
from securemsg.wire.messages import CiphertextMessageType
from securemsg.wire.sealed_sender import (
    SEALED_SENDER_V2_SERVICE_ID_VERSION,
    SEALED_SENDER_V2_UUID_VERSION,
    SentV2Recipient,
    decode_envelope_version,
    decode_received_v2,
    decode_sender_certificate,
    decode_sent_v2,
    decode_server_certificate,
    decode_usmc,
    decode_v1_envelope,
    encode_sender_certificate,
    encode_server_certificate,
    encode_usmc,
    encode_v1_envelope,
    encode_varint,
    wrap_certificate,
)

__all__ = [
    "KNOWN_SERVER_CERTIFICATE_IDS",
    "REVOKED_SERVER_CERTIFICATE_KEY_IDS",
    "ContentHint",
    "MultiRecipient",
    "SealedSenderV2SentMessage",
    "SenderCertificate",
    "ServerCertificate",
    "UnidentifiedSenderMessageContent",
    "multi_recipient_encrypt",
    "seal_v1",
    "unseal",
]

#: Server certificate key ids that are never accepted (libsignal's test id).
REVOKED_SERVER_CERTIFICATE_KEY_IDS = frozenset({0xDEADC357})

# Server certificates a SenderCertificate may reference by id instead of embedding (public
# data published in libsignal: staging id 2, production id 3, test id 0x7357C357).
_KNOWN_SERVER_CERTIFICATES_HEX = {
    2: (
        "0a25080212210539450d63ebd0752c0fd4038b9d07a916f5e174b756d409b5ca79f4c97400631e12"
        "4064c5a38b1e927497d3d4786b101a623ab34a7da3954fae126b04dba9d7a3604ed88cdc8550950f"
        "0d4a9134ceb7e19b94139151d2c3d6e1c81e9d1128aafca806"
    ),
    3: (
        "0a250803122105bc9d1d290be964810dfa7e94856480a3f7060d004c9762c24c575a1522353a5a12"
        "40c11ec3c401eb0107ab38f8600e8720a63169e0e2eb8a3fae24f63099f85ea319c3c1c46d345470"
        "6ae2a679d1fee690a488adda98a2290b66c906bb60295ed781"
    ),
    0x7357C357: (
        "0a2908d786df9a07122105847c0d2c375234f365e660955187a3735a0f7613d1609d3a6a4d8c53ae"
        "aa5a221240e0b9ebacdfc3aa2827f7924b697784d1c25e44ca05dd433e1a38dc6382eb2730d419ca"
        "9a250b1be9d5a9463e61efd6781777a91b83c97b844d014206e2829785"
    ),
}
KNOWN_SERVER_CERTIFICATE_IDS = frozenset(_KNOWN_SERVER_CERTIFICATES_HEX)

_V1_SALT_PREFIX = b"UnidentifiedDelivery"
_V1_MAC_LENGTH = 10
_ZERO_COUNTER = bytes(16)
_ZERO_NONCE = bytes(12)
_LABEL_R = b"Sealed Sender v2: r (2023-08)"
_LABEL_K = b"Sealed Sender v2: K"
_LABEL_DH = b"Sealed Sender v2: DH"
_LABEL_DH_S = b"Sealed Sender v2: DH-sender"
_MESSAGE_KEY_LENGTH = 32
_AUTH_TAG_LENGTH = 16
_HAS_MORE = 0x8000

# proto Type <-> CiphertextMessageType (PreKey is 1 in the proto, 3 in the enum).
_TO_PROTO_TYPE = {
    CiphertextMessageType.PREKEY: 1,
    CiphertextMessageType.WHISPER: 2,
    CiphertextMessageType.SENDERKEY: 7,
    CiphertextMessageType.PLAINTEXT: 8,
}
_FROM_PROTO_TYPE = {v: k for k, v in _TO_PROTO_TYPE.items()}


class ContentHint(IntEnum):
    """How a recipient should treat an undecryptable message (``contentHint``)."""

    DEFAULT = 0
    RESENDABLE = 1
    IMPLICIT = 2


def _sign(key: PrivateKey, data: bytes, rng: Rng) -> bytes:
    return key.sign(data, rng)


def _verifies(key: PublicKey, data: bytes, signature: bytes) -> bool:
    try:
        key.verify(data, signature)
    except InvalidSignatureError:
        return False
    return True


def _public_key(data: bytes, what: str) -> PublicKey:
    try:
        return PublicKey.from_bytes(data)
    except InvalidKeyError:
        raise DecodeError(what + ": invalid public key") from None


# --- certificates -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServerCertificate:
    """A server key, signed by a trust root.

    Attributes:
        key_id: the server key's id.
        key: the server's public key (it signs sender certificates).
        certificate: the signed inner bytes.
        signature: the trust root's XEdDSA signature over ``certificate``.
        serialized: the exact wire bytes.
    """

    key_id: int
    key: PublicKey = field(repr=False)
    certificate: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    serialized: bytes = field(repr=False)

    @classmethod
    def new(
        cls, key_id: int, key: PublicKey, trust_root: PrivateKey, rng: Rng
    ) -> ServerCertificate:
        """Issue a server certificate (what the service operator does).

        Raises:
            UsageError: ``key_id`` not a u32.
        """
        if type(key_id) is not int or not 0 <= key_id <= 0xFFFFFFFF:
            raise UsageError("server certificate key id must be a u32")
        certificate = encode_server_certificate(key_id, key.to_bytes())
        signature = _sign(trust_root, certificate, rng)
        return cls(key_id, key, certificate, signature, wrap_certificate(certificate, signature))

    @classmethod
    def from_bytes(cls, data: bytes) -> ServerCertificate:
        """Parse.

        Raises:
            DecodeError: malformed, a field missing, or a bad key.
        """
        f = decode_server_certificate(data)
        return cls(
            f.key_id,
            _public_key(f.key, "ServerCertificate"),
            f.certificate,
            f.signature,
            f.serialized,
        )

    def to_bytes(self) -> bytes:
        return self.serialized

    def _signed_by(self, trust_root: PublicKey) -> bool:
        return _verifies(trust_root, self.certificate, self.signature)

    def validate(self, trust_root: PublicKey) -> None:
        """Check revocation and the trust root's signature.

        Raises:
            SealedSenderError: ``reason="revoked"`` or ``reason="untrusted"``.
        """
        if self.key_id in REVOKED_SERVER_CERTIFICATE_KEY_IDS:
            raise SealedSenderError("server certificate is revoked", "revoked")
        if not self._signed_by(trust_root):
            raise SealedSenderError("server certificate not signed by the trust root", "untrusted")


_KNOWN_CACHE: dict[int, ServerCertificate] = {}


def _known_server_certificate(key_id: int) -> ServerCertificate:
    cert = _KNOWN_CACHE.get(key_id)
    if cert is None:
        hex_data = _KNOWN_SERVER_CERTIFICATES_HEX.get(key_id)
        if hex_data is None:
            raise SealedSenderError("unknown server certificate id", "unknown-server-certificate")
        cert = ServerCertificate.from_bytes(bytes.fromhex(hex_data))
        _KNOWN_CACHE[key_id] = cert
    return cert


@dataclass(frozen=True, slots=True)
class SenderCertificate:
    """The relay's statement "this identity key belongs to uuid.device until expiration".

    Attributes:
        sender_uuid: the sender's ACI string.
        sender_e164: the sender's phone number, if present.
        sender_device_id: 1..127.
        expiration: Unix time in milliseconds after which the certificate is refused.
        key: the sender's identity public key.
        signer_bytes_or_id: the embedded ServerCertificate, or the id of a well-known one.
        certificate: the signed inner bytes.
        signature: the server key's signature over ``certificate``.
        serialized: the exact wire bytes.
    """

    sender_uuid: str
    sender_e164: str | None
    sender_device_id: int
    expiration: int
    key: PublicKey = field(repr=False)
    signer_bytes_or_id: ServerCertificate | int = field(repr=False)
    certificate: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    serialized: bytes = field(repr=False)

    @classmethod
    def new(
        cls,
        *,
        sender_uuid: str,
        sender_e164: str | None,
        sender_device_id: int,
        key: PublicKey,
        expiration: int,
        signer: ServerCertificate,
        signer_key: PrivateKey,
        rng: Rng,
    ) -> SenderCertificate:
        """Issue a sender certificate (what the relay does), embedding ``signer``.

        Raises:
            UsageError: device id not in 1..127 or expiration not a u64.
        """
        if type(sender_device_id) is not int or not 1 <= sender_device_id <= MAX_DEVICE_ID:
            raise UsageError("sender device id must be in 1..127")
        if type(expiration) is not int or not 0 <= expiration < 2**64:
            raise UsageError("expiration must be a u64 (ms)")
        if not isinstance(sender_uuid, str):
            raise UsageError("sender_uuid must be a str")
        certificate = encode_sender_certificate(
            sender_uuid=sender_uuid,
            sender_e164=sender_e164,
            sender_device_id=sender_device_id,
            expiration=expiration,
            identity_key=key.to_bytes(),
            signer=signer.serialized,
        )
        signature = _sign(signer_key, certificate, rng)
        return cls(
            sender_uuid,
            sender_e164,
            sender_device_id,
            expiration,
            key,
            signer,
            certificate,
            signature,
            wrap_certificate(certificate, signature),
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> SenderCertificate:
        """Parse (nothing is verified here: see :meth:`validate`).

        Raises:
            DecodeError: malformed, field missing, bad key, bad embedded server certificate.
        """
        f = decode_sender_certificate(data)
        signer: ServerCertificate | int
        signer = f.signer if isinstance(f.signer, int) else ServerCertificate.from_bytes(f.signer)
        return cls(
            f.sender_uuid,
            f.sender_e164,
            f.sender_device_id,
            f.expiration,
            _public_key(f.identity_key, "SenderCertificate"),
            signer,
            f.certificate,
            f.signature,
            f.serialized,
        )

    def to_bytes(self) -> bytes:
        return self.serialized

    @property
    def signer(self) -> ServerCertificate:
        """The server certificate (embedded or well-known by id).

        Raises:
            SealedSenderError: ``reason="unknown-server-certificate"`` for an unknown id.
        """
        s = self.signer_bytes_or_id
        if isinstance(s, ServerCertificate):
            return s
        return _known_server_certificate(s)

    def validate(self, trust_roots: PublicKey | Sequence[PublicKey], now: int) -> None:
        """Validate against one or more trust roots at ``now`` (Unix ms).

        Every trust root is tried (so timing does not reveal which one matched); then the
        server's signature over this certificate; then the expiry (``now > expiration``
        fails, like libsignal).

        Raises:
            SealedSenderError: ``reason`` is ``"revoked"``, ``"untrusted"`` (server cert not
                signed by any root), ``"bad-signature"`` (this cert not signed by the server),
                ``"expired"`` or ``"unknown-server-certificate"``.
        """
        roots = [trust_roots] if isinstance(trust_roots, PublicKey) else list(trust_roots)
        signer = self.signer
        if signer.key_id in REVOKED_SERVER_CERTIFICATE_KEY_IDS:
            raise SealedSenderError("server certificate is revoked", "revoked")
        any_valid = False
        for root in roots:
            any_valid |= signer._signed_by(root)
        if not any_valid:
            raise SealedSenderError("server certificate not signed by a trust root", "untrusted")
        if not _verifies(signer.key, self.certificate, self.signature):
            raise SealedSenderError("sender certificate not signed by the server", "bad-signature")
        if now > self.expiration:
            raise SealedSenderError("sender certificate has expired", "expired")


# --- USMC ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnidentifiedSenderMessageContent:
    """What a sealed envelope carries: the inner message, its type and the sender's certificate.

    Attributes:
        msg_type: the inner message's type (PreKey, Whisper, SenderKey, Plaintext).
        sender: the sender certificate.
        contents: the serialized inner message.
        content_hint: a :class:`ContentHint` value (or an unknown int).
        group_id: the group id, or None.
        serialized: the exact bytes.
    """

    msg_type: CiphertextMessageType
    sender: SenderCertificate
    contents: bytes = field(repr=False)
    content_hint: int
    group_id: bytes | None = field(repr=False)
    serialized: bytes = field(repr=False)

    @classmethod
    def new(
        cls,
        msg_type: CiphertextMessageType,
        sender: SenderCertificate,
        contents: bytes,
        content_hint: int = ContentHint.DEFAULT,
        group_id: bytes | None = None,
    ) -> UnidentifiedSenderMessageContent:
        """Build (fields in libsignal's order).

        Raises:
            UsageError: unknown message type or hint.
        """
        proto_type = (
            _TO_PROTO_TYPE.get(CiphertextMessageType(msg_type))
            if msg_type in _TO_PROTO_TYPE
            else None
        )
        if proto_type is None:
            raise UsageError("unknown ciphertext message type")
        if int(content_hint) not in (0, 1, 2):
            raise UsageError("unknown content hint")
        serialized = encode_usmc(
            proto_type, sender.serialized, bytes(contents), int(content_hint), group_id
        )
        return cls(
            CiphertextMessageType(msg_type),
            sender,
            bytes(contents),
            int(content_hint),
            group_id or None,
            serialized,
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> UnidentifiedSenderMessageContent:
        """Parse.

        Raises:
            DecodeError: malformed USMC or sender certificate.
        """
        f = decode_usmc(data)
        return cls(
            _FROM_PROTO_TYPE[f.msg_type],
            SenderCertificate.from_bytes(f.sender_certificate),
            f.content,
            f.content_hint,
            f.group_id,
            bytes(data),
        )

    def to_bytes(self) -> bytes:
        return self.serialized


# --- v1 -----------------------------------------------------------------------------------------


def _ctr_hmac_encrypt(data: bytes, cipher_key: bytes, mac_key: bytes) -> bytes:
    ct = aes_256_ctr(cipher_key, _ZERO_COUNTER, data)
    return ct + hmac_sha256(mac_key, ct)[:_V1_MAC_LENGTH]


def _ctr_hmac_decrypt(data: bytes, cipher_key: bytes, mac_key: bytes) -> bytes:
    if len(data) < _V1_MAC_LENGTH:
        raise InvalidMessageError("sealed sender: decryption failed")
    ct, mac = data[:-_V1_MAC_LENGTH], data[-_V1_MAC_LENGTH:]
    if not constant_time_eq(hmac_sha256(mac_key, ct)[:_V1_MAC_LENGTH], mac):
        raise InvalidMessageError("sealed sender: decryption failed")
    return aes_256_ctr(cipher_key, _ZERO_COUNTER, ct)


def _ephemeral_keys(
    shared: bytes, recipient: bytes, ephemeral: bytes
) -> tuple[bytes, bytes, bytes]:
    okm = hkdf_sha256(shared, _V1_SALT_PREFIX + recipient + ephemeral, b"", 96)
    return okm[:32], okm[32:64], okm[64:96]


def _static_keys(shared: bytes, chain_key: bytes, encrypted_static: bytes) -> tuple[bytes, bytes]:
    okm = hkdf_sha256(shared, chain_key + encrypted_static, b"", 96)
    return okm[32:64], okm[64:96]


def seal_v1(
    usmc: UnidentifiedSenderMessageContent,
    our_identity: IdentityKeyPair,
    their_identity: IdentityKey,
    rng: Rng,
) -> bytes:
    """Encrypt a USMC to one recipient identity (sealed sender v1, ``0x11``).

    Raises:
        InvalidKeyError: a Diffie-Hellman result is all zeros (bad recipient key).
    """
    ephemeral = KeyPair.generate(rng)
    their_pub = their_identity.public_key
    eph_pub = ephemeral.public_key.to_bytes()
    chain_key, cipher_key, mac_key = _ephemeral_keys(
        ephemeral.private_key.agree(their_pub), their_pub.to_bytes(), eph_pub
    )
    encrypted_static = _ctr_hmac_encrypt(our_identity.identity_key.to_bytes(), cipher_key, mac_key)
    cipher2, mac2 = _static_keys(
        our_identity.private_key.agree(their_pub), chain_key, encrypted_static
    )
    encrypted_message = _ctr_hmac_encrypt(usmc.serialized, cipher2, mac2)
    return encode_v1_envelope(eph_pub, encrypted_static, encrypted_message)


def _unseal_v1(data: bytes, our_identity: IdentityKeyPair) -> UnidentifiedSenderMessageContent:
    env = decode_v1_envelope(data)
    try:
        eph = PublicKey.from_bytes(env.ephemeral_public)
    except InvalidKeyError:
        raise DecodeError("sealed sender v1: invalid ephemeral key") from None
    our_pub = our_identity.identity_key.to_bytes()
    chain_key, cipher_key, mac_key = _ephemeral_keys(
        our_identity.private_key.agree(eph), our_pub, eph.to_bytes()
    )
    static_bytes = _ctr_hmac_decrypt(env.encrypted_static, cipher_key, mac_key)
    try:
        static_key = PublicKey.from_bytes(static_bytes)
    except InvalidKeyError:
        raise InvalidMessageError("sealed sender: decryption failed") from None
    cipher2, mac2 = _static_keys(
        our_identity.private_key.agree(static_key), chain_key, env.encrypted_static
    )
    usmc = UnidentifiedSenderMessageContent.from_bytes(
        _ctr_hmac_decrypt(env.encrypted_message, cipher2, mac2)
    )
    if not constant_time_eq(static_bytes, usmc.sender.key.to_bytes()):
        raise SealedSenderError("sender certificate key does not match message key", "key-mismatch")
    return usmc


# --- v2 -----------------------------------------------------------------------------------------


def _derive_e(m: bytes) -> KeyPair:
    private = PrivateKey.from_bytes(hkdf_sha256(m, None, _LABEL_R, 32))
    return KeyPair(private, private.public_key())


def _derive_k(m: bytes) -> bytes:
    return hkdf_sha256(m, None, _LABEL_K, 32)


def _xor_key(shared: bytes, e_pub: bytes, r_pub: bytes, m: bytes) -> bytes:
    pad = hkdf_sha256(shared + e_pub + r_pub, None, _LABEL_DH, _MESSAGE_KEY_LENGTH)
    if len(m) != _MESSAGE_KEY_LENGTH:
        raise InternalError("sealed sender v2: message key of the wrong length")
    x = int.from_bytes(pad, "big") ^ int.from_bytes(m, "big")
    return x.to_bytes(_MESSAGE_KEY_LENGTH, "big")


def _auth_tag(shared: bytes, e_pub: bytes, c: bytes, s_pub: bytes, r_pub: bytes) -> bytes:
    return hkdf_sha256(shared + e_pub + c + s_pub + r_pub, None, _LABEL_DH_S, _AUTH_TAG_LENGTH)


@dataclass(frozen=True, slots=True)
class MultiRecipient:
    """One recipient account of a v2 message: its service id, identity key and devices.

    Attributes:
        service_id: the account.
        identity_key: its identity key (one per account).
        devices: ((device id 1..127, registration id 14-bit), ...), at least one.
    """

    service_id: ServiceId
    identity_key: IdentityKey
    devices: tuple[tuple[int, int], ...]


def multi_recipient_encrypt(
    usmc: UnidentifiedSenderMessageContent,
    recipients: Sequence[MultiRecipient],
    our_identity: IdentityKeyPair,
    rng: Rng,
    excluded: Iterable[ServiceId] = (),
) -> bytes:
    """Build the sent form (``0x23``) of a sealed sender v2 message.

    Raises:
        UsageError: a recipient without devices, a device id out of range, or a registration
            id that does not fit in 14 bits.
        InvalidKeyError: an all-zero Diffie-Hellman result.
    """
    excluded = list(excluded)
    m = rng.random_bytes(_MESSAGE_KEY_LENGTH)
    e = _derive_e(m)
    e_pub = e.public_key.to_bytes()
    ciphertext = aes_256_gcm_siv_encrypt(_derive_k(m), _ZERO_NONCE, usmc.serialized)
    s_pub = our_identity.identity_key.to_bytes()
    out = bytearray((SEALED_SENDER_V2_SERVICE_ID_VERSION,))
    out += encode_varint(len(recipients) + len(excluded))
    for r in recipients:
        if not r.devices:
            raise UsageError("a multi-recipient destination needs at least one device")
        out += r.service_id.to_fixed_width()
        last = len(r.devices) - 1
        for i, (device_id, reg_id) in enumerate(r.devices):
            if type(device_id) is not int or not 1 <= device_id <= MAX_DEVICE_ID:
                raise UsageError("device id must be in 1..127")
            if type(reg_id) is not int or reg_id & REGISTRATION_ID_MASK != reg_id:
                raise UsageError("registration id must fit in 14 bits")
            out.append(device_id)
            value = reg_id | (_HAS_MORE if i < last else 0)
            out += value.to_bytes(2, "big")
        r_key = r.identity_key.public_key
        r_pub = r_key.to_bytes()
        c = _xor_key(e.private_key.agree(r_key), e_pub, r_pub, m)
        out += c
        out += _auth_tag(our_identity.static_agreement(r_key), e_pub, c, s_pub, r_pub)
    for sid in excluded:
        out += sid.to_fixed_width()
        out.append(0)
    out += e.public_key.raw
    out += ciphertext
    return bytes(out)


def _unseal_v2(data: bytes, our_identity: IdentityKeyPair) -> UnidentifiedSenderMessageContent:
    f = decode_received_v2(data)
    eph = PublicKey.from_raw(f.ephemeral_public)
    our_pub = our_identity.identity_key.to_bytes()
    m = _xor_key(
        our_identity.private_key.agree(eph), eph.to_bytes(), our_pub, f.encrypted_message_key
    )
    if not constant_time_eq(_derive_e(m).public_key.raw, eph.raw):
        raise InvalidMessageError("sealed sender: decryption failed")
    usmc = UnidentifiedSenderMessageContent.from_bytes(
        aes_256_gcm_siv_decrypt(_derive_k(m), _ZERO_NONCE, f.ciphertext)
    )
    sender_key = usmc.sender.key
    at = _auth_tag(
        our_identity.static_agreement(sender_key),
        eph.to_bytes(),
        f.encrypted_message_key,
        sender_key.to_bytes(),
        our_pub,
    )
    if not constant_time_eq(at, f.authentication_tag):
        raise SealedSenderError(
            "sender certificate key does not match authentication tag", "key-mismatch"
        )
    return usmc


def unseal(data: bytes, our_identity: IdentityKeyPair) -> UnidentifiedSenderMessageContent:
    """Decrypt a received sealed-sender message (v1 or received-form v2) to its USMC.

    The certificate is *not* validated here (see :meth:`SenderCertificate.validate`).

    Raises:
        DecodeError / UnsupportedVersionError: malformed envelope or USMC.
        InvalidMessageError: the envelope does not authenticate (tampered or not for us).
        SealedSenderError: ``reason="key-mismatch"``: the envelope's sender key is not the
            certificate's.
        InvalidKeyError: an all-zero Diffie-Hellman result.
    """
    if decode_envelope_version(data) == 1:
        return _unseal_v1(bytes(data), our_identity)
    return _unseal_v2(bytes(data), our_identity)


# --- the relay's split ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SealedSenderV2SentMessage:
    """A parsed sent v2 message, as the relay sees it.

    Attributes:
        version: 0x22 (ACI uuids only) or 0x23 (service ids).
        recipients: service id -> ((device id, registration id), ...) for included recipients.
        excluded_recipients: service ids listed with no devices.
    """

    version: int
    recipients: dict[ServiceId, tuple[tuple[int, int], ...]] = field(repr=False)
    excluded_recipients: tuple[ServiceId, ...]
    _parts: dict[ServiceId, SentV2Recipient] = field(repr=False)
    _shared: bytes = field(repr=False)

    @classmethod
    def parse(cls, data: bytes) -> SealedSenderV2SentMessage:
        """Parse and check the whole message before any per-recipient work.

        Raises:
            UnsupportedVersionError: not 0x22/0x23.
            DecodeError: any framing error (see
                :func:`securemsg.wire.sealed_sender.decode_sent_v2`).
        """
        f = decode_sent_v2(data)
        recipients: dict[ServiceId, tuple[tuple[int, int], ...]] = {}
        excluded: list[ServiceId] = []
        parts: dict[ServiceId, SentV2Recipient] = {}
        for raw, r in f.recipients.items():
            sid = ServiceId.from_fixed_width(raw)
            if r.devices:
                recipients[sid] = tuple(r.devices)
                parts[sid] = r
            else:
                excluded.append(sid)
        return cls(f.version, recipients, tuple(excluded), parts, f.shared_bytes)

    def message_for_recipient(self, service_id: ServiceId) -> bytes:
        """The received form (``0x22 || C || AT || E || ciphertext``) for one recipient; the
        same bytes serve all of its devices.

        Raises:
            UsageError: ``service_id`` is not an included recipient.
        """
        part = self._parts.get(service_id)
        if part is None:
            raise UsageError("not a recipient of this message")
        return bytes((SEALED_SENDER_V2_UUID_VERSION,)) + part.c_and_at + self._shared

    def recipient_part(self, service_id: ServiceId) -> bytes:
        """The recipient's own head of its received form, ``0x22 || C || AT``: the received
        form is this followed by :attr:`shared_part` (so a relay can keep the shared part
        once for all recipients).

        Raises:
            UsageError: ``service_id`` is not an included recipient.
        """
        part = self._parts.get(service_id)
        if part is None:
            raise UsageError("not a recipient of this message")
        return bytes((SEALED_SENDER_V2_UUID_VERSION,)) + part.c_and_at

    @property
    def shared_part(self) -> bytes:
        """The tail of every recipient's received form, ``E || ciphertext`` (one object)."""
        return self._shared
