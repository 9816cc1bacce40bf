"""Named limits of the protocol, each with the reason it exists.

Values match libsignal 0.103.0 (``rust/protocol/src/consts.rs``) unless said otherwise. The
:class:`Limits` value carries them so tests can shrink them; protocol code takes a ``Limits``
(default :data:`DEFAULT_LIMITS`) instead of reading the module constants directly.
"""

from __future__ import annotations

from dataclasses import dataclass

#: How far ahead of a receiving chain a message counter may be. Bounds the work (and the
#: skipped keys) one forged counter can cause.
MAX_FORWARD_JUMPS = 25_000
#: Skipped message keys kept per receiving chain (newest first; the oldest is dropped).
#: Bounds storage while still allowing out-of-order delivery.
MAX_MESSAGE_KEYS = 2_000
#: Receiving chains kept per session (one per peer ratchet key seen recently).
MAX_RECEIVER_CHAINS = 5
#: Archived sessions kept per address, newest first, so late messages of an old session
#: still decrypt after a reset.
ARCHIVED_STATES_MAX_LENGTH = 40
#: Sender-key states kept per (sender, distribution id).
MAX_SENDER_KEY_STATES = 5
#: A session whose first message was never answered is refused for sending after this long
#: (seconds): its one-time prekeys are long gone and the peer probably never got it.
MAX_UNACKNOWLEDGED_SESSION_AGE = 30 * 24 * 60 * 60
#: SPQR chain: how far a message's SPQR index may jump ahead (libsignal ``spqr_chain_params``).
SPQR_MAX_JUMP = 25_000
#: SPQR chain: out-of-order keys kept per epoch direction.
SPQR_MAX_OOO_KEYS = 2_000
#: Largest plaintext accepted by ``message_encrypt`` (bytes). Not a libsignal limit: ours, so
#: that one call cannot exhaust memory. 64 MiB is far above any real message.
MAX_PLAINTEXT_LENGTH = 64 * 1024 * 1024
#: Valid device ids (libsignal ``MAX_VALID_DEVICE_ID``).
MAX_DEVICE_ID = 127
#: Registration ids are 14-bit values (sealed sender v2 packs them with a flag bit).
REGISTRATION_ID_MASK = 0x3FFF


@dataclass(frozen=True, slots=True)
class Limits:
    """The tunable limits, as one frozen value (tests pass smaller ones)."""

    max_forward_jumps: int = MAX_FORWARD_JUMPS
    max_message_keys: int = MAX_MESSAGE_KEYS
    max_receiver_chains: int = MAX_RECEIVER_CHAINS
    archived_states_max_length: int = ARCHIVED_STATES_MAX_LENGTH
    max_sender_key_states: int = MAX_SENDER_KEY_STATES
    max_unacknowledged_session_age: int = MAX_UNACKNOWLEDGED_SESSION_AGE
    spqr_max_jump: int = SPQR_MAX_JUMP
    spqr_max_ooo_keys: int = SPQR_MAX_OOO_KEYS


DEFAULT_LIMITS = Limits()
