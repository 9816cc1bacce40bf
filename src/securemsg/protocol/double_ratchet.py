"""The Double Ratchet's key schedule and chains, exactly as libsignal 0.103.0 computes them.

Theory of operation
-------------------
This module knows chain keys and nothing above them: not identities, not SPQR, not records
(libsignal ``ratchet/keys.rs`` + ``double_ratchet.rs``).

* **Root step** (:func:`root_step`): ``HKDF(salt = root, ikm = DH(our, their),
  info = "WhisperRatchet", 64)`` -> new root key ``[0:32]``, new chain key ``[32:64]``.
* **Chain step** (:func:`chain_step`): message seed ``HMAC(ck, 0x01)``, next chain key
  ``HMAC(ck, 0x02)``.
* **Message keys** (:func:`message_keys`): ``HKDF(salt = SPQR key or none, ikm = seed,
  info = "WhisperMessageKeys", 80)`` -> cipher key, MAC key, IV. Because the SPQR key is only
  known when a message arrives, skipped keys are kept as *seeds*.

:class:`RatchetState` is the ratchet part of one session: root key, our sender chain, up to
``max_receiver_chains`` receiver chains (oldest first) and ``previous_counter``. It is a value:
:meth:`RatchetState.send` and :meth:`RatchetState.receive` never modify ``self``; they return
the advanced state in *new* objects that share every unchanged part (chains, skipped-key maps)
with the old one. The caller commits the new state only once the message authenticated
(compute, then commit), so a failed decrypt leaves the old objects valid and unchanged.

Skipped keys of a receiver chain live in a ``dict`` ``index -> seed`` in insertion order
(oldest first); at most ``max_message_keys`` are kept and the oldest is dropped first, which is
libsignal's "newest inserted at the front, pop the back". A shared dict is never mutated: a
change copies it.

Hazardous: these functions produce raw keys; only :mod:`securemsg.protocol.session_state` should
call them.
"""

from __future__ import annotations

from collections.abc import Mapping

from securemsg.crypto.curve25519 import KeyPair, PrivateKey, PublicKey
from securemsg.crypto.primitives import hkdf_sha256, hmac_sha256, hmac_sha256_pair
from securemsg.crypto.rng import Rng
from securemsg.errors import DuplicateMessageError, MessageGapTooLargeError

__all__ = [
    "MESSAGE_KEYS_INFO",
    "RATCHET_INFO",
    "RatchetState",
    "ReceiverChain",
    "SenderChain",
    "chain_step",
    "message_keys",
    "root_step",
]

RATCHET_INFO = b"WhisperRatchet"
MESSAGE_KEYS_INFO = b"WhisperMessageKeys"
_MESSAGE_KEY_SEED = b"\x01"
_CHAIN_KEY_SEED = b"\x02"
_EMPTY: Mapping[int, bytes] = {}


def root_step(
    root_key: bytes, their_ratchet_key: PublicKey, our_private: PrivateKey
) -> tuple[bytes, bytes]:
    """One DH ratchet half-step: ``(new_root_key, new_chain_key)`` (chain index 0).

    Raises:
        InvalidKeyError: the Diffie-Hellman result is all zeros.
    """
    okm = hkdf_sha256(our_private.agree(their_ratchet_key), root_key, RATCHET_INFO, 64)
    return okm[:32], okm[32:]


def chain_step(chain_key: bytes) -> tuple[bytes, bytes]:
    """Return ``(message_seed, next_chain_key)`` for a chain key."""
    return hmac_sha256_pair(chain_key, _MESSAGE_KEY_SEED, _CHAIN_KEY_SEED)


def message_keys(seed: bytes, spqr_key: bytes | None) -> tuple[bytes, bytes, bytes]:
    """Expand a message seed into ``(cipher_key(32), mac_key(32), iv(16))``.

    ``spqr_key`` (the SPQR message key for this message) is the HKDF salt; None means no salt.
    """
    okm = hkdf_sha256(seed, spqr_key, MESSAGE_KEYS_INFO, 80)
    return okm[:32], okm[32:64], okm[64:]


class SenderChain:
    """Our sending chain: our current ratchet key pair and the next chain key to use."""

    __slots__ = ("chain_key", "index", "ratchet_key_pair")

    def __init__(self, ratchet_key_pair: KeyPair, chain_key: bytes, index: int) -> None:
        self.ratchet_key_pair = ratchet_key_pair
        self.chain_key = chain_key
        self.index = index

    def __repr__(self) -> str:
        return "SenderChain(index=" + str(self.index) + ")"


class ReceiverChain:
    """A receiving chain for one of the peer's ratchet keys, with its skipped-key seeds."""

    __slots__ = ("chain_key", "index", "ratchet_key", "skipped")

    def __init__(
        self,
        ratchet_key: PublicKey,
        chain_key: bytes,
        index: int,
        skipped: Mapping[int, bytes] = _EMPTY,
    ) -> None:
        self.ratchet_key = ratchet_key
        self.chain_key = chain_key
        self.index = index
        #: index -> seed, oldest first. Never mutated once the chain is built.
        self.skipped = skipped

    def __repr__(self) -> str:
        return (
            "ReceiverChain(index=" + str(self.index) + ", skipped=" + str(len(self.skipped)) + ")"
        )


class RatchetState:
    """Root key, sender chain, receiver chains (oldest first) and previous counter.

    A value: :meth:`send` and :meth:`receive` return new states and leave ``self`` untouched.
    """

    __slots__ = ("previous_counter", "receiver_chains", "root_key", "sender_chain")

    def __init__(
        self,
        root_key: bytes,
        sender_chain: SenderChain,
        receiver_chains: tuple[ReceiverChain, ...],
        previous_counter: int,
    ) -> None:
        self.root_key = root_key
        self.sender_chain = sender_chain
        self.receiver_chains = receiver_chains
        self.previous_counter = previous_counter

    def __repr__(self) -> str:
        return (
            "RatchetState(sender_index="
            + str(self.sender_chain.index)
            + ", receiver_chains="
            + str(len(self.receiver_chains))
            + ", previous_counter="
            + str(self.previous_counter)
            + ")"
        )

    @property
    def skipped_key_count(self) -> int:
        """Total skipped-key seeds held over all receiver chains (for tests and limits)."""
        return sum(len(c.skipped) for c in self.receiver_chains)

    def find_receiver_chain(self, their_ratchet_key: PublicKey) -> ReceiverChain | None:
        """The receiver chain for ``their_ratchet_key``, or None."""
        raw = their_ratchet_key.raw
        for chain in self.receiver_chains:
            if chain.ratchet_key.raw == raw:
                return chain
        return None

    # ------------------------------------------------------------------------------- sending

    def send(self) -> tuple[bytes, int, RatchetState]:
        """Take the next sending key: ``(message_seed, counter, advanced_state)``."""
        sc = self.sender_chain
        seed, next_ck = hmac_sha256_pair(sc.chain_key, _MESSAGE_KEY_SEED, _CHAIN_KEY_SEED)
        new_sc = SenderChain(sc.ratchet_key_pair, next_ck, sc.index + 1)
        return (
            seed,
            sc.index,
            RatchetState(self.root_key, new_sc, self.receiver_chains, self.previous_counter),
        )

    # ----------------------------------------------------------------------------- receiving

    def receive(
        self,
        their_ratchet_key: PublicKey,
        counter: int,
        rng: Rng,
        *,
        max_forward_jumps: int | None,
        max_message_keys: int,
        max_receiver_chains: int,
    ) -> tuple[bytes, RatchetState]:
        """Find (or ratchet to) the receiver chain and take the key for ``counter``.

        Mirrors libsignal's ``ensure_receiver_chain`` + ``consume_message_key``: a new peer
        ratchet key causes a DH ratchet step (receive half, fresh sender key from ``rng``, send
        half); a counter in the past takes a stored skipped seed; a counter ahead advances the
        chain, keeping the skipped seeds.

        Args:
            their_ratchet_key: the ratchet key of the message.
            counter: the message's counter.
            rng: randomness for a new sender ratchet key (used only on a DH ratchet step).
            max_forward_jumps: how far ahead ``counter`` may be; None means unlimited.
            max_message_keys: skipped seeds kept per receiver chain.
            max_receiver_chains: receiver chains kept.

        Returns:
            ``(message_seed, advanced_state)``; ``self`` is unchanged.

        Raises:
            DuplicateMessageError: ``counter`` is in the past and its key was used (or dropped).
            MessageGapTooLargeError: ``counter`` is more than ``max_forward_jumps`` ahead.
            InvalidKeyError: the DH with the peer's ratchet key is all zeros.
        """
        chains = self.receiver_chains
        pos = len(chains) - 1  # the newest chain is by far the most likely
        if pos < 0 or chains[pos].ratchet_key != their_ratchet_key:
            pos = -1
            for i, chain in enumerate(chains):
                if chain.ratchet_key == their_ratchet_key:
                    pos = i
                    break

        if pos >= 0:
            chain = chains[pos]
            root_key = self.root_key
            sender_chain = self.sender_chain
            previous_counter = self.previous_counter
        else:
            # DH ratchet step (receiving half, then a new sending chain).
            sc = self.sender_chain
            root1, recv_ck = root_step(
                self.root_key, their_ratchet_key, sc.ratchet_key_pair.private_key
            )
            new_pair = KeyPair.generate(rng)
            root_key, send_ck = root_step(root1, their_ratchet_key, new_pair.private_key)
            sender_chain = SenderChain(new_pair, send_ck, 0)
            previous_counter = sc.index - 1 if sc.index > 0 else 0
            chain = ReceiverChain(their_ratchet_key, recv_ck, 0)
            chains = (*chains, chain)
            if len(chains) > max_receiver_chains:
                chains = chains[len(chains) - max_receiver_chains :]
            pos = len(chains) - 1

        index = chain.index
        if counter < index:
            seed = chain.skipped.get(counter)
            if seed is None:
                raise DuplicateMessageError("message key already used", counter)
            skipped = dict(chain.skipped)
            del skipped[counter]
            new_chain = ReceiverChain(chain.ratchet_key, chain.chain_key, index, skipped)
        else:
            jump = counter - index
            if max_forward_jumps is not None and jump > max_forward_jumps:
                raise MessageGapTooLargeError("message counter too far ahead", jump)
            ck = chain.chain_key
            if jump == 0:
                seed, next_ck = hmac_sha256_pair(ck, _MESSAGE_KEY_SEED, _CHAIN_KEY_SEED)
                new_chain = ReceiverChain(chain.ratchet_key, next_ck, index + 1, chain.skipped)
            else:
                skipped = dict(chain.skipped)
                first_kept = counter - max_message_keys  # older skipped seeds would be dropped
                i = index
                while i < first_kept:  # too old to keep: only the chain advances
                    ck = hmac_sha256(ck, _CHAIN_KEY_SEED)
                    i += 1
                while i < counter:
                    skipped[i], ck = hmac_sha256_pair(ck, _MESSAGE_KEY_SEED, _CHAIN_KEY_SEED)
                    i += 1
                excess = len(skipped) - max_message_keys
                if excess > 0:
                    for old in list(skipped)[:excess]:
                        del skipped[old]
                seed, next_ck = hmac_sha256_pair(ck, _MESSAGE_KEY_SEED, _CHAIN_KEY_SEED)
                new_chain = ReceiverChain(chain.ratchet_key, next_ck, counter + 1, skipped)

        if pos == len(chains) - 1:
            new_chains = (*chains[:pos], new_chain)
        else:
            new_chains = (*chains[:pos], new_chain, *chains[pos + 1 :])
        return seed, RatchetState(root_key, sender_chain, new_chains, previous_counter)
