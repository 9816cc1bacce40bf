"""The async client SDK: one device of one account, talking to a securemsg relay.

Theory of operation
-------------------
A :class:`Client` owns one device database (:class:`~securemsg.client.store.ClientStore`, a
SQLite file) holding its identity, prekeys, sessions, sender keys, contacts, groups and inbox.
Keys never leave it: the relay only ever receives public keys and ciphertext.

* **Registration** (:meth:`Client.register`) uploads the identity public key, a signed prekey,
  a last-resort Kyber prekey, batches of one-time EC and Kyber prekeys and our
  unidentified-access key, and proves possession of the identity key by signing the
  connection's challenge (XEdDSA). :meth:`Client.connect` authenticates the same way.
* **Key upkeep.** On every connect, and after receiving a PreKey message, the client asks the
  relay how many one-time prekeys are left and uploads a new batch below the low-water mark;
  the signed prekey (and last-resort Kyber prekey) is rotated when older than
  :data:`SIGNED_PREKEY_ROTATION_MS` (the three newest are kept for messages in flight).
* **1:1 sending** (:meth:`Client.send_text`): sessions are started from fetched bundles
  (PQXDH) for devices without one; the padded :class:`~securemsg.wire.content.Content` is
  encrypted per device and, if we know the recipient's access key, sealed (sealed sender v1,
  with a cached sender certificate) and sent over a *separate unauthenticated* connection so
  the relay learns no sender. Without an access key the send is identified. Every message
  carries our own access key, so the recipient can answer sealed. A device-list mismatch
  (``CONFLICT``) repairs sessions and retries.
* **Groups** (:meth:`Client.create_group`, :meth:`Client.send_group_text`): sender keys. Our
  sender-key distribution message goes 1:1 to each member device first (once), then each
  group message is encrypted once and fanned out as ONE sealed sender v2 upload the relay
  splits per recipient. The group id doubles as the distribution id.
* **Every device, exactly once** (linked devices). A send is encrypted to every current
  device of the recipient, and then a *transcript* of it (Signal's ``SyncMessage.Sent``:
  recipient or group, timestamp, the content) goes to our account's other devices, so each
  of them shows the conversation; a received transcript lands in the inbox as a message we
  sent (:attr:`ReceivedMessage.transcript`, with the sending device and the recipient).
  Transcripts go **identified**, over this device's authenticated connection, whatever the
  send they describe, as Signal's clients send them: sealed sender to our own account cannot
  leave the sending device out without naming it to the relay, and a device holds no session
  with itself. The relay thus learns that this device sent something at that moment (never
  to whom or what); an account with one device sends no transcripts (when we hold no
  session with another of our devices, the relay's device list is asked once per
  connection, and on each send for a while after :meth:`Client.approve_link`). Transcripts
  wait in the database until sent, so a lost connection delays them, never drops them.
  Group messages
  follow Signal too: the sealed sender v2 upload reaches every device of every *other*
  member, and our own other devices get the transcript instead of the group message.
  **Device lists change** (devices linked, unlinked, re-registered): the relay refuses a
  send whose device list is not the account's current one (``CONFLICT`` with
  ``MismatchedDevices``). The client then starts sessions with *missing* devices from their
  bundles, archives the sessions of *extra* (removed) devices (messages in flight from them
  still decrypt; nothing new is encrypted to them), archives and renews those of *stale*
  (re-registered) ones, and sends again: at most three attempts, then a typed ``CONFLICT``
  error and nothing delivered, so a relay cannot make the client loop. A new device of a
  group member is sent our sender key before the group message, which is then encrypted
  again; when a device that had our sender key is removed, that sender key is replaced (a
  new chain to every current device), so the removed device cannot read what follows.
  Bundles for our own account must carry our own identity key.
* **Receiving** runs in a background task: the envelopes already pushed (up to
  :data:`RECEIVE_BATCH`) are decrypted together and, per envelope, the new session /
  sender-key state, the decrypted message (in ``client_inbox``) and any learned contact or
  group are written in a nested transaction of ONE store transaction for the batch; only
  after that commit are they acknowledged (one ``Ack``). An envelope that fails is recorded
  or left out without touching the others. A crash before the ack means the relay pushes them
  again, the inbox already knows their ids, and they are acknowledged without being shown
  twice. :meth:`Client.receive` hands each inbox message to the application exactly once.
* **The event loop never waits for the database** on the receive and send paths: that work
  (decrypting, encrypting, every SQLite call and fsync) runs on the device database's own
  thread (:class:`~securemsg.aio.sqlite.AsyncSqliteProtocolStore`). Set-up and inspection
  (:meth:`Client.create`, :meth:`Client.register`, :meth:`Client.add_contact`,
  :meth:`Client.create_group`, :meth:`Client.failures`, :attr:`Client.store`) still touch the
  database from the loop, taking turns with that thread.
* **Connection loss** is followed by a bounded number of reconnect attempts.
* **Linked devices** (:mod:`securemsg.client.devices`): :meth:`Client.link` makes a new
  device of an existing account (it shows a linking code, the primary device approves it with
  :meth:`Client.approve_link`, and the account's identity arrives sealed to a one-time key);
  :meth:`Client.devices` lists the account's devices and :meth:`Client.unlink` (primary only)
  removes one. A removed device is told by the relay and raises
  :class:`~securemsg.errors.DeviceRemovedError` from then on, without reconnecting.

* **What the client refuses from its relay.** A relay whose trust root differs from the
  pinned one (checked at :meth:`Client.register` and on every connection:
  :class:`~securemsg.errors.TrustRootMismatch`, nothing written). That check only catches
  misconfiguration (the wrong relay, a mistyped key): it is the relay's own claim, and a
  hostile relay simply presents the pinned key. The protection is certificate validation on
  receive: a sealed message is accepted only if its sender certificate validates against the
  pinned trust root. Without a pinned root, :meth:`Client.register` pins the relay's (trust on
  first use; compare :attr:`Client.trust_root` out of band). A sender certificate the relay
  issues to us is used only if it names our ACI, device id and identity key. The relay's
  words (status messages) reach exceptions and log lines escaped and bounded
  (:func:`~securemsg.client.connection.relay_text`); message text never appears in a repr.
  A send that asked for
  sealed sender and cannot have it (no access key, or the relay refuses unidentified
  delivery) raises :class:`~securemsg.errors.SealedDeliveryRefused` and sends nothing
  identified, unless the caller allowed identified delivery (``allow_identified``, per
  client or per call). Group sends (the sender-key distribution and the message) follow
  the same rule.
* **Retry requests.** An envelope that cannot be decrypted is acknowledged (it cannot block
  the queue) but never silently dropped: it is kept in a bounded failure record with its
  ciphertext and a reason (:meth:`Client.failures`), and handed to the application once as
  a :class:`DecryptionFailure` (:meth:`Client.receive_failure`). If the sender is
  authenticated (identified envelope, or sealed with a valid certificate) and decryption
  proper failed, the client sends libsignal's ``DecryptionErrorMessage`` (in a
  ``PlaintextContent``, sealed when it can) to the sender's device. A sender receiving one
  looks up the content it sent at that timestamp (kept one day, bounded) and sends it
  again, archiving its session first if the request names the session's current sending
  ratchet key; the recipient's inbox deduplicates by (sender, device, timestamp), so the
  application sees the message once. Retry requests are not authenticated (see
  :meth:`Client._apply_retry_request`): one only brings a content back to the account and a
  device it was sent to, and the resend goes the way the original send was allowed to go
  (a sealed-only content is resent sealed or recorded as not resent, never identified).

:attr:`Client.errors` counts undecryptable envelopes. Errors are securemsg's typed errors:
:class:`~securemsg.errors.RelayError` for the relay (``code``), ``UsageError`` for misuse.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import random
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

from securemsg import cipher
from securemsg.aio.sqlite import AsyncSqliteProtocolStore
from securemsg.client.connection import CONNECTION_LOST, RelayConnection
from securemsg.client.devices import LinkedDevice
from securemsg.client.kt import ClientKeyTransparency, KtMonitorResult, KtWarning
from securemsg.client.store import (
    ClientStore,
    FailureRow,
    InboxRow,
    SentRecord,
    StoredGroup,
    redacted_repr,
)
from securemsg.crypto.curve25519 import PublicKey
from securemsg.crypto.kyber1024 import KyberPublicKey
from securemsg.crypto.rng import Rng, SystemRng
from securemsg.errors import (
    DecodeError,
    DeviceRemovedError,
    DuplicateMessageError,
    InvalidKeyError,
    InvalidMessageError,
    InvalidPreKeyError,
    InvalidSignatureError,
    KeyTransparencyError,
    KeyTransparencyMismatch,
    KeyTransparencyPending,
    MessageGapTooLargeError,
    NoSessionError,
    PeerError,
    RelayError,
    SealedDeliveryRefused,
    SealedSenderError,
    SecureMsgError,
    StorageError,
    TrustRootMismatch,
    UnsupportedVersionError,
    UntrustedIdentityError,
    UsageError,
)
from securemsg.groups import (
    create_sender_key_distribution_message,
    group_decrypt,
    group_encrypt,
    process_sender_key_distribution_message,
)
from securemsg.limits import MAX_DEVICE_ID, REGISTRATION_ID_MASK
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.identity_and_prekeys import (
    IdentityKey,
    IdentityKeyPair,
    KyberPreKeyRecord,
    PreKeyBundle,
    PreKeyRecord,
    SignedPreKeyRecord,
)
from securemsg.protocol.sealed_sender import (
    ContentHint,
    SenderCertificate,
    UnidentifiedSenderMessageContent,
)
from securemsg.protocol.sender_keys import SenderKeyRecord
from securemsg.relay_protocol.frames import (
    ACCESS_KEY_LENGTH,
    Ack,
    Authenticate,
    Bundles,
    DeviceBundle,
    Devices,
    Envelope,
    EnvelopeType,
    FetchBundles,
    GetDevices,
    GetPreKeyCounts,
    GetSenderCertificate,
    GetServerTrustRoot,
    OneTimePreKey,
    OutgoingMessage,
    PreKeyCounts,
    QueueEmpty,
    RecipientAccess,
    Register,
    Registered,
    Request,
    Response,
    RotateSignedPreKey,
    SenderCertificateResponse,
    SendMessage,
    SendMultiRecipient,
    SendResult,
    SendSealed,
    ServerTrustRoot,
    SignedPreKey,
    StatusCode,
    UploadPreKeys,
    auth_message,
)
from securemsg.sealed_sender import (
    sealed_sender_decrypt_to_usmc,
    sealed_sender_encrypt,
    sealed_sender_encrypt_from_usmc,
    sealed_sender_multi_recipient_encrypt,
)
from securemsg.wire.content import (
    MAX_CONTENT_TIMESTAMP,
    Content,
    DecryptionErrorMessage,
    GroupContext,
    SentTranscript,
    decode_padded_content,
    decryption_error_from_plaintext,
    encode_padded_content,
    plaintext_content_for,
)
from securemsg.wire.messages import (
    CiphertextMessageType,
    PlaintextContent,
    PreKeySignalMessage,
    SenderKeyDistributionMessage,
    SenderKeyMessage,
)

__all__ = [
    "DEFAULT_PREKEY_BATCH",
    "DEFAULT_PREKEY_LOW_WATER",
    "MAX_RESENDS",
    "RECEIVE_BATCH",
    "SIGNED_PREKEY_ROTATION_MS",
    "Client",
    "DecryptionFailure",
    "ReceivedMessage",
]

_log = logging.getLogger("securemsg.client")
#: Most entries kept in Client.kt_warnings (the oldest are dropped).
_MAX_KT_WARNINGS = 100
_T = TypeVar("_T")

#: One-time prekeys (of each kind) generated and uploaded per batch.
DEFAULT_PREKEY_BATCH: Final = 100
#: Upload a new batch when the relay holds fewer one-time prekeys of a kind than this.
DEFAULT_PREKEY_LOW_WATER: Final = 20
#: Most received envelopes decrypted and committed in one transaction (and acknowledged in
#: one ``Ack``): the ones already queued when the client gets to them.
RECEIVE_BATCH: Final = 64
#: Rotate the signed prekey (and the last-resort Kyber prekey) after this age (2 days).
SIGNED_PREKEY_ROTATION_MS: Final = 2 * 24 * 3600 * 1000
#: Keep this many signed / last-resort prekeys (the newest) for messages still in flight.
_KEEP_SIGNED: Final = 3
#: Fetch a new sender certificate when the cached one expires within this margin (1 hour).
_CERT_MARGIN_MS: Final = 3600 * 1000
#: Reconnect attempts after a dropped connection (delays 0.1 s doubling up to 2 s).
_RECONNECT_ATTEMPTS: Final = 8
#: A connection that lasted less than this (seconds) before it dropped does not reset the
#: reconnect delay: the first delay of the next reconnect doubles instead, up to
#: _MAX_RECONNECT_DELAY_S, so a relay that accepts and drops at once is not hammered.
_STABLE_CONNECTION_S: Final = 30.0
_MAX_RECONNECT_DELAY_S: Final = 60.0
#: After approving a link, how long the new device may take to register (15 minutes; the
#: relay's linking codes last 10 by default): until then every send asks the relay whether
#: our account has other devices.
_LINK_WINDOW_MS: Final = 15 * 60 * 1000
#: Retries of a send after a device-list mismatch.
_SEND_ATTEMPTS: Final = 3
#: The relay accepts registration ids 1..16380.
_MAX_REGISTRATION_ID: Final = 16380
#: A sent content is sent again at most this many times in answer to retry requests (a
#: relay replaying one request cannot make us send it again and again).
MAX_RESENDS: Final = 3


@dataclass(frozen=True, slots=True)
class ReceivedMessage:
    """A decrypted message, as the application sees it.

    Attributes:
        sender_aci: the sender's ACI (from the certificate for a sealed message).
        sender_device: the sender's device id.
        text: the message text (the repr shows its length only).
        sent_timestamp: the sender's timestamp (Unix ms).
        server_timestamp: when the relay accepted it (Unix ms).
        group_id: the group's id for a group message, else None.
        group_title: the group's title for a group message, else None.
        sealed: True if the message came as sealed sender (an ``UNIDENTIFIED_SENDER``
            envelope, sent over an unauthenticated connection): the relay was not told who
            sent it, and the sender was taken from a certificate that validated against our
            pinned trust root. False if it came identified (the relay knows the sender).
        envelope_id: the relay's id of the envelope it came in.
        transcript: True for a message *we* sent from another device of our account (a sync
            transcript): ``sender_aci`` is then our own ACI and ``sender_device`` the device
            that sent it; ``destination_aci`` (1:1) or ``group_id`` says to whom.
        destination_aci: for a transcript of a 1:1 message, its recipient; else None.
        sender_devices: how many devices of the sender this device knows of (holds a
            session with; for our own account, this device included; at least 2 when the
            message came from a device other than the primary, device 1). When it is more
            than 1, ``sender_device`` tells them apart.
    """

    sender_aci: str
    sender_device: int
    text: str
    sent_timestamp: int
    server_timestamp: int
    group_id: bytes | None
    group_title: str | None
    sealed: bool
    envelope_id: bytes
    transcript: bool = False
    destination_aci: str | None = None
    sender_devices: int = 1

    def __repr__(self) -> str:  # the text's length only: no plaintext in logs or tracebacks
        return redacted_repr(self, frozenset({"text"}))


@dataclass(frozen=True, slots=True)
class DecryptionFailure:
    """An envelope that could not be decrypted, as the application sees it (an event).

    The envelope is acknowledged (it cannot block the queue) but not lost: it is kept in a
    bounded local record (:meth:`Client.failures`) with its ciphertext.

    Attributes:
        envelope_id: the relay's id of the envelope.
        server_timestamp: when the relay accepted it (Unix ms).
        sent_timestamp: the timestamp the sender gave it (Unix ms; its id on their side).
        sealed: whether it came as sealed sender.
        sender_aci: the sender, if known (identified envelope, or a sealed one whose
            certificate validated); else None.
        sender_device: the sender's device, if known.
        reason: a short machine-readable reason, e.g. ``"invalid-message"``,
            ``"certificate-untrusted"``, ``"sealed-unopenable"``, ``"no-session"``.
        description: the reason in words, for people.
        retry: what became of the retry request: ``"sent"``, ``"pending"``, ``"not-sent"``
            (no sealed route and identified sends are not allowed), ``"failed"`` (the send
            failed), ``"impossible"`` (sender unknown or not worth a retry).
        recorded_at: when we recorded it (Unix ms).
    """

    envelope_id: bytes
    server_timestamp: int
    sent_timestamp: int
    sealed: bool
    sender_aci: str | None
    sender_device: int | None
    reason: str
    description: str
    retry: str
    recorded_at: int


class _NeedsKtCheck(Exception):
    """Raised on the database thread: this envelope would start a session with an account
    whose identity key was never checked against the key-transparency directory; the batch
    stops here (nothing of this envelope is written) until the event loop has looked it up."""

    def __init__(self, aci: str, identity_key: bytes) -> None:
        super().__init__(aci)
        self.aci = aci
        self.identity_key = identity_key


#: Most first-contact keys remembered as checked (accepted or refused) in one session.
_MAX_KT_CHECKED: Final = 1024


class _Attempt:
    """What is known about an envelope while it is being decrypted (for the failure record)."""

    __slots__ = ("contents", "msg_type", "sender", "stage")

    def __init__(self) -> None:
        self.stage = "open"
        self.sender: ProtocolAddress | None = None
        self.msg_type: CiphertextMessageType | None = None
        self.contents = b""


_DESCRIPTIONS: Final[dict[str, str]] = {
    "no-trust-root": "no trust root is pinned, so a sealed message cannot be checked",
    "sealed-unopenable": "the sealed envelope could not be opened (damaged, or not for us)",
    "certificate-untrusted": "the sender certificate is not signed by the pinned trust root "
    "(the relay may be using another trust root)",
    "certificate-revoked": "the sender certificate's server key is revoked",
    "certificate-expired": "the sender certificate has expired",
    "certificate-invalid": "the sender certificate did not validate",
    "self-send": "a sealed message claiming to come from this very device",
    "unexpected-type": "the sealed envelope holds a message type we do not accept",
    "invalid-message": "the message failed authentication: damaged, forged, or the session "
    "with the sender is out of step",
    "no-session": "there is no session (or sender key) with the sender to decrypt it",
    "untrusted-identity": "the sender's identity key changed: compare safety numbers",
    "invalid-prekey": "the message used a prekey this device no longer has",
    "gap-too-large": "the message is too far ahead of the sender's chain",
    "malformed": "the message bytes are malformed",
    "unsupported-version": "the message uses a protocol version we do not speak",
    "invalid-key": "the message carries an unusable key",
    "key-transparency": "a first message from an account whose identity key the relay's "
    "key-transparency directory does not prove",
    "invalid-signature": "the message's signature did not verify",
    "invalid-content": "the message decrypted but its content was refused",
    "error": "the message could not be processed",
}


def _failure_reason(exc: SecureMsgError, stage: str, sealed: bool) -> str:
    """A short reason code for a failed envelope (see :data:`_DESCRIPTIONS`)."""
    if stage == "content" and not isinstance(exc, StorageError):
        return "invalid-content"
    if isinstance(exc, SealedSenderError):
        if exc.reason in ("untrusted", "revoked", "expired"):
            return "certificate-" + exc.reason
        if exc.reason in ("self-send", "unexpected-type", "no-trust-root"):
            return exc.reason
        if stage == "certificate":
            return "certificate-invalid"
        return "sealed-unopenable" if stage == "open" else "invalid-message"
    if sealed and stage == "open" and isinstance(exc, PeerError):
        return "sealed-unopenable"
    for cls, reason in (
        (KeyTransparencyError, "key-transparency"),
        (UnsupportedVersionError, "unsupported-version"),
        (DecodeError, "malformed"),
        (InvalidMessageError, "invalid-message"),
        (NoSessionError, "no-session"),
        (UntrustedIdentityError, "untrusted-identity"),
        (InvalidPreKeyError, "invalid-prekey"),
        (MessageGapTooLargeError, "gap-too-large"),
        (InvalidKeyError, "invalid-key"),
        (InvalidSignatureError, "invalid-signature"),
    ):
        if isinstance(exc, cls):
            return reason
    return "error"


def _connection_lost(exc: SecureMsgError) -> bool:
    return isinstance(exc, RelayError) and exc.code == CONNECTION_LOST


def _aci_bytes(aci: str) -> bytes:
    return uuid.UUID(aci).bytes


def _normalize_aci(aci: object) -> str:
    if not isinstance(aci, str):
        raise UsageError("an ACI must be a UUID string")
    try:
        return str(uuid.UUID(aci))
    except ValueError:
        raise UsageError("not an ACI (a UUID string expected)") from None


def _archive_sessions(store: ClientStore, addresses: Sequence[ProtocolAddress]) -> None:
    """Archive the current sessions with ``addresses`` (one transaction): they are no longer
    encrypted to, but still decrypt messages that were in flight."""
    with store.transaction():
        for address in addresses:
            record = store.load_session(address)
            if record is not None and record.current is not None:
                store.store_session(address, record.archive_current_state())


def _system_clock() -> int:
    return time.time_ns() // 1_000_000


def _public_key(value: PublicKey | bytes | str | None) -> PublicKey | None:
    if value is None or isinstance(value, PublicKey):
        return value
    if isinstance(value, str):
        try:
            value = bytes.fromhex(value)
        except ValueError:
            raise UsageError("trust root must be hex") from None
    return PublicKey.from_bytes(value)


class Client:
    """One device of one account (see the module docstring).

    Create with :meth:`create` (new device) or :meth:`open` (existing database). Use from one
    event loop; close with :meth:`close` or ``async with``.

    Sealed sender fails closed: a send that asks for sealed delivery (the default) and cannot
    have it raises :class:`~securemsg.errors.SealedDeliveryRefused` and sends nothing
    identified, unless identified delivery is allowed (``allow_identified`` here, or per
    call).

    Attributes:
        errors: how many envelopes could not be decrypted (recorded and acknowledged).
        last_send_sealed: whether the last 1:1 send went sealed (False after an identified
            send the caller allowed).
    """

    def __init__(
        self,
        store: ClientStore,
        *,
        rng: Rng | None = None,
        clock: Callable[[], int] | None = None,
        prekey_batch: int | None = None,
        prekey_low_water: int | None = None,
        relay_url: str | None = None,
        allow_identified: bool = False,
        kt_pending: str = "warn",
        kt_auditors: Sequence[bytes] = (),
        kt_min_cosignatures: int = 0,
        kt_monitor_interval_s: float = 3600.0,
    ) -> None:
        """Wrap an open client store (internal: use :meth:`create` / :meth:`open`).

        Raises:
            StorageError: the store holds no client identity.
        """
        self._store = store
        # Every database call of the receive and send paths runs on this store's own thread
        # (securemsg.aio.sqlite), so the event loop never waits for SQLite or an fsync.
        self._db = AsyncSqliteProtocolStore._wrap(store)
        self._rng: Rng = rng if rng is not None else SystemRng()
        self._clock = clock if clock is not None else _system_clock
        batch = prekey_batch if prekey_batch is not None else store.get_meta("prekey_batch")
        low = prekey_low_water if prekey_low_water is not None else store.get_meta("low_water")
        batch = DEFAULT_PREKEY_BATCH if batch is None else batch
        low = min(DEFAULT_PREKEY_LOW_WATER, batch) if low is None else low
        if type(batch) is not int or type(low) is not int or not 1 <= batch <= 100:
            raise UsageError("prekey_batch must be 1..100")
        if not 0 <= low <= batch:
            raise UsageError("prekey_low_water must be 0..prekey_batch")
        self._batch = batch
        self._low_water = low
        aci = store.get_meta_str("aci")
        if aci is None:
            raise StorageError("the database holds no client account")
        self._aci = aci
        self._device_id = store.get_meta_int("device_id", 1)
        self._address = ProtocolAddress(aci, self._device_id)
        if relay_url is not None:
            store.set_meta("relay_url", relay_url)
        self._relay_url = store.get_meta_str("relay_url") or ""
        access_key = store.get_meta_bytes("access_key")
        if access_key is None or len(access_key) != ACCESS_KEY_LENGTH:
            raise StorageError("the client's access key is missing or corrupt")
        self._access_key = access_key
        root = store.get_meta_bytes("trust_root")
        self._trust_root = None if root is None else PublicKey.from_bytes(root)
        self._last_ts = store.get_meta_int("last_timestamp", 0)
        self._registered = store.get_meta_int("registered", 0) == 1
        self._conn: RelayConnection | None = None
        self._unidentified_conn: RelayConnection | None = None
        self._pump: asyncio.Task[None] | None = None
        self._reconnector: asyncio.Task[None] | None = None
        self._reconnect_delay = 0.1  # the first delay of the next reconnect (seconds)
        self._attached_at = 0.0  # loop time the current connection was attached
        self._ready = asyncio.Event()
        self._drained = asyncio.Event()
        self._inbox_event = asyncio.Event()
        self._sync_lock = asyncio.Lock()
        #: the relay said our account has no other device (asked again on each connection)
        self._known_alone = False
        #: Unix ms until which a device we approved may still register (see _alone)
        self._link_expected_until = 0
        self._closing = False
        self._removed = False
        self._prekeys_used = False
        self._allow_identified = bool(allow_identified)
        if kt_pending not in ("wait", "warn"):
            raise UsageError('kt_pending must be "wait" or "warn"')
        auditors = tuple(bytes(k) for k in kt_auditors)
        if any(len(k) != 32 for k in auditors):
            raise UsageError("auditor keys are 32-byte Ed25519 public keys")
        if type(kt_min_cosignatures) is not int or not 0 <= kt_min_cosignatures <= len(auditors):
            raise UsageError("kt_min_cosignatures must be 0..number of auditor keys")
        if not kt_monitor_interval_s > 0:
            raise UsageError("kt_monitor_interval_s must be positive")
        self._kt_pending = kt_pending
        self._kt = ClientKeyTransparency(store, auditors, kt_min_cosignatures)
        self._kt_interval_ms = int(kt_monitor_interval_s * 1000)
        self.errors = 0
        self.last_send_sealed = False
        #: TLS context for a ``wss://`` relay (None: the system's trusted CAs).
        self.relay_ssl: ssl.SSLContext | None = None
        #: What the ``kt_pending="warn"`` policy let through (oldest first, the last 100).
        self.kt_warnings: list[KtWarning] = []
        # first-contact identity keys looked up in the directory, accepted or refused (the
        # refusal is the typed error to record); index into the batch the lookup stopped at
        self._kt_accepted: set[tuple[str, bytes]] = set()
        self._kt_refused: dict[tuple[str, bytes], SecureMsgError] = {}
        self._kt_needed: tuple[int, _NeedsKtCheck] | None = None

    # -- creating and opening -------------------------------------------------------------

    @classmethod
    async def create(
        cls,
        path: str | os.PathLike[str],
        relay_url: str,
        trust_root: PublicKey | bytes | str | None = None,
        *,
        device_id: int = 1,
        aci: str | None = None,
        rng: Rng | None = None,
        clock: Callable[[], int] | None = None,
        prekey_batch: int = DEFAULT_PREKEY_BATCH,
        prekey_low_water: int | None = None,
        allow_identified: bool = False,
        kt_pending: str = "warn",
        kt_auditors: Sequence[bytes] = (),
        kt_min_cosignatures: int = 0,
        kt_monitor_interval_s: float = 3600.0,
    ) -> Client:
        """Create a new device database at ``path`` (a fresh identity and ACI).

        The file is created ``0600`` (owner only) whatever the umask; it holds the private keys.

        Args:
            path: the SQLite file to create (must not exist).
            relay_url: ``ws://host:port`` of the relay.
            trust_root: the relay's trust-root public key (33 bytes, hex, or a PublicKey) to
                pin for sealed sender; None to take it from the relay at registration
                (trust on first use).
            device_id: this device's id (1..127).
            aci: the account's ACI; None for a new random one.
            rng: randomness (default: the OS CSPRNG).
            clock: Unix time in ms (default: the system clock).
            prekey_batch: one-time prekeys per upload batch (1..100).
            prekey_low_water: refill when the relay holds fewer than this (default
                ``min(20, prekey_batch)``).
            allow_identified: let sends that cannot go sealed go identified (the relay then
                learns the sender); default False: they raise ``SealedDeliveryRefused``.
            kt_pending: what to do when a contact's identity key is not in a published
                key-transparency epoch yet: ``"wait"`` raises ``KeyTransparencyPending`` and
                starts no session; ``"warn"`` (default) starts the session with the
                unverified key, logs a warning and records a :class:`KtWarning` in
                :attr:`kt_warnings`. A key the directory has published is always verified.
            kt_auditors: Ed25519 public keys (32 bytes) of the auditors this client trusts.
            kt_min_cosignatures: how many of them must have cosigned an epoch head before
                the client accepts it (0: none required).
            kt_monitor_interval_s: how often :meth:`kt_monitor_if_due` checks our own
                account's key history (default hourly).

        Raises:
            UsageError: ``path`` exists, or a bad argument.
            StorageError: the database cannot be created.
        """
        if os.path.exists(os.fspath(path)):
            raise UsageError("a file already exists at that path (use Client.open)")
        if type(device_id) is not int or not 1 <= device_id <= 127:
            raise UsageError("device_id must be 1..127")
        root = _public_key(trust_root)
        rng = rng if rng is not None else SystemRng()
        identity = IdentityKeyPair.generate(rng)
        while True:
            reg_id = int.from_bytes(rng.random_bytes(2), "big") & REGISTRATION_ID_MASK
            if 1 <= reg_id <= _MAX_REGISTRATION_ID:
                break
        account = (
            _normalize_aci(aci)
            if aci is not None
            else str(uuid.UUID(bytes=rng.random_bytes(16), version=4))
        )
        store = ClientStore.open_client(path, identity, reg_id)
        try:
            with store.transaction():
                store.set_meta("aci", account)
                store.set_meta("device_id", device_id)
                store.set_meta("relay_url", relay_url)
                store.set_meta("access_key", rng.random_bytes(ACCESS_KEY_LENGTH))
                store.set_meta("registered", 0)
                store.set_meta("prekey_batch", prekey_batch)
                store.set_meta(
                    "low_water",
                    prekey_low_water
                    if prekey_low_water is not None
                    else min(DEFAULT_PREKEY_LOW_WATER, prekey_batch),
                )
                if root is not None:
                    store.set_meta("trust_root", root.to_bytes())
            return cls(
                store,
                rng=rng,
                clock=clock,
                prekey_batch=prekey_batch,
                prekey_low_water=prekey_low_water,
                allow_identified=allow_identified,
                kt_pending=kt_pending,
                kt_auditors=kt_auditors,
                kt_min_cosignatures=kt_min_cosignatures,
                kt_monitor_interval_s=kt_monitor_interval_s,
            )
        except BaseException:
            store.close()
            raise

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        relay_url: str | None = None,
        rng: Rng | None = None,
        clock: Callable[[], int] | None = None,
        prekey_batch: int | None = None,
        prekey_low_water: int | None = None,
        allow_identified: bool = False,
        kt_pending: str = "warn",
        kt_auditors: Sequence[bytes] = (),
        kt_min_cosignatures: int = 0,
        kt_monitor_interval_s: float = 3600.0,
    ) -> Client:
        """Reopen an existing device database (``relay_url`` replaces the stored one if given).

        ``allow_identified`` and the ``kt_*`` options are as for :meth:`create` (not stored:
        pass them on every open). A
        database file (or side file) other users may access is made ``0600`` with a warning.

        Raises:
            UsageError: no database at ``path``.
            StorageError: not a client database, or it cannot be read.
        """
        if not os.path.exists(os.fspath(path)):
            raise UsageError("no client database at that path (create or register first)")
        store = ClientStore.open_client(path)
        try:
            return cls(
                store,
                rng=rng,
                clock=clock,
                prekey_batch=prekey_batch,
                prekey_low_water=prekey_low_water,
                relay_url=relay_url,
                allow_identified=allow_identified,
                kt_pending=kt_pending,
                kt_auditors=kt_auditors,
                kt_min_cosignatures=kt_min_cosignatures,
                kt_monitor_interval_s=kt_monitor_interval_s,
            )
        except BaseException:
            store.close()
            raise

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- properties -----------------------------------------------------------------------

    @property
    def aci(self) -> str:
        """This account's ACI."""
        return self._aci

    @property
    def device_id(self) -> int:
        """This device's id."""
        return self._device_id

    @property
    def address(self) -> ProtocolAddress:
        """This device's protocol address."""
        return self._address

    @property
    def store(self) -> ClientStore:
        """The device database (for inspection; do not use it while a send is running)."""
        return self._store

    @property
    def registered(self) -> bool:
        """Whether :meth:`register` completed."""
        if not self._registered:  # once registered, always: no database read needed
            self._registered = self._store.get_meta_int("registered", 0) == 1
        return self._registered

    @property
    def relay_url(self) -> str:
        """The relay this device talks to."""
        return self._relay_url

    @property
    def trust_root(self) -> PublicKey | None:
        """The pinned trust-root public key (None until known)."""
        return self._trust_root

    @property
    def connected(self) -> bool:
        """Whether an authenticated connection is up."""
        return self._conn is not None and not self._conn.closed.is_set()

    @property
    def contact_card(self) -> str:
        """``ACI:ACCESSKEYHEX``: what another user needs to send to us sealed from the start
        (share it out of band; :meth:`add_contact` takes it)."""
        return self._aci + ":" + self._access_key.hex()

    def add_contact(self, card: str) -> str:
        """Remember another user's access key from their :attr:`contact_card`.

        Returns:
            The contact's ACI.

        Raises:
            UsageError: the card is malformed.
        """
        if not isinstance(card, str) or card.count(":") != 1:
            raise UsageError("a contact card is ACI:ACCESSKEYHEX")
        aci_text, key_hex = card.split(":")
        aci = _normalize_aci(aci_text)
        try:
            key = bytes.fromhex(key_hex)
        except ValueError:
            raise UsageError("the card's access key is not hex") from None
        if len(key) != ACCESS_KEY_LENGTH:
            raise UsageError("the card's access key must be 16 bytes")
        self._store.set_access_key(aci, key)
        return aci

    def _now(self) -> int:
        return int(self._clock())

    async def _anext_timestamp(self) -> int:
        """:meth:`_next_timestamp`, stored from the database's thread."""
        ts = max(self._now(), self._last_ts + 1)
        self._last_ts = ts
        await self._db.run(lambda s: s.set_meta("last_timestamp", ts))  # type: ignore[attr-defined]
        return ts

    async def _in_db(self, fn: Callable[[], _T]) -> _T:
        """Run ``fn`` (sync work on the device database) on the database's thread."""
        return await self._db.run(lambda _store: fn())

    # -- registration and connection --------------------------------------------------------

    def _sign_challenge(self, nonce: bytes, device_id: int | None = None) -> bytes:
        identity = self._store.get_identity_key_pair()
        device = self._device_id if device_id is None else device_id
        return identity.sign(auth_message(nonce, _aci_bytes(self._aci), device), self._rng)

    async def _check_trust_root(self, conn: RelayConnection) -> PublicKey:
        """Ask the relay for its trust root; refuse one other than the pinned root.

        Returns:
            The relay's trust root (equal to the pinned one, if one is pinned).

        Raises:
            TrustRootMismatch: a root is pinned and the relay presents another.
            RelayError: the relay sent no trust root, or refused.
            InvalidKeyError: the relay's trust root is not a valid key.
        """
        resp = await conn.request(GetServerTrustRoot())
        if not isinstance(resp.body, ServerTrustRoot):
            raise RelayError("relay sent no trust root", int(StatusCode.INTERNAL))
        presented = PublicKey.from_bytes(resp.body.public_key)
        pinned = self._trust_root
        if pinned is not None and presented.to_bytes() != pinned.to_bytes():
            raise TrustRootMismatch(
                "the relay's trust root differs from the pinned one; refusing to use this relay",
                pinned.to_bytes(),
                presented.to_bytes(),
            )
        return presented

    async def register(self, *, registration_token: bytes = b"") -> None:
        """Register this device with the relay; leaves the client connected.

        ``registration_token`` is for relays that admit registrations by invitation
        (``relay serve --registration-token-file``); others ignore it.

        First the relay's trust root is fetched and compared with the pinned one (or pinned,
        if none was given: trust on first use, so compare :attr:`trust_root` out of band). A
        mismatch raises before anything is generated, uploaded or written. This comparison
        only catches misconfiguration (a hostile relay presents the pinned key); what protects
        received sealed messages is that each sender certificate must validate against the
        pinned trust root.

        Raises:
            UsageError: already registered.
            TrustRootMismatch: the relay presents another trust root than the pinned one.
            RelayError: the relay refused (e.g. ``CONFLICT``: device already registered;
                ``FORBIDDEN``: no valid registration token; ``RATE_LIMITED``) or could not be
                reached (code ``CONNECTION_LOST``).
        """
        await self._register(registration_token, "")

    async def _register(self, registration_token: bytes, linking_code: str) -> None:
        """:meth:`register`; with ``linking_code`` (a new linked device, see
        :mod:`securemsg.client.devices`) the relay assigns the device id, which is stored."""
        if self.registered:
            raise UsageError("this device is already registered")
        device_id = 0 if linking_code else self._device_id
        conn = await RelayConnection.open(self._relay_url, ssl=self.relay_ssl)
        try:
            root = await self._check_trust_root(conn)
            kt_keys = await self._kt.pin(conn.request)
            store = self._store
            identity = store.get_identity_key_pair()
            now = self._now()
            with store.transaction():
                spk, last_resort = self._new_signed_keys(identity, now)
                pre_keys, kyber_keys = self._new_one_time_keys(identity, now, True, True)
            request = Register(
                aci=_aci_bytes(self._aci),
                device_id=device_id,
                registration_id=store.get_local_registration_id(),
                identity_key=identity.identity_key.to_bytes(),
                signed_pre_key=spk,
                last_resort_kyber_pre_key=last_resort,
                pre_keys=pre_keys,
                kyber_pre_keys=kyber_keys,
                unidentified_access_key=self._access_key,
                signature=self._sign_challenge(conn.challenge, device_id),
                registration_token=bytes(registration_token),
                linking_code=linking_code,
            )
            resp = await conn.request(request)
            if linking_code:
                assigned = resp.body.device_id if isinstance(resp.body, Registered) else 0
                if not 2 <= assigned <= MAX_DEVICE_ID:
                    raise RelayError("relay assigned no valid device id", int(StatusCode.INTERNAL))
                device_id = assigned
        except BaseException:
            await conn.close()
            raise
        with self._store.transaction():
            if linking_code:
                self._store.set_meta("device_id", device_id)
                self._device_id = device_id
                self._address = ProtocolAddress(self._aci, device_id)
            if self._trust_root is None:
                self._store.set_meta("trust_root", root.to_bytes())
            self._kt.store_keys(kt_keys)
            self._kt.start_pending_window(self._now())
            self._store.set_meta("registered", 1)
        self._registered = True
        self._trust_root = root
        self._attach(conn)

    async def connect(self) -> None:
        """Open and authenticate a connection, start receiving, and refresh the keys.

        Every connection (reconnects too) first checks the relay's trust root against the
        pinned one and is refused on a mismatch. That catches misconfiguration only; received
        sealed messages are protected by validating their sender certificates against the
        pinned root.

        Raises:
            UsageError: not registered yet.
            TrustRootMismatch: the relay presents another trust root than the pinned one.
            RelayError: authentication refused or the relay unreachable.
        """
        if not self.registered:
            raise UsageError("register this device first")
        if self._removed:
            raise self._removed_error()
        if self.connected:
            return
        self._closing = False
        await self._open_authenticated()
        await self.maintain_keys()

    async def _open_authenticated(self) -> None:
        conn = await RelayConnection.open(self._relay_url, ssl=self.relay_ssl)
        try:
            root = await self._check_trust_root(conn)
            if self._trust_root is None:  # registered by an older version without a pin
                raise TrustRootMismatch(
                    "no trust root is pinned for this device", b"", root.to_bytes()
                )
            kt_keys = await self._kt.pin(conn.request)
            if not self._kt.pinned:  # registered before key transparency: pinned now (TOFU)
                with self._store.transaction():
                    self._kt.store_keys(kt_keys)
            try:
                await conn.request(
                    Authenticate(
                        _aci_bytes(self._aci), self._device_id, self._sign_challenge(conn.challenge)
                    )
                )
            except RelayError as exc:
                if exc.code == StatusCode.NOT_FOUND:  # a valid proof, but no such device
                    raise self._mark_removed() from None
                raise
        except BaseException:
            await conn.close()
            raise
        self._attach(conn)

    def _attach(self, conn: RelayConnection) -> None:
        self._known_alone = False  # devices may have been linked while we were away
        self._attached_at = asyncio.get_running_loop().time()
        self._conn = conn
        self._drained.clear()
        self._ready.set()
        self._pump = asyncio.get_running_loop().create_task(self._pump_loop(conn))

    async def close(self) -> None:
        """Disconnect and close the database. Idempotent."""
        self._closing = True
        if self._reconnector is not None:
            self._reconnector.cancel()
            with contextlib.suppress(BaseException):
                await self._reconnector
        for conn in (self._conn, self._unidentified_conn):
            if conn is not None:
                await conn.close()
        if self._pump is not None:
            with contextlib.suppress(BaseException):
                async with asyncio.timeout(10):
                    await self._pump
        self._conn = self._unidentified_conn = None
        self._ready.clear()
        self._inbox_event.set()
        await self._db.close()

    async def _request(self, body: Request) -> Response:
        if not self.registered:
            raise UsageError("register this device first")
        if self._removed:
            raise self._removed_error()
        if not self.connected:
            if self._reconnector is None or self._reconnector.done():
                raise RelayError("not connected to the relay", CONNECTION_LOST)
            try:
                async with asyncio.timeout(15):
                    await self._ready.wait()
            except TimeoutError:
                raise RelayError("not connected to the relay", CONNECTION_LOST) from None
            if self._removed:  # the reconnect learned that this device was unlinked
                raise self._removed_error()
        conn = self._conn
        if conn is None:
            raise RelayError("not connected to the relay", CONNECTION_LOST)
        return await conn.request(body)

    async def _unidentified(self) -> RelayConnection:
        conn = self._unidentified_conn
        if conn is None or conn.closed.is_set():
            conn = await RelayConnection.open(self._relay_url, ssl=self.relay_ssl)
            try:  # this connection too must reach the relay we pinned
                await self._check_trust_root(conn)
            except BaseException:
                await conn.close()
                raise
            conn.reopen = self._unidentified  # the relay bounds these connections' life
            self._unidentified_conn = conn
        return conn

    async def _reconnect_loop(self) -> None:
        loop = asyncio.get_running_loop()
        if loop.time() - self._attached_at < _STABLE_CONNECTION_S:  # dropped soon after
            self._reconnect_delay = min(self._reconnect_delay * 2, _MAX_RECONNECT_DELAY_S)
        else:
            self._reconnect_delay = 0.1
        delay = self._reconnect_delay
        for _ in range(_RECONNECT_ATTEMPTS):
            await asyncio.sleep(delay * random.uniform(0.75, 1.25))  # jitter: no herd
            delay = min(delay * 2, max(2.0, self._reconnect_delay))
            if self._closing:
                return
            try:
                await self._open_authenticated()
            except DeviceRemovedError:
                _log.warning("this device was removed from its account; not reconnecting")
                return
            except RelayError as exc:
                if exc.code != CONNECTION_LOST:
                    _log.warning("reconnect refused: %s", exc)
                    return
                continue
            except SecureMsgError as exc:  # e.g. TrustRootMismatch: never retried
                _log.warning("reconnect refused: %s (%s)", exc, type(exc).__name__)
                return
            with contextlib.suppress(SecureMsgError):
                await self.maintain_keys()
            return
        _log.warning("gave up reconnecting to the relay")

    # -- prekeys ----------------------------------------------------------------------------

    def _new_signed_keys(
        self, identity: IdentityKeyPair, now: int
    ) -> tuple[SignedPreKey, SignedPreKey]:
        store = self._store
        spk_id = store.next_id("next_signed_pre_key_id")
        spk = SignedPreKeyRecord.generate(spk_id, identity, now, self._rng)
        store.save_signed_pre_key(spk_id, spk)
        kyber_id = store.next_id("next_kyber_pre_key_id")
        last_resort = KyberPreKeyRecord.generate(kyber_id, identity, now, self._rng)
        store.save_kyber_pre_key(kyber_id, last_resort, last_resort=True)
        store.set_meta("signed_pre_key_ts", now)
        for old in store.get_signed_pre_key_ids()[:-_KEEP_SIGNED]:
            store.remove_signed_pre_key(old)
        for old in store.get_kyber_pre_key_ids(last_resort=True)[:-_KEEP_SIGNED]:
            store.remove_kyber_pre_key(old)
        return (
            SignedPreKey(spk_id, spk.public_key.to_bytes(), spk.signature),
            SignedPreKey(kyber_id, last_resort.public_key.to_bytes(), last_resort.signature),
        )

    def _new_one_time_keys(
        self, identity: IdentityKeyPair, now: int, ec: bool, kyber: bool
    ) -> tuple[tuple[OneTimePreKey, ...], tuple[SignedPreKey, ...]]:
        store = self._store
        pre_keys: list[OneTimePreKey] = []
        kyber_keys: list[SignedPreKey] = []
        if ec:
            first = store.next_id("next_pre_key_id", self._batch)
            for key_id in range(first, first + self._batch):
                record = PreKeyRecord.generate(key_id, self._rng)
                store.save_pre_key(key_id, record)
                pre_keys.append(OneTimePreKey(key_id, record.public_key.to_bytes()))
        if kyber:
            first = store.next_id("next_kyber_pre_key_id", self._batch)
            for key_id in range(first, first + self._batch):
                krec = KyberPreKeyRecord.generate(key_id, identity, now, self._rng)
                store.save_kyber_pre_key(key_id, krec)
                kyber_keys.append(SignedPreKey(key_id, krec.public_key.to_bytes(), krec.signature))
        return tuple(pre_keys), tuple(kyber_keys)

    async def prekey_counts(self) -> PreKeyCounts:
        """How many one-time prekeys the relay still holds for this device.

        Raises:
            RelayError: refused or not connected.
        """
        resp = await self._request(GetPreKeyCounts())
        if not isinstance(resp.body, PreKeyCounts):
            raise RelayError("relay sent no prekey counts", int(StatusCode.INTERNAL))
        return resp.body

    async def maintain_keys(self) -> None:
        """Top up one-time prekeys below the low-water mark; rotate an old signed prekey.

        Raises:
            RelayError: refused or not connected.
        """
        self._prekeys_used = False
        store = self._store
        counts = await self.prekey_counts()
        need_ec = counts.ec_count < self._low_water
        need_kyber = counts.kyber_count < self._low_water
        now = self._now()
        if need_ec or need_kyber:

            def new_keys() -> tuple[tuple[OneTimePreKey, ...], tuple[SignedPreKey, ...]]:
                with store.transaction():
                    return self._new_one_time_keys(
                        store.get_identity_key_pair(), now, need_ec, need_kyber
                    )

            pre_keys, kyber_keys = await self._in_db(new_keys)
            await self._request(UploadPreKeys(pre_keys=pre_keys, kyber_pre_keys=kyber_keys))
            _log.info("uploaded %d EC and %d Kyber prekeys", len(pre_keys), len(kyber_keys))
        signed_ts = await self._in_db(lambda: store.get_meta_int("signed_pre_key_ts", 0))
        if now - signed_ts >= SIGNED_PREKEY_ROTATION_MS:
            await self.rotate_signed_prekey()

    async def rotate_signed_prekey(self) -> None:
        """Replace the signed prekey and the last-resort Kyber prekey now.

        Raises:
            RelayError: refused or not connected.
        """
        store = self._store
        now = self._now()

        def new_keys() -> tuple[SignedPreKey, SignedPreKey]:
            with store.transaction():
                return self._new_signed_keys(store.get_identity_key_pair(), now)

        spk, last_resort = await self._in_db(new_keys)
        await self._request(RotateSignedPreKey(spk, last_resort))

    async def rotate_access_key(self) -> bytes:
        """Replace this account's unidentified-access key (e.g. after a contact card leaked).

        A fresh 16-byte key is uploaded first and kept locally only once the relay accepted
        it; from then on the relay refuses sealed sends and ``GetDevices`` with the old key.
        Contacts learn the new key from the next message we send them, or from the new
        :attr:`contact_card`. The key is per account: other devices of the account keep
        announcing the old one until they are given the new key.

        Returns:
            The new access key.

        Raises:
            RelayError: refused or not connected (the old key then stays in use).
        """
        from securemsg.relay_protocol.frames import SetAccessKey

        key = self._rng.random_bytes(ACCESS_KEY_LENGTH)
        await self._request(SetAccessKey(key))
        self._store.set_meta("access_key", key)
        self._access_key = key
        return key

    # -- linked devices (the work is in securemsg.client.devices) -------------------------

    @classmethod
    async def link(
        cls,
        path: str | os.PathLike[str],
        relay_url: str,
        *,
        on_code: Callable[[str], object],
        trust_root: PublicKey | bytes | str | None = None,
        timeout_s: float = 600.0,
        registration_token: bytes = b"",
        rng: Rng | None = None,
        clock: Callable[[], int] | None = None,
        relay_ssl: ssl.SSLContext | None = None,
        prekey_batch: int = DEFAULT_PREKEY_BATCH,
        prekey_low_water: int | None = None,
        allow_identified: bool = False,
        kt_pending: str = "warn",
        kt_auditors: Sequence[bytes] = (),
        kt_min_cosignatures: int = 0,
        kt_monitor_interval_s: float = 3600.0,
    ) -> Client:
        """Link a NEW device to an existing account and register it; returns it connected.

        Opens a provisioning address on the relay, calls ``on_code(code)`` with the linking
        code to show (it may be a coroutine function; the CLI prints the code and a QR code),
        and waits up to ``timeout_s`` seconds for the account's primary device to approve it
        (:meth:`approve_link`). The provisioning envelope is opened, the device database is
        created at ``path`` (``0600``) with the account's identity, ACI, access key and trust
        root, and the device registers; the relay assigns its id (:attr:`device_id`).

        Nothing is written if any step fails: the database is created only after the
        envelope opened, and removed again if registration fails. ``registration_token`` is
        for relays that admit registrations by invitation (as for :meth:`register`). The other
        options are as for :meth:`create`; ``relay_ssl`` is the TLS context for a ``wss://``
        relay.

        Raises:
            UsageError: ``path`` exists, or a bad argument.
            LinkingCodeError: reason ``"expired"``: nobody approved the code in time.
            ProvisioningError: the envelope was refused (tampered, sealed to another key, a
                replay, or malformed); see its ``reason``.
            TrustRootMismatch: the relay presents another trust root than ``trust_root`` or
                than the one the account pins, or the account pins another than
                ``trust_root``.
            RelayError: the relay refused (e.g. ``FORBIDDEN``: the one-time code in the
                envelope is used or expired) or is unreachable (``CONNECTION_LOST``).
        """
        from securemsg.client.devices import LinkOptions, link_device

        options = LinkOptions(
            timeout_s=timeout_s,
            registration_token=bytes(registration_token),
            trust_root=_public_key(trust_root),
            rng=rng if rng is not None else SystemRng(),
            clock=clock,
            relay_ssl=relay_ssl,
            prekey_batch=prekey_batch,
            prekey_low_water=prekey_low_water,
            allow_identified=allow_identified,
            kt_pending=kt_pending,
            kt_auditors=tuple(kt_auditors),
            kt_min_cosignatures=kt_min_cosignatures,
            kt_monitor_interval_s=kt_monitor_interval_s,
        )
        return await link_device(cls, path, relay_url, on_code, options)

    async def approve_link(self, code: str) -> None:
        """Link the new device showing ``code`` to this account (the primary device only).

        Hands the new device the account's identity key pair, ACI, access key and trust root,
        sealed to the code's one-time key (the relay carries only ciphertext), with a one-time
        registration code from the relay.

        Raises:
            LinkingCodeError: the code is malformed or mistyped (checked before anything is
                sent), or ``"expired"``: the relay no longer holds the code's address.
            UsageError: this is not the primary device, or not registered.
            RelayError: the relay refused or is unreachable.
        """
        from securemsg.client.devices import approve_link

        await approve_link(self, code)
        # The new device registers later: ask the relay's device list on each send until then.
        self._link_expected_until = self._now() + _LINK_WINDOW_MS

    async def devices(self) -> list[LinkedDevice]:
        """This account's devices, as the relay lists them, by id.

        Raises:
            RelayError: refused or not connected.
            DecodeError: the relay's list is impossible (a device id out of range, twice).
        """
        from securemsg.client.devices import list_devices

        return await list_devices(self)

    async def unlink(self, device_id: int) -> None:
        """Remove another device of this account (the primary device only).

        The relay deletes the device, its keys and its mailbox, tells it (it raises
        :class:`~securemsg.errors.DeviceRemovedError` from then on), and answers later
        sends that still list it with a device mismatch, so senders stop encrypting to it.
        This device's session with it is removed too.

        Raises:
            UsageError: not the primary device, or ``device_id`` is not 2..127.
            RelayError: refused (``NOT_FOUND``: no such device) or not connected.
        """
        from securemsg.client.devices import unlink_device

        await unlink_device(self, device_id)

    @property
    def removed(self) -> bool:
        """Whether the relay said this device was removed from its account (unlinked)."""
        return self._removed

    def _removed_error(self) -> DeviceRemovedError:
        return DeviceRemovedError(
            "this device was removed from its account (unlinked by the primary device)",
            int(StatusCode.NOT_FOUND),
        )

    def _mark_removed(self) -> DeviceRemovedError:
        """Remember that this device was unlinked; wake every waiter so it raises."""
        self._removed = True
        self._ready.set()  # _request waiting for a reconnect re-checks and raises
        self._inbox_event.set()  # receive() raises once the inbox is empty
        return self._removed_error()

    # -- sending ----------------------------------------------------------------------------

    async def _sender_certificate(self) -> SenderCertificate:
        """Our sender certificate for sealed sends (cached until an hour before it expires).

        A certificate the relay issues is used (and cached) only if it chains to the pinned
        trust root and names our own ACI, device id and identity key: a relay handing us a
        certificate for someone else's key would make our sealed messages undecryptable, or
        have them attributed to another sender.

        Raises:
            SealedSenderError: the certificate does not validate against the pinned trust
                root (its ``reason``), or names another account, device or identity key
                (``reason`` ``"key-mismatch"``); it is not used and not cached.
            DecodeError: the relay sent a malformed certificate.
            RelayError: refused or not connected.
        """
        store = self._store
        now = self._now()
        cached = await self._in_db(lambda: store.get_meta_bytes("sender_certificate"))
        if cached is not None:
            try:
                cert = SenderCertificate.from_bytes(cached)
                if cert.expiration - now > _CERT_MARGIN_MS:
                    return cert
            except DecodeError:
                pass
        resp = await self._request(GetSenderCertificate())
        if not isinstance(resp.body, SenderCertificateResponse):
            raise RelayError("relay sent no sender certificate", int(StatusCode.INTERNAL))
        cert = SenderCertificate.from_bytes(resp.body.certificate)
        if self._trust_root is None:
            raise UsageError("no trust root pinned")
        cert.validate(self._trust_root, now)
        ours = await self._in_db(
            lambda: store.get_identity_key_pair().identity_key.public_key.to_bytes()
        )
        if (
            cert.sender_uuid != self._aci
            or cert.sender_device_id != self._device_id
            or cert.key.to_bytes() != ours
        ):
            raise SealedSenderError(
                "the relay issued a sender certificate for another account, device or "
                "identity key; not used",
                "key-mismatch",
            )
        await self._in_db(lambda: store.set_meta("sender_certificate", cert.to_bytes()))
        return cert

    def _bundle(self, b: DeviceBundle) -> PreKeyBundle:
        try:
            return PreKeyBundle(
                registration_id=b.registration_id,
                device_id=b.device_id,
                pre_key_id=None if b.pre_key is None else b.pre_key.id,
                pre_key_public=None
                if b.pre_key is None
                else PublicKey.from_bytes(b.pre_key.public_key),
                signed_pre_key_id=b.signed_pre_key.id,
                signed_pre_key_public=PublicKey.from_bytes(b.signed_pre_key.public_key),
                signed_pre_key_signature=b.signed_pre_key.signature,
                identity_key=IdentityKey.from_bytes(b.identity_key),
                kyber_pre_key_id=b.kyber_pre_key.id,
                kyber_pre_key_public=KyberPublicKey.from_bytes(b.kyber_pre_key.public_key),
                kyber_pre_key_signature=b.kyber_pre_key.signature,
            )
        except UsageError:
            raise DecodeError("relay sent an invalid bundle") from None

    async def _fetch_sessions(self, aci: str, device_id: int = 0) -> None:
        """Start sessions from fetched bundles: with ``device_id`` 0, every device of ``aci``.

        For our own account the bundles must carry our own identity key, and with
        ``device_id`` 0 the device list is asked for first (:meth:`_own_device_ids`) so that
        no bundle of this very device is fetched (that would spend one of our own one-time
        prekeys and start a session with ourselves).

        Raises:
            DecodeError: bundles for impossible or unrequested devices, or invalid bundles.
            UntrustedIdentityError: a bundle for our own account with another identity key.
            RelayError: refused or not connected.
        """
        own = aci == self._aci
        if own:
            if device_id == self._device_id:
                raise UsageError("no session with this very device")
            if device_id == 0:
                for dev in await self._own_device_ids():
                    await self._fetch_sessions(aci, dev)
                return
        resp = await self._request(FetchBundles(_aci_bytes(aci), device_id))
        if not isinstance(resp.body, Bundles):
            raise RelayError("relay sent no bundles", int(StatusCode.INTERNAL))
        ids = [b.device_id for b in resp.body.bundles]
        if len(set(ids)) != len(ids) or any(
            not 1 <= d <= MAX_DEVICE_ID or (device_id and d != device_id) for d in ids
        ):
            raise DecodeError("relay sent bundles for impossible or unrequested devices")
        bundles = [(b.device_id, self._bundle(b)) for b in resp.body.bundles]
        if own:
            ours = await self._in_db(
                lambda: self._store.get_identity_key_pair().identity_key.to_bytes()
            )
            for b in resp.body.bundles:
                if b.identity_key != ours:
                    raise UntrustedIdentityError(
                        "the relay handed out another identity key for a device of our own "
                        "account; no session started",
                        str(ProtocolAddress(aci, b.device_id)),
                        IdentityKey.from_bytes(b.identity_key),
                    )
        else:
            await self._kt_check(aci, {b.identity_key for b in resp.body.bundles})
        now = self._now()
        store = self._store

        def process() -> None:
            with store.transaction():  # all bundles or none (one forged one changes nothing)
                for dev, bundle in bundles:
                    cipher.process_prekey_bundle(
                        bundle,
                        ProtocolAddress(aci, dev),
                        store,
                        now=now,
                        rng=self._rng,
                        local_address=self._address,
                    )

        await self._in_db(process)

    async def _own_device_ids(self) -> list[int]:
        """The other devices of our own account, as the relay lists them now.

        Raises:
            RelayError: refused or not connected, or an impossible device list.
        """
        resp = await self._request(GetDevices(_aci_bytes(self._aci)))
        if not isinstance(resp.body, Devices):
            raise RelayError("relay sent no device list", int(StatusCode.INTERNAL))
        ids = [d.device_id for d in resp.body.devices]
        if len(set(ids)) != len(ids) or not all(1 <= d <= MAX_DEVICE_ID for d in ids):
            raise RelayError("relay sent an impossible device list", int(StatusCode.INTERNAL))
        return sorted(d for d in ids if d != self._device_id)

    async def _kt_check(self, aci: str, identity_keys: set[bytes]) -> None:
        """Refuse bundles whose identity key the relay's directory does not prove."""
        if len(identity_keys) != 1:
            raise KeyTransparencyMismatch(
                "the relay handed out more than one identity key for one account", aci
            )
        verified = await self._kt.verify_identity(self._request, aci, next(iter(identity_keys)))
        if verified:
            return
        if self._kt_pending == "wait":
            raise KeyTransparencyPending(
                "the account's identity key is not in a published key-transparency epoch yet",
                aci,
            )
        self.kt_warnings.append(KtWarning(aci, "pending"))
        del self.kt_warnings[:-_MAX_KT_WARNINGS]
        _log.warning("key transparency: started a session with a key not yet published")

    async def kt_monitor(self) -> KtMonitorResult:
        """Check our own account's key history in the relay's directory now.

        Every version must carry our identity key; the check's time is recorded for
        :meth:`kt_monitor_if_due`. Fails closed: the epoch in which this device first sees
        its key published is kept in the device database, and from then on the relay must
        answer with a verified history every time; "pending" is accepted only before that,
        and only for :data:`~securemsg.client.kt.FIRST_PUBLICATION_WINDOW_S` (24 h) after
        registration. A pending result says our key cannot be checked yet: show it.

        Returns:
            The result (``pending`` True: not published yet, within the window).

        Raises:
            KeyTransparencyMonitorError: the directory holds a key for us this device did not
                create (others may be encrypting to someone else): tell the user.
            KeyTransparencyHistoryWithheld: the relay answers "pending" although our key was
                published, or beyond the window after registration (reason ``"withheld"``),
                or says a key we did not create is queued for us (reason ``"queued"``): a
                relay hiding a key it published for us looks like this; tell the user.
            KeyTransparencyError: a proof or head does not verify.
            RelayError: the relay refused or is unreachable.
        """
        identity = self._store.get_identity_key_pair().identity_key.to_bytes()
        try:
            return await self._kt.monitor(self._request, self._aci, identity, self._now())
        finally:
            self._store.set_meta("kt_monitor_at", self._now())

    async def kt_monitor_if_due(self) -> KtMonitorResult | None:
        """:meth:`kt_monitor` if ``kt_monitor_interval_s`` passed since the last check (or
        there was none); None otherwise. Raises as :meth:`kt_monitor`, fails closed as it
        does (a relay answering "pending" after our key was published raises
        :class:`~securemsg.errors.KeyTransparencyHistoryWithheld`), and returns a pending
        result only within the window after registration."""
        last = self._store.get_meta_int("kt_monitor_at", 0)
        if last and self._now() - last < self._kt_interval_ms:
            return None
        return await self.kt_monitor()

    @property
    def kt_head_epoch(self) -> int:
        """The epoch of the last key-transparency head this device verified (0: none)."""
        head = self._kt.head
        return 0 if head is None else head.head.epoch

    def _devices(self, aci: str) -> list[int]:
        """The devices of ``aci`` we hold a current session with (never this device)."""
        store = self._store
        out = []
        for d in store.get_session_device_ids(aci):
            if aci == self._aci and d == self._device_id:
                continue
            record = store.load_session(ProtocolAddress(aci, d))
            if record is not None and record.current is not None:  # not archived
                out.append(d)
        return out

    async def _ensure_sessions(self, aci: str) -> None:
        if not await self._in_db(lambda: self._devices(aci)):
            await self._fetch_sessions(aci)

    async def _repair(self, result: object, recipients: Sequence[str]) -> None:
        """Bring our sessions in line with a ``CONFLICT``'s device lists (``MismatchedDevices``),
        for the accounts we sent to only.

        * ``extra`` (a device the account no longer has, e.g. unlinked): its session is
          archived (kept to decrypt messages still in flight, no longer encrypted to);
        * ``stale`` (the device re-registered: another registration id): archived, and a new
          session is started from a fresh bundle;
        * ``missing`` (a device we had no session with, e.g. newly linked): a session is
          started from its bundle.

        The send is then tried again by the caller, a bounded number of times.

        Raises:
            RelayError: no details, or details naming an account not among ``recipients``,
                an impossible device id, or this very device (a misbehaving relay; nothing is
                changed).
        """
        if not isinstance(result, SendResult):
            raise RelayError("device list mismatch without details", int(StatusCode.CONFLICT))
        allowed = {_aci_bytes(r) for r in recipients}
        ours = _aci_bytes(self._aci)
        for m in result.mismatched:
            ids = (*m.missing_devices, *m.extra_devices, *m.stale_devices)
            if (
                m.aci not in allowed
                or not all(1 <= d <= MAX_DEVICE_ID for d in ids)
                or (m.aci == ours and self._device_id in ids)
            ):
                raise RelayError(
                    "relay sent an impossible device mismatch", int(StatusCode.INTERNAL)
                )
        store = self._store
        for m in result.mismatched:
            aci = str(uuid.UUID(bytes=m.aci))
            gone = [ProtocolAddress(aci, d) for d in (*m.extra_devices, *m.stale_devices)]
            await self._in_db(functools.partial(_archive_sessions, store, gone))
            await self._in_db(
                functools.partial(self._forget_group_keys, aci, m.extra_devices, m.stale_devices)
            )
            for d in (*m.missing_devices, *m.stale_devices):
                await self._fetch_sessions(aci, d)

    def _forget_group_keys(self, aci: str, removed: Sequence[int], stale: Sequence[int]) -> None:
        """Our sender keys after a device list changed (on the database's thread).

        A *removed* device that was sent our sender key for a group still holds it: our
        sender key for that group is replaced (a new chain, sent to every current member
        device before the next group message), so the removed device cannot read what we
        send from then on, as Signal's clients reset a sender key when a member's device
        goes. A *stale* device (re-registered) lost our key: it is sent again.
        """
        store = self._store
        with store.transaction():
            for group in store.list_groups():
                if aci not in group.members:
                    continue
                gid = group.group_id
                if any(store.group_key_sent(gid, aci, d) for d in removed):
                    store.store_sender_key(self._address, uuid.UUID(bytes=gid), SenderKeyRecord())
                    store.group_keys_forget(gid)
                    _log.info("a member's device was removed: our sender key for a group renewed")
                for d in stale:
                    store.group_key_unmark(gid, aci, d)

    def _remote_registration_id(self, address: ProtocolAddress) -> int:
        record = self._store.load_session(address)
        state = None if record is None else record.current
        if state is None:
            raise NoSessionError("no session with " + str(address))
        return int(state.remote_registration_id)

    def _identified_ok(self, allow_identified: bool | None) -> bool:
        return self._allow_identified if allow_identified is None else bool(allow_identified)

    async def _send_content(
        self,
        aci: str,
        content: Content,
        *,
        sealed: bool = True,
        allow_identified: bool = False,
        record: bool = True,
    ) -> bool:
        """Encrypt and send ``content`` to every device of ``aci``; True if it went sealed.

        With ``sealed``, the send goes sealed or not at all: without an access key, or when
        the relay refuses the unidentified delivery, :class:`SealedDeliveryRefused` is raised
        and nothing is sent identified, unless ``allow_identified``. With ``record`` the
        padded content is kept (bounded, one day) to answer a retry request.
        """
        plaintext = encode_padded_content(content)
        store = self._store
        own = aci == self._aci
        if own:  # our own other devices: always identified (see _flush_syncs)
            sealed, allow_identified = False, True
        access = await self._in_db(lambda: store.get_access_key(aci)) if sealed else None
        if sealed and access is None and not allow_identified:
            raise SealedDeliveryRefused(
                "no access key for the recipient: cannot send sealed (nothing was sent)",
                int(StatusCode.UNAUTHENTICATED),
                "no-access-key",
                aci,
            )
        if record:
            group_id = None if content.group is None else content.group.group_id
            sent_at = self._now()
            sealed_only = sealed and not allow_identified  # honoured by every resend
            await self._in_db(
                lambda: store.sent_add(
                    aci, content.timestamp, plaintext, sent_at, group_id, sealed_only=sealed_only
                )
            )
        for _ in range(_SEND_ATTEMPTS):
            await self._ensure_sessions(aci)
            cert = await self._sender_certificate() if access is not None else None
            now = self._now()
            messages = await self._in_db(
                functools.partial(self._encrypt_for_devices, aci, plaintext, cert, now)
            )
            if own and not messages:  # the account has no other device (any more)
                return False
            try:
                if access is not None:
                    conn = await self._unidentified()
                    await conn.request(
                        SendSealed(_aci_bytes(aci), access, content.timestamp, tuple(messages))
                    )
                else:
                    await self._request(
                        SendMessage(_aci_bytes(aci), content.timestamp, tuple(messages))
                    )
                if record:  # a retry request is answered only for these devices
                    devices = [m.device_id for m in messages]
                    await self._in_db(
                        functools.partial(store.sent_set_devices, aci, content.timestamp, devices)
                    )
                return access is not None
            except RelayError as exc:
                if exc.code == StatusCode.CONFLICT:
                    await self._repair(exc.details, [aci])
                    continue
                if exc.code == StatusCode.UNAUTHENTICATED and access is not None:
                    if not allow_identified:
                        raise SealedDeliveryRefused(
                            "the relay refused sealed delivery (nothing was sent identified)",
                            exc.code,
                            "refused",
                            aci,
                        ) from None
                    _log.info("access key refused; sending identified as allowed")
                    access = None
                    continue
                raise
        raise RelayError("the recipient's device list kept changing", int(StatusCode.CONFLICT))

    def _encrypt_for_devices(
        self, aci: str, plaintext: bytes, cert: SenderCertificate | None, now: int
    ) -> list[OutgoingMessage]:
        """Encrypt ``plaintext`` for every device of ``aci`` we hold a session with, sealed
        with ``cert`` if given (runs on the database's thread)."""
        store = self._store
        messages: list[OutgoingMessage] = []
        for device in self._devices(aci):
            address = ProtocolAddress(aci, device)
            registration_id = self._remote_registration_id(address)
            if cert is not None:
                body = sealed_sender_encrypt(
                    address, cert, plaintext, store, now=now, rng=self._rng
                )
                kind = EnvelopeType.UNIDENTIFIED_SENDER
            else:
                message = cipher.message_encrypt(
                    plaintext,
                    address,
                    store,
                    now=now,
                    rng=self._rng,
                    local_address=self._address,
                )
                body = message.to_bytes()
                kind = (
                    EnvelopeType.PREKEY_BUNDLE
                    if isinstance(message, PreKeySignalMessage)
                    else EnvelopeType.CIPHERTEXT
                )
            messages.append(OutgoingMessage(device, registration_id, int(kind), body))
        return messages

    async def send_text(
        self,
        to_aci: str,
        text: str,
        *,
        sealed: bool = True,
        allow_identified: bool | None = None,
    ) -> int:
        """Send a 1:1 text message to every device of ``to_aci``.

        Sealed (sender hidden from the relay) needs the recipient's access key (from a message
        of theirs or :meth:`add_contact`) and the relay's consent. If either is missing the
        send fails closed: :class:`~securemsg.errors.SealedDeliveryRefused`, nothing sent
        identified. Identified delivery happens only when asked for (``sealed=False``) or
        allowed (``allow_identified=True`` here, or the client's ``allow_identified``);
        :attr:`last_send_sealed` then tells which way it went.

        Args:
            to_aci: the recipient's ACI.
            text: the message.
            sealed: False to send identified on purpose.
            allow_identified: fall back to identified delivery when sealed cannot be had;
                None uses the client's setting.

        Returns:
            The message's timestamp (its id on our side).

        Raises:
            UsageError: bad arguments, or sending to ourselves.
            SealedDeliveryRefused: sealed delivery cannot be had and identified is not allowed.
            UntrustedIdentityError: the recipient's identity key changed.
            RelayError: refused (``NOT_FOUND``: no such account) or not connected.
        """
        to = _normalize_aci(to_aci)
        if to == self._aci:
            raise UsageError("sending to one's own account is not supported")
        if not isinstance(text, str):
            raise UsageError("text must be a str")
        allow = self._identified_ok(allow_identified)
        store = self._store
        if sealed and not allow and await self._in_db(lambda: store.get_access_key(to)) is None:
            raise SealedDeliveryRefused(
                "no access key for the recipient: cannot send sealed (nothing was sent)",
                int(StatusCode.UNAUTHENTICATED),
                "no-access-key",
                to,
            )
        ts = await self._anext_timestamp()
        went_sealed = await self._send_content(
            to,
            Content(ts, text, access_key=self._access_key),
            sealed=sealed,
            allow_identified=allow,
        )
        self.last_send_sealed = went_sealed
        await self._sync_sent(SentTranscript(to, ts, Content(ts, text), ((to, went_sealed),)))
        return ts

    async def _sync_sent(self, transcript: SentTranscript) -> None:
        """Queue the transcript of a send for our account's other devices and send it.

        Never raises: a transcript that cannot be sent now stays queued (durably) and is
        sent again when the connection is back (:meth:`_flush_syncs`).
        """
        store = self._store
        content = Content(transcript.timestamp, sync_sent=transcript)
        padded = encode_padded_content(content)
        now = self._now()
        await self._in_db(
            functools.partial(store.sync_pending_add, transcript.timestamp, padded, now)
        )
        await self._flush_syncs()

    async def _flush_syncs(self) -> None:
        """Send the queued transcripts to our account's other devices; never raises.

        Transcripts go *identified*, on this device's authenticated connection, whatever
        the send they describe (Signal's clients do the same): a sealed send to our own
        account cannot leave out the sending device without telling the relay which device
        sends, and this device holds no session with itself. The relay learns that this
        device sent something at that moment (it already knows the account: it delivers to
        it), never to whom or what. Without other devices (:meth:`_alone`) nothing is sent.
        """
        store = self._store
        async with self._sync_lock:  # a send and the receive loop may both flush
            await self._flush_syncs_locked(store)

    async def _flush_syncs_locked(self, store: ClientStore) -> None:
        for ts, padded in await self._in_db(store.sync_pending):
            try:
                if not await self._alone():
                    await self._send_content(self._aci, decode_padded_content(padded), sealed=False)
            except SecureMsgError as exc:
                if self._closing or _connection_lost(exc):
                    return  # stays queued for the next connection
                _log.warning("transcript not sent to our other devices: %s", exc)
                await self._in_db(functools.partial(store.sync_pending_failed, ts))
                continue
            await self._in_db(functools.partial(store.sync_pending_done, ts))

    async def _alone(self) -> bool:
        """Whether our account has no other device (so no transcript is to be sent).

        Known without asking when we hold a session with another of our devices (then not
        alone). Otherwise the relay's device list is asked, and an answer of "alone" is
        remembered until the next connection, or until :meth:`approve_link` lets a new device
        in (for :data:`_LINK_WINDOW_MS` after it, the list is asked on every send, since the
        new device registers some time after the approval): an account with one device
        does not pay a round trip per send.
        """
        if await self._in_db(lambda: self._devices(self._aci)):
            return False
        now = self._now()
        if self._known_alone and now >= self._link_expected_until:
            return True
        alone = not await self._own_device_ids()
        self._known_alone = alone
        return alone

    def create_group(self, title: str, members: Sequence[str]) -> bytes:
        """Create a group of ``members`` (we are added); returns its 16-byte id.

        Members learn about the group from its first message.

        Raises:
            UsageError: a member is not an ACI, or the title is not a str.
        """
        if not isinstance(title, str):
            raise UsageError("title must be a str")
        everyone = sorted({self._aci, *(_normalize_aci(m) for m in members)})
        group_id = uuid.UUID(bytes=self._rng.random_bytes(16), version=4).bytes
        self._store.save_group(group_id, title, everyone)
        return group_id

    def groups(self) -> list[tuple[bytes, str, tuple[str, ...]]]:
        """The groups we are in: (id, title, member ACIs)."""
        return [(g.group_id, g.title, g.members) for g in self._store.list_groups()]

    async def _distribute_sender_key(
        self, group_id: bytes, context: GroupContext, allow_identified: bool
    ) -> None:
        store = self._store
        distribution_id = uuid.UUID(bytes=group_id)
        skdm = await self._in_db(
            lambda: create_sender_key_distribution_message(
                self._address, distribution_id, store, rng=self._rng
            )
        )
        for member in context.members:
            if member == self._aci:
                continue
            await self._ensure_sessions(member)
            if await self._in_db(functools.partial(self._group_key_sent, group_id, member)):
                continue
            content = Content(
                await self._anext_timestamp(),
                None,
                context,
                sender_key_distribution=skdm.to_bytes(),
                access_key=self._access_key,
            )
            await self._send_content(member, content, allow_identified=allow_identified)
            await self._in_db(functools.partial(self._mark_group_key_sent, group_id, member))

    def _group_key_sent(self, group_id: bytes, member: str) -> bool:
        store = self._store
        return all(store.group_key_sent(group_id, member, d) for d in self._devices(member))

    def _mark_group_key_sent(self, group_id: bytes, member: str) -> None:
        for d in self._devices(member):
            self._store.mark_group_key_sent(group_id, member, d)

    def _group_encrypt_and_record(
        self,
        group: StoredGroup,
        others: Sequence[str],
        ts: int,
        padded: bytes,
        sealed_only: bool,
    ) -> tuple[bytes, list[str]]:
        """Keep the sent content per member (with the delivery choice and the member's
        devices), encrypt once with our sender key; the body and the members we can reach
        sealed (runs on the database's thread)."""
        store = self._store
        now = self._now()
        for m in others:
            store.sent_add(
                m,
                ts,
                padded,
                now,
                group.group_id,
                sealed_only=sealed_only,
                devices=self._devices(m),
            )
        message = group_encrypt(
            self._address, uuid.UUID(bytes=group.group_id), padded, store, rng=self._rng
        )
        return message.to_bytes(), [m for m in others if store.get_access_key(m) is not None]

    def _seal_for_group(
        self, sealed_to: Sequence[str], usmc: UnidentifiedSenderMessageContent
    ) -> tuple[bytes, tuple[RecipientAccess, ...]]:
        """The sealed sender v2 upload for ``sealed_to`` (runs on the database's thread)."""
        store = self._store
        destinations = [ProtocolAddress(m, d) for m in sealed_to for d in self._devices(m)]
        payload = sealed_sender_multi_recipient_encrypt(destinations, usmc, store, rng=self._rng)
        access = tuple(
            RecipientAccess(_aci_bytes(m), store.get_access_key(m) or b"") for m in sealed_to
        )
        return payload, access

    def _identified_group_messages(self, member: str, body: bytes) -> tuple[OutgoingMessage, ...]:
        return tuple(
            OutgoingMessage(
                d,
                self._remote_registration_id(ProtocolAddress(member, d)),
                int(EnvelopeType.SENDERKEY_MESSAGE),
                body,
            )
            for d in self._devices(member)
        )

    async def _send_group_identified(
        self,
        group: StoredGroup,
        context: GroupContext,
        member: str,
        ts: int,
        padded: bytes,
        body: bytes,
        allow: bool,
    ) -> None:
        """The group message to one member identified (allowed, and no sealed route), with
        the same mismatch repair as the sealed upload (bounded)."""
        for _ in range(_SEND_ATTEMPTS):
            messages = await self._in_db(
                functools.partial(self._identified_group_messages, member, body)
            )
            try:
                await self._request(SendMessage(_aci_bytes(member), ts, messages))
                return
            except RelayError as exc:
                if exc.code != StatusCode.CONFLICT:
                    raise
                await self._repair(exc.details, [member])
                await self._distribute_sender_key(group.group_id, context, allow)
                message = await self._in_db(
                    lambda: group_encrypt(
                        self._address,
                        uuid.UUID(bytes=group.group_id),
                        padded,
                        self._store,
                        rng=self._rng,
                    )
                )
                body = message.to_bytes()
        raise RelayError("the member's device list kept changing", int(StatusCode.CONFLICT))

    def _sealed_group_messages(
        self, member: str, usmc: UnidentifiedSenderMessageContent
    ) -> list[OutgoingMessage]:
        """``usmc`` sealed (v1) to each device of ``member`` (database thread)."""
        targets = [
            (d, self._remote_registration_id(ProtocolAddress(member, d)))
            for d in self._devices(member)
        ]
        return self._seal_plaintext(member, targets, usmc)

    async def _send_group_sealed_v1(
        self,
        group: StoredGroup,
        context: GroupContext,
        members: Sequence[str],
        ts: int,
        padded: bytes,
        allow: bool,
    ) -> None:
        """The group message to each of ``members`` as sealed sender v1 (one ``SendSealed``
        each, which the relay-wide budget for refused uploads does not charge), with the same
        mismatch repair and the same fail-closed rule as the sealed upload."""
        store = self._store
        for member in members:
            for _ in range(_SEND_ATTEMPTS):
                message = await self._in_db(
                    lambda: group_encrypt(
                        self._address, uuid.UUID(bytes=group.group_id), padded, store, rng=self._rng
                    )
                )
                cert = await self._sender_certificate()
                usmc = UnidentifiedSenderMessageContent.new(
                    CiphertextMessageType.SENDERKEY,
                    cert,
                    message.to_bytes(),
                    ContentHint.DEFAULT,
                    group.group_id,
                )
                messages = await self._in_db(
                    functools.partial(self._sealed_group_messages, member, usmc)
                )
                access = await self._in_db(functools.partial(store.get_access_key, member))
                try:
                    conn = await self._unidentified()
                    await conn.request(
                        SendSealed(_aci_bytes(member), access or b"", ts, tuple(messages))
                    )
                    break
                except RelayError as exc:
                    if exc.code == StatusCode.CONFLICT:
                        await self._repair(exc.details, [member])
                        await self._distribute_sender_key(group.group_id, context, allow)
                        continue
                    if exc.code == StatusCode.UNAUTHENTICATED and allow:
                        body = message.to_bytes()
                        await self._send_group_identified(
                            group, context, member, ts, padded, body, allow
                        )
                        break
                    if exc.code == StatusCode.UNAUTHENTICATED:
                        raise SealedDeliveryRefused(
                            "the relay refused a sealed group message (nothing was sent "
                            "identified)",
                            exc.code,
                            "refused",
                            member,
                        ) from None
                    raise
            else:
                raise RelayError("the member's device list kept changing", int(StatusCode.CONFLICT))

    async def send_group_text(
        self, group_id: bytes, text: str, *, allow_identified: bool | None = None
    ) -> int:
        """Send a text to a group: sender key, one sealed sender v2 upload.

        Fails closed like :meth:`send_text`: if we lack the access key of a member, the check
        happens before anything is sent; if the relay refuses the sealed upload (or a sealed
        sender-key distribution), :class:`~securemsg.errors.SealedDeliveryRefused` is raised
        and neither the distribution nor the message goes identified. With
        ``allow_identified`` (or the client's setting) such members get the sender-key
        distribution and the message identified instead.

        Returns:
            The message's timestamp.

        Raises:
            UsageError: unknown group or bad arguments.
            SealedDeliveryRefused: sealed delivery cannot be had and identified is not allowed.
            RelayError: refused or not connected.
        """
        store = self._store
        group = (
            await self._in_db(functools.partial(store.get_group, bytes(group_id)))
            if isinstance(group_id, bytes)
            else None
        )
        if group is None:
            raise UsageError("unknown group")
        if not isinstance(text, str):
            raise UsageError("text must be a str")
        context = GroupContext(group.group_id, group.title, group.members)
        others = [m for m in group.members if m != self._aci]
        allow = self._identified_ok(allow_identified)
        if not allow:
            missing = await self._in_db(
                lambda: [m for m in others if store.get_access_key(m) is None]
            )
            if missing:
                raise SealedDeliveryRefused(
                    "no access key for a group member: cannot send sealed (nothing was sent)",
                    int(StatusCode.UNAUTHENTICATED),
                    "no-access-key",
                    missing[0],
                )
        await self._distribute_sender_key(group.group_id, context, allow)
        ts = await self._anext_timestamp()
        content = Content(ts, text, context, access_key=self._access_key)
        padded = encode_padded_content(content)
        body, sealed_to = await self._in_db(
            functools.partial(self._group_encrypt_and_record, group, others, ts, padded, not allow)
        )
        for _ in range(_SEND_ATTEMPTS):
            if not sealed_to:
                break
            cert = await self._sender_certificate()
            usmc = UnidentifiedSenderMessageContent.new(
                CiphertextMessageType.SENDERKEY, cert, body, ContentHint.DEFAULT, group.group_id
            )
            payload, access = await self._in_db(
                functools.partial(self._seal_for_group, sealed_to, usmc)
            )
            try:
                conn = await self._unidentified()
                await conn.request(SendMultiRecipient(payload, access, ts))
                break
            except RelayError as exc:
                if exc.code == StatusCode.CONFLICT:
                    # New devices get our sender key first; the message is then encrypted
                    # again (the key they got starts after the iteration used above; nothing
                    # was delivered: the relay refused the whole upload).
                    await self._repair(exc.details, sealed_to)
                    await self._distribute_sender_key(group.group_id, context, allow)
                    body, _ = await self._in_db(
                        functools.partial(
                            self._group_encrypt_and_record, group, others, ts, padded, not allow
                        )
                    )
                    continue
                if exc.code == StatusCode.RATE_LIMITED:
                    # The relay-wide budget for refused anonymous uploads is spent (a storm
                    # of refused sends, anybody's): sealed sender v1, member by member.
                    await self._send_group_sealed_v1(group, context, sealed_to, ts, padded, allow)
                    break
                if exc.code == StatusCode.UNAUTHENTICATED:
                    if not allow:
                        raise SealedDeliveryRefused(
                            "the relay refused the sealed group upload (nothing was sent "
                            "identified)",
                            exc.code,
                            "refused",
                            sealed_to[0],
                        ) from None
                    sealed_to = []
                    break
                raise
        else:
            raise RelayError("the group's device lists kept changing", int(StatusCode.CONFLICT))
        for member in others:
            if member in sealed_to:
                continue
            await self._send_group_identified(group, context, member, ts, padded, body, allow)
        await self._sync_sent(
            SentTranscript(
                None, ts, Content(ts, text, context), tuple((m, m in sealed_to) for m in others)
            )
        )
        return ts

    # -- receiving --------------------------------------------------------------------------

    async def _pump_loop(self, conn: RelayConnection) -> None:
        carry: Envelope | QueueEmpty | None = None
        while True:
            item = carry if carry is not None else await conn.pushes.get()
            carry = None
            if item is None:
                break
            if isinstance(item, QueueEmpty):
                self._drained.set()
                # Retry requests and resends left pending by a closed connection.
                await self._send_retry_requests()
                await self._send_resends()
                await self._flush_syncs()
            else:
                # Envelopes already queued are taken together: one commit, one ack.
                batch = [item]
                while len(batch) < RECEIVE_BATCH and not conn.pushes.empty():
                    more = conn.pushes.get_nowait()
                    if not isinstance(more, Envelope):
                        carry = more
                        break
                    batch.append(more)
                try:
                    await self._handle_envelopes(conn, batch)
                except Exception:  # a bug must not stop delivery; unacked -> redelivered
                    _log.exception("processing envelopes failed; they stay queued")

            if self._prekeys_used and conn.pushes.empty() and not conn.closed.is_set():
                try:
                    await self.maintain_keys()
                except SecureMsgError as exc:
                    if not self._closing:  # a close racing the top-up is not worth a warning
                        _log.warning("prekey top-up failed: %s", exc)
        if self._conn is conn:
            self._conn = None
            self._ready.clear()
            if conn.removed:  # the relay said this device was unlinked: no reconnecting
                self._mark_removed()
            elif not self._closing:
                self._reconnector = asyncio.get_running_loop().create_task(self._reconnect_loop())

    async def _handle_envelopes(self, conn: RelayConnection, envelopes: list[Envelope]) -> None:
        rest = envelopes
        while rest:
            batch = rest
            committed = await self._in_db(functools.partial(self._process_batch, batch))
            # Envelopes not committed stay queued on the relay (they come back).
            ids = tuple(e.id for e, ok in zip(batch, committed, strict=True) if ok)
            if ids:
                await self._ack(conn, ids)
                self._inbox_event.set()
            needed = self._kt_needed
            if needed is None or not await self._kt_check_first_contact(needed[1]):
                break
            rest = batch[needed[0] :]  # from the envelope that waited for the lookup
        await self._send_retry_requests()
        await self._send_resends()

    async def _kt_check_first_contact(self, needed: _NeedsKtCheck) -> bool:
        """Look up a first contact's identity key in the directory (as a fetched bundle's
        is): accepted, or refused with the typed error the envelope is then recorded with.
        False when the lookup could not be made (the envelopes stay queued on the relay)."""
        key = (needed.aci, needed.identity_key)
        if len(self._kt_accepted) + len(self._kt_refused) >= _MAX_KT_CHECKED:
            self._kt_accepted.clear()
            self._kt_refused.clear()
        try:
            await self._kt_check(needed.aci, {needed.identity_key})
        except SecureMsgError as exc:
            if _connection_lost(exc) or self._closing:
                return False
            self._kt_refused[key] = exc
            return True
        self._kt_accepted.add(key)
        return True

    def _require_kt_checked(self, sender: ProtocolAddress, contents: bytes) -> None:
        """A PreKey message from an account we hold no key for starts a session only with
        a key the key-transparency directory proves (or, with ``kt_pending="warn"``, one it
        says is pending), as a fetched bundle does (on the database thread)."""
        aci = sender.name
        if aci == self._aci or self._store.account_identity(aci) is not None:
            return  # our own account (our own key only), or a key already trusted
        identity = PreKeySignalMessage.from_bytes(contents).identity_key.to_bytes()
        key = (aci, identity)
        if key in self._kt_accepted:
            return
        refused = self._kt_refused.get(key)
        if refused is not None:
            raise refused
        raise _NeedsKtCheck(aci, identity)

    async def _ack(self, conn: RelayConnection, envelope_ids: tuple[bytes, ...]) -> None:
        """Tell the relay to delete the envelopes (only after their inbox commit)."""
        try:
            await conn.request(Ack(envelope_ids))
        except RelayError as exc:
            _log.info("ack failed (%s); the envelopes will be redelivered and deduplicated", exc)

    def _process_batch(self, envelopes: Sequence[Envelope]) -> list[bool]:
        """Decrypt and commit envelopes in ONE transaction (on the database's thread).

        Each envelope is its own nested transaction (a savepoint), so one that fails is
        recorded or left out without touching the others; the whole batch becomes durable with
        one commit. Returns, per envelope, whether it may be acknowledged (all False if the
        commit failed).
        """
        store = self._store
        errors = 0
        self._kt_needed = None
        try:
            with store.transaction():
                results = []
                for index, envelope in enumerate(envelopes):
                    try:
                        ok, failed = self._process_envelope(envelope)
                    except _NeedsKtCheck as needed:  # the rest waits for the lookup
                        self._kt_needed = (index, needed)
                        results.extend([False] * (len(envelopes) - index))
                        break
                    except Exception as exc:  # a bug, not the sender's fault: see below
                        ok, failed = self._unexpected_failure(envelope, exc), True
                    results.append(ok)
                    errors += failed
        except StorageError as exc:
            _log.error("could not store received messages: %s", exc)
            return [False] * len(envelopes)
        self.errors += errors
        return results

    def _process_envelope(self, envelope: Envelope) -> tuple[bool, bool]:
        """Decrypt and commit one envelope: (may it be acknowledged, was it undecryptable).

        An envelope that cannot be decrypted is recorded (inbox row ``kind = "error"`` and a
        failure record with the reason and its ciphertext) in one transaction; if its sender
        is known and the failure was in decryption proper, a retry request is queued.
        """
        store = self._store
        if store.inbox_has_envelope(envelope.id):
            return True, False
        now = self._now()
        attempt = _Attempt()
        try:
            with store.transaction():
                self._decrypt_and_record(envelope, now, attempt)
            return True, False
        except StorageError as exc:
            _log.error("could not store a received message: %s", exc)
            return False, False
        except DuplicateMessageError:
            kind = "duplicate"
            failure: SecureMsgError | None = None
        except SecureMsgError as exc:
            kind = "error"
            failure = exc
        sealed = envelope.type == EnvelopeType.UNIDENTIFIED_SENDER
        try:
            with store.transaction():
                store.inbox_add(
                    envelope_id=envelope.id,
                    server_timestamp=envelope.server_timestamp,
                    kind=kind,
                    sealed=sealed,
                )
                if failure is not None:
                    self._record_failure(envelope, now, attempt, failure)
        except StorageError:
            return False, False
        return True, failure is not None

    def _unexpected_failure(self, envelope: Envelope, exc: Exception) -> bool:
        """An envelope whose processing raised something no decoder should let through (a
        bug): it is recorded as that envelope's failure (reason ``"error"``, no retry request),
        like an undecryptable one, so that it neither spoils the rest of its batch nor comes
        back first after every reconnect. Whether it may be acknowledged."""
        _log.error("processing an envelope failed unexpectedly: %s", type(exc).__name__)
        failure = InvalidMessageError("the envelope could not be processed")
        try:
            with self._store.transaction():
                self._store.inbox_add(
                    envelope_id=envelope.id,
                    server_timestamp=envelope.server_timestamp,
                    kind="error",
                    sealed=envelope.type == EnvelopeType.UNIDENTIFIED_SENDER,
                )
                attempt = _Attempt()
                attempt.stage = "processing"  # not a decryption failure: no retry request
                self._record_failure(envelope, self._now(), attempt, failure)
        except Exception:  # even recording it fails: leave it queued, as before
            return False
        return True

    def _record_failure(
        self, envelope: Envelope, now: int, attempt: _Attempt, exc: SecureMsgError
    ) -> None:
        reason = _failure_reason(
            exc, attempt.stage, envelope.type == EnvelopeType.UNIDENTIFIED_SENDER
        )
        sender = attempt.sender
        _log.warning(
            "undecryptable envelope: %s (%s)", _DESCRIPTIONS.get(reason, reason), type(exc).__name__
        )
        # A retry request only when the sender is authenticated (identified envelope, or a
        # sealed one whose certificate validated) and decryption proper failed: resending
        # cannot help a refused certificate or a refused content, and we never answer an
        # unauthenticated claim.
        retry = "impossible"
        request: bytes | None = None
        if (
            sender is not None
            and attempt.stage == "decrypt"
            and attempt.msg_type
            in (
                CiphertextMessageType.WHISPER,
                CiphertextMessageType.PREKEY,
                CiphertextMessageType.SENDERKEY,
            )
        ):
            try:
                request = DecryptionErrorMessage.for_original(
                    attempt.contents,
                    attempt.msg_type,
                    envelope.client_timestamp,
                    sender.device_id,
                ).to_bytes()
                retry = "pending"
            except SecureMsgError:  # the original does not even parse: nothing to ask for
                request = None
            # one request per failed message
            if self._store.failure_retry_asked(
                sender.name, sender.device_id, envelope.client_timestamp
            ):
                retry, request = "impossible", None
        self._store.failure_add(
            envelope_id=envelope.id,
            recorded_at=now,
            server_timestamp=envelope.server_timestamp,
            sent_timestamp=envelope.client_timestamp,
            envelope_type=int(envelope.type),
            sealed=envelope.type == EnvelopeType.UNIDENTIFIED_SENDER,
            sender=None if sender is None else sender.name,
            sender_device=None if sender is None else sender.device_id,
            reason=reason,
            retry=retry,
            retry_request=request,
            body=envelope.body,
        )

    def _source(self, envelope: Envelope) -> ProtocolAddress:
        if envelope.source_aci is None:
            raise DecodeError("identified envelope without a source")
        return ProtocolAddress(str(uuid.UUID(bytes=envelope.source_aci)), envelope.source_device_id)

    def _decrypt_and_record(self, envelope: Envelope, now: int, attempt: _Attempt) -> None:
        store = self._store
        sealed = envelope.type == EnvelopeType.UNIDENTIFIED_SENDER
        distribution: uuid.UUID | None = None
        if sealed:
            if self._trust_root is None:
                raise SealedSenderError("no trust root pinned", "no-trust-root")
            usmc = sealed_sender_decrypt_to_usmc(envelope.body, store)
            attempt.stage = "certificate"
            cert = usmc.sender
            cert.validate(self._trust_root, now)
            if cert.sender_uuid == self._aci and cert.sender_device_id == self._device_id:
                raise SealedSenderError("sealed sender message from ourselves", "self-send")
            sender = ProtocolAddress(cert.sender_uuid, cert.sender_device_id)
            msg_type, contents = usmc.msg_type, usmc.contents
        elif envelope.type in (EnvelopeType.CIPHERTEXT, EnvelopeType.PREKEY_BUNDLE):
            sender = self._source(envelope)
            msg_type = (
                CiphertextMessageType.WHISPER
                if envelope.type == EnvelopeType.CIPHERTEXT
                else CiphertextMessageType.PREKEY
            )
            contents = envelope.body
        elif envelope.type == EnvelopeType.SENDERKEY_MESSAGE:
            sender = self._source(envelope)
            msg_type, contents = CiphertextMessageType.SENDERKEY, envelope.body
        elif envelope.type == EnvelopeType.PLAINTEXT_CONTENT:
            sender = self._source(envelope)
            msg_type, contents = CiphertextMessageType.PLAINTEXT, envelope.body
        else:
            raise DecodeError("unknown envelope type")
        attempt.stage = "decrypt"
        attempt.sender, attempt.msg_type, attempt.contents = sender, msg_type, contents
        if msg_type in (CiphertextMessageType.WHISPER, CiphertextMessageType.PREKEY):
            if msg_type == CiphertextMessageType.PREKEY:
                self._require_kt_checked(sender, contents)
            plaintext = cipher.message_decrypt(
                contents,
                msg_type,
                sender,
                store,
                now=now,
                rng=self._rng,
                local_address=self._address,
            )
            if msg_type == CiphertextMessageType.PREKEY:
                self._prekeys_used = True
        elif msg_type == CiphertextMessageType.SENDERKEY:
            skm = SenderKeyMessage.from_bytes(contents)
            plaintext = group_decrypt(skm, sender, store)
            distribution = skm.distribution_id
        elif msg_type == CiphertextMessageType.PLAINTEXT:
            attempt.stage = "content"
            request = decryption_error_from_plaintext(PlaintextContent.from_bytes(contents))
            self._apply_retry_request(envelope, sender, request, now)
            return
        else:
            raise SealedSenderError("unexpected inner message type", "unexpected-type")
        attempt.stage = "content"
        content = decode_padded_content(plaintext)
        self._apply_content(envelope, sender, content, distribution, sealed)

    def _apply_retry_request(
        self, envelope: Envelope, sender: ProtocolAddress, request: DecryptionErrorMessage, now: int
    ) -> None:
        """Answer a retry request (inside the envelope's transaction): queue the resend.

        The rule, as libsignal's ``SessionRecord::current_ratchet_key_matches`` and Signal's
        clients apply it: if the request carries a ratchet key and it equals the *sending*
        ratchet key of our current session with the requesting device, that session is the
        one the peer cannot decrypt, so it is archived and the resend starts a new session
        (a PreKey message from a freshly fetched bundle). Any other ratchet key (an older
        chain, or none for a sender-key message) leaves the session alone: the resend goes
        on the current one. A request naming another device of ours, or a timestamp we hold
        no sent content for (unknown, or older than one day), is dropped. Each content is
        sent again at most :data:`MAX_RESENDS` times.

        Trust model: a retry request is not authenticated. One in an identified
        ``PLAINTEXT_CONTENT`` envelope carries no MAC and its sender is whatever the relay
        says; a sealed one names a sender the relay's certificate vouches for. So the relay
        (or anyone it lets through) may forge one for any timestamp it saw. What a forged
        request can get is bounded: the content we already sent, sent again (at most
        :data:`MAX_RESENDS` times) to the same account (the sent record is looked up by the
        requester's account), only when the request names a device the content went to, and
        with the same delivery choice as the original send (a sealed-only content is resent
        sealed or not at all, see :meth:`_send_resends`). It also may archive our session with
        that device (a new session is then started from a fetched bundle, under the usual
        identity-key checks). The relay requires a send to cover all of the account's
        devices, so the resend goes to the account's current device list.
        """
        store = self._store
        store.inbox_add(
            envelope_id=envelope.id,
            server_timestamp=envelope.server_timestamp,
            kind="retry-request",
            sealed=envelope.type == EnvelopeType.UNIDENTIFIED_SENDER,
        )
        if request.device_id != self._device_id:
            _log.info("retry request for another device; ignored")
            return
        # Keyed by the requester's account: a request can only bring a content back to the
        # account it was sent to, and only for a device it went to.
        if request.timestamp > MAX_CONTENT_TIMESTAMP:  # no message of ours has such an id
            _log.info("retry request for an impossible timestamp; ignored")
            return
        sent = store.sent_get(sender.name, request.timestamp, now)
        if sent is None:
            _log.info("retry request for a message we no longer hold; ignored")
            return
        if sent.devices is None or sender.device_id not in sent.devices:
            _log.info("retry request from a device the message was not sent to; ignored")
            return
        if store.sent_resends(sender.name, request.timestamp) >= MAX_RESENDS:
            _log.info("retry request for a message already sent again too often; ignored")
            return
        if request.ratchet_key is not None:
            record = store.load_session(sender)
            state = None if record is None else record.current
            if (
                record is not None
                and state is not None
                and state.ratchet.sender_chain.ratchet_key_pair.public_key.to_bytes()
                == request.ratchet_key.to_bytes()
            ):
                store.store_session(sender, record.archive_current_state())
                _log.info("retry request names our current ratchet key: session archived")
        if sent.group_id is not None:
            store.group_key_unmark(sent.group_id, sender.name, sender.device_id)
        store.resend_add(sender.name, sender.device_id, request.timestamp)

    def _apply_content(
        self,
        envelope: Envelope,
        sender: ProtocolAddress,
        content: Content,
        distribution: uuid.UUID | None,
        sealed: bool,
    ) -> None:
        store = self._store
        if content.sync_sent is not None:
            self._apply_transcript(envelope, sender, content.sync_sent, distribution, sealed)
            return
        group = content.group
        if distribution is not None and (group is None or group.group_id != distribution.bytes):
            raise InvalidMessageError("group message without its group context")
        if group is not None:
            known = store.get_group(group.group_id)
            members = known.members if known is not None else group.members
            if sender.name not in members or self._aci not in group.members:
                raise InvalidMessageError("group message from a non-member")
            if known is None:  # a group we are told of for the first time
                store.save_group(group.group_id, group.title, group.members)
            elif (known.title, set(known.members)) != (group.title, set(group.members)):
                # Groups do not change once made; a member may not rewrite ours.
                raise InvalidMessageError("group context differs from the group we know")
        if content.sender_key_distribution is not None:
            if group is None:
                raise InvalidMessageError("sender key without a group")
            skdm = SenderKeyDistributionMessage.from_bytes(content.sender_key_distribution)
            if skdm.distribution_id.bytes != group.group_id:
                raise InvalidMessageError("sender key for another group")
            process_sender_key_distribution_message(sender, skdm, store)
        if content.access_key is not None:
            store.set_access_key(sender.name, content.access_key)
        store.inbox_add(
            envelope_id=envelope.id,
            server_timestamp=envelope.server_timestamp,
            kind="message" if content.text is not None else "control",
            sealed=sealed,
            sender=sender.name,
            sender_device=sender.device_id,
            sent_timestamp=content.timestamp,
            group_id=None if group is None else group.group_id,
            body=content.text,
        )

    def _apply_transcript(
        self,
        envelope: Envelope,
        sender: ProtocolAddress,
        transcript: SentTranscript,
        distribution: uuid.UUID | None,
        sealed: bool,
    ) -> None:
        """Record a transcript of a message another device of our account sent (inside the
        envelope's transaction): it lands in the inbox as a message we sent, with the
        recipient (1:1) or the group, and the device that sent it.

        Raises:
            InvalidMessageError: the transcript comes from another account, in a sender-key
                message, names no recipient and no group (or both), names our own account
                as the recipient, or a group we are not a member of.
        """
        store = self._store
        message = transcript.message
        group = message.group
        if sender.name != self._aci or distribution is not None:
            raise InvalidMessageError("a sent transcript from another account")
        if (transcript.destination is None) == (group is None):
            raise InvalidMessageError("a sent transcript names no recipient or group")
        if transcript.destination == self._aci:
            raise InvalidMessageError("a sent transcript to our own account")
        if group is not None:
            if self._aci not in group.members:
                raise InvalidMessageError("a sent transcript for a group we are not in")
            store.save_group(group.group_id, group.title, group.members)
        store.inbox_add(
            envelope_id=envelope.id,
            server_timestamp=envelope.server_timestamp,
            kind="message" if message.text is not None else "control",
            sealed=sealed,
            sender=sender.name,
            sender_device=sender.device_id,
            sent_timestamp=transcript.timestamp,
            group_id=None if group is None else group.group_id,
            body=message.text,
            destination=transcript.destination,
        )

    async def _send_retry_requests(self) -> None:
        """Send the queued retry requests (each failure's, once); never raises."""
        store = self._store
        for seq, sender, sender_device, retry_request in await self._in_db(store.failures_to_retry):
            outcome = "failed"
            try:
                request = DecryptionErrorMessage.from_bytes(retry_request)
                sent = await self._send_plaintext(
                    ProtocolAddress(sender, sender_device or 1),
                    plaintext_content_for(request),
                )
                outcome = "sent" if sent else "not-sent"
            except SecureMsgError as exc:
                if self._closing or _connection_lost(exc):
                    return  # the request stays pending for the next connection
                _log.warning("retry request not sent: %s (%s)", exc, type(exc).__name__)
            await self._in_db(functools.partial(store.failure_set_retry, seq, outcome))

    async def _send_plaintext(self, address: ProtocolAddress, content: PlaintextContent) -> bool:
        """Send a PlaintextContent (a retry request) for one device: sealed (USMC type
        PLAINTEXT) if we hold the account's access key; identified (envelope type
        PLAINTEXT_CONTENT) only if the client allows identified sends, or to a device of our
        own account (identified, as transcripts go). False if neither.

        The relay takes a send only for the account's complete device list, so every device
        of the account gets it; the request names the device it is for (the others ignore
        it). A device-list mismatch is repaired and the send tried again (bounded).

        Raises:
            RelayError: refused (including SealedDeliveryRefused) or not connected.
            NoSessionError: no session (and no bundle) for the device.
        """
        store = self._store
        aci = address.name
        own = aci == self._aci
        access = None if own else await self._in_db(lambda: store.get_access_key(aci))
        if access is None and not (self._allow_identified or own):
            return False
        if address.device_id not in await self._in_db(lambda: self._devices(aci)):
            await self._fetch_sessions(aci, address.device_id)
        ts = await self._anext_timestamp()
        for _ in range(_SEND_ATTEMPTS):
            await self._ensure_sessions(aci)
            targets = await self._in_db(
                lambda: [
                    (d, self._remote_registration_id(ProtocolAddress(aci, d)))
                    for d in self._devices(aci)
                ]
            )
            try:
                if access is not None:
                    cert = await self._sender_certificate()
                    usmc = UnidentifiedSenderMessageContent.new(
                        CiphertextMessageType.PLAINTEXT,
                        cert,
                        content.to_bytes(),
                        ContentHint.DEFAULT,
                    )
                    sealed = await self._in_db(
                        functools.partial(self._seal_plaintext, aci, targets, usmc)
                    )
                    conn = await self._unidentified()
                    try:
                        await conn.request(SendSealed(_aci_bytes(aci), access, ts, tuple(sealed)))
                        return True
                    except RelayError as exc:
                        if exc.code != StatusCode.UNAUTHENTICATED or not self._allow_identified:
                            raise
                        access = None
                messages = tuple(
                    OutgoingMessage(d, r, int(EnvelopeType.PLAINTEXT_CONTENT), content.to_bytes())
                    for d, r in targets
                )
                await self._request(SendMessage(_aci_bytes(aci), ts, messages))
                return True
            except RelayError as exc:
                if exc.code != StatusCode.CONFLICT:
                    raise
                await self._repair(exc.details, [aci])
        raise RelayError("the recipient's device list kept changing", int(StatusCode.CONFLICT))

    def _seal_plaintext(
        self,
        aci: str,
        targets: Sequence[tuple[int, int]],
        usmc: UnidentifiedSenderMessageContent,
    ) -> list[OutgoingMessage]:
        """Seal ``usmc`` for each (device, registration id) of ``aci`` (database thread)."""
        return [
            OutgoingMessage(
                d,
                r,
                int(EnvelopeType.UNIDENTIFIED_SENDER),
                sealed_sender_encrypt_from_usmc(
                    ProtocolAddress(aci, d), usmc, self._store, rng=self._rng
                ),
            )
            for d, r in targets
        ]

    async def _send_resends(self) -> None:
        """Send again the contents retry requests asked for; never raises.

        A resend goes the way the original send was allowed to go, not the way the client
        is set now: a content sent sealed-only (``allow_identified=False`` on the call, or
        the client's setting then) is resent sealed or not at all. One that cannot go sealed
        is recorded as not resent (``resend_status`` ``"sealed-refused"`` on its sent
        record), never downgraded.
        """
        store = self._store
        for aci, device, ts in await self._in_db(store.resend_pending):
            status = "failed"
            sent = None
            try:
                sent, no_session = await self._in_db(
                    functools.partial(self._resend_lookup, aci, device, ts)
                )
                if sent is not None:
                    if no_session:  # archived: start anew
                        await self._fetch_sessions(aci, device)
                    # attempts count: a bound on a replayer
                    await self._in_db(functools.partial(store.sent_count_resend, aci, ts))
                    await self._send_content(
                        aci,
                        decode_padded_content(sent.content),
                        allow_identified=not sent.sealed_only,
                        record=False,
                    )
                    status = "resent"
            except SealedDeliveryRefused as exc:
                status = "sealed-refused"
                _log.warning("not resent: %s", exc)
            except SecureMsgError as exc:
                if self._closing or _connection_lost(exc):
                    return  # the resend stays queued for the next connection
                _log.warning("resend failed: %s (%s)", exc, type(exc).__name__)
            if sent is not None:
                await self._in_db(functools.partial(store.sent_set_resend_status, aci, ts, status))
            await self._in_db(functools.partial(store.resend_done, aci, device, ts))

    def _resend_lookup(self, aci: str, device: int, ts: int) -> tuple[SentRecord | None, bool]:
        """The content to send again (None if gone or resent too often), and whether the
        device has no current session (runs on the database's thread)."""
        store = self._store
        sent = store.sent_get(aci, ts, self._now())
        if sent is None or store.sent_resends(aci, ts) >= MAX_RESENDS:
            return None, False
        record = store.load_session(ProtocolAddress(aci, device))
        return sent, record is None or record.current is None

    def _to_failure(self, row: FailureRow) -> DecryptionFailure:
        return DecryptionFailure(
            envelope_id=row.envelope_id,
            server_timestamp=row.server_timestamp,
            sent_timestamp=row.sent_timestamp,
            sealed=row.sealed,
            sender_aci=row.sender,
            sender_device=row.sender_device,
            reason=row.reason,
            description=_DESCRIPTIONS.get(row.reason, _DESCRIPTIONS["error"]),
            retry=row.retry,
            recorded_at=row.recorded_at,
        )

    def failures(self) -> list[DecryptionFailure]:
        """The bounded local record of envelopes that could not be decrypted, oldest first.

        Kept: the newest 500, none older than 30 days (their ciphertext is kept too, in the
        device database, so a message refused for a bad certificate is not lost).
        """
        return [self._to_failure(r) for r in self._store.failures()]

    async def receive_failure(self, timeout: float | None = None) -> DecryptionFailure | None:
        """The next decryption failure not yet handed to the application (each exactly once).

        Every envelope that could not be decrypted produces one such event, with a reason
        (``reason`` for programs, ``description`` in words). If the sender is known, a retry
        request was sent (see ``retry``) and the message may still arrive through
        :meth:`receive` once the sender sent it again.

        Args:
            timeout: seconds to wait for one; None waits while connected.

        Returns:
            The failure, or None on timeout (or when the client is closed).
        """
        return await self._next_pending(self._take_failure, timeout)

    async def _next_pending(
        self, take: Callable[[], _T | None], timeout: float | None
    ) -> _T | None:
        """Wait for ``take`` (run on the database's thread) to yield something: the inbox
        event wakes it; None on timeout or when the client is closed."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            self._inbox_event.clear()
            if self._closing:
                return None
            item = await self._in_db(take)
            if item is not None:
                return item
            if self._removed:  # everything received before the removal was handed out
                raise self._removed_error()
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return None
            try:
                async with asyncio.timeout(remaining):
                    await self._inbox_event.wait()
            except TimeoutError:
                return None

    def _to_message(self, row: InboxRow) -> ReceivedMessage:
        title = None
        if row.group_id is not None:
            group = self._store.get_group(row.group_id)
            title = None if group is None else group.title
        return ReceivedMessage(
            sender_aci=row.sender,
            sender_device=row.sender_device,
            text=row.body,
            sent_timestamp=row.sent_timestamp,
            server_timestamp=row.server_timestamp,
            group_id=row.group_id,
            group_title=title,
            sealed=row.sealed,
            envelope_id=row.envelope_id,
            transcript=row.sender == self._aci,
            destination_aci=row.destination,
            sender_devices=max(
                1 if row.sender_device == 1 else 2,  # a device N > 1 means the primary is there
                len(self._devices(row.sender)) + (1 if row.sender == self._aci else 0),
            ),
        )

    def _take_message(self) -> ReceivedMessage | None:
        """The next pending inbox message, marked delivered (on the database's thread)."""
        rows = self._store.inbox_pending(1)
        if not rows:
            return None
        self._store.inbox_mark_delivered(rows[0].seq)
        return self._to_message(rows[0])

    def _take_failure(self) -> DecryptionFailure | None:
        """The next failure not yet handed out, marked delivered (on the database's thread)."""
        rows = self._store.failures(pending_only=True, limit=1)
        if not rows:
            return None
        self._store.failure_mark_delivered(rows[0].seq)
        return self._to_failure(rows[0])

    async def receive(self, timeout: float | None = None) -> ReceivedMessage | None:
        """The next decrypted message not yet handed to the application (each exactly once).

        Args:
            timeout: seconds to wait for one; None waits while connected.

        Returns:
            The message, or None on timeout (or when the client is closed).
        """
        return await self._next_pending(self._take_message, timeout)

    async def __aiter__(self) -> AsyncIterator[ReceivedMessage]:
        """Yield messages as they arrive until the client is closed."""
        while not self._closing:
            message = await self.receive()
            if message is not None:
                yield message

    async def sync(self, timeout: float = 10.0) -> None:
        """Wait until every envelope queued before this connection was processed.

        Raises:
            RelayError: not connected, or the backlog did not arrive in time.
        """
        if not self.connected:
            raise RelayError("not connected to the relay", CONNECTION_LOST)
        try:
            async with asyncio.timeout(timeout):
                await self._drained.wait()
        except TimeoutError:
            raise RelayError("the relay did not finish its backlog", CONNECTION_LOST) from None
