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
leaves the new device's memory; the relay sees the address, the envelope (ciphertext) and
the one-time code it issued itself, never a private key.

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

import asyncio
import base64
import binascii
import contextlib
import hashlib
import inspect
import os
import re
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from securemsg import __version__
from securemsg.client.connection import CONNECTION_LOST, RelayConnection
from securemsg.client.store import ClientStore
from securemsg.crypto.curve25519 import PrivateKey, PublicKey
from securemsg.crypto.rng import Rng
from securemsg.errors import (
    DecodeError,
    InvalidKeyError,
    LinkingCodeError,
    ProvisioningError,
    RelayError,
    StorageError,
    TrustRootMismatch,
    UsageError,
)
from securemsg.limits import MAX_DEVICE_ID, REGISTRATION_ID_MASK
from securemsg.protocol.address import ProtocolAddress
from securemsg.provisioning import ProvisionData, ProvisioningReceiver, seal_provision
from securemsg.relay_protocol.frames import (
    ACCESS_KEY_LENGTH,
    Devices,
    GetDevices,
    GetLinkingCode,
    GetServerTrustRoot,
    LinkingCode,
    OpenProvisioning,
    ProvisioningAddress,
    RemoveDevice,
    SendProvisioning,
    ServerTrustRoot,
    StatusCode,
)

if TYPE_CHECKING:
    from securemsg.client.client import Client

__all__ = [
    "DEFAULT_LINK_TIMEOUT_S",
    "LINKING_CODE_SCHEME",
    "LinkOptions",
    "LinkedDevice",
    "ParsedLinkingCode",
    "approve_link",
    "format_linking_code",
    "link_device",
    "list_devices",
    "parse_linking_code",
    "unlink_device",
]

#: How long :meth:`Client.link <securemsg.client.Client.link>` waits for an approval by
#: default (the relay's provisioning addresses live as long by default).
DEFAULT_LINK_TIMEOUT_S: Final = 600.0
#: The longest wait a caller may ask for.
MAX_LINK_TIMEOUT_S: Final = 3600.0
#: The relay accepts registration ids 1..16380.
_MAX_REGISTRATION_ID: Final = 16380
_DB_SIDE_FILES: Final = ("", "-wal", "-shm", "-journal")

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
            valid public key or is of small order) or ``"checksum"`` (a typo: the checksum does
            not match).
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
    # A small-order key agrees to all zeros with every private key (so with this fixed,
    # public one too): nothing could be sealed to it.
    probe = PrivateKey.from_bytes(hashlib.sha256(b"securemsg linking code probe").digest())
    try:
        probe.agree(public_key)
    except InvalidKeyError:
        raise LinkingCodeError("the linking code's key is not usable", "malformed") from None
    return ParsedLinkingCode(address, public_key)


# -- linking a new device ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LinkOptions:
    """The options of :meth:`Client.link <securemsg.client.Client.link>` (see there and
    :meth:`Client.create <securemsg.client.Client.create>`)."""

    timeout_s: float = DEFAULT_LINK_TIMEOUT_S
    registration_token: bytes = b""
    trust_root: PublicKey | None = None
    rng: Rng | None = None
    clock: Callable[[], int] | None = None
    relay_ssl: ssl.SSLContext | None = None
    prekey_batch: int = 100
    prekey_low_water: int | None = None
    allow_identified: bool = False
    kt_pending: str = "warn"
    kt_auditors: tuple[bytes, ...] = ()
    kt_min_cosignatures: int = 0
    kt_monitor_interval_s: float = 3600.0


async def _relay_trust_root(conn: RelayConnection) -> PublicKey:
    resp = await conn.request(GetServerTrustRoot())
    if not isinstance(resp.body, ServerTrustRoot):
        raise RelayError("relay sent no trust root", int(StatusCode.INTERNAL))
    return PublicKey.from_bytes(resp.body.public_key)


async def _wait_for_provision(
    conn: RelayConnection, address: bytes, receiver: ProvisioningReceiver, timeout_s: float
) -> ProvisionData:
    """The first provisioning envelope pushed on ``conn``, opened; nothing after it is read."""
    try:
        async with asyncio.timeout(timeout_s):
            pushed = await conn.provisions.get()
    except TimeoutError:
        raise LinkingCodeError(
            "nobody approved the linking code in time; it has expired", "expired"
        ) from None
    if pushed is None and conn.policy_closed:  # the relay's provisioning address expired
        raise LinkingCodeError("the relay let the linking code expire", "expired")
    if pushed is None:
        raise RelayError(
            "the relay closed the provisioning connection before the device was approved "
            "(the linking code expired, or the relay restarted)",
            CONNECTION_LOST,
        )
    if pushed.address != address:
        raise ProvisioningError(
            "the relay delivered a provisioning envelope for another address", "address"
        )
    return receiver.open(pushed.envelope)


def _remove_database(path: str) -> None:
    for suffix in _DB_SIDE_FILES:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + suffix)


def _new_registration_id(rng: Rng) -> int:
    while True:
        reg_id = int.from_bytes(rng.random_bytes(2), "big") & REGISTRATION_ID_MASK
        if 1 <= reg_id <= _MAX_REGISTRATION_ID:
            return reg_id


def _pinned_root(data: ProvisionData, given: PublicKey | None, presented: PublicKey) -> bytes:
    """The trust root the new device pins: the account's (the primary's pin), which must
    equal the caller's and the relay's; without one, the caller's, else the relay's (TOFU).

    Raises:
        TrustRootMismatch: two of them differ.
    """
    relay = presented.to_bytes()
    account = data.trust_root
    if account and given is not None and account != given.to_bytes():
        raise TrustRootMismatch(
            "the account's primary device pins another trust root than the one given; "
            "refusing to link",
            given.to_bytes(),
            account,
        )
    if account and account != relay:
        raise TrustRootMismatch(
            "the relay's trust root differs from the one the account pins; refusing to link",
            account,
            relay,
        )
    return account or relay


async def link_device(
    cls: type[Client],
    path: str | os.PathLike[str],
    relay_url: str,
    on_code: Callable[[str], object],
    options: LinkOptions,
) -> Client:
    """:meth:`Client.link <securemsg.client.Client.link>` (see there)."""
    path_str = os.fspath(path)
    if os.path.exists(path_str):
        raise UsageError("a file already exists at that path (use Client.open)")
    if not callable(on_code):
        raise UsageError("on_code must be callable")
    timeout_s = options.timeout_s
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
        raise UsageError("timeout_s must be a number of seconds")
    if not 0 < timeout_s <= MAX_LINK_TIMEOUT_S:
        raise UsageError("timeout_s must be more than 0 and at most 3600")
    batch = options.prekey_batch
    if type(batch) is not int or not 1 <= batch <= 100:
        raise UsageError("prekey_batch must be 1..100")
    low = options.prekey_low_water
    if low is not None and (type(low) is not int or not 0 <= low <= batch):
        raise UsageError("prekey_low_water must be 0..prekey_batch")
    if options.kt_pending not in ("wait", "warn"):  # checked again by Client, but before
        raise UsageError('kt_pending must be "wait" or "warn"')  # anyone approves the code
    rng = options.rng
    if rng is None:
        from securemsg.crypto.rng import SystemRng

        rng = SystemRng()
    receiver = ProvisioningReceiver(rng)
    conn = await RelayConnection.open(relay_url, ssl=options.relay_ssl)
    try:
        presented = await _relay_trust_root(conn)
        given = options.trust_root
        if given is not None and presented.to_bytes() != given.to_bytes():
            raise TrustRootMismatch(
                "the relay's trust root differs from the pinned one; refusing to use this relay",
                given.to_bytes(),
                presented.to_bytes(),
            )
        resp = await conn.request(OpenProvisioning())
        opened = resp.body
        if not isinstance(opened, ProvisioningAddress) or len(opened.address) != ADDRESS_LENGTH:
            raise DecodeError("relay sent no provisioning address")
        shown = on_code(format_linking_code(opened.address, receiver.public_key))
        if inspect.isawaitable(shown):
            await shown
        data = await _wait_for_provision(conn, opened.address, receiver, timeout_s)
    finally:
        await conn.close()
    root = _pinned_root(data, options.trust_root, presented)
    # Only now, with a provision that opened and a trust root that agrees, is a file created
    # (exclusively: a file that appeared meanwhile is not ours to fill, or to remove).
    try:
        os.close(os.open(path_str, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        raise UsageError("a file appeared at that path while linking; nothing written") from None
    except OSError:
        raise StorageError("cannot create the database file") from None
    try:
        store = ClientStore.open_client(path_str, data.identity, _new_registration_id(rng))
    except BaseException:
        _remove_database(path_str)
        raise
    try:
        with store.transaction():
            store.set_meta("aci", data.aci)
            store.set_meta("relay_url", relay_url)
            store.set_meta("access_key", data.access_key)
            store.set_meta("registered", 0)
            store.set_meta("prekey_batch", batch)
            store.set_meta("low_water", low if low is not None else min(20, batch))
            store.set_meta("trust_root", root)
            if data.profile_key:
                store.set_meta("profile_key", data.profile_key)
        client = cls(
            store,
            rng=rng,
            clock=options.clock,
            prekey_batch=batch,
            prekey_low_water=low,
            allow_identified=options.allow_identified,
            kt_pending=options.kt_pending,
            kt_auditors=options.kt_auditors,
            kt_min_cosignatures=options.kt_min_cosignatures,
            kt_monitor_interval_s=options.kt_monitor_interval_s,
        )
    except BaseException:
        store.close()
        _remove_database(path_str)
        raise
    client.relay_ssl = options.relay_ssl
    try:
        await client._register(options.registration_token, data.provisioning_code)
    except BaseException:
        await client.close()
        _remove_database(path_str)
        raise
    return client


# -- the primary device: approving, listing, unlinking ----------------------------------------


def _require_primary(client: Client, what: str) -> None:
    if client.device_id != 1:
        raise UsageError("only the account's primary device (device 1) can " + what)


async def approve_link(client: Client, code: str) -> None:
    """:meth:`Client.approve_link <securemsg.client.Client.approve_link>` (see there)."""
    parsed = parse_linking_code(code)
    _require_primary(client, "link new devices")
    resp = await client._request(GetLinkingCode())
    issued = resp.body
    if not isinstance(issued, LinkingCode) or not issued.code:
        raise RelayError("relay sent no linking code", int(StatusCode.INTERNAL))
    store = client.store
    root = client.trust_root
    access_key = store.get_meta_bytes("access_key")
    if access_key is None or len(access_key) != ACCESS_KEY_LENGTH:
        raise UsageError("this device holds no access key to hand on")
    data = ProvisionData(
        identity=store.get_identity_key_pair(),
        aci=client.aci,
        provisioning_code=issued.code,
        access_key=access_key,
        trust_root=b"" if root is None else root.to_bytes(),
        profile_key=store.get_meta_bytes("profile_key") or b"",
        relay_url=client.relay_url,
        user_agent="securemsg " + __version__,
    )
    envelope = seal_provision(data, parsed.public_key, client._rng)
    try:
        await client._request(SendProvisioning(parsed.address, envelope))
    except RelayError as exc:
        if exc.code == StatusCode.NOT_FOUND:
            raise LinkingCodeError(
                "the relay no longer knows this linking code (it expired, was used, or the "
                "new device stopped waiting): start linking again on the new device",
                "expired",
            ) from None
        raise


async def list_devices(client: Client) -> list[LinkedDevice]:
    """:meth:`Client.devices <securemsg.client.Client.devices>` (see there)."""
    resp = await client._request(GetDevices(uuid.UUID(client.aci).bytes))
    listed = resp.body
    if not isinstance(listed, Devices):
        raise RelayError("relay sent no device list", int(StatusCode.INTERNAL))
    ids = [d.device_id for d in listed.devices]
    if len(set(ids)) != len(ids) or not all(1 <= d <= MAX_DEVICE_ID for d in ids):
        raise DecodeError("relay sent an impossible device list")
    return sorted(
        (
            LinkedDevice(d.device_id, d.registration_id, d.device_id == client.device_id)
            for d in listed.devices
        ),
        key=lambda d: d.device_id,
    )


async def unlink_device(client: Client, device_id: int) -> None:
    """:meth:`Client.unlink <securemsg.client.Client.unlink>` (see there)."""
    if type(device_id) is not int or not 2 <= device_id <= MAX_DEVICE_ID:
        raise UsageError("device_id must be 2..127 (the primary device cannot be unlinked)")
    _require_primary(client, "unlink devices")
    await client._request(RemoveDevice(device_id))
    store = client.store
    address = ProtocolAddress(client.aci, device_id)
    await client._in_db(lambda: store.remove_session(address))
