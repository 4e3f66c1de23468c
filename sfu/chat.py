"""Chat messages and a room's bounded chat history."""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One chat line as PROTOCOL.md's `ChatMessage`."""

    id: str
    sender_id: str
    name: str
    text: str
    ts: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from": self.sender_id,
            "name": self.name,
            "text": self.text,
            "ts": self.ts,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ChatMessage:
        """The inverse of `to_dict` (raises KeyError/ValueError/TypeError when malformed)."""
        return cls(str(d["id"]), str(d["from"]), str(d["name"]), str(d["text"]), float(d["ts"]))


class ChatHistory:
    """Owns the last `size` messages of one room, oldest first; nothing to close.

    Message ids are `m<id_prefix><n>`; a cluster node passes a prefix unique to the node
    so ids are unique cluster-wide."""

    def __init__(self, size: int, id_prefix: str = "") -> None:
        self._messages: deque[ChatMessage] = deque(maxlen=size)
        self._ids = itertools.count(1)
        self._prefix = id_prefix

    def add(self, sender_id: str, name: str, text: str) -> ChatMessage:
        message = ChatMessage(
            f"m{self._prefix}{next(self._ids)}", sender_id, name, text, time.time()
        )
        self._messages.append(message)
        return message

    def restore(self, messages: Iterable[ChatMessage]) -> None:
        """Put earlier messages (e.g. kept by the cluster) before the current ones."""
        current = list(self._messages)
        self._messages.clear()
        self._messages.extend([*messages, *current])

    def to_list(self) -> list[dict[str, Any]]:
        return [m.to_dict() for m in self._messages]

    def __len__(self) -> int:
        return len(self._messages)
