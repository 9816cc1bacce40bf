"""Deliberately broken interop peers: the securemsg peer with one safety check removed.

Run as ``python broken_peers.py KIND``. Each kind breaks exactly one property that a scenario
targets (see :data:`TARGETS`); the tests in test_kit_broken_peers.py prove the scenario
catches it while the broken peer still passes plain set-up.
"""

from __future__ import annotations

import sys
from typing import Any

from securemsg import (
    DuplicateMessageError,
    Fingerprint,
    IdentityKey,
    PeerError,
    ProtocolAddress,
    PublicKey,
    SenderCertificate,
    UntrustedIdentityError,
)
from securemsg.interop.peer import SecuremsgPeer, _Party, main

# kind -> the scenario that must catch it
TARGETS = {
    "accept_tampered": "tamper",
    "accept_duplicate": "duplicate",
    "mutate_on_failure": "tamper",
    "wrong_fingerprint": "fingerprint",
    "accept_any_certificate": "sealed_v1",
    "trust_any_identity": "identity_change",
    "forget_on_restart": "restart",
}


class AcceptTampered(SecuremsgPeer):
    """Skips the MAC check in effect: a message that fails authentication 'decrypts'."""

    def decrypt_message(
        self, party: _Party, remote: ProtocolAddress, kind: int, body: bytes
    ) -> bytes:
        try:
            return super().decrypt_message(party, remote, kind, body)
        except PeerError as exc:
            if isinstance(exc, DuplicateMessageError):
                raise
            return b""


class AcceptDuplicate(SecuremsgPeer):
    """Answers a replayed message with its plaintext again."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.seen: dict[bytes, bytes] = {}

    def decrypt_message(
        self, party: _Party, remote: ProtocolAddress, kind: int, body: bytes
    ) -> bytes:
        try:
            plaintext = super().decrypt_message(party, remote, kind, body)
        except DuplicateMessageError:
            return self.seen[body]
        self.seen[body] = plaintext
        return plaintext


class MutateOnFailure(SecuremsgPeer):
    """Refuses bad messages, but archives the session first (state changes on failure)."""

    def decrypt_message(
        self, party: _Party, remote: ProtocolAddress, kind: int, body: bytes
    ) -> bytes:
        try:
            return super().decrypt_message(party, remote, kind, body)
        except PeerError:
            record = party.store.load_session(remote)
            if record is not None:
                party.store.store_session(remote, record.archive_current_state())
            raise


class WrongFingerprint(SecuremsgPeer):
    """Hashes one iteration too many."""

    def compute_fingerprint(self, args: dict[str, Any]) -> Fingerprint:
        return super().compute_fingerprint(dict(args, iterations=int(args["iterations"]) + 1))


class AcceptAnyCertificate(SecuremsgPeer):
    """Opens sealed messages without validating the sender certificate."""

    def validate_certificate(self, cert: SenderCertificate, root: PublicKey, now: int) -> None:
        return None


class TrustAnyIdentity(SecuremsgPeer):
    """Trusts whatever identity a bundle carries (no trust on first use)."""

    def op_process_bundle(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            return super().op_process_bundle(args)
        except UntrustedIdentityError:
            party = self.party(args)
            remote = args["remote"]
            address = ProtocolAddress(remote["name"], remote["device"])
            import base64

            key = IdentityKey.from_bytes(base64.b64decode(args["bundle"]["identity_key"]))
            party.store.save_identity(address, key)
            return super().op_process_bundle(args)


class ForgetOnRestart(SecuremsgPeer):
    """Restarts without its stored sessions: every party comes back as a fresh install."""

    def op_restart(self, args: dict[str, Any]) -> dict[str, Any]:
        for label in list(self.parties):
            self.op_reset_identity({"party": label})
        return {}


KINDS: dict[str, type[SecuremsgPeer]] = {
    "accept_tampered": AcceptTampered,
    "accept_duplicate": AcceptDuplicate,
    "mutate_on_failure": MutateOnFailure,
    "wrong_fingerprint": WrongFingerprint,
    "accept_any_certificate": AcceptAnyCertificate,
    "trust_any_identity": TrustAnyIdentity,
    "forget_on_restart": ForgetOnRestart,
}


if __name__ == "__main__":
    main(KINDS[sys.argv[1]])
