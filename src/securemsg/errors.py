"""The one exception tree of securemsg.

Every error a public function raises on purpose is a :class:`SecureMsgError`. The tree splits
*your mistake* (:class:`UsageError`) from *their bytes* (:class:`PeerError`), so a caller can
tell a bug in its own code from a hostile or broken peer::

    SecureMsgError
    ├── UsageError                  the caller misused the API (bad argument, wrong state)
    ├── PeerError                   bad input from the other side or the network
    │   ├── DecodeError             malformed bytes: protobuf, lengths, framing
    │   │   └── UnsupportedVersionError   a version byte we do not speak
    │   ├── InvalidKeyError         a key that is malformed or unusable (bad type byte, zero DH)
    │   ├── InvalidSignatureError   a signature did not verify
    │   ├── InvalidMessageError     authentication or decryption failed (no detail: no oracle)
    │   ├── DuplicateMessageError   a message key that was already used
    │   ├── MessageGapTooLargeError a counter too far ahead of the chain
    │   ├── InvalidPreKeyError      a prekey id that is unknown, used or replayed
    │   ├── SealedSenderError       a sealed-sender envelope or certificate was refused
    │   ├── TrustRootMismatch       the relay presents another trust root than the pinned one
    │   ├── ProvisioningError       a provisioning (device-linking) envelope was refused
    │   └── KeyTransparencyError    a key-transparency proof or epoch head was refused
    │       ├── KeyTransparencyProofError   a lookup/history/append-only proof does not verify
    │       ├── KeyTransparencyDecodeError  a proof or head does not decode (also a DecodeError)
    │       ├── KeyTransparencyHeadError    bad head signature; forked or rolled-back chain
    │       ├── KeyTransparencyMismatch     a bundle's identity key is not the published one
    │       ├── KeyTransparencyPending      the key is not in a published epoch yet
    │       ├── KeyTransparencyMonitorError our own label holds a version we did not create
    │       └── KeyTransparencyHistoryWithheld  the relay withholds our own label's history
    ├── UntrustedIdentityError      the peer's identity key changed: needs a user decision
    ├── NoSessionError              no usable session with that address
    ├── FingerprintError            safety numbers do not match or are not comparable
    ├── StorageError                a store failed or a stored record is corrupt
    ├── InternalError               a bug in securemsg
    ├── LinkingCodeError            a device-linking code is malformed, mistyped or expired
    └── RelayError                  the relay refused a request (``code``)
        ├── SealedDeliveryRefused   a sealed send cannot be had; nothing was sent identified
        └── DeviceRemovedError      this device was removed from its account (unlinked)

Contract shared by all of them: **raising leaves stored state unchanged** unless the class says
otherwise. Values a caller branches on are attributes, never parsed from the message text, and
messages never contain key bytes.
"""

from __future__ import annotations

__all__ = [
    "DecodeError",
    "DeviceRemovedError",
    "DuplicateMessageError",
    "FingerprintError",
    "InternalError",
    "InvalidKeyError",
    "InvalidMessageError",
    "InvalidPreKeyError",
    "InvalidSignatureError",
    "KeyTransparencyDecodeError",
    "KeyTransparencyError",
    "KeyTransparencyHeadError",
    "KeyTransparencyHistoryWithheld",
    "KeyTransparencyMismatch",
    "KeyTransparencyMonitorError",
    "KeyTransparencyPending",
    "KeyTransparencyProofError",
    "LinkingCodeError",
    "MessageGapTooLargeError",
    "NoSessionError",
    "PeerError",
    "ProvisioningError",
    "RelayError",
    "SealedDeliveryRefused",
    "SealedSenderError",
    "SecureMsgError",
    "StorageError",
    "TrustRootMismatch",
    "UnsupportedVersionError",
    "UntrustedIdentityError",
    "UsageError",
]


class SecureMsgError(Exception):
    """Base class of every error securemsg raises on purpose."""


class UsageError(SecureMsgError):
    """The caller used the API wrongly (bad argument, impossible state).

    Raised before any state is touched; nothing changes.
    """


class PeerError(SecureMsgError):
    """Input that came from outside (the peer, the relay, the network) was refused.

    Nothing changes: the session, the prekeys and every store stay as they were.
    """


class DecodeError(PeerError):
    """Bytes that do not parse: bad protobuf, wrong length, missing field, bad framing.

    Raised by every ``from_bytes`` and every decoder. No state changes.
    """


class UnsupportedVersionError(DecodeError):
    """A version byte we do not speak (e.g. an X3DH v3 message or a future v5 one).

    Attributes:
        version: the version number found on the wire.
    """

    def __init__(self, message: str, version: int) -> None:
        super().__init__(message)
        self.version = version


class InvalidKeyError(PeerError):
    """A key is malformed or unusable: wrong type byte or length, non-canonical point, a
    Diffie-Hellman result of all zeros. No state changes."""


class InvalidSignatureError(PeerError):
    """A signature did not verify (prekey signature, sender-key message, certificate).
    No state changes."""


class InvalidMessageError(PeerError):
    """A message failed authentication or decryption.

    Deliberately says nothing about *why* (MAC, padding, post-quantum ratchet): a detailed
    reason would be an oracle. The session state is exactly as before the call.
    """


class DuplicateMessageError(PeerError):
    """The message key for this counter was already used: a replay or a duplicate delivery.

    Attributes:
        chain_index: the counter the message claimed.
    """

    def __init__(self, message: str, chain_index: int) -> None:
        super().__init__(message)
        self.chain_index = chain_index


class MessageGapTooLargeError(PeerError):
    """The message is too far ahead of its chain (more than ``MAX_FORWARD_JUMPS`` skipped).

    Attributes:
        gap: how many messages would have to be skipped.
    """

    def __init__(self, message: str, gap: int) -> None:
        super().__init__(message)
        self.gap = gap


class InvalidPreKeyError(PeerError):
    """A PreKey message names a prekey we do not have, already used, or replays a
    (Kyber prekey, signed prekey, base key) triple. No prekey is consumed."""


class SealedSenderError(PeerError):
    """A sealed-sender envelope or certificate was refused.

    Attributes:
        reason: a short machine-readable reason, e.g. ``"expired"``, ``"untrusted"``,
            ``"revoked"``, ``"self-send"``, ``"key-mismatch"``.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class TrustRootMismatch(PeerError):
    """The relay presents a trust root other than the one this client pinned.

    The client refuses to register or connect: a relay with another trust root can issue
    sender certificates the pinned root does not vouch for (sealed messages would then fail
    validation, or be trusted when they should not). Nothing is written.

    Attributes:
        pinned: the pinned trust-root public key (33 bytes; public, not a secret).
        presented: the key the relay presented (33 bytes).
    """

    def __init__(self, message: str, pinned: bytes, presented: bytes) -> None:
        super().__init__(message)
        self.pinned = pinned
        self.presented = presented


class ProvisioningError(PeerError):
    """A provisioning envelope (what links a new device to an account) was refused.

    Raised by :mod:`securemsg.provisioning` for an envelope that is oversize, does not decode,
    has another version byte, a bad key, a MAC that does not verify (tampered, or sealed to
    another key), bad padding, a message whose fields are missing or of the wrong length, or
    one that arrives after this device already accepted one (a replay). Nothing is written:
    the new device keeps no identity from a refused envelope.

    Attributes:
        reason: a short machine-readable reason: ``"size"``, ``"decode"``, ``"version"``,
            ``"key"``, ``"mac"``, ``"padding"``, ``"fields"`` or ``"replay"``.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class UntrustedIdentityError(SecureMsgError):
    """The peer's identity key differs from the one we trust for that address.

    Needs a user decision (compare safety numbers, then save the new key). Nothing was
    encrypted, decrypted or stored.

    Attributes:
        address: the address whose identity changed (its string form).
        identity_key: the new, untrusted identity key (a public key object).
    """

    def __init__(self, message: str, address: str, identity_key: object) -> None:
        super().__init__(message)
        self.address = address
        self.identity_key = identity_key


class NoSessionError(SecureMsgError):
    """There is no usable session with that address (none, or too old to send on).
    Nothing changes."""


class FingerprintError(SecureMsgError):
    """Safety numbers do not match, or were made with different versions.

    Attributes:
        reason: ``"mismatch"`` or ``"version"``.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class StorageError(SecureMsgError):
    """A store failed (I/O, locking) or a stored record is corrupt.

    Never blamed on the peer. If raised during a commit, the commit was rolled back: the store
    holds what it held before the call.
    """


class InternalError(SecureMsgError):
    """A bug in securemsg: an invariant did not hold. Please report it.
    State may be anything the failing operation had committed before (it commits last)."""


class RelayError(SecureMsgError):
    """The relay refused a request (or the connection to it failed).

    Raised by the client SDK when a response carries a status other than OK. Nothing the
    request would have changed on the relay was changed (requests are all-or-nothing).

    Attributes:
        code: the relay's status code (a ``securemsg.relay_protocol.frames.StatusCode`` value, an
            ``int``): e.g. ``UNAUTHENTICATED``, ``FORBIDDEN``, ``NOT_FOUND``,
            ``RATE_LIMITED``, ``CONFLICT``, ``TOO_LARGE``.
        details: the response body that came with the refusal, if any (e.g. the
            ``SendResult`` listing mismatched devices with ``CONFLICT``), else None.
    """

    def __init__(self, message: str, code: int, details: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.details = details


class SealedDeliveryRefused(RelayError):
    """A send asked for sealed sender and it cannot be had; nothing was sent identified.

    Raised instead of silently falling back to an identified send (which would tell the relay
    who is sending to whom). Either the relay refused the unidentified delivery (``reason``
    ``"refused"``, ``code`` is the relay's status, normally ``UNAUTHENTICATED``) or we hold
    no access key for a recipient (``reason`` ``"no-access-key"``, ``code`` is
    ``UNAUTHENTICATED``, nothing was contacted). Identified delivery happens only when the
    caller opts in (``allow_identified``).

    Attributes:
        code: as :class:`RelayError`.
        reason: ``"refused"`` or ``"no-access-key"``.
        recipient: the recipient's ACI (for a group send: the first one concerned).
    """

    def __init__(self, message: str, code: int, reason: str, recipient: str) -> None:
        super().__init__(message, code)
        self.reason = reason
        self.recipient = recipient


class DeviceRemovedError(RelayError):
    """This device was removed from its account (unlinked by the account's primary device).

    The relay deleted the device, its keys and its mailbox, and says so: a push on the open
    connection just before closing it, or a ``NOT_FOUND`` answer to the device's proof of
    identity. The client stops reconnecting and refuses every further request with this error;
    its database stays on disk (messages received before the removal remain readable) until
    the user deletes it. Linking it again means linking a new device.

    Attributes:
        code: as :class:`RelayError` (``NOT_FOUND``).
    """


class LinkingCodeError(SecureMsgError):
    """A device-linking code was refused; nothing was sent or written.

    Attributes:
        reason: ``"malformed"`` (not a linking code), ``"checksum"`` (mistyped: the checksum
            does not match), or ``"expired"`` (the relay no longer knows the code's address:
            it expired, was used already, or was never opened, or nobody approved it in time).
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


# Key transparency (``securemsg.kt``): under PeerError, because the refused bytes come from the
# directory (the relay).


class KeyTransparencyError(PeerError):
    """A key-transparency proof, epoch head or head chain was refused.

    The directory (the relay) could not prove what it claimed: a lookup, history or
    append-only proof does not verify, a proof does not decode, or the signed epoch heads do not
    form one chain. Nothing changes: no session is created and no stored head is replaced.

    Attributes:
        reason: a short machine-readable reason, e.g. ``"decode"``, ``"vrf"``,
            ``"membership"``, ``"non-membership"``, ``"lookup"``, ``"history"``,
            ``"append-only"``, ``"signature"``, ``"fork"``, ``"rollback"``, ``"chain"``.
    """

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class KeyTransparencyProofError(KeyTransparencyError):
    """A lookup, key-history or append-only proof does not verify against the epoch root."""


class KeyTransparencyDecodeError(KeyTransparencyError, DecodeError):
    """A key-transparency proof or epoch head does not decode (strict protobuf, bounds,
    lengths). Also a :class:`DecodeError`."""


class KeyTransparencyHeadError(KeyTransparencyError):
    """A signed epoch head was refused: bad signature, or a forked, rolled-back or broken
    head chain."""


class KeyTransparencyMismatch(KeyTransparencyError):
    """The relay handed out an identity key that is not the one its directory proves for that
    account (reason ``"mismatch"``): a substituted key. No session was created.

    Attributes:
        aci: the account (a UUID string) whose bundle was refused.
    """

    def __init__(self, message: str, aci: str) -> None:
        super().__init__(message, "mismatch")
        self.aci = aci


class KeyTransparencyPending(KeyTransparencyError):
    """The account's identity key is not in a published epoch yet (reason ``"pending"``), and
    the client's policy is to wait (``kt_pending="wait"``). Nothing was changed; retry after
    the relay's next epoch.

    Attributes:
        aci: the account (a UUID string).
    """

    def __init__(self, message: str, aci: str) -> None:
        super().__init__(message, "pending")
        self.aci = aci


class KeyTransparencyMonitorError(KeyTransparencyError):
    """Self-monitoring found a version of our own account's identity key that this device did
    not create (reason ``"monitor"``): the relay published a key for us that is not ours, so
    others may be encrypting to someone else.

    Attributes:
        versions: the (version, epoch) pairs whose value is not our identity key.
    """

    def __init__(self, message: str, versions: tuple[tuple[int, int], ...]) -> None:
        super().__init__(message, "monitor")
        self.versions = versions


class KeyTransparencyHistoryWithheld(KeyTransparencyError):
    """Self-monitoring got no complete answer about our own account, where an honest relay
    gives one: a relay hiding our history could hide a key it published for us, so this is
    as serious as :class:`KeyTransparencyMonitorError`: tell the user.

    Reason ``"withheld"``: the relay answered "pending" (no proof, no head) after this
    device had already seen its key published (``published_epoch``), or longer than
    :data:`securemsg.client.kt.FIRST_PUBLICATION_WINDOW_S` after registration
    (``published_epoch`` 0). Reason ``"queued"``: the history verifies, but the relay says
    another value is queued for our account (this device never changes its key, so that value
    is not ours). Nothing changes on ``"withheld"``; on ``"queued"`` the verified head is
    stored first, as for :class:`KeyTransparencyMonitorError`.

    Attributes:
        aci: our account (a UUID string).
        published_epoch: the epoch in which this device first saw its key published; 0 if it
            never did.
    """

    def __init__(self, message: str, reason: str, aci: str, published_epoch: int) -> None:
        super().__init__(message, reason)
        self.aci = aci
        self.published_epoch = published_epoch
