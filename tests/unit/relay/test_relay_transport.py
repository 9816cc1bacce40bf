"""Transport security over loopback: wss:// with a self-signed certificate made in the test
(raw frames and the client SDK), browser Origins refused unless allowed, and the warning for
a plaintext relay on a non-loopback address."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import ssl
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from relay_harness import NOW, TIMEOUT, run
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from securemsg.cli.main import cli
from securemsg.client import Client
from securemsg.relay.server import RelayServer, _is_loopback
from securemsg.relay.service import RelayConfig
from securemsg.relay_protocol import frames as rf


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A P-256 certificate for 127.0.0.1 / localhost, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "securemsg test relay")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "relay.crt", tmp / "relay.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def contexts(tmp: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = self_signed(tmp)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


def test_tls_round_trip_with_a_self_signed_certificate(tmp_path: Path) -> None:
    server_ctx, client_ctx = contexts(tmp_path)

    async def body() -> None:
        async with RelayServer(tmp_path / "r.db", ssl=server_ctx) as relay:
            assert relay.url.startswith("wss://127.0.0.1:")
            # Raw frames over wss.
            ws = await connect(relay.url, ssl=client_ctx, open_timeout=TIMEOUT)
            first = rf.decode_server_frame(await ws.recv())  # type: ignore[arg-type]
            assert isinstance(first, rf.Challenge)
            await ws.close()
            # A client that does not trust the certificate cannot connect.
            with pytest.raises(ssl.SSLCertVerificationError):
                await connect(relay.url, open_timeout=TIMEOUT)
            # Plain ws:// to a TLS port gets nowhere.
            with pytest.raises(Exception):  # noqa: B017 - any handshake failure will do
                await connect(relay.url.replace("wss://", "ws://"), open_timeout=2)
            # The client SDK end to end: register two devices, send, receive.
            alice = await Client.create(tmp_path / "a.db", relay.url, relay.trust_root_public)
            bob = await Client.create(tmp_path / "b.db", relay.url, relay.trust_root_public)
            for c in (alice, bob):
                c.relay_ssl = client_ctx
                await c.register()
            alice.add_contact(bob.contact_card)
            bob.add_contact(alice.contact_card)
            await alice.send_text(bob.aci, "over TLS")
            got = await bob.receive(timeout=30)
            assert got is not None and got.text == "over TLS"
            await alice.close()
            await bob.close()

    run(body)


def test_browser_origins_are_refused_unless_allowed(tmp_path: Path) -> None:
    config = RelayConfig(allowed_origins=("https://app.example",))

    async def body() -> None:
        async with RelayServer(tmp_path / "r.db", config=config, clock=lambda: NOW) as relay:
            with pytest.raises(InvalidStatus) as info:
                await connect(relay.url, origin="https://evil.example", open_timeout=TIMEOUT)  # type: ignore[arg-type]
            assert info.value.response.status_code == 403
            ok = await connect(relay.url, origin="https://app.example", open_timeout=TIMEOUT)  # type: ignore[arg-type]
            assert isinstance(rf.decode_server_frame(await ok.recv()), rf.Challenge)  # type: ignore[arg-type]
            await ok.close()
            plain = await connect(relay.url, open_timeout=TIMEOUT)  # no Origin: not a browser
            assert isinstance(rf.decode_server_frame(await plain.recv()), rf.Challenge)  # type: ignore[arg-type]
            await plain.close()

    run(body)

    async def default_policy() -> None:
        async with RelayServer(tmp_path / "r2.db") as relay:
            with pytest.raises(InvalidStatus) as info:
                await connect(relay.url, origin="http://localhost", open_timeout=TIMEOUT)  # type: ignore[arg-type]
            assert info.value.response.status_code == 403

    run(default_policy)


def test_loopback_detection_for_the_plaintext_warning() -> None:
    for host in ("127.0.0.1", "::1", "[::1]", "localhost", "127.8.9.10"):
        assert _is_loopback(host), host
    for host in ("0.0.0.0", "::", "", "192.0.2.1", "relay.example"):
        assert not _is_loopback(host), host


def test_cli_tls_options_must_come_together(tmp_path: Path) -> None:
    cert, _ = self_signed(tmp_path)
    result = CliRunner().invoke(
        cli, ["relay", "serve", "--db", str(tmp_path / "r.db"), "--tls-cert", str(cert)]
    )
    assert result.exit_code == 2 and "--tls-key" in result.output
    bad = tmp_path / "bad.pem"
    bad.write_text("not a key")
    args = ["relay", "serve", "--db", str(tmp_path / "r.db"), "--port", "0"]
    result = CliRunner().invoke(cli, [*args, "--tls-cert", str(cert), "--tls-key", str(bad)])
    assert result.exit_code == 1 and "TLS" in result.output


def test_plaintext_on_a_non_loopback_address_is_warned_about(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Binding stays on 127.0.0.1 (tests never listen elsewhere); the address check is
    made to answer "not loopback" to see what a real deployment would log."""
    import securemsg.relay.server as server_module

    async def body(ssl_ctx: ssl.SSLContext | None) -> None:
        async with RelayServer(tmp_path / f"r{ssl_ctx is None}.db", ssl=ssl_ctx):
            pass

    monkeypatch.setattr(server_module, "_is_loopback", lambda host: False)
    with caplog.at_level(logging.WARNING, logger="securemsg.relay"):
        run(lambda: body(None))
    assert "without TLS" in caplog.text
    caplog.clear()
    server_ctx, _ = contexts(tmp_path)
    with caplog.at_level(logging.WARNING, logger="securemsg.relay"):
        run(lambda: body(server_ctx))
    assert "without TLS" not in caplog.text
