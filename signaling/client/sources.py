"""Media sources for bots, tests and the benchmark: pre-encoded, paced, identifiable.

Encoding costs ~2.4 ms per 640x480 VP8 frame; a benchmark publisher must not spend its CPU
on that, and `MediaPlayer(decode=False, loop=True)` neither paces after its first loop nor
keeps timestamps increasing. So:

- `encode_clip()` encodes a short VP8 clip ONCE with PyAV and caches it as a file (default
  `~/.cache/sfu-relay/`, or `$SFU_CACHE_DIR`, or the `cache_dir` argument), keyed by every
  parameter. With `temporal_layers=3` the clip has three temporal layers (L1T3, libvpx's
  0,2,1,2 pattern, see `L1T3_PATTERN`): each `ClipPacket` knows its `tid` and layer-sync
  flag, and `PacedVideoTrack` hands them on as `packet.opaque = FrameLayer(tid, sync)` for
  the client's sender to write into the VP8 payload descriptor.
  Each clip carries a *marker* (0-255) drawn into its pictures, so whoever decodes
  the video can tell which publisher it came from (`marker_from_frame`), and its encoded
  frames are distinct per marker, so a passthrough receiver can identify publisher and frame
  from the bytes alone (`VideoClip.locate`).
- `PacedVideoTrack` / `PacedAudioTrack` replay encoded packets as `av.Packet` in real time
  (monotonic clock, no bursts), looping with ever-increasing `pts`. aiortc's `RTCRtpSender`
  only re-packetizes them: no encoder runs.
- `file_tracks()` publishes a media file with aiortc's `MediaPlayer` (decoding; the sender
  encodes).

Marker picture layout: the top quarter of the picture is two rows of 8 cells. Cell `i` of
the upper row is white when bit `7 - i` of the marker is set, black otherwise; the lower row
is the inverse (a self-check that rejects pictures without a marker). The rest of the picture
is a solid background of `colour_for_marker(marker)` with moving bars and a moving box.
"""

from __future__ import annotations

import asyncio
import colorsys
import contextlib
import fractions
import functools
import hashlib
import json
import logging
import os
import struct
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack, VideoStreamTrack

from sfu.layers import FrameLayer
from signaling.client.variants import VariantLadder

logger = logging.getLogger(__name__)

__all__ = [
    "AUDIO_CLOCK_RATE",
    "L1T3_PATTERN",
    "VARIANT_SCALES",
    "VARIANT_SECONDS",
    "VARIANT_SHARES",
    "VIDEO_CLOCK_RATE",
    "AudioClip",
    "ClipPacket",
    "FileTracks",
    "PacedAudioTrack",
    "PacedVideoTrack",
    "PatternVideoTrack",
    "VideoClip",
    "clip_path",
    "colour_for_marker",
    "encode_audio_clip",
    "encode_clip",
    "encode_clip_variants",
    "file_tracks",
    "marker_from_frame",
    "resolve_cache_dir",
    "vp8_is_keyframe",
]

VIDEO_CLOCK_RATE = 90000
AUDIO_CLOCK_RATE = 48000
#: Bump when the generated pictures or the file format change: old cache files are ignored.
CLIP_FORMAT_VERSION = 1
_MAGIC = b"SFUCLIP1"
_MARKER_CELLS = 8
#: Lateness beyond which a paced track stops trying to catch up (no bursts after a stall).
MAX_LAG = 0.2

#: L1T3 as libvpx encodes it with FFmpeg's `ts_layering_mode=3`: (tid, layer sync) of the
#: frames of each 4-frame period. Buffers: TL0 refers to and updates LAST only; the first
#: TL2 frame refers to LAST only and updates nothing; TL1 refers to LAST and updates GOLDEN
#: only; the second TL2 frame refers to GOLDEN only and updates nothing. So TL2 frames are
#: never references, TL1 frames only for TL2, and the frames that refer to TL0 alone are
#: layer-sync points (the payload descriptor's Y bit).
L1T3_PATTERN: tuple[tuple[int, bool], ...] = ((0, False), (2, True), (1, True), (2, False))
#: Share of the clip's bitrate for TID <= 0, <= 1, <= 2 (libwebrtc's 3-layer split).
_L1T3_RATE_SHARE = (0.4, 0.6, 1.0)
#: The variants `encode_clip_variants` encodes by default: shares of the bitrate, each at
#: the picture size divided by the matching `VARIANT_SCALES` entry (640x480 at the bitrate,
#: 320x240 at 1/3 of it, 160x120 at 1/8). Like Chromium under a tight cap, the bots scale
#: the resolution down: at 640x480 even the largest quantizer takes 160-400 kbit/s.
VARIANT_SHARES: tuple[float, ...] = (1.0, 1 / 3, 1 / 8)
#: Divisor of the width and height of each variant (see `VARIANT_SHARES`).
VARIANT_SCALES: tuple[int, ...] = (1, 2, 4)
#: Default length of each variant (s): one gop at the default 2 s keyframe interval, so the
#: three variants cost about 1.5 times one default 4 s clip to encode on first use.
VARIANT_SECONDS = 2.0


def vp8_is_keyframe(data: bytes) -> bool:
    """True when `data` (a VP8 frame) is a keyframe: bit 0 of the frame tag is 0."""
    return bool(data) and not (data[0] & 0x01)


# ---------------------------------------------------------------------- markers


def colour_for_marker(marker: int) -> tuple[int, int, int]:
    """A distinctive, saturated RGB background colour for `marker` (0-255)."""
    _check_marker(marker)
    hue = (marker * 0.6180339887498949) % 1.0  # golden-ratio spacing
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.85)
    return round(r * 255), round(g * 255), round(b * 255)


def _check_marker(marker: int) -> None:
    if not isinstance(marker, int) or not 0 <= marker <= 255:
        raise ValueError(f"marker must be an int in 0..255, got {marker!r}")


def _marker_cells(width: int, height: int) -> tuple[int, int]:
    """(cell width, cell height) of the marker band."""
    return width // _MARKER_CELLS, height // 8


def _render_frame(width: int, height: int, marker: int, index: int, fps: int) -> np.ndarray:
    """One RGB picture (height x width x 3) of a clip: marker band over moving content."""
    img = np.empty((height, width, 3), np.uint8)
    img[:, :] = colour_for_marker(marker)
    cw, ch = _marker_cells(width, height)
    band = 2 * ch
    # moving diagonal bars (texture that costs bits) below the marker band
    ys, xs = np.mgrid[band:height, 0:width]
    speed = max(1, width // (2 * fps))  # half a picture width per second
    bars = ((xs + ys + index * speed) // max(4, width // 20)) % 2 == 0
    shade = img[band:, :].astype(np.int16)
    shade[bars] = shade[bars] // 2 + 60
    img[band:, :] = np.clip(shade, 0, 255).astype(np.uint8)
    # a white box travelling across (wraps around)
    box = max(8, height // 6)
    x0 = (index * speed * 2) % max(1, width - box)
    y0 = band + (height - band - box) // 2
    img[y0 : y0 + box, x0 : x0 + box] = 255
    # the marker band, drawn last so nothing overlaps it
    for i in range(_MARKER_CELLS):
        bit = (marker >> (_MARKER_CELLS - 1 - i)) & 1
        top, bottom = (255, 0) if bit else (0, 255)
        x = i * cw
        img[0:ch, x : x + cw] = top
        img[ch:band, x : x + cw] = bottom
    return img


def marker_from_frame(frame: av.VideoFrame) -> int | None:
    """The marker (0-255) drawn into a decoded picture of a clip, or None when the picture
    carries no valid marker. Works at any resolution the encoder kept the aspect of, and
    survives lossy coding (each cell is a large flat black or white area)."""
    gray = frame.to_ndarray(format="gray")
    height, width = gray.shape[:2]
    cw, ch = _marker_cells(width, height)
    if cw < 4 or ch < 4:
        return None
    mx, my = cw // 4, ch // 4  # ignore cell borders (ringing, chroma bleed)
    marker = 0
    for i in range(_MARKER_CELLS):
        x = i * cw
        top = float(gray[my : ch - my, x + mx : x + cw - mx].mean())
        bottom = float(gray[ch + my : 2 * ch - my, x + mx : x + cw - mx].mean())
        if abs(top - bottom) < 100:
            return None
        marker = (marker << 1) | (1 if top > bottom else 0)
    return marker


# ---------------------------------------------------------------------- clips


@dataclass(frozen=True, slots=True)
class ClipPacket:
    """One encoded frame of a clip: its VP8 temporal layer `tid` (None in a clip without
    temporal layers) and whether it is a layer-sync frame (refers to TID 0 frames only)."""

    data: bytes
    keyframe: bool
    tid: int | None = None
    sync: bool = False


@dataclass(frozen=True)
class VideoClip:
    """A pre-encoded VP8 clip: `packets[i]` is frame `i`, at `fps` frames per second."""

    width: int
    height: int
    fps: int
    bitrate: int
    gop: int
    marker: int
    packets: tuple[ClipPacket, ...]
    path: Path | None = None
    #: 1 (no temporal layers) or 3 (L1T3: every packet has a `tid`)
    temporal_layers: int = 1
    _index: dict[bytes, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for i, p in enumerate(self.packets):
            self._index.setdefault(_digest(p.data), i)

    @property
    def duration(self) -> float:
        return len(self.packets) / self.fps

    @functools.cached_property
    def measured_bitrate(self) -> int:
        """The bit/s the clip's frames really take (its encoder's target is `bitrate`)."""
        return round(sum(len(p.data) for p in self.packets) * 8 / self.duration)

    @property
    def keyframe_indexes(self) -> list[int]:
        return [i for i, p in enumerate(self.packets) if p.keyframe]

    def locate(self, data: bytes) -> int | None:
        """Index of the frame whose encoded bytes are `data` (a passthrough receiver gets
        them byte-identical), or None when `data` is not a frame of this clip."""
        return self._index.get(_digest(data))


@dataclass(frozen=True)
class AudioClip:
    """Pre-encoded Opus packets of 20 ms each (960 samples at 48 kHz)."""

    frequency: float
    packets: tuple[ClipPacket, ...]
    samples_per_packet: int = 960
    #: RFC 6464 level of the tone (-dBov of its RMS, 0..127; 127 = digital silence)
    level_dbov: int = 127


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=12).digest()


def resolve_cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The clip cache directory: `override`, else `$SFU_CACHE_DIR`, else
    `~/.cache/sfu-relay/`."""
    if override is not None:
        return Path(override)
    env = os.environ.get("SFU_CACHE_DIR")
    if env:
        return Path(env)
    return Path.home() / ".cache" / "sfu-relay"


def _gop_for(fps: int, gop: int | None) -> int:
    return gop if gop is not None else 2 * fps


def clip_path(
    *,
    width: int = 640,
    height: int = 480,
    fps: int = 30,
    seconds: float = 4.0,
    bitrate: int = 600_000,
    gop: int | None = None,
    marker: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    temporal_layers: int = 1,
) -> Path:
    """Where `encode_clip` with these parameters caches its clip."""
    frames = max(1, round(seconds * fps))
    gop_frames = _gop_for(fps, gop)
    return _clip_file(
        width, height, fps, frames, bitrate, gop_frames, marker, cache_dir, temporal_layers
    )


def _clip_file(
    width: int,
    height: int,
    fps: int,
    frames: int,
    bitrate: int,
    gop_frames: int,
    marker: int,
    cache_dir: str | os.PathLike[str] | None,
    temporal_layers: int = 1,
) -> Path:
    layers = f"-l{temporal_layers}" if temporal_layers > 1 else ""
    name = (
        f"vp8-v{CLIP_FORMAT_VERSION}-{width}x{height}-{fps}fps-{frames}f-"
        f"{bitrate // 1000}k-gop{gop_frames}-m{marker}{layers}.clip"
    )
    return resolve_cache_dir(cache_dir) / name


_clip_memo: dict[Path, VideoClip] = {}
_clip_lock = threading.Lock()


def encode_clip(
    *,
    width: int = 640,
    height: int = 480,
    fps: int = 30,
    seconds: float = 4.0,
    bitrate: int = 600_000,
    gop: int | None = None,
    marker: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    temporal_layers: int = 1,
) -> VideoClip:
    """Return the VP8 clip for these parameters, encoding it on first use.

    The clip is `round(seconds * fps)` frames of `width` x `height` (even numbers) with a
    keyframe every `gop` frames (default: every 2 s, and frame 0 always) at about `bitrate`
    bits per second, showing `marker`. `temporal_layers=3` encodes L1T3 (`L1T3_PATTERN`;
    `gop` must then be a multiple of 4 so that every keyframe is a TID 0 frame), 1 none.
    It is cached in a file (see `clip_path`) written
    atomically, so concurrent processes may race safely, and memoised in the process.
    Blocking (about 5 ms per 640x480 frame on first use): call it before the event loop
    gets busy, or through `asyncio.to_thread`.
    """
    _check_marker(marker)
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError("width and height must be positive even numbers")
    if not 1 <= fps <= 120:
        raise ValueError("fps must be in 1..120")
    gop_frames = _gop_for(fps, gop)
    if gop_frames < 1:
        raise ValueError("gop must be at least 1")
    if temporal_layers not in (1, 3):
        raise ValueError(f"temporal_layers must be 1 or 3, got {temporal_layers!r}")
    if temporal_layers > 1 and gop_frames % len(L1T3_PATTERN):
        raise ValueError(f"with temporal layers the gop must be a multiple of 4, got {gop_frames}")
    frames = max(1, round(seconds * fps))
    path = _clip_file(
        width, height, fps, frames, bitrate, gop_frames, marker, cache_dir, temporal_layers
    )
    with _clip_lock:
        memo = _clip_memo.get(path)
        if memo is not None:
            return memo
        packets: list[ClipPacket] | None = None
        if path.exists():
            try:
                packets = _read_clip(path)
            except (OSError, ValueError) as exc:
                logger.warning("ignoring unreadable clip cache %s: %s", path, exc)
        if packets is not None and temporal_layers > 1 and any(p.tid is None for p in packets):
            packets = None  # a cache file without layer ids: encode again
        if packets is None or len(packets) != frames:
            started = time.monotonic()
            packets = _encode_vp8(
                width, height, fps, frames, bitrate, gop_frames, marker, temporal_layers
            )
            _write_clip(path, packets, {"width": width, "height": height, "fps": fps})
            logger.info(
                "encoded %d-frame clip %s in %.1f s",
                frames,
                path.name,
                time.monotonic() - started,
            )
        clip = VideoClip(
            width, height, fps, bitrate, gop_frames, marker, tuple(packets), path, temporal_layers
        )
        _clip_memo[path] = clip
        return clip


def encode_clip_variants(
    *,
    width: int = 640,
    height: int = 480,
    fps: int = 30,
    seconds: float = VARIANT_SECONDS,
    bitrate: int = 600_000,
    gop: int | None = None,
    marker: int = 0,
    cache_dir: str | os.PathLike[str] | None = None,
    temporal_layers: int = 1,
    shares: tuple[float, ...] = VARIANT_SHARES,
    scales: tuple[int, ...] | None = None,
) -> tuple[VideoClip, ...]:
    """`encode_clip` once per share of `bitrate`, at `width` x `height` divided by the
    matching entry of `scales` (default: `VARIANT_SHARES` at `VARIANT_SCALES`, i.e.
    640x480 at the bitrate, 320x240 at 1/3, 160x120 at 1/8; with `shares` given and no
    `scales`, all at full size). Each is `VARIANT_SECONDS` long by default (shorter than a
    single clip's 4 s) and shows the same scene scaled: the same fps, gop, frame count,
    layer pattern and marker (readable by `marker_from_frame` down to 32x32 pictures);
    each is cached like any clip. Sorted by measured bitrate, lowest first (what
    `PacedVideoTrack(variants=...)` takes). A receiver's VP8 decoder takes the size change
    at the keyframe where a track switches.

    Why smaller pictures: the encoder cannot go below what its largest quantizer gives,
    and 640x480 content takes 160-400 kbit/s at the least (depending on the marker's
    colours); 160x120 takes about 55 kbit/s. `VideoClip.measured_bitrate` says what each
    variant really is. ValueError unless the shares are distinct values in (0, 1], the
    scales positive ints, one per share, that leave even sizes."""
    if not shares or any(not 0 < s <= 1 for s in shares) or len(set(shares)) != len(shares):
        raise ValueError(f"shares must be distinct values in (0, 1], got {shares!r}")
    if scales is None:
        scales = VARIANT_SCALES if shares == VARIANT_SHARES else (1,) * len(shares)
    if len(scales) != len(shares):
        raise ValueError(f"scales {scales!r} must give one divisor per share {shares!r}")
    for k in scales:
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"scales must be ints >= 1, got {scales!r}")
        if width % k or height % k or (width // k) % 2 or (height // k) % 2:
            raise ValueError(f"{width}x{height} divided by {k} is not an even size")
    steps = sorted(
        {(max(1000, round(bitrate * s)), k) for s, k in zip(shares, scales, strict=True)}
    )
    if len({b for b, _ in steps}) != len(shares):
        raise ValueError(f"shares {shares!r} of {bitrate} give equal bitrates")
    clips = [
        encode_clip(
            width=width // k,
            height=height // k,
            fps=fps,
            seconds=seconds,
            bitrate=b,
            gop=gop,
            marker=marker,
            cache_dir=cache_dir,
            temporal_layers=temporal_layers,
        )
        for b, k in steps
    ]
    return VariantLadder(clips).clips  # checks they line up


def _l1t3_parameters(bitrate: int) -> str:
    """FFmpeg libvpx `ts-parameters` for L1T3 at `bitrate` bit/s (per-layer targets are
    cumulative, in kbit/s). `ts_layering_mode=3` (last: it overrides the rest) makes FFmpeg
    set libvpx's per-frame reference and update flags; without it every frame would
    still update LAST, i.e. be a reference."""
    targets = ",".join(str(max(1, round(bitrate * s / 1000))) for s in _L1T3_RATE_SHARE)
    ids = ",".join(str(tid) for tid, _ in L1T3_PATTERN)
    return (
        f"ts_number_layers=3:ts_target_bitrate={targets}:ts_rate_decimator=4,2,1:"
        f"ts_periodicity={len(L1T3_PATTERN)}:ts_layer_id={ids}:ts_layering_mode=3"
    )


def _encode_vp8(
    width: int,
    height: int,
    fps: int,
    frames: int,
    bitrate: int,
    gop: int,
    marker: int,
    temporal_layers: int = 1,
) -> list[ClipPacket]:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width = width
    codec.height = height
    codec.pix_fmt = "yuv420p"
    codec.framerate = fractions.Fraction(fps, 1)
    codec.time_base = fractions.Fraction(1, fps)
    codec.bit_rate = bitrate
    codec.gop_size = gop
    # no alt-ref / lagged frames: one visible frame per packet, as a real-time sender emits
    codec.options = {
        "deadline": "good",
        "cpu-used": "4",
        "auto-alt-ref": "0",
        "lag-in-frames": "0",
        "keyint_min": str(gop),  # no extra keyframes on "scene cuts"
    }
    if temporal_layers > 1:
        # error resilience: no frame carries entropy-context updates over to the next
        # (VP8's refresh_entropy_probs), so dropping upper-layer frames leaves the others
        # decodable bit for bit
        codec.options = {
            **codec.options,
            "ts-parameters": _l1t3_parameters(bitrate),
            "error-resilient": "default",
        }
    out: list[bytes] = []
    for i in range(frames):
        picture = av.VideoFrame.from_ndarray(
            _render_frame(width, height, marker, i, fps), format="rgb24"
        ).reformat(format="yuv420p")
        picture.pts = i
        if i % gop == 0:
            picture.pict_type = av.video.frame.PictureType.I
        out.extend(bytes(p) for p in codec.encode(picture))
    out.extend(bytes(p) for p in codec.encode(None))
    if len(out) != frames:
        raise RuntimeError(f"VP8 encoder produced {len(out)} packets for {frames} frames")
    if temporal_layers == 1:
        return [ClipPacket(data, vp8_is_keyframe(data)) for data in out]
    period = len(L1T3_PATTERN)
    clip = []
    for i, data in enumerate(out):
        tid, sync = L1T3_PATTERN[i % period]
        clip.append(ClipPacket(data, vp8_is_keyframe(data), tid, sync))
    return clip


def _write_clip(path: Path, packets: list[ClipPacket], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = json.dumps({**meta, "count": len(packets)}).encode()
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(_MAGIC + struct.pack(">I", len(header)) + header)
            for p in packets:
                f.write(struct.pack(">BI", _packet_flags(p), len(p.data)))
                f.write(p.data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _packet_flags(packet: ClipPacket) -> int:
    """A clip file's flag byte: bit 0 keyframe, bit 1 layer sync, bits 2-7 tid + 1 (0:
    no tid; a file written before temporal layers reads as such)."""
    tid = 0 if packet.tid is None else packet.tid + 1
    return (tid << 2) | (2 if packet.sync else 0) | (1 if packet.keyframe else 0)


def _read_clip(path: Path) -> list[ClipPacket]:
    blob = path.read_bytes()
    if not blob.startswith(_MAGIC):
        raise ValueError("bad magic")
    pos = len(_MAGIC)
    (hlen,) = struct.unpack_from(">I", blob, pos)
    pos += 4
    header = json.loads(blob[pos : pos + hlen])
    pos += hlen
    packets: list[ClipPacket] = []
    while pos < len(blob):
        flags, size = struct.unpack_from(">BI", blob, pos)
        pos += 5
        data = blob[pos : pos + size]
        if len(data) != size:
            raise ValueError("truncated clip")
        pos += size
        tid = (flags >> 2) - 1 if flags >> 2 else None
        packets.append(ClipPacket(data, bool(flags & 1), tid, bool(flags & 2)))
    if len(packets) != header.get("count"):
        raise ValueError("packet count mismatch")
    return packets


_audio_memo: dict[tuple[float, float, int, float], AudioClip] = {}


def encode_audio_clip(
    frequency: float = 440.0, seconds: float = 1.0, bitrate: int = 32_000, amplitude: float = 0.3
) -> AudioClip:
    """Opus packets (48 kHz, stereo, 20 ms each) of a sine tone of peak `amplitude` (0..1
    of full scale), memoised in the process (encoding 1 s takes a few milliseconds). The
    clip holds a whole number of periods when `frequency * seconds` is an integer, so
    looping it is seamless."""
    if not 0.0 <= amplitude <= 1.0:
        raise ValueError(f"amplitude must be within 0..1, got {amplitude!r}")
    key = (float(frequency), float(seconds), int(bitrate), float(amplitude))
    with _clip_lock:
        memo = _audio_memo.get(key)
        if memo is not None:
            return memo
        codec = av.CodecContext.create("libopus", "w")
        codec.sample_rate = AUDIO_CLOCK_RATE
        codec.layout = "stereo"
        codec.format = "s16"
        codec.bit_rate = bitrate
        codec.time_base = fractions.Fraction(1, AUDIO_CLOCK_RATE)
        samples = 960
        count = max(1, round(seconds * AUDIO_CLOCK_RATE / samples))
        t = np.arange(count * samples) / AUDIO_CLOCK_RATE
        wave = (amplitude * 32767 * np.sin(2 * np.pi * frequency * t)).astype(np.int16)
        rms = float(np.sqrt(np.mean((wave.astype(np.float64) / 32767) ** 2))) if count else 0.0
        level = 127 if rms <= 0 else min(127, max(0, round(-20 * np.log10(rms))))
        out: list[bytes] = []
        for i in range(count):
            chunk = wave[i * samples : (i + 1) * samples]
            frame = av.AudioFrame.from_ndarray(
                np.repeat(chunk, 2).reshape(1, -1), format="s16", layout="stereo"
            )
            frame.sample_rate = AUDIO_CLOCK_RATE
            frame.pts = i * samples
            out.extend(bytes(p) for p in codec.encode(frame))
        out.extend(bytes(p) for p in codec.encode(None))
        # the encoder's flush adds a packet for its look-ahead: keep whole periods only
        out = [d for d in out if d][:count]
        clip = AudioClip(
            float(frequency), tuple(ClipPacket(d, True) for d in out), level_dbov=int(level)
        )
        _audio_memo[key] = clip
        return clip


# ---------------------------------------------------------------------- paced tracks


class _PacedTrack(MediaStreamTrack):
    """Replays `packets` in a loop at one packet per `interval` seconds of the monotonic
    clock. `pts` follows the schedule in units of 1/`clock_rate` and never goes back; after
    a stall longer than `MAX_LAG` the schedule moves forward instead of bursting."""

    def __init__(self, packets: tuple[ClipPacket, ...], interval: float, clock_rate: int) -> None:
        super().__init__()
        if not packets:
            raise ValueError("a paced track needs at least one packet")
        self._packets = packets
        self._interval = interval
        self._clock_rate = clock_rate
        self._time_base = fractions.Fraction(1, clock_rate)
        self._start: float | None = None
        self._shift = 0.0  # seconds the schedule moved forward after stalls
        self._n = 0  # packets sent
        self._position = 0  # index into packets of the next one
        self._last_pts = -1
        self.frames_sent = 0
        self.bytes_sent = 0
        self.stalls = 0
        self.started_at: float | None = None

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
            self.started_at = now
        offset = self._n * self._interval + self._shift
        due = self._start + offset
        if due > now:
            await asyncio.sleep(due - now)
            if self.readyState != "live":
                raise MediaStreamError
        elif now - due > MAX_LAG:
            self.stalls += 1
            self._shift += now - due
            offset = self._n * self._interval + self._shift
        pts = max(self._last_pts + 1, round(offset * self._clock_rate))
        self._last_pts = pts
        index = self._choose(self._position)
        item = self._packets[index]
        self._position = (index + 1) % len(self._packets)
        self._n += 1
        packet = av.Packet(item.data)
        packet.pts = pts
        packet.dts = pts
        packet.time_base = self._time_base
        packet.is_keyframe = item.keyframe
        if item.tid is not None:
            # one instance per packet: PyAV drops a shared opaque from every packet
            # holding it when any of them is freed (see sfu.layers.FrameLayer)
            packet.opaque = FrameLayer.for_packet(item.tid, item.sync)
        self.frames_sent += 1
        self.bytes_sent += len(item.data)
        self._sent(pts, index)
        return packet

    def _choose(self, position: int) -> int:
        """Index of the packet to send now, `position` being the next one in order."""
        return position

    def _sent(self, pts: int, index: int) -> None:
        pass


class PacedVideoTrack(_PacedTrack):
    """A video track replaying a pre-encoded VP8 clip in real time, looping, as `av.Packet`
    (time_base 1/90000, pts increasing across loops); the sender packs it without encoding.

    `PacedVideoTrack(marker=3)` encodes/loads the default 640x480 30 fps clip for marker 3;
    pass `clip=encode_clip(...)` for other sizes. With `record_send_times=True` the track
    keeps the monotonic send time of its last `max_records` frames: `send_times` (pts ->
    time) and `last_send_time(frame_index)` (for receivers that `clip.locate()` a frame).
    `request_keyframe()` makes the next frame the clip's next keyframe (hook it to the
    sender's PLI/FIR so new subscribers need not wait for the periodic one).

    Rate adaptation: `variants=encode_clip_variants(...)` (instead of `clip`) gives it
    bitrate variants of the same frames; it starts with the highest, or with the one that
    fits `start_bitrate` (like an encoder's start bitrate), and
    `set_target_bitrate(bps)` (the REMB the server sends; `SfuClient.publish` wires it)
    makes it send the highest variant whose measured bitrate fits `bps` with
    `VARIANT_HEADROOM`. It switches only at a keyframe of the variant it switches to (the
    frame positions line up across variants): down at once, jumping to the next keyframe
    (a real encoder would emit one), up at the clip's next periodic keyframe; so no delta
    frame of one variant ever follows frames of another. `variant_switches`,
    `current_bitrate`, `target_bitrate`, `variant_bitrates`. `clip` is the highest variant,
    `variant` the one being sent.
    """

    kind = "video"

    def __init__(
        self,
        clip: VideoClip | None = None,
        *,
        marker: int = 0,
        record_send_times: bool = False,
        max_records: int = 10_000,
        cache_dir: str | os.PathLike[str] | None = None,
        variants: tuple[VideoClip, ...] | list[VideoClip] | None = None,
        start_bitrate: int | None = None,
    ) -> None:
        if variants is not None:
            if clip is not None:
                raise ValueError("pass either clip or variants, not both")
            # through this module's `time`, so a test's fake clock drives the probing too
            ladder = VariantLadder(variants, clock=lambda: time.monotonic())
            if start_bitrate is not None:
                ladder.start_at(start_bitrate)
        else:
            if clip is None:
                clip = encode_clip(marker=marker, cache_dir=cache_dir)
            ladder = VariantLadder([clip])
        top = ladder.clips[-1]
        super().__init__(ladder.current.packets, 1.0 / top.fps, VIDEO_CLOCK_RATE)
        self._ladder = ladder
        self.clip = top
        self.marker = top.marker
        #: 3 when the clip has temporal layers (its packets carry `FrameLayer` opaques)
        self.temporal_layers = top.temporal_layers
        self.record_send_times = record_send_times
        self.max_records = max_records
        self.send_times: OrderedDict[int, float] = OrderedDict()
        self._index_times: dict[int, float] = {}
        self._keyframes = top.keyframe_indexes
        self._keyframe_wanted = False
        self._last_jump = -1.0
        self.keyframe_jumps = 0
        self.keyframes_sent = 0

    # ------------------------------------------------------------------ variants

    def set_target_bitrate(self, bps: int) -> None:
        """The bitrate the receiver allows (bit/s): the next keyframe of the variant that
        fits it switches to that variant (see the class doc). ValueError unless an int
        >= 0 (nothing changes)."""
        self._ladder.set_target(bps)

    @property
    def variant(self) -> VideoClip:
        """The variant being sent."""
        return self._ladder.current

    @property
    def current_bitrate(self) -> int:
        """The measured bitrate (bit/s) of the variant being sent."""
        return self._ladder.current.measured_bitrate

    @property
    def target_bitrate(self) -> int | None:
        """The last target set (None: never)."""
        return self._ladder.target

    @property
    def variant_bitrates(self) -> list[int]:
        """The measured bitrate of every variant, lowest first."""
        return self._ladder.bitrates

    @property
    def variant_switches(self) -> int:
        """How many times the track moved to another variant."""
        return self._ladder.switches

    def request_keyframe(self) -> None:
        """Send a keyframe next (jump ahead in the clip), at most every 0.3 s."""
        self._keyframe_wanted = True

    def _choose(self, position: int) -> int:
        ladder = self._ladder
        wanted = ladder.wanted
        index = position
        if wanted < ladder.index and not ladder.clips[wanted].packets[position].keyframe:
            # down: to the next keyframe now, as an encoder told to send less would
            self._keyframe_wanted = False
            self.keyframe_jumps += 1
            index = self._next_keyframe(position)
        elif self._keyframe_wanted:
            self._keyframe_wanted = False
            now = time.monotonic()
            if not self._packets[position].keyframe and now - self._last_jump >= 0.3:
                self._last_jump = now
                self.keyframe_jumps += 1
                index = self._next_keyframe(position)
        # keyframes sit at the same positions in every variant: switch only at one
        if wanted != ladder.index and ladder.clips[wanted].packets[index].keyframe:
            self._switch(wanted)
        return index

    def _next_keyframe(self, position: int) -> int:
        return next((k for k in self._keyframes if k > position), self._keyframes[0])

    def _switch(self, index: int) -> None:
        self._ladder.switch_to(index)
        self._packets = self._ladder.current.packets

    def _sent(self, pts: int, index: int) -> None:
        if self._packets[index].keyframe:
            self.keyframes_sent += 1
        if not self.record_send_times:
            return
        now = time.monotonic()
        self.send_times[pts] = now
        self._index_times[index] = now
        while len(self.send_times) > self.max_records:
            self.send_times.popitem(last=False)

    def last_send_time(self, frame_index: int) -> float | None:
        """Monotonic time the clip's frame `frame_index` was last sent (recording on)."""
        return self._index_times.get(frame_index)


class PacedAudioTrack(_PacedTrack):
    """An audio track replaying pre-encoded Opus (20 ms packets of a tone, 48 kHz) in real
    time, looping, as `av.Packet` with time_base 1/48000.

    `audio_level` (-dBov 0..127, default the clip's level; None: none) is the RFC 6464
    level the client's sender writes into each packet (`SfuClient.publish` installs the
    hook): set it to 127 to make the bot "silent" to the server's active-speaker
    detector, or to a low value for a burst, without re-encoding anything."""

    kind = "audio"

    def __init__(self, clip: AudioClip | None = None, *, frequency: float = 440.0) -> None:
        if clip is None:
            clip = encode_audio_clip(frequency)
        super().__init__(clip.packets, clip.samples_per_packet / AUDIO_CLOCK_RATE, AUDIO_CLOCK_RATE)
        self.clip = clip
        self.audio_level: int | None = clip.level_dbov

    def current_audio_level(self) -> int | None:
        """The level to stamp on the packet being sent (the sender hook's callback)."""
        return self.audio_level


# ---------------------------------------------------------------------- files


class PatternVideoTrack(VideoStreamTrack):
    """Small raw frames whose luma changes every frame, paced at 30 fps by aiortc's
    `VideoStreamTrack`: the sender ENCODES them (cheap at this size). For tests that need
    any video at all, not a benchmark (use `PacedVideoTrack` there)."""

    def __init__(self, width: int = 96, height: int = 64) -> None:
        super().__init__()
        self.size = (width, height)
        self.count = 0

    async def recv(self) -> av.VideoFrame:
        pts, time_base = await self.next_timestamp()
        frame = av.VideoFrame(width=self.size[0], height=self.size[1])
        for i, plane in enumerate(frame.planes):
            plane.update(bytes([(self.count * 7) % 256 if i == 0 else 128]) * plane.buffer_size)
        frame.pts, frame.time_base = pts, time_base
        self.count += 1
        return frame


@dataclass
class FileTracks:
    """The tracks of a media file played by aiortc's `MediaPlayer` (which decodes; the
    sender encodes). `close()` stops them and the player's thread."""

    player: Any
    video: MediaStreamTrack | None
    audio: MediaStreamTrack | None

    def close(self) -> None:
        for track in (self.video, self.audio):
            if track is not None:
                track.stop()


def file_tracks(path: str | os.PathLike[str], *, loop: bool = True) -> FileTracks:
    """Open a media file for publishing (`MediaPlayer(path, decode=True, loop=loop)`)."""
    from aiortc.contrib.media import MediaPlayer

    player = MediaPlayer(os.fspath(path), decode=True, loop=loop)
    return FileTracks(player, player.video, player.audio)
