"""Chat messages and a room's bounded chat history."""

from __future__ import annotations

import itertools
import time
from collections import deque
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


class ChatHistory:
    """Owns the last `size` messages of one room, oldest first; nothing to close."""

    def __init__(self, size: int) -> None:
        self._messages: deque[ChatMessage] = deque(maxlen=size)
        self._ids = itertools.count(1)

    def add(self, sender_id: str, name: str, text: str) -> ChatMessage:
        message = ChatMessage(f"m{next(self._ids)}", sender_id, name, text, time.time())
        self._messages.append(message)
        return message

    def to_list(self) -> list[dict[str, Any]]:
        return [m.to_dict() for m in self._messages]

    def __len__(self) -> int:
        return len(self._messages)
