"""The Python client SDK: a participant speaking PROTOCOL.md, for bots, tests and the
benchmark. One module per noun:

- `connection`: `SfuClient`, one Socket.IO connection and ONE `RTCPeerConnection`,
  negotiation (glare included), server events, waits.
- `wire`: wire types (`Participant`, `ChatMessage`, `TrackInfo`, `JoinResult`,
  `ServerEvent`) and `SfuError` parsing. Kinds, sources, codec policy and error codes come
  from `sfu.wire`, shared with the server.
- `tracks`: `RemoteTrack` and `TrackStats` (receiving).
- `sources`: paced pre-encoded tracks (`PacedVideoTrack`, `PacedAudioTrack`), clips,
  `PatternVideoTrack`.

The package never imports the server (rooms, participants, the aiohttp app): only
`sfu.wire`, the `sfu.compat` hooks and `sfu.frame_assembler`
(tests/test_client_unit.py checks it in a fresh interpreter).
"""

from __future__ import annotations

from sfu.wire import Kind, Source
from signaling.client.connection import (
    MAX_EVENTS,
    MAX_GLARE_RETRIES,
    MAX_KEPT_ENDED_TRACKS,
    MAX_QUEUED_TRACKS,
    SfuClient,
)
from signaling.client.sources import (
    AUDIO_CLOCK_RATE,
    VIDEO_CLOCK_RATE,
    AudioClip,
    ClipPacket,
    FileTracks,
    PacedAudioTrack,
    PacedVideoTrack,
    PatternVideoTrack,
    VideoClip,
    clip_path,
    colour_for_marker,
    encode_audio_clip,
    encode_clip,
    file_tracks,
    marker_from_frame,
    resolve_cache_dir,
    vp8_is_keyframe,
)
from signaling.client.tracks import DEFAULT_TIMEOUT, FRAME_QUEUE_SIZE, RemoteTrack, TrackStats
from signaling.client.wire import (
    ChatMessage,
    JoinResult,
    Participant,
    ServerEvent,
    SfuError,
    TrackInfo,
)

__all__ = [
    "AUDIO_CLOCK_RATE",
    "DEFAULT_TIMEOUT",
    "FRAME_QUEUE_SIZE",
    "MAX_EVENTS",
    "MAX_GLARE_RETRIES",
    "MAX_KEPT_ENDED_TRACKS",
    "MAX_QUEUED_TRACKS",
    "VIDEO_CLOCK_RATE",
    "AudioClip",
    "ChatMessage",
    "ClipPacket",
    "FileTracks",
    "JoinResult",
    "Kind",
    "PacedAudioTrack",
    "PacedVideoTrack",
    "Participant",
    "PatternVideoTrack",
    "RemoteTrack",
    "ServerEvent",
    "SfuClient",
    "SfuError",
    "Source",
    "TrackInfo",
    "TrackStats",
    "VideoClip",
    "clip_path",
    "colour_for_marker",
    "encode_audio_clip",
    "encode_clip",
    "file_tracks",
    "marker_from_frame",
    "resolve_cache_dir",
    "vp8_is_keyframe",
]
