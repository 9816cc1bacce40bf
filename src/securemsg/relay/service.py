"""The relay's request logic, without the network: one request in, one response out.

Theory of operation
-------------------
:class:`RelayService` answers a decoded :class:`~securemsg.relay_protocol.frames.ClientFrame` for
one connection's :class:`Session` at time ``now`` (Unix ms) and returns an :class:`Outcome`:
the response, the envelopes it queued (so the server can push them to connected devices),
whether the connection just authenticated, and whether it must be closed. It is synchronous
and owns no sockets, so it is tested directly; :mod:`securemsg.relay.server` drives it.

Rules it enforces (see docs/relay-protocol.md):

* **Authentication** is proof of possession: an XEdDSA signature by the stored identity key
  over :func:`~securemsg.relay_protocol.frames.auth_message` for this connection's fresh nonce.
  One attempt per connection; a failure closes it. No password exists.
* **Authorization**: an unauthenticated session may only send sealed messages (gated by the
  recipient's access key, compared as digests in constant time) and read the trust root. An
  authenticated device acts only on its own mailbox and keys: the store calls take the
  session's ACI and device id, never one from the request.
* **All or nothing**: every check runs before the single store call that changes anything, so
  a refused request changes nothing. Any unexpected exception becomes ``INTERNAL`` (logged by
  type only), never a crash.
* **Rate limits** are token buckets in memory: bundle fetches per requesting device,
  registrations per relay, sealed sends per target device, identified bytes per sending
  device, account lookups spent on refused multi-recipient sends (relay-wide for
  unauthenticated connections), and one-time prekey hand-outs per target device (beyond
  that budget a bundle carries only the signed and last-resort keys). An optional
  admission hook (:attr:`RelayConfig.admission`, e.g. :class:`TokenAdmission`) decides
  which registrations are accepted at all.
* **Storage shares**: queued bytes are bounded per device (mailbox), per recipient account
  and for the whole relay, so no one account can take the relay's budget.
* **Registration** verifies the request (identity key, proof of possession, prekey
  signatures) before it spends the relay-wide registration budget: only a valid, admitted
  registration costs a token.
* **Range checks**: every integer from the wire that is stored must fit the store's signed
  64-bit integers (timestamps below 2^63); anything else is ``BAD_REQUEST``.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from uuid import UUID

from securemsg.crypto.curve25519 import PrivateKey, PublicKey
from securemsg.crypto.kyber1024 import KyberPublicKey
from securemsg.crypto.primitives import constant_time_eq, hmac_sha256
from securemsg.crypto.rng import Rng
from securemsg.errors import PeerError, SecureMsgError, StorageError, UsageError
from securemsg.limits import MAX_DEVICE_ID, REGISTRATION_ID_MASK
from securemsg.protocol.address import ServiceId, ServiceIdKind
from securemsg.protocol.sealed_sender import (
    REVOKED_SERVER_CERTIFICATE_KEY_IDS,
    SealedSenderV2SentMessage,
    SenderCertificate,
    ServerCertificate,
)
from securemsg.relay import kt as relay_kt
from securemsg.relay.store import (
    BundleRow,
    CreateResult,
    DeviceRow,
    EnqueueResult,
    KeyRow,
    NewDevice,
    QueuedMessage,
    RelayStore,
    ServerKeysRow,
)
from securemsg.relay_protocol import frames as rf

__all__ = [
    "AdmissionHook",
    "RelayConfig",
    "RelayService",
    "Outcome",
    "Session",
    "TokenAdmission",
    "TokenBuckets",
    "access_key_digest",
    "generate_server_keys",
    "linking_code_digest",
    "utc_date",
]

_LOG = logging.getLogger("securemsg.relay")
_ACCESS_KEY_LABEL = b"securemsg-relay-access-key-digest-v1"
_LINKING_CODE_LABEL = b"securemsg-relay-linking-code-digest-v1"
_LINKING_CODE_BYTES = 18  # 24 characters of base64url
#: How many recent device removals the service remembers to refuse a removed device's
#: requests that were already queued when it was removed (its connection is closed anyway).
_REMOVALS_KEPT = 10_000
_SERVER_KEY_ID = 1
_IDENTIFIED_TYPES = frozenset(
    (
        rf.EnvelopeType.CIPHERTEXT,
        rf.EnvelopeType.PREKEY_BUNDLE,
        rf.EnvelopeType.SENDERKEY_MESSAGE,
        rf.EnvelopeType.PLAINTEXT_CONTENT,
    )
)
_DAY_MS = 24 * 60 * 60 * 1000
_RELAY_WIDE = (b"", 0)  # the key of relay-wide token buckets

#: Decides whether a (well-formed) registration is admitted; False refuses it with FORBIDDEN.
#: It runs before the relay spends any work on the request's signatures.
AdmissionHook = Callable[[rf.Register], bool]


@dataclass(frozen=True, slots=True)
class RelayConfig:
    """The relay's limits and periods (defaults are the documented ones).

    Attributes:
        message_ttl_ms: undelivered envelopes are deleted this long after receipt (30 days).
        sweep_interval_s: how often expired envelopes are swept (hourly).
        max_body: largest message body (256 KiB).
        max_messages_per_send: most per-device copies in one send.
        max_upload_keys: most one-time keys of one kind per request.
        max_stored_keys: most one-time keys of one kind stored per device.
        max_mailbox: most queued envelopes per device.
        max_mailbox_bytes: most bytes of queued bodies per device (64 MiB), so one mailbox
            cannot fill the disk or, read at once when its device connects, the memory.
        max_outbox_bytes: the relay stops reading a connection's requests while more than
            this many bytes of its responses and pushes wait to be written (8 MiB).
        bundle_burst: bundle fetches a device may make at once.
        bundle_refill_per_s: bundle fetches regained per second.
        sender_cert_ttl_ms: lifetime of an issued sender certificate (24 hours).
        max_multi_recipients: most recipients of one sealed sender v2 message.
        registration_burst: registrations (Register requests that pass the admission hook)
            the relay accepts at once, across all connections (100). One Register or
            Authenticate per connection is the per-connection limit.
        registration_refill_per_s: registrations regained per second (10).
        admission: optional :data:`AdmissionHook`; None admits every registration. The
            built-in :class:`TokenAdmission` requires a registration token.
        one_time_budget: one-time prekey hand-outs per target device per
            ``one_time_budget_period_s`` (20). Beyond it, bundles of that device carry only
            its signed and last-resort keys (PQXDH still works; the first message loses only
            the extra forward secrecy a one-time key gives), so requesters, however many
            accounts they use, cannot drain a device's one-time keys.
        one_time_budget_period_s: the budget's period (one hour), refilled continuously.
        sealed_burst: sealed copies (SendSealed and SendMultiRecipient) a device may be sent
            at once (500), whoever sends them.
        sealed_refill_per_s: sealed copies per device regained per second (50). Beyond the
            rate, sealed sends to the device get RATE_LIMITED and queue nothing.
        max_total_queued_bytes: most bytes the relay stores for all queued envelopes together
            (8 GiB), so many mailboxes at their cap cannot fill the disk. With
            ``max_account_queued_bytes`` (256 MiB) it takes 32 recipient accounts filled to
            their share to reach it. A sealed sender v2
            message's shared part is stored, and counted, once however many recipients it
            has; each recipient's own part counts per device. A send that would exceed it is
            refused with ``RATE_LIMITED`` ("relay storage full") and queues nothing; it frees
            up as envelopes are acknowledged or expire.
        window_envelopes: flow control: most envelopes pushed to one connection and not yet
            acknowledged (64); the backlog is read from the store page by page as acks free
            room, so a connection holds at most one window in memory whatever its mailbox.
        window_bytes: most bytes of bodies pushed to one connection and not yet acknowledged
            (1 MiB; one envelope is always allowed, however large).
        write_timeout_s: a connection whose pending writes make no progress for this long
            is aborted (30 s); so is one that does not take a close frame in this time.
        ping_interval_s: keepalive ping period (20 s).
        ping_timeout_s: a connection that does not answer a ping in this time is closed (20 s).
        idle_timeout_s: an unauthenticated connection that sends nothing for this long is
            closed (15 s); it also bounds the opening handshake.
        max_connections: most open connections; more are refused with HTTP 503 (1000, and
            never more than the process's file-descriptor limit allows).
        max_buffered_bytes: most bytes waiting to be handled or written over all connections
            (256 MiB); above it new connections are refused with HTTP 503 and no request is
            read.
        max_unauthenticated_outbox_bytes: the outbox limit of a connection that has not
            authenticated (256 KiB): it stops being read once this much waits for it.
        max_inflight_requests: most requests of one connection read but not yet answered (32).
        max_incoming_frames: most received frames the WebSocket library buffers per
            connection before it stops reading the socket (2).
        max_batch: most requests the storage thread commits in one transaction (256).
        max_inflight_bytes: most bytes of one connection's requests read but not yet
            answered (2 MiB; one request is always allowed). Counted, with pending output,
            in ``max_buffered_bytes``.
        allowed_origins: browser origins (``https://host``) allowed to connect; a request
            with any other ``Origin`` header is refused (HTTP 403). Clients that send no
            ``Origin`` (every non-browser client) are always accepted.
        kt_epoch_interval_s: how often the key-transparency directory publishes the queued
            (ACI -> identity key) updates as an epoch (60 s); a registration's key is
            "pending" for clients until then.
        kt_max_epoch_changes: most updates one epoch publishes (1000; the rest wait for the
            next), which bounds each epoch's append-only proof so it fits one frame.
        kt_auditor_keys: Ed25519 public keys (32 bytes, at most 16) of the auditors whose
            head cosignatures the relay stores and serves; no one else's is stored or served.
            Empty (the default): the relay refuses every cosignature, and clients that
            require auditor cosignatures accept none of its heads.
        kt_audit_burst: append-only proofs the relay answers at once, across all
            connections (1000); and, separately, new cosignatures it stores at once from each
            configured auditor (refusals and cosignatures already stored spend nothing).
        kt_audit_refill_per_s: audit requests regained per second (50).
        max_account_queued_bytes: most bytes of envelope bodies queued for all devices of
            one recipient account together (256 MiB, whole bodies as the devices will be
            sent them), its share of ``max_total_queued_bytes``: without it one account of
            127 devices at their mailbox cap (127 x 64 MiB, almost 8 GiB) could take the whole
            budget and stop every send on the relay. A send beyond it is refused with
            ``RATE_LIMITED`` ("recipient storage full") and queues nothing.
        identified_bytes_burst: bytes of message bodies one device may send identified at
            once (64 MiB; at least one largest send, 127 x 256 KiB, always fits).
        identified_bytes_per_s: identified bytes per sending device regained per second
            (1 MiB). Beyond the rate, SendMessage gets ``RATE_LIMITED`` and queues nothing.
        max_ack_ids: most envelope ids in one Ack (1000); more is ``BAD_REQUEST``. Each id
            costs a lookup on the storage thread (clients acknowledge in smaller batches).
        refusal_burst: account lookups the relay spends at once on SendMultiRecipient
            requests that are then refused for a wrong or missing access key (10,000; one
            lookup per recipient). The budget is relay-wide for unauthenticated connections
            (the relay cannot tell their senders apart) and per device for authenticated
            ones. A multi-recipient send needs as many lookups in the budget as it has
            access entries before it is parsed, and as it has recipients before they are
            looked up, else it gets ``RATE_LIMITED``; only a refused send spends them, so a
            storm of refused sends is cut off after one burst. Keep it at least
            ``max_multi_recipients``, or the largest sends are always refused.
        refusal_refill_per_s: refused-send lookups regained per second (1,000).
        max_unauthenticated_lifetime_s: an unauthenticated connection is closed this long
            after it opened (90 s), whatever it sends, so trickled requests cannot hold a
            connection slot; sealed senders (unauthenticated by design) reconnect.
        max_unauthenticated_requests: most requests an unauthenticated connection may send
            (500); after that it is closed once its answers are written.
        max_unauthenticated_connections: most connections not yet authenticated (handshakes
            included); more are refused with HTTP 503. None (default): half of
            ``max_connections``, so the other half stays reserved for authenticated devices.
        max_transport_buffer_bytes: most bytes the relay lets wait in one connection's
            socket buffer, whoever wrote them (the library writes pongs straight to it):
            above it, plus room for the largest frame (1 MiB), the connection is aborted
            (1 MiB); so is one whose socket buffer does not shrink for ``write_timeout_s``.
            Counted in ``max_buffered_bytes``.
        max_batch_result_bytes: the storage thread cuts a batch once its results (bodies to
            push) pass this many bytes, and starts no new batch while this much waits to be
            applied on the event loop (16 MiB; one request is always allowed).
        provisioning_ttl_s: a provisioning address (OpenProvisioning) expires this long
            after it was opened (600 s); its connection is then closed. While it is open, the
            connection is exempt from the idle timeout and the unauthenticated lifetime.
        max_provisioning_addresses: most provisioning addresses open at once on this relay
            instance (100); one more OpenProvisioning forgets the address that has waited
            longest and closes its connection (1008). Each holds one unauthenticated
            connection, so keep it well below ``max_unauthenticated_connections``.
        max_provision_envelope_bytes: largest provisioning envelope SendProvisioning may
            carry (4096 bytes; Signal's are well under 2 KiB); more is ``TOO_LARGE``.
        linking_code_ttl_s: a linking code (GetLinkingCode) expires this long after it was
            issued (600 s).
        linking_code_burst: linking codes one account may be issued at once (5).
        linking_code_refill_per_s: linking codes per account regained per second (1/60).
    """

    message_ttl_ms: int = 30 * _DAY_MS
    sweep_interval_s: float = 3600.0
    max_body: int = 256 * 1024
    max_messages_per_send: int = MAX_DEVICE_ID
    max_upload_keys: int = 100
    max_stored_keys: int = 500
    max_mailbox: int = 10_000
    max_mailbox_bytes: int = 64 * 1024 * 1024
    max_outbox_bytes: int = 8 * 1024 * 1024
    bundle_burst: int = 100
    bundle_refill_per_s: float = 1.0
    sender_cert_ttl_ms: int = _DAY_MS
    max_multi_recipients: int = 1_000
    registration_burst: int = 100
    registration_refill_per_s: float = 10.0
    admission: AdmissionHook | None = None
    one_time_budget: int = 20
    one_time_budget_period_s: float = 3600.0
    sealed_burst: int = 500
    sealed_refill_per_s: float = 50.0
    max_total_queued_bytes: int = 8 * 1024 * 1024 * 1024
    window_envelopes: int = 64
    window_bytes: int = 1024 * 1024
    write_timeout_s: float = 30.0
    ping_interval_s: float = 20.0
    ping_timeout_s: float = 20.0
    idle_timeout_s: float = 15.0
    max_connections: int = 1000
    max_buffered_bytes: int = 256 * 1024 * 1024
    max_unauthenticated_outbox_bytes: int = 256 * 1024
    max_inflight_requests: int = 32
    max_incoming_frames: int = 2
    max_batch: int = 256
    allowed_origins: tuple[str, ...] = ()
    max_inflight_bytes: int = 2 * 1024 * 1024
    kt_epoch_interval_s: float = 60.0
    kt_max_epoch_changes: int = 1000
    kt_auditor_keys: tuple[bytes, ...] = ()
    kt_audit_burst: int = 1000
    kt_audit_refill_per_s: float = 50.0
    max_account_queued_bytes: int = 256 * 1024 * 1024
    identified_bytes_burst: int = 64 * 1024 * 1024
    identified_bytes_per_s: float = 1024.0 * 1024.0
    max_ack_ids: int = 1000
    refusal_burst: int = 10_000
    refusal_refill_per_s: float = 1000.0
    max_unauthenticated_lifetime_s: float = 90.0
    max_unauthenticated_requests: int = 500
    max_unauthenticated_connections: int | None = None
    max_transport_buffer_bytes: int = 1024 * 1024
    max_batch_result_bytes: int = 16 * 1024 * 1024
    provisioning_ttl_s: float = 600.0
    max_provisioning_addresses: int = 100
    max_provision_envelope_bytes: int = 4096
    linking_code_ttl_s: float = 600.0
    linking_code_burst: int = 5
    linking_code_refill_per_s: float = 1.0 / 60.0


@dataclass(slots=True)
class Session:
    """One connection's state: its challenge nonce and, once proven, its device."""

    nonce: bytes = field(repr=False)
    aci: bytes | None = None
    device_id: int = 0
    auth_attempted: bool = False
    #: the provisioning address this connection opened (at most one per connection)
    provisioning: bytes | None = field(default=None, repr=False)
    #: the relay's count of device removals when this session authenticated
    removals_seen: int = 0

    @property
    def authenticated(self) -> bool:
        """True once Authenticate or Register succeeded."""
        return self.aci is not None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What handling one frame produced."""

    response: rf.Response
    queued: tuple[QueuedMessage, ...] = ()
    authenticated: bool = False
    close: bool = False
    #: OpenProvisioning: the address this connection now waits on
    provisioning_opened: bytes | None = None
    #: OpenProvisioning on a full relay: the oldest address, forgotten to make room (its
    #: waiting connection is closed)
    provisioning_evicted: bytes | None = None
    #: SendProvisioning: (address, envelope) to push to the connection waiting on address
    provision: tuple[bytes, bytes] | None = None
    #: RemoveDevice: the (aci, device id) removed, whose connections must be told and closed
    removed: tuple[bytes, int] | None = None


class _Refuse(Exception):
    def __init__(
        self, code: rf.StatusCode, message: str, body: rf.ResponseBody | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.body = body


class TokenBuckets:
    """Per-key token buckets, in memory only (lost on restart, by design)."""

    __slots__ = ("_burst", "_rate", "_state")

    _PRUNE_AT = 100_000

    def __init__(self, burst: int, refill_per_s: float) -> None:
        """Each key starts with ``burst`` tokens and regains ``refill_per_s`` per second."""
        self._burst = float(burst)
        self._rate = refill_per_s / 1000.0
        self._state: dict[Hashable, tuple[float, int]] = {}

    def _level(self, key: Hashable, now: int) -> float:
        tokens, last = self._state.get(key, (self._burst, now))
        return min(self._burst, tokens + max(0, now - last) * self._rate)

    def available(self, key: Hashable, now: int) -> bool:
        """Whether ``key`` has a token at ``now`` (nothing is spent or recorded)."""
        return self._level(key, now) >= 1.0

    def has(self, key: Hashable, n: float, now: int) -> bool:
        """Whether ``key`` has ``n`` tokens at ``now`` (nothing is spent or recorded)."""
        return self._level(key, now) >= n

    def spend(self, key: Hashable, n: float, now: int) -> None:
        """Spend ``n`` tokens of ``key`` at ``now``, or all it has if fewer."""
        self._state[key] = (max(0.0, self._level(key, now) - n), now)
        self._prune(now)

    def take(self, key: Hashable, now: int) -> bool:
        """Spend one token of ``key`` at ``now`` (ms); False if none is left."""
        return self.take_all((key,), now)

    def take_all(self, keys: Iterable[Hashable], now: int) -> bool:
        """Spend one token of every key (a key listed twice spends two), or none: False if
        any of them has too few left."""
        need: dict[Hashable, int] = {}
        for k in keys:
            need[k] = need.get(k, 0) + 1
        levels = {k: self._level(k, now) for k in need}
        if any(levels[k] < n for k, n in need.items()):
            for k, level in levels.items():
                self._state[k] = (level, now)
            self._prune(now)
            return False
        for k, n in need.items():
            self._state[k] = (levels[k] - n, now)
        self._prune(now)
        return True

    def _prune(self, now: int) -> None:
        if len(self._state) > self._PRUNE_AT:  # bound memory: forget buckets full again
            self._state = {
                k: v
                for k, v in self._state.items()
                if v[0] + max(0, now - v[1]) * self._rate < self._burst
            }


class TokenAdmission:
    """The built-in :data:`AdmissionHook`: admits a registration whose
    ``registration_token`` is one of a fixed set of tokens (kept as SHA-256 digests and
    compared in constant time). Tokens are reusable until the relay restarts with another
    set; ``securemsg relay serve --registration-token-file`` loads them from a file."""

    __slots__ = ("_digests",)

    def __init__(self, tokens: Iterable[bytes | str]) -> None:
        """Admit registrations carrying one of ``tokens``.

        Raises:
            UsageError: no token given, an empty token, or one longer than
                :data:`~securemsg.relay_protocol.frames.MAX_REGISTRATION_TOKEN` bytes.
        """
        digests: list[bytes] = []
        for t in tokens:
            raw = t.encode() if isinstance(t, str) else bytes(t)
            if not 1 <= len(raw) <= rf.MAX_REGISTRATION_TOKEN:
                raise UsageError("a registration token must be 1..256 bytes")
            digests.append(hashlib.sha256(raw).digest())
        if not digests:
            raise UsageError("no registration tokens given")
        self._digests = tuple(digests)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> TokenAdmission:
        """Tokens from a text file, one per line (blank lines and ``#`` comments skipped).

        Raises:
            UsageError: the file holds no token, or a token is too long.
            OSError: the file cannot be read.
        """
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f]
        return cls(line for line in lines if line and not line.startswith("#"))

    def __call__(self, request: rf.Register) -> bool:
        """True if the request carries one of the tokens."""
        if not request.registration_token:
            return False
        digest = hashlib.sha256(request.registration_token).digest()
        found = False
        for d in self._digests:  # no early exit
            found |= constant_time_eq(d, digest)
        return found

    def __repr__(self) -> str:
        return f"TokenAdmission({len(self._digests)} tokens)"


def access_key_digest(access_key: bytes) -> bytes:
    """The digest the relay keeps instead of an unidentified-access key (HMAC-SHA256 with a
    fixed label)."""
    return hmac_sha256(_ACCESS_KEY_LABEL, bytes(access_key))


def linking_code_digest(code: str) -> bytes:
    """The digest under which the relay stores a linking code (HMAC-SHA256, fixed label)."""
    return hmac_sha256(_LINKING_CODE_LABEL, code.encode("ascii"))


def utc_date(now_ms: int) -> str:
    """``YYYY-MM-DD`` (UTC) of a Unix-ms time: the only precision the relay keeps for dates."""
    return datetime.fromtimestamp(now_ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def generate_server_keys(rng: Rng) -> ServerKeysRow:
    """A fresh trust root, server key and server certificate (key id 1)."""
    root = PrivateKey.generate(rng)
    server = PrivateKey.generate(rng)
    cert = ServerCertificate.new(_SERVER_KEY_ID, server.public_key(), root, rng)
    return ServerKeysRow(
        trust_root_private=root.to_bytes(),
        trust_root_public=root.public_key().to_bytes(),
        server_key_id=_SERVER_KEY_ID,
        server_private=server.to_bytes(),
        server_public=server.public_key().to_bytes(),
        server_certificate=cert.to_bytes(),
    )


def _aci_str(aci: bytes) -> str:
    return str(UUID(bytes=aci))


def _check_ec(key: bytes) -> PublicKey:
    try:
        return PublicKey.from_bytes(key)
    except PeerError:
        raise _Refuse(rf.StatusCode.BAD_REQUEST, "invalid public key") from None


def _check_signed(identity: PublicKey, key: rf.SignedPreKey, kyber: bool) -> KeyRow:
    try:
        if kyber:
            KyberPublicKey.from_bytes(key.public_key)
        else:
            PublicKey.from_bytes(key.public_key)
        identity.verify(key.public_key, key.signature)
    except PeerError:
        raise _Refuse(rf.StatusCode.BAD_REQUEST, "invalid prekey or prekey signature") from None
    return KeyRow(key.id, key.public_key, key.signature)


def _signed(k: KeyRow) -> rf.SignedPreKey:
    return rf.SignedPreKey(k.key_id, k.public_key, k.signature)


def _bundle(b: BundleRow) -> rf.DeviceBundle:
    return rf.DeviceBundle(
        device_id=b.device_id,
        registration_id=b.registration_id,
        identity_key=b.identity_key,
        signed_pre_key=_signed(b.signed_pre_key),
        pre_key=None
        if b.pre_key is None
        else rf.OneTimePreKey(b.pre_key.key_id, b.pre_key.public_key),
        kyber_pre_key=_signed(b.kyber_pre_key),
        kyber_last_resort=b.kyber_last_resort,
    )


class RelayService:
    """The relay's request handling over a :class:`RelayStore`.

    Not thread-safe; the server calls it from its one storage thread only.
    """

    def __init__(self, store: RelayStore, rng: Rng, config: RelayConfig | None = None) -> None:
        """Load (or create, on first start) the relay's trust root and server key.

        Raises:
            StorageError: the store failed.
            DecodeError: the stored server keys are corrupt.
        """
        self.store = store
        self.config = config or RelayConfig()
        self._rng = rng
        keys = store.init_server_keys(generate_server_keys(rng))
        self._trust_root = PublicKey.from_bytes(keys.trust_root_public)
        self._server_cert = ServerCertificate.from_bytes(keys.server_certificate)
        if self._server_cert.key_id in REVOKED_SERVER_CERTIFICATE_KEY_IDS:
            raise StorageError("the stored server certificate uses a revoked key id")
        self._server_private = PrivateKey.from_bytes(keys.server_private)
        cfg = self.config
        self._buckets = TokenBuckets(cfg.bundle_burst, cfg.bundle_refill_per_s)
        self._registrations = TokenBuckets(cfg.registration_burst, cfg.registration_refill_per_s)
        self._one_time_budget = TokenBuckets(
            cfg.one_time_budget, cfg.one_time_budget / max(cfg.one_time_budget_period_s, 1e-3)
        )
        self._sealed_buckets = TokenBuckets(cfg.sealed_burst, cfg.sealed_refill_per_s)
        self._identified_bytes = TokenBuckets(
            cfg.identified_bytes_burst, cfg.identified_bytes_per_s
        )
        self._refusals = TokenBuckets(cfg.refusal_burst, cfg.refusal_refill_per_s)
        self._linking_codes = TokenBuckets(cfg.linking_code_burst, cfg.linking_code_refill_per_s)
        self._budget_full = False
        # provisioning addresses open on this instance: address -> expiry (Unix ms); memory only
        self._provisioning: dict[bytes, int] = {}
        # recent removals: (aci, device id) -> the removal count when it was removed
        self._removals: OrderedDict[tuple[bytes, int], int] = OrderedDict()
        self._removal_count = 0
        relay_kt.check_config(cfg)
        #: The key-transparency directory (None for a store without KT tables).
        self.kt: relay_kt.RelayKeyTransparency | None = None
        kt_store = store.kt_store()
        if kt_store is not None:
            self.kt = relay_kt.RelayKeyTransparency(
                kt_store,
                rng,
                cfg,
                TokenBuckets(cfg.bundle_burst, cfg.bundle_refill_per_s),
                TokenBuckets(cfg.kt_audit_burst, cfg.kt_audit_refill_per_s),
            )

    @property
    def trust_root_public(self) -> PublicKey:
        """The trust root clients pin."""
        return self._trust_root

    @property
    def server_certificate(self) -> ServerCertificate:
        """The server certificate (signed by the trust root)."""
        return self._server_cert

    def new_session(self) -> Session:
        """A session with a fresh 32-byte challenge nonce."""
        return Session(nonce=self._rng.random_bytes(rf.NONCE_LENGTH))

    # -- dispatch -------------------------------------------------------------------------

    def handle(self, session: Session, frame: rf.ClientFrame, now: int) -> Outcome:
        """Answer one request. Never raises: failures become a status.

        Args:
            session: the connection's state (updated on successful authentication).
            frame: the decoded request.
            now: Unix time in milliseconds.
        """
        rid = frame.request_id
        body = frame.body
        try:
            if body is None:
                raise _Refuse(rf.StatusCode.BAD_REQUEST, "unknown request type")
            if isinstance(body, rf.Authenticate):
                return self._authenticate(session, rid, body, now)
            if isinstance(body, rf.Register):
                return self._register(session, rid, body, now)
            if isinstance(body, rf.GetServerTrustRoot):
                return self._ok(
                    rid,
                    rf.ServerTrustRoot(self._trust_root.to_bytes(), self._server_cert.to_bytes()),
                )
            if isinstance(body, rf.SendSealed):
                return self._send_sealed(session, rid, body, now)
            if isinstance(body, rf.SendMultiRecipient):
                return self._send_multi(session, rid, body, now)
            if isinstance(body, rf.OpenProvisioning):
                return self._open_provisioning(session, rid, now)
            if isinstance(body, relay_kt.KT_REQUESTS):
                if self.kt is None:
                    raise _Refuse(rf.StatusCode.NOT_FOUND, "no key-transparency directory")
                return Outcome(self.kt.answer(session.aci, session.device_id, rid, body, now))
            if not session.authenticated:
                raise _Refuse(rf.StatusCode.UNAUTHENTICATED, "authenticate first")
            return self._authenticated(session, rid, body, now)
        except _Refuse as r:
            return Outcome(rf.Response(rid, r.code, r.message, r.body))
        except StorageError:
            _LOG.error("relay storage error while handling a request")
            return Outcome(rf.Response(rid, rf.StatusCode.INTERNAL, "storage error"))
        except Exception as exc:  # never crash the relay on one request
            _LOG.error("relay bug while handling a request: %s", type(exc).__name__)
            return Outcome(rf.Response(rid, rf.StatusCode.INTERNAL, "internal error"))

    def _authenticated(self, s: Session, rid: int, body: rf.Request, now: int) -> Outcome:
        assert s.aci is not None
        aci, dev = s.aci, s.device_id
        removed_at = self._removals.get((aci, dev))
        if removed_at is not None and removed_at > s.removals_seen:
            # removed while this request waited: its connection is being closed
            return Outcome(
                rf.Response(rid, rf.StatusCode.UNAUTHENTICATED, "device removed"), close=True
            )
        if isinstance(body, rf.SendProvisioning):
            return self._send_provisioning(rid, body, now)
        if isinstance(body, rf.GetLinkingCode):
            return self._linking_code(s, rid, now)
        if isinstance(body, rf.RemoveDevice):
            return self._remove_device(s, rid, body)
        if isinstance(body, rf.UploadPreKeys):
            return self._upload(s, rid, body)
        if isinstance(body, rf.RotateSignedPreKey):
            return self._upload(
                s,
                rid,
                rf.UploadPreKeys(
                    signed_pre_key=body.signed_pre_key,
                    last_resort_kyber_pre_key=body.last_resort_kyber_pre_key,
                ),
            )
        if isinstance(body, rf.GetPreKeyCounts):
            ec, ky = self.store.pre_key_counts(aci, dev)
            return self._ok(rid, rf.PreKeyCounts(ec, ky))
        if isinstance(body, rf.FetchBundles):
            return self._fetch(s, rid, body, now)
        if isinstance(body, rf.GetDevices):
            # Only the caller's own account, or one whose access key the caller holds: the
            # device list and registration ids are not for strangers. (Whether an account
            # exists is no secret from an authenticated caller: FetchBundles says it, as
            # Signal's key endpoint does, within its rate limits.)
            if body.aci != aci and not self._access_ok(body.aci, body.access_key):
                raise _Refuse(rf.StatusCode.UNAUTHENTICATED, "unidentified access refused")
            account = self.store.get_account(body.aci)
            if account is None:  # pragma: no cover - checked just above
                raise _Refuse(rf.StatusCode.NOT_FOUND, "no such account")
            devices = self.store.list_devices(body.aci)
            return self._ok(
                rid,
                rf.Devices(
                    account.identity_key,
                    tuple(rf.DeviceInfo(d.device_id, d.registration_id) for d in devices),
                ),
            )
        if isinstance(body, rf.SendMessage):
            return self._send_identified(s, rid, body, now)
        if isinstance(body, rf.Ack):
            if len(body.ids) > self.config.max_ack_ids:
                raise _Refuse(rf.StatusCode.BAD_REQUEST, "too many ids in one ack")
            self.store.ack(aci, dev, body.ids)
            return self._ok(rid)
        if isinstance(body, rf.SetAccessKey):
            if not self.store.set_access_key_digest(aci, access_key_digest(body.access_key)):
                raise _Refuse(rf.StatusCode.NOT_FOUND, "no such account")  # pragma: no cover
            return self._ok(rid)
        if isinstance(body, rf.GetSenderCertificate):
            account = self.store.get_account(aci)
            if account is None:  # pragma: no cover - the session proved this account exists
                raise _Refuse(rf.StatusCode.NOT_FOUND, "no such account")
            cert = SenderCertificate.new(
                sender_uuid=_aci_str(aci),
                sender_e164=None,
                sender_device_id=dev,
                key=PublicKey.from_bytes(account.identity_key),
                expiration=now + self.config.sender_cert_ttl_ms,
                signer=self._server_cert,
                signer_key=self._server_private,
                rng=self._rng,
            )
            return self._ok(rid, rf.SenderCertificateResponse(cert.to_bytes()))
        raise _Refuse(rf.StatusCode.BAD_REQUEST, "unexpected request")

    @staticmethod
    def _ok(rid: int, body: rf.ResponseBody | None = None) -> Outcome:
        return Outcome(rf.Response(rid, rf.StatusCode.OK, "", body))

    # -- authentication and registration --------------------------------------------------

    def _proof(self, s: Session, identity: PublicKey, aci: bytes, dev: int, sig: bytes) -> bool:
        try:
            identity.verify(rf.auth_message(s.nonce, aci, dev), sig)
        except SecureMsgError:
            return False
        return True

    def _start_auth(self, s: Session, version: int) -> None:
        if s.authenticated or s.auth_attempted:
            raise _Refuse(rf.StatusCode.BAD_REQUEST, "one authentication per connection")
        s.auth_attempted = True
        if version != rf.PROTOCOL_VERSION:
            raise _Refuse(rf.StatusCode.BAD_REQUEST, "unsupported protocol version")

    def _authenticate(self, s: Session, rid: int, body: rf.Authenticate, now: int) -> Outcome:
        try:
            self._start_auth(s, body.protocol_version)
        except _Refuse as r:
            return Outcome(rf.Response(rid, r.code, r.message), close=True)
        account = self.store.get_account(body.aci)
        device = self.store.get_device(body.aci, body.device_id) if account else None
        # Verify even for unknown devices (against a fixed key) so timing says little.
        identity = PublicKey.from_bytes(account.identity_key) if account else self._trust_root
        valid = self._proof(s, identity, body.aci, body.device_id, body.signature)
        if account is not None and device is None and valid:
            # A valid proof by the account's key for a device id it does not have: a removed
            # (or never linked) device learns it is not registered.
            return Outcome(
                rf.Response(rid, rf.StatusCode.NOT_FOUND, "device not registered"), close=True
            )
        if account is None or device is None or not valid:
            return Outcome(
                rf.Response(rid, rf.StatusCode.UNAUTHENTICATED, "authentication failed"),
                close=True,
            )
        self.store.touch_device(body.aci, body.device_id, utc_date(now))
        s.aci, s.device_id = body.aci, body.device_id
        s.removals_seen = self._removal_count
        return Outcome(rf.Response(rid, rf.StatusCode.OK), authenticated=True)

    def _register(self, s: Session, rid: int, body: rf.Register, now: int) -> Outcome:
        try:
            self._start_auth(s, body.protocol_version)
            if body.device_id == 0 and not body.linking_code:
                raise _Refuse(rf.StatusCode.BAD_REQUEST, "device id 0 needs a linking code")
            if not 0 <= body.device_id <= MAX_DEVICE_ID:
                raise _Refuse(rf.StatusCode.BAD_REQUEST, "device id must be 1..127")
            if not 1 <= body.registration_id <= REGISTRATION_ID_MASK - 3:
                raise _Refuse(rf.StatusCode.BAD_REQUEST, "registration id out of range")
            limit = self.config.max_upload_keys
            if len(body.pre_keys) > limit or len(body.kyber_pre_keys) > limit:
                raise _Refuse(rf.StatusCode.TOO_LARGE, "too many one-time prekeys")
            self._admit(body)
            # Verify before spending the relay-wide budget: the proof first (one signature,
            # so garbage costs one verification), then, if a registration token is there to
            # be had, the prekeys; only a registration the store then creates takes the token.
            identity = _check_ec(body.identity_key)
            if not self._proof(s, identity, body.aci, body.device_id, body.signature):
                raise _Refuse(rf.StatusCode.UNAUTHENTICATED, "proof of possession failed")
            if not self._registrations.available(_RELAY_WIDE, now):
                raise _Refuse(rf.StatusCode.RATE_LIMITED, "too many registrations, try later")
            device = NewDevice(
                aci=body.aci,
                device_id=body.device_id,
                registration_id=body.registration_id,
                identity_key=identity.to_bytes(),
                access_key_digest=access_key_digest(body.unidentified_access_key),
                signed_pre_key=_check_signed(identity, body.signed_pre_key, kyber=False),
                last_resort_kyber_pre_key=_check_signed(
                    identity, body.last_resort_kyber_pre_key, kyber=True
                ),
                pre_keys=tuple(self._one_time(k) for k in body.pre_keys),
                kyber_pre_keys=tuple(
                    _check_signed(identity, k, kyber=True) for k in body.kyber_pre_keys
                ),
            )
            device_id = body.device_id
            if body.linking_code:
                result, device_id = self.store.link_device(
                    device, utc_date(now), linking_code_digest(body.linking_code), now
                )
            else:
                result = self.store.create_device(device, utc_date(now), new_account_only=True)
            if result is CreateResult.IDENTITY_MISMATCH:
                raise _Refuse(rf.StatusCode.CONFLICT, "account exists with another identity key")
            if result is CreateResult.DEVICE_EXISTS:
                raise _Refuse(rf.StatusCode.CONFLICT, "device already registered")
            if result is CreateResult.NO_FREE_ID:
                raise _Refuse(rf.StatusCode.CONFLICT, "no free device id")
            if result is not CreateResult.CREATED:  # LINK_REQUIRED, LINK_REFUSED
                raise _Refuse(rf.StatusCode.FORBIDDEN, "linking code not valid")
            # Only what the store created spends the budget (one request at a time, so the
            # token checked for above is still there): a refused link or a conflict loops
            # for free, never locking everybody else out.
            self._registrations.spend(_RELAY_WIDE, 1.0, now)
        except _Refuse as r:
            return Outcome(rf.Response(rid, r.code, r.message), close=True)
        s.aci, s.device_id = body.aci, device_id
        s.removals_seen = self._removal_count
        return Outcome(
            rf.Response(rid, rf.StatusCode.OK, "", rf.Registered(device_id)), authenticated=True
        )

    def _admit(self, body: rf.Register) -> None:
        hook = self.config.admission
        if hook is None:
            return
        try:
            admitted = bool(hook(body))
        except Exception as exc:  # fail closed: a broken hook admits nobody
            _LOG.error("relay admission hook failed: %s", type(exc).__name__)
            admitted = False
        if not admitted:
            raise _Refuse(rf.StatusCode.FORBIDDEN, "registration not admitted")

    @staticmethod
    def _one_time(k: rf.OneTimePreKey) -> KeyRow:
        _check_ec(k.public_key)
        return KeyRow(k.id, k.public_key)

    # -- linked devices and provisioning --------------------------------------------------

    def _open_provisioning(self, s: Session, rid: int, now: int) -> Outcome:
        if s.authenticated or s.auth_attempted:
            raise _Refuse(
                rf.StatusCode.BAD_REQUEST, "provisioning needs an unauthenticated connection"
            )
        if s.provisioning is not None:
            raise _Refuse(rf.StatusCode.CONFLICT, "this connection has a provisioning address")
        cfg = self.config
        evicted: bytes | None = None
        if len(self._provisioning) >= cfg.max_provisioning_addresses:
            for address, expires in list(self._provisioning.items()):
                if expires <= now:  # normally forgotten when its connection closes
                    self.forget_provisioning(address)
            if len(self._provisioning) >= cfg.max_provisioning_addresses:
                # Full: the address that has waited longest makes room. Refusing the new one
                # instead let one client open the whole pool once and hold it for the
                # address lifetime, so that nobody could link a device; now it must keep
                # opening addresses as fast as people scan codes.
                evicted = min(self._provisioning, key=self._provisioning.__getitem__)
                self.forget_provisioning(evicted)
        address = self._rng.random_bytes(rf.PROVISIONING_ADDRESS_LENGTH)
        expires = now + int(cfg.provisioning_ttl_s * 1000)
        opener = getattr(self.store, "open_provisioning", None)
        if opener is not None:  # a cluster store: other instances can find the address
            opener(address, expires)
        self._provisioning[address] = expires
        s.provisioning = address
        return Outcome(
            rf.Response(rid, rf.StatusCode.OK, "", rf.ProvisioningAddress(address, expires)),
            provisioning_opened=address,
            provisioning_evicted=evicted,
        )

    def forget_provisioning(self, address: bytes) -> None:
        """Forget a provisioning address (its connection closed, or it was delivered)."""
        if self._provisioning.pop(address, None) is None:
            return
        closer = getattr(self.store, "close_provisioning", None)
        if closer is not None:
            closer(address)

    def _send_provisioning(self, rid: int, body: rf.SendProvisioning, now: int) -> Outcome:
        if not body.envelope:
            raise _Refuse(rf.StatusCode.BAD_REQUEST, "empty provisioning envelope")
        limit = self.config.max_provision_envelope_bytes
        limit = min(limit, getattr(self.store, "max_provision_envelope", limit))
        if len(body.envelope) > limit:
            raise _Refuse(rf.StatusCode.TOO_LARGE, "provisioning envelope too large")
        expires = self._provisioning.get(body.address)
        if expires is not None and expires > now:  # held on this instance
            self.forget_provisioning(body.address)
            return Outcome(
                rf.Response(rid, rf.StatusCode.OK),
                provision=(body.address, bytes(body.envelope)),
            )
        claim = getattr(self.store, "claim_provisioning", None)
        if expires is None and claim is not None and claim(body.address, body.envelope, now):
            return self._ok(rid)  # another instance holds it: handed over at the commit
        # never opened, expired, delivered already (a replay), or its connection closed
        raise _Refuse(rf.StatusCode.NOT_FOUND, "no such provisioning address")

    def _linking_code(self, s: Session, rid: int, now: int) -> Outcome:
        assert s.aci is not None
        if s.device_id != 1:
            raise _Refuse(rf.StatusCode.FORBIDDEN, "only the primary device links devices")
        if not self._linking_codes.take(s.aci, now):
            raise _Refuse(rf.StatusCode.RATE_LIMITED, "too many linking codes, try later")
        raw = self._rng.random_bytes(_LINKING_CODE_BYTES)
        code = base64.urlsafe_b64encode(raw).decode("ascii")
        expires = now + int(self.config.linking_code_ttl_s * 1000)
        self.store.put_linking_code(s.aci, linking_code_digest(code), expires)
        return self._ok(rid, rf.LinkingCode(code, expires))

    def _remove_device(self, s: Session, rid: int, body: rf.RemoveDevice) -> Outcome:
        assert s.aci is not None
        if s.device_id != 1:
            raise _Refuse(rf.StatusCode.FORBIDDEN, "only the primary device removes devices")
        if not 2 <= body.device_id <= MAX_DEVICE_ID:
            raise _Refuse(rf.StatusCode.BAD_REQUEST, "device id must be 2..127")
        if not self.store.remove_device(s.aci, body.device_id):
            raise _Refuse(rf.StatusCode.NOT_FOUND, "no such device")
        key = (s.aci, body.device_id)
        self.note_removed(*key)
        return Outcome(rf.Response(rid, rf.StatusCode.OK), removed=key)

    def note_removed(self, aci: bytes, device_id: int) -> None:
        """Refuse the requests of sessions of this device authenticated before now (it was
        removed, here or on another instance of a cluster)."""
        key = (aci, device_id)
        self._removal_count += 1
        self._removals[key] = self._removal_count
        self._removals.move_to_end(key)
        while len(self._removals) > _REMOVALS_KEPT:
            self._removals.popitem(last=False)

    # -- prekeys --------------------------------------------------------------------------

    def _upload(self, s: Session, rid: int, body: rf.UploadPreKeys) -> Outcome:
        assert s.aci is not None
        limit = self.config.max_upload_keys
        if len(body.pre_keys) > limit or len(body.kyber_pre_keys) > limit:
            raise _Refuse(rf.StatusCode.TOO_LARGE, "too many one-time prekeys")
        account = self.store.get_account(s.aci)
        if account is None:  # pragma: no cover - the session proved this account exists
            raise _Refuse(rf.StatusCode.NOT_FOUND, "no such account")
        identity = PublicKey.from_bytes(account.identity_key)
        spk = body.signed_pre_key
        lr = body.last_resort_kyber_pre_key
        stored = self.store.store_pre_keys(
            s.aci,
            s.device_id,
            pre_keys=[self._one_time(k) for k in body.pre_keys],
            kyber_pre_keys=[_check_signed(identity, k, kyber=True) for k in body.kyber_pre_keys],
            signed_pre_key=None if spk is None else _check_signed(identity, spk, kyber=False),
            last_resort_kyber_pre_key=None if lr is None else _check_signed(identity, lr, True),
            max_stored=self.config.max_stored_keys,
        )
        if not stored:
            raise _Refuse(rf.StatusCode.TOO_LARGE, "too many one-time prekeys stored")
        return self._ok(rid)

    def _fetch(self, s: Session, rid: int, body: rf.FetchBundles, now: int) -> Outcome:
        assert s.aci is not None
        if body.device_id > MAX_DEVICE_ID:
            raise _Refuse(rf.StatusCode.BAD_REQUEST, "device id out of range")
        if not self._buckets.take((s.aci, s.device_id), now):
            raise _Refuse(rf.StatusCode.RATE_LIMITED, "too many bundle fetches")
        if body.device_id:
            targets = [body.device_id]
        else:
            targets = [d.device_id for d in self.store.list_devices(body.aci)]
        bundles: list[BundleRow] = []
        for dev in targets:
            # The budget is the target's, so fresh requester accounts do not reset it. It is
            # spent only when a one-time key is handed out (so unknown targets cost no memory).
            key = (body.aci, dev)
            one_time = self._one_time_budget.available(key, now)
            for b in self.store.take_bundles(body.aci, dev, one_time=one_time):
                if b.pre_key is not None or not b.kyber_last_resort:
                    self._one_time_budget.take(key, now)
                bundles.append(b)
        if not bundles:
            raise _Refuse(rf.StatusCode.NOT_FOUND, "no such account or device")
        return self._ok(rid, rf.Bundles(tuple(_bundle(b) for b in bundles)))

    # -- sending --------------------------------------------------------------------------

    def _check_devices(
        self,
        aci: bytes,
        devices: list[DeviceRow],
        given: list[tuple[int, int]],
        exclude: int | None,
    ) -> rf.MismatchedDevices | None:
        ids = [d for d, _ in given]
        if len(set(ids)) != len(ids):
            raise _Refuse(rf.StatusCode.BAD_REQUEST, "a device appears twice")
        current = {d.device_id: d.registration_id for d in devices if d.device_id != exclude}
        missing = tuple(sorted(set(current) - set(ids)))
        extra = tuple(sorted(set(ids) - set(current)))
        stale = tuple(sorted(d for d, r in given if d in current and current[d] != r))
        if missing or extra or stale:
            return rf.MismatchedDevices(aci, missing, extra, stale)
        return None

    @staticmethod
    def _check_timestamp(ts: int) -> None:
        if not 0 <= ts <= rf.MAX_TIMESTAMP:
            raise _Refuse(rf.StatusCode.BAD_REQUEST, "timestamp out of range")

    def _charge_sealed(self, queued: Sequence[QueuedMessage], now: int) -> None:
        """Spend one sealed-send token per copy from each target device, or refuse them all."""
        if not self._sealed_buckets.take_all(((m.aci, m.device_id) for m in queued), now):
            raise _Refuse(rf.StatusCode.RATE_LIMITED, "too many sealed messages to this device")

    def _check_messages(self, messages: tuple[rf.OutgoingMessage, ...]) -> None:
        if not messages:
            raise _Refuse(rf.StatusCode.BAD_REQUEST, "no messages")
        if len(messages) > self.config.max_messages_per_send:
            raise _Refuse(rf.StatusCode.TOO_LARGE, "too many messages")
        if any(len(m.body) > self.config.max_body for m in messages):
            raise _Refuse(rf.StatusCode.TOO_LARGE, "message body too large")

    def _queue(self, messages: list[QueuedMessage], rid: int, shared: bytes = b"") -> Outcome:
        result = self.store.enqueue(
            messages,
            self.config.max_mailbox,
            max_bytes_per_device=self.config.max_mailbox_bytes,
            shared=shared,
            max_total_bytes=self.config.max_total_queued_bytes,
            max_bytes_per_account=self.config.max_account_queued_bytes,
        )
        if result is EnqueueResult.MAILBOX_FULL:
            raise _Refuse(rf.StatusCode.RATE_LIMITED, "mailbox full")
        if result is EnqueueResult.ACCOUNT_FULL:
            raise _Refuse(rf.StatusCode.RATE_LIMITED, "recipient storage full")
        if result is EnqueueResult.RELAY_FULL:
            if not self._budget_full:  # once per episode, not once per refused send
                _LOG.warning("relay storage budget reached; sends are refused until it drains")
            self._budget_full = True
            raise _Refuse(rf.StatusCode.RATE_LIMITED, "relay storage full")
        self._budget_full = False
        return Outcome(rf.Response(rid, rf.StatusCode.OK, "", rf.SendResult()), tuple(messages))

    def _new_id(self) -> bytes:
        return self._rng.random_bytes(rf.ENVELOPE_ID_LENGTH)

    def _send_identified(self, s: Session, rid: int, body: rf.SendMessage, now: int) -> Outcome:
        assert s.aci is not None
        self._check_timestamp(body.timestamp)
        self._check_messages(body.messages)
        if any(m.type not in _IDENTIFIED_TYPES for m in body.messages):
            raise _Refuse(rf.StatusCode.BAD_REQUEST, "unsupported envelope type")
        devices = self.store.list_devices(body.destination_aci)
        if not devices:
            raise _Refuse(rf.StatusCode.NOT_FOUND, "no such account")
        exclude = s.device_id if body.destination_aci == s.aci else None
        given = [(m.device_id, m.registration_id) for m in body.messages]
        mismatch = self._check_devices(body.destination_aci, devices, given, exclude)
        if mismatch is not None:
            raise _Refuse(rf.StatusCode.CONFLICT, "device mismatch", rf.SendResult((mismatch,)))
        queued = [
            QueuedMessage(
                id=self._new_id(),
                aci=body.destination_aci,
                device_id=m.device_id,
                type=m.type,
                source_aci=s.aci,
                source_device_id=s.device_id,
                client_timestamp=body.timestamp,
                received_at=now,
                body=m.body,
            )
            for m in body.messages
        ]
        # A byte rate per sending device (a largest send always fits the burst).
        key = (s.aci, s.device_id)
        cost = min(sum(len(m.body) for m in body.messages), self.config.identified_bytes_burst)
        if not self._identified_bytes.has(key, cost, now):
            raise _Refuse(rf.StatusCode.RATE_LIMITED, "too many bytes sent, try later")
        outcome = self._queue(queued, rid)
        self._identified_bytes.spend(key, cost, now)
        return outcome

    def _access_ok(self, aci: bytes, access_key: bytes) -> bool:
        account = self.store.get_account(aci)
        stored = account.access_key_digest if account else bytes(32)
        # Compare even for unknown accounts, so both failures look alike.
        return constant_time_eq(stored, access_key_digest(access_key)) and account is not None

    def _sealed(
        self, aci: bytes, device_id: int, body: bytes, ts: int, now: int, shared: bytes = b""
    ) -> QueuedMessage:
        return QueuedMessage(
            id=self._new_id(),
            aci=aci,
            device_id=device_id,
            type=int(rf.EnvelopeType.UNIDENTIFIED_SENDER),
            source_aci=None,
            source_device_id=0,
            client_timestamp=ts,
            received_at=now,
            body=body,
            shared=shared,
        )

    def _send_sealed(self, s: Session, rid: int, body: rf.SendSealed, now: int) -> Outcome:
        self._check_timestamp(body.timestamp)
        self._check_messages(body.messages)
        if not self._access_ok(body.destination_aci, body.access_key):
            raise _Refuse(rf.StatusCode.UNAUTHENTICATED, "unidentified access refused")
        devices = self.store.list_devices(body.destination_aci)
        exclude = s.device_id if s.aci == body.destination_aci else None
        given = [(m.device_id, m.registration_id) for m in body.messages]
        mismatch = self._check_devices(body.destination_aci, devices, given, exclude)
        if mismatch is not None:
            raise _Refuse(rf.StatusCode.CONFLICT, "device mismatch", rf.SendResult((mismatch,)))
        queued = [
            self._sealed(body.destination_aci, m.device_id, m.body, body.timestamp, now)
            for m in body.messages
        ]
        self._charge_sealed(queued, now)
        return self._queue(queued, rid)

    def _send_multi(self, s: Session, rid: int, body: rf.SendMultiRecipient, now: int) -> Outcome:
        self._check_timestamp(body.timestamp)
        # Lookups spent on a refused send are charged (relay-wide without authentication):
        # a send needs its recipients' worth of the budget before they are looked up, and
        # (one access entry per recipient) its access entries' worth before it is parsed.
        payer = _RELAY_WIDE if s.aci is None else (s.aci, s.device_id)
        if not self._refusals.has(payer, max(1, len(body.access)), now):
            raise _Refuse(rf.StatusCode.RATE_LIMITED, "too many refused sends, try later")
        try:
            parsed = SealedSenderV2SentMessage.parse(body.payload)
        except PeerError:
            raise _Refuse(rf.StatusCode.BAD_REQUEST, "not a sealed sender v2 message") from None
        if not parsed.recipients:
            raise _Refuse(rf.StatusCode.BAD_REQUEST, "no recipients")
        if len(parsed.recipients) > self.config.max_multi_recipients:
            raise _Refuse(rf.StatusCode.TOO_LARGE, "too many recipients")
        keys: dict[bytes, bytes] = {}
        for a in body.access:
            keys.setdefault(a.aci, a.access_key)
        plan: list[tuple[bytes, ServiceId, tuple[tuple[int, int], ...]]] = []
        for sid, devs in parsed.recipients.items():
            if sid.kind is not ServiceIdKind.ACI:
                raise _Refuse(rf.StatusCode.BAD_REQUEST, "only ACI recipients are supported")
            plan.append((sid.uuid.bytes, sid, devs))
        if not self._refusals.has(payer, len(plan), now):
            raise _Refuse(rf.StatusCode.RATE_LIMITED, "too many refused sends, try later")
        allowed = True
        for aci, _, _ in plan:  # check every key (no early exit: no per-recipient oracle)
            key = keys.get(aci)
            allowed &= key is not None and self._access_ok(aci, key)
        if not allowed:
            self._refusals.spend(payer, len(plan), now)
            raise _Refuse(rf.StatusCode.UNAUTHENTICATED, "unidentified access refused")
        mismatches: list[rf.MismatchedDevices] = []
        for aci, _, devs in plan:
            exclude = s.device_id if s.aci == aci else None
            m = self._check_devices(aci, self.store.list_devices(aci), list(devs), exclude)
            if m is not None:
                mismatches.append(m)
        if mismatches:
            raise _Refuse(
                rf.StatusCode.CONFLICT, "device mismatch", rf.SendResult(tuple(mismatches))
            )
        # Each received form is 0x22 || C || AT (this recipient's) || E || ciphertext (the
        # same for all): every copy refers to one shared object, never a body of its own
        # (built only when an envelope is encoded for a push), and the store keeps it once.
        shared = parsed.shared_part
        queued: list[QueuedMessage] = []
        for aci, sid, devs in plan:
            own = parsed.recipient_part(sid)
            if len(own) + len(shared) > self.config.max_body:
                raise _Refuse(rf.StatusCode.TOO_LARGE, "message body too large")
            queued.extend(self._sealed(aci, d, own, body.timestamp, now, shared) for d, _ in devs)
        if len(queued) > self.config.max_mailbox:
            raise _Refuse(rf.StatusCode.TOO_LARGE, "too many copies")
        self._charge_sealed(queued, now)
        return self._queue(queued, rid, shared)

    # -- housekeeping ---------------------------------------------------------------------

    def pending(self, session: Session) -> list[QueuedMessage]:
        """The authenticated device's queued envelopes, oldest first."""
        if session.aci is None:
            return []
        return self.store.pending(session.aci, session.device_id)

    def publish_kt_epoch(self, now: int) -> int | None:
        """Publish the queued key-transparency updates as one epoch now; the new epoch, or
        None if nothing changed (or the store has no directory)."""
        if self.kt is None:
            return None
        published = self.kt.publish(now)
        return None if published is None else published.epoch

    def sweep(self, now: int) -> int:
        """Delete envelopes older than the TTL, and expired linking codes; how many
        envelopes were deleted."""
        self.store.expire_linking_codes(now)
        for address, expires in list(self._provisioning.items()):
            if expires <= now:
                self.forget_provisioning(address)
        expire = getattr(self.store, "expire_provisioning", None)
        if expire is not None:
            expire(now)
        return self.store.expire(now - self.config.message_ttl_ms)


def envelope_of(m: QueuedMessage) -> rf.Envelope:
    """The push frame for a queued message."""
    return rf.Envelope(
        id=m.id,
        type=m.type,
        source_aci=m.source_aci,
        source_device_id=m.source_device_id,
        client_timestamp=m.client_timestamp,
        server_timestamp=m.received_at,
        body=m.whole_body(),  # a shared body is materialised here, one push at a time
    )
