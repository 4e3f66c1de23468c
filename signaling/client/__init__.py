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
from signaling.client import sources, wire
from signaling.client.connection import (
    MAX_EVENTS,
    MAX_GLARE_RETRIES,
    MAX_KEPT_ENDED_TRACKS,
    MAX_QUEUED_TRACKS,
    RECEIVE_MODES,
    ReceiveMode,
    SfuClient,
)
from signaling.client.sources import *  # noqa: F403
from signaling.client.tracks import DEFAULT_TIMEOUT, FRAME_QUEUE_SIZE, RemoteTrack, TrackStats
from signaling.client.wire import *  # noqa: F403

__all__ = [
    "DEFAULT_TIMEOUT",
    "FRAME_QUEUE_SIZE",
    "MAX_EVENTS",
    "MAX_GLARE_RETRIES",
    "MAX_KEPT_ENDED_TRACKS",
    "MAX_QUEUED_TRACKS",
    "RECEIVE_MODES",
    "Kind",
    "ReceiveMode",
    "RemoteTrack",
    "SfuClient",
    "Source",
    "TrackStats",
]
__all__ += wire.__all__
__all__ += sources.__all__
