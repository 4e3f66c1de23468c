"""Pre-encoded, paced media sources (signaling/client/sources.py)."""

from __future__ import annotations

import asyncio
import fractions
import itertools
import time
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np
import pytest
from aiortc.mediastreams import MediaStreamError

from signaling.client import (
    PacedAudioTrack,
    PacedVideoTrack,
    VideoClip,
    clip_path,
    colour_for_marker,
    encode_audio_clip,
    encode_clip,
    marker_from_frame,
    sources,
    vp8_is_keyframe,
)

SMALL = {"width": 320, "height": 240, "fps": 15, "seconds": 4.0}  # gop: 30 frames (2 s)
TINY = {"width": 160, "height": 120, "fps": 15, "seconds": 1.0}


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One cache directory (and the process memo) for the module: clips encode once."""
    path = tmp_path_factory.mktemp("clips")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SFU_CACHE_DIR", str(path))
        yield path


@pytest.fixture
def cache(shared_cache: Path) -> Path:
    return shared_cache


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("SFU_CACHE_DIR", str(tmp_path))
    return tmp_path


def small_clip(marker: int = 0, cache_dir: Path | None = None) -> VideoClip:
    return encode_clip(marker=marker, cache_dir=cache_dir, **SMALL)  # type: ignore[arg-type]


def tiny_clip(marker: int = 0) -> VideoClip:
    return encode_clip(marker=marker, **TINY)  # type: ignore[arg-type]


def decode_all(clip: VideoClip) -> list[av.VideoFrame]:
    decoder = av.CodecContext.create("vp8", "r")
    frames: list[av.VideoFrame] = []
    for packet in clip.packets:
        frames.extend(decoder.decode(av.Packet(packet.data)))  # type: ignore[arg-type]
    return frames


def test_clip_is_generated_once_and_cached(fresh_cache: Path) -> None:
    clip = tiny_clip(3)
    path = clip_path(marker=3, **TINY)  # type: ignore[arg-type]
    assert path.parent == fresh_cache and path.is_file() and clip.path == path
    assert len(clip.packets) == 15
    assert (clip.width, clip.height, clip.fps, clip.marker) == (160, 120, 15, 3)
    mtime = path.stat().st_mtime_ns

    # a fresh process (memo cleared) loads the file instead of encoding again
    sources._clip_memo.pop(path)
    again = tiny_clip(3)
    assert again is not clip
    assert path.stat().st_mtime_ns == mtime
    assert [p.data for p in again.packets] == [p.data for p in clip.packets]
    assert tiny_clip(3) is again  # memoised in the process

    # other parameters, other files; an explicit cache_dir wins over the environment
    tiny_clip(4)
    other = fresh_cache / "explicit"
    encode_clip(marker=3, cache_dir=other, **TINY)  # type: ignore[arg-type]
    assert len(list(fresh_cache.glob("*.clip"))) == 2
    assert len(list(other.glob("*.clip"))) == 1


def test_corrupt_cache_file_is_replaced(fresh_cache: Path) -> None:
    path = clip_path(marker=5, **TINY)  # type: ignore[arg-type]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a clip")
    clip = tiny_clip(5)
    assert len(clip.packets) == 15
    assert path.read_bytes().startswith(b"SFUCLIP1")


def test_keyframe_cadence_and_bitrate(cache: Path) -> None:
    clip = small_clip(1)
    assert clip.gop == 30
    assert clip.keyframe_indexes == [0, 30]
    for packet in clip.packets:
        assert packet.keyframe == vp8_is_keyframe(packet.data)
    kbps = sum(len(p.data) for p in clip.packets) * 8 / clip.duration / 1000
    assert 50 < kbps < 1500, kbps


def test_default_size_clip(cache: Path) -> None:
    clip = encode_clip(marker=2, seconds=2.5)
    assert (clip.width, clip.height, clip.fps, clip.gop) == (640, 480, 30, 60)
    assert len(clip.packets) == 75
    assert clip.keyframe_indexes == [0, 60]
    assert len({p.data for p in clip.packets}) == len(clip.packets)  # locate() is exact
    kbps = sum(len(p.data) for p in clip.packets) * 8 / clip.duration / 1000
    assert 200 < kbps < 1500, kbps


@pytest.mark.parametrize("marker", [0, 1, 90, 170, 255])
def test_marker_survives_encode_decode(cache: Path, marker: int) -> None:
    frames = decode_all(tiny_clip(marker))
    assert len(frames) == 15
    assert {marker_from_frame(f) for f in frames} == {marker}


def test_marker_rejects_pictures_without_one() -> None:
    black = np.zeros((240, 320, 3), np.uint8)
    grey = np.full((240, 320, 3), 128, np.uint8)
    for picture in (black, grey, np.zeros((8, 8, 3), np.uint8)):
        assert marker_from_frame(av.VideoFrame.from_ndarray(picture, format="rgb24")) is None


def test_colours_differ_and_markers_are_checked() -> None:
    colours = {colour_for_marker(m) for m in range(256)}
    assert len(colours) > 200
    with pytest.raises(ValueError):
        colour_for_marker(256)
    with pytest.raises(ValueError):
        encode_clip(marker=-1)


def test_locate_identifies_publisher_and_frame(cache: Path) -> None:
    one, two = tiny_clip(1), tiny_clip(2)
    assert one.locate(one.packets[11].data) == 11
    assert two.locate(one.packets[11].data) is None


async def test_video_pacing_and_pts_monotonic_across_loops(cache: Path) -> None:
    clip = encode_clip(marker=6, width=160, height=120, fps=30, seconds=0.5)  # 15 frames
    track = PacedVideoTrack(clip, record_send_times=True)
    assert track.kind == "video"
    packets = []
    started = time.monotonic()
    while time.monotonic() - started < 1.0:
        packets.append(await track.recv())
    elapsed = time.monotonic() - started
    # about 30 frames per second: no bursts, no stalls (generous bounds)
    rate = len(packets) / elapsed
    assert 20 <= rate <= 40, rate
    assert len(packets) > 2 * len(clip.packets)  # looped at least twice
    pts = [p.pts for p in packets]
    assert all(b > a for a, b in itertools.pairwise(pts)), pts
    assert pts[0] == 0 and 2500 <= (pts[-1] - pts[0]) / (len(pts) - 1) <= 3500
    assert all(p.time_base == fractions.Fraction(1, 90000) for p in packets)
    # replays the clip's bytes in order, keyframe flags included
    for i, p in enumerate(packets):
        assert bytes(p) == clip.packets[i % len(clip.packets)].data
        assert p.is_keyframe == clip.packets[i % len(clip.packets)].keyframe
    # send times recorded per pts and per clip frame
    assert set(track.send_times) == set(pts)
    assert track.last_send_time(0) == track.send_times[pts[len(clip.packets) * 2]]
    assert track.frames_sent == len(packets)
    track.stop()
    with pytest.raises(MediaStreamError):
        await track.recv()


async def test_video_keyframe_request_jumps_to_a_keyframe(cache: Path) -> None:
    clip = small_clip(7)  # keyframes at 0 and 30
    track = PacedVideoTrack(clip)
    for _ in range(3):
        await track.recv()
    track.request_keyframe()
    packet = await track.recv()
    assert packet.is_keyframe and bytes(packet) == clip.packets[30].data
    assert track.keyframe_jumps == 1
    track.stop()


async def test_video_does_not_burst_after_a_stall(cache: Path) -> None:
    clip = encode_clip(marker=6, width=160, height=120, fps=30, seconds=0.5)
    track = PacedVideoTrack(clip)
    await track.recv()
    await asyncio.sleep(0.5)  # the consumer stalls
    started = time.monotonic()
    count = 0
    while time.monotonic() - started < 0.3:
        await track.recv()
        count += 1
    assert count <= 14, count  # ~9 in 0.3 s, not the 15 missed frames at once
    assert track.stalls == 1
    track.stop()


async def test_audio_is_paced_opus(cache: Path) -> None:
    clip = encode_audio_clip(440.0)
    assert len(clip.packets) == 50
    decoder = av.CodecContext.create("opus", "r")
    decoded = decoder.decode(av.Packet(clip.packets[1].data))  # type: ignore[arg-type]
    assert decoded[0].sample_rate == 48000 and decoded[0].samples == 960

    track = PacedAudioTrack(clip)
    assert track.kind == "audio"
    started = time.monotonic()
    packets = [await track.recv() for _ in range(26)]
    elapsed = time.monotonic() - started
    assert 0.35 <= elapsed <= 1.0, elapsed  # 25 intervals of 20 ms = 0.5 s
    assert [p.pts for p in packets[:3]] == [0, 960, 1920]
    assert all(p.time_base == fractions.Fraction(1, 48000) for p in packets)
    track.stop()
