"""SFU core end to end: Python clients in one room on 127.0.0.1 publish paced VP8 + Opus
through a real server; every client receives every other's media, and it is theirs."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from benchmarks.servers import RunningServer, running
from sfu.config import ForwardingMode, SfuConfig
from signaling.client import (
    PacedAudioTrack,
    PacedVideoTrack,
    RemoteTrack,
    SfuClient,
    VideoClip,
    encode_clip,
    marker_from_frame,
)
from signaling.config import ServerConfig

WAIT = 20.0


@pytest.fixture(scope="session")
def clip_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture
def clips(clip_cache: Path) -> Callable[[int], VideoClip]:
    def make(marker: int) -> VideoClip:
        # small and short: the content, not the size, is what these tests check
        return encode_clip(
            width=320,
            height=240,
            fps=15,
            seconds=2.0,
            bitrate=250_000,
            marker=marker,
            cache_dir=clip_cache,
        )

    return make


async def serve(forwarding: ForwardingMode) -> AsyncIterator[RunningServer]:
    config = SfuConfig(
        ice_addresses=("127.0.0.1",), forwarding=forwarding, negotiation_timeout=10.0
    )
    async with running(ServerConfig(sfu=config)) as server:
        yield server


@pytest.fixture(params=["passthrough", "transcode"])
async def media_server(request: pytest.FixtureRequest) -> AsyncIterator[RunningServer]:
    async for server in serve(request.param):
        yield server


@pytest.fixture
async def passthrough_server() -> AsyncIterator[RunningServer]:
    async for server in serve("passthrough"):
        yield server


async def join_and_publish(
    make_client: Callable[..., Any],
    url: str,
    room: str,
    name: str,
    clip: VideoClip,
    decode: bool = True,
) -> SfuClient:
    client: SfuClient = await make_client(url, decode=decode)
    await client.join(room, name)
    await client.publish(video=PacedVideoTrack(clip), audio=PacedAudioTrack())
    return client


async def publishers(
    make_client: Callable[..., Any],
    server: RunningServer,
    room: str,
    clips: Any,
    markers: dict[str, int],
    decode: bool = True,
) -> list[SfuClient]:
    """`join_and_publish` for each name of `markers`, with the clip of its marker, in order."""
    return [
        await join_and_publish(make_client, server.url, room, name, clips(m), decode=decode)
        for name, m in markers.items()
    ]


async def tracks_from(client: SfuClient, publisher: str) -> dict[str, RemoteTrack]:
    video = await client.wait_for_track(participant_id=publisher, kind="video", timeout=WAIT)
    audio = await client.wait_for_track(participant_id=publisher, kind="audio", timeout=WAIT)
    return {"video": video, "audio": audio}


def decoder_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.endswith("-decoder")]


async def test_everyone_receives_everyone_and_it_is_theirs(
    passthrough_server: RunningServer, make_client: Callable[..., Any], clips: Any
) -> None:
    named = {f"bot{i}": i + 1 for i in range(4)}
    clients = await publishers(make_client, passthrough_server, "room4", clips, named)
    markers = {c.id: i + 1 for i, c in enumerate(clients)}
    for client in clients:
        for other in clients:
            if other is client:
                continue
            tracks = await tracks_from(client, other.id)
            await tracks["video"].wait_frames(5, timeout=WAIT)
            await tracks["audio"].wait_frames(10, timeout=WAIT)
            # a decoded frame carries the publisher's marker: it really is their video
            frame = tracks["video"].last_frame
            assert marker_from_frame(frame) == markers[other.id], (client.id, other.id)
            assert tracks["video"].source == "camera"
            assert tracks["audio"].source == "microphone"
    # one transceiver per remote track: 3 others x 2 kinds (+ our 2 send-only)
    for client in clients:
        live = [t for t in client.all_tracks if not t.ended]
        assert len({(t.participant_id, t.kind) for t in live}) == 6


async def test_late_joiner_gets_a_keyframe_and_decodable_video_fast(
    passthrough_server: RunningServer, make_client: Callable[..., Any], clips: Any
) -> None:
    url = passthrough_server.url
    first = await join_and_publish(make_client, url, "late", "first", clips(7))
    raw: SfuClient = await make_client(url, decode=False)
    await raw.join("late", "raw")
    encoded = (await tracks_from(raw, first.id))["video"]
    await encoded.wait_frames(3, timeout=WAIT)
    first_frame = encoded.stats
    assert first_frame.keyframes >= 1
    # the clip has a keyframe every 2 s only: a fast first frame means our PLI went
    # upstream and the publisher answered it
    late: SfuClient = await make_client(url, decode=True)
    await late.join("late", "late")
    video = (await tracks_from(late, first.id))["video"]
    frame = await video.next_frame(timeout=WAIT)
    assert marker_from_frame(frame) == 7
    ttff = video.stats.time_to_first_frame
    assert ttff is not None
    print(f"\nlate joiner: first decoded frame {ttff * 1000:.0f} ms after its track appeared")
    assert ttff < 1.0


async def test_first_forwarded_frame_is_a_keyframe(
    passthrough_server: RunningServer, make_client: Callable[..., Any], clips: Any
) -> None:
    url = passthrough_server.url
    publisher = await join_and_publish(make_client, url, "kf", "pub", clips(9))
    await asyncio.sleep(0.7)  # join mid-GOP
    sub: SfuClient = await make_client(url, decode=False)
    seen: list[bool] = []
    sub.on(
        "frame",
        lambda remote, frame: seen.append(frame.keyframe) if remote.kind == "video" else None,
    )
    await sub.join("kf", "sub")
    video = (await tracks_from(sub, publisher.id))["video"]
    await video.wait_frames(5, timeout=WAIT)
    assert seen and seen[0] is True


async def test_leaver_tracks_disappear(
    passthrough_server: RunningServer, make_client: Callable[..., Any], clips: Any
) -> None:
    markers = {"a": 1, "b": 2, "c": 3}
    a, b, c = await publishers(make_client, passthrough_server, "leave", clips, markers)
    video = (await tracks_from(a, c.id))["video"]
    await video.wait_frames(3, timeout=WAIT)
    c_id = c.id
    mids = {t.mid for t in a.all_tracks if t.participant_id == c_id}
    await c.leave()
    for client in (a, b):
        await client.wait_for_event("participant left", lambda p: p["id"] == c_id, WAIT)
        async with asyncio.timeout(WAIT):
            while any(i.participant_id == c_id for i in client.tracks.values()):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    # on the server, c's peer connection is gone and nobody receives c's tracks
    room = passthrough_server.rooms.rooms["leave"]
    assert c_id not in room.participants
    for participant in room.participants.values():
        assert all(pub.publisher_id != c_id for pub, _ in participant.subscriptions())
    # on a's peer connection, the transceivers that carried c's tracks went inactive
    assert a.pc is not None
    directions = {t.mid: t.currentDirection for t in a.pc.getTransceivers() if t.mid in mids}
    assert directions and set(directions.values()) == {"inactive"}, directions
    # a and b still receive each other
    frames = video.stats.frames
    other = (await tracks_from(a, b.id))["video"]
    await other.wait_frames(other.stats.frames + 5, timeout=WAIT)
    assert video.stats.frames <= frames + 2


async def test_mute_stops_forwarding_and_tells_the_room(
    passthrough_server: RunningServer, make_client: Callable[..., Any], clips: Any
) -> None:
    a, b = await publishers(make_client, passthrough_server, "mute", clips, {"a": 4, "b": 5})
    video = (await tracks_from(b, a.id))["video"]
    await video.wait_frames(3, timeout=WAIT)
    await a.mute("video", True)
    update = await b.wait_for_event(
        "participant updated", lambda p: p["id"] == a.id and p["videoMuted"], WAIT
    )
    assert update.payload["videoMuted"] is True
    await asyncio.sleep(0.5)
    frozen = video.stats.frames
    await asyncio.sleep(1.0)
    assert video.stats.frames <= frozen + 1
    await a.mute("video", False)
    await video.wait_frames(frozen + 5, timeout=WAIT)
    assert marker_from_frame(await video.next_frame(timeout=WAIT)) == 4


async def test_decoder_threads_only_in_transcode_mode(
    media_server: RunningServer, make_client: Callable[..., Any], clips: Any
) -> None:
    before = decoder_threads()
    # subscribers do not decode: any decoder thread now belongs to the server
    markers = {"a": 1, "b": 2}
    a, b = await publishers(make_client, media_server, "dec", clips, markers, decode=False)
    for client, other in ((a, b), (b, a)):
        tracks = await tracks_from(client, other.id)
        await tracks["video"].wait_frames(5, timeout=WAIT)
        await tracks["audio"].wait_frames(5, timeout=WAIT)
    running = [t for t in decoder_threads() if t not in before]
    mode = media_server.rooms.config.forwarding
    if mode == "passthrough":
        assert running == []
        room = media_server.rooms.rooms["dec"]
        for participant in room.participants.values():
            for pub in participant.published.values():
                receiver = pub.hook.receiver
                assert receiver._RTCRtpReceiver__decoder_thread is None
    else:
        assert sorted(running).count("video-decoder") >= 2, running
