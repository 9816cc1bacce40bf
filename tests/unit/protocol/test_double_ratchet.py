"""Double Ratchet key schedule and chains: libsignal's vectors, limits, value semantics."""

from __future__ import annotations

import pytest

from securemsg.crypto.curve25519 import KeyPair
from securemsg.crypto.primitives import hkdf_sha256, hmac_sha256
from securemsg.crypto.rng import DeterministicRng
from securemsg.errors import DuplicateMessageError, MessageGapTooLargeError
from securemsg.protocol.double_ratchet import (
    RatchetState,
    ReceiverChain,
    SenderChain,
    chain_step,
    message_keys,
    root_step,
)

# libsignal rust/protocol/src/ratchet/keys.rs test_chain_key_derivation
SEED = bytes.fromhex("8ab72d6f4cc5ac0d387eaf463378ddb28edd07385b1cb01250c715982e7ad48f")
CIPHER_KEY = bytes.fromhex("bf51e9d75e0e31031051f82a2491ffc084fa298b7793bd9db620056febf45217")
MAC_KEY = bytes.fromhex("c6c77d6a73a354337a56435e34607dfe48e3ace14e77314dc6abc172e7a7030b")
NEXT_CHAIN_KEY = bytes.fromhex("28e8f8fee54b801eef7c5cfb2f17f32c7b334485bbb70fac6ec10342a246d15d")

LIMITS = {"max_forward_jumps": 25_000, "max_message_keys": 2_000, "max_receiver_chains": 5}


def test_chain_key_matches_libsignal_vector() -> None:
    seed, next_ck = chain_step(SEED)
    assert next_ck == NEXT_CHAIN_KEY
    cipher_key, mac_key, iv = message_keys(seed, None)
    assert (cipher_key, mac_key) == (CIPHER_KEY, MAC_KEY)
    assert len(iv) == 16


def test_spqr_key_is_the_hkdf_salt() -> None:
    seed, _ = chain_step(SEED)
    spqr_key = bytes(range(32))
    okm = hkdf_sha256(seed, spqr_key, b"WhisperMessageKeys", 80)
    assert message_keys(seed, spqr_key) == (okm[:32], okm[32:64], okm[64:])
    assert message_keys(seed, spqr_key)[0] != CIPHER_KEY


def test_root_step_is_hkdf_of_the_dh_with_the_root_as_salt() -> None:
    rng = DeterministicRng(b"root")
    ours, theirs = KeyPair.generate(rng), KeyPair.generate(rng)
    root = bytes(range(32))
    okm = hkdf_sha256(ours.private_key.agree(theirs.public_key), root, b"WhisperRatchet", 64)
    assert root_step(root, theirs.public_key, ours.private_key) == (okm[:32], okm[32:])
    assert root_step(root, ours.public_key, theirs.private_key) == (okm[:32], okm[32:])


def _pair() -> tuple[RatchetState, RatchetState, DeterministicRng]:
    """Alice and Bob ratchet states as right after PQXDH (Bob's first key is his SPK)."""
    rng = DeterministicRng(b"pair")
    spk = KeyPair.generate(rng)
    root, chain = bytes(32), b"\x01" * 32
    ra = KeyPair.generate(rng)
    a_root, a_send = root_step(root, spk.public_key, ra.private_key)
    alice = RatchetState(
        a_root, SenderChain(ra, a_send, 0), (ReceiverChain(spk.public_key, chain, 0),), 0
    )
    bob = RatchetState(root, SenderChain(spk, chain, 0), (), 0)
    return alice, bob, rng


def test_send_and_receive_derive_the_same_seeds_across_ratchet_steps() -> None:
    alice, bob, rng = _pair()
    for rounds in range(3):
        for _ in range(rounds + 1):
            seed, counter, alice_next = alice.send()
            got, bob = bob.receive(
                alice.sender_chain.ratchet_key_pair.public_key, counter, rng, **LIMITS
            )
            assert got == seed
            alice = alice_next
        seed, counter, bob_next = bob.send()
        got, alice = alice.receive(
            bob.sender_chain.ratchet_key_pair.public_key, counter, rng, **LIMITS
        )
        assert got == seed
        bob = bob_next


def test_operations_never_modify_the_old_state() -> None:
    alice, bob, rng = _pair()
    _, _, a1 = alice.send()
    a1.send()
    key = alice.sender_chain.ratchet_key_pair.public_key
    snapshot = (bob.root_key, bob.sender_chain, bob.receiver_chains, bob.previous_counter)
    _, bob_after = bob.receive(key, 1, rng, **LIMITS)
    assert (bob.root_key, bob.sender_chain, bob.receiver_chains, bob.previous_counter) == snapshot
    assert bob.receiver_chains == () and len(bob_after.receiver_chains) == 1
    chain = bob_after.receiver_chains[0]
    assert dict(chain.skipped) == {0: chain_step(alice.sender_chain.chain_key)[0]}
    _, bob_later = bob_after.receive(key, 0, rng, **LIMITS)
    assert dict(chain.skipped) == {0: chain_step(alice.sender_chain.chain_key)[0]}
    assert not bob_later.receiver_chains[0].skipped


def test_duplicate_and_gap_errors() -> None:
    alice, bob, rng = _pair()
    key = alice.sender_chain.ratchet_key_pair.public_key
    _, bob = bob.receive(key, 0, rng, **LIMITS)
    with pytest.raises(DuplicateMessageError) as dup:
        bob.receive(key, 0, rng, **LIMITS)
    assert dup.value.chain_index == 0
    with pytest.raises(MessageGapTooLargeError) as gap:
        bob.receive(key, 12, rng, max_forward_jumps=10, max_message_keys=5, max_receiver_chains=5)
    assert gap.value.gap == 11
    _, unlimited = bob.receive(
        key, 12, rng, max_forward_jumps=None, max_message_keys=5, max_receiver_chains=5
    )
    assert sorted(unlimited.receiver_chains[0].skipped) == [7, 8, 9, 10, 11]


def test_skipped_keys_drop_the_oldest_first() -> None:
    alice, bob, rng = _pair()
    key = alice.sender_chain.ratchet_key_pair.public_key
    lim = {"max_forward_jumps": 100, "max_message_keys": 4, "max_receiver_chains": 5}
    _, bob = bob.receive(key, 3, rng, **lim)  # skips 0, 1, 2
    _, bob = bob.receive(key, 6, rng, **lim)  # skips 4, 5 -> drops 0
    assert list(bob.receiver_chains[0].skipped) == [1, 2, 4, 5]
    assert bob.skipped_key_count == 4


def test_receiver_chains_are_capped_oldest_dropped() -> None:
    alice, bob, rng = _pair()
    lim = {"max_forward_jumps": 100, "max_message_keys": 10, "max_receiver_chains": 2}
    keys = []
    for _ in range(4):
        seed, counter, alice_next = alice.send()
        key = alice.sender_chain.ratchet_key_pair.public_key
        keys.append(key)
        got, bob = bob.receive(key, counter, rng, **lim)
        assert got == seed
        alice = alice_next
        _, counter, bob_next = bob.send()
        _, alice = alice.receive(bob.sender_chain.ratchet_key_pair.public_key, counter, rng, **lim)
        bob = bob_next
    assert [c.ratchet_key for c in bob.receiver_chains] == keys[-2:]
    assert bob.find_receiver_chain(keys[0]) is None


def test_previous_counter_is_the_last_sent_index() -> None:
    alice, bob, rng = _pair()
    key = alice.sender_chain.ratchet_key_pair.public_key
    for i in range(3):
        _, counter, alice = alice.send()
        assert counter == i
    _, bob = bob.receive(key, 0, rng, **LIMITS)  # Bob ratchets: new sending key
    _, counter, _ = bob.send()
    bob_key = bob.sender_chain.ratchet_key_pair.public_key
    _, alice2 = alice.receive(bob_key, counter, rng, **LIMITS)
    assert alice2.previous_counter == 2
    assert alice2.sender_chain.index == 0
    assert alice2.sender_chain.ratchet_key_pair.public_key != key


def test_reprs_show_no_keys() -> None:
    alice, _, _ = _pair()
    text = repr(alice) + repr(alice.sender_chain) + repr(alice.receiver_chains[0])
    assert alice.root_key.hex() not in text and alice.sender_chain.chain_key.hex() not in text
    assert "RatchetState" in text
    assert hmac_sha256(b"k", b"d") != b""
