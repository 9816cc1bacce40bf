"""A relay whose device lists change under a sender, for the client tests.

:class:`DeviceListChanger` wraps a running :class:`RelayServer`'s store so that chosen
devices of an account are hidden from (or shown with another registration id in) the
device lists the relay checks sends against, as if they were unlinked, not yet linked or
re-registered, and counts the sends the relay is asked to accept.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from securemsg.relay.server import RelayServer
from securemsg.relay.service import Outcome, Session
from securemsg.relay.store import DeviceRow
from securemsg.relay_protocol import frames as rf


class _StoreProxy:
    def __init__(self, real: Any, rewrite: Callable[[bytes, list[DeviceRow]], list[DeviceRow]]):
        self._real = real
        self._rewrite = rewrite

    def list_devices(self, aci: bytes) -> list[DeviceRow]:
        return self._rewrite(aci, self._real.list_devices(aci))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class DeviceListChanger:
    """Rewrites the device list of ``aci`` the relay sees.

    Attributes:
        hidden: device ids left out of the list (an unlinked device, or one not linked yet).
        stale: device id -> the registration id to show instead of the real one.
        flip: if set, the device id that is hidden and shown in turn on every list lookup
            (a list that keeps changing).
        sends: sends the relay was asked for, by destination ACI string (every attempt,
            accepted or refused).
    """

    def __init__(self, relay: RelayServer, aci: str) -> None:
        self.hidden: set[int] = set()
        self.stale: dict[int, int] = {}
        self.flip: int | None = None
        self._flipped = False
        self.sends: Counter[str] = Counter()
        self._aci = uuid.UUID(aci).bytes
        service = relay.service
        service.store = _StoreProxy(service.store, self._rewrite)  # type: ignore[assignment]
        real = service.handle

        def handle(session: Session, frame: rf.ClientFrame, now: int) -> Outcome:
            body = frame.body
            if isinstance(body, rf.SendMessage | rf.SendSealed):
                self.sends[str(uuid.UUID(bytes=body.destination_aci))] += 1
            elif isinstance(body, rf.SendMultiRecipient):
                self.sends["multi"] += 1
            return real(session, frame, now)

        service.handle = handle  # type: ignore[method-assign]

    def _rewrite(self, aci: bytes, devices: list[DeviceRow]) -> list[DeviceRow]:
        if aci != self._aci:
            return devices
        hidden = set(self.hidden)
        if self.flip is not None:
            self._flipped = not self._flipped
            if self._flipped:
                hidden.add(self.flip)
        return [
            dataclasses.replace(d, registration_id=self.stale.get(d.device_id, d.registration_id))
            for d in devices
            if d.device_id not in hidden
        ]
