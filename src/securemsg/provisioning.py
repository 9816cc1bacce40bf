"""Linking a new device: the provisioning cipher and the ``ProvisionMessage`` as Signal has them.

Theory of operation
-------------------
A new device makes a fresh ephemeral X25519 key pair (:func:`provisioning_key_pair`, or a
:class:`ProvisioningReceiver` that holds it) and shows its public key in the linking code. The
primary device puts what the new device needs into a :class:`ProvisionData` (the account's
identity key pair, ACI, the relay's one-time linking code, the access key, the trust root...)
and seals it to that key (:func:`seal_provision`); the relay carries the envelope to the new
device, which opens it (:func:`open_provision` / :meth:`ProvisioningReceiver.open`).

The cipher is Signal's, byte for byte (Signal-Desktop ``ts/textsecure/ProvisioningCipher.ts``,
``@signalapp/mock-server`` ``src/crypto.ts`` ``encryptProvisionMessage``)::

    e            a fresh X25519 key pair of the sender (the primary device)
    shared       X25519(e.private, their_public)
    aes || mac   HKDF-SHA256(ikm=shared, salt=32 zero bytes, info="TextSecure Provisioning
                 Message", 64 bytes)
    body         0x01 || iv(16) || AES-256-CBC-PKCS7(aes, iv, ProvisionMessage)
                 || HMAC-SHA256(mac, 0x01 || iv || ciphertext)
    envelope     ProvisionEnvelope { publicKey = 0x05 || e.public, body }

The ``ProvisionMessage`` is Signal's protobuf (:mod:`securemsg.wire.provisioning`); securemsg's
own fields (access key, trust root, relay URL) use field numbers 1001..1003, which Signal does
not use. See docs/linked-devices.md.

Hostile input: every refusal is a :class:`~securemsg.errors.ProvisioningError` with a
``reason``; nothing else escapes. The MAC is checked (in constant time) before the ciphertext is
decrypted, so padding errors are no oracle. Pure core: no clock, no OS; randomness comes from the
``rng`` argument.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from securemsg.crypto.curve25519 import KeyPair, PrivateKey, PublicKey
from securemsg.crypto.primitives import (
    aes_256_cbc_decrypt,
    aes_256_cbc_encrypt,
    constant_time_eq,
    hkdf_sha256,
    hmac_sha256,
)
from securemsg.crypto.rng import Rng
from securemsg.errors import (
    DecodeError,
    InvalidKeyError,
    InvalidMessageError,
    ProvisioningError,
    UsageError,
)
from securemsg.protocol.identity_and_prekeys import IdentityKey, IdentityKeyPair
from securemsg.wire import provisioning as codec

__all__ = [
    "ACCESS_KEY_LENGTH",
    "MAX_PROVISION_ENVELOPE_LENGTH",
    "MAX_PROVISION_MESSAGE_LENGTH",
    "PROVISIONING_CIPHER_VERSION",
    "PROVISIONING_INFO",
    "ProvisionData",
    "ProvisioningReceiver",
    "decrypt_provision_envelope",
    "encrypt_provision_message",
    "open_provision",
    "provisioning_key_pair",
    "seal_provision",
]

#: The version byte that starts the body of a ProvisionEnvelope (Signal's only version).
PROVISIONING_CIPHER_VERSION = 1
#: HKDF ``info`` of the provisioning cipher.
PROVISIONING_INFO = b"TextSecure Provisioning Message"
#: Largest ProvisionEnvelope accepted (bytes), the same bound as the relay's default
#: ``max_provision_envelope_bytes``. Not a Signal limit (Signal's server takes up to 256 KiB):
#: ours, so that a hostile relay cannot make the new device buffer and MAC more than it needs.
#: A real envelope is a few hundred bytes.
MAX_PROVISION_ENVELOPE_LENGTH = 4096
#: Length of the account's unidentified-access key.
ACCESS_KEY_LENGTH = 16

_IV_LENGTH = 16
_MAC_LENGTH = 32
_KEY_LENGTH = 32
_BLOCK = 16
_PUBLIC_KEY_LENGTH = 33
_PRIVATE_KEY_LENGTH = 32
_PROFILE_KEY_LENGTH = 32
_UUID_LENGTH = 16
# version || iv || at least one AES block || mac
_MIN_BODY_LENGTH = 1 + _IV_LENGTH + _BLOCK + _MAC_LENGTH
# Largest plaintext whose envelope stays under MAX_PROVISION_ENVELOPE_LENGTH (protobuf framing
# of the two fields takes at most 2 + 3 + 2 + 3 bytes; PKCS#7 adds up to one block).
MAX_PROVISION_MESSAGE_LENGTH = (
    MAX_PROVISION_ENVELOPE_LENGTH - 10 - _PUBLIC_KEY_LENGTH - 1 - _IV_LENGTH - _BLOCK - _MAC_LENGTH
)


def _canonical_aci(aci: object) -> str:
    if not isinstance(aci, str):
        raise UsageError("aci must be a UUID string")
    try:
        return str(uuid.UUID(aci))
    except ValueError:
        raise UsageError("aci must be a UUID string") from None


@dataclass(frozen=True)
class ProvisionData:
    """What the primary device hands a new device of the same account.

    Attributes:
        identity: the account's ACI identity key pair (the private key travels: only ever
            inside the provisioning cipher, to the new device's one-time key).
        aci: the account's ACI (a UUID string; stored in canonical lowercase form).
        provisioning_code: the relay-issued one-time linking code the new device presents when
            it registers.
        access_key: the account's 16-byte unidentified-access key.
        trust_root: the pinned relay trust root (33 bytes), or ``b""`` if none is pinned.
        profile_key: Signal's 32-byte profile key, or ``b""``.
        relay_url: the relay the account lives on, or ``""``.
        user_agent: the primary's user agent (Signal's field), or ``""``.
        read_receipts: the account's read-receipt setting.

    Raises:
        UsageError: a field of the wrong type or length.
    """

    identity: IdentityKeyPair = field(repr=False)
    aci: str
    provisioning_code: str = field(repr=False)
    access_key: bytes = field(repr=False)
    trust_root: bytes = field(default=b"", repr=False)
    profile_key: bytes = field(default=b"", repr=False)
    relay_url: str = ""
    user_agent: str = ""
    read_receipts: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.identity, IdentityKeyPair):
            raise UsageError("identity must be an IdentityKeyPair")
        object.__setattr__(self, "aci", _canonical_aci(self.aci))
        if not isinstance(self.provisioning_code, str) or not self.provisioning_code:
            raise UsageError("provisioning_code must be a non-empty string")
        if not isinstance(self.access_key, bytes) or len(self.access_key) != ACCESS_KEY_LENGTH:
            raise UsageError("access_key must be 16 bytes")
        if not isinstance(self.trust_root, bytes) or len(self.trust_root) not in (
            0,
            _PUBLIC_KEY_LENGTH,
        ):
            raise UsageError("trust_root must be 33 bytes or empty")
        if self.trust_root and self.trust_root[0] != 0x05:
            raise UsageError("trust_root must be a serialized public key")
        if not isinstance(self.profile_key, bytes) or len(self.profile_key) not in (
            0,
            _PROFILE_KEY_LENGTH,
        ):
            raise UsageError("profile_key must be 32 bytes or empty")
        for name in ("relay_url", "user_agent", "provisioning_code"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise UsageError(name + " must be a string")
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise UsageError(name + " must be encodable as UTF-8") from None
        if not isinstance(self.read_receipts, bool):
            raise UsageError("read_receipts must be a bool")


def provisioning_key_pair(rng: Rng) -> KeyPair:
    """A fresh ephemeral X25519 key pair for one linking attempt (use it once, then drop it)."""
    return KeyPair.generate(rng)


def _derive_keys(shared: bytes) -> tuple[bytes, bytes]:
    okm = hkdf_sha256(shared, None, PROVISIONING_INFO, 2 * _KEY_LENGTH)
    return okm[:_KEY_LENGTH], okm[_KEY_LENGTH:]


def encrypt_provision_message(plaintext: bytes, their_public: PublicKey, rng: Rng) -> bytes:
    """Seal ``plaintext`` (a serialized ProvisionMessage) to ``their_public``.

    Draws 32 bytes (the ephemeral key) then 16 (the IV) from ``rng``.

    Returns:
        The ProvisionEnvelope bytes.

    Raises:
        UsageError: ``plaintext`` is not bytes or too long for an envelope, or ``their_public``
            is not a PublicKey.
        ProvisioningError: ``their_public`` is a small-order key (reason ``"key"``).
    """
    if not isinstance(plaintext, (bytes, bytearray, memoryview)):
        raise UsageError("plaintext must be bytes")
    if not isinstance(their_public, PublicKey):
        raise UsageError("their_public must be a PublicKey")
    plaintext = bytes(plaintext)
    if len(plaintext) > MAX_PROVISION_MESSAGE_LENGTH:
        raise UsageError("provision message too long")
    ephemeral = KeyPair.generate(rng)
    try:
        shared = ephemeral.private_key.agree(their_public)
    except InvalidKeyError:
        raise ProvisioningError("unusable provisioning key", "key") from None
    aes_key, mac_key = _derive_keys(shared)
    iv = rng.random_bytes(_IV_LENGTH)
    signed = (
        bytes((PROVISIONING_CIPHER_VERSION,)) + iv + aes_256_cbc_encrypt(aes_key, iv, plaintext)
    )
    body = signed + hmac_sha256(mac_key, signed)
    return codec.encode_provision_envelope(ephemeral.public_key.to_bytes(), body)


def decrypt_provision_envelope(envelope: bytes, our_key_pair: KeyPair) -> bytes:
    """Open a ProvisionEnvelope sealed to ``our_key_pair``; returns the ProvisionMessage bytes.

    Raises:
        UsageError: ``our_key_pair`` is not a KeyPair.
        ProvisioningError: oversize (``"size"``), not a ProvisionEnvelope or a field missing
            (``"decode"``), a version byte other than 1 (``"version"``), a bad or small-order
            sender key (``"key"``), a MAC that does not verify -- tampered, or sealed to another
            key (``"mac"``), or bad padding under a valid MAC (``"padding"``).
    """
    if not isinstance(our_key_pair, KeyPair):
        raise UsageError("our_key_pair must be a KeyPair")
    if not isinstance(envelope, (bytes, bytearray, memoryview)):
        raise ProvisioningError("provision envelope must be bytes", "decode")
    if len(envelope) > MAX_PROVISION_ENVELOPE_LENGTH:
        raise ProvisioningError("provision envelope too large", "size")
    try:
        fields = codec.decode_provision_envelope(bytes(envelope))
    except DecodeError:
        raise ProvisioningError("invalid provision envelope", "decode") from None
    if fields.public_key is None or fields.body is None:
        raise ProvisioningError("provision envelope: missing field", "decode")
    body = fields.body
    if not body or body[0] != PROVISIONING_CIPHER_VERSION:
        raise ProvisioningError("unsupported provisioning version", "version")
    if len(body) < _MIN_BODY_LENGTH or (len(body) - 1 - _IV_LENGTH - _MAC_LENGTH) % _BLOCK:
        raise ProvisioningError("provision envelope: bad body length", "decode")
    if len(fields.public_key) != _PUBLIC_KEY_LENGTH:
        raise ProvisioningError("provision envelope: bad key", "key")
    try:
        their_public = PublicKey.from_bytes(fields.public_key)
        shared = our_key_pair.private_key.agree(their_public)
    except InvalidKeyError:
        raise ProvisioningError("provision envelope: bad key", "key") from None
    aes_key, mac_key = _derive_keys(shared)
    signed, mac = body[:-_MAC_LENGTH], body[-_MAC_LENGTH:]
    if not constant_time_eq(hmac_sha256(mac_key, signed), mac):
        raise ProvisioningError("provision envelope: bad MAC", "mac")
    iv = signed[1 : 1 + _IV_LENGTH]
    try:
        return aes_256_cbc_decrypt(aes_key, iv, signed[1 + _IV_LENGTH :])
    except InvalidMessageError:
        raise ProvisioningError("provision envelope: bad padding", "padding") from None


def _to_fields(data: ProvisionData) -> codec.ProvisionMessageFields:
    return codec.ProvisionMessageFields(
        aciIdentityKeyPublic=data.identity.identity_key.to_bytes(),
        aciIdentityKeyPrivate=data.identity.private_key.to_bytes(),
        aci=data.aci,
        aciBinary=uuid.UUID(data.aci).bytes,
        provisioningCode=data.provisioning_code,
        userAgent=data.user_agent or None,
        profileKey=data.profile_key or None,
        readReceipts=data.read_receipts,
        provisioningVersion=codec.PROVISIONING_VERSION_CURRENT,
        securemsgAccessKey=data.access_key,
        securemsgTrustRoot=data.trust_root or None,
        securemsgRelayUrl=data.relay_url or None,
    )


def _refuse(what: str) -> ProvisioningError:
    return ProvisioningError("provision message: " + what, "fields")


def _aci_from(fields: codec.ProvisionMessageFields) -> str:
    from_binary: str | None = None
    if fields.aciBinary is not None:
        if len(fields.aciBinary) != _UUID_LENGTH:
            raise _refuse("bad ACI")
        from_binary = str(uuid.UUID(bytes=fields.aciBinary))
    from_string: str | None = None
    if fields.aci is not None:
        try:
            from_string = str(uuid.UUID(fields.aci))
        except ValueError:
            raise _refuse("bad ACI") from None
    if from_binary is None and from_string is None:
        raise _refuse("missing ACI")
    if from_binary is not None and from_string is not None and from_binary != from_string:
        raise _refuse("the two ACI fields disagree")
    aci = from_binary if from_binary is not None else from_string
    assert aci is not None
    return aci


def _identity_from(fields: codec.ProvisionMessageFields) -> IdentityKeyPair:
    private = fields.aciIdentityKeyPrivate
    if private is None or len(private) != _PRIVATE_KEY_LENGTH:
        raise _refuse("missing or bad identity private key")
    private_key = PrivateKey.from_bytes(private)
    public_key = private_key.public_key()
    # Signal derives the public key from the private one; a public key that is sent must match.
    if fields.aciIdentityKeyPublic is not None:
        if len(fields.aciIdentityKeyPublic) != _PUBLIC_KEY_LENGTH:
            raise _refuse("bad identity public key")
        try:
            sent = PublicKey.from_bytes(fields.aciIdentityKeyPublic)
        except InvalidKeyError:
            raise _refuse("bad identity public key") from None
        if sent != public_key:
            raise _refuse("identity public key does not match the private key")
    return IdentityKeyPair(IdentityKey(public_key), private_key)


def _from_fields(fields: codec.ProvisionMessageFields) -> ProvisionData:
    identity = _identity_from(fields)
    aci = _aci_from(fields)
    code = fields.provisioningCode
    if not code:
        raise _refuse("missing provisioning code")
    access_key = fields.securemsgAccessKey
    if access_key is None or len(access_key) != ACCESS_KEY_LENGTH:
        raise _refuse("missing or bad access key")
    trust_root = fields.securemsgTrustRoot or b""
    if trust_root and (len(trust_root) != _PUBLIC_KEY_LENGTH or trust_root[0] != 0x05):
        raise _refuse("bad trust root")
    profile_key = fields.profileKey or b""
    if len(profile_key) not in (0, _PROFILE_KEY_LENGTH):
        raise _refuse("bad profile key")
    return ProvisionData(
        identity=identity,
        aci=aci,
        provisioning_code=code,
        access_key=access_key,
        trust_root=trust_root,
        profile_key=profile_key,
        relay_url=fields.securemsgRelayUrl or "",
        user_agent=fields.userAgent or "",
        read_receipts=bool(fields.readReceipts),
    )


def seal_provision(data: ProvisionData, their_public: PublicKey, rng: Rng) -> bytes:
    """Encode ``data`` as a ProvisionMessage and seal it to the new device's ``their_public``.

    Returns:
        The ProvisionEnvelope bytes (for the relay to deliver once).

    Raises:
        UsageError: ``data`` is not a ProvisionData, or ``their_public`` not a PublicKey.
        ProvisioningError: ``their_public`` is a small-order key (reason ``"key"``).
    """
    if not isinstance(data, ProvisionData):
        raise UsageError("data must be a ProvisionData")
    plaintext = codec.encode_provision_message(_to_fields(data))
    return encrypt_provision_message(plaintext, their_public, rng)


def open_provision(envelope: bytes, our_key_pair: KeyPair) -> ProvisionData:
    """Open a ProvisionEnvelope sealed to ``our_key_pair`` and check every field securemsg needs.

    Signal fields securemsg has no use for (PNI identity, backup keys, ...) are ignored.

    Raises:
        UsageError: ``our_key_pair`` is not a KeyPair.
        ProvisioningError: as :func:`decrypt_provision_envelope`; and reason ``"decode"`` for a
            plaintext that is not a ProvisionMessage, ``"fields"`` for a missing or malformed
            identity key pair (or a public key that does not match the private one), ACI,
            provisioning code, access key, trust root or profile key.
    """
    plaintext = decrypt_provision_envelope(envelope, our_key_pair)
    try:
        fields = codec.decode_provision_message(plaintext)
    except DecodeError:
        raise ProvisioningError("invalid provision message", "decode") from None
    return _from_fields(fields)


class ProvisioningReceiver:
    """The new device's side of one linking attempt: a one-time key pair that opens one envelope.

    Show :attr:`public_key` in the linking code, then pass what the relay delivers to
    :meth:`open`. Once an envelope has been opened, the private key is dropped and every later
    envelope -- a replay of the same one, or another -- is refused with reason ``"replay"``. A
    refused envelope does not use the receiver up, so a relay that injects garbage cannot stop
    the real envelope from opening.
    """

    __slots__ = ("_key_pair", "_public_key")

    def __init__(self, rng: Rng) -> None:
        self._key_pair: KeyPair | None = provisioning_key_pair(rng)
        self._public_key = self._key_pair.public_key

    @property
    def public_key(self) -> PublicKey:
        """The one-time public key to put into the linking code."""
        return self._public_key

    @property
    def used(self) -> bool:
        """True once an envelope has been opened."""
        return self._key_pair is None

    def open(self, envelope: bytes) -> ProvisionData:
        """Open the envelope (see :func:`open_provision`); works once.

        Raises:
            ProvisioningError: as :func:`open_provision`, or reason ``"replay"`` when an
                envelope was already opened by this receiver.
        """
        key_pair = self._key_pair
        if key_pair is None:
            raise ProvisioningError("a provision envelope was already accepted", "replay")
        data = open_provision(envelope, key_pair)
        self._key_pair = None
        return data

    def __repr__(self) -> str:
        return "ProvisioningReceiver(used=" + repr(self.used) + ")"
