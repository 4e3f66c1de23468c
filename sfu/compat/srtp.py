"""`fast_protect(session)` / `fast_protect_parts(session)`: SRTP-protect RTP packets with a
`pylibsrtp.Session` in fewer Python operations per packet.

`Session.protect` goes through a private `__process` that type-checks the packet,
allocates a fresh `int *` with cffi, copies the packet into the session's buffer, calls
`srtp_protect` and copies the result out. The lean send path protects every packet of every
subscriber, so `fast_protect` returns a closure that does the same C call and the same two
copies with the length cell allocated once, falling back to `session.protect` (which then
raises exactly as before) for a packet that is not `bytes` or too long for the buffer.
`fast_protect_parts` takes the packet as a header and a payload view and copies both into
the session's buffer, so the sender never concatenates a payload. The protected bytes are
identical (`tests/unit/test_srtp.py`).

pylibsrtp private internals relied upon (pinned: pylibsrtp==1.0.0;
`check_srtp_internals()` verifies them): a `Session` has `_srtp` (the cffi `srtp_t *`,
kept alive by the session, which the closure references), `_cdata` (its `char[]` buffer)
and `_buffer` (`ffi.buffer` over it); `pylibsrtp._binding` exports `ffi` and `lib` with
`srtp_protect(srtp_t, void *, int *)` and `srtp_err_status_ok`; `pylibsrtp.ERRORS` maps a
status to its message and `SRTP_MAX_TRAILER_LEN` is what `protect` reserves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pylibsrtp
from pylibsrtp import _binding

PYLIBSRTP_VERSION = "1.0.0"


def _protector(session: pylibsrtp.Session) -> tuple[Any, int, Callable[[int], bytes]] | None:
    """`session`'s buffer, the longest packet it takes, and `run(n)`: protect the `n`-byte
    packet the caller wrote into that buffer and return the protected bytes (one
    `srtp_protect` call, the length cell allocated once). None when the internals are not
    as expected."""
    s: Any = session
    srtp_p, cdata, buffer = (getattr(s, n, None) for n in ("_srtp", "_cdata", "_buffer"))
    if srtp_p is None or cdata is None or buffer is None:
        return None
    srtp = srtp_p[0]
    length = _binding.ffi.new("int *")
    protect_c = _binding.lib.srtp_protect
    ok = _binding.lib.srtp_err_status_ok
    errors = pylibsrtp.ERRORS

    def run(n: int) -> bytes:
        length[0] = n
        status = protect_c(srtp, cdata, length)
        if status != ok:
            raise pylibsrtp.Error(errors[status])
        out: bytes = buffer[0 : length[0]]
        return out

    return buffer, len(cdata) - pylibsrtp.SRTP_MAX_TRAILER_LEN, run


def fast_protect(session: pylibsrtp.Session) -> Callable[[bytes], bytes]:
    """A function protecting one RTP packet with `session`, byte-identical to
    `session.protect` (which it is, when the internals are not as expected)."""
    fallback = session.protect
    parts = _protector(session)
    if parts is None:
        return fallback
    buffer, limit, run = parts

    def protect(packet: bytes) -> bytes:
        n = len(packet)
        if n > limit or type(packet) is not bytes:
            return fallback(packet)
        buffer[0:n] = packet
        return run(n)

    return protect


def fast_protect_parts(session: pylibsrtp.Session) -> Callable[[bytes, Any], bytes]:
    """`protect(head, body)`: SRTP-protect the RTP packet `head + body` (`body` any bytes-like
    object, e.g. a memoryview slice of a shared frame) without building that packet first:
    both parts are copied straight into the session's buffer. Byte-identical to
    `session.protect(head + bytes(body))`, which it calls for what does not fit."""
    fallback = session.protect
    parts = _protector(session)
    if parts is None:
        return lambda head, body: fallback(head + bytes(body))
    buffer, limit, run = parts

    def protect(head: bytes, body: Any) -> bytes:
        h = len(head)
        n = h + len(body)
        if n > limit:
            return fallback(head + bytes(body))
        buffer[0:h] = head
        buffer[h:n] = body
        return run(n)

    return protect


def check_srtp_internals() -> list[str]:
    """The pylibsrtp internals `fast_protect` relies on that are missing or changed."""
    problems: list[str] = []
    version = getattr(pylibsrtp, "__version__", None)
    if version != PYLIBSRTP_VERSION:
        problems.append(f"pylibsrtp.__version__ == {PYLIBSRTP_VERSION!r} (found {version!r})")
    for name in ("srtp_protect", "srtp_err_status_ok"):
        if not hasattr(_binding.lib, name):
            problems.append(f"pylibsrtp._binding.lib.{name}")
    if not isinstance(getattr(pylibsrtp, "SRTP_MAX_TRAILER_LEN", None), int):
        problems.append("pylibsrtp.SRTP_MAX_TRAILER_LEN")
    if not isinstance(getattr(pylibsrtp, "ERRORS", None), list):
        problems.append("pylibsrtp.ERRORS")
    try:
        session: Any = pylibsrtp.Session()
        for name in ("_srtp", "_cdata", "_buffer"):
            if not hasattr(session, name):
                problems.append(f"pylibsrtp.Session.{name}")
    except Exception as exc:  # a changed constructor is a changed internal
        problems.append(f"constructing pylibsrtp.Session: {exc!r}")
    return problems
