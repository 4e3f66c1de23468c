"""Cheap validation of client SDP before aiortc sees it.

aiortc accepts an SDP without `a=fingerprint` and fails later in a background task, and
parses arbitrarily large input: check size, shape and the security attributes first.
"""

from __future__ import annotations

from aiortc.sdp import SessionDescription

from sfu.errors import SfuError

_ROLES = {"offer": {"actpass", "active", "passive"}, "answer": {"active", "passive"}}


def check_offer(sdp: str, max_bytes: int, max_lines: int, kind: str = "offer") -> None:
    """Raise `SfuError("invalid_sdp")` unless `sdp` is a plausible WebRTC description."""
    if len(sdp) > max_bytes:
        raise SfuError("invalid_sdp", f"{kind} larger than {max_bytes} bytes")
    if sdp.count("\n") + 1 > max_lines:
        raise SfuError("invalid_sdp", f"{kind} has more than {max_lines} lines")
    if not sdp.startswith("v=0"):
        raise SfuError("invalid_sdp", f"{kind} must start with v=0")
    lines = [line.strip() for line in sdp.splitlines()]
    sections: list[list[str]] = [[]]
    for line in lines:
        if line.startswith("m="):
            sections.append([])
        sections[-1].append(line)
    session, media = sections[0], sections[1:]
    if not media:
        raise SfuError("invalid_sdp", f"{kind} has no media section")

    def attr(section: list[str], name: str) -> list[str]:
        prefix = f"a={name}:"
        return [line[len(prefix) :] for line in section if line.startswith(prefix)]

    for index, section in enumerate(media):
        parts = section[0][2:].split()
        if len(parts) < 3:
            raise SfuError("invalid_sdp", f"m-line {index} is malformed")
        if parts[0] not in ("audio", "video", "application"):
            raise SfuError("invalid_sdp", f"m-line {index}: unsupported media {parts[0]!r}")
        if parts[1] == "0":
            continue  # rejected m-line
        if not (attr(section, "fingerprint") or attr(session, "fingerprint")):
            raise SfuError("invalid_sdp", f"m-line {index} has no DTLS fingerprint")
        roles = attr(section, "setup") or attr(session, "setup")
        if not roles or roles[0] not in _ROLES.get(kind, _ROLES["offer"]):
            raise SfuError("invalid_sdp", f"m-line {index} has a missing or bad a=setup role")
        if not (attr(section, "ice-ufrag") or attr(session, "ice-ufrag")):
            raise SfuError("invalid_sdp", f"m-line {index} has no ICE credentials")
    try:
        SessionDescription.parse(sdp)
    except Exception as exc:
        raise SfuError("invalid_sdp", f"unparsable {kind}: {exc!r}"[:300]) from None
