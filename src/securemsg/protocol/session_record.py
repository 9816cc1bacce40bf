"""Session records: which session of an address to use ("Sesame"), as libsignal 0.103.0 does it.

Theory of operation
-------------------
The top of the three layers of 1:1 messaging (libsignal ``state/session.rs`` ``SessionRecord``
and ``session_management.rs``). A :class:`SessionRecord` is everything we remember about one
remote (name, device): a *current* session and up to ``archived_states_max_length`` (40)
archived ones, newest first. This layer knows records and session identities
(version, ``alice_base_key``), never chain keys: it asks
:class:`~securemsg.protocol.session_state.SessionState` to decrypt and keeps what worked.

* Archived sessions are kept as their serialized bytes and decoded only when a message needs
  them (:meth:`SessionRecord.previous_states`). Corrupt archived bytes are skipped, as libsignal
  does.
* :meth:`SessionRecord.promote_state` makes a new session current and archives the old one
  (its unacknowledged PreKey data cleared).
* :meth:`SessionRecord.decrypt` tries the current session, then (Whisper messages only) each
  archived one; an archived session that works is promoted. A duplicate stops the search.
* :meth:`SessionRecord.promote_matching_session` finds the session a repeated PreKey message
  belongs to by ``(version, alice_base_key)``.

Records are values: every operation returns a new record and leaves ``self`` unchanged, so a
store may keep the object it was given, and a failed operation changes nothing.
``to_bytes()`` is computed once per record and cached.
"""

from __future__ import annotations

from collections.abc import Iterator

from securemsg.crypto.primitives import constant_time_eq
from securemsg.crypto.rng import Rng
from securemsg.errors import (
    DecodeError,
    DuplicateMessageError,
    InvalidMessageError,
    MessageGapTooLargeError,
    NoSessionError,
    PeerError,
)
from securemsg.limits import DEFAULT_LIMITS, Limits
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.session_state import SessionState
from securemsg.records.session_storage import (
    decode_record,
    decode_session,
    encode_record,
    encode_session,
)
from securemsg.wire.messages import SignalMessage

__all__ = ["SessionRecord"]


class SessionRecord:
    """Current session + up to 40 archived ones (bytes, newest first). Persisted: ``to_bytes()``.

    A value: methods return new records. ``SessionRecord()`` is a fresh, empty record.
    """

    __slots__ = ("_bytes", "_current", "_previous")

    def __init__(
        self, current: SessionState | None = None, previous: tuple[bytes, ...] = ()
    ) -> None:
        self._current = current
        self._previous = previous
        self._bytes: bytes | None = None

    def __repr__(self) -> str:
        return (
            "SessionRecord(current="
            + ("yes" if self._current is not None else "none")
            + ", archived="
            + str(len(self._previous))
            + ")"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SessionRecord):
            return NotImplemented
        return self is other or self.to_bytes() == other.to_bytes()

    __hash__ = None  # type: ignore[assignment]

    # ------------------------------------------------------------------------------- access

    @property
    def current(self) -> SessionState | None:
        """The current session, or None for a fresh record."""
        return self._current

    @property
    def previous_sessions(self) -> tuple[bytes, ...]:
        """The archived sessions' serialized bytes, newest first."""
        return self._previous

    def previous_states(self) -> Iterator[tuple[int, SessionState | None]]:
        """Decode the archived sessions lazily: ``(index, state or None if corrupt)``."""
        for i, data in enumerate(self._previous):
            try:
                yield i, SessionState.from_stored(decode_session(data))
            except DecodeError:
                yield i, None

    def is_empty(self) -> bool:
        """True if there is neither a current nor an archived session."""
        return self._current is None and not self._previous

    # ------------------------------------------------------------------------------- codec

    def to_bytes(self) -> bytes:
        """The stored form (``proto/session.proto`` ``RecordStructure``)."""
        b = self._bytes
        if b is None:
            cur = self._current
            b = encode_record(None if cur is None else cur.to_stored(), self._previous)
            self._bytes = b
        return b

    @classmethod
    def from_bytes(cls, data: bytes) -> SessionRecord:
        """Parse a stored record. The current session is checked now, archived ones on use.

        Raises:
            DecodeError: corrupt bytes (stores turn this into StorageError).
            UnsupportedVersionError: an unknown storage layout version.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise DecodeError("session record must be bytes")
        data = bytes(data)
        stored = decode_record(data)
        current = (
            None
            if stored.current_session is None
            else SessionState.from_stored(stored.current_session)
        )
        record = cls(current, tuple(stored.previous_sessions))
        record._bytes = data
        return record

    # ---------------------------------------------------------------------------- changes

    def with_current(self, state: SessionState) -> SessionRecord:
        """The same archive with ``state`` as the current session (no archiving)."""
        return SessionRecord(state, self._previous)

    def _archived(self, limits: Limits) -> tuple[bytes, ...]:
        cur = self._current
        if cur is None:
            return self._previous
        keep = max(limits.archived_states_max_length - 1, 0)
        data = encode_session(cur.with_pending(None).to_stored())
        return (data, *self._previous[:keep])

    def archive_current_state(self, limits: Limits = DEFAULT_LIMITS) -> SessionRecord:
        """Move the current session into the archive (newest first); no current session after."""
        if self._current is None:
            return self
        return SessionRecord(None, self._archived(limits))

    def promote_state(self, state: SessionState, limits: Limits = DEFAULT_LIMITS) -> SessionRecord:
        """Make ``state`` current, archiving the current session (its pending data cleared)."""
        return SessionRecord(state, self._archived(limits))

    def _promote_old(self, index: int, state: SessionState, limits: Limits) -> SessionRecord:
        rest = SessionRecord(self._current, self._previous[:index] + self._previous[index + 1 :])
        return rest.promote_state(state, limits)

    def promote_matching_session(
        self, version: int, alice_base_key: bytes, limits: Limits = DEFAULT_LIMITS
    ) -> SessionRecord | None:
        """Find the session a PreKey message with this base key belongs to.

        Returns:
            ``self`` if the current session matches, a new record with the matching archived
            session promoted, or None if no session matches.
        """
        cur = self._current
        if (
            cur is not None
            and cur.version == version
            and constant_time_eq(cur.alice_base_key, alice_base_key)
        ):
            return self
        for i, state in self.previous_states():
            if (
                state is not None
                and state.version == version
                and constant_time_eq(state.alice_base_key, alice_base_key)
            ):
                return self._promote_old(i, state, limits)
        return None

    # ---------------------------------------------------------------------------- decrypt

    def decrypt(
        self,
        message: SignalMessage,
        rng: Rng,
        *,
        remote_address: ProtocolAddress,
        local_address: ProtocolAddress,
        prekey: bool = False,
        limits: Limits = DEFAULT_LIMITS,
    ) -> tuple[SessionRecord, bytes]:
        """Decrypt with the current session, else (Whisper only) with an archived one.

        Args:
            message: the SignalMessage (for a PreKey message: the embedded one).
            rng: randomness for a DH ratchet step.
            remote_address: the sender.
            local_address: us (address binding and self-session checks).
            prekey: True for the message inside a PreKeySignalMessage: only the current session
                is tried (it was just created or matched).
            limits: the limits to apply.

        Returns:
            ``(new_record, plaintext)``; an archived session that worked is now current.

        Raises:
            NoSessionError: the record holds no session at all.
            DuplicateMessageError: the matching session already used that message key.
            MessageGapTooLargeError: the current session refused a too-large counter jump and
                no other session could decrypt.
            InvalidMessageError: no session could decrypt the message.
        """
        if self.is_empty():
            raise NoSessionError("no session to decrypt with")
        version = message.message_version
        current_error: PeerError | None = None
        cur = self._current
        if cur is not None and cur.version == version:
            try:
                new_state, plaintext = cur.decrypt(
                    message,
                    rng,
                    remote_address=remote_address,
                    local_address=local_address,
                    limits=limits,
                )
            except DuplicateMessageError:
                raise
            except PeerError as exc:
                if prekey:
                    raise InvalidMessageError("decryption failed") from None
                current_error = exc
            else:
                return SessionRecord(new_state, self._previous), plaintext
        if prekey:
            raise InvalidMessageError("decryption failed")
        for i, state in self.previous_states():
            if state is None or state.version != version:
                continue
            try:
                new_state, plaintext = state.decrypt(
                    message,
                    rng,
                    remote_address=remote_address,
                    local_address=local_address,
                    limits=limits,
                )
            except DuplicateMessageError:
                raise
            except PeerError:
                continue
            return self._promote_old(i, new_state, limits), plaintext
        if isinstance(current_error, MessageGapTooLargeError):
            raise MessageGapTooLargeError(str(current_error), current_error.gap) from None
        raise InvalidMessageError("decryption failed")
