"""Join tokens: HS256 JWTs that say which room a connection may join, as whom, and with
which grants (claims: room, name, exp, nbf, canPublish, canSubscribe, canRecord)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt

from sfu.errors import SfuError
from signaling.validation import parse_join

MAX_TOKEN = 4096
LEEWAY = 5.0


@dataclass(frozen=True, slots=True)
class Grant:
    """What a verified token allows."""

    room: str
    name: str
    can_publish: bool = True
    can_subscribe: bool = True
    #: may start/stop the room's recording (claim `canRecord`, default false)
    can_record: bool = False


def mint_token(
    secret: str,
    room: str,
    name: str,
    ttl: float = 3600.0,
    can_publish: bool = True,
    can_subscribe: bool = True,
    now: float | None = None,
    can_record: bool = False,
) -> str:
    """A signed join token for `room` as `name`, valid for `ttl` seconds."""
    parse_join({"room": room, "name": name})  # same rules as a join
    issued = time.time() if now is None else now
    claims = {
        "room": room,
        "name": name,
        "nbf": int(issued) - 1,
        "exp": int(issued + ttl),
        "canPublish": can_publish,
        "canSubscribe": can_subscribe,
    }
    if can_record:
        claims["canRecord"] = True
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_token(secret: str, auth: Any) -> Grant:
    """Return the grant of the Socket.IO `auth` payload's token; raise `unauthorized`."""
    token = auth.get("token") if isinstance(auth, dict) else None
    if not isinstance(token, str) or not token:
        raise SfuError("unauthorized", "a join token is required (auth: {token})")
    if len(token) > MAX_TOKEN:
        raise SfuError("unauthorized", "token too long")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=["HS256"],
            options={"require": ["exp", "nbf", "room", "name"]},
            leeway=LEEWAY,
        )
    except jwt.ExpiredSignatureError:
        raise SfuError("unauthorized", "token expired") from None
    except jwt.ImmatureSignatureError:
        raise SfuError("unauthorized", "token not valid yet") from None
    except jwt.InvalidTokenError as exc:
        raise SfuError("unauthorized", f"invalid token: {exc}") from None
    try:
        room, name = parse_join({"room": claims.get("room"), "name": claims.get("name")})
    except SfuError as exc:
        raise SfuError("unauthorized", f"token claims: {exc.message}") from None
    publish, subscribe = claims.get("canPublish", True), claims.get("canSubscribe", True)
    record = claims.get("canRecord", False)
    if not isinstance(publish, bool) or not isinstance(subscribe, bool):
        raise SfuError("unauthorized", "canPublish/canSubscribe must be booleans")
    if not isinstance(record, bool):
        raise SfuError("unauthorized", "canRecord must be a boolean")
    return Grant(room, name, publish, subscribe, record)
