"""Configuration of the media core (`SfuConfig`): limits, ICE and forwarding settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ForwardingMode = Literal["passthrough", "transcode"]
FORWARDING_MODES: tuple[ForwardingMode, ...] = ("passthrough", "transcode")
SendPath = Literal["lean", "stock"]
#: "lean": `sfu.compat.lean_sender` (per frame, straight to the selected ICE pair);
#: "stock": aiortc's per-packet sender loop. Only passthrough slots use the lean path.
SEND_PATHS: tuple[SendPath, ...] = ("lean", "stock")
ReceivePath = Literal["lean", "stock"]
#: "lean": `sfu.compat.lean_receiver` handles each RTP packet a publisher sends (the same
#: RTCP statistics, NACKs, REMB and frames as aiortc's handler, less Python); "stock":
#: aiortc's `_handle_rtp_packet`. Only passthrough receivers use the lean path.
RECEIVE_PATHS: tuple[ReceivePath, ...] = ("lean", "stock")


@dataclass(frozen=True, slots=True)
class IceServer:
    """One RTCIceServer as sent to clients and used by the server's peer connections."""

    urls: str
    username: str | None = None
    credential: str | None = None

    def to_dict(self) -> dict[str, str]:
        out = {"urls": self.urls}
        if self.username is not None:
            out["username"] = self.username
        if self.credential is not None:
            out["credential"] = self.credential
        return out


@dataclass(frozen=True, slots=True)
class SfuConfig:
    """Everything the media core needs to know; immutable once the server starts.

    `ice_addresses` limits the host addresses ICE gathers on; empty means "every
    address aioice would pick" (all non-loopback). Tests and benchmarks use 127.0.0.1.
    """

    ice_addresses: tuple[str, ...] = ()
    ice_servers: tuple[IceServer, ...] = ()
    forwarding: ForwardingMode = "passthrough"
    send_path: SendPath = "lean"
    receive_path: ReceivePath = "lean"
    #: each subscriber's downlink estimate picks the temporal layers of its videos and
    #: pauses a video whose base layer does not fit (`--downlink-adaptation`)
    adapt_downlink: bool = True
    max_participants: int = 16
    max_rooms: int = 100
    chat_history: int = 100
    chat_burst: int = 5
    chat_per_second: float = 2.0
    #: `video pause` rate limit per participant (a hidden page pauses every tile at once)
    video_pause_burst: int = 64
    video_pause_per_second: float = 10.0
    negotiation_timeout: float = 15.0
    initial_offer_grace: float = 1.5
    pc_close_timeout: float = 5.0
    max_sdp_bytes: int = 128 * 1024
    max_sdp_lines: int = 5000
    max_candidates: int = 200
    #: where room recordings go (`--record-dir`); None: recording is disabled
    record_dir: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.forwarding not in FORWARDING_MODES:
            raise ValueError(f"forwarding must be one of {', '.join(FORWARDING_MODES)}")
        if self.send_path not in SEND_PATHS:
            raise ValueError(f"send_path must be one of {', '.join(SEND_PATHS)}")
        if self.receive_path not in RECEIVE_PATHS:
            raise ValueError(f"receive_path must be one of {', '.join(RECEIVE_PATHS)}")
        if not 1 <= self.max_participants <= 1000:
            raise ValueError("max_participants must be between 1 and 1000")
        if not 1 <= self.max_rooms <= 100000:
            raise ValueError("max_rooms must be between 1 and 100000")
        if self.negotiation_timeout <= 0:
            raise ValueError("negotiation_timeout must be positive")
