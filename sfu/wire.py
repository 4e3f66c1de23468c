"""Wire constants shared by the server and the Python client (docs/protocol.md): media
kinds and sources, the codec policy, and the stable error codes. Pure data, no imports of
the server, so `signaling.client` can use it without pulling the server in."""

from __future__ import annotations

from typing import Final, Literal

Kind = Literal["audio", "video"]
Source = Literal["camera", "microphone", "screen"]

KINDS: Final[tuple[Kind, ...]] = ("audio", "video")
SOURCES: Final[tuple[Source, ...]] = ("camera", "microphone", "screen")

#: The room's codecs (no transcoding): mime types a transceiver of each kind may use.
PREFERRED_CODECS: Final[dict[str, tuple[str, ...]]] = {
    "video": ("video/vp8", "video/rtx"),
    "audio": ("audio/opus",),
}

ErrorCode = Literal[
    "bad_request",
    "not_joined",
    "already_joined",
    "room_full",
    "unauthorized",
    "invalid_sdp",
    "invalid_state",
    "rate_limited",
    "server_busy",
    "internal_error",
    "moved",
]

ERROR_CODES: Final[tuple[ErrorCode, ...]] = (
    "bad_request",
    "not_joined",
    "already_joined",
    "room_full",
    "unauthorized",
    "invalid_sdp",
    "invalid_state",
    "rate_limited",
    "server_busy",
    "internal_error",
    "moved",
)

#: Server -> client events (docs/protocol.md).
SERVER_EVENTS: Final[tuple[str, ...]] = (
    "participant joined",
    "participant left",
    "participant updated",
    "chat message",
    "error",
)
