"""cipher.py: a 1:1 conversation through the stores, and hostile input leaving state unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from session_parties import NOW, Party, established_pair, message_type, new_pair

from securemsg import cipher
from securemsg.errors import (
    DecodeError,
    DuplicateMessageError,
    InvalidKeyError,
    InvalidMessageError,
    InvalidPreKeyError,
    MessageGapTooLargeError,
    NoSessionError,
    UnsupportedVersionError,
    UntrustedIdentityError,
    UsageError,
)
from securemsg.limits import Limits
from securemsg.protocol.address import ProtocolAddress, serialize_addresses
from securemsg.protocol.identity_and_prekeys import IdentityKeyPair
from securemsg.wire.messages import CiphertextMessageType, PreKeySignalMessage, SignalMessage

WHISPER = CiphertextMessageType.WHISPER
PREKEY = CiphertextMessageType.PREKEY


def test_first_messages_are_prekey_messages_until_the_first_reply() -> None:
    alice, bob = new_pair()
    alice.start_session(bob)
    m1 = alice.encrypt(bob, b"one")
    m2 = alice.encrypt(bob, b"two")
    assert isinstance(m1, PreKeySignalMessage) and isinstance(m2, PreKeySignalMessage)
    assert m1.base_key == m2.base_key and m1.kyber_ciphertext == m2.kyber_ciphertext
    assert m1.message.counter == 0 and m2.message.counter == 1
    # both names are ServiceIds: the inner message carries the 36-byte address binding
    assert m1.message.addresses is not None and len(m1.message.addresses) == 36
    assert m1.message_version == 4 and m1.to_bytes()[0] == 0x44
    assert bob.decrypt(alice, m2) == b"two"  # out of order, second PreKey reuses the session
    assert bob.decrypt(alice, m1) == b"one"
    reply = bob.encrypt(alice, b"three")
    assert isinstance(reply, SignalMessage) and reply.addresses is None
    assert alice.decrypt(bob, reply) == b"three"
    m4 = alice.encrypt(bob, b"four")
    assert isinstance(m4, SignalMessage) and m4.addresses is None
    assert bob.decrypt(alice, m4) == b"four"


def test_long_conversation_in_both_directions_with_ratchet_steps() -> None:
    alice, bob = established_pair()
    pattern = [1, 1, 2, 1, 2, 2, 2, 1, 1, 1, 2, 1] * 4
    for i, who in enumerate(pattern):
        s, r = (alice, bob) if who == 1 else (bob, alice)
        text = b"msg %d" % i
        assert r.decrypt(s, s.encrypt(r, text)) == text


def test_empty_and_large_plaintexts_round_trip() -> None:
    alice, bob = established_pair()
    for size in (0, 1, 15, 16, 17, 65536):
        text = bytes(range(256)) * (size // 256) + bytes(size % 256)
        assert bob.decrypt(alice, alice.encrypt(bob, text)) == text


def test_out_of_order_and_duplicate_delivery() -> None:
    alice, bob = established_pair()
    msgs = [alice.encrypt(bob, b"%d" % i) for i in range(6)]
    for i in (3, 0, 5, 1, 4, 2):
        assert bob.decrypt(alice, msgs[i]) == b"%d" % i
    before = bob.record_bytes(alice)
    with pytest.raises(DuplicateMessageError) as info:
        bob.decrypt(alice, msgs[2])
    assert info.value.chain_index == 2
    assert bob.record_bytes(alice) == before


def test_message_from_an_old_chain_after_ratchet_steps() -> None:
    alice, bob = established_pair()
    late = alice.encrypt(bob, b"late")
    for i in range(3):
        assert bob.decrypt(alice, alice.encrypt(bob, b"a%d" % i)) == b"a%d" % i
        assert alice.decrypt(bob, bob.encrypt(alice, b"b%d" % i)) == b"b%d" % i
    assert bob.decrypt(alice, late) == b"late"


def test_counter_jump_limit_raises_gap_error_and_keeps_state() -> None:
    alice, bob = established_pair(Limits(max_forward_jumps=5, max_message_keys=10))
    msgs = [alice.encrypt(bob, b"x") for _ in range(8)]
    before = bob.record_bytes(alice)
    with pytest.raises(MessageGapTooLargeError) as info:
        bob.decrypt(alice, msgs[7])
    assert info.value.gap == 7
    assert bob.record_bytes(alice) == before
    assert bob.decrypt(alice, msgs[5]) == b"x"
    assert bob.decrypt(alice, msgs[7]) == b"x"


def test_skipped_keys_are_bounded_by_max_message_keys() -> None:
    alice, bob = established_pair(Limits(max_message_keys=3))
    msgs = [alice.encrypt(bob, b"%d" % i) for i in range(7)]
    assert bob.decrypt(alice, msgs[6]) == b"6"
    state = bob.store.load_session(alice.address).current  # type: ignore[union-attr]
    assert state is not None and state.ratchet.skipped_key_count == 3
    for i in (0, 1, 2):  # dropped: the oldest skipped keys go first
        with pytest.raises(DuplicateMessageError):
            bob.decrypt(alice, msgs[i])
    for i in (3, 4, 5):
        assert bob.decrypt(alice, msgs[i]) == b"%d" % i


def test_no_session_errors() -> None:
    alice, bob = new_pair()
    with pytest.raises(NoSessionError):
        alice.encrypt(bob, b"x")
    other_alice, other_bob = established_pair()
    msg = other_alice.encrypt(other_bob, b"x")
    with pytest.raises(NoSessionError):
        bob.decrypt(alice, msg)
    assert bob.record_bytes(alice) is None


def test_unacknowledged_session_is_refused_after_30_days() -> None:
    alice, bob = new_pair()
    alice.start_session(bob, now=NOW)
    thirty_days = 30 * 24 * 3600 * 1000
    assert isinstance(alice.encrypt(bob, b"ok", now=NOW + thirty_days), PreKeySignalMessage)
    before = alice.record_bytes(bob)
    with pytest.raises(NoSessionError):
        alice.encrypt(bob, b"late", now=NOW + thirty_days + 1)
    assert alice.record_bytes(bob) == before
    # an acknowledged session has no age limit
    a2, b2 = established_pair()
    assert isinstance(a2.encrypt(b2, b"x", now=NOW + 10 * thirty_days), SignalMessage)


def test_changed_identity_is_untrusted_everywhere() -> None:
    alice, bob = established_pair()
    ik = IdentityKeyPair.generate(alice.rng)
    alice.store.save_identity(bob.address, ik.identity_key)  # someone replaced Bob's key
    before = alice.record_bytes(bob)
    with pytest.raises(UntrustedIdentityError) as info:
        alice.encrypt(bob, b"x")
    assert info.value.identity_key == bob.store.get_identity_key_pair().identity_key
    assert info.value.address == str(bob.address)
    assert alice.record_bytes(bob) == before
    msg = bob.encrypt(alice, b"y")
    with pytest.raises(UntrustedIdentityError):
        alice.decrypt(bob, msg)
    assert alice.record_bytes(bob) == before
    with pytest.raises(UntrustedIdentityError):
        alice.start_session(bob)
    assert alice.record_bytes(bob) == before


def test_prekey_message_from_untrusted_identity_is_refused() -> None:
    alice, bob = new_pair()
    bob.store.save_identity(alice.address, IdentityKeyPair.generate(bob.rng).identity_key)
    alice.start_session(bob)
    msg = alice.encrypt(bob, b"x")
    with pytest.raises(UntrustedIdentityError) as info:
        bob.decrypt(alice, msg)
    assert info.value.identity_key == alice.store.get_identity_key_pair().identity_key
    assert bob.record_bytes(alice) is None


def test_identity_is_saved_on_first_use() -> None:
    alice, bob = new_pair()
    alice.start_session(bob)
    assert alice.store.get_identity(bob.address) == bob.store.get_identity_key_pair().identity_key
    bob.decrypt(alice, alice.encrypt(bob, b"x"))
    assert bob.store.get_identity(alice.address) == alice.store.get_identity_key_pair().identity_key


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes((data[index] ^ 0x01,)) + data[index + 1 :]


def test_tampered_whisper_messages_raise_typed_errors_and_change_nothing() -> None:
    alice, bob = established_pair()
    msg = alice.encrypt(bob, b"secret").to_bytes()
    before = bob.record_bytes(alice)
    for i in range(len(msg)):  # the MAC covers the version byte too
        with pytest.raises((InvalidMessageError, DecodeError, InvalidKeyError)):
            bob.decrypt(alice, _flip(msg, i), WHISPER)
        assert bob.record_bytes(alice) == before
    for n in range(len(msg)):
        with pytest.raises((InvalidMessageError, DecodeError, InvalidKeyError)):
            bob.decrypt(alice, msg[:n], WHISPER)
    with pytest.raises(UnsupportedVersionError):
        bob.decrypt(alice, bytes((0x54,)) + msg[1:], WHISPER)
    with pytest.raises(UnsupportedVersionError):
        bob.decrypt(alice, bytes((0x34,)) + msg[1:], WHISPER)
    assert bob.record_bytes(alice) == before
    assert bob.decrypt(alice, msg, WHISPER) == b"secret"


def test_tampered_prekey_messages_raise_typed_errors_and_consume_nothing() -> None:
    alice, bob = new_pair()
    alice.start_session(bob)
    msg = alice.encrypt(bob, b"hello").to_bytes()
    prekeys = list(bob.prekeys)
    step = max(1, len(msg) // 150)  # the Kyber ciphertext is long: sample it
    # byte 0: only the high nibble of the version byte is read (as libsignal does)
    for i in list(range(1, 80)) + list(range(80, len(msg), step)):
        with pytest.raises((InvalidMessageError, DecodeError, InvalidKeyError, InvalidPreKeyError)):
            bob.decrypt(alice, _flip(msg, i), PREKEY)
        assert bob.record_bytes(alice) is None
    for pk in prekeys:
        bob.store.get_pre_key(pk)  # not consumed
    assert bob.decrypt(alice, msg, PREKEY) == b"hello"


def test_message_type_mismatch_and_bad_arguments() -> None:
    alice, bob = established_pair()
    msg = alice.encrypt(bob, b"x")
    with pytest.raises(DecodeError):
        bob.decrypt(alice, msg.to_bytes(), PREKEY)
    with pytest.raises(UsageError):
        bob.decrypt(alice, msg.to_bytes(), CiphertextMessageType.SENDERKEY)
    with pytest.raises(UsageError):
        cipher.message_encrypt(
            "text",  # type: ignore[arg-type]
            bob.address,
            alice.store,
            now=NOW,
            rng=alice.rng,
            local_address=alice.address,
        )
    with pytest.raises(UsageError):
        cipher.message_encrypt(
            b"x",
            bob.address,
            alice.store,
            now=1.5,  # type: ignore[arg-type]
            rng=alice.rng,
            local_address=alice.address,
        )
    assert bob.decrypt(alice, msg) == b"x"


def test_address_binding_is_checked_when_present() -> None:
    alice, bob = new_pair()
    alice.start_session(bob)
    msg = alice.encrypt(bob, b"x")
    assert isinstance(msg, PreKeySignalMessage)
    impostor = Party(alice.store, type(alice.address)(alice.address.name, 2), alice.rng)
    with pytest.raises(InvalidMessageError):
        bob.decrypt(impostor, msg)
    assert bob.record_bytes(impostor) is None
    assert bob.decrypt(alice, msg) == b"x"


_RECIPES = (
    cipher.process_prekey_bundle,
    cipher.message_encrypt,
    cipher.message_decrypt,
    cipher.decrypt_signal_message,
    cipher.decrypt_prekey_message,
)


def _positional(recipe: Any, party: Party, to: Party) -> tuple[object, ...]:
    if recipe is cipher.message_decrypt:
        return (b"x", CiphertextMessageType.WHISPER, to.address, party.store)
    return (b"x", to.address, party.store)


@pytest.mark.parametrize("recipe", _RECIPES, ids=lambda f: f.__name__)
def test_local_address_is_a_required_keyword(recipe: Any) -> None:
    alice, bob = new_pair()
    with pytest.raises(TypeError, match="local_address"):
        recipe(*_positional(recipe, alice, bob), now=NOW, rng=alice.rng)


@pytest.mark.parametrize("recipe", _RECIPES, ids=lambda f: f.__name__)
@pytest.mark.parametrize("bad", [None, "alice.1", ("alice", 1)])
def test_local_address_of_another_type_is_a_usage_error(recipe: Any, bad: object) -> None:
    alice, bob = new_pair()
    with pytest.raises(UsageError, match="local_address"):
        recipe(*_positional(recipe, alice, bob), now=NOW, rng=alice.rng, local_address=bad)


def test_the_address_binding_is_always_sent_and_checked_in_full() -> None:
    alice, bob = new_pair()
    alice.start_session(bob)
    msg = alice.encrypt(bob, b"x")
    assert isinstance(msg, PreKeySignalMessage)
    assert msg.message.addresses == serialize_addresses(alice.address, bob.address)
    # the recipient half is checked too: the message is for bob's device 1, not device 2
    other_device = ProtocolAddress(bob.address.name, 2)
    with pytest.raises(InvalidMessageError):
        cipher.message_decrypt(
            msg.to_bytes(),
            message_type(msg),
            alice.address,
            bob.store,
            now=NOW,
            rng=bob.rng,
            local_address=other_device,
        )
    assert bob.record_bytes(alice) is None
    assert bob.decrypt(alice, msg) == b"x"
