"""One envelope must not hold up the ones behind it.

Any account could send an envelope the client could decode but not store: a timestamp of
2^64 - 1 (a valid protobuf u64) in a retry request or inside an encrypted content overflowed
SQLite's signed 64-bit integers, the untyped error rolled back the whole batch, nothing was
acknowledged, and on every reconnect the same envelope came back first: the account's
backlog was stuck until it expired. Such a content timestamp is refused when decoded now (a
typed error, recorded as a failure), a retry request for one is ignored, and any other
unexpected error in one envelope is recorded as that envelope's failure instead of spoiling
its batch.
"""

from __future__ import annotations

import functools
import uuid
from pathlib import Path

import pytest
from client_harness import new_client, run, with_relay

from securemsg._proto import content_pb2
from securemsg.client import Client
from securemsg.errors import DecodeError
from securemsg.relay.server import RelayServer
from securemsg.relay_protocol.frames import (
    Envelope,
    EnvelopeType,
    OutgoingMessage,
    SendMessage,
    SendSealed,
)
from securemsg.wire.content import (
    CONTENT_VERSION,
    DecryptionErrorMessage,
    decode_content,
    pad,
    plaintext_content_for,
)

TOO_BIG = 2**64 - 1


def _content_bytes(timestamp: int, text: str) -> bytes:
    return content_pb2.Content(
        version=CONTENT_VERSION, timestamp=timestamp, text=text
    ).SerializeToString()


def test_a_content_timestamp_past_signed_64_bits_is_a_decode_error() -> None:
    assert decode_content(_content_bytes(2**63 - 1, "ok")).timestamp == 2**63 - 1
    with pytest.raises(DecodeError):
        decode_content(_content_bytes(2**63, "too late"))


@pytest.mark.parametrize("how", ["identified retry request", "sealed content"])
def test_a_poison_envelope_does_not_block_the_backlog(tmp_path: Path, how: str) -> None:
    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "alice.db")
        bob = await new_client(relay, tmp_path / "bob.db")
        mallory = await new_client(relay, tmp_path / "mallory.db")
        try:
            alice.add_contact(bob.contact_card)
            mallory.add_contact(bob.contact_card)
            bob_aci, bob_reg = bob.aci, bob.store.get_local_registration_id()
            await bob.close()  # offline: what follows queues up behind the poison
            if how == "identified retry request":
                request = plaintext_content_for(DecryptionErrorMessage.new(TOO_BIG, 1))
                out = OutgoingMessage(
                    1, bob_reg, int(EnvelopeType.PLAINTEXT_CONTENT), request.to_bytes()
                )
                sent = await mallory._request(SendMessage(uuid.UUID(bob_aci).bytes, 1, (out,)))
            else:
                await mallory._ensure_sessions(bob_aci)
                cert = await mallory._sender_certificate()
                plaintext = pad(_content_bytes(TOO_BIG, "poison"))
                messages = await mallory._in_db(
                    functools.partial(
                        mallory._encrypt_for_devices, bob_aci, plaintext, cert, mallory._now()
                    )
                )
                conn = await mallory._unidentified()
                key = mallory.store.get_access_key(bob_aci)
                assert key is not None
                sent = await conn.request(
                    SendSealed(uuid.UUID(bob_aci).bytes, key, 1000, tuple(messages))
                )
            assert sent.code == 0, sent
            for i in range(3):
                await alice.send_text(bob_aci, f"from alice {i}")
            bob = await Client.open(tmp_path / "bob.db")
            await bob.connect()
            got = []
            while (m := await bob.receive(timeout=3)) is not None:
                got.append(m.text)
            assert got == [f"from alice {i}" for i in range(3)]
            # a retry request for no message of ours is ignored; a content is refused
            assert len(bob.failures()) == (0 if how == "identified retry request" else 1)
            await bob.close()
        finally:
            await alice.close()
            await mallory.close()

    run(with_relay(tmp_path, body), timeout=120)


def test_an_unexpected_error_in_one_envelope_spoils_neither_its_batch_nor_the_next(
    tmp_path: Path,
) -> None:
    """Whatever a future bug raises while one envelope is processed, that envelope is
    recorded as a failure and acknowledged; the others in its batch are delivered."""

    async def body(relay: RelayServer) -> None:
        alice = await new_client(relay, tmp_path / "alice.db")
        bob = await new_client(relay, tmp_path / "bob.db")
        try:
            alice.add_contact(bob.contact_card)
            bob_aci = bob.aci
            await bob.close()
            for i in range(4):
                await alice.send_text(bob_aci, f"m{i}")
            bob = await Client.open(tmp_path / "bob.db")
            real = bob._decrypt_and_record
            seen: list[bytes] = []

            def flaky(envelope: Envelope, *args: object) -> None:
                if envelope.id not in seen:
                    seen.append(envelope.id)
                if len(seen) > 1 and envelope.id == seen[1]:  # the second envelope
                    raise OverflowError("a bug somewhere below")
                real(envelope, *args)  # type: ignore[arg-type]

            bob._decrypt_and_record = flaky  # type: ignore[method-assign]
            await bob.connect()
            got = []
            while (m := await bob.receive(timeout=3)) is not None:
                got.append(m.text)
            assert got == ["m0", "m2", "m3"]
            (failure,) = bob.failures()
            assert failure.reason == "invalid-message"
            await bob.close()
            bob = await Client.open(tmp_path / "bob.db")  # nothing comes back
            await bob.connect()
            assert await bob.receive(timeout=1) is None
            await bob.close()
        finally:
            await alice.close()

    run(with_relay(tmp_path, body), timeout=120)
