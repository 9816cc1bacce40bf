"""The public API: ``from securemsg import ...`` gives every name, with pinned signatures.

Changing an exported name or signature is an API change: update ``EXPECTED`` in the same commit
(``python tests/unit/test_public_api.py`` prints the table as it is now).
"""

from __future__ import annotations

import enum
import importlib.metadata
import inspect
import subprocess
import sys
import typing
import uuid
from typing import Any

import pytest

import securemsg
from securemsg import (
    CiphertextMessageType,
    IdentityKeyPair,
    InMemoryProtocolStore,
    KyberPreKeyRecord,
    PlaintextContent,
    PreKeyBundle,
    PreKeyRecord,
    PreKeySignalMessage,
    ProtocolAddress,
    SenderKeyMessage,
    SignalMessage,
    SignedPreKeyRecord,
    SystemRng,
    create_sender_key_distribution_message,
    generate_registration_id,
    group_decrypt,
    group_encrypt,
    message_decrypt,
    message_encrypt,
    process_prekey_bundle,
    process_sender_key_distribution_message,
)

# The 1:1 recipes' ``local_address`` parameter, one place to edit when it changes.
LOCAL_ADDRESS = "local_address: 'ProtocolAddress'"
# Recipe keyword arguments shared by the 1:1 recipes.
RECIPE_KW = f"*, now: 'int', rng: 'Rng', {LOCAL_ADDRESS}, limits: 'Limits' = DEFAULT_LIMITS"

STORE = "store: 'ProtocolStore'"
ASYNC_STORE = "store: 'AsyncProtocolStore'"
# The batch recipes (sync and async) always take our own address.
BATCH_KW = (
    "*, now: 'int', rng: 'Rng', local_address: 'ProtocolAddress', limits: 'Limits' = DEFAULT_LIMITS"
)

EXPECTED: dict[str, str] = {
    "__version__": "str",
    # addresses
    "ProtocolAddress": "class(name: 'str', device_id: 'int') -> None",
    "ServiceId": "class(kind: 'ServiceIdKind', uuid: 'UUID') -> None",
    "ServiceIdKind": "enum(ACI=0, PNI=1)",
    # keys and records
    "IdentityKey": "class(public_key: 'PublicKey') -> None",
    "IdentityKeyPair": "class(identity_key: 'IdentityKey', private_key: 'PrivateKey') -> None",
    "KeyPair": "class(private_key: 'PrivateKey', public_key: 'PublicKey') -> 'None'",
    "KyberKeyPair": "class(seed: 'bytes', private: 'mlkem.MLKEM1024PrivateKey') -> 'None'",
    "KyberPreKeyRecord": (
        "class(id: 'int', timestamp: 'int', key_pair: 'KyberKeyPair', signature: 'bytes') -> None"
    ),
    "KyberPublicKey": "class(raw: 'bytes', openssl: 'mlkem.MLKEM1024PublicKey') -> 'None'",
    "PreKeyBundle": (
        "class(registration_id: 'int', device_id: 'int', pre_key_id: 'int | None', "
        "pre_key_public: 'PublicKey | None', signed_pre_key_id: 'int', "
        "signed_pre_key_public: 'PublicKey', signed_pre_key_signature: 'bytes', "
        "identity_key: 'IdentityKey', kyber_pre_key_id: 'int', "
        "kyber_pre_key_public: 'KyberPublicKey', kyber_pre_key_signature: 'bytes') -> None"
    ),
    "PreKeyRecord": "class(id: 'int', key_pair: 'KeyPair') -> None",
    "PrivateKey": "class(raw: 'bytes') -> 'None'",
    "PublicKey": "class(raw: 'bytes') -> 'None'",
    "SenderKeyRecord": "class(states: 'tuple[SenderKeyState, ...]' = ()) -> None",
    "SessionRecord": (
        "class(current: 'SessionState | None' = None, previous: 'tuple[bytes, ...]' = ()) -> 'None'"
    ),
    "SignedPreKeyRecord": (
        "class(id: 'int', timestamp: 'int', key_pair: 'KeyPair', signature: 'bytes') -> None"
    ),
    "generate_registration_id": "def(rng: 'Rng') -> 'int'",
    # 1:1 recipes
    "decrypt_prekey_message": (
        f"def(message: 'PreKeySignalMessage', remote_address: 'ProtocolAddress', {STORE}, "
        f"{RECIPE_KW}) -> 'bytes'"
    ),
    "decrypt_signal_message": (
        f"def(message: 'SignalMessage', remote_address: 'ProtocolAddress', {STORE}, "
        f"{RECIPE_KW}) -> 'bytes'"
    ),
    "message_decrypt": (
        "def(ciphertext: 'bytes', message_type: 'CiphertextMessageType', "
        f"remote_address: 'ProtocolAddress', {STORE}, {RECIPE_KW}) -> 'bytes'"
    ),
    "message_encrypt": (
        f"def(plaintext: 'bytes', remote_address: 'ProtocolAddress', {STORE}, {RECIPE_KW}) "
        "-> 'PreKeySignalMessage | SignalMessage'"
    ),
    "process_prekey_bundle": (
        f"def(bundle: 'PreKeyBundle', remote_address: 'ProtocolAddress', {STORE}, "
        f"{RECIPE_KW}) -> 'None'"
    ),
    "message_decrypt_batch": (
        "def(messages: 'Sequence[tuple[bytes, CiphertextMessageType, ProtocolAddress]]', "
        f"{STORE}, {BATCH_KW}) -> 'list[bytes | SecureMsgError]'"
    ),
    "message_encrypt_batch": (
        f"def(messages: 'Sequence[tuple[bytes, ProtocolAddress]]', {STORE}, {BATCH_KW}) "
        "-> 'list[PreKeySignalMessage | SignalMessage | SecureMsgError]'"
    ),
    # typed messages
    "CiphertextMessageType": "enum(WHISPER=2, PREKEY=3, SENDERKEY=7, PLAINTEXT=8)",
    "PlaintextContent": "class(serialized: 'bytes') -> None",
    "PreKeySignalMessage": (
        "class(message_version: 'int', registration_id: 'int', pre_key_id: 'int | None', "
        "signed_pre_key_id: 'int', kyber_pre_key_id: 'int', kyber_ciphertext: 'bytes', "
        "base_key: 'PublicKey', identity_key: 'PublicKey', message: 'SignalMessage', "
        "serialized: 'bytes') -> None"
    ),
    "SenderKeyDistributionMessage": (
        "class(message_version: 'int', distribution_id: 'uuid.UUID', chain_id: 'int', "
        "iteration: 'int', chain_key: 'bytes', signing_key: 'PublicKey', "
        "serialized: 'bytes') -> None"
    ),
    "SenderKeyMessage": (
        "class(message_version: 'int', distribution_id: 'uuid.UUID', chain_id: 'int', "
        "iteration: 'int', ciphertext: 'bytes', serialized: 'bytes')"
    ),
    "SignalMessage": (
        "class(message_version: 'int', ratchet_key: 'PublicKey', counter: 'int', "
        "previous_counter: 'int', ciphertext: 'bytes', pq_ratchet: 'bytes', "
        "addresses: 'bytes | None', serialized: 'bytes')"
    ),
    # sealed sender v1 / v2
    "ContentHint": "enum(DEFAULT=0, RESENDABLE=1, IMPLICIT=2)",
    "SealedSenderDecryptionResult": "class(sender: 'ProtocolAddress', plaintext: 'bytes')",
    "SealedSenderV2SentMessage": (
        "class(version: 'int', recipients: 'dict[ServiceId, tuple[tuple[int, int], ...]]', "
        "excluded_recipients: 'tuple[ServiceId, ...]', "
        "_parts: 'dict[ServiceId, SentV2Recipient]', _shared: 'bytes') -> None"
    ),
    "SenderCertificate": (
        "class(sender_uuid: 'str', sender_e164: 'str | None', sender_device_id: 'int', "
        "expiration: 'int', key: 'PublicKey', signer_bytes_or_id: 'ServerCertificate | int', "
        "certificate: 'bytes', signature: 'bytes', serialized: 'bytes') -> None"
    ),
    "ServerCertificate": (
        "class(key_id: 'int', key: 'PublicKey', certificate: 'bytes', signature: 'bytes', "
        "serialized: 'bytes') -> None"
    ),
    "UnidentifiedSenderMessageContent": (
        "class(msg_type: 'CiphertextMessageType', sender: 'SenderCertificate', "
        "contents: 'bytes', content_hint: 'int', group_id: 'bytes | None', "
        "serialized: 'bytes') -> None"
    ),
    "sealed_sender_decrypt": (
        "def(data: 'bytes', trust_roots: 'PublicKey | Sequence[PublicKey]', "
        f"{STORE}, *, now: 'int', local_uuid: 'str', local_device_id: 'int', rng: 'Rng', "
        "local_e164: 'str | None' = None) -> 'SealedSenderDecryptionResult'"
    ),
    "sealed_sender_decrypt_to_usmc": (
        f"def(data: 'bytes', {STORE}) -> 'UnidentifiedSenderMessageContent'"
    ),
    "sealed_sender_encrypt": (
        "def(destination: 'ProtocolAddress', sender_cert: 'SenderCertificate', "
        f"plaintext: 'bytes', {STORE}, *, now: 'int', rng: 'Rng', "
        "content_hint: 'int' = <ContentHint.DEFAULT: 0>, group_id: 'bytes | None' = None) "
        "-> 'bytes'"
    ),
    "sealed_sender_encrypt_from_usmc": (
        "def(destination: 'ProtocolAddress', usmc: 'UnidentifiedSenderMessageContent', "
        f"{STORE}, *, rng: 'Rng') -> 'bytes'"
    ),
    "sealed_sender_multi_recipient_encrypt": (
        "def(destinations: 'Sequence[ProtocolAddress]', "
        f"usmc: 'UnidentifiedSenderMessageContent', {STORE}, *, rng: 'Rng', "
        "excluded_recipients: 'Iterable[ServiceId]' = ()) -> 'bytes'"
    ),
    "sealed_sender_multi_recipient_message_for_single_recipient": (
        "def(sent: 'bytes', service_id: 'ServiceId | None' = None) -> 'bytes'"
    ),
    # groups (sender keys)
    "create_sender_key_distribution_message": (
        f"def(sender: 'ProtocolAddress', distribution_id: 'uuid.UUID', {STORE}, *, "
        "rng: 'Rng') -> 'SenderKeyDistributionMessage'"
    ),
    "group_decrypt": (
        f"def(message: 'bytes | SenderKeyMessage', sender: 'ProtocolAddress', {STORE}, *, "
        "limits: 'Limits' = DEFAULT_LIMITS) -> 'bytes'"
    ),
    "group_encrypt": (
        "def(sender: 'ProtocolAddress', distribution_id: 'uuid.UUID', plaintext: 'bytes', "
        f"{STORE}, *, rng: 'Rng') -> 'SenderKeyMessage'"
    ),
    "process_sender_key_distribution_message": (
        "def(sender: 'ProtocolAddress', message: 'SenderKeyDistributionMessage | bytes', "
        f"{STORE}, *, limits: 'Limits' = DEFAULT_LIMITS) -> 'None'"
    ),
    # safety numbers
    "DisplayableFingerprint": "class(local: 'str', remote: 'str') -> None",
    "Fingerprint": (
        "class(displayable: 'DisplayableFingerprint', scannable: 'ScannableFingerprint') -> None"
    ),
    "ScannableFingerprint": (
        "class(version: 'int', local_fingerprint: 'bytes', remote_fingerprint: 'bytes') -> None"
    ),
    # stores
    "Direction": "enum(SENDING=0, RECEIVING=1)",
    "IdentityKeyStore": "protocol",
    "InMemoryProtocolStore": (
        "class(identity_key_pair: 'IdentityKeyPair', registration_id: 'int') -> 'None'"
    ),
    "KyberPreKeyStore": "protocol",
    "ManagedProtocolStore": "protocol",
    "PreKeyInventory": "protocol",
    "PreKeyStore": "protocol",
    "ProtocolStore": "protocol",
    "SenderKeyStore": "protocol",
    "SessionStore": "protocol",
    "SignedPreKeyStore": "protocol",
    "SqliteProtocolStore": "class(connection: 'sqlite3.Connection', path: 'str') -> 'None'",
    # asyncio: async stores, and the async recipes in ``aio`` (pinned in EXPECTED_AIO)
    "AsyncIdentityKeyStore": "protocol",
    "AsyncKyberPreKeyStore": "protocol",
    "AsyncPreKeyStore": "protocol",
    "AsyncProtocolStore": "protocol",
    "AsyncSenderKeyStore": "protocol",
    "AsyncSessionStore": "protocol",
    "AsyncSignedPreKeyStore": "protocol",
    "AsyncSqliteProtocolStore": (
        "class(store: 'SqliteProtocolStore', executor: 'ThreadPoolExecutor') -> 'None'"
    ),
    "AsyncStoreAdapter": "class(store: 'ProtocolStore') -> 'None'",
    "aio": "module",
    # randomness and limits
    "Limits": (
        "class(max_forward_jumps: 'int' = 25000, max_message_keys: 'int' = 2000, "
        "max_receiver_chains: 'int' = 5, archived_states_max_length: 'int' = 40, "
        "max_sender_key_states: 'int' = 5, max_unacknowledged_session_age: 'int' = 2592000, "
        "spqr_max_jump: 'int' = 25000, spqr_max_ooo_keys: 'int' = 2000) -> None"
    ),
    "Rng": "protocol",
    "SystemRng": "class()",
    # errors
    "DecodeError": "exception(PeerError)",
    "DeviceRemovedError": "exception(RelayError)",
    "DuplicateMessageError": "exception(PeerError)",
    "FingerprintError": "exception(SecureMsgError)",
    "InternalError": "exception(SecureMsgError)",
    "InvalidKeyError": "exception(PeerError)",
    "InvalidMessageError": "exception(PeerError)",
    "InvalidPreKeyError": "exception(PeerError)",
    "InvalidSignatureError": "exception(PeerError)",
    "KeyTransparencyDecodeError": "exception(KeyTransparencyError)",
    "KeyTransparencyError": "exception(PeerError)",
    "KeyTransparencyHeadError": "exception(KeyTransparencyError)",
    "KeyTransparencyHistoryWithheld": "exception(KeyTransparencyError)",
    "KeyTransparencyMismatch": "exception(KeyTransparencyError)",
    "KeyTransparencyMonitorError": "exception(KeyTransparencyError)",
    "KeyTransparencyPending": "exception(KeyTransparencyError)",
    "KeyTransparencyProofError": "exception(KeyTransparencyError)",
    "LinkingCodeError": "exception(SecureMsgError)",
    "MessageGapTooLargeError": "exception(PeerError)",
    "NoSessionError": "exception(SecureMsgError)",
    "PeerError": "exception(SecureMsgError)",
    "RelayError": "exception(SecureMsgError)",
    "SealedDeliveryRefused": "exception(RelayError)",
    "SealedSenderError": "exception(PeerError)",
    "TrustRootMismatch": "exception(PeerError)",
    "SecureMsgError": "exception(Exception)",
    "StorageError": "exception(SecureMsgError)",
    "UnsupportedVersionError": "exception(DecodeError)",
    "UntrustedIdentityError": "exception(SecureMsgError)",
    "UsageError": "exception(SecureMsgError)",
    # the async client SDK
    "Client": (
        "class(store: 'ClientStore', *, rng: 'Rng | None' = None, "
        "clock: 'Callable[[], int] | None' = None, prekey_batch: 'int | None' = None, "
        "prekey_low_water: 'int | None' = None, relay_url: 'str | None' = None, "
        "allow_identified: 'bool' = False, kt_pending: 'str' = 'warn', "
        "kt_auditors: 'Sequence[bytes]' = (), kt_min_cosignatures: 'int' = 0, "
        "kt_monitor_interval_s: 'float' = 3600.0) -> 'None'"
    ),
    "KtMonitorResult": "class(pending: 'bool', epoch: 'int', versions: 'int') -> None",
    "KtWarning": "class(aci: 'str', reason: 'str') -> None",
    "ReceivedMessage": (
        "class(sender_aci: 'str', sender_device: 'int', text: 'str', sent_timestamp: 'int', "
        "server_timestamp: 'int', group_id: 'bytes | None', group_title: 'str | None', "
        "sealed: 'bool', envelope_id: 'bytes', transcript: 'bool' = False, "
        "destination_aci: 'str | None' = None, sender_devices: 'int' = 1) -> None"
    ),
}


# ``securemsg.aio``: the async recipes have the sync ones' names and arguments, with an
# AsyncProtocolStore; the store names are the same objects as the top-level exports.
EXPECTED_AIO: dict[str, str] = {
    **{
        name: EXPECTED[name]
        for name in (
            "AsyncIdentityKeyStore",
            "AsyncKyberPreKeyStore",
            "AsyncPreKeyStore",
            "AsyncProtocolStore",
            "AsyncSenderKeyStore",
            "AsyncSessionStore",
            "AsyncSignedPreKeyStore",
            "AsyncSqliteProtocolStore",
            "AsyncStoreAdapter",
        )
    },
    # the writes an async store commits
    "MarkKyberPreKeyUsed": (
        "class(kyber_pre_key_id: 'int', signed_pre_key_id: 'int', base_key: 'PublicKey') -> None"
    ),
    "RemovePreKey": "class(pre_key_id: 'int') -> None",
    "SaveIdentity": "class(address: 'ProtocolAddress', identity_key: 'IdentityKey') -> None",
    "StoreSenderKey": (
        "class(sender: 'ProtocolAddress', distribution_id: 'uuid.UUID', "
        "record: 'SenderKeyRecord') -> None"
    ),
    "StoreSession": "class(address: 'ProtocolAddress', record: 'SessionRecord') -> None",
    "StoreWrite": "UnionType",
    "apply_writes": "def(store: 'ProtocolStore', writes: 'Sequence[StoreWrite]') -> 'None'",
    # recipes
    "create_sender_key_distribution_message": (
        f"def(sender: 'ProtocolAddress', distribution_id: 'uuid.UUID', {ASYNC_STORE}, *, "
        "rng: 'Rng') -> 'SenderKeyDistributionMessage'"
    ),
    "group_decrypt": (
        f"def(message: 'bytes | SenderKeyMessage', sender: 'ProtocolAddress', {ASYNC_STORE}, "
        "*, limits: 'Limits' = DEFAULT_LIMITS) -> 'bytes'"
    ),
    "group_encrypt": (
        "def(sender: 'ProtocolAddress', distribution_id: 'uuid.UUID', plaintext: 'bytes', "
        f"{ASYNC_STORE}, *, rng: 'Rng') -> 'SenderKeyMessage'"
    ),
    "message_decrypt": (
        "def(ciphertext: 'bytes', message_type: 'CiphertextMessageType', "
        f"remote_address: 'ProtocolAddress', {ASYNC_STORE}, {BATCH_KW}) -> 'bytes'"
    ),
    "message_decrypt_batch": (
        "def(messages: 'Sequence[tuple[bytes, CiphertextMessageType, ProtocolAddress]]', "
        f"{ASYNC_STORE}, {BATCH_KW}) -> 'list[bytes | SecureMsgError]'"
    ),
    "message_encrypt": (
        f"def(plaintext: 'bytes', remote_address: 'ProtocolAddress', {ASYNC_STORE}, "
        f"{BATCH_KW}) -> 'PreKeySignalMessage | SignalMessage'"
    ),
    "message_encrypt_batch": (
        f"def(messages: 'Sequence[tuple[bytes, ProtocolAddress]]', {ASYNC_STORE}, {BATCH_KW}) "
        "-> 'list[PreKeySignalMessage | SignalMessage | SecureMsgError]'"
    ),
    "process_prekey_bundle": (
        f"def(bundle: 'PreKeyBundle', remote_address: 'ProtocolAddress', {ASYNC_STORE}, "
        f"{BATCH_KW}) -> 'None'"
    ),
    "process_sender_key_distribution_message": (
        "def(sender: 'ProtocolAddress', message: 'SenderKeyDistributionMessage | bytes', "
        f"{ASYNC_STORE}, *, limits: 'Limits' = DEFAULT_LIMITS) -> 'None'"
    ),
    "run_staged": (f"def({ASYNC_STORE}, fn: 'Callable[[ProtocolStore], _T]') -> '_T'"),
    "sealed_sender_decrypt": (
        "def(data: 'bytes', trust_roots: 'PublicKey | Sequence[PublicKey]', "
        f"{ASYNC_STORE}, *, now: 'int', local_uuid: 'str', local_device_id: 'int', "
        "rng: 'Rng', local_e164: 'str | None' = None) -> 'SealedSenderDecryptionResult'"
    ),
    "sealed_sender_encrypt": (
        "def(destination: 'ProtocolAddress', sender_cert: 'SenderCertificate', "
        f"plaintext: 'bytes', {ASYNC_STORE}, *, now: 'int', rng: 'Rng', "
        "content_hint: 'int' = <ContentHint.DEFAULT: 0>, group_id: 'bytes | None' = None) "
        "-> 'bytes'"
    ),
}


class _Shown(str):
    """A default value shown by name (``DEFAULT_LIMITS``) instead of its long repr."""

    def __repr__(self) -> str:
        return str(self)


def _signature(obj: Any) -> str:
    from securemsg.limits import DEFAULT_LIMITS

    sig = inspect.signature(obj)
    params = []
    for p in sig.parameters.values():
        annotation = p.annotation
        if isinstance(annotation, typing.ForwardRef):  # NamedTuple fields
            annotation = annotation.__forward_arg__
        default = p.default
        if default is DEFAULT_LIMITS:
            default = _Shown("DEFAULT_LIMITS")
        params.append(p.replace(annotation=annotation, default=default))
    return str(sig.replace(parameters=params))


def describe(obj: Any) -> str:
    """One line that changes exactly when the exported object's public shape changes."""
    if not isinstance(obj, type):
        if callable(obj):
            return "def" + _signature(obj)
        return type(obj).__name__
    if issubclass(obj, BaseException):
        return f"exception({obj.__bases__[0].__name__})"
    if issubclass(obj, enum.Enum):
        return "enum(" + ", ".join(f"{m.name}={m.value}" for m in obj) + ")"
    if getattr(obj, "_is_protocol", False):
        return "protocol"
    return "class" + _signature(obj)


def current_table() -> dict[str, str]:
    return {name: describe(getattr(securemsg, name)) for name in securemsg.__all__}


def test_exported_names_and_signatures_are_pinned() -> None:
    assert current_table() == EXPECTED


def aio_table() -> dict[str, str]:
    return {name: describe(getattr(securemsg.aio, name)) for name in securemsg.aio.__all__}


def test_aio_names_and_signatures_are_pinned() -> None:
    assert aio_table() == EXPECTED_AIO
    assert securemsg.aio.AsyncProtocolStore is securemsg.AsyncProtocolStore
    from securemsg import aio

    assert aio is securemsg.aio


def test_all_has_no_duplicates_and_dir_lists_it() -> None:
    assert len(securemsg.__all__) == len(set(securemsg.__all__))
    assert set(securemsg.__all__) <= set(dir(securemsg))


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'message_encrypt_v2'"):
        securemsg.message_encrypt_v2  # noqa: B018
    with pytest.raises(ImportError):
        exec("from securemsg import NoSuchThing", {})


def test_exported_objects_are_the_ones_the_library_uses() -> None:
    from securemsg.cipher import message_encrypt as home_encrypt
    from securemsg.errors import SecureMsgError as HomeError

    assert securemsg.message_encrypt is home_encrypt
    assert securemsg.SecureMsgError is HomeError


def test_version_is_the_installed_distribution_version() -> None:
    assert securemsg.__version__ == importlib.metadata.version("securemsg")


def test_import_securemsg_loads_nothing_heavy() -> None:
    code = (
        "import sys, securemsg\n"
        "from securemsg import SecureMsgError, UsageError\n"
        "heavy = [m for m in ('numpy', 'websockets', 'cryptography', 'nacl', 'google.protobuf',"
        " 'securemsg.cipher') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_every_ciphertext_message_says_its_type() -> None:
    """Callers dispatch on ``message_type``, never on the class (libsignal's ``type()``)."""
    rng, now = SystemRng(), 1_760_000_000_000
    alice_addr = ProtocolAddress(str(uuid.UUID(int=1)), 1)
    bob_addr = ProtocolAddress(str(uuid.UUID(int=2)), 1)
    alice = InMemoryProtocolStore(IdentityKeyPair.generate(rng), generate_registration_id(rng))
    bob = InMemoryProtocolStore(IdentityKeyPair.generate(rng), generate_registration_id(rng))
    ik = bob.get_identity_key_pair()
    pk = PreKeyRecord.generate(1, rng)
    spk = SignedPreKeyRecord.generate(1, ik, now, rng)
    kpk = KyberPreKeyRecord.generate(1, ik, now, rng)
    bob.save_pre_key(1, pk)
    bob.save_signed_pre_key(1, spk)
    bob.save_kyber_pre_key(1, kpk)
    bundle = PreKeyBundle(
        registration_id=bob.get_local_registration_id(),
        device_id=1,
        pre_key_id=1,
        pre_key_public=pk.key_pair.public_key,
        signed_pre_key_id=1,
        signed_pre_key_public=spk.key_pair.public_key,
        signed_pre_key_signature=spk.signature,
        identity_key=ik.identity_key,
        kyber_pre_key_id=1,
        kyber_pre_key_public=kpk.key_pair.public_key,
        kyber_pre_key_signature=kpk.signature,
    )
    process_prekey_bundle(bundle, bob_addr, alice, now=now, rng=rng, local_address=alice_addr)

    first = message_encrypt(b"one", bob_addr, alice, now=now, rng=rng, local_address=alice_addr)
    assert isinstance(first, PreKeySignalMessage)
    assert first.message_type is CiphertextMessageType.PREKEY
    plain = message_decrypt(
        first.to_bytes(), first.message_type, alice_addr, bob, now=now, rng=rng,
        local_address=bob_addr,
    )  # fmt: skip
    assert plain == b"one"

    reply = message_encrypt(b"two", alice_addr, bob, now=now, rng=rng, local_address=bob_addr)
    assert isinstance(reply, SignalMessage)
    assert reply.message_type is CiphertextMessageType.WHISPER
    assert SignalMessage.from_bytes(reply.to_bytes()).message_type is CiphertextMessageType.WHISPER
    plain = message_decrypt(
        reply.to_bytes(), reply.message_type, bob_addr, alice, now=now, rng=rng,
        local_address=alice_addr,
    )  # fmt: skip
    assert plain == b"two"

    group = uuid.UUID(int=3)
    skdm = create_sender_key_distribution_message(alice_addr, group, alice, rng=rng)
    process_sender_key_distribution_message(alice_addr, skdm, bob)
    group_message = group_encrypt(alice_addr, group, b"three", alice, rng=rng)
    assert isinstance(group_message, SenderKeyMessage)
    assert group_message.message_type is CiphertextMessageType.SENDERKEY
    assert group_decrypt(group_message.to_bytes(), alice_addr, bob) == b"three"

    plaintext = PlaintextContent.from_content(b"\x08\x01")
    assert plaintext.message_type is CiphertextMessageType.PLAINTEXT
    parsed = PlaintextContent.from_bytes(plaintext.to_bytes())
    assert parsed.message_type is CiphertextMessageType.PLAINTEXT


if __name__ == "__main__":  # print the tables to paste into EXPECTED after an API change
    for name, text in current_table().items():
        print(f"    {name!r}: {text!r},")
    print("# securemsg.aio (EXPECTED_AIO)")
    for name, text in aio_table().items():
        print(f"    {name!r}: {text!r},")
