"""Relay stats with real media: Python clients publish clips of known bitrate; /api/stats
shows the right tree and rates, /metrics parses and its counters grow."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.servers import RunningServer, running
from sfu.config import SfuConfig
from sfu.ice_policy import IcePolicy
from signaling.client import PacedVideoTrack, SfuClient, VideoClip, encode_clip
from signaling.config import ServerConfig

WAIT = 20.0


@pytest.fixture
async def stats_server() -> AsyncIterator[RunningServer]:
    config = ServerConfig(sfu=SfuConfig(ice_addresses=("127.0.0.1",)), stats_interval=0.5)
    async with running(config) as server:
        yield server


@pytest.fixture
async def publishers(
    stats_server: RunningServer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[list[SfuClient], dict[str, VideoClip]]]:
    policy = IcePolicy(["127.0.0.1"])
    policy.install()
    cache: Path = tmp_path_factory.mktemp("stats-clips")
    clients: list[SfuClient] = []
    clips: dict[str, VideoClip] = {}
    try:
        # two different bitrates, so a mix-up between tracks shows
        for i, bitrate in enumerate((200_000, 450_000)):
            clip = encode_clip(
                width=320,
                height=240,
                fps=15,
                seconds=2.0,
                bitrate=bitrate,
                marker=i + 1,
                cache_dir=cache,
            )
            client = await SfuClient.connect(stats_server.url, decode=False, timeout=WAIT)
            clients.append(client)
            await client.join("stats", f"pub{i}")
            await client.publish(video=PacedVideoTrack(clip))
            assert client.id is not None
            clips[client.id] = clip
        for client in clients:
            track = await client.wait_for_track(kind="video", timeout=WAIT)
            await track.wait_frames(5, timeout=WAIT)
        yield clients, clips
    finally:
        for client in clients:
            await client.close()
        policy.uninstall()


def clip_bitrate(clip: VideoClip) -> float:
    return sum(len(p.data) for p in clip.packets) * 8 / clip.duration


async def get_json(url: str) -> Any:
    async with aiohttp.ClientSession() as http, http.get(url) as resp:
        assert resp.status == 200
        return await resp.json()


async def get_metrics(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(url + "/metrics") as resp:
        assert resp.status == 200
        text = await resp.text()
    return {f.name: f for f in text_string_to_metric_families(text)}


async def test_api_stats_tree_and_bitrates(
    stats_server: RunningServer, publishers: tuple[list[SfuClient], dict[str, VideoClip]]
) -> None:
    _, clips = publishers
    await asyncio.sleep(6.0)  # fill the sampler's 5 s window with steady traffic
    stats = await get_json(stats_server.url + "/api/stats")
    server = stats["server"]
    assert stats["cluster"] is False  # a single node: the dashboard hides its nodes table
    assert server["rooms"] == 1 and server["participants"] == 2
    assert server["publishedTracks"] == 2 and server["forwardedStreams"] == 2
    assert server["forwarding"] == "passthrough"
    assert server["rssBytes"] > 10_000_000 and 0 <= server["eventLoopLag"] < 5
    [room] = stats["rooms"]
    assert room["name"] == "stats" and room["participantCount"] == 2
    by_id = {p["id"]: p for p in room["participants"]}
    assert set(by_id) == set(clips)
    for pid, clip in clips.items():
        expected = clip_bitrate(clip)
        person = by_id[pid]
        assert person["connectionState"] == "connected"
        [published] = person["published"]
        assert published["kind"] == "video" and published["codec"] == "video/VP8"
        assert published["subscribers"] == 1
        assert published["frames"] > 50 and published["keyframes"] >= 1
        assert abs(published["bitrateIn"] - expected) <= 0.25 * expected, (published, expected)
        assert abs(published["fps"] - clip.fps) <= 0.25 * clip.fps, published
        # the other participant's subscription carries this publisher's stream
        [other] = [p for p in by_id if p != pid]
        [sub] = by_id[other]["subscriptions"]
        assert sub["publisherId"] == pid and sub["kind"] == "video"
        assert abs(sub["bitrateOut"] - expected) <= 0.25 * expected, (sub, expected)
        assert sub["framesOut"] > 50 and sub["packetsOut"] > 50
        assert sub["drops"] == 0
        # the default send path is the lean one: (nearly) every packet went straight out
        assert sub["sendPath"] == "lean"
        assert sub["packetsLean"] > 0.9 * sub["packetsOut"], sub
        assert sub["packetsLean"] + sub["packetsStock"] == sub["packetsOut"], sub
        assert sub["gsoBatches"] >= 0 and sub["retransmits"] >= 0
        # the push path: the relay's fan-out sends (nearly) every frame, no task switch
        assert 0.5 * sub["framesOut"] < sub["framesPushed"] <= sub["framesOut"], sub
        # loss recovery and the downlink estimate: the bot's receiver reports reach it
        assert sub["receiverReports"] > 0, sub
        assert sub["nacksUnanswered"] == max(0, sub["nacks"] - sub["retransmits"])
        assert sub["lossFraction"] is not None and 0 <= sub["lossFraction"] <= 1, sub
        assert sub["linkPaused"] is False and "maxTid" in sub and "downlinkEstimate" in sub
        downlink = by_id[other]["downlink"]
        assert downlink["reports"] > 0 and downlink["decreases"] >= 0, downlink
        assert sub["downlinkEstimate"] == downlink["bitrate"]
        assert published["nacksSent"] >= 0 and published["rtxReceived"] >= 0
        # a cap only when the subscriber's estimate is well below the clip's bitrate
        assert published["framesLost"] >= 0 and "bitrateCap" in published
    for key in ("nacksSent", "rtxReceived", "framesLost", "nacksReceived", "retransmitsSent"):
        assert server[key] >= 0, key


async def test_metrics_counters_grow(
    stats_server: RunningServer, publishers: tuple[list[SfuClient], dict[str, VideoClip]]
) -> None:
    await asyncio.sleep(1.5)
    first = await get_metrics(stats_server.url)
    await asyncio.sleep(2.0)
    second = await get_metrics(stats_server.url)

    def value(families: dict[str, Any], name: str) -> float:
        return float(families[name].samples[0].value)

    assert value(second, "sfu_participants") == 2
    assert value(second, "sfu_published_tracks") == 2
    assert value(second, "sfu_forwarded_streams") == 2
    assert value(second, "sfu_publisher_caps") >= 0
    assert 0 <= value(second, "sfu_limited_downlinks") <= 2
    for counter in ("sfu_packets_forwarded", "sfu_bytes_forwarded", "sfu_frames_forwarded"):
        assert value(second, counter) > value(first, counter) > 0, counter
    joins = {s.labels["outcome"]: s.value for s in second["sfu_joins"].samples}
    assert joins["ok"] == 2
    assert value(second, "sfu_keyframe_requests") >= 1
    for counter in (
        "sfu_nacks_sent",
        "sfu_rtx_received",
        "sfu_frames_lost",
        "sfu_nacks_received",
        "sfu_retransmits_sent",
    ):
        assert value(second, counter) >= 0, counter


async def test_history_for_the_dashboard(
    stats_server: RunningServer, publishers: tuple[list[SfuClient], dict[str, VideoClip]]
) -> None:
    await asyncio.sleep(2.0)
    stats = await get_json(stats_server.url + "/api/stats?history=1")
    history = stats["history"]
    assert len(history) >= 3
    assert history[-1]["participants"] == 2 and history[-1]["bitrateOut"] > 0
    assert all(a["t"] < b["t"] for a, b in itertools.pairwise(history))
