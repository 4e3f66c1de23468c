"""A benchmark worker process: runs several synthetic participants on one asyncio loop.

The parent gives each worker a `WorkerSpec`; the worker reports each participant's join
on `status` as ("joined", name, ok, error), waits for `stop` (a multiprocessing Event),
then closes every participant and puts one result dict (raw send/receive logs, see
`BenchParticipant`) on `results`. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from benchmarks.peer import BenchParticipant, CountingAudioTrack, StampedVideoTrack

JOIN_TIMEOUT = 30.0
#: An adapting bot starts with the variant that fits this, as libwebrtc's encoders start
#: at 300 kbit/s, and moves up as the server's REMB allows.
START_BITRATE = 300_000
#: The worker gives up waiting for `stop` after this long past the planned end.
STOP_GRACE = 60.0


@dataclass(slots=True)
class ParticipantSpec:
    room: str
    name: str
    index: int
    marker: int
    join_at: float  # time.monotonic() at which to join


@dataclass(slots=True)
class WorkerSpec:
    url: str
    participants: list[ParticipantSpec]
    audio: bool
    bitrate: int
    cache_dir: str | None
    planned_end: float  # time.monotonic(); a safety net, the parent sets `stop` first
    fps: int = 30
    extra: dict[str, Any] = field(default_factory=dict)
    #: "light" or "full" (`benchmarks.peer.SUBSCRIBER_MODES`)
    subscriber: str = "full"
    #: temporal layers of the published VP8 clip: 1, or 3 (L1T3)
    layers: int = 1
    #: publish bitrate variants of the clip and follow the server's REMB between them
    #: (`PacedVideoTrack.set_target_bitrate`); False: one clip, REMB ignored
    publisher_adapt: bool = False


def _variant_figures(track: Any) -> dict[str, Any]:
    """What a `PacedVideoTrack` did with its bitrate variants."""
    return {
        "variantSwitches": track.variant_switches,
        "videoBitrate": track.current_bitrate,
        "targetBitrate": track.target_bitrate,
        "variantBitrates": track.variant_bitrates,
    }


def run_worker(spec: WorkerSpec, status: Any, results: Any, stop: Any) -> None:
    """Process entry point (multiprocessing target)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("aioice", "aiortc", "socketio", "engineio"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    from sfu.ice_policy import IcePolicy

    IcePolicy(["127.0.0.1"]).install()
    try:
        out = asyncio.run(run_participants(spec, status, stop))
    except BaseException:  # report, never hang the parent
        out = {"pid": os.getpid(), "error": traceback.format_exc(), "participants": []}
    results.put(out)


async def run_participants(spec: WorkerSpec, status: Any, stop: Any) -> dict[str, Any]:
    """Run `spec`'s participants on this loop until `stop.is_set()` (polled; bounded by
    `spec.planned_end` + `STOP_GRACE`); `status.put(("joined", name, ok, error))` per join.
    Returns the raw result dict (see the module doc)."""
    from signaling.client import (
        PacedAudioTrack,
        PacedVideoTrack,
        encode_audio_clip,
        encode_clip,
        encode_clip_variants,
    )

    encode = encode_clip_variants if spec.publisher_adapt else encode_clip
    clips = {
        p.marker: encode(
            marker=p.marker,
            bitrate=spec.bitrate,
            cache_dir=spec.cache_dir,
            temporal_layers=spec.layers,
        )
        for p in spec.participants
    }
    audio_clip = encode_audio_clip() if spec.audio else None
    peers: list[tuple[ParticipantSpec, BenchParticipant, dict[str, Any]]] = []

    async def one(p: ParticipantSpec) -> None:
        peer = BenchParticipant(spec.url, p.room, p.name, subscriber=spec.subscriber)
        info: dict[str, Any] = {"ok": False, "error": None, "video": None, "audio": None}
        peers.append((p, peer, info))
        delay = p.join_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        info["joinStart"] = time.monotonic()
        try:
            async with asyncio.timeout(JOIN_TIMEOUT):
                await peer.join()
                clip = clips[p.marker]
                paced = (
                    PacedVideoTrack(variants=clip, start_bitrate=START_BITRATE)
                    if isinstance(clip, tuple)
                    else PacedVideoTrack(clip)
                )
                video = StampedVideoTrack(paced)
                audio = (
                    CountingAudioTrack(PacedAudioTrack(audio_clip))
                    if audio_clip is not None
                    else None
                )
                info["video"], info["audio"] = video, audio
                await peer.publish(video, audio, adapt_bitrate=spec.publisher_adapt)
            info["ok"] = True
        except BaseException as exc:
            info["error"] = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, asyncio.CancelledError):
                raise
        status.put(("joined", p.name, info["ok"], info["error"]))

    tasks = [asyncio.create_task(one(p)) for p in spec.participants]
    deadline = spec.planned_end + STOP_GRACE
    # `stop` is a multiprocessing.Event: it cannot be awaited, so poll it
    while not stop.is_set() and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    for task in tasks:
        task.cancel()
    with contextlib.suppress(Exception):
        await asyncio.gather(*tasks, return_exceptions=True)
    stopped_at = time.monotonic()
    out: list[dict[str, Any]] = []
    for p, peer, info in peers:
        peer.collect_holes()
        video: StampedVideoTrack | None = info["video"]
        audio: CountingAudioTrack | None = info["audio"]
        out.append(
            {
                "room": p.room,
                "name": p.name,
                "index": p.index,
                "id": peer.id,
                "ok": info["ok"],
                "error": info["error"],
                "joinStart": info.get("joinStart"),
                "offerAt": peer.offer_at,
                "answerAt": peer.answer_at,
                "firstRemoteVideo": peer.first_remote_video,
                **peer.counters(),
                "videoPts": video.pts.tolist() if video else [],
                "videoTimes": video.times.tolist() if video else [],
                "keyframeJumps": video.inner.keyframe_jumps if video else 0,
                **(_variant_figures(video.inner) if video else {}),
                "audioTimes": audio.times.tolist() if audio else [],
                "streams": [s.to_dict() for s in peer.streams.values()],
            }
        )
    async with asyncio.timeout(20):
        await asyncio.gather(*(peer.close() for _, peer, _ in peers), return_exceptions=True)
    for _, _, info in peers:
        for track in (info["video"], info["audio"]):
            if track is not None:
                track.stop()
    return {"pid": os.getpid(), "error": None, "stoppedAt": stopped_at, "participants": out}
