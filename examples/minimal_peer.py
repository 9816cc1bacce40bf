"""A minimal securemsg-interop/1 peer: session set-up and 1:1 messages, nothing else.

    securemsg interop run --a "python examples/minimal_peer.py" --b libsignal

It lists no capabilities, so the kit reports every scenario that needs one as "not supported";
an op it does not know is answered with the error kind "unsupported". docs/interop-guide.md
walks through it.
"""

import base64
import json
import sys
import time
from typing import Any

from securemsg import (
    CiphertextMessageType,
    IdentityKey,
    IdentityKeyPair,
    InMemoryProtocolStore,
    KyberPreKeyRecord,
    KyberPublicKey,
    NoSessionError,
    PeerError,
    PreKeyBundle,
    PreKeyRecord,
    ProtocolAddress,
    PublicKey,
    SignedPreKeyRecord,
    SystemRng,
    UntrustedIdentityError,
    generate_registration_id,
    message_decrypt,
    message_encrypt,
    process_prekey_bundle,
)

rng = SystemRng()
parties: dict[str, tuple[ProtocolAddress, InMemoryProtocolStore]] = {}


def enc(data: bytes) -> str:
    return base64.b64encode(data).decode()


def address(a: dict[str, Any]) -> ProtocolAddress:
    return ProtocolAddress(a["name"], a["device"])


def handle(r: dict[str, Any]) -> dict[str, Any]:
    op, now, dec = r["op"], int(time.time() * 1000), base64.b64decode
    if op == "hello":
        implementation = {"name": "minimal-example", "version": "1"}
        return {
            "protocol": "securemsg-interop/1",
            "implementation": implementation,
            "capabilities": [],
        }
    if op == "create_party":
        reg = r.get("registration_id") or generate_registration_id(rng)
        store = InMemoryProtocolStore(IdentityKeyPair.generate(rng), reg)
        parties[r["party"]] = (ProtocolAddress(r["name"], r["device"]), store)
        return {
            "identity_key": enc(store.get_identity_key_pair().identity_key.to_bytes()),
            "registration_id": reg,
        }
    me, store = parties[r["party"]]
    keys: dict[str, Any] = {"now": now, "rng": rng, "local_address": me}
    if op == "create_bundle":
        ikp = store.get_identity_key_pair()
        spk = SignedPreKeyRecord.generate(r["signed_pre_key_id"], ikp, now, rng)
        kyber = KyberPreKeyRecord.generate(r["kyber_pre_key_id"], ikp, now, rng)
        store.save_signed_pre_key(spk.id, spk)
        store.save_kyber_pre_key(kyber.id, kyber)
        bundle: dict[str, Any] = {"pre_key_id": None, "pre_key_public": None}
        if r.get("pre_key_id") is not None:
            opk = PreKeyRecord.generate(r["pre_key_id"], rng)
            store.save_pre_key(opk.id, opk)
            bundle.update(pre_key_id=opk.id, pre_key_public=enc(opk.public_key.to_bytes()))
        for name, record in (("signed_pre_key", spk), ("kyber_pre_key", kyber)):
            bundle[f"{name}_id"] = record.id
            bundle[f"{name}_public"] = enc(record.public_key.to_bytes())
            bundle[f"{name}_signature"] = enc(record.signature)
        bundle["registration_id"] = store.get_local_registration_id()
        bundle["device"] = me.device_id
        return {**bundle, "identity_key": enc(ikp.identity_key.to_bytes())}
    if op == "process_bundle":
        b = r["bundle"]
        one_time = b.get("pre_key_public")
        parsed = PreKeyBundle(
            b["registration_id"], b["device"], b.get("pre_key_id"),
            None if one_time is None else PublicKey.from_bytes(dec(one_time)),
            b["signed_pre_key_id"], PublicKey.from_bytes(dec(b["signed_pre_key_public"])),
            dec(b["signed_pre_key_signature"]), IdentityKey.from_bytes(dec(b["identity_key"])),
            b["kyber_pre_key_id"], KyberPublicKey.from_bytes(dec(b["kyber_pre_key_public"])),
            dec(b["kyber_pre_key_signature"]),
        )  # fmt: skip
        process_prekey_bundle(parsed, address(r["remote"]), store, **keys)
        return {}
    if op == "encrypt":
        message = message_encrypt(dec(r["plaintext"]), address(r["remote"]), store, **keys)
        return {"type": int(message.message_type), "body": enc(message.to_bytes())}
    if op == "decrypt":
        kind = CiphertextMessageType(r["type"])
        plaintext = message_decrypt(dec(r["body"]), kind, address(r["remote"]), store, **keys)
        return {"plaintext": enc(plaintext)}
    raise NotImplementedError(f"the minimal example has no op {op!r}")


def error_kind(exc: Exception) -> str:
    if isinstance(exc, NotImplementedError):
        return "unsupported"  # the kit reports the scenario as "not supported"
    if isinstance(exc, UntrustedIdentityError):
        return "untrusted_identity"
    if isinstance(exc, PeerError | NoSessionError):
        return "refused"  # securemsg refused hostile or broken input, its state unchanged
    return "internal"  # a bad request, or a bug


for line in sys.stdin:  # one request per line, one answer per line, in order
    if not line.strip():
        continue
    request_id = None
    try:
        request = json.loads(line)
        request_id = request.get("id")
        answer = {"id": request_id, "ok": True, **handle(request)}
    except Exception as exc:
        error = {"kind": error_kind(exc), "message": f"{type(exc).__name__}: {exc}"}
        answer = {"id": request_id, "ok": False, "error": error}
    print(json.dumps(answer), flush=True)
