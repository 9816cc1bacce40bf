"""A minimal raw-WebSocket relay client and device key material for the relay tests.

Not the client SDK: it speaks frames directly so tests can send anything, including
hostile bytes, and see exactly what the relay answers.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from securemsg.crypto.curve25519 import PublicKey
from securemsg.crypto.kyber1024 import KyberPublicKey
from securemsg.crypto.rng import DeterministicRng, Rng
from securemsg.protocol.address import ProtocolAddress
from securemsg.protocol.identity_and_prekeys import (
    IdentityKey,
    IdentityKeyPair,
    KyberPreKeyRecord,
    PreKeyBundle,
    PreKeyRecord,
    SignedPreKeyRecord,
    generate_registration_id,
)
from securemsg.relay.server import RelayServer
from securemsg.relay.service import RelayConfig, RelayService
from securemsg.relay_protocol import frames as rf
from securemsg.store.memory import InMemoryProtocolStore

NOW = 1_750_000_000_000
T = TypeVar("T")
TIMEOUT = 10.0


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    """Run an async test body with an overall bound."""

    async def bounded() -> T:
        return await asyncio.wait_for(coro_fn(), timeout=60)  # type: ignore[arg-type]

    return asyncio.run(bounded())


@dataclass
class Device:
    """A device's keys (kept here, in the test, as a real client would keep them)."""

    aci: bytes
    device_id: int
    identity: IdentityKeyPair
    registration_id: int
    access_key: bytes
    rng: Rng
    pre_keys: list[PreKeyRecord] = field(default_factory=list)
    signed: SignedPreKeyRecord | None = None
    last_resort: KyberPreKeyRecord | None = None
    kyber: list[KyberPreKeyRecord] = field(default_factory=list)
    store: InMemoryProtocolStore | None = None
    #: for a device linked to an existing account: the code its primary got (GetLinkingCode)
    linking_code: str = ""

    @classmethod
    def new(
        cls,
        seed: int,
        *,
        n_pre_keys: int = 2,
        n_kyber: int = 1,
        device_id: int = 1,
        identity: IdentityKeyPair | None = None,
        aci: bytes | None = None,
        access_key: bytes | None = None,
    ) -> Device:
        rng = DeterministicRng(seed.to_bytes(8, "big") * 4)
        ik = identity or IdentityKeyPair.generate(rng)
        d = cls(
            aci=aci or uuid.UUID(bytes=rng.random_bytes(16), version=4).bytes,
            device_id=device_id,
            identity=ik,
            registration_id=generate_registration_id(rng),
            access_key=access_key or rng.random_bytes(16),
            rng=rng,
        )
        d.pre_keys = [PreKeyRecord.generate(100 + i, rng) for i in range(n_pre_keys)]
        d.signed = SignedPreKeyRecord.generate(1, ik, NOW, rng)
        d.last_resort = KyberPreKeyRecord.generate(1, ik, NOW, rng)
        d.kyber = [KyberPreKeyRecord.generate(200 + i, ik, NOW, rng) for i in range(n_kyber)]
        d.store = InMemoryProtocolStore(ik, d.registration_id)
        for pk in d.pre_keys:
            d.store.save_pre_key(pk.id, pk)
        d.store.save_signed_pre_key(d.signed.id, d.signed)
        d.store.save_kyber_pre_key(d.last_resort.id, d.last_resort)
        for kp in d.kyber:
            d.store.save_kyber_pre_key(kp.id, kp)
        return d

    @property
    def address(self) -> ProtocolAddress:
        return ProtocolAddress(str(uuid.UUID(bytes=self.aci)), self.device_id)

    def sign_auth(self, nonce: bytes) -> bytes:
        return self.identity.sign(rf.auth_message(nonce, self.aci, self.device_id), self.rng)

    def register(self, nonce: bytes) -> rf.Register:
        assert self.signed is not None and self.last_resort is not None
        return rf.Register(
            aci=self.aci,
            device_id=self.device_id,
            registration_id=self.registration_id,
            identity_key=self.identity.identity_key.to_bytes(),
            signed_pre_key=rf.SignedPreKey(
                self.signed.id, self.signed.public_key.to_bytes(), self.signed.signature
            ),
            last_resort_kyber_pre_key=rf.SignedPreKey(
                self.last_resort.id,
                self.last_resort.public_key.to_bytes(),
                self.last_resort.signature,
            ),
            pre_keys=tuple(rf.OneTimePreKey(k.id, k.public_key.to_bytes()) for k in self.pre_keys),
            kyber_pre_keys=tuple(
                rf.SignedPreKey(k.id, k.public_key.to_bytes(), k.signature) for k in self.kyber
            ),
            unidentified_access_key=self.access_key,
            signature=self.sign_auth(nonce),
            linking_code=self.linking_code,
        )

    def authenticate(self, nonce: bytes) -> rf.Authenticate:
        return rf.Authenticate(self.aci, self.device_id, self.sign_auth(nonce))


def linking_code(service: RelayService, primary: Device, now: int = NOW) -> str:
    """A fresh linking code for ``primary``'s account (asked as its device 1 would)."""
    s = service.new_session()
    auth = service.handle(s, rf.ClientFrame(1, primary.authenticate(s.nonce)), now)
    assert auth.response.code == rf.StatusCode.OK, auth.response
    out = service.handle(s, rf.ClientFrame(2, rf.GetLinkingCode()), now)
    assert isinstance(out.response.body, rf.LinkingCode), out.response
    return out.response.body.code


def to_bundle(b: rf.DeviceBundle) -> PreKeyBundle:
    """A directory bundle as the core's PreKeyBundle."""
    return PreKeyBundle(
        registration_id=b.registration_id,
        device_id=b.device_id,
        pre_key_id=None if b.pre_key is None else b.pre_key.id,
        pre_key_public=None if b.pre_key is None else PublicKey.from_bytes(b.pre_key.public_key),
        signed_pre_key_id=b.signed_pre_key.id,
        signed_pre_key_public=PublicKey.from_bytes(b.signed_pre_key.public_key),
        signed_pre_key_signature=b.signed_pre_key.signature,
        identity_key=IdentityKey.from_bytes(b.identity_key),
        kyber_pre_key_id=b.kyber_pre_key.id,
        kyber_pre_key_public=KyberPublicKey.from_bytes(b.kyber_pre_key.public_key),
        kyber_pre_key_signature=b.kyber_pre_key.signature,
    )


class RawClient:
    """Frames in, frames out; pushes are collected while waiting for responses."""

    def __init__(self, ws: ClientConnection, nonce: bytes) -> None:
        self.ws = ws
        self.nonce = nonce
        self.pushes: list[rf.Envelope] = []
        self.queue_empty = 0
        self.provisions: list[rf.ProvisionEnvelope] = []
        self.removed = 0
        self._next_id = 1

    @classmethod
    async def open(cls, url: str) -> RawClient:
        ws = await connect(url, max_size=rf.MAX_FRAME_SIZE, open_timeout=TIMEOUT)
        first = rf.decode_server_frame(await asyncio.wait_for(ws.recv(), TIMEOUT))  # type: ignore[arg-type]
        assert isinstance(first, rf.Challenge)
        return cls(ws, first.nonce)

    async def _next_frame(self) -> rf.ServerFrame:
        data = await asyncio.wait_for(self.ws.recv(), TIMEOUT)
        assert isinstance(data, bytes)
        frame = rf.decode_server_frame(data)
        if isinstance(frame, rf.Envelope):
            self.pushes.append(frame)
        elif isinstance(frame, rf.QueueEmpty):
            self.queue_empty += 1
        elif isinstance(frame, rf.ProvisionEnvelope):
            self.provisions.append(frame)
        elif isinstance(frame, rf.DeviceRemoved):
            self.removed += 1
        return frame

    async def send_raw(self, data: bytes | str) -> None:
        await self.ws.send(data)

    async def request(self, body: rf.Request) -> rf.Response:
        rid = self._next_id
        self._next_id += 1
        await self.ws.send(rf.encode_client_frame(rf.ClientFrame(rid, body)))
        return await self.response(rid)

    async def response(self, rid: int) -> rf.Response:
        while True:
            frame = await self._next_frame()
            if isinstance(frame, rf.Response):
                assert frame.request_id == rid, (frame, rid)
                return frame

    async def wait_pushes(self, n: int) -> list[rf.Envelope]:
        while len(self.pushes) < n:
            await self._next_frame()
        return self.pushes

    async def wait_queue_empty(self) -> None:
        while self.queue_empty == 0:
            await self._next_frame()

    async def closed(self) -> int | None:
        """Read until the relay closes the connection; the close code."""
        try:
            while True:
                await self._next_frame()
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else None

    async def close(self) -> None:
        await self.ws.close()


async def registered(url: str, device: Device) -> RawClient:
    c = await RawClient.open(url)
    r = await c.request(device.register(c.nonce))
    assert r.code == rf.StatusCode.OK, r
    await c.wait_queue_empty()
    return c


async def authenticated(url: str, device: Device) -> RawClient:
    c = await RawClient.open(url)
    r = await c.request(device.authenticate(c.nonce))
    assert r.code == rf.StatusCode.OK, r
    await c.wait_queue_empty()
    return c


def relay(db: Path | str, clock: Callable[[], int] | None = None, **cfg: Any) -> RelayServer:
    return RelayServer(db, config=RelayConfig(**cfg), clock=clock)
