"""The port through which the media core talks to clients (implemented by `signaling/`)."""

from __future__ import annotations

from typing import Any, Protocol


class Signaler(Protocol):
    """Delivers server-to-client events; `sfu/` never knows the transport behind it."""

    async def emit(self, participant_id: str, event: str, payload: dict[str, Any]) -> None:
        """Send an event to one participant, no answer expected."""

    async def request(
        self, participant_id: str, event: str, payload: dict[str, Any], timeout: float
    ) -> Any:
        """Send an event and return the client's ack; raise TimeoutError when none comes."""

    async def disconnect(self, participant_id: str) -> None:
        """Drop the participant's signaling connection (after the core has removed it)."""
