"""Viewer pause end to end (issue #12): Python clients on 127.0.0.1 through a real server.
A subscriber that pauses a remote video (`video pause`) gets no video packets of it while
its audio keeps flowing; on resume the first video frame it gets is a keyframe."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from benchmarks.servers import RunningServer, running
from sfu.config import SfuConfig
from sfu.send_slot import SendSlot
from signaling.client import (
    PacedAudioTrack,
    PacedVideoTrack,
    RemoteTrack,
    SfuClient,
    SfuError,
    encode_clip,
)
from signaling.config import ServerConfig

WAIT = 20.0


@pytest.fixture
async def server() -> AsyncIterator[RunningServer]:
    config = SfuConfig(ice_addresses=("127.0.0.1",), negotiation_timeout=10.0)
    async with running(ServerConfig(sfu=config)) as server:
        yield server


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pause-clips")


async def packets_received(remote: RemoteTrack) -> int:
    """The client receiver's `inbound-rtp` packet count (every RTP packet, public stats)."""
    assert remote.receiver is not None
    stats = await remote.receiver.getStats()
    return sum(
        int(getattr(s, "packetsReceived", 0) or 0)
        for s in stats.values()
        if getattr(s, "type", "") == "inbound-rtp"
    )


def video_slot(server: RunningServer, room: str, subscriber: str, publisher: str) -> SendSlot:
    participant = server.rooms.rooms[room].participants[subscriber]
    return next(
        s
        for s in participant.send_slots()
        if s.kind == "video" and s.published is not None and s.published.publisher_id == publisher
    )


async def until(predicate: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(WAIT):
            while not predicate():  # noqa: ASYNC110 - polling state changed by tasks
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not within {WAIT} s: {what}") from None


async def test_paused_video_gets_no_packets_audio_flows_and_resume_starts_at_a_keyframe(
    server: RunningServer, make_client: Callable[..., Any], clip_dir: Path
) -> None:
    # a long GOP: the keyframe that ends the pause is the one the server asked for
    clip = await asyncio.to_thread(
        encode_clip,
        width=320,
        height=240,
        fps=15,
        seconds=4.0,
        gop=60,
        bitrate=250_000,
        marker=3,
        cache_dir=clip_dir,
    )
    publisher: SfuClient = await make_client(server.url, decode=False)
    await publisher.join("pause", "pub")
    await publisher.publish(video=PacedVideoTrack(clip), audio=PacedAudioTrack())
    viewer: SfuClient = await make_client(server.url, decode=False)
    await viewer.join("pause", "viewer")
    assert publisher.id is not None and viewer.id is not None
    video = await viewer.wait_for_track(participant_id=publisher.id, kind="video", timeout=WAIT)
    audio = await viewer.wait_for_track(participant_id=publisher.id, kind="audio", timeout=WAIT)
    keyframes: list[bool] = []
    viewer.on("frame", lambda r, f: keyframes.append(f.keyframe) if r is video else None)
    await video.wait_frames(5, timeout=WAIT)

    await viewer.pause_video(publisher.id, "camera", True)
    state = await viewer.wait_for_event(
        "video state", lambda p: p["participantId"] == publisher.id, WAIT
    )
    assert state.payload == {
        "participantId": publisher.id,
        "source": "camera",
        "state": "paused-viewer",
        "layer": None,
    }
    assert viewer.video_states[(publisher.id, "camera")] == "paused-viewer"
    slot = video_slot(server, "pause", viewer.id, publisher.id)
    assert slot.track.viewer_paused
    # the server drops the paused video: let a few frames go by so that nothing sent
    # before the pause is still in flight
    await until(lambda: slot.track.stats().viewer_dropped >= 5, "5 frames dropped")
    packets, frames_out = await packets_received(video), slot.track.stats().frames_out
    audio_frames = audio.stats.frames
    await until(lambda: slot.track.stats().viewer_dropped >= 15, "15 frames dropped")
    await audio.wait_frames(audio_frames + 25, timeout=WAIT)  # audio keeps flowing
    assert await packets_received(video) == packets  # not one video packet
    assert slot.track.stats().frames_out == frames_out

    keyframes.clear()
    waited = slot.track.stats().keyframes_waited
    await viewer.pause_video(publisher.id, "camera", False)
    await viewer.wait_for_event(
        "video state", lambda p: p["state"] == "active" and p["participantId"] == publisher.id, WAIT
    )
    assert viewer.video_states[(publisher.id, "camera")] == "active"
    await until(lambda: len(keyframes) >= 5, "5 video frames after resume")
    assert keyframes[0] is True  # the first frame after the pause is a keyframe
    assert slot.track.stats().keyframes_waited == waited + 1
    assert await packets_received(video) > packets


async def test_pausing_a_video_nobody_sends_is_refused_and_changes_nothing(
    server: RunningServer, make_client: Callable[..., Any]
) -> None:
    viewer: SfuClient = await make_client(server.url, decode=False)
    await viewer.join("nopause", "viewer")
    with pytest.raises(SfuError) as refused:
        await viewer.pause_video("p999", "camera", True)
    assert refused.value.code == "not_found"
    with pytest.raises(SfuError) as bad:
        await viewer.pause_video("p999", "microphone", True)
    assert bad.value.code == "bad_request"
    assert viewer.video_states == {}
