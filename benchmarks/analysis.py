"""Turn the raw logs of one run (workers' send/receive records, CPU samples, server
counters) into the numbers `sfu-bench` reports. Only frames inside the measurement window
count; see `benchmarks.metrics` for how frames are identified."""

from __future__ import annotations

import os
import statistics
from typing import Any

from benchmarks.metrics import (
    count_in,
    frame_loss,
    match_stream,
    mesh_cost,
    percentile,
)
from benchmarks.procstat import CpuSample, cores_between, machine_cores_between

#: Frames sent this close to the end of the window may still be in flight: not expected.
IN_FLIGHT = 0.5
FPS = 30
AUDIO_PPS = 50


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def analyse_run(
    *,
    mode: str,
    participants: int,
    rooms: int,
    audio: bool,
    bitrate: int,
    duration: float,
    warmup: float,
    window: tuple[float, float],
    worker_results: list[dict[str, Any]],
    join_failures: dict[str, str | None],
    cpu: tuple[CpuSample, CpuSample],
    server_pid: int | None,
    worker_pids: list[int],
    server_counters: tuple[dict[str, float] | None, dict[str, float] | None],
    rss: tuple[int | None, int | None],
    cache_dir: str | None,
) -> dict[str, Any]:
    w0, w1 = window
    span = w1 - w0
    people = [p for r in worker_results for p in r.get("participants", [])]
    worker_errors = [r["error"] for r in worker_results if r.get("error")]
    by_id = {p["id"]: p for p in people if p.get("id")}

    # ---------------------------------------------------------------- video streams
    fps_list: list[float] = []
    latencies: list[float] = []
    expected_total = lost_total = 0
    worst_loss = 0.0
    matched = unmatched = 0
    video_streams = audio_streams = 0
    audio_fps: list[float] = []
    audio_expected = audio_received = 0
    for sub in people:
        for stream in sub.get("streams", []):
            pub = by_id.get(stream.get("publisher"))
            arrivals = stream["arrivals"]
            in_window = count_in(arrivals, w0, w1)
            if stream["kind"] == "audio":
                audio_streams += 1
                audio_fps.append(in_window / span)
                if pub is not None:
                    audio_expected += count_in(pub["audioTimes"], w0, w1)
                    audio_received += in_window
                continue
            video_streams += 1
            fps_list.append(in_window / span)
            if pub is None:
                unmatched += 1
                continue
            match = match_stream(stream["rtp"], arrivals, pub["videoPts"], pub["videoTimes"])
            if match.matched:
                matched += 1
                for t, lat in zip(arrivals, match.latency, strict=True):
                    if lat is not None and w0 <= t < w1:
                        latencies.append(lat)
                expected, lost = frame_loss(
                    match.pts, pub["videoPts"], pub["videoTimes"], w0, w1 - IN_FLIGHT
                )
            else:
                unmatched += 1
                expected = count_in(pub["videoTimes"], w0, w1)
                lost = max(0, expected - in_window)
            expected_total += expected
            lost_total += lost
            if expected:
                worst_loss = max(worst_loss, lost / expected)

    # missing streams (a subscriber never got a publisher at all) count as fully lost
    ok_people = [p for p in people if p.get("ok")]
    per_room: dict[str, int] = {}
    for p in ok_people:
        per_room[p["room"]] = per_room.get(p["room"], 0) + 1
    streams_expected = sum(k * (k - 1) for k in per_room.values())
    missing = max(0, streams_expected - video_streams)

    publisher_fps = [count_in(p["videoTimes"], w0, w1) / span for p in ok_people]

    # ---------------------------------------------------------------- join latency
    join_samples: list[float] = []
    for room in per_room:
        members = sorted(
            (p for p in ok_people if p["room"] == room), key=lambda p: p.get("offerAt") or 0
        )
        for p in members[1:]:  # the first one in a room has nobody to receive yet
            if p.get("offerAt") is not None and p.get("firstRemoteVideo") is not None:
                join_samples.append(p["firstRemoteVideo"] - p["offerAt"])

    # ---------------------------------------------------------------- CPU
    c0, c1 = cpu
    server_cores = cores_between(c0, c1, [server_pid]) if server_pid else None
    client_cores = cores_between(c0, c1, worker_pids)
    main_cores = cores_between(c0, c1, [os.getpid()])
    machine_cores = machine_cores_between(c0, c1)
    s0, s1 = server_counters
    packet_rate = None
    server_cpu_percent = None
    forwarded_streams = None
    if s0 is not None and s1 is not None and s1["uptime"] > s0["uptime"]:
        packet_rate = (s1["packets"] - s0["packets"]) / (s1["uptime"] - s0["uptime"])
        server_cpu_percent = s1["cpuPercent"]
        forwarded_streams = int(s1["streams"])
    if server_cores is None and server_cpu_percent is not None:
        server_cores = server_cpu_percent / 100.0  # --url without --server-pid: 1 s sample
    us_per_packet = (
        server_cores * 1e6 / packet_rate if server_cores is not None and packet_rate else None
    )
    forwarded_video = sum(1 for f in fps_list if f > 0)
    if forwarded_streams is None:
        forwarded_streams = forwarded_video + sum(1 for f in audio_fps if f > 0)
    ncpu = os.cpu_count() or 1

    loss = lost_total / expected_total if expected_total else None
    if missing and loss is not None:
        missing_frames = missing * FPS * (span - IN_FLIGHT)
        loss = (lost_total + missing_frames) / (expected_total + missing_frames)
        worst_loss = 1.0
    clip_bitrate = _clip_bitrate(bitrate, cache_dir)
    out: dict[str, Any] = {
        "mode": mode,
        "participants": participants,
        "rooms": rooms,
        "totalParticipants": participants * rooms,
        "audio": audio,
        "bitrate": bitrate,
        "clipBitrate": clip_bitrate,
        "duration": duration,
        "warmup": warmup,
        "window": round(span, 3),
        "joined": len(ok_people),
        "joinFailures": join_failures,
        "workerErrors": worker_errors,
        "server": {
            "pid": server_pid,
            "cpuCores": _round(server_cores),
            "rssBytes": rss[1],
            "rssMaxBytes": rss[0],
            "packetsPerSecond": _round(packet_rate, 1),
            "usPerPacket": _round(us_per_packet, 2),
            "forwardedStreams": forwarded_streams,
            "streamsPerCore": _round(forwarded_streams / server_cores, 1) if server_cores else None,
        },
        "clients": {
            "workers": len(worker_pids),
            "cpuCores": _round(client_cores),
            "benchMainCores": _round(main_cores),
            "machineBusyCores": _round(machine_cores),
            "cpuCount": ncpu,
            "saturated": bool(machine_cores is not None and machine_cores > 0.9 * ncpu),
        },
        "video": {
            "streamsExpected": streams_expected,
            "streamsReceived": video_streams,
            "streamsMatched": matched,
            "streamsUnmatched": unmatched,
            "fpsMean": _round(statistics.fmean(fps_list), 2) if fps_list else None,
            "fpsMin": _round(min(fps_list), 2) if fps_list else None,
            "publisherFpsMin": _round(min(publisher_fps), 2) if publisher_fps else None,
            "framesExpected": expected_total,
            "framesLost": lost_total,
            "lossPercent": _round(100 * loss, 3) if loss is not None else None,
            "worstStreamLossPercent": _round(100 * worst_loss, 3),
            "latencyP50Ms": _ms(percentile(latencies, 50)),
            "latencyP95Ms": _ms(percentile(latencies, 95)),
            "latencyMaxMs": _ms(max(latencies)) if latencies else None,
            "latencySamples": len(latencies),
        },
        "join": {
            "p50Ms": _ms(percentile(join_samples, 50)),
            "p95Ms": _ms(percentile(join_samples, 95)),
            "samples": len(join_samples),
        },
        "mesh": mesh_cost(participants, clip_bitrate or bitrate),
    }
    if audio:
        out["audioStreams"] = {
            "streams": audio_streams,
            "fpsMean": _round(statistics.fmean(audio_fps), 2) if audio_fps else None,
            "lossPercent": _round(100 * max(0.0, 1 - audio_received / audio_expected), 3)
            if audio_expected
            else None,
        }
    return out


def _clip_bitrate(bitrate: int, cache_dir: str | None) -> int | None:
    """The real bitrate of the marker-0 clip (the encoder only approximates its target)."""
    try:
        from signaling.client import encode_clip

        clip = encode_clip(marker=0, bitrate=bitrate, cache_dir=cache_dir)
    except Exception:
        return None
    size = sum(len(p.data) for p in clip.packets)
    return round(size * 8 / clip.duration)
