"""A bot publisher follows the server's REMB between its bitrate variants, over real aiortc
peers on 127.0.0.1: publisher pc (a `PacedVideoTrack` of variants, its sender hooked by
the client's `follow_remb`) -> server pc (a passthrough `PublishedTrack`). A cap on the
published track (`PublishedTrack.cap_bitrate`, what the room's publisher cap policy sets)
lowers the REMB the server sends; the bot moves to its lowest variant and the bitrate the
server measures drops."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiortc import RTCPeerConnection

from sfu.published_track import PublishedTrack
from signaling.client import PacedVideoTrack, VideoClip, encode_clip_variants
from signaling.client.connection import follow_remb
from signaling.client.variants import VARIANT_HEADROOM
from tests import loopback
from tests.loopback import negotiate, new_pc, prefer

WAIT = 30.0
#: the measurement windows (bounded sleeps, nothing asserted about time)
WINDOW = 1.5

pytestmark = pytest.mark.usefixtures("loopback_ice")


@pytest.fixture(scope="module")
def variants(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[VideoClip, ...]]:
    path: Path = tmp_path_factory.mktemp("adapt-clips")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SFU_CACHE_DIR", str(path))
        yield encode_clip_variants(
            width=320,
            height=240,
            fps=30,
            seconds=2.0,
            gop=20,
            bitrate=1_200_000,
            marker=9,
            temporal_layers=3,
        )


async def wait_until(pred: Any) -> None:
    await loopback.wait_until(pred, WAIT)


async def rate(pub: PublishedTrack) -> float:
    """The bit/s the server received over the next `WINDOW` seconds."""
    start = pub.bytes
    await asyncio.sleep(WINDOW)
    return (pub.bytes - start) * 8 / WINDOW


async def test_a_capped_remb_moves_the_bot_to_a_lower_variant(
    pcs: list[RTCPeerConnection], variants: tuple[VideoClip, ...]
) -> None:
    low, mid = variants[0].measured_bitrate, variants[1].measured_bitrate
    cap = round(VARIANT_HEADROOM * (low + mid) / 2)  # only the lowest variant fits
    assert low * VARIANT_HEADROOM < cap < mid * VARIANT_HEADROOM and cap >= 150_000

    publisher, server_in = new_pc(), new_pc()
    pcs.extend([publisher, server_in])
    track = PacedVideoTrack(variants=variants)
    transceiver = publisher.addTransceiver(track, direction="sendonly")
    prefer(transceiver, "video/VP8")
    assert follow_remb(transceiver.sender, track)
    published: list[PublishedTrack] = []

    @server_in.on("track")
    def on_track(remote: Any) -> None:
        t = next(t for t in server_in.getTransceivers() if t.receiver.track is remote)
        published.append(PublishedTrack.passthrough(t.receiver, "video", "camera"))

    async with asyncio.timeout(WAIT):
        await negotiate(publisher, server_in)
    [pub] = published
    # the server's rate control warms up, then its REMB reaches the track
    await wait_until(lambda: pub.frames >= 30 and track.target_bitrate is not None)
    await wait_until(lambda: track.variant is not variants[0])  # not capped: above the lowest
    before = await rate(pub)
    switches = track.variant_switches

    pub.cap_bitrate(cap)
    await wait_until(lambda: track.variant is variants[0])
    target = track.target_bitrate
    assert target is not None and target <= cap
    assert track.variant_switches > switches
    assert track.current_bitrate == low
    await asyncio.sleep(0.3)  # what was in flight before the switch arrives
    after = await rate(pub)
    assert after < before, (after, before)
    # still capped: the bot stays on the lowest variant
    assert track.variant is variants[0] and (track.target_bitrate or 0) <= cap

    pub.cap_bitrate(None)
    track.stop()
    pub.close()


def test_follow_remb_takes_only_video_that_adapts() -> None:
    class NoAdapt:
        kind = "video"

    class Audio:
        kind = "audio"

        def set_target_bitrate(self, bps: int) -> None:
            raise AssertionError("not for audio")

    sender = object()  # never touched when nothing is installed
    assert not follow_remb(sender, NoAdapt())  # type: ignore[arg-type]
    assert not follow_remb(sender, Audio())  # type: ignore[arg-type]
