"""Hardening, operations: SIGTERM drains a real `sfu-server` process, a join during the
drain is refused with server_busy, `--self-signed` serves HTTPS, and the CLI's TURN and
join-rate flags."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from benchmarks.servers import ServerProcess
from signaling.cli import ConfigError, parse_config
from signaling.config import ServerConfig
from signaling.tls import write_self_signed
from tests.hardening_util import (
    Baseline,
    hardening_config,
    media_client,
    publishing_pair,
    running,
    wait_until,
)

# the server runs in another process (or not at all): this one's aiortc needs the policy
pytestmark = pytest.mark.usefixtures("loopback_ice")


@pytest.fixture
async def server_process() -> AsyncIterator[list[ServerProcess]]:
    """Start `sfu-server` subprocesses on demand; stop leftovers by PID at the end."""
    made: list[ServerProcess] = []
    yield made
    for sp in made:
        await asyncio.to_thread(sp.stop)


async def start_process(
    made: list[ServerProcess], *flags: str, scheme: str = "http"
) -> ServerProcess:
    sp = ServerProcess("--log-level", "WARNING", *flags, scheme=scheme, start_timeout=20)
    made.append(sp)
    await asyncio.to_thread(sp.wait_ready)
    return sp


async def test_sigterm_drains(server_process: list[ServerProcess]) -> None:
    sp = await start_process(server_process)
    clients = await publishing_pair(sp.url)
    for client in clients:
        await client.wait_more_frames(10, timeout=20)
    idle = await media_client(sp.url)  # connected, never joined
    started = time.monotonic()
    sp.terminate()
    code = await asyncio.to_thread(sp.wait, 10)
    exited = time.monotonic() - started
    print(f"\nSIGTERM -> exit {code} in {exited:.2f} s")
    assert code == 0, sp.tail()
    # the drain itself takes ms; aiohttp then waits up to shutdown_timeout (5 s) for the
    # websocket handlers of clients that have not closed their end yet
    assert exited < 7.0
    for client in [*clients, idle]:
        await wait_until(lambda c=client: not c.sio.connected, 5)
        errors = client.named("error")
        assert errors and errors[0]["code"] == "server_busy", client.events
        await client.close()


async def test_join_during_drain_is_server_busy() -> None:
    base = Baseline.take()
    async with running(ServerConfig(sfu=hardening_config())) as server:
        alice = await media_client(server.url)
        await alice.join("media", "Alice")
        await server.app.shutdown()  # on_shutdown: drain (the listener stays up here)
        await wait_until(lambda: not alice.sio.connected, 5)
        assert [e["code"] for e in alice.named("error")] == ["server_busy"]
        late = await media_client(server.url)
        ack = await late.call("join", {"room": "media", "name": "Late"})
        assert ack["ok"] is False and ack["error"]["code"] == "server_busy", ack
        async with aiohttp.ClientSession() as http, http.get(server.url + "/healthz") as resp:
            assert (await resp.json())["status"] == "draining"
        await late.close()
        await alice.close()
    await base.wait_back()


async def test_self_signed_https(server_process: list[ServerProcess]) -> None:
    sp = await start_process(server_process, "--self-signed", scheme="https")
    async with aiohttp.ClientSession() as http:
        async with http.get(sp.url + "/healthz", ssl=False) as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "ok"
        # the certificate does not verify (self-signed), and plain http is not served
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with http.get(sp.url + "/healthz"):
                pass
        with pytest.raises(aiohttp.ClientError):
            async with http.get(sp.url.replace("https", "http") + "/healthz"):
                pass
    # Socket.IO works over it too
    sio_client = await media_client(sp.url, ssl_verify=False)
    await sio_client.join("tls", "Alice")
    await sio_client.close()
    sp.terminate()
    assert await asyncio.to_thread(sp.wait, 10) == 0


def test_self_signed_certificate(tmp_path: Path) -> None:
    cert_path, key_path = write_self_signed(tmp_path, ["sfu.lan", "192.168.1.5"])
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "sfu.lan" in san.get_values_for_type(x509.DNSName)
    ips = {str(ip) for ip in san.get_values_for_type(x509.IPAddress)}
    assert {"192.168.1.5", "127.0.0.1"} <= ips
    assert key_path.stat().st_mode & 0o077 == 0
    ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert_path, key_path)


def test_cli_hardening_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config(
        [
            "--turn-secret",
            "s3cret",
            "--turn-url",
            "turn:127.0.0.1:3478?transport=udp",
            "--turn-url",
            "turns:turn.example:5349",
            "--turn-ttl",
            "600",
            "--join-rate",
            "5",
            "--join-burst",
            "10",
            "--self-signed",
        ]
    )
    assert config.turn_secret == "s3cret" and config.turn_ttl == 600
    assert config.turn_urls == ("turn:127.0.0.1:3478?transport=udp", "turns:turn.example:5349")
    assert (config.join_per_second, config.join_burst, config.self_signed) == (5.0, 10, True)
    monkeypatch.setenv("SFU_TURN_SECRET", "env-secret")
    monkeypatch.setenv("SFU_TURN_URL", "turn:a:3478,turn:b:3478")
    monkeypatch.setenv("SFU_SELF_SIGNED", "1")
    config = parse_config([])
    assert config.turn_secret == "env-secret" and config.turn_urls == ("turn:a:3478", "turn:b:3478")
    assert config.self_signed
    for bad in (
        ["--turn-url", "http://x"],
        ["--turn-ttl", "5"],
        ["--join-rate", "0"],
        ["--self-signed", "--tls-cert", "/nonexistent", "--tls-key", "/nonexistent"],
    ):
        with pytest.raises(ConfigError):
            parse_config(bad)
    monkeypatch.delenv("SFU_TURN_SECRET")
    with pytest.raises(ConfigError):
        parse_config(["--turn-url", "turn:a:3478"])  # a URL without a secret
