"""securemsg: end-to-end encrypted messaging, byte-compatible with libsignal 0.103.0.

The public API is exactly what this package exports (``__all__``); import it in one line::

    from securemsg import ProtocolAddress, InMemoryProtocolStore, message_encrypt, ...

Names follow libsignal-client's vocabulary:

* addresses: :class:`ProtocolAddress`, :class:`ServiceId`, :class:`ServiceIdKind`;
* keys and records: :class:`PublicKey`, :class:`PrivateKey`, :class:`KeyPair`,
  :class:`KyberPublicKey`, :class:`KyberKeyPair`, :class:`IdentityKey`,
  :class:`IdentityKeyPair`, :class:`PreKeyRecord`, :class:`SignedPreKeyRecord`,
  :class:`KyberPreKeyRecord`, :class:`PreKeyBundle`, :func:`generate_registration_id`,
  :class:`SessionRecord`, :class:`SenderKeyRecord`;
* the 1:1 recipes: :func:`process_prekey_bundle`, :func:`message_encrypt`,
  :func:`message_decrypt` (and its two halves :func:`decrypt_signal_message`,
  :func:`decrypt_prekey_message`), and the batched ones, one durable commit per batch:
  :func:`message_decrypt_batch`, :func:`message_encrypt_batch`;
* typed messages: :class:`SignalMessage`, :class:`PreKeySignalMessage`,
  :class:`SenderKeyMessage`, :class:`PlaintextContent` (each has ``message_type``, a
  :class:`CiphertextMessageType`, so callers never dispatch on the class) and
  :class:`SenderKeyDistributionMessage`;
* sealed sender v1 and v2: :class:`ServerCertificate`, :class:`SenderCertificate`,
  :class:`UnidentifiedSenderMessageContent`, :class:`ContentHint`,
  :class:`SealedSenderV2SentMessage`, :class:`SealedSenderDecryptionResult` and the
  ``sealed_sender_*`` recipes;
* groups (sender keys): :func:`create_sender_key_distribution_message`,
  :func:`process_sender_key_distribution_message`, :func:`group_encrypt`,
  :func:`group_decrypt`;
* safety numbers: :class:`Fingerprint`, :class:`DisplayableFingerprint`,
  :class:`ScannableFingerprint`;
* stores: :class:`InMemoryProtocolStore`, :class:`SqliteProtocolStore` and the store
  protocols (:class:`ProtocolStore` and one per concern), :class:`Direction`;
* randomness and limits: :class:`Rng`, :class:`SystemRng`, :class:`Limits`;
* errors: :class:`SecureMsgError` and its tree (``UsageError`` for the caller's mistakes,
  ``PeerError`` for hostile or broken input, ...);
* asyncio: the async stores (:class:`AsyncProtocolStore` and one protocol per concern,
  :class:`AsyncSqliteProtocolStore`, :class:`AsyncStoreAdapter`) and the module
  :mod:`aio <securemsg.aio>` with the async recipes (``await aio.message_encrypt(...)``,
  same names and arguments as the sync ones);
* the async client SDK: :class:`Client`, :class:`ReceivedMessage`, and what its
  key-transparency checks report: :class:`KtWarning`, :class:`KtMonitorResult`.

Internal: not part of the public API -- every submodule (``securemsg.cipher``,
``securemsg.protocol.*``, ``securemsg.wire.*``, ``securemsg.crypto.*``, ``securemsg.store.*``,
``securemsg.relay.*``, ``securemsg.cli.*``, ``securemsg._proto``, ...). Their names and their
layout may change in any release; import from ``securemsg`` instead. The reference relay and
the ``securemsg`` command are applications (``securemsg relay serve``), not library API.

``import securemsg`` is cheap: each name is imported from its module on first use (module
``__getattr__``), so a program that needs only the errors does not load numpy or websockets.
"""

from __future__ import annotations

__version__ = "0.1.0"

# Not typing.TYPE_CHECKING: importing typing would cost more than the rest of this module.
# Type checkers (mypy, pyright) treat any name TYPE_CHECKING as true.
TYPE_CHECKING = False
if TYPE_CHECKING:  # the same names, for type checkers; at run time they load on first use
    from typing import Any

    from securemsg import aio
    from securemsg.aio.sqlite import AsyncSqliteProtocolStore
    from securemsg.aio.store import (
        AsyncIdentityKeyStore,
        AsyncKyberPreKeyStore,
        AsyncPreKeyStore,
        AsyncProtocolStore,
        AsyncSenderKeyStore,
        AsyncSessionStore,
        AsyncSignedPreKeyStore,
        AsyncStoreAdapter,
    )
    from securemsg.batch import message_decrypt_batch, message_encrypt_batch
    from securemsg.cipher import (
        decrypt_prekey_message,
        decrypt_signal_message,
        message_decrypt,
        message_encrypt,
        process_prekey_bundle,
    )
    from securemsg.client import Client, KtMonitorResult, KtWarning, ReceivedMessage
    from securemsg.crypto.curve25519 import KeyPair, PrivateKey, PublicKey
    from securemsg.crypto.kyber1024 import KyberKeyPair, KyberPublicKey
    from securemsg.crypto.rng import Rng, SystemRng
    from securemsg.errors import (
        DecodeError,
        DeviceRemovedError,
        DuplicateMessageError,
        FingerprintError,
        InternalError,
        InvalidKeyError,
        InvalidMessageError,
        InvalidPreKeyError,
        InvalidSignatureError,
        KeyTransparencyDecodeError,
        KeyTransparencyError,
        KeyTransparencyHeadError,
        KeyTransparencyHistoryWithheld,
        KeyTransparencyMismatch,
        KeyTransparencyMonitorError,
        KeyTransparencyPending,
        KeyTransparencyProofError,
        LinkingCodeError,
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
    from securemsg.limits import Limits
    from securemsg.protocol.address import ProtocolAddress, ServiceId, ServiceIdKind
    from securemsg.protocol.fingerprint import (
        DisplayableFingerprint,
        Fingerprint,
        ScannableFingerprint,
    )
    from securemsg.protocol.identity_and_prekeys import (
        IdentityKey,
        IdentityKeyPair,
        KyberPreKeyRecord,
        PreKeyBundle,
        PreKeyRecord,
        SignedPreKeyRecord,
        generate_registration_id,
    )
    from securemsg.protocol.sealed_sender import (
        ContentHint,
        SealedSenderV2SentMessage,
        SenderCertificate,
        ServerCertificate,
        UnidentifiedSenderMessageContent,
    )
    from securemsg.protocol.sender_keys import SenderKeyRecord
    from securemsg.protocol.session_record import SessionRecord
    from securemsg.sealed_sender import (
        SealedSenderDecryptionResult,
        sealed_sender_decrypt,
        sealed_sender_decrypt_to_usmc,
        sealed_sender_encrypt,
        sealed_sender_encrypt_from_usmc,
        sealed_sender_multi_recipient_encrypt,
        sealed_sender_multi_recipient_message_for_single_recipient,
    )
    from securemsg.store.base import (
        Direction,
        IdentityKeyStore,
        KyberPreKeyStore,
        ManagedProtocolStore,
        PreKeyInventory,
        PreKeyStore,
        ProtocolStore,
        SenderKeyStore,
        SessionStore,
        SignedPreKeyStore,
    )
    from securemsg.store.memory import InMemoryProtocolStore
    from securemsg.store.sqlite import SqliteProtocolStore
    from securemsg.wire.messages import (
        CiphertextMessageType,
        PlaintextContent,
        PreKeySignalMessage,
        SenderKeyDistributionMessage,
        SenderKeyMessage,
        SignalMessage,
    )

__all__ = [
    "__version__",
    # addresses
    "ProtocolAddress",
    "ServiceId",
    "ServiceIdKind",
    # keys and records
    "IdentityKey",
    "IdentityKeyPair",
    "KeyPair",
    "KyberKeyPair",
    "KyberPreKeyRecord",
    "KyberPublicKey",
    "PreKeyBundle",
    "PreKeyRecord",
    "PrivateKey",
    "PublicKey",
    "SenderKeyRecord",
    "SessionRecord",
    "SignedPreKeyRecord",
    "generate_registration_id",
    # 1:1 recipes
    "decrypt_prekey_message",
    "decrypt_signal_message",
    "message_decrypt",
    "message_encrypt",
    "process_prekey_bundle",
    "message_decrypt_batch",
    "message_encrypt_batch",
    # typed messages
    "CiphertextMessageType",
    "PlaintextContent",
    "PreKeySignalMessage",
    "SenderKeyDistributionMessage",
    "SenderKeyMessage",
    "SignalMessage",
    # sealed sender v1 / v2
    "ContentHint",
    "SealedSenderDecryptionResult",
    "SealedSenderV2SentMessage",
    "SenderCertificate",
    "ServerCertificate",
    "UnidentifiedSenderMessageContent",
    "sealed_sender_decrypt",
    "sealed_sender_decrypt_to_usmc",
    "sealed_sender_encrypt",
    "sealed_sender_encrypt_from_usmc",
    "sealed_sender_multi_recipient_encrypt",
    "sealed_sender_multi_recipient_message_for_single_recipient",
    # groups (sender keys)
    "create_sender_key_distribution_message",
    "group_decrypt",
    "group_encrypt",
    "process_sender_key_distribution_message",
    # safety numbers
    "DisplayableFingerprint",
    "Fingerprint",
    "ScannableFingerprint",
    # stores
    "Direction",
    "IdentityKeyStore",
    "InMemoryProtocolStore",
    "KyberPreKeyStore",
    "ManagedProtocolStore",
    "PreKeyInventory",
    "PreKeyStore",
    "ProtocolStore",
    "SenderKeyStore",
    "SessionStore",
    "SignedPreKeyStore",
    "SqliteProtocolStore",
    # asyncio: async stores, and the async recipes in ``aio``
    "AsyncIdentityKeyStore",
    "AsyncKyberPreKeyStore",
    "AsyncPreKeyStore",
    "AsyncProtocolStore",
    "AsyncSenderKeyStore",
    "AsyncSessionStore",
    "AsyncSignedPreKeyStore",
    "AsyncSqliteProtocolStore",
    "AsyncStoreAdapter",
    "aio",
    # randomness and limits
    "Limits",
    "Rng",
    "SystemRng",
    # errors
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
    "RelayError",
    "SealedDeliveryRefused",
    "SealedSenderError",
    "SecureMsgError",
    "StorageError",
    "TrustRootMismatch",
    "UnsupportedVersionError",
    "UntrustedIdentityError",
    "UsageError",
    # the async client SDK
    "Client",
    "KtMonitorResult",
    "KtWarning",
    "ReceivedMessage",
]

# Where each exported name lives (internal modules: users import from ``securemsg``).
_HOMES: dict[str, tuple[str, ...]] = {
    "securemsg.aio.sqlite": ("AsyncSqliteProtocolStore",),
    "securemsg.aio.store": (
        "AsyncIdentityKeyStore",
        "AsyncKyberPreKeyStore",
        "AsyncPreKeyStore",
        "AsyncProtocolStore",
        "AsyncSenderKeyStore",
        "AsyncSessionStore",
        "AsyncSignedPreKeyStore",
        "AsyncStoreAdapter",
    ),
    "securemsg.batch": ("message_decrypt_batch", "message_encrypt_batch"),
    "securemsg.cipher": (
        "decrypt_prekey_message",
        "decrypt_signal_message",
        "message_decrypt",
        "message_encrypt",
        "process_prekey_bundle",
    ),
    "securemsg.client": ("Client", "KtMonitorResult", "KtWarning", "ReceivedMessage"),
    "securemsg.crypto.curve25519": ("KeyPair", "PrivateKey", "PublicKey"),
    "securemsg.crypto.kyber1024": ("KyberKeyPair", "KyberPublicKey"),
    "securemsg.crypto.rng": ("Rng", "SystemRng"),
    "securemsg.errors": (
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
        "RelayError",
        "SealedDeliveryRefused",
        "SealedSenderError",
        "SecureMsgError",
        "StorageError",
        "TrustRootMismatch",
        "UnsupportedVersionError",
        "UntrustedIdentityError",
        "UsageError",
    ),
    "securemsg.groups": (
        "create_sender_key_distribution_message",
        "group_decrypt",
        "group_encrypt",
        "process_sender_key_distribution_message",
    ),
    "securemsg.limits": ("Limits",),
    "securemsg.protocol.address": ("ProtocolAddress", "ServiceId", "ServiceIdKind"),
    "securemsg.protocol.fingerprint": (
        "DisplayableFingerprint",
        "Fingerprint",
        "ScannableFingerprint",
    ),
    "securemsg.protocol.identity_and_prekeys": (
        "IdentityKey",
        "IdentityKeyPair",
        "KyberPreKeyRecord",
        "PreKeyBundle",
        "PreKeyRecord",
        "SignedPreKeyRecord",
        "generate_registration_id",
    ),
    "securemsg.protocol.sealed_sender": (
        "ContentHint",
        "SealedSenderV2SentMessage",
        "SenderCertificate",
        "ServerCertificate",
        "UnidentifiedSenderMessageContent",
    ),
    "securemsg.protocol.sender_keys": ("SenderKeyRecord",),
    "securemsg.protocol.session_record": ("SessionRecord",),
    "securemsg.sealed_sender": (
        "SealedSenderDecryptionResult",
        "sealed_sender_decrypt",
        "sealed_sender_decrypt_to_usmc",
        "sealed_sender_encrypt",
        "sealed_sender_encrypt_from_usmc",
        "sealed_sender_multi_recipient_encrypt",
        "sealed_sender_multi_recipient_message_for_single_recipient",
    ),
    "securemsg.store.base": (
        "Direction",
        "IdentityKeyStore",
        "KyberPreKeyStore",
        "ManagedProtocolStore",
        "PreKeyInventory",
        "PreKeyStore",
        "ProtocolStore",
        "SenderKeyStore",
        "SessionStore",
        "SignedPreKeyStore",
    ),
    "securemsg.store.memory": ("InMemoryProtocolStore",),
    "securemsg.store.sqlite": ("SqliteProtocolStore",),
    "securemsg.wire.messages": (
        "CiphertextMessageType",
        "PlaintextContent",
        "PreKeySignalMessage",
        "SenderKeyDistributionMessage",
        "SenderKeyMessage",
        "SignalMessage",
    ),
}
_HOME_OF: dict[str, str] = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    """Import an exported name from its home module on first use (PEP 562)."""
    if name == "aio":  # a subpackage, exported as a module
        import securemsg.aio

        return securemsg.aio
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'securemsg' has no attribute {name!r}")
    value = getattr(__import__(module, fromlist=(name,)), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
