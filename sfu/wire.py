"""Wire constants shared by the server and the Python client (docs/protocol.md): media
kinds and sources, the codec policy, and the stable error codes. Pure data, no imports of
the server, so `signaling.client` can use it without pulling the server in."""

from __future__ import annotations

from typing import Final, Literal, get_args

Kind = Literal["audio", "video"]
Source = Literal["camera", "microphone", "screen"]

KINDS: Final[tuple[Kind, ...]] = ("audio", "video")
SOURCES: Final[tuple[Source, ...]] = ("camera", "microphone", "screen")
#: The source a track of each kind has when nobody says otherwise.
DEFAULT_SOURCE: Final[dict[str, Source]] = {"video": "camera", "audio": "microphone"}

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
    "not_found",
]

ERROR_CODES: Final[tuple[ErrorCode, ...]] = get_args(ErrorCode)

#: Codes a client raises itself (never on the wire from the server).
ClientErrorCode = Literal[
    "timeout",
    "disconnected",
    "negotiation_failed",
    "closed",
    "bad_reply",
    "connection_refused",
    "unknown",
]
CLIENT_ERROR_CODES: Final[tuple[ClientErrorCode, ...]] = get_args(ClientErrorCode)


class ProtocolError(Exception):
    """The one error semantics of the protocol's error envelope: a stable `code` and a
    human `message`; `str()` is the message alone, `repr()` shows both. The server's
    `sfu.errors.SfuError` has the same shape; the client's `signaling.client.SfuError`
    subclasses this."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_dict(self) -> dict[str, str]:
        """The `error` object of the ack envelope."""
        return {"code": self.code, "message": self.message}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


#: Server -> client events (docs/protocol.md).
SERVER_EVENTS: Final[tuple[str, ...]] = (
    "participant joined",
    "participant left",
    "participant updated",
    "chat message",
    "error",
    "active speaker",
    "recording",
    "video state",
)

#: Client -> server `video pause`: the sources a viewer may pause (video only).
PAUSABLE_SOURCES: Final[tuple[Source, ...]] = ("camera", "screen")

VideoState = Literal["active", "paused-link", "paused-viewer"]
#: Server -> client `video state`: the forwarding states of a remote video.
VIDEO_STATES: Final[tuple[VideoState, ...]] = get_args(VideoState)
