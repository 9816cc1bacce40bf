"""No secret in a ``repr``/``str`` and none in a module global.

Three sweeps:

* every class of every ``securemsg`` module that holds key material (fields named like a
  secret, enumerated from the dataclass / NamedTuple / ``__slots__`` declarations) is built with
  planted, recognisable bytes in those fields, and its ``repr()`` and ``str()`` must not show
  them in any form (raw, hex, base64, a Python bytes literal);
* a real conversation (1:1 with SPQR through several braid epochs, sealed sender v1 and v2, a
  group) runs, and every live ``securemsg`` object's ``repr()``/``str()`` is searched for the
  secrets that conversation used (taken from the parties' records);
* after that conversation every global of every loaded ``securemsg`` module (followed into
  containers, objects, closures, defaults and ``lru_cache`` contents) is searched for those
  secrets and for any object that holds a secret by its type.

Imported by nothing; pytest puts this directory on sys.path (``session_parties``).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import enum
import functools
import gc
import importlib
import inspect
import logging
import pkgutil
import re
import sys
import types
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

import pytest
from session_parties import Party, new_pair

import securemsg
from securemsg import groups, sealed_sender
from securemsg.crypto import mlkem768
from securemsg.crypto.curve25519 import KeyPair, PrivateKey
from securemsg.crypto.kyber1024 import KyberKeyPair
from securemsg.crypto.rng import DeterministicRng
from securemsg.errors import InvalidPreKeyError, SecureMsgError
from securemsg.protocol import sealed_sender as ss
from securemsg.protocol.address import ProtocolAddress, ServiceId
from securemsg.protocol.identity_and_prekeys import IdentityKeyPair
from securemsg.protocol.sender_keys import SenderKeyRecord, SenderKeyState
from securemsg.protocol.session_record import SessionRecord
from securemsg.protocol.session_state import SessionState
from securemsg.protocol.spqr import SpqrState
from securemsg.protocol.spqr.authenticator import Authenticator
from securemsg.records.sender_key_storage import decode_sender_key_record
from securemsg.records.session_storage import StoredSession, decode_record, decode_session
from securemsg.records.spqr_state import decode_spqr_state
from securemsg.wire.messages import CiphertextMessageType, SenderKeyMessage

# ------------------------------------------------------------------------------ secret forms


def _forms(secret: bytes) -> list[str]:
    """Every way a repr, a log line or a message could spell ``secret`` (or its first 12
    bytes, for truncated displays)."""
    out = []
    for s in (secret, secret[:12]):
        out += [
            s.hex(),
            s.hex().upper(),
            base64.b64encode(s).decode().rstrip("="),
            base64.urlsafe_b64encode(s).decode().rstrip("="),
            repr(s)[2:-1],
            s.decode("latin-1"),
        ]
    return out


def _leaks(text: str, secrets: Iterable[bytes]) -> list[bytes]:
    return [s for s in secrets if any(f in text for f in _forms(s))]


# ------------------------------------------------------------------- class enumeration


def _securemsg_modules() -> Iterator[types.ModuleType]:
    for info in pkgutil.walk_packages(securemsg.__path__, "securemsg."):
        if "._proto" in info.name:  # generated protobuf classes: quarantined in wire/
            continue
        yield importlib.import_module(info.name)


# Field names that (may) hold key material: what the brief of this sweep names, plus the
# names this code base uses for seeds, skipped keys and KEM state.
_SECRET_NAME = re.compile(
    r"private|secret|key|seed|chain|root|skipped|history|^_?next$|encaps|agreements"
    r"|plaintext|^_m$|^_e2$|^_y_hat$|^_stacked$|^_scalar$|^_raw$|^iv$|access_key|^_data$"
)
# Names that match but are public by definition (public keys, ids, counters, limits, and a
# key-transparency epoch's root hash, which is what the directory publishes).
_PUBLIC_NAME = re.compile(
    r"public|^identity_key$|^_remote_identity_key$|ratchet_key$|base_key$|^key$|^signing_key$"
    r"|_id$|_ids$|_iteration$|_index$|^max_|^chain_id$|key_digest$|signature$|^root_hash$"
)
_PUBLIC_FIELD = {
    ("PublicKey", "_raw"),
    ("KyberPublicKey", "_raw"),
    # key transparency: auditors' (Ed25519) public keys
    ("RelayConfig", "kt_auditor_keys"),
    ("KtCosign", "auditor_key"),
    ("KtCosignature", "auditor_key"),
}


def _fields(cls: type) -> list[tuple[str, str]]:
    """(name, annotation) of every instance field a class declares."""
    if dataclasses.is_dataclass(cls):
        return [(f.name, str(f.type)) for f in dataclasses.fields(cls)]
    if issubclass(cls, tuple) and hasattr(cls, "_fields"):
        ann = getattr(cls, "__annotations__", {})
        return [(n, str(ann.get(n, ""))) for n in cls._fields]
    out: list[tuple[str, str]] = []
    for k in cls.__mro__:
        slots = k.__dict__.get("__slots__", ())
        if isinstance(slots, str):
            slots = (slots,)
        ann = inspect.get_annotations(k)
        out += [(n, str(ann.get(n, ""))) for n in slots if n != "__weakref__"]
    return out


def _is_secret_field(cls: type, name: str, annotation: str) -> bool:
    """A field named like key material that holds bytes (or is not annotated). A field that
    holds another object is that object's class's business: it is swept on its own."""
    if (cls.__name__, name) in _PUBLIC_FIELD:
        return False
    if not _SECRET_NAME.search(name) or _PUBLIC_NAME.search(name):
        return False
    return annotation == "" or ("bytes" in annotation and not annotation.startswith("Callable"))


def _neutral(annotation: str) -> object:
    a = annotation
    if re.search(r"\b(dict|Mapping)\b", a):
        return {}
    if re.search(r"\b(list|tuple|Sequence)\b", a):
        return ()
    if "bytes" in a and "None" not in a:
        return b""
    if re.fullmatch(r"\W*int\W*", a):
        return 0
    if re.fullmatch(r"\W*bool\W*", a):
        return False
    if re.fullmatch(r"\W*str\W*", a):
        return ""
    return None


def _planted_value(annotation: str, planted: bytes) -> object:
    if re.search(r"\b(dict|Mapping)\b", annotation):
        return {1: planted}
    if re.search(r"\b(list|tuple|Sequence)\b", annotation):
        return [(1, planted)]
    return planted


def _key_material_classes() -> list[tuple[type, list[tuple[str, str]]]]:
    found = []
    for mod in _securemsg_modules():
        for obj in vars(mod).values():
            if (
                not isinstance(obj, type)
                or obj.__module__ != mod.__name__
                or issubclass(obj, enum.Enum | BaseException)
            ):
                continue
            fields = _fields(obj)
            if any(_is_secret_field(obj, n, a) for n, a in fields):
                found.append((obj, fields))
    return found


_PLANT = b"\xa7\x1cPLANTED-SECRET"


def _plant(i: int) -> bytes:
    return (i.to_bytes(2, "big") + _PLANT).ljust(32, b"\xee")  # each prefix is unique


def _build(
    cls: type, fields: list[tuple[str, str]], planted: dict[str, bytes], unknown: object = None
) -> object:
    """An instance with ``planted`` bytes in its secret fields and neutral values elsewhere
    (``unknown`` where a field is not annotated), built without running ``__init__`` (so no
    validation can refuse the planted values)."""
    values = [
        _planted_value(a, planted[n]) if n in planted else (_neutral(a) if a else unknown)
        for n, a in fields
    ]
    if issubclass(cls, tuple):
        return tuple.__new__(cls, values)
    obj = object.__new__(cls)
    for (name, _), value in zip(fields, values, strict=True):
        object.__setattr__(obj, name, value)
    return obj


def _show(show: Any, cls: type, fields: list[tuple[str, str]], planted: dict[str, bytes]) -> str:
    """``show(instance)``; fields without annotation are tried as None, then as an empty
    mapping (a repr may count them)."""
    try:
        return str(show(_build(cls, fields, planted)))
    except (TypeError, AttributeError):
        return str(show(_build(cls, fields, planted, {})))


def test_enumeration_finds_the_classes_that_hold_key_material() -> None:
    names = {cls.__qualname__ for cls, _ in _key_material_classes()}
    for expected in (
        "StoredChain",
        "StoredSession",
        "StoredSenderKeyState",
        "IdentityKeyPair",
        "SenderChain",
        "RatchetState",
        "Authenticator",
        "ChainHalf",
        "_Encaps",
        "Chain",
        "SealedSenderDecryptionResult",
        "HandshakeKeys",
        "SenderKeyState",
        "PrivateKey",
        "EncapsState",
        "BraidRecord",
        "IdentityKeyPairFields",
    ):
        assert expected in names


def test_no_planted_secret_in_the_repr_or_str_of_any_class_holding_key_material() -> None:
    failures = []
    for cls, fields in _key_material_classes():
        planted = {n: _plant(i) for i, (n, a) in enumerate(fields) if _is_secret_field(cls, n, a)}
        for show in (repr, str):
            text = _show(show, cls, fields, planted)
            leaked = [n for n, p in planted.items() if _leaks(text, [p])]
            if leaked:
                failures.append(f"{cls.__module__}.{cls.__qualname__} {show.__name__}: {leaked}")
    assert failures == []


def test_the_sweep_sees_a_leaking_field() -> None:
    @dataclass
    class Leaky:
        private_key: bytes

    fields = _fields(Leaky)
    obj = _build(Leaky, fields, {"private_key": _plant(1)})
    assert _leaks(repr(obj), [_plant(1)])
    assert _leaks(_plant(1).hex(), [_plant(1)])
    assert _leaks(f"{_plant(1)!r}", [_plant(1)])


# Message text held as str (the bytes sweep above covers ``plaintext: bytes``): fields with
# these names and a str annotation. ``body: bytes`` fields are ciphertext (relay frames,
# stored envelopes) and stay out of this sweep.
_TEXT_NAME = re.compile(r"^(text|body|plaintext)$")
_PLANTED_TEXT = "PLANTED-MESSAGE-TEXT-\u2603"


def _text_classes() -> list[tuple[type, list[tuple[str, str]]]]:
    found = []
    for mod in _securemsg_modules():
        for obj in vars(mod).values():
            if (
                not isinstance(obj, type)
                or obj.__module__ != mod.__name__
                or issubclass(obj, enum.Enum | BaseException)
            ):
                continue
            fields = _fields(obj)
            if any(_TEXT_NAME.search(n) and "str" in a for n, a in fields):
                found.append((obj, fields))
    return found


def test_the_text_sweep_finds_the_classes_holding_message_text() -> None:
    names = {cls.__qualname__ for cls, _ in _text_classes()}
    assert {"ReceivedMessage", "InboxRow", "Content"} <= names


def test_no_message_text_in_the_repr_or_str_of_any_class_holding_it() -> None:
    failures = []
    for cls, fields in _text_classes():
        values = [
            _PLANTED_TEXT if _TEXT_NAME.search(n) and "str" in a else _neutral(a) for n, a in fields
        ]
        obj = object.__new__(cls)
        for (name, _), value in zip(fields, values, strict=True):
            object.__setattr__(obj, name, value)
        for show in (repr, str):
            if _PLANTED_TEXT in show(obj) or ascii(_PLANTED_TEXT)[1:-1] in show(obj):
                failures.append(f"{cls.__module__}.{cls.__qualname__} {show.__name__}")
    assert failures == []


# ------------------------------------------------------------------ a real conversation

_TRUST_ROOT = PrivateKey.from_bytes(bytes(range(1, 33)))
_SERVER_KEY = PrivateKey.from_bytes(bytes(range(2, 34)))
_NOW = 1_760_000_000_000


@dataclass
class _Conversation:
    parties: tuple[Party, Party]
    secrets: set[bytes]
    errors: list[BaseException]  # what the hostile inputs below raised
    log_lines: list[str]  # every log record emitted during the conversation, formatted


def _session_secrets(stored: StoredSession, out: set[bytes]) -> None:
    out.add(stored.root_key)
    for chain in [stored.sender_chain, *stored.receiver_chains]:
        if chain is None:
            continue
        out.add(chain.chain_key)
        if chain.ratchet_private_key:
            out.add(chain.ratchet_private_key)
        out.update(seed for _, seed in chain.message_keys)
    if stored.pq_ratchet_state:
        spqr = decode_spqr_state(stored.pq_ratchet_state)
        out.add(spqr.chain.next_root)
        for link in spqr.chain.links:
            for half in (link.send, link.recv):
                out.add(half.next)
                h = half.history
                out.update(h[i + 4 : i + 36] for i in range(0, len(h), 36))
        b = spqr.braid
        out.update((b.auth_root_key, b.auth_mac_key))
        if b.kem_seed:
            out.add(b.kem_seed)
        if b.encaps_state:
            out.update(b.encaps_state[i : i + 32] for i in range(0, len(b.encaps_state), 32))


def _party_secrets(me: Party, other: Party, distribution_id: uuid.UUID) -> set[bytes]:
    out: set[bytes] = set()
    ours = me.store.get_identity_key_pair()
    out.add(ours.private_key.to_bytes())
    theirs = other.store.get_identity_key_pair()
    out.add(ours.private_key.agree(theirs.public_key))  # the sealed sender v2 static DH
    for i in range(1, me.next_id):  # those not consumed yet
        with contextlib.suppress(InvalidPreKeyError):
            out.add(me.store.get_signed_pre_key(i).key_pair.private_key.to_bytes())
        with contextlib.suppress(InvalidPreKeyError):
            out.add(me.store.get_kyber_pre_key(i).key_pair.seed)
        with contextlib.suppress(InvalidPreKeyError):
            out.add(me.store.get_pre_key(i).key_pair.private_key.to_bytes())
    record = me.store.load_session(other.address)
    if record is not None:
        decoded = decode_record(record.to_bytes())
        if decoded.current_session is not None:
            _session_secrets(decoded.current_session, out)
        for archived in decoded.previous_sessions:
            _session_secrets(decode_session(archived), out)
    for sender in (me.address, other.address):
        skr = me.store.load_sender_key(sender, distribution_id)
        if skr is not None:
            for s in decode_sender_key_record(skr.to_bytes()):
                out.add(s.chain_key)
                if s.signing_private:
                    out.add(s.signing_private)
                out.update(seed for _, seed in s.message_keys)
    return {s for s in out if len(s) >= 16}


def _certificate(party: Party) -> ss.SenderCertificate:
    server = ss.ServerCertificate.new(7, _SERVER_KEY.public_key(), _TRUST_ROOT, party.rng)
    return ss.SenderCertificate.new(
        sender_uuid=party.address.name,
        sender_e164=None,
        sender_device_id=party.address.device_id,
        key=party.store.get_identity_key_pair().public_key,
        expiration=_NOW + 86_400_000,
        signer=server,
        signer_key=_SERVER_KEY,
        rng=party.rng,
    )


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _run_conversation() -> _Conversation:
    root = logging.getLogger()
    capture, level = _Capture(), root.level
    root.addHandler(capture)
    root.setLevel(logging.DEBUG)
    try:
        conversation = _converse()
    finally:
        root.removeHandler(capture)
        root.setLevel(level)
    conversation.log_lines = capture.lines
    return conversation


def _refused(errors: list[BaseException], call: Callable[[], object]) -> None:
    try:
        call()
    except SecureMsgError as exc:
        errors.append(exc)
    else:  # pragma: no cover - each hostile input below is refused
        raise AssertionError("hostile input accepted")


def _converse() -> _Conversation:
    alice, bob = new_pair()
    distribution_id = uuid.UUID(int=0x5EC2E7)
    secrets: set[bytes] = set()

    def snapshot() -> None:
        secrets.update(_party_secrets(alice, bob, distribution_id))
        secrets.update(_party_secrets(bob, alice, distribution_id))

    bundle = bob.publish_bundle()
    snapshot()  # bob's prekeys, before the PreKey message consumes them
    alice.start_session(bob, bundle)
    assert bob.decrypt(alice, alice.encrypt(bob, b"hi bob")) == b"hi bob"
    assert alice.decrypt(bob, bob.encrypt(alice, b"hi alice")) == b"hi alice"

    # 1:1 with SPQR: enough ping-pong for several braid epochs, and a skipped message.
    held = alice.encrypt(bob, b"late")
    for i in range(90):
        assert bob.decrypt(alice, alice.encrypt(bob, b"a%d" % i)) == b"a%d" % i
        assert alice.decrypt(bob, bob.encrypt(alice, b"b%d" % i)) == b"b%d" % i
        if i % 15 == 0:
            snapshot()  # at i = 0 bob's record holds the skipped key of the held message
        if i == 2:
            assert bob.decrypt(alice, held) == b"late"
    snapshot()

    # hostile 1:1 input: a replay, a tampered message, a message for someone else
    errors: list[BaseException] = []
    replay = alice.encrypt(bob, b"once")
    assert bob.decrypt(alice, replay) == b"once"
    _refused(errors, lambda: bob.decrypt(alice, replay))
    tampered = bytearray(alice.encrypt(bob, b"tamper").to_bytes())
    tampered[-12] ^= 1
    _refused(errors, lambda: bob.decrypt(alice, bytes(tampered), CiphertextMessageType.WHISPER))
    _refused(errors, lambda: alice.decrypt(alice, alice.encrypt(bob, b"not yours")))
    assert bob.store.load_session(alice.address).current.spqr.epoch > 2  # type: ignore[union-attr]

    # sealed sender v1, both ways
    for sender, recipient in ((alice, bob), (bob, alice)):
        env = sealed_sender.sealed_sender_encrypt(
            recipient.address,
            _certificate(sender),
            b"sealed v1",
            sender.store,
            now=_NOW,
            rng=sender.rng,
        )
        got = sealed_sender.sealed_sender_decrypt(
            env,
            _TRUST_ROOT.public_key(),
            recipient.store,
            now=_NOW,
            local_uuid=recipient.address.name,
            local_device_id=recipient.address.device_id,
            rng=recipient.rng,
        )
        assert got.plaintext == b"sealed v1"
        _refused(  # the same envelope again: the inner message is a replay
            errors,
            lambda env=env, recipient=recipient: sealed_sender.sealed_sender_decrypt(
                env,
                _TRUST_ROOT.public_key(),
                recipient.store,
                now=_NOW,
                local_uuid=recipient.address.name,
                local_device_id=recipient.address.device_id,
                rng=recipient.rng,
            ),
        )
        _refused(
            errors,
            lambda env=env, sender=sender: sealed_sender.sealed_sender_decrypt_to_usmc(
                env[:-1] + bytes([env[-1] ^ 1]), sender.store
            ),
        )
    snapshot()

    # a group: sender-key distribution, then group messages sealed with sealed sender v2
    skdm = groups.create_sender_key_distribution_message(
        alice.address, distribution_id, alice.store, rng=alice.rng
    )
    groups.process_sender_key_distribution_message(alice.address, skdm, bob.store)
    for i in range(3):
        skm = groups.group_encrypt(
            alice.address, distribution_id, b"group %d" % i, alice.store, rng=alice.rng
        )
        usmc = ss.UnidentifiedSenderMessageContent.new(
            CiphertextMessageType.SENDERKEY, _certificate(alice), skm.to_bytes()
        )
        sent = sealed_sender.sealed_sender_multi_recipient_encrypt(
            [bob.address], usmc, alice.store, rng=alice.rng
        )
        received = sealed_sender.sealed_sender_multi_recipient_message_for_single_recipient(
            sent, ServiceId.parse(bob.address.name)
        )
        got_usmc = sealed_sender.sealed_sender_decrypt_to_usmc(received, bob.store)
        got_usmc.sender.validate(_TRUST_ROOT.public_key(), _NOW)
        inner = SenderKeyMessage.from_bytes(got_usmc.contents)
        assert groups.group_decrypt(inner, alice.address, bob.store) == b"group %d" % i
        _refused(errors, lambda inner=inner: groups.group_decrypt(inner, alice.address, bob.store))
    snapshot()
    return _Conversation((alice, bob), secrets, errors, [])


@pytest.fixture(scope="module")
def conversation() -> _Conversation:
    return _run_conversation()


def test_no_conversation_secret_in_an_error_or_a_log_line(conversation: _Conversation) -> None:
    assert len(conversation.errors) >= 9
    for error in conversation.errors:
        chain: BaseException | None = error
        while chain is not None:  # the error and everything it was raised from
            text = " ".join([str(chain), repr(chain), *(repr(a) for a in chain.args)])
            text += " ".join(repr(v) for v in vars(chain).values())
            assert _leaks(text, conversation.secrets) == [], type(chain).__name__
            chain = chain.__cause__ or chain.__context__
    assert _leaks("\n".join(conversation.log_lines), conversation.secrets) == []


def test_the_conversation_collects_its_secrets(conversation: _Conversation) -> None:
    alice, _ = conversation.parties
    assert alice.store.get_identity_key_pair().private_key.to_bytes() in conversation.secrets
    assert len(conversation.secrets) > 200


def test_no_conversation_secret_in_the_repr_or_str_of_a_live_securemsg_object(
    conversation: _Conversation,
) -> None:
    alice, bob = conversation.parties
    keep = [  # hold the parties' current objects so that they are among the live ones
        alice.store.load_session(bob.address),
        bob.store.load_session(alice.address),
        alice.store.get_identity_key_pair(),
    ]
    secrets = conversation.secrets
    seen = 0
    failures = []
    for obj in gc.get_objects():
        module = getattr(type(obj), "__module__", "")
        if not isinstance(module, str) or not module.startswith("securemsg."):
            continue
        if "._proto" in module:
            continue
        if isinstance(obj, type | types.FunctionType | types.ModuleType):
            continue
        seen += 1
        for show in (repr, str):
            try:
                text = show(obj)
            except Exception:  # an object caught half-built by gc: not our concern here
                continue
            if _leaks(text, secrets):
                failures.append(f"{type(obj).__qualname__} {show.__name__}")
    assert keep
    assert seen > 50
    assert failures == []


# ----------------------------------------------------------------------- module globals

# Types whose instances hold a secret whatever their contents: none may be reachable from a
# module global.
_SECRET_TYPES: tuple[type, ...] = (
    PrivateKey,
    KeyPair,
    IdentityKeyPair,
    KyberKeyPair,
    mlkem768.MlKem768KeyPair,
    mlkem768.EncapsState,
    SessionRecord,
    SessionState,
    SpqrState,
    Authenticator,
    SenderKeyRecord,
    SenderKeyState,
    DeterministicRng,
)


def _children(value: object) -> Iterator[object]:
    """What a value refers to, for the walk: container items, instance fields, closures,
    defaults and the cache of an ``functools.lru_cache`` wrapper."""
    if isinstance(value, dict):
        yield from value.keys()
        yield from value.values()
    elif isinstance(value, list | tuple | set | frozenset):
        yield from value
    elif isinstance(value, functools._lru_cache_wrapper):  # type: ignore[attr-defined]
        yield from gc.get_referents(value)  # includes the cache dict
        yield getattr(value, "__wrapped__", None)
    elif isinstance(value, types.FunctionType):
        yield from value.__defaults__ or ()
        yield from (value.__kwdefaults__ or {}).values()
        for cell in value.__closure__ or ():
            try:
                yield cell.cell_contents
            except ValueError:  # an empty cell
                continue
    elif isinstance(value, types.MethodType):
        yield value.__self__
    elif isinstance(value, type):
        if value.__module__.startswith("securemsg"):
            yield from vars(value).values()
    elif not isinstance(value, types.ModuleType):
        if hasattr(value, "__dict__"):
            yield from vars(value).values()
        for k in type(value).__mro__:
            slots = k.__dict__.get("__slots__", ())
            for name in (slots,) if isinstance(slots, str) else slots:
                if hasattr(value, name):
                    yield getattr(value, name)


def _walk_globals() -> Iterator[tuple[str, object]]:
    seen: set[int] = set()
    for name, module in list(sys.modules.items()):
        if not (name == "securemsg" or name.startswith("securemsg.")):
            continue
        stack: list[tuple[str, object, int]] = [
            (f"{name}.{k}", v, 0) for k, v in vars(module).items()
        ]
        while stack:
            path, value, depth = stack.pop()
            if id(value) in seen or depth > 12:
                continue
            seen.add(id(value))
            yield path, value
            if isinstance(value, bytes | bytearray | str | int | float | bool | types.ModuleType):
                continue
            stack.extend((path + "/", child, depth + 1) for child in _children(value))


def _global_leaks(secrets: set[bytes]) -> list[str]:
    hashed = {sha256(s).digest() for s in secrets}  # a memo keyed by a hash of a secret
    as_ints = {int.from_bytes(s, o) for s in secrets for o in ("little", "big")}
    hex_forms = {s.hex() for s in secrets}
    failures = []
    for path, value in _walk_globals():
        if isinstance(value, _SECRET_TYPES):
            failures.append(f"{path}: a {type(value).__name__}")
        elif isinstance(value, bytes | bytearray | memoryview):
            data = bytes(value)
            if len(data) >= 16 and (
                data in hashed or any(s in data for s in secrets if len(s) <= len(data))
            ):
                failures.append(f"{path}: secret bytes")
        elif isinstance(value, str) and len(value) >= 32:
            if any(h in value for h in hex_forms):
                failures.append(f"{path}: a secret in hex")
        elif type(value) is int and value in as_ints:
            failures.append(f"{path}: a secret as an int")
        elif type(value).__module__ == "numpy" and hasattr(value, "tobytes"):
            data = value.tobytes()
            if any(s in data for s in secrets):
                failures.append(f"{path}: secret bytes in an array")
    return failures


def test_no_conversation_secret_in_a_module_global(conversation: _Conversation) -> None:
    for info in pkgutil.walk_packages(securemsg.__path__, "securemsg."):
        importlib.import_module(info.name)  # every module is scanned, used or not
    failures = _global_leaks(conversation.secrets)
    assert failures == []


def test_the_globals_scan_sees_a_planted_memo(
    conversation: _Conversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    alice, bob = conversation.parties
    secret = next(iter(conversation.secrets))
    ik = alice.store.get_identity_key_pair()
    monkeypatch.setattr(ss, "_PLANTED_MEMO", {b"k": secret}, raising=False)
    assert any("_PLANTED_MEMO" in f for f in _global_leaks(conversation.secrets))
    monkeypatch.setattr(ss, "_PLANTED_MEMO", {sha256(secret).digest(): b"x"}, raising=False)
    assert any("_PLANTED_MEMO" in f for f in _global_leaks(conversation.secrets))
    monkeypatch.setattr(ss, "_PLANTED_MEMO", [ik], raising=False)
    assert any("_PLANTED_MEMO" in f for f in _global_leaks(conversation.secrets))

    @functools.lru_cache(maxsize=4)
    def remembered(x: bytes) -> bytes:
        return x

    remembered(secret)
    monkeypatch.setattr(ss, "_PLANTED_CACHE", remembered, raising=False)
    assert any("_PLANTED_CACHE" in f for f in _global_leaks(conversation.secrets))
    assert bob.address == ProtocolAddress(bob.address.name, bob.address.device_id)
