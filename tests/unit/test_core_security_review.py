"""Regression tests for the findings of the core security review.

Each test pins one hostile-input or secret-handling property that was broken before the fix.
"""

from __future__ import annotations

import contextlib
import uuid

import pytest
from session_parties import BOB_ADDRESS, new_pair, new_party

from securemsg import sealed_sender
from securemsg.crypto.rng import DeterministicRng
from securemsg.errors import InvalidMessageError, SecureMsgError, UsageError
from securemsg.protocol.address import ProtocolAddress, ServiceId
from securemsg.protocol.identity_and_prekeys import (
    IdentityKey,
    IdentityKeyPair,
    generate_registration_id,
)
from securemsg.protocol.spqr.authenticator import Authenticator
from securemsg.store.base import Direction
from securemsg.store.memory import InMemoryProtocolStore
from securemsg.wire.messages import PreKeySignalMessage

# --- sealed sender v2 split: the only listed recipient is an excluded one -----------------------


def _sent_v2_with_only_excluded(service_id: ServiceId) -> bytes:
    # 0x23 || varint(1) || ServiceId(17) || device 0 (excluded) || E(32) || ciphertext
    return b"\x23\x01" + service_id.to_fixed_width() + b"\x00" + bytes(32) + b"ciphertext"


def test_split_of_message_whose_only_recipient_is_excluded_is_a_typed_error() -> None:
    sid = ServiceId.try_parse(str(uuid.UUID(int=7)))
    assert sid is not None
    data = _sent_v2_with_only_excluded(sid)
    with pytest.raises(UsageError):
        sealed_sender.sealed_sender_multi_recipient_message_for_single_recipient(data)
    with pytest.raises(UsageError):
        sealed_sender.sealed_sender_multi_recipient_message_for_single_recipient(data, sid)


# --- repeated PreKey message with a substituted (unauthenticated) identity key ------------------


class _TrustingStore(InMemoryProtocolStore):
    """A store that, like many apps, accepts any identity when receiving."""

    def is_trusted_identity(
        self, address: ProtocolAddress, identity_key: IdentityKey, direction: Direction
    ) -> bool:
        return direction is Direction.RECEIVING or super().is_trusted_identity(
            address, identity_key, direction
        )


def test_repeated_prekey_message_with_substituted_identity_changes_nothing() -> None:
    rng = DeterministicRng(b"bob-trusting")
    bob_store = _TrustingStore(IdentityKeyPair.generate(rng), generate_registration_id(rng))
    alice, _ = new_pair()
    bob = new_party(b"bob", BOB_ADDRESS, store=bob_store)
    alice.start_session(bob)
    first = alice.encrypt(bob, b"one")
    second = alice.encrypt(bob, b"two")
    assert isinstance(first, PreKeySignalMessage) and isinstance(second, PreKeySignalMessage)
    assert bob.decrypt(alice, first) == b"one"
    alice_identity = bob_store.get_identity(alice.address)
    assert alice_identity is not None
    record_before = bob.record_bytes(alice)

    eve = IdentityKeyPair.generate(DeterministicRng(b"eve"))
    forged = PreKeySignalMessage.new(
        message_version=second.message_version,
        registration_id=second.registration_id,
        pre_key_id=second.pre_key_id,
        signed_pre_key_id=second.signed_pre_key_id,
        kyber_pre_key_id=second.kyber_pre_key_id,
        kyber_ciphertext=second.kyber_ciphertext,
        base_key=second.base_key,
        identity_key=eve.identity_key.public_key,
        message=second.message,
    )
    with pytest.raises(InvalidMessageError):
        bob.decrypt(alice, forged)
    stored = bob_store.get_identity(alice.address)
    assert stored is not None and stored.public_key == alice_identity.public_key
    assert bob.record_bytes(alice) == record_before
    # The genuine message still decrypts afterwards.
    assert bob.decrypt(alice, second) == b"two"


# --- secret comparisons go through the constant-time comparator ---------------------------------


def test_secret_equality_uses_constant_time_comparator(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    import securemsg.crypto.primitives as primitives

    real = primitives.constant_time_eq

    def counting(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real(a, b)

    import securemsg.protocol.identity_and_prekeys as keys_mod
    import securemsg.protocol.spqr.authenticator as auth_mod

    monkeypatch.setattr(keys_mod, "constant_time_eq", counting, raising=True)
    monkeypatch.setattr(auth_mod, "constant_time_eq", counting, raising=True)
    a = IdentityKeyPair.generate(DeterministicRng(b"k"))
    b = IdentityKeyPair.from_bytes(a.to_bytes())
    assert a == b
    assert Authenticator(bytes(32), bytes(32)) == Authenticator(bytes(32), bytes(32))
    assert len(calls) >= 2


def test_no_untyped_error_from_split_of_hostile_bytes() -> None:
    sid = ServiceId.try_parse(str(uuid.UUID(int=9)))
    assert sid is not None
    base = _sent_v2_with_only_excluded(sid)
    for cut in range(len(base)):
        with contextlib.suppress(SecureMsgError):
            sealed_sender.sealed_sender_multi_recipient_message_for_single_recipient(base[:cut])
