"""The async client SDK: a device that registers with a securemsg relay and talks through it.

See :mod:`securemsg.client.client` for the theory of operation. Public names:
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
