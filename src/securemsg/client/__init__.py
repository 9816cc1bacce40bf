"""The async client SDK: a device that registers with a securemsg relay and talks through it.

See :mod:`securemsg.client.client` for the theory of operation; :mod:`.connection` is the
WebSocket to the relay, :mod:`.store` the device's SQLite database, :mod:`.devices` linked
devices and :mod:`.kt` the key-transparency monitor. Not here: the relay's frames as bytes
(:mod:`securemsg.relay_protocol`) or the protocol itself (:mod:`securemsg.protocol`,
:mod:`securemsg.cipher`). Public names:
:class:`Client`, :class:`ReceivedMessage`, :class:`DecryptionFailure`, :class:`KtWarning`,
:class:`KtMonitorResult`, and
:data:`CONNECTION_LOST` (the ``RelayError.code`` of a connection failure).
"""

from __future__ import annotations

from securemsg.client.client import Client, DecryptionFailure, ReceivedMessage
from securemsg.client.connection import CONNECTION_LOST
from securemsg.client.kt import KtMonitorResult, KtWarning

__all__ = [
    "CONNECTION_LOST",
    "Client",
    "DecryptionFailure",
    "KtMonitorResult",
    "KtWarning",
    "ReceivedMessage",
]
