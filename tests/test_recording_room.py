"""Room recording end to end: Python bots publish paced VP8 (30 fps) + Opus through a real
server with `record_dir`; the admin API and the room's `recording` request start/stop it;
the files are opened and decoded with PyAV."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import av
import pytest

from benchmarks.servers import running
from sfu.config import SfuConfig
from sfu.recorder import ParticipantRecorder
from signaling.auth import mint_token
from signaling.client import PacedAudioTrack, PacedVideoTrack, SfuClient, SfuError, encode_clip
from signaling.config import ServerConfig

WAIT = 20.0
ADMIN = "admin-token-for-tests"
SECRET = "test-secret-0123456789abcdef0123456789"


def server_config(record_dir: Path | None, **extra: Any) -> ServerConfig:
    sfu = SfuConfig(ice_addresses=("127.0.0.1",), negotiation_timeout=10.0, record_dir=record_dir)
    return ServerConfig(sfu=sfu, **extra)


async def bot(
    make_client: Callable[..., Any],
    url: str,
    room: str,
    name: str,
    marker: int,
    clip_cache: Path,
    token: str | None = None,
) -> SfuClient:
    client: SfuClient = await make_client(url, decode=False, token=token)
    await client.join(room, name)
    clip = encode_clip(
        width=320,
        height=240,
        fps=30,
        seconds=2.0,
        bitrate=200_000,
        marker=marker,
        cache_dir=clip_cache,
    )
    await client.publish(video=PacedVideoTrack(clip), audio=PacedAudioTrack())
    return client


async def admin(
    http: aiohttp.ClientSession, method: str, url: str, token: str | None = ADMIN
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with http.request(method, url, headers=headers) as response:
        return response.status, await response.json(content_type=None)


def read_json(path: str) -> Any:
    return json.loads(Path(path).read_text())


def probe(path: Path) -> dict[str, float]:
    """Decode every frame of a WebM: video frames, video fps, audio seconds."""
    video_frames = 0
    audio_samples = 0
    with av.open(str(path)) as container:
        for frame in container.decode(*container.streams):
            if isinstance(frame, av.VideoFrame):
                video_frames += 1
            elif isinstance(frame, av.AudioFrame):
                audio_samples += frame.samples
        video = container.streams.video[0]
        rate = float(video.average_rate or 0)
    return {"video_frames": video_frames, "fps": rate, "audio_seconds": audio_samples / 48000}


async def test_admin_records_a_3_bot_room_into_decodable_webm_files(
    tmp_path: Path, make_client: Callable[..., Any]
) -> None:
    record_dir = tmp_path / "rec"
    clips = tmp_path / "clips"
    async with running(server_config(record_dir, admin_token=ADMIN)) as server:
        bots = [
            await bot(make_client, server.url, "rec3", f"bot{i}", i + 1, clips) for i in range(3)
        ]
        for b in bots:
            await b.wait_connected(WAIT)
        for b in bots:  # everyone publishes (each receives the two others' video)
            for other in bots:
                if other is not b:
                    await b.wait_for_track(participant_id=other.id, kind="video", timeout=WAIT)
        base = f"{server.url}/api/rooms/rec3/recording"
        async with aiohttp.ClientSession() as http:
            assert (await admin(http, "POST", base, token=None))[0] == 401
            assert (await admin(http, "POST", base, token="wrong"))[0] == 401
            status, body = await admin(http, "POST", f"{server.url}/api/rooms/nope/recording")
            assert status == 404 and body["ok"] is False
            assert (await admin(http, "DELETE", base))[0] == 409  # not recording
            status, body = await admin(http, "POST", base)
            assert status == 200 and body["ok"] is True, body
            info = body["recording"]
            assert info["room"] == "rec3" and info["id"] and info["startedAt"]
            assert (await admin(http, "POST", base))[0] == 409  # already recording
            for b in bots:
                await b.wait_for_event("recording", lambda p: p["active"] is True, WAIT)
            late: SfuClient = await make_client(server.url, decode=False)
            joined = await late.join("rec3", "late viewer")
            assert joined.recording is True and late.recording is True
            await asyncio.sleep(10.0)
            status, body = await admin(http, "DELETE", base)
            assert status == 200, body
            for b in (*bots, late):
                await b.wait_for_event("recording", lambda p: p["active"] is False, WAIT)
            assert (await admin(http, "DELETE", base))[0] == 409
    manifest = read_json(body["recording"]["manifest"])
    assert manifest["room"] == "rec3" and manifest["endedAt"] is not None
    assert manifest["error"] is None
    assert sorted(p["id"] for p in manifest["participants"]) == sorted(b.id for b in bots)
    files = {f["path"]: f for f in manifest["files"]}
    assert len(files) == 3
    report = {}
    for name in files:
        path = Path(body["recording"]["manifest"]).parent / name
        stats = probe(path)
        report[name] = stats
        assert 270 <= stats["video_frames"] <= 320, stats  # ~10 s at 30 fps
        assert 9.0 <= stats["audio_seconds"] <= 10.8, stats
        assert files[name]["videoFrames"] == stats["video_frames"]
        assert 9.0 <= files[name]["duration"] <= 10.8
    print("recording files:", json.dumps(report))


async def test_room_page_request_needs_the_grant_and_late_joiners_see_it(
    tmp_path: Path, make_client: Callable[..., Any]
) -> None:
    clips = tmp_path / "clips"
    config = server_config(tmp_path / "rec", jwt_secret=SECRET)
    async with running(config) as server:
        plain = await bot(
            make_client, server.url, "g", "plain", 1, clips, mint_token(SECRET, "g", "plain")
        )
        recorder = await bot(
            make_client,
            server.url,
            "g",
            "rec",
            2,
            clips,
            mint_token(SECRET, "g", "rec", can_record=True),
        )
        with pytest.raises(SfuError) as refused:
            await plain.set_recording(True)
        assert refused.value.code == "unauthorized"
        assert server.rooms.rooms["g"].recording is None  # refused: nothing changed
        with pytest.raises(SfuError) as bad:
            await recorder.request("recording", {"active": "yes"})
        assert bad.value.code == "bad_request"
        info = await recorder.set_recording(True)
        assert info["room"] == "g"
        await plain.wait_for_event("recording", lambda p: p["active"] is True, WAIT)
        with pytest.raises(SfuError) as again:
            await recorder.set_recording(True)
        assert again.value.code == "invalid_state"
        with pytest.raises(SfuError):
            await plain.set_recording(False)
        await recorder.set_recording(False)
        await plain.wait_for_event("recording", lambda p: p["active"] is False, WAIT)


async def test_without_jwt_anyone_in_the_room_may_record(
    tmp_path: Path, make_client: Callable[..., Any]
) -> None:
    async with running(server_config(tmp_path / "rec")) as server:
        client: SfuClient = await make_client(server.url, decode=False)
        await client.join("open", "anyone")
        info = await client.set_recording(True)
        assert read_json(info["manifest"])["endedAt"] is None  # written at start
        assert (await client.set_recording(False))["id"] == info["id"]


async def test_recording_disabled_or_unwritable_is_refused_and_changes_nothing(
    tmp_path: Path, make_client: Callable[..., Any]
) -> None:
    async with running(server_config(None)) as server:
        client: SfuClient = await make_client(server.url, decode=False)
        await client.join("off", "x")
        with pytest.raises(SfuError) as disabled:
            await client.set_recording(True)
        assert disabled.value.code == "invalid_state"
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    async with running(server_config(blocker / "rec", admin_token=ADMIN)) as server:
        client = await make_client(server.url, decode=False)
        await client.join("ro", "x")
        async with aiohttp.ClientSession() as http:
            status, body = await admin(http, "POST", f"{server.url}/api/rooms/ro/recording")
        assert status == 500 and "not started" in body["error"]["message"]
        assert server.rooms.rooms["ro"].recording is None
        assert client.recording is False


async def test_disk_full_stops_the_recording_tells_the_starter_not_the_room(
    tmp_path: Path, make_client: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(self: Any, *args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ParticipantRecorder, "_mux", full)  # simulated ENOSPC
    clips = tmp_path / "clips"
    async with running(server_config(tmp_path / "rec")) as server:
        a = await bot(make_client, server.url, "full", "a", 1, clips)
        b = await bot(make_client, server.url, "full", "b", 2, clips)
        video = await b.wait_for_track(participant_id=a.id, kind="video", timeout=WAIT)
        await a.set_recording(True)
        error = await a.wait_for_event("error", lambda p: "recording stopped" in p["message"], WAIT)
        assert "No space left" in error.payload["message"]
        await b.wait_for_event("recording", lambda p: p["active"] is False, WAIT)
        assert not [e for e in b.events if e.name == "error"]  # only the starter is told
        room = server.rooms.rooms["full"]
        assert room.recording is None and "No space left" in (room.recording_error or "")
        before = video.stats.frames
        await video.wait_frames(before + 10, timeout=WAIT)  # the room goes on
        assert len(room.participants) == 2
