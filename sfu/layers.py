"""Temporal-layer metadata of one encoded video frame (`FrameLayer`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class FrameLayer:
    """The VP8 temporal layer of a frame: `tid` (0 = base layer) and `sync` (the payload
    descriptor's Y bit: the frame depends on base-layer frames only). Immutable: one
    shared instance per (tid, sync) can travel on every `av.Packet.opaque`."""

    tid: int
    sync: bool
