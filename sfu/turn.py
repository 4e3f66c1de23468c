"""Ephemeral TURN credentials (the "TURN REST API" of coturn's `use-auth-secret`).

The server and the TURN server share a secret. For each participant the server mints

    username   = "<unix expiry>:<participant id>"
    credential = base64(HMAC-SHA1(secret, username))

and coturn recomputes the same credential from the username, refusing it after the expiry.
Nothing to own or close: pure functions of the secret, the clock and the user.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any

DEFAULT_TTL = 86400.0


def turn_credential(secret: str, username: str) -> str:
    """coturn's long-term password for a REST-API `username`."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def turn_username(user: str, ttl: float = DEFAULT_TTL, now: float | None = None) -> str:
    """`<expiry>:<user>` with expiry = now + ttl in whole Unix seconds."""
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    if ":" in user:
        raise ValueError("user must not contain ':'")
    issued = time.time() if now is None else now
    return f"{int(issued + ttl)}:{user}"


@dataclass(frozen=True, slots=True)
class TurnCredentials:
    """Mints one RTCIceServer (all TURN URLs, one credential) per participant."""

    secret: str
    urls: tuple[str, ...]
    ttl: float = DEFAULT_TTL

    def __post_init__(self) -> None:
        if not self.secret:
            raise ValueError("a TURN secret must not be empty")
        if not self.urls:
            raise ValueError("at least one TURN URL is needed with a TURN secret")
        for url in self.urls:
            if not url.startswith(("turn:", "turns:")):
                raise ValueError(f"not a turn: or turns: URL: {url!r}")
        if not 60 <= self.ttl <= 30 * 86400:
            raise ValueError("the TURN credential ttl must be between 60 s and 30 days")

    def ice_server(self, user: str, now: float | None = None) -> dict[str, Any]:
        """The RTCIceServer dict for a join ack's `iceServers`."""
        username = turn_username(user, self.ttl, now)
        return {
            "urls": list(self.urls),
            "username": username,
            "credential": turn_credential(self.secret, username),
        }
