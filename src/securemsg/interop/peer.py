"""The securemsg interop peer: securemsg's public API behind ``securemsg-interop/1``.

Run it as ``python -m securemsg.interop.peer`` (or ``securemsg interop peer``); it reads one
JSON request per line on stdin and answers one line on stdout (docs/interop-protocol.md).

Theory of operation: every party is a :class:`~securemsg.SqliteProtocolStore` in its own
file under the state directory (``SECUREMSG_INTEROP_STATE_DIR``, else a temporary one), and
``parties.json`` there names them, so ``restart`` closes every store and opens them again from
disk. Only ``from securemsg import ...`` names are used: the peer is what an application
built on the public API can do. Typed errors map to the protocol's kinds:
:class:`~securemsg.UntrustedIdentityError` -> ``untrusted_identity``; hostile or broken
input (:class:`~securemsg.PeerError` and its tree, :class:`~securemsg.NoSessionError`) ->
``refused``; everything else -> ``internal``. :class:`SecuremsgPeer` is a class so that tests can
derive deliberately broken peers from it.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from securemsg import (
    CiphertextMessageType,
    ContentHint,
    Fingerprint,
    IdentityKey,
    IdentityKeyPair,
    KeyPair,
    KyberPreKeyRecord,
    KyberPublicKey,
    NoSessionError,
    PeerError,
    PreKeyBundle,
    PreKeyRecord,
    ProtocolAddress,
    PublicKey,
    SealedSenderV2SentMessage,
    SecureMsgError,
    SenderCertificate,
    ServerCertificate,
    SignedPreKeyRecord,
    SqliteProtocolStore,
    SystemRng,
    UnidentifiedSenderMessageContent,
    UntrustedIdentityError,
    __version__,
    create_sender_key_distribution_message,
    generate_registration_id,
    group_decrypt,
    group_encrypt,
    message_decrypt,
    message_encrypt,
    process_prekey_bundle,
    process_sender_key_distribution_message,
    sealed_sender_decrypt_to_usmc,
    sealed_sender_encrypt,
    sealed_sender_multi_recipient_encrypt,
)

__all__ = [
    "CAPABILITIES",
    "MAX_REQUEST_LINE",
    "PROTOCOL",
    "BadRequest",
    "Refused",
    "SecuremsgPeer",
    "main",
]

PROTOCOL = "securemsg-interop/1"
CAPABILITIES = (
    "session",
    "encrypt_many",
    "snapshot",
    "archive",
    "restart",
    "identity_change",
    "sealed_v1",
    "sealed_v2",
    "groups",
    "fingerprint",
)
_MAX_ENCRYPT_MANY = 100_000
#: Longest request line read (characters): the protocol's line bound, as the driver's
#: ``MAX_LINE`` (docs/interop-protocol.md); a longer one is refused, never held whole.
MAX_REQUEST_LINE = 64 * 1024 * 1024


class BadRequest(Exception):
    """The request itself is wrong (answered with kind ``internal``)."""


class Refused(Exception):
    """The peer refuses the input (answered with kind ``refused``)."""


@dataclass
class _Party:
    label: str
    file: str
    address: ProtocolAddress
    store: SqliteProtocolStore


@dataclass
class _Issuer:
    trust_root: KeyPair
    server_key: KeyPair
    server_certificate: ServerCertificate


def _now() -> int:
    return int(time.time() * 1000)


def _bytes(args: dict[str, Any], key: str) -> bytes:
    value = args.get(key)
    if not isinstance(value, str):
        raise BadRequest(f"missing base64 argument {key!r}")
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise BadRequest(f"{key!r} is not valid base64") from None


def _int(args: dict[str, Any], key: str, default: int | None = None) -> int:
    value = args.get(key)
    if value is None and default is not None:
        return default
    if type(value) is not int:
        raise BadRequest(f"missing integer argument {key!r}")
    return value


def _str(args: dict[str, Any], key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str):
        raise BadRequest(f"missing string argument {key!r}")
    return value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _address(value: object) -> ProtocolAddress:
    if not isinstance(value, dict):
        raise BadRequest("an address is an object {name, device}")
    return ProtocolAddress(_str(value, "name"), _int(value, "device"))


class SecuremsgPeer:
    """The peer's state and ops (``op_<name>`` methods take the request, return the answer).

    Args:
        state_dir: where party stores live.
    """

    implementation_name = "securemsg"

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.rng = SystemRng()
        self.parties: dict[str, _Party] = {}
        self.issuers: dict[str, _Issuer] = {}
        self._files = 0

    # -- the loop ----------------------------------------------------------------------------

    def handle(self, request: object) -> dict[str, Any]:
        """Answer one decoded request (never raises)."""
        if not isinstance(request, dict):
            return {"id": None, "ok": False, "error": _error("internal", "not a JSON object")}
        rid = request.get("id")
        op = request.get("op")
        method: Callable[[dict[str, Any]], dict[str, Any]] | None = (
            getattr(self, f"op_{op}", None) if isinstance(op, str) else None
        )
        if method is None:
            return {"id": rid, "ok": False, "error": _error("unsupported", f"no op {op!r}")}
        try:
            result = method(request)
        except UntrustedIdentityError as exc:
            return {"id": rid, "ok": False, "error": _error("untrusted_identity", str(exc))}
        except (PeerError, NoSessionError, Refused) as exc:
            return {
                "id": rid,
                "ok": False,
                "error": _error("refused", f"{type(exc).__name__}: {exc}"),
            }
        except (BadRequest, SecureMsgError, ValueError, KeyError) as exc:
            return {
                "id": rid,
                "ok": False,
                "error": _error("internal", f"{type(exc).__name__}: {exc}"),
            }
        return {"id": rid, "ok": True, **result}

    def serve(self, stdin: IO[str], stdout: IO[str]) -> None:
        """Answer requests until stdin closes. A line longer than the protocol's
        :data:`MAX_REQUEST_LINE` is refused whole (read in bounded pieces,
        never held), as is JSON nested too deep to parse."""
        while True:
            line = stdin.readline(MAX_REQUEST_LINE + 1)
            if not line:
                break
            if len(line) > MAX_REQUEST_LINE and not line.endswith("\n"):
                while line and not line.endswith("\n"):  # skip the rest of the line
                    line = stdin.readline(MAX_REQUEST_LINE + 1)
                answer = {"id": None, "ok": False, "error": _error("internal", "line too long")}
            elif not line.strip():
                continue
            else:
                try:
                    request = json.loads(line)
                except (ValueError, RecursionError):
                    answer = {"id": None, "ok": False, "error": _error("internal", "bad JSON")}
                else:
                    answer = self.handle(request)
            stdout.write(json.dumps(answer, separators=(",", ":")) + "\n")
            stdout.flush()
        self.close()

    def close(self) -> None:
        for party in self.parties.values():
            party.store.close()

    # -- helpers -----------------------------------------------------------------------------

    def party(self, args: dict[str, Any]) -> _Party:
        label = _str(args, "party")
        party = self.parties.get(label)
        if party is None:
            raise BadRequest(f"unknown party {label!r}")
        return party

    def _new_store(self, registration_id: int | None) -> tuple[str, SqliteProtocolStore, int]:
        self._files += 1
        name = f"party-{self._files}-{uuid.uuid4().hex[:8]}.db"
        reg = registration_id if registration_id is not None else generate_registration_id(self.rng)
        store = SqliteProtocolStore.open(
            self.state_dir / name, IdentityKeyPair.generate(self.rng), reg
        )
        return name, store, reg

    def _save_index(self) -> None:
        index = {
            label: {"file": p.file, "name": p.address.name, "device": p.address.device_id}
            for label, p in self.parties.items()
        }
        path = self.state_dir / "parties.json"
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(index))
        tmp.replace(path)

    def _identity(self, party: _Party) -> bytes:
        return party.store.get_identity_key_pair().identity_key.to_bytes()

    # -- ops: hello, parties, bundles --------------------------------------------------------

    def op_hello(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "protocol": PROTOCOL,
            "implementation": {"name": self.implementation_name, "version": __version__},
            "capabilities": list(CAPABILITIES),
        }

    def op_create_party(self, args: dict[str, Any]) -> dict[str, Any]:
        label = _str(args, "party")
        if label in self.parties:
            raise BadRequest(f"party {label!r} exists")
        address = ProtocolAddress(_str(args, "name"), _int(args, "device"))
        reg = args.get("registration_id")
        file, store, reg_id = self._new_store(reg if type(reg) is int else None)
        party = _Party(label, file, address, store)
        self.parties[label] = party
        self._save_index()
        return {"identity_key": _b64(self._identity(party)), "registration_id": reg_id}

    def op_create_bundle(self, args: dict[str, Any]) -> dict[str, Any]:
        party = self.party(args)
        store = party.store
        ikp = store.get_identity_key_pair()
        now = _now()
        signed = SignedPreKeyRecord.generate(_int(args, "signed_pre_key_id"), ikp, now, self.rng)
        kyber = KyberPreKeyRecord.generate(_int(args, "kyber_pre_key_id"), ikp, now, self.rng)
        pre_key_id = args.get("pre_key_id")
        one_time = None if pre_key_id is None else PreKeyRecord.generate(pre_key_id, self.rng)
        with store.transaction():
            store.save_signed_pre_key(signed.id, signed)
            store.save_kyber_pre_key(kyber.id, kyber)
            if one_time is not None:
                store.save_pre_key(one_time.id, one_time)
        return {
            "registration_id": store.get_local_registration_id(),
            "device": party.address.device_id,
            "pre_key_id": None if one_time is None else one_time.id,
            "pre_key_public": None if one_time is None else _b64(one_time.public_key.to_bytes()),
            "signed_pre_key_id": signed.id,
            "signed_pre_key_public": _b64(signed.public_key.to_bytes()),
            "signed_pre_key_signature": _b64(signed.signature),
            "kyber_pre_key_id": kyber.id,
            "kyber_pre_key_public": _b64(kyber.public_key.to_bytes()),
            "kyber_pre_key_signature": _b64(kyber.signature),
            "identity_key": _b64(ikp.identity_key.to_bytes()),
        }

    def op_process_bundle(self, args: dict[str, Any]) -> dict[str, Any]:
        party = self.party(args)
        b = args.get("bundle")
        if not isinstance(b, dict):
            raise BadRequest("bundle must be an object")
        pre_key_public = b.get("pre_key_public")
        try:
            bundle = PreKeyBundle(
                registration_id=_int(b, "registration_id"),
                device_id=_int(b, "device"),
                pre_key_id=b.get("pre_key_id"),
                pre_key_public=None
                if pre_key_public is None
                else PublicKey.from_bytes(_bytes(b, "pre_key_public")),
                signed_pre_key_id=_int(b, "signed_pre_key_id"),
                signed_pre_key_public=PublicKey.from_bytes(_bytes(b, "signed_pre_key_public")),
                signed_pre_key_signature=_bytes(b, "signed_pre_key_signature"),
                identity_key=IdentityKey.from_bytes(_bytes(b, "identity_key")),
                kyber_pre_key_id=_int(b, "kyber_pre_key_id"),
                kyber_pre_key_public=KyberPublicKey.from_bytes(_bytes(b, "kyber_pre_key_public")),
                kyber_pre_key_signature=_bytes(b, "kyber_pre_key_signature"),
            )
        except SecureMsgError as exc:
            raise Refused(str(exc)) from None
        process_prekey_bundle(
            bundle,
            _address(args.get("remote")),
            party.store,
            now=_int(args, "now_ms", _now()),
            rng=self.rng,
            local_address=party.address,
        )
        return {}

    # -- ops: 1:1 ----------------------------------------------------------------------------

    def op_encrypt(self, args: dict[str, Any]) -> dict[str, Any]:
        party = self.party(args)
        message = message_encrypt(
            _bytes(args, "plaintext"),
            _address(args.get("remote")),
            party.store,
            now=_int(args, "now_ms", _now()),
            rng=self.rng,
            local_address=party.address,
        )
        return {"type": int(message.message_type), "body": _b64(message.to_bytes())}

    def op_encrypt_many(self, args: dict[str, Any]) -> dict[str, Any]:
        party = self.party(args)
        count = _int(args, "count")
        if not 0 <= count <= _MAX_ENCRYPT_MANY:
            raise BadRequest(f"count must be in 0..{_MAX_ENCRYPT_MANY}")
        keep_list = args.get("keep")
        if not isinstance(keep_list, list) or not all(type(k) is int for k in keep_list):
            raise BadRequest("keep must be a list of ints")
        keep = set(keep_list)
        plaintext = _bytes(args, "plaintext")
        remote = _address(args.get("remote"))
        now = _int(args, "now_ms", _now())
        out: list[dict[str, Any]] = []
        with party.store.transaction():
            for index in range(count):
                message = message_encrypt(
                    plaintext,
                    remote,
                    party.store,
                    now=now,
                    rng=self.rng,
                    local_address=party.address,
                )
                if index in keep:
                    out.append(
                        {
                            "index": index,
                            "type": int(message.message_type),
                            "body": _b64(message.to_bytes()),
                        }
                    )
        return {"messages": out}

    def decrypt_message(
        self, party: _Party, remote: ProtocolAddress, kind: int, body: bytes
    ) -> bytes:
        """One 1:1 decryption (a method so broken peers can change it)."""
        if kind not in (int(CiphertextMessageType.WHISPER), int(CiphertextMessageType.PREKEY)):
            raise Refused(f"unsupported message type {kind}")
        return message_decrypt(
            body,
            CiphertextMessageType(kind),
            remote,
            party.store,
            now=_now(),
            rng=self.rng,
            local_address=party.address,
        )

    def op_decrypt(self, args: dict[str, Any]) -> dict[str, Any]:
        party = self.party(args)
        plaintext = self.decrypt_message(
            party, _address(args.get("remote")), _int(args, "type"), _bytes(args, "body")
        )
        return {"plaintext": _b64(plaintext)}

    # -- ops: stored state -------------------------------------------------------------------

    def op_snapshot(self, args: dict[str, Any]) -> dict[str, Any]:
        party = self.party(args)
        remote = _address(args.get("remote"))
        record = party.store.load_session(remote)
        identity = party.store.get_identity(remote)
        session = b"" if record is None else record.to_bytes()
        trusted = b"" if identity is None else identity.to_bytes()
        state = len(session).to_bytes(4, "big") + session + trusted
        return {"state": _b64(state)}

    def op_has_session(self, args: dict[str, Any]) -> dict[str, Any]:
        party = self.party(args)
        record = party.store.load_session(_address(args.get("remote")))
        return {"has_session": record is not None and record.current is not None}

    def op_archive_session(self, args: dict[str, Any]) -> dict[str, Any]:
        party = self.party(args)
        remote = _address(args.get("remote"))
        with party.store.transaction():
            record = party.store.load_session(remote)
            if record is not None:
                party.store.store_session(remote, record.archive_current_state())
        return {}

    def op_restart(self, args: dict[str, Any]) -> dict[str, Any]:
        self._save_index()
        for party in self.parties.values():
            party.store.close()
        self.parties = {}
        index = json.loads((self.state_dir / "parties.json").read_text())
        for label, entry in index.items():
            store = SqliteProtocolStore.open(self.state_dir / entry["file"])
            address = ProtocolAddress(entry["name"], entry["device"])
            self.parties[label] = _Party(label, entry["file"], address, store)
        return {}

    def op_reset_identity(self, args: dict[str, Any]) -> dict[str, Any]:
        old = self.party(args)
        reg = args.get("registration_id")
        file, store, reg_id = self._new_store(reg if type(reg) is int else None)
        old.store.close()
        (self.state_dir / old.file).unlink(missing_ok=True)
        party = _Party(old.label, file, old.address, store)
        self.parties[old.label] = party
        self._save_index()
        return {"identity_key": _b64(self._identity(party)), "registration_id": reg_id}

    def op_trust(self, args: dict[str, Any]) -> dict[str, Any]:
        party = self.party(args)
        key = IdentityKey.from_bytes(_bytes(args, "identity_key"))
        party.store.save_identity(_address(args.get("remote")), key)
        return {}

    # -- ops: sealed sender ------------------------------------------------------------------

    def op_ss_create_issuer(self, args: dict[str, Any]) -> dict[str, Any]:
        label = _str(args, "issuer")
        root = KeyPair.generate(self.rng)
        server = KeyPair.generate(self.rng)
        cert = ServerCertificate.new(
            _int(args, "key_id"), server.public_key, root.private_key, self.rng
        )
        self.issuers[label] = _Issuer(root, server, cert)
        return {"trust_root": _b64(root.public_key.to_bytes())}

    def op_ss_issue_sender_certificate(self, args: dict[str, Any]) -> dict[str, Any]:
        issuer = self.issuers.get(_str(args, "issuer"))
        if issuer is None:
            raise BadRequest("unknown issuer")
        e164 = args.get("sender_e164")
        cert = SenderCertificate.new(
            sender_uuid=_str(args, "sender_uuid"),
            sender_e164=e164 if isinstance(e164, str) else None,
            sender_device_id=_int(args, "sender_device"),
            key=PublicKey.from_bytes(_bytes(args, "identity_key")),
            expiration=_int(args, "expiration_ms"),
            signer=issuer.server_certificate,
            signer_key=issuer.server_key.private_key,
            rng=self.rng,
        )
        return {"certificate": _b64(cert.to_bytes())}

    def op_ss_encrypt(self, args: dict[str, Any]) -> dict[str, Any]:
        party = self.party(args)
        body = sealed_sender_encrypt(
            _address(args.get("remote")),
            SenderCertificate.from_bytes(_bytes(args, "sender_certificate")),
            _bytes(args, "plaintext"),
            party.store,
            now=_int(args, "now_ms", _now()),
            rng=self.rng,
        )
        return {"body": _b64(body)}

    def validate_certificate(self, cert: SenderCertificate, root: PublicKey, now: int) -> None:
        """Certificate check of ``ss_decrypt`` (a method so broken peers can change it)."""
        cert.validate(root, now)

    def op_ss_decrypt(self, args: dict[str, Any]) -> dict[str, Any]:
        party = self.party(args)
        root = PublicKey.from_bytes(_bytes(args, "trust_root"))
        now = _int(args, "now_ms", _now())
        usmc = sealed_sender_decrypt_to_usmc(_bytes(args, "body"), party.store)
        cert = usmc.sender
        self.validate_certificate(cert, root, now)
        sender = ProtocolAddress(cert.sender_uuid, cert.sender_device_id)
        if sender == party.address:
            raise Refused("sealed sender message from ourselves")
        kind = int(usmc.msg_type)
        if kind == int(CiphertextMessageType.SENDERKEY):
            plaintext = group_decrypt(usmc.contents, sender, party.store)
        else:
            plaintext = self.decrypt_message(party, sender, kind, usmc.contents)
        return {
            "sender": {"name": sender.name, "device": sender.device_id},
            "type": kind,
            "plaintext": _b64(plaintext),
        }

    def op_ss_multi_encrypt(self, args: dict[str, Any]) -> dict[str, Any]:
        party = self.party(args)
        dist = uuid.UUID(_str(args, "distribution_id"))
        recipients = args.get("recipients")
        if not isinstance(recipients, list):
            raise BadRequest("recipients must be a list")
        group_id = _bytes(args, "group_id") if args.get("group_id") is not None else None
        cert = SenderCertificate.from_bytes(_bytes(args, "sender_certificate"))
        with party.store.transaction():
            message = group_encrypt(
                party.address, dist, _bytes(args, "plaintext"), party.store, rng=self.rng
            )
            usmc = UnidentifiedSenderMessageContent.new(
                CiphertextMessageType.SENDERKEY,
                cert,
                message.to_bytes(),
                ContentHint.RESENDABLE,
                group_id,
            )
            body = sealed_sender_multi_recipient_encrypt(
                [_address(r) for r in recipients], usmc, party.store, rng=self.rng
            )
        return {"body": _b64(body)}

    def op_ss_multi_split(self, args: dict[str, Any]) -> dict[str, Any]:
        sent = SealedSenderV2SentMessage.parse(_bytes(args, "body"))
        return {
            "recipients": [
                {
                    "service_id": str(sid),
                    "devices": [device for device, _ in devices],
                    "message": _b64(sent.message_for_recipient(sid)),
                }
                for sid, devices in sent.recipients.items()
            ]
        }

    # -- ops: groups -------------------------------------------------------------------------

    def op_group_create(self, args: dict[str, Any]) -> dict[str, Any]:
        party = self.party(args)
        skdm = create_sender_key_distribution_message(
            party.address, uuid.UUID(_str(args, "distribution_id")), party.store, rng=self.rng
        )
        return {"skdm": _b64(skdm.to_bytes())}

    def op_group_process(self, args: dict[str, Any]) -> dict[str, Any]:
        party = self.party(args)
        process_sender_key_distribution_message(
            _address(args.get("sender")), _bytes(args, "skdm"), party.store
        )
        return {}

    def op_group_encrypt(self, args: dict[str, Any]) -> dict[str, Any]:
        party = self.party(args)
        message = group_encrypt(
            party.address,
            uuid.UUID(_str(args, "distribution_id")),
            _bytes(args, "plaintext"),
            party.store,
            rng=self.rng,
        )
        return {"body": _b64(message.to_bytes())}

    def op_group_decrypt(self, args: dict[str, Any]) -> dict[str, Any]:
        party = self.party(args)
        plaintext = group_decrypt(_bytes(args, "body"), _address(args.get("sender")), party.store)
        return {"plaintext": _b64(plaintext)}

    # -- ops: fingerprints -------------------------------------------------------------------

    def compute_fingerprint(self, args: dict[str, Any]) -> Fingerprint:
        """The safety number of ``fingerprint`` (a method so broken peers can change it)."""
        return Fingerprint.create(
            version=_int(args, "version"),
            iterations=_int(args, "iterations"),
            local_id=_bytes(args, "local_id"),
            local_key=IdentityKey.from_bytes(_bytes(args, "local_key")),
            remote_id=_bytes(args, "remote_id"),
            remote_key=IdentityKey.from_bytes(_bytes(args, "remote_key")),
        )

    def op_fingerprint(self, args: dict[str, Any]) -> dict[str, Any]:
        fp = self.compute_fingerprint(args)
        return {"displayable": str(fp.displayable), "scannable": _b64(fp.scannable.to_bytes())}


def _error(kind: str, message: str) -> dict[str, str]:
    return {"kind": kind, "message": message}


def state_dir() -> Path:
    """The state directory: ``SECUREMSG_INTEROP_STATE_DIR`` or a fresh temporary one."""
    configured = os.environ.get("SECUREMSG_INTEROP_STATE_DIR")
    if configured:  # it holds the parties' private keys: owner-only, whatever the umask
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.chmod(0o700)
        return path
    return Path(tempfile.mkdtemp(prefix="securemsg-peer-"))


def main(peer_class: type[SecuremsgPeer] = SecuremsgPeer) -> None:
    """Serve the protocol on stdin/stdout."""
    peer = peer_class(state_dir())
    peer.serve(sys.stdin, sys.stdout)


if __name__ == "__main__":
    main()
