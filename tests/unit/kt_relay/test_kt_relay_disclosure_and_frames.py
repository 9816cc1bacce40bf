"""KT data in the disclosure report; the Kt* frames' codec and bounds; the relay's answers to
hostile or out-of-range KT requests; the KT tables across restarts."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from kt_relay_harness import aci_bytes, kt_of, new_client, publish_false_key, run

from securemsg.crypto.rng import SystemRng
from securemsg.errors import DecodeError, UsageError
from securemsg.kt.config import commitment
from securemsg.kt.verify import verify_lookup
from securemsg.relay.disclosure import disclose, unclassified_columns
from securemsg.relay.server import RelayServer
from securemsg.relay.service import RelayConfig, RelayService, Session
from securemsg.relay.store import SqliteRelayStore
from securemsg.relay_protocol import frames as rf
from securemsg.relay_protocol.akd import decode_lookup_proof


def test_the_disclosure_report_lists_the_accounts_kt_entries(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    false_key = b"\x05" + b"\x11" * 32

    async def body() -> str:
        async with RelayServer(db) as relay:
            bob = await new_client(relay, tmp_path / "bob.db")
            try:
                await relay.publish_kt_epoch()
                await publish_false_key(relay, aci_bytes(bob), false_key)
                await relay.call(lambda _s: kt_of(relay).store.queue(aci_bytes(bob), b"\x05" * 33))
                return bob.aci
            finally:
                await bob.close()

    aci = run(body())
    with SqliteRelayStore.open(db) as store:
        report = disclose(store, aci)
        assert unclassified_columns(store) == []
        lookup = RelayService(store, SystemRng()).kt
        assert lookup is not None
        proof = lookup.directory.lookup(uuid.UUID(aci).bytes)
    kt = json.loads(report.to_json())["key_transparency"]
    assert [(v["version"], v["epoch"]) for v in kt["versions"]] == [(1, 1), (2, 2)]
    assert kt["versions"][1]["identity_key"] == false_key.hex()
    # the commitment is the one the directory publishes (and a lookup proof opens)
    assert kt["versions"][1]["commitment"] == commitment(false_key, proof.commitment_nonce).hex()
    assert kt["queued_identity_key"] == ("05" * 33)
    text = report.to_text()
    assert "Key-transparency directory entries (2 published):" in text
    assert "queued for the next epoch" in text
    with SqliteRelayStore.open(db) as store:
        unknown = disclose(store, uuid.uuid4())
    assert unknown.key_transparency is not None and unknown.key_transparency.versions == ()


def test_kt_frames_round_trip_and_are_bounded() -> None:
    head = rf.KtHead(b"\x01" * 144, (rf.KtCosignature(b"\x02" * 32, b"\x03" * 64),))
    requests = [
        rf.KtGetKeys(),
        rf.KtGetHeads(7),
        rf.KtLookup(b"\x04" * 16),
        rf.KtHistory(b"\x04" * 16),
        rf.KtAppendOnly(1, 2),
        rf.KtCosign(3, b"\x02" * 32, b"\x03" * 64),
    ]
    for body in requests:
        frame = rf.ClientFrame(9, body)
        assert rf.decode_client_frame(rf.encode_client_frame(frame)) == frame
    bodies: list[rf.ResponseBody] = [
        rf.KtKeys(b"\x05" * 32, b"\x06" * 32),
        rf.KtHeads((head, head), 5),
        rf.KtProofResult(b"proof", head, False),
        rf.KtProofResult(b"", None, True),
        rf.KtAppendOnlyResult(b"proof"),
    ]
    for response_body in bodies:
        response = rf.Response(1, rf.StatusCode.OK, "", response_body)
        assert rf.decode_server_frame(rf.encode_server_frame(response)) == response
    with pytest.raises(UsageError):
        rf.encode_client_frame(rf.ClientFrame(1, rf.KtGetHeads(-1)))
    with pytest.raises(UsageError):
        rf.encode_client_frame(rf.ClientFrame(1, rf.KtCosign(1, b"\x02" * 31, b"\x03" * 64)))
    with pytest.raises(UsageError):
        rf.encode_server_frame(rf.Response(1, rf.StatusCode.OK, "", rf.KtHeads((head,) * 257, 1)))
    from securemsg._proto import relay_pb2

    pb = relay_pb2.ServerFrame()
    pb.response.kt_heads.SetInParent()
    for _ in range(rf.MAX_KT_HEADS + 1):
        pb.response.kt_heads.heads.add(signed_head=b"\x01" * 144)
    with pytest.raises(DecodeError):
        rf.decode_server_frame(pb.SerializeToString())
    pb = relay_pb2.ServerFrame()
    pb.response.kt_proof.head.signed_head = b"\x01" * 143
    with pytest.raises(DecodeError):
        rf.decode_server_frame(pb.SerializeToString())
    pb = relay_pb2.ServerFrame()
    for _ in range(rf.MAX_KT_COSIGNATURES + 1):
        pb.response.kt_proof.head.cosignatures.add(auditor_key=b"\x02" * 32, signature=b"\x03" * 64)
    pb.response.kt_proof.head.signed_head = b"\x01" * 144
    with pytest.raises(DecodeError):
        rf.decode_server_frame(pb.SerializeToString())


def test_the_relay_refuses_bad_kt_requests_and_keeps_its_keys(tmp_path: Path) -> None:
    db = tmp_path / "relay.db"
    with SqliteRelayStore.open(db) as store:
        config = RelayConfig(
            kt_audit_burst=3, kt_audit_refill_per_s=0.001, kt_auditor_keys=(b"\x02" * 32,)
        )
        service = RelayService(store, SystemRng(), config)
        kt = service.kt
        assert kt is not None
        keys = (kt.vrf_public_key, kt.head_public_key)
        kt.store.queue(b"\x01" * 16, b"\x05" * 33)
        assert service.publish_kt_epoch(1000) == 1
        anonymous = Session(nonce=b"\x00" * 32)

        def ask(body: rf.Request, session: Session = anonymous) -> rf.Response:
            return service.handle(session, rf.ClientFrame(1, body), 2000).response

        assert ask(rf.KtLookup(b"\x01" * 16)).code == rf.StatusCode.UNAUTHENTICATED
        assert ask(rf.KtHistory(b"\x01" * 16)).code == rf.StatusCode.UNAUTHENTICATED
        assert ask(rf.KtGetHeads(2)).code == rf.StatusCode.BAD_REQUEST
        assert ask(rf.KtAppendOnly(1, 1)).code == rf.StatusCode.BAD_REQUEST
        assert ask(rf.KtAppendOnly(0, 2)).code == rf.StatusCode.BAD_REQUEST
        assert ask(rf.KtCosign(0, b"\x02" * 32, b"\x03" * 64)).code == rf.StatusCode.BAD_REQUEST
        assert ask(rf.KtCosign(9, b"\x02" * 32, b"\x03" * 64)).code == rf.StatusCode.NOT_FOUND
        assert ask(rf.KtCosign(1, b"\x02" * 32, b"\x03" * 64)).code == rf.StatusCode.BAD_REQUEST
        assert ask(rf.KtCosign(1, b"\x04" * 32, b"\x03" * 64)).code == rf.StatusCode.FORBIDDEN
        for _ in range(3):  # the refused cosignatures spent none of the 3 tokens
            assert ask(rf.KtAppendOnly(0, 1)).code == rf.StatusCode.OK
        assert ask(rf.KtAppendOnly(0, 1)).code == rf.StatusCode.RATE_LIMITED
        me = Session(nonce=b"\x00" * 32, aci=b"\x07" * 16, device_id=1)
        assert ask(rf.KtHistory(b"\x01" * 16), me).code == rf.StatusCode.FORBIDDEN
        assert ask(rf.KtLookup(b"\x08" * 16), me).code == rf.StatusCode.NOT_FOUND
        found = ask(rf.KtLookup(b"\x01" * 16), me)
        assert isinstance(found.body, rf.KtProofResult) and found.body.head is not None
        head = found.body.head.signed_head
        verify_lookup(
            kt.vrf_public_key,
            head[8:40],
            1,
            b"\x01" * 16,
            decode_lookup_proof(found.body.proof),
        )
    with SqliteRelayStore.open(db) as store:
        again = RelayService(store, SystemRng()).kt
        assert again is not None and (again.vrf_public_key, again.head_public_key) == keys
        assert again.directory.epoch == 1
    with SqliteRelayStore.open(tmp_path / "other.db") as store:
        for bad in (
            RelayConfig(kt_max_epoch_changes=0),
            RelayConfig(kt_epoch_interval_s=0),
            RelayConfig(kt_auditor_keys=(b"short",)),
            RelayConfig(kt_auditor_keys=tuple(bytes([i]) * 32 for i in range(17))),
        ):
            with pytest.raises(UsageError):
                RelayService(store, SystemRng(), bad)
