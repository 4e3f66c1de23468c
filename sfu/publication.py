"""A published track as the room sees it: who publishes it, its kind and source."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sfu.wire import SOURCES, Kind, Source

__all__ = ["SOURCES", "Kind", "Publication", "Source"]

if TYPE_CHECKING:
    from sfu.forwarder import Forwarder


@dataclass(frozen=True, slots=True)
class Publication:
    """Identifies one forwarder in a room: `(publisher_id, key)` is unique per room."""

    publisher_id: str
    key: str
    kind: Kind
    source: Source
    forwarder: Forwarder
