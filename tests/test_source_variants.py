"""Bitrate variants of a clip and the paced track's switching between them
(signaling/client/sources.py, signaling/client/variants.py). The track runs on a fake
clock: no test here waits in real time."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiortc.codecs.vpx import Vp8Decoder
from aiortc.jitterbuffer import JitterFrame

from signaling.client import (
    VARIANT_SCALES,
    PacedVideoTrack,
    VideoClip,
    encode_clip,
    encode_clip_variants,
    marker_from_frame,
    sources,
)
from signaling.client.variants import (
    PROBE_GRACE,
    PROBE_HOLD,
    VARIANT_HEADROOM,
    VariantLadder,
)
from tests.unit.fakes import FakeClock as StepClock

#: keyframes at 0, 10 and 20 of 30 frames; bitrate variants at one size (1, 1/2, 1/4)
SHAPE = {"width": 160, "height": 120, "fps": 15, "seconds": 2.0, "gop": 10}
SHARES = (1.0, 0.5, 0.25)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("variant-clips")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SFU_CACHE_DIR", str(path))
        yield path


@pytest.fixture
def variants(cache: Path) -> tuple[VideoClip, ...]:
    return encode_clip_variants(marker=11, bitrate=400_000, shares=SHARES, **SHAPE)  # type: ignore[arg-type]


class FakeClock:
    """`time.monotonic` and `asyncio.sleep` of the sources module: sleeping advances it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(0.0, seconds)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(sources, "time", SimpleNamespace(monotonic=fake.monotonic))
    monkeypatch.setattr(sources, "asyncio", SimpleNamespace(sleep=fake.sleep))
    return fake


async def send(
    track: PacedVideoTrack, variants: tuple[VideoClip, ...], n: int
) -> list[tuple[int, int, bool]]:
    """(variant, frame index, keyframe) of the next `n` frames the track sends: the
    variant is the one it says it sends, and the bytes must be that variant's frame."""
    out = []
    for _ in range(n):
        packet = await track.recv()
        v = variants.index(track.variant)
        index = track.variant.locate(bytes(packet))
        assert index is not None, "a frame of another variant"
        out.append((v, index, bool(packet.is_keyframe)))
    return out


def test_variants_share_frames_and_differ_in_bitrate(
    cache: Path, variants: tuple[VideoClip, ...]
) -> None:
    assert len(variants) == 3
    assert sorted(c.bitrate for c in variants) == [100_000, 200_000, 400_000]
    measured = [c.measured_bitrate for c in variants]
    assert measured == sorted(measured) and measured[0] < measured[-1]
    for clip in variants:
        assert (clip.width, clip.height, clip.fps, clip.gop, clip.marker) == (160, 120, 15, 10, 11)
        assert len(clip.packets) == 30 and clip.keyframe_indexes == [0, 10, 20]
        assert clip.path is not None and clip.path.parent == cache
    assert len({c.packets[5].data for c in variants}) == 3  # really other encodings
    # cached like any clip: asking again encodes nothing new
    assert encode_clip_variants(marker=11, bitrate=400_000, shares=SHARES, **SHAPE) == variants  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        encode_clip_variants(marker=11, shares=(1.0, 1.5), **SHAPE)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        encode_clip_variants(marker=11, shares=(), **SHAPE)  # type: ignore[arg-type]
    for scales in ((1, 2), (1, 3, 4), (1, 2, 0), (1, 2, 8)):  # count, size 53x40, 0, 20x15
        with pytest.raises(ValueError):
            encode_clip_variants(marker=11, shares=SHARES, scales=scales, **SHAPE)  # type: ignore[arg-type]


def test_ladder_picks_the_highest_variant_that_fits(variants: tuple[VideoClip, ...]) -> None:
    ladder = VariantLadder(list(reversed(variants)))
    assert ladder.clips == variants and ladder.index == 2
    assert ladder.wanted == 2  # no target yet: the highest
    fits = [round(b * VARIANT_HEADROOM) + 1 for b in ladder.bitrates]
    ladder.set_target(fits[2])
    assert ladder.wanted == 2
    ladder.set_target(fits[2] - 2)  # not quite the headroom of the highest
    assert ladder.wanted == 1
    ladder.set_target(fits[0])
    assert ladder.wanted == 0
    ladder.set_target(0)  # nothing fits: the lowest
    assert ladder.wanted == 0
    for bad in (-1, 1.5, True, "300000", None):
        with pytest.raises(ValueError):
            ladder.set_target(bad)  # type: ignore[arg-type]
    assert ladder.target == 0 and ladder.switches == 0
    ladder.switch_to(0)
    ladder.switch_to(0)
    assert ladder.switches == 1 and ladder.current is variants[0]
    with pytest.raises(ValueError):
        ladder.switch_to(3)


def test_ladder_refuses_clips_that_do_not_line_up(
    cache: Path, variants: tuple[VideoClip, ...]
) -> None:
    other_marker = encode_clip(marker=12, bitrate=400_000, **SHAPE)  # type: ignore[arg-type]
    other_gop = encode_clip(marker=11, bitrate=400_000, **{**SHAPE, "gop": 15})  # type: ignore[arg-type]
    for odd in (other_marker, other_gop):
        with pytest.raises(ValueError):
            VariantLadder([*variants, odd])
    with pytest.raises(ValueError):
        VariantLadder([])
    with pytest.raises(ValueError):
        PacedVideoTrack(variants[0], variants=variants)


async def test_down_switch_jumps_to_the_next_keyframe_of_the_lower_variant(
    clock: FakeClock, variants: tuple[VideoClip, ...]
) -> None:
    track = PacedVideoTrack(variants=variants)
    assert track.clip is variants[2] and track.current_bitrate == variants[2].measured_bitrate
    assert track.variant_bitrates == [c.measured_bitrate for c in variants]
    sent = await send(track, variants, 3)
    assert sent == [(2, 0, True), (2, 1, False), (2, 2, False)]
    track.set_target_bitrate(0)
    assert track.target_bitrate == 0
    sent = await send(track, variants, 4)
    # no delta frame of the lower variant before its keyframe: the clip jumps to it
    assert sent == [(0, 10, True), (0, 11, False), (0, 12, False), (0, 13, False)]
    assert track.variant_switches == 1 and track.variant is variants[0]
    assert track.current_bitrate == variants[0].measured_bitrate
    track.stop()


async def test_up_switch_waits_for_the_periodic_keyframe(
    clock: FakeClock, variants: tuple[VideoClip, ...]
) -> None:
    track = PacedVideoTrack(variants=variants)
    track.set_target_bitrate(0)
    first = await send(track, variants, 2)
    assert first == [(0, 0, True), (0, 1, False)]  # frame 0 is a keyframe: switched there
    track.set_target_bitrate(10 * variants[2].measured_bitrate)
    sent = await send(track, variants, 12)
    assert sent[:8] == [(0, i, False) for i in range(2, 10)]  # no jump, no mixing
    assert sent[8:] == [(2, 10, True), (2, 11, False), (2, 12, False), (2, 13, False)]
    assert track.variant_switches == 2
    track.stop()


async def test_switches_never_mix_variants_between_keyframes(
    clock: FakeClock, variants: tuple[VideoClip, ...]
) -> None:
    track = PacedVideoTrack(variants=variants)
    targets = [0, 10**9, variants[1].measured_bitrate * 2, 0, 10**9]
    sent = []
    for target in targets:  # a target change every 7 frames, keyframe requests too
        track.set_target_bitrate(target)
        sent += await send(track, variants, 5)
        track.request_keyframe()
        clock.now += 1.0  # past the keyframe request throttle
        sent += await send(track, variants, 2)
    assert track.variant_switches >= 3
    for (v0, _, _), (v1, _, key) in itertools.pairwise(sent):
        if v1 != v0:
            assert key, sent
    track.stop()


async def test_a_start_bitrate_picks_the_first_variant(
    clock: FakeClock, variants: tuple[VideoClip, ...]
) -> None:
    start = round(variants[1].measured_bitrate * VARIANT_HEADROOM) + 1
    if variants[2].measured_bitrate * VARIANT_HEADROOM <= start:  # pragma: no cover
        pytest.fail("the clip's variants are too close together for this test")
    track = PacedVideoTrack(variants=variants, start_bitrate=start)
    assert track.variant is variants[1] and track.target_bitrate == start
    assert track.clip is variants[2]  # `clip` stays the highest
    sent = await send(track, variants, 3)
    assert sent == [(1, 0, True), (1, 1, False), (1, 2, False)]
    assert track.variant_switches == 0
    with pytest.raises(ValueError):
        PacedVideoTrack(variants=variants, start_bitrate=-1)
    track.stop()


async def test_a_single_clip_track_takes_a_target_and_stays(
    clock: FakeClock, variants: tuple[VideoClip, ...]
) -> None:
    track = PacedVideoTrack(variants[1])
    track.set_target_bitrate(1)
    sent = await send(track, variants, 12)
    assert {v for v, _, _ in sent} == {1} and track.variant_switches == 0
    with pytest.raises(ValueError):
        track.set_target_bitrate(-5)
    assert track.target_bitrate == 1
    track.stop()


# ------------------------------------------------------------- the resolution ladder

#: the default variants (640x480 at 600 kbit/s, 320x240 at 1/3, 160x120 at 1/8), L1T3
LADDER_MARKER = 9


@pytest.fixture(scope="module")
def ladder(cache: Path) -> tuple[VideoClip, ...]:
    return encode_clip_variants(marker=LADDER_MARKER, temporal_layers=3)


def base_layer_bitrate(clip: VideoClip) -> float:
    return sum(len(p.data) for p in clip.packets if p.tid == 0) * 8 / clip.duration


def test_default_variants_scale_the_picture_and_step_the_bitrate_down(
    ladder: tuple[VideoClip, ...],
) -> None:
    assert [(c.width, c.height) for c in ladder] == [(160, 120), (320, 240), (640, 480)]
    assert VARIANT_SCALES == (1, 2, 4)
    measured = [c.measured_bitrate for c in ladder]
    # each step really is smaller: the lowest fits under the server's 150 kbit/s floor
    assert measured[0] < 120_000 and base_layer_bitrate(ladder[0]) < 60_000, measured
    assert measured[0] * 1.5 < measured[1] and measured[1] * 1.5 < measured[2], measured
    for clip in ladder:
        assert clip.temporal_layers == 3 and clip.marker == LADDER_MARKER
        assert [(p.tid, p.sync) for p in clip.packets] == [
            (p.tid, p.sync) for p in ladder[-1].packets
        ]
        # the marker survives coding at every size
        decoder = Vp8Decoder()
        pictures = decoder.decode(JitterFrame(clip.packets[0].data, 0))
        assert [marker_from_frame(f) for f in pictures] == [LADDER_MARKER]  # type: ignore[arg-type]


async def test_a_receiver_decodes_across_resolution_switches(
    clock: FakeClock, ladder: tuple[VideoClip, ...]
) -> None:
    """640x480 -> 320x240 (a REMB that fits the middle variant) -> 640x480 (a REMB that
    fits all): one VP8 decoder, fed what the track sends, decodes every frame at the size
    of the variant it came from, and the marker reads at the keyframes."""
    track = PacedVideoTrack(variants=ladder)
    decoder = Vp8Decoder()
    sizes: list[tuple[int, int]] = []
    keyframe_markers: list[int | None] = []
    middle = round(ladder[1].measured_bitrate * VARIANT_HEADROOM) + 1
    plan = [(0, None), (5, middle), (40, 10_000_000)]  # (frames sent, new target)
    frames = len(ladder[-1].packets) * 2 + 10
    for n in range(frames):
        for at, target in plan:
            if n == at and target is not None:
                track.set_target_bitrate(target)
        packet = await track.recv()
        sent = track.variant
        assert sent.locate(bytes(packet)) is not None, "a frame of another variant"
        pictures = decoder.decode(JitterFrame(bytes(packet), n * 3000))
        assert len(pictures) == 1, n
        picture = pictures[0]
        assert (picture.width, picture.height) == (sent.width, sent.height), n  # type: ignore[attr-defined]
        sizes.append((sent.width, sent.height))
        if packet.is_keyframe:
            keyframe_markers.append(marker_from_frame(picture))  # type: ignore[arg-type]
    runs = [size for i, size in enumerate(sizes) if i == 0 or sizes[i - 1] != size]
    assert runs == [(640, 480), (320, 240), (640, 480)], runs
    assert track.variant_switches == 2
    assert keyframe_markers and set(keyframe_markers) == {LADDER_MARKER}
    track.stop()


def test_ladder_probes_up_when_the_remb_only_follows_what_it_receives(
    variants: tuple[VideoClip, ...],
) -> None:
    """An AIMD REMB reports about 1.5 x what it receives: the ladder must try the next
    variant itself, keep it while the REMB catches up, and back off when a probe fails."""
    clock = StepClock()
    ladder = VariantLadder(list(variants), clock=clock)
    rates = ladder.bitrates
    ladder.set_target(rates[0] - 1)  # a cap below the lowest: the lowest
    ladder.switch_to(ladder.wanted)
    assert ladder.index == 0
    ladder.set_target(round(rates[0] * 1.5))  # the REMB follows what it gets
    assert ladder.wanted == 0  # not yet: the hold
    clock.advance(PROBE_HOLD)
    assert ladder.wanted == 1  # the probe
    ladder.switch_to(1)
    assert ladder.wanted == 1  # the REMB (1.5 x the lowest) has not caught up: grace
    ladder.set_target(round(rates[1] * 0.3))  # far below: a real cap, at once down
    assert ladder.wanted == 0
    ladder.switch_to(0)
    clock.advance(PROBE_HOLD)
    assert ladder.wanted == 0  # the failed probe doubled the hold
    ladder.set_target(round(rates[0] * 1.5))
    clock.advance(PROBE_HOLD)
    assert ladder.wanted == 1
    ladder.switch_to(1)
    ladder.set_target(rates[1] * 2)  # the REMB caught up: it stays, and later probes on
    clock.advance(PROBE_GRACE + PROBE_HOLD)
    assert ladder.wanted == 2
    assert ladder.probes == 2
