"""Active speaker end to end: Python bots publish Opus whose RFC 6464 level the client
writes into each packet; the server's detector picks the loud one, ignores a short burst
and a muted bot, broadcasts `active speaker` and shows it in /api/stats."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from benchmarks.servers import RunningServer, running
from sfu.config import SfuConfig
from signaling.client import PacedAudioTrack, SfuClient
from signaling.config import ServerConfig

WAIT = 20.0
SILENT = 127


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    config = SfuConfig(ice_addresses=("127.0.0.1",), negotiation_timeout=10.0)
    async with running(ServerConfig(sfu=config)) as running_server:
        yield running_server


async def bot(
    make_client: Callable[..., Any], url: str, name: str, level: int, muted: bool = False
) -> tuple[SfuClient, PacedAudioTrack]:
    client: SfuClient = await make_client(url, decode=False)
    await client.join("speakers", name)
    if muted:
        await client.mute("audio", True)
    track = PacedAudioTrack()
    track.audio_level = level
    await client.publish(audio=track)
    return client, track


def speakers(client: SfuClient) -> list[Any]:
    return [e.payload["participantId"] for e in client.events if e.name == "active speaker"]


async def test_active_speaker_follows_the_loud_bot_ignores_bursts_and_muted(
    server: RunningServer, make_client: Callable[..., Any]
) -> None:
    loud_clip_level = PacedAudioTrack().audio_level
    assert loud_clip_level is not None and loud_clip_level < 20  # the tone is loud
    a, a_track = await bot(make_client, server.url, "a", loud_clip_level)
    b, b_track = await bot(make_client, server.url, "b", SILENT)
    c, _ = await bot(make_client, server.url, "c", 0, muted=True)  # loudest, but muted
    for client in (a, b, c):
        await client.wait_connected(WAIT)

    # the loud bot takes the floor; every participant hears of it
    for client in (a, b, c):
        event = await client.wait_for_event(
            "active speaker", lambda p: p["participantId"] == a.id, WAIT
        )
        assert c.id not in event.payload["levels"]
        assert b.id not in event.payload["levels"]
        assert 0 < event.payload["levels"][a.id] <= 1
    assert c.id not in speakers(b)
    # levels are steady now (no more events): a late joiner is told the current state
    late: SfuClient = await make_client(server.url, decode=False)
    await late.join("speakers", "late")
    await late.wait_for_event("active speaker", lambda p: p["participantId"] == a.id, WAIT)
    assert late.active_speaker == a.id and a.id in late.speaker_levels

    await asyncio.sleep(1.2)  # the stats sampler runs every second
    async with aiohttp.ClientSession() as http, http.get(f"{server.url}/api/stats") as response:
        stats = await response.json()
    room = next(r for r in stats["rooms"] if r["name"] == "speakers")
    assert room["activeSpeaker"] == a.id
    by_id = {p["id"]: p for p in room["participants"]}
    assert by_id[a.id]["published"][0]["audioLevel"] > 0.1
    assert by_id[b.id]["published"][0]["audioLevel"] == 0.0

    # a short burst from b does not take the floor
    b_track.audio_level = 5
    await asyncio.sleep(0.3)
    b_track.audio_level = SILENT
    await asyncio.sleep(2.0)
    assert b.id not in speakers(b), speakers(b)
    assert speakers(b)[-1] == a.id

    # a goes quiet, b speaks for real: the floor follows b (after the hold time)
    a_track.audio_level = SILENT
    b_track.audio_level = loud_clip_level
    started = asyncio.get_running_loop().time()
    await c.wait_for_event("active speaker", lambda p: p["participantId"] == b.id, WAIT)
    assert asyncio.get_running_loop().time() - started >= 0.8  # held the floor a moment
    assert c.id not in speakers(a)
