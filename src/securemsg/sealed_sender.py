"""Sealed-sender recipes over a store: seal a 1:1 message, unseal and decrypt, SSv2 fan-out.

Theory of operation
-------------------
Each recipe is load -> pure core (:mod:`securemsg.protocol.sealed_sender` plus
:mod:`securemsg.cipher` for the inner 1:1 message) -> save, inside one ``store.transaction()``,
so a failure anywhere (a refused certificate, a tampered envelope, an inner decrypt error)
leaves the store as it was. The relay-side split of a v2 message needs no store:
:func:`sealed_sender_multi_recipient_message_for_single_recipient` and
:class:`~securemsg.protocol.sealed_sender.SealedSenderV2SentMessage`.

Names follow libsignal: ``sealed_sender_encrypt``, ``sealed_sender_decrypt``,
``sealed_sender_decrypt_to_usmc`` (for group messages: then ``group_decrypt`` on the contents),
``sealed_sender_multi_recipient_encrypt``. ``now`` is Unix time in milliseconds.

Sealed sender lives in three modules, one per layer:

* :mod:`securemsg.sealed_sender` -- the recipes over a store (what an application calls);
* :mod:`securemsg.protocol.sealed_sender` -- the cryptography (certificates, sealing and
  unsealing, pure: no store);
* :mod:`securemsg.wire.sealed_sender` -- the bytes (protobuf and hand-framed v2 formats).
This module is the first of the three: it adds the store and the inner 1:1 message.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

from securemsg import cipher
from securemsg.crypto.curve25519 import PublicKey
from securemsg.crypto.rng import Rng
from securemsg.errors import NoSessionError, SealedSenderError, UsageError
from securemsg.protocol.address import ProtocolAddress, ServiceId
from securemsg.protocol.sealed_sender import (
    ContentHint,
    MultiRecipient,
    SealedSenderV2SentMessage,
    SenderCertificate,
    UnidentifiedSenderMessageContent,
    multi_recipient_encrypt,
    seal_v1,
    unseal,
)
from securemsg.store.base import ProtocolStore
from securemsg.wire.messages import CiphertextMessageType

__all__ = [
    "SealedSenderDecryptionResult",
    "sealed_sender_decrypt",
    "sealed_sender_decrypt_to_usmc",
    "sealed_sender_encrypt",
    "sealed_sender_encrypt_from_usmc",
    "sealed_sender_multi_recipient_encrypt",
    "sealed_sender_multi_recipient_message_for_single_recipient",
]


class SealedSenderDecryptionResult(NamedTuple):
    """What :func:`sealed_sender_decrypt` returns: the (certified) sender and the plaintext."""

    sender: ProtocolAddress
    plaintext: bytes

    def __repr__(self) -> str:  # the plaintext stays out of logs and tracebacks
        return (
            "SealedSenderDecryptionResult(sender="
            + repr(self.sender)
            + ", plaintext=<"
            + str(len(self.plaintext))
            + " bytes>)"
        )


def sealed_sender_encrypt_from_usmc(
    destination: ProtocolAddress,
    usmc: UnidentifiedSenderMessageContent,
    store: ProtocolStore,
    *,
    rng: Rng,
) -> bytes:
    """Seal an already-built USMC (v1) to ``destination``'s stored identity key.

    Raises:
        NoSessionError: no identity known for ``destination``.
    """
    their = store.get_identity(destination)
    if their is None:
        raise NoSessionError("no identity key for the destination")
    return seal_v1(usmc, store.get_identity_key_pair(), their, rng)


def sealed_sender_encrypt(
    destination: ProtocolAddress,
    sender_cert: SenderCertificate,
    plaintext: bytes,
    store: ProtocolStore,
    *,
    now: int,
    rng: Rng,
    content_hint: int = ContentHint.DEFAULT,
    group_id: bytes | None = None,
) -> bytes:
    """Encrypt ``plaintext`` on the 1:1 session with ``destination`` and seal it (v1).

    The session advance is committed only if sealing succeeds.

    Raises:
        Whatever :func:`securemsg.cipher.message_encrypt` raises (NoSessionError,
        UntrustedIdentityError, ...).
    """
    if not isinstance(sender_cert, SenderCertificate):
        raise UsageError("sender_cert must be a SenderCertificate")
    local = ProtocolAddress(sender_cert.sender_uuid, sender_cert.sender_device_id)
    with store.transaction():
        message = cipher.message_encrypt(
            plaintext, destination, store, now=now, rng=rng, local_address=local
        )
        usmc = UnidentifiedSenderMessageContent.new(
            message.message_type, sender_cert, message.to_bytes(), content_hint, group_id
        )
        return sealed_sender_encrypt_from_usmc(destination, usmc, store, rng=rng)


def sealed_sender_decrypt_to_usmc(
    data: bytes, store: ProtocolStore
) -> UnidentifiedSenderMessageContent:
    """Unseal (v1 or received v2) with our identity key; the certificate is NOT validated.

    Raises:
        See :func:`securemsg.protocol.sealed_sender.unseal`.
    """
    return unseal(data, store.get_identity_key_pair())


def sealed_sender_decrypt(
    data: bytes,
    trust_roots: PublicKey | Sequence[PublicKey],
    store: ProtocolStore,
    *,
    now: int,
    local_uuid: str,
    local_device_id: int,
    rng: Rng,
    local_e164: str | None = None,
) -> SealedSenderDecryptionResult:
    """Unseal, validate the sender certificate, refuse self-sends, decrypt the inner 1:1
    message (PreKey or Whisper) with :func:`securemsg.cipher.message_decrypt`.

    ``local_uuid`` and ``local_device_id`` are required (our own address: the inner message's
    address binding is checked against it, as in libsignal).

    Raises:
        UsageError: ``local_uuid`` not a str, ``local_device_id`` not an int in 1..127, or
            ``local_e164`` neither a str nor None (checked before anything else).
        DecodeError / UnsupportedVersionError: malformed envelope or contents.
        InvalidMessageError: tampered envelope (no state changes).
        SealedSenderError: ``reason`` in ``"revoked"``, ``"untrusted"``, ``"bad-signature"``,
            ``"expired"``, ``"unknown-server-certificate"``, ``"key-mismatch"``,
            ``"self-send"``, ``"unexpected-type"`` (a SenderKey/Plaintext inner message: use
            :func:`sealed_sender_decrypt_to_usmc`).
        Anything :func:`securemsg.cipher.message_decrypt` raises.
    """
    local = ProtocolAddress(local_uuid, local_device_id)  # UsageError on a wrong type, first
    if local_e164 is not None and not isinstance(local_e164, str):
        raise UsageError("local_e164 must be a str or None")
    usmc = sealed_sender_decrypt_to_usmc(data, store)
    cert = usmc.sender
    cert.validate(trust_roots, now)
    is_local_uuid = cert.sender_uuid == local_uuid
    is_local_e164 = (
        local_e164 is not None and cert.sender_e164 is not None and local_e164 == cert.sender_e164
    )
    if (is_local_uuid or is_local_e164) and cert.sender_device_id == local_device_id:
        raise SealedSenderError("sealed sender message from ourselves", "self-send")
    if usmc.msg_type not in (CiphertextMessageType.PREKEY, CiphertextMessageType.WHISPER):
        raise SealedSenderError("unexpected inner message type", "unexpected-type")
    sender = ProtocolAddress(cert.sender_uuid, cert.sender_device_id)
    with store.transaction():
        plaintext = cipher.message_decrypt(
            usmc.contents, usmc.msg_type, sender, store, now=now, rng=rng, local_address=local
        )
    return SealedSenderDecryptionResult(sender, plaintext)


def sealed_sender_multi_recipient_encrypt(
    destinations: Sequence[ProtocolAddress],
    usmc: UnidentifiedSenderMessageContent,
    store: ProtocolStore,
    *,
    rng: Rng,
    excluded_recipients: Iterable[ServiceId] = (),
) -> bytes:
    """Build the sent form of a sealed sender v2 message for every destination device.

    Consecutive destinations with the same name form one recipient (one identity key, one
    48-byte key block); each device's registration id comes from its stored session.

    Raises:
        UsageError: a destination name that is not a service id string.
        NoSessionError: no session (or no current state) or no identity for a destination.
    """
    groups: list[tuple[str, list[ProtocolAddress]]] = []
    for d in destinations:
        if not isinstance(d, ProtocolAddress):
            raise UsageError("destinations must be ProtocolAddress values")
        if groups and groups[-1][0] == d.name:
            groups[-1][1].append(d)
        else:
            groups.append((d.name, [d]))
    recipients: list[MultiRecipient] = []
    for name, addresses in groups:
        sid = ServiceId.try_parse(name)
        if sid is None:
            raise UsageError("multi-recipient sealed sender needs service-id names")
        identity = store.get_identity(addresses[0])
        if identity is None:
            raise NoSessionError("no identity key for a destination")
        devices: list[tuple[int, int]] = []
        for a in addresses:
            record = store.load_session(a)
            state = None if record is None else record.current
            if state is None:
                raise NoSessionError("no current session for a destination")
            devices.append((a.device_id, state.remote_registration_id))
        recipients.append(MultiRecipient(sid, identity, tuple(devices)))
    return multi_recipient_encrypt(
        usmc, recipients, store.get_identity_key_pair(), rng, excluded_recipients
    )


def sealed_sender_multi_recipient_message_for_single_recipient(
    sent: bytes, service_id: ServiceId | None = None
) -> bytes:
    """The relay's split: the received form for one recipient of a sent v2 message.

    With ``service_id`` None the message must list exactly one recipient, counting excluded
    ones (libsignal's
    ``sealedSenderMultiRecipientMessageForSingleRecipient``).

    Raises:
        DecodeError / UnsupportedVersionError: malformed sent message.
        UsageError: not a recipient, or several recipients and no ``service_id``.
    """
    parsed = SealedSenderV2SentMessage.parse(sent)
    if service_id is None:
        if len(parsed.recipients) + len(parsed.excluded_recipients) != 1:
            raise UsageError("message must have exactly one (included) recipient")
        if not parsed.recipients:  # the one listed recipient is an excluded one
            raise UsageError("not a recipient of this message")
        service_id = next(iter(parsed.recipients))
    return parsed.message_for_recipient(service_id)
