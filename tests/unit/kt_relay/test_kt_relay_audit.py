"""The auditor (``securemsg kt audit``) against a real relay and its database: 100 epochs with
random churn verify; a tampered append-only proof or head chain is refused."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from kt_relay_harness import kt_of, rewrite_responses, run

from securemsg.cli.kt_audit import audit_db, audit_relay, load_auditor_key
from securemsg.cli.main import cli
from securemsg.crypto.kt_primitives import Ed25519SigningKey
from securemsg.errors import (
    KeyTransparencyDecodeError,
    KeyTransparencyError,
    KeyTransparencyHeadError,
    KeyTransparencyProofError,
    UsageError,
)
from securemsg.kt.cosign import count_cosignatures
from securemsg.kt.heads import SignedEpochHead
from securemsg.relay.server import RelayServer
from securemsg.relay.service import RelayConfig, RelayService
from securemsg.relay_protocol import frames as rf
from securemsg.relay_protocol.akd import decode_append_only_proof, encode_append_only_proof


async def _churn(relay: RelayServer, epochs: int, seed: int) -> None:
    """``epochs`` epochs of random registrations and key changes (queued as a registration
    or key change would queue them), published through the relay."""
    rnd = random.Random(seed)
    labels: list[bytes] = []
    for _ in range(epochs):
        changes: dict[bytes, bytes] = {}
        for _ in range(rnd.randint(1, 6)):
            if labels and rnd.random() < 0.4:
                label = rnd.choice(labels)
            else:
                label = rnd.randbytes(16)
                labels.append(label)
            changes[label] = b"\x05" + rnd.randbytes(32)

        def queue(service: RelayService, changes: dict[bytes, bytes] = changes) -> None:
            for label, value in changes.items():
                kt_of(relay).store.queue(label, value)

        await relay.call(queue)
        assert await relay.publish_kt_epoch() is not None


def test_the_auditor_verifies_100_epochs_of_churn_and_refuses_tampering(tmp_path: Path) -> None:
    auditor = Ed25519SigningKey(b"\x09" * 32)
    config = RelayConfig(kt_auditor_keys=(auditor.public_key,))

    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db", config=config) as relay:
            await _churn(relay, 100, seed=1)
            report = await audit_relay(relay.url)
            assert (report.from_epoch, report.to_epoch, report.cosigned) == (0, 100, 0)
            assert report.head_key == kt_of(relay).head_public_key.hex()
            partial = await audit_relay(relay.url, from_epoch=90, auditor_key=auditor)
            assert (partial.from_epoch, partial.to_epoch, partial.cosigned) == (90, 100, 10)
            head100 = await relay.call(lambda _s: kt_of(relay).store.signed_head(100))
            cosigs = await relay.call(lambda _s: kt_of(relay).store.cosignatures(100))
            head = SignedEpochHead.from_bytes(head100).head
            assert count_cosignatures(head, cosigs, [auditor.public_key]) == 1

            def drop_a_leaf(frame: rf.ClientFrame, response: rf.Response) -> rf.Response:
                if not isinstance(response.body, rf.KtAppendOnlyResult):
                    return response
                proof = decode_append_only_proof(response.body.proof)
                step = proof.proofs[0]
                if frame.body == rf.KtAppendOnly(41, 42):  # one epoch "lost" a leaf
                    step = dataclasses.replace(step, inserted=step.inserted[1:])
                tampered = dataclasses.replace(proof, proofs=(step,))
                return dataclasses.replace(
                    response, body=rf.KtAppendOnlyResult(encode_append_only_proof(tampered))
                )

            rewrite_responses(relay, drop_a_leaf)
            with pytest.raises(KeyTransparencyProofError) as info:
                await audit_relay(relay.url)
            assert info.value.reason == "append-only"
            await audit_relay(relay.url, from_epoch=42)  # the steps after it still verify

    run(body(), timeout=300)


def test_the_auditor_refuses_a_broken_head_chain_and_garbage(tmp_path: Path) -> None:
    async def body() -> None:
        async with RelayServer(tmp_path / "relay.db") as relay:
            await _churn(relay, 5, seed=2)
            real = await relay.call(lambda _s: kt_of(relay).store.signed_heads(0, 10))
            mode = ["chain"]

            def hostile(frame: rf.ClientFrame, response: rf.Response) -> rf.Response:
                if isinstance(response.body, rf.KtHeads) and mode[0] == "chain":
                    heads = list(response.body.heads)
                    heads[2] = rf.KtHead(real[3])  # epoch 3 replaced: a gap
                    return dataclasses.replace(
                        response, body=rf.KtHeads(tuple(heads), response.body.latest_epoch)
                    )
                if isinstance(response.body, rf.KtAppendOnlyResult) and mode[0] == "garbage":
                    return dataclasses.replace(response, body=rf.KtAppendOnlyResult(b"\x0a\x01"))
                return response

            rewrite_responses(relay, hostile)
            with pytest.raises(KeyTransparencyHeadError):
                await audit_relay(relay.url)
            mode[0] = "garbage"
            with pytest.raises(KeyTransparencyDecodeError):
                await audit_relay(relay.url)
            with pytest.raises(KeyTransparencyHeadError):
                await audit_relay(relay.url, head_key=b"\x01" * 32)

    run(body())


def test_kt_audit_command_on_the_database_cosigns(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"

    async def body() -> None:
        async with RelayServer(db) as relay:
            await _churn(relay, 12, seed=3)

    run(body())
    key_file = tmp_path / "auditor.key"
    result = CliRunner().invoke(
        cli, ["kt", "audit", "--db", str(db), "--cosign-key", str(key_file)]
    )
    assert result.exit_code == 0, result.output
    assert "verified epochs 0..12: 12 append-only step(s)" in result.output
    assert "cosigned 12 head(s)" in result.output
    assert key_file.stat().st_mode & 0o777 == 0o600
    auditor = load_auditor_key(key_file)
    assert f"auditor key: {auditor.public_key.hex()}" in result.output
    assert audit_db(db, from_epoch=5).to_epoch == 12
    again = CliRunner().invoke(cli, ["kt", "audit", "--db", str(db), "--relay", "ws://x"])
    assert again.exit_code == 2
    bad = CliRunner().invoke(cli, ["kt", "audit", "--db", str(db), "--from", "13"])
    assert bad.exit_code == 1 and "Error" in bad.output
    assert issubclass(KeyTransparencyHeadError, KeyTransparencyError)


def test_an_auditor_key_file_others_could_read_or_plant_is_refused(tmp_path: Path) -> None:
    """A seed someone else wrote or can read lets them cosign as this auditor: like ssh with
    its keys, only a private file of our own is used (never through a link)."""
    readable = tmp_path / "readable.key"
    readable.write_text("07" * 32 + "\n")
    readable.chmod(0o644)
    with pytest.raises(UsageError, match="chmod 600"):
        load_auditor_key(readable)
    target = tmp_path / "target.key"
    target.write_text("07" * 32 + "\n")
    target.chmod(0o600)
    link = tmp_path / "link.key"
    link.symlink_to(target)
    with pytest.raises(UsageError, match="symbolic link"):
        load_auditor_key(link)
    assert load_auditor_key(target).public_key  # a private file of ours is used
