"""Linked devices, client side: the linking code, linking a new device, approving it, the
device list, and unlinking.

Theory of operation
-------------------
Linking follows Signal's provisioning flow:

1. The **new device** (:meth:`Client.link <securemsg.client.Client.link>`) opens an
   *unauthenticated* connection, asks the relay for a provisioning address
   (``OpenProvisioning``), makes a fresh ephemeral X25519 key pair and shows a **linking code**
   carrying the address and the ephemeral public key (:func:`format_linking_code`; the CLI
   also draws it as a QR code). It then waits, bounded, on that same connection.
2. The **primary device** (:meth:`Client.approve_link
   <securemsg.client.Client.approve_link>`) parses the code (a mistyped one fails its checksum:
   :class:`~securemsg.errors.LinkingCodeError`), asks the relay for a one-time
   linking code bound to the account (``GetLinkingCode``), seals what the new device needs
   (the account's identity key pair, ACI, access key, trust root, profile key and that
   one-time code) to the ephemeral key with Signal's provisioning cipher
   (:mod:`securemsg.provisioning`), and sends it to the address (``SendProvisioning``).
3. The relay pushes the envelope once to the waiting connection and forgets the address. The
   new device opens it (a tampered or foreign envelope fails its MAC:
   :class:`~securemsg.errors.ProvisioningError`), checks the trust root against the relay's
   (and the caller's, if one was given), and registers as a new device of the account with
   the one-time code; the relay assigns the device id.

Nothing is written to disk before the envelope opened, and the database is removed again if
registration fails: a failed link leaves no file behind. The ephemeral private key never
leaves the new device's memory; the relay sees the address, the ephemeral public key's
ciphertext envelope and the one-time code, never a private key.

The linking code is ``securemsg://linkdevice?uuid=<address>&pub_key=<key>&check=<sum>``:
``uuid`` is the relay's 16-byte provisioning address written as a UUID (as Signal writes
it), ``pub_key`` the 33-byte ephemeral public key in unpadded URL-safe base64 (Signal uses
padded standard base64 there), and ``check`` the first 4 bytes of
``SHA-256("securemsg linking code v1" || address || key)`` in hex, so a code copied by hand
with a typo is refused rather than sealed to a wrong key.

**Unlinking** (:meth:`Client.unlink <securemsg.client.Client.unlink>`, primary only) asks the
relay to delete the device, its keys and its mailbox. The removed device learns it: the relay
pushes ``DeviceRemoved`` on its open connection, and a later proof of identity for it is
answered ``NOT_FOUND``; either way the client raises
:class:`~securemsg.errors.DeviceRemovedError` from then on and stops reconnecting.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import Final

from securemsg.crypto.curve import PublicKey
from securemsg.errors import InvalidKeyError, LinkingCodeError, UsageError

__all__ = [
    "LINKING_CODE_SCHEME",
    "LinkedDevice",
    "ParsedLinkingCode",
    "format_linking_code",
    "parse_linking_code",
]

#: The scheme and path every linking code starts with.
LINKING_CODE_SCHEME: Final = "securemsg://linkdevice"
#: The relay's provisioning addresses are this long (a UUID's worth of random bytes).
ADDRESS_LENGTH: Final = 16
#: Longest text :func:`parse_linking_code` looks at (a real code is about 130 characters).
MAX_LINKING_CODE: Final = 512
_CHECK_DOMAIN: Final = b"securemsg linking code v1"
_CHECK_BYTES: Final = 4
_KEY_B64_LENGTH: Final = 44  # 33 bytes, unpadded base64
_CODE_RE: Final = re.compile(
    r"securemsg://linkdevice\?uuid=(?P<uuid>[0-9a-fA-F-]{32,36})"
    r"&pub_key=(?P<key>[A-Za-z0-9_-]{" + str(_KEY_B64_LENGTH) + r"})"
    r"&check=(?P<check>[0-9a-fA-F]{" + str(2 * _CHECK_BYTES) + r"})"
)


@dataclass(frozen=True, slots=True)
class ParsedLinkingCode:
    """A parsed linking code: where the new device waits and the key to seal to.

    Attributes:
        address: the relay's provisioning address (16 bytes).
        public_key: the new device's ephemeral public key (the provisioning envelope is
            sealed to it).
    """

    address: bytes
    public_key: PublicKey

    def __str__(self) -> str:
        return format_linking_code(self.address, self.public_key)


@dataclass(frozen=True, slots=True)
class LinkedDevice:
    """One device of our account, as :meth:`Client.devices
    <securemsg.client.Client.devices>` lists it.

    Attributes:
        device_id: the device's id (1 is the primary, which links and unlinks the others).
        registration_id: the device's current registration id.
        this_device: True for the device asking.
    """

    device_id: int
    registration_id: int
    this_device: bool

    @property
    def primary(self) -> bool:
        """Whether this is the account's primary device (device 1)."""
        return self.device_id == 1


def _checksum(address: bytes, key: bytes) -> str:
    return hashlib.sha256(_CHECK_DOMAIN + address + key).digest()[:_CHECK_BYTES].hex()


def format_linking_code(address: bytes, public_key: PublicKey) -> str:
    """The linking code a new device shows (see the module docstring for the format).

    Raises:
        UsageError: ``address`` is not 16 bytes.
    """
    if not isinstance(address, bytes) or len(address) != ADDRESS_LENGTH:
        raise UsageError("a provisioning address is 16 bytes")
    key = public_key.to_bytes()
    key_text = base64.urlsafe_b64encode(key).rstrip(b"=").decode("ascii")
    return (
        f"{LINKING_CODE_SCHEME}?uuid={uuid.UUID(bytes=address)}"
        f"&pub_key={key_text}&check={_checksum(address, key)}"
    )


def parse_linking_code(text: str) -> ParsedLinkingCode:
    """Parse a linking code as a person pasted or typed it.

    Whitespace around the code and inside it (a code broken over lines) is ignored, and so is
    the case of the hexadecimal parts; the key is case-sensitive.

    Raises:
        LinkingCodeError: reason ``"malformed"`` (not a linking code, or the key is not a
            valid public key) or ``"checksum"`` (a typo: the checksum does not match).
    """
    if not isinstance(text, str) or len(text) > MAX_LINKING_CODE:
        raise LinkingCodeError("not a linking code", "malformed")
    compact = "".join(text.split())
    match = _CODE_RE.fullmatch(compact)
    if match is None:
        raise LinkingCodeError(
            "not a linking code (it starts with " + LINKING_CODE_SCHEME + "?uuid=)", "malformed"
        )
    try:
        address = uuid.UUID(match["uuid"]).bytes
        key = base64.urlsafe_b64decode(match["key"] + "=" * (-len(match["key"]) % 4))
    except (ValueError, binascii.Error):
        garbled = "the linking code's address or key is garbled"
        raise LinkingCodeError(garbled, "malformed") from None
    if match["check"].lower() != _checksum(address, key):
        raise LinkingCodeError(
            "the linking code's checksum does not match: it was copied with a mistake",
            "checksum",
        )
    try:
        if len(key) != 33:
            raise InvalidKeyError("bad key length")
        public_key = PublicKey.from_bytes(key)
    except InvalidKeyError:
        raise LinkingCodeError("the linking code's key is not a public key", "malformed") from None
    return ParsedLinkingCode(address, public_key)
