"""Python side of the libsignal interop peer (tests/interop/peer/peer.mjs).

Theory of operation: the peer is a Node process running the real ``@signalapp/libsignal-client``
(pinned in ``peer/package.json``). We talk to it over its stdin/stdout with one JSON object per
line: ``{"id", "op", ...args}`` in, ``{"id", "ok", "result" | "error"}`` out, answered strictly in
order. Bytes travel as base64; :func:`b64` / :func:`unb64` convert. A request that libsignal
refuses comes back as ``ok: false`` and :meth:`LibsignalPeer.call` raises :class:`PeerCallError`
carrying libsignal's error class name (``type``) and message. The peer's stderr (its own logs and
libsignal's) is drained into a bounded buffer so a chatty peer can never block.

The op names and their arguments are documented in tests/interop/README.md.
"""

from __future__ import annotations

import base64
import collections
import json
import shutil
import subprocess
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

PEER_DIR = Path(__file__).resolve().parent / "peer"
PEER_SCRIPT = PEER_DIR / "peer.mjs"

# CiphertextMessageType values (libsignal and securemsg agree on them).
WHISPER = 2
PREKEY = 3


def b64(data: bytes) -> str:
    """Encodes bytes for the peer."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str) -> bytes:
    """Decodes bytes from the peer."""
    return base64.b64decode(text, validate=True)


class PeerUnavailableError(RuntimeError):
    """The peer cannot run here (node or node_modules missing) or it died."""


class PeerCallError(Exception):
    """libsignal (or the peer) refused a request.

    Attributes:
        type: libsignal's error class name (e.g. ``"DuplicatedMessage"``, ``"UntrustedIdentity"``,
            ``"InvalidMessage"`` in the message of a generic error) or ``"BadRequest"`` for a
            request the peer could not understand.
        message: the error text.
        code: libsignal's numeric ``ErrorCode`` when it has one.
    """

    def __init__(self, type: str, message: str, code: int | None = None) -> None:
        super().__init__(f"{type}: {message}")
        self.type = type
        self.message = message
        self.code = code

    @classmethod
    def from_json(cls, error: Mapping[str, Any]) -> PeerCallError:
        return cls(str(error.get("type")), str(error.get("message")), error.get("code"))


class LibsignalPeer:
    """A running libsignal peer process.

    Use :meth:`start` / :meth:`stop` (or ``with``); :meth:`call` sends one request and returns
    its ``result`` dict. The ``*_many`` ops return per-item results; :meth:`items` unwraps them.
    """

    def __init__(self, node: str | None = None, script: Path = PEER_SCRIPT) -> None:
        self._node = node or shutil.which("node")
        self._script = script
        self._proc: subprocess.Popen[str] | None = None
        self._next_id = 0
        self._stderr: collections.deque[str] = collections.deque(maxlen=200)
        self._lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------

    @staticmethod
    def check_available(node: str | None = None) -> str | None:
        """Returns why the peer cannot start here, or None if it can."""
        node = node or shutil.which("node")
        if node is None:
            return "node is not installed (Node >= 20 is needed for the libsignal interop peer)"
        if not (PEER_DIR / "node_modules" / "@signalapp" / "libsignal-client").is_dir():
            return (
                f"{PEER_DIR}/node_modules is missing: run `npm ci` in tests/interop/peer "
                "(CI does this before pytest)"
            )
        return None

    def start(self) -> LibsignalPeer:
        problem = self.check_available(self._node)
        if problem is not None:
            raise PeerUnavailableError(problem)
        assert self._node is not None
        self._proc = subprocess.Popen(
            [self._node, str(self._script)],
            cwd=str(PEER_DIR),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        pong = self.call("ping")
        if pong.get("libsignal_version") != "0.103.0":
            raise PeerUnavailableError(f"unexpected libsignal version {pong!r}")
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        finally:
            if proc.stdout is not None:
                proc.stdout.close()

    def __enter__(self) -> LibsignalPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _drain_stderr(self) -> None:
        proc = self._proc
        if proc is None or proc.stderr is None:
            return
        for line in proc.stderr:
            self._stderr.append(line.rstrip("\n"))

    @property
    def stderr_tail(self) -> str:
        """The last lines the peer wrote to stderr (for failure messages)."""
        return "\n".join(self._stderr)

    # -- calls ----------------------------------------------------------------------------------

    def call(self, op: str, **args: Any) -> dict[str, Any]:
        """Sends one request and returns its result.

        Raises:
            PeerCallError: libsignal or the peer refused the request.
            PeerUnavailableError: the peer is not running or died.
        """
        with self._lock:
            proc = self._proc
            if proc is None or proc.stdin is None or proc.stdout is None:
                raise PeerUnavailableError("the libsignal peer is not running")
            self._next_id += 1
            request_id = self._next_id
            request = {"id": request_id, "op": op, **args}
            try:
                proc.stdin.write(json.dumps(request) + "\n")
                proc.stdin.flush()
                line = proc.stdout.readline()
            except (BrokenPipeError, OSError) as exc:
                raise PeerUnavailableError(f"peer died: {exc}\n{self.stderr_tail}") from exc
            if not line:
                raise PeerUnavailableError(f"peer exited unexpectedly\n{self.stderr_tail}")
            response = json.loads(line)
        if response.get("id") != request_id:
            raise PeerUnavailableError(
                f"out-of-order response {response.get('id')} != {request_id}"
            )
        if not response.get("ok"):
            raise PeerCallError.from_json(response.get("error") or {})
        result: dict[str, Any] = response["result"]
        return result

    @staticmethod
    def items(result: Mapping[str, Any]) -> list[dict[str, Any] | PeerCallError]:
        """Unwraps the per-item results of a ``*_many`` op: a dict per success, a
        :class:`PeerCallError` per failure (in request order)."""
        out: list[dict[str, Any] | PeerCallError] = []
        for item in result["results"]:
            if item.get("ok"):
                out.append(item)
            else:
                out.append(PeerCallError.from_json(item.get("error") or {}))
        return out

    # -- typed helpers for the common ops -------------------------------------------------------

    def generate_keypair(self) -> tuple[bytes, bytes]:
        """Returns (public 33 bytes, private 32 bytes) made by libsignal."""
        r = self.call("generate_keypair")
        return unb64(r["public"]), unb64(r["private"])

    def generate_keypairs(self, count: int) -> list[tuple[bytes, bytes]]:
        """Returns ``count`` (public, private) pairs made by libsignal in one round trip."""
        r = self.call("generate_keypairs", count=count)
        return [(unb64(k["public"]), unb64(k["private"])) for k in r["keypairs"]]

    def sign_many(self, items: Iterable[tuple[bytes, bytes]]) -> list[bytes]:
        """XEdDSA-signs each (private key, message) with libsignal."""
        result = self.call(
            "sign_many", items=[{"private": b64(k), "message": b64(m)} for k, m in items]
        )
        sigs: list[bytes] = []
        for item in self.items(result):
            if isinstance(item, PeerCallError):
                raise item
            sigs.append(unb64(item["signature"]))
        return sigs

    def verify_many(self, items: Iterable[tuple[bytes, bytes, bytes]]) -> list[bool]:
        """libsignal's verdict on each (public key, message, signature); a key libsignal
        cannot even parse counts as a rejection."""
        result = self.call(
            "verify_many",
            items=[{"public": b64(k), "message": b64(m), "signature": b64(s)} for k, m, s in items],
        )
        return [
            (not isinstance(item, PeerCallError)) and bool(item["valid"])
            for item in self.items(result)
        ]

    def create_party(
        self, party: str, name: str, device_id: int, registration_id: int | None = None
    ) -> dict[str, Any]:
        return self.call(
            "create_party",
            party=party,
            name=name,
            device_id=device_id,
            registration_id=registration_id,
        )

    def encrypt(
        self,
        party: str,
        remote_name: str,
        remote_device: int,
        plaintext: bytes,
        now_ms: int | None = None,
    ) -> tuple[int, bytes]:
        """libsignal encrypts; returns (message type, serialized message)."""
        r = self.call(
            "encrypt",
            party=party,
            remote_name=remote_name,
            remote_device=remote_device,
            plaintext=b64(plaintext),
            now_ms=now_ms,
        )
        return int(r["type"]), unb64(r["body"])

    def decrypt(
        self, party: str, remote_name: str, remote_device: int, msg_type: int, body: bytes
    ) -> bytes:
        """libsignal decrypts; raises :class:`PeerCallError` if it refuses."""
        r = self.call(
            "decrypt",
            party=party,
            remote_name=remote_name,
            remote_device=remote_device,
            type=msg_type,
            body=b64(body),
        )
        return unb64(r["plaintext"])

    def encrypt_many(
        self,
        party: str,
        remote_name: str,
        remote_device: int,
        plaintexts: Sequence[bytes],
        now_ms: int | None = None,
    ) -> list[tuple[int, bytes]]:
        """libsignal encrypts each plaintext in order (any failure raises)."""
        result = self.call(
            "encrypt_many",
            party=party,
            remote_name=remote_name,
            remote_device=remote_device,
            plaintexts=[b64(p) for p in plaintexts],
            now_ms=now_ms,
        )
        out: list[tuple[int, bytes]] = []
        for item in self.items(result):
            if isinstance(item, PeerCallError):
                raise item
            out.append((int(item["type"]), unb64(item["body"])))
        return out

    def decrypt_many(
        self,
        party: str,
        remote_name: str,
        remote_device: int,
        messages: Sequence[tuple[int, bytes]],
    ) -> list[bytes | PeerCallError]:
        """libsignal decrypts each message in order; each item is the plaintext or the error."""
        result = self.call(
            "decrypt_many",
            party=party,
            remote_name=remote_name,
            remote_device=remote_device,
            messages=[{"type": t, "body": b64(b)} for t, b in messages],
        )
        return [
            item if isinstance(item, PeerCallError) else unb64(item["plaintext"])
            for item in self.items(result)
        ]


# -- securemsg <-> peer JSON glue (imports securemsg lazily so the client works on its own) ------


def bundle_from_json(data: Mapping[str, Any]) -> Any:
    """A peer ``generate_bundle`` result as a ``PreKeyBundle`` (protocol.identity_and_prekeys)."""
    from securemsg.crypto.curve25519 import PublicKey
    from securemsg.crypto.kyber1024 import KyberPublicKey
    from securemsg.protocol.identity_and_prekeys import IdentityKey, PreKeyBundle

    pre_key_public = data.get("pre_key_public")
    return PreKeyBundle(
        registration_id=int(data["registration_id"]),
        device_id=int(data["device_id"]),
        pre_key_id=data.get("pre_key_id"),
        pre_key_public=None
        if pre_key_public is None
        else PublicKey.from_bytes(unb64(pre_key_public)),
        signed_pre_key_id=int(data["signed_pre_key_id"]),
        signed_pre_key_public=PublicKey.from_bytes(unb64(data["signed_pre_key_public"])),
        signed_pre_key_signature=unb64(data["signed_pre_key_signature"]),
        identity_key=IdentityKey.from_bytes(unb64(data["identity_key"])),
        kyber_pre_key_id=int(data["kyber_pre_key_id"]),
        kyber_pre_key_public=KyberPublicKey.from_bytes(unb64(data["kyber_pre_key_public"])),
        kyber_pre_key_signature=unb64(data["kyber_pre_key_signature"]),
    )


def bundle_to_json(bundle: Any) -> dict[str, Any]:
    """A ``PreKeyBundle`` (protocol.identity_and_prekeys) as the peer's ``bundle`` argument."""
    return {
        "registration_id": bundle.registration_id,
        "device_id": bundle.device_id,
        "pre_key_id": bundle.pre_key_id,
        "pre_key_public": None
        if bundle.pre_key_public is None
        else b64(bundle.pre_key_public.to_bytes()),
        "signed_pre_key_id": bundle.signed_pre_key_id,
        "signed_pre_key_public": b64(bundle.signed_pre_key_public.to_bytes()),
        "signed_pre_key_signature": b64(bundle.signed_pre_key_signature),
        "identity_key": b64(bundle.identity_key.to_bytes()),
        "kyber_pre_key_id": bundle.kyber_pre_key_id,
        "kyber_pre_key_public": b64(bundle.kyber_pre_key_public.to_bytes()),
        "kyber_pre_key_signature": b64(bundle.kyber_pre_key_signature),
    }
