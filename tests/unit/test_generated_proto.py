"""The generated protobuf modules in src/securemsg/_proto/ match proto/*.proto."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_generated_modules_are_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_wire_field_numbers_match_libsignal() -> None:
    from securemsg._proto import fingerprint_pb2, sealed_sender_pb2, wire_pb2

    def numbers(message: object) -> dict[str, int]:
        return {f.name: f.number for f in message.DESCRIPTOR.fields}  # type: ignore[attr-defined]

    assert wire_pb2.DESCRIPTOR.package == "signal.proto.wire"
    assert numbers(wire_pb2.SignalMessage) == {
        "ratchet_key": 1,
        "counter": 2,
        "previous_counter": 3,
        "ciphertext": 4,
        "pq_ratchet": 5,
        "addresses": 6,
    }
    assert numbers(wire_pb2.PreKeySignalMessage) == {
        "registration_id": 5,
        "pre_key_id": 1,
        "signed_pre_key_id": 6,
        "kyber_pre_key_id": 7,
        "kyber_ciphertext": 8,
        "base_key": 2,
        "identity_key": 3,
        "message": 4,
    }
    assert numbers(wire_pb2.SenderKeyMessage) == {
        "distribution_uuid": 1,
        "chain_id": 2,
        "iteration": 3,
        "ciphertext": 4,
    }
    assert numbers(wire_pb2.SenderKeyDistributionMessage) == {
        "distribution_uuid": 1,
        "chain_id": 2,
        "iteration": 3,
        "chain_key": 4,
        "signing_key": 5,
    }
    ss = sealed_sender_pb2
    assert ss.DESCRIPTOR.package == "signal.proto.sealed_sender"
    assert numbers(ss.ServerCertificate) == {"certificate": 1, "signature": 2}
    assert numbers(ss.ServerCertificate.Certificate) == {"id": 1, "key": 2}
    assert numbers(ss.SenderCertificate.Certificate) == {
        "senderE164": 1,
        "uuidString": 6,
        "uuidBytes": 7,
        "senderDevice": 2,
        "expires": 3,
        "identityKey": 4,
        "certificate": 5,
        "id": 8,
    }
    usm = ss.UnidentifiedSenderMessage
    assert numbers(usm) == {"ephemeralPublic": 1, "encryptedStatic": 2, "encryptedMessage": 3}
    assert numbers(usm.Message) == {
        "type": 1,
        "senderCertificate": 2,
        "content": 3,
        "contentHint": 4,
        "groupId": 5,
    }
    assert dict(usm.Message.Type.items()) == {
        "PREKEY_MESSAGE": 1,
        "MESSAGE": 2,
        "SENDERKEY_MESSAGE": 7,
        "PLAINTEXT_CONTENT": 8,
    }
    assert dict(usm.Message.ContentHint.items()) == {"RESENDABLE": 1, "IMPLICIT": 2}
    assert fingerprint_pb2.DESCRIPTOR.package == "signal.proto.fingerprint"
    assert numbers(fingerprint_pb2.LogicalFingerprint) == {"content": 1}
    assert numbers(fingerprint_pb2.CombinedFingerprints) == {
        "version": 1,
        "local_fingerprint": 2,
        "remote_fingerprint": 3,
    }
