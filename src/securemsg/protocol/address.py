"""Who a message is for: service ids and (name, device) protocol addresses.

Theory of operation
-------------------
A :class:`ServiceId` names an account: an ACI (account identity) or a PNI (phone-number
identity), each a UUID. Its string form is libsignal's: an ACI is the bare lowercase hyphenated
UUID, a PNI is ``"PNI:" + uuid``; parsing accepts only the 36-character hyphenated UUID form
(any case), exactly like libsignal's ``parse_from_service_id_string``. Its fixed-width binary
form is ``kind(1) || uuid(16)`` with kind 0x00 = ACI, 0x01 = PNI.

A :class:`ProtocolAddress` is ``(name, device_id)``; the name is usually a service-id string but
may be anything (libsignal does not require it). Device ids are 1..127. Sessions, identities and
sender keys are stored per address.

:func:`serialize_addresses` builds the 36-byte ``addresses`` field that binds a PreKey
message's MAC to its sender and recipient (libsignal since v0.91.0).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntEnum
from uuid import UUID

from securemsg.errors import DecodeError, UsageError
from securemsg.limits import MAX_DEVICE_ID

__all__ = [
    "ProtocolAddress",
    "ServiceId",
    "ServiceIdKind",
    "serialize_addresses",
]

_HYPHENATED_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z"
)
_PNI_PREFIX = "PNI:"
FIXED_WIDTH_LENGTH = 17


class ServiceIdKind(IntEnum):
    """The kind byte of a fixed-width service id."""

    ACI = 0
    PNI = 1


@dataclass(frozen=True, slots=True)
class ServiceId:
    """An account identifier (ACI or PNI). Immutable, hashable, compares by value.

    Attributes:
        kind: :attr:`ServiceIdKind.ACI` or :attr:`ServiceIdKind.PNI`.
        uuid: the account's UUID.
    """

    kind: ServiceIdKind
    uuid: UUID

    def __post_init__(self) -> None:
        if not isinstance(self.kind, ServiceIdKind):
            try:
                object.__setattr__(self, "kind", ServiceIdKind(self.kind))
            except ValueError:
                raise UsageError("unknown service id kind") from None
        if not isinstance(self.uuid, UUID):
            raise UsageError("ServiceId.uuid must be a uuid.UUID")

    @classmethod
    def aci(cls, value: UUID) -> ServiceId:
        """An ACI for ``value``."""
        return cls(ServiceIdKind.ACI, value)

    @classmethod
    def pni(cls, value: UUID) -> ServiceId:
        """A PNI for ``value``."""
        return cls(ServiceIdKind.PNI, value)

    @classmethod
    def try_parse(cls, text: str) -> ServiceId | None:
        """Parse the string form, or return None if it is not one."""
        if not isinstance(text, str):
            return None
        kind = ServiceIdKind.ACI
        if text.startswith(_PNI_PREFIX):
            kind = ServiceIdKind.PNI
            text = text[len(_PNI_PREFIX) :]
        if len(text) != 36 or _HYPHENATED_UUID.match(text) is None:
            return None
        return cls(kind, UUID(text))

    @classmethod
    def parse(cls, text: str) -> ServiceId:
        """Parse ``"<uuid>"`` (ACI) or ``"PNI:<uuid>"`` (PNI).

        Raises:
            UsageError: ``text`` is not a service-id string.
        """
        result = cls.try_parse(text)
        if result is None:
            raise UsageError("not a service id string")
        return result

    @classmethod
    def from_fixed_width(cls, data: bytes) -> ServiceId:
        """Parse the 17-byte ``kind || uuid`` form.

        Raises:
            DecodeError: wrong length or unknown kind byte.
        """
        if not isinstance(data, (bytes, bytearray, memoryview)) or len(data) != FIXED_WIDTH_LENGTH:
            raise DecodeError("fixed-width service id must be 17 bytes")
        kind = data[0]
        if kind > ServiceIdKind.PNI:
            raise DecodeError("unknown service id kind")
        return cls(ServiceIdKind(kind), UUID(bytes=bytes(data[1:])))

    def to_fixed_width(self) -> bytes:
        """``kind(1) || uuid(16)``."""
        return bytes((self.kind,)) + self.uuid.bytes

    def __str__(self) -> str:
        if self.kind is ServiceIdKind.ACI:
            return str(self.uuid)
        return _PNI_PREFIX + str(self.uuid)


@dataclass(frozen=True, slots=True)
class ProtocolAddress:
    """A (name, device id) pair. Immutable, hashable; ``str()`` is ``"name.device"``.

    Attributes:
        name: the account name, usually a service-id string.
        device_id: 1..127.

    Raises:
        UsageError: on construction, if ``name`` is not a str or ``device_id`` is not an int in
            1..127.
    """

    name: str
    device_id: int

    def __post_init__(self) -> None:
        if not isinstance(self.name, str):
            raise UsageError("ProtocolAddress.name must be a str")
        d = self.device_id
        if type(d) is not int or not 1 <= d <= MAX_DEVICE_ID:
            raise UsageError("device id must be an integer in 1..127")

    def service_id(self) -> ServiceId | None:
        """The name parsed as a service id, or None if it is not one."""
        return ServiceId.try_parse(self.name)

    def __str__(self) -> str:
        return self.name + "." + str(self.device_id)


def serialize_addresses(sender: ProtocolAddress, recipient: ProtocolAddress) -> bytes | None:
    """The 36-byte address binding of a SignalMessage (field 6), or None.

    ``sender_service_id(17) || sender_device(1) || recipient_service_id(17) ||
    recipient_device(1)``; None when either name is not a service-id string (then libsignal
    sends no binding).
    """
    s = sender.service_id()
    r = recipient.service_id()
    if s is None or r is None:
        return None
    return (
        s.to_fixed_width()
        + bytes((sender.device_id,))
        + r.to_fixed_width()
        + bytes((recipient.device_id,))
    )
