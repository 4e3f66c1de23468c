"""Unit tests of the WebM recorder: pre-encoded clips fed at their timestamps with a fake
clock (no pacing), then the file is decoded with PyAV."""

from __future__ import annotations

import itertools
import json
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from sfu.recorder import (
    ParticipantRecorder,
    Recording,
    RecordingError,
    opus_packet_samples,
    record_track,
    vp8_dimensions,
)
from signaling.sources import AudioClip, VideoClip, encode_audio_clip, encode_clip

VIDEO_TB = Fraction(1, 90000)
AUDIO_TB = Fraction(1, 48000)
#: Tests feed 10 s of media at once (no pacing): let the queue hold all of it.
FAST_FEED_QUEUE = 10_000


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def clips() -> tuple[VideoClip, AudioClip]:
    video = encode_clip(width=320, height=240, fps=30, seconds=4.0, bitrate=300_000)
    return video, encode_audio_clip(440.0, 1.0)


def packet(data: bytes, pts: int, tb: Fraction, keyframe: bool) -> av.Packet:
    p = av.Packet(data)
    p.pts = pts
    p.dts = pts
    p.time_base = tb
    p.is_keyframe = keyframe
    return p


Sink = Any  # callable(kind, packet, source)


def feed_scenario(clips: tuple[VideoClip, AudioClip], clock: Clock, sink: Sink) -> dict[str, Any]:
    """10 s of one participant, events in arrival order:

    0-4 s: camera track "cam1" (clip frames 0..119) and mic "mic1", 5 audio packets lost
    and video frames 45..59 lost (as the frame assembler delivers a loss: nothing until the
    next keyframe); 4-5 s: muted (nothing arrives, pts keep counting, as a paused
    PublishedTrack does); 5-10 s: new tracks "cam2"/"mic2" whose pts restart elsewhere; the
    camera starts at clip frame 50 (10 deltas before its keyframe at 60 are dropped).
    """
    video, audio = clips
    events: list[tuple[float, str, av.Packet, str]] = []
    lost_audio = set(range(100, 105))
    # segment 1
    for i in range(120):
        if 45 <= i < 60:
            continue  # frame 45 lost: upstream drops the deltas up to the next keyframe
        p = video.packets[i]
        events.append((i / 30, "video", packet(p.data, i * 3000, VIDEO_TB, p.keyframe), "cam1"))
    for i in range(200):
        if i in lost_audio:
            continue
        p = audio.packets[i % len(audio.packets)]
        events.append((i * 0.02, "audio", packet(p.data, i * 960, AUDIO_TB, True), "mic1"))
    # mute 4-5 s, then segment 2 on new tracks
    base_v, base_a = 7_777_000, 123_456
    for n in range(150):
        i = (50 + n) % len(video.packets)
        p = video.packets[i]
        pts = base_v + n * 3000
        events.append((5 + n / 30, "video", packet(p.data, pts, VIDEO_TB, p.keyframe), "cam2"))
    for n in range(250):
        p = audio.packets[n % len(audio.packets)]
        events.append(
            (5 + n * 0.02, "audio", packet(p.data, base_a + n * 960, AUDIO_TB, True), "mic2")
        )
    # video frames arrive 12 ms after their capture instant (assembly), audio at once
    arrivals = sorted(
        (t + (0.012 if kind == "video" else 0.0), kind, pkt, src) for t, kind, pkt, src in events
    )
    start = clock.now
    for t, kind, pkt, source in arrivals:
        clock.now = start + t
        sink(kind, pkt, source)
    return {"video_fed": 105 + 150, "video_expected": 105 + 140, "audio_fed": 195 + 250}


def decode(path: Path) -> dict[str, Any]:
    with av.open(str(path)) as container:
        assert {s.type for s in container.streams} == {"video", "audio"}
        vstream = container.streams.video[0]
        astream = container.streams.audio[0]
        assert vstream.codec_context.name == "vp8"
        # the header carries the size of the first keyframe
        assert (vstream.codec_context.width, vstream.codec_context.height) == (320, 240)
        assert astream.codec_context.name == "opus"
        video_pts: list[float] = []
        audio_pts: list[float] = []
        samples = 0
        end = 0.0
        for pkt in container.demux():
            if pkt.pts is None:
                continue
            t = float(pkt.pts * pkt.time_base)
            end = max(end, t + float((pkt.duration or 0) * pkt.time_base))
            for frame in pkt.decode():
                if isinstance(frame, av.VideoFrame):
                    video_pts.append(float(frame.pts * frame.time_base))
                    assert (frame.width, frame.height) == (320, 240)
                elif isinstance(frame, av.AudioFrame):
                    audio_pts.append(float(frame.pts * frame.time_base))
                    samples += frame.samples
        duration = (container.duration or 0) / 1e6
    return {
        "video": video_pts,
        "audio": audio_pts,
        "samples": samples,
        "end": end,
        "duration": duration,
    }


def check_media(result: dict[str, Any], counts: dict[str, Any]) -> None:
    video, audio = result["video"], result["audio"]
    assert len(video) == counts["video_expected"]  # ~250 frames at 30 fps
    assert all(b > a for a, b in itertools.pairwise(video))
    assert all(b > a for a, b in itertools.pairwise(audio))
    # the mute gap and the keyframe wait are gaps, not squeezed out
    gaps = [b - a for a, b in itertools.pairwise(video)]
    assert max(gaps) == pytest.approx(1.0 + 11 / 30, abs=0.05)  # 4.0 -> 5.0 + 11 frames
    assert video[0] == pytest.approx(0.012, abs=0.002)
    assert video[-1] == pytest.approx(5 + 149 / 30 + 0.012, abs=0.01)
    # about 10 s of audio timeline, the decoded samples are what was fed (minus pre-skip)
    assert audio[-1] == pytest.approx(9.98, abs=0.03)
    assert result["samples"] == pytest.approx(counts["audio_fed"] * 960, abs=960)
    assert result["end"] == pytest.approx(10.0, abs=0.05)
    assert result["duration"] == pytest.approx(10.0, abs=0.1)


def test_bitstream_helpers(clips: tuple[VideoClip, AudioClip]) -> None:
    video, audio = clips
    assert vp8_dimensions(video.packets[0].data) == (320, 240)
    assert vp8_dimensions(video.packets[1].data) is None
    assert opus_packet_samples(audio.packets[0].data) == 960
    assert opus_packet_samples(b"") == 960
    assert opus_packet_samples(bytes([0xF8 | 3, 3])) == 2880  # CELT FB 20 ms x 3


def test_participant_file_decodes(clips: tuple[VideoClip, AudioClip], tmp_path: Path) -> None:
    clock = Clock()
    # the scenario is fed faster than real time: a queue deep enough for all of it
    rec = ParticipantRecorder(
        tmp_path / "p.webm", participant_id="p", clock=clock, max_queue=FAST_FEED_QUEUE
    )
    counts = feed_scenario(clips, clock, rec.write)
    assert rec.join(timeout=30)
    assert rec.error is None
    rec.close()  # idempotent
    assert rec.frames("video") == counts["video_expected"]
    assert rec.frames("audio") == counts["audio_fed"]
    check_media(decode(tmp_path / "p.webm"), counts)
    summary = rec.summary()
    assert summary["kinds"] == ["audio", "video"]
    assert summary["dropped"] == 10  # the deltas before cam2's first keyframe
    assert summary["duration"] == pytest.approx(10.0, abs=0.05)


async def test_recording_manifest(clips: tuple[VideoClip, AudioClip], tmp_path: Path) -> None:
    clock = Clock()
    wall = [1_800_000_000.0]
    recording = Recording(
        "room 1",
        tmp_path,
        recording_id="r1",
        clock=clock,
        wall_clock=lambda: wall[0],
        max_queue=FAST_FEED_QUEUE,
    )
    recording.start()
    assert recording.manifest_path.exists()
    assert json.loads(recording.manifest_path.read_text())["endedAt"] is None
    clock.now += 2.0  # alice joins 2 s into the recording
    assert recording.add_participant("alice", "Alice") is not None
    counts = feed_scenario(clips, clock, lambda k, p, s: recording.write("alice", k, p, s))
    # bob only speaks (an audio-only file), then leaves
    _, audio = clips
    start = clock.now
    for i in range(50):
        clock.now = start + i * 0.02
        recording.write("bob", "audio", packet(audio.packets[i].data, i * 960, AUDIO_TB, True))
    recording.remove_participant("bob")
    wall[0] += 13.0
    manifest = await recording.stop()
    assert await recording.stop() is manifest  # idempotent
    assert recording.error is None
    on_disk = json.loads(recording.manifest_path.read_text())
    assert on_disk == manifest
    assert manifest["room"] == "room 1"
    assert manifest["startedAt"].startswith("2027-01-15T08:00:00")
    assert manifest["duration"] == 13.0
    assert [p["id"] for p in manifest["participants"]] == ["alice", "bob"]
    assert manifest["participants"][0]["name"] == "Alice"
    alice, bob = manifest["files"]
    assert alice["path"] == "alice.webm" and alice["exists"]
    assert alice["kinds"] == ["audio", "video"]
    assert alice["offset"] == pytest.approx(2.0, abs=0.001)
    assert alice["duration"] == pytest.approx(10.0, abs=0.05)
    assert bob["kinds"] == ["audio"]
    assert bob["duration"] == pytest.approx(1.0, abs=0.05)
    assert "timeline" in manifest
    assert not any(os.path.isabs(f["path"]) for f in manifest["files"])
    check_media(decode(recording.directory / "alice.webm"), counts)
    with av.open(str(recording.directory / "bob.webm")) as container:
        # bob's camera never came: an empty video track, and 1 s of audio
        frames = list(container.decode(audio=0))
        assert sum(f.samples for f in frames) == pytest.approx(48000, abs=960)
    assert recording.info()["files"] == ["alice.webm", "bob.webm"]
    # stopped: writes are refused quietly
    assert (
        recording.write("alice", "audio", packet(audio.packets[0].data, 0, AUDIO_TB, True)) is False
    )


def test_unwritable_directory_sets_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    rec = ParticipantRecorder(blocker / "p.webm", kinds=["audio"])
    audio = encode_audio_clip(440.0, 1.0)
    for i in range(20):
        rec.write("audio", packet(audio.packets[i].data, i * 960, AUDIO_TB, True))
    assert rec.join(timeout=10)
    assert isinstance(rec.error, OSError)
    assert rec.write("audio", packet(audio.packets[0].data, 0, AUDIO_TB, True)) is False
    assert rec.summary()["error"] is not None


def test_recording_start_in_unwritable_directory_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    recording = Recording("r", blocker)
    with pytest.raises(RecordingError):
        recording.start()
    assert not recording.active


async def test_directory_lost_mid_recording(tmp_path: Path) -> None:
    recording = Recording("r", tmp_path / "rec")
    recording.start()
    # the directory disappears (unmounted, removed): files and manifest cannot be written
    for child in recording.directory.iterdir():
        child.unlink()
    recording.directory.rmdir()
    recording.directory.write_text("now a file")
    audio = encode_audio_clip(440.0, 1.0)
    for i in range(20):
        assert isinstance(
            recording.write("p", "audio", packet(audio.packets[i].data, i * 960, AUDIO_TB, True)),
            bool,
        )
    manifest = await recording.stop()  # does not raise
    assert recording.error is not None
    assert manifest["error"] is not None


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_disk_full_sets_error() -> None:
    rec = ParticipantRecorder("/dev/full", kinds=["audio"])
    audio = encode_audio_clip(440.0, 1.0)
    for i in range(50):
        rec.write("audio", packet(audio.packets[i].data, i * 960, AUDIO_TB, True))
    assert rec.join(timeout=10)
    assert rec.error is not None


def test_queue_overflow_counts_drops_and_waits_for_keyframe(
    clips: tuple[VideoClip, AudioClip], tmp_path: Path
) -> None:
    video, _ = clips
    clock = Clock()
    rec = ParticipantRecorder(tmp_path / "v.webm", kinds=["video"], clock=clock, max_queue=0)
    assert rec.write("video", packet(video.packets[0].data, 0, VIDEO_TB, True)) is False
    rec._max_queue = 10_000  # room again: deltas still wait for the next keyframe
    for i in range(1, 60):
        clock.now += 1 / 30
        assert rec.write("video", packet(video.packets[i].data, i * 3000, VIDEO_TB, False)) is False
    clock.now += 1 / 30
    assert rec.write("video", packet(video.packets[60].data, 60 * 3000, VIDEO_TB, True))
    assert rec.join(timeout=10)
    assert rec.dropped == 60
    assert rec.frames("video") == 1


class ListTrack(MediaStreamTrack):
    """A track that yields the given packets, then ends."""

    def __init__(self, kind: str, packets: list[av.Packet]) -> None:
        super().__init__()
        self.kind = kind
        self._packets = list(packets)

    async def recv(self) -> av.Packet:
        if not self._packets:
            raise MediaStreamError
        return self._packets.pop(0)


async def test_record_track_pumps_a_subscription(tmp_path: Path) -> None:
    audio = encode_audio_clip(440.0, 1.0)
    clock = Clock()
    packets = [packet(audio.packets[i].data, i * 960, AUDIO_TB, True) for i in range(50)]
    rec = ParticipantRecorder(tmp_path / "a.webm", kinds=["audio"], clock=clock)
    assert await record_track(rec, ListTrack("audio", packets)) == 50
    assert await rec.aclose()
    assert rec.error is None
    assert rec.frames("audio") == 50


def test_resync_after_a_sender_restart_keeps_the_gap(
    clips: tuple[VideoClip, AudioClip], tmp_path: Path
) -> None:
    """Same track, pts continuing as if no time had passed after a 5 s outage (a sender
    restart behind a PublishedTrack): the arrival time wins, and the stream needs no
    keyframe (same decoder state)."""
    video, _ = clips
    clock = Clock()
    rec = ParticipantRecorder(
        tmp_path / "v.webm", kinds=["video"], clock=clock, max_queue=FAST_FEED_QUEUE
    )
    start = clock.now
    for i in range(60):
        clock.now = start + i / 30
        p = video.packets[i]
        rec.write("video", packet(p.data, i * 3000, VIDEO_TB, p.keyframe))
    for i in range(60, 90):
        clock.now = start + 5 + i / 30
        rec.write("video", packet(video.packets[i].data, i * 3000, VIDEO_TB, False))
    assert rec.join(timeout=10)
    assert rec.frames("video") == 90  # no deltas dropped
    with av.open(str(tmp_path / "v.webm")) as container:
        times = [float(f.pts * f.time_base) for f in container.decode(video=0)]
    assert len(times) == 90
    assert times[60] - times[59] == pytest.approx(5 + 1 / 30, abs=0.01)
