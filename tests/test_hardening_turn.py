"""TURN: ephemeral credentials (coturn use-auth-secret) in join acks, and media through a
real coturn on 127.0.0.1 from a client whose ICE policy is relay-only."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiortc import RTCConfiguration, RTCIceServer
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from sfu.turn import TurnCredentials, turn_credential, turn_username
from signaling.client import SfuClient
from signaling.config import ServerConfig
from signaling.lifecycle import stop_process
from tests.hardening_util import (
    hardening_config,
    media_client,
    publish_video,
    running,
    wait_until,
)

SECRET = "turn-shared-secret"


def test_credential_vector() -> None:
    # computed independently: printf '1433895918:alice' | openssl dgst -sha1 -hmac north
    assert turn_credential("north", "1433895918:alice") == "RqMvcGPYTJMGThVLSi4amT4zFtI="
    assert turn_username("p7", ttl=86400, now=1_000_000.5) == "1086400:p7"
    with pytest.raises(ValueError):
        turn_username("a:b")
    with pytest.raises(ValueError):
        turn_username("p1", ttl=0)


def test_ice_server_shape() -> None:
    creds = TurnCredentials(SECRET, ("turn:127.0.0.1:3478", "turns:t.example:5349"), ttl=600)
    server = creds.ice_server("p3", now=1000.0)
    assert server == {
        "urls": ["turn:127.0.0.1:3478", "turns:t.example:5349"],
        "username": "1600:p3",
        "credential": turn_credential(SECRET, "1600:p3"),
    }
    for bad in (
        {"secret": "", "urls": ("turn:a",)},
        {"secret": "s", "urls": ()},
        {"secret": "s", "urls": ("stun:a",)},
        {"secret": "s", "urls": ("turn:a",), "ttl": 1},
    ):
        with pytest.raises(ValueError):
            TurnCredentials(**bad)  # type: ignore[arg-type]


async def test_join_ack_carries_turn_credentials() -> None:
    config = ServerConfig(
        sfu=hardening_config(),
        turn_secret=SECRET,
        turn_urls=("turn:127.0.0.1:3478",),
        turn_ttl=3600,
    )
    async with running(config) as server:
        client = await media_client(server.url)
        ack = await client.join("r", "Alice")
        (ice,) = ack.ice_servers
        expiry, user = ice["username"].split(":")
        assert user == ack.id
        assert abs(int(expiry) - (time.time() + 3600)) < 5
        assert ice["credential"] == turn_credential(SECRET, ice["username"])
        assert ice["urls"] == ["turn:127.0.0.1:3478"]
        await client.close()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def coturn(tmp_path: Any) -> Iterator[int]:
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.skip("coturn not installed (apt-get install coturn)")
    port = free_udp_port()
    log = tmp_path / "turn.log"
    proc = subprocess.Popen(
        [
            binary,
            "-n",  # no configuration file
            f"--listening-port={port}",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            "--min-port=49160",
            "--max-port=49260",
            "--use-auth-secret",
            f"--static-auth-secret={SECRET}",
            "--realm=sfu.test",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--allow-loopback-peers",
            "--no-stdout-log",
            f"--log-file={log}",
            "--simple-log",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)  # binds at once; no readiness signal besides the log
        assert proc.poll() is None, log.read_text() if log.exists() else "coturn exited"
        yield port
    finally:
        stop_process(proc)


def selected_local_types(client: SfuClient) -> set[str]:
    """Types of the local candidates of the client's nominated ICE pairs."""
    assert client.pc is not None
    types = set()
    for transceiver in client.pc.getTransceivers():
        connection = transceiver.sender.transport.transport._connection
        types |= {pair.local_candidate.type for pair in connection._nominated.values()}
    return types


async def test_media_through_coturn_relay_only(coturn: int) -> None:
    config = ServerConfig(
        sfu=hardening_config(negotiation_timeout=15.0),
        turn_secret=SECRET,
        turn_urls=(f"turn:127.0.0.1:{coturn}?transport=udp",),
    )
    async with running(config) as server:
        direct = await media_client(server.url, ice_servers=[])  # host candidates only
        await direct.join("relay", "Direct")
        # the relayed client takes ONLY the TURN server from its join ack, relay-only policy
        relayed = await media_client(server.url, relay_only=True)
        ack = await relayed.join("relay", "Relayed")
        assert len(ack.ice_servers) == 1
        await publish_video(direct)
        await publish_video(relayed)
        local_sdp = relayed.pc.localDescription.sdp  # type: ignore[union-attr]
        candidates = [line for line in local_sdp.splitlines() if line.startswith("a=candidate")]
        assert candidates and all(" typ relay" in c for c in candidates), candidates
        await relayed.wait_more_frames(15, timeout=20)  # Direct's video, in through coturn
        await direct.wait_more_frames(15, timeout=20)  # Relayed's video, out through coturn
        assert selected_local_types(relayed) == {"relay"}
        for client in (direct, relayed):
            await client.close()
        await wait_until(lambda: not server.rooms.rooms, 10)


async def test_wrong_turn_secret_gets_no_relay(coturn: int) -> None:
    """coturn refuses credentials minted with another secret: no relay candidate."""
    from aiortc import RTCPeerConnection

    username = turn_username("x", ttl=600)
    pc = RTCPeerConnection(
        RTCConfiguration(
            iceServers=[
                RTCIceServer(
                    f"turn:127.0.0.1:{coturn}?transport=udp",
                    username,
                    turn_credential("wrong", username),
                )
            ],
            iceTransportPolicy=RTCIceTransportPolicy.RELAY,
        )
    )
    pc.addTransceiver("video", direction="recvonly")
    try:
        async with asyncio.timeout(20):
            await pc.setLocalDescription(await pc.createOffer())
        assert "typ relay" not in pc.localDescription.sdp
    finally:
        await pc.close()
