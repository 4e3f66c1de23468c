"""Errors with stable machine-readable codes (the `code` of PROTOCOL.md's error envelope)."""

from __future__ import annotations

from sfu.wire import ERROR_CODES, ErrorCode, ProtocolError

__all__ = ["ERROR_CODES", "ErrorCode", "SfuError"]


class SfuError(ProtocolError):
    """A refusal the server tells the client about: a stable server `code` (one of
    `ERROR_CODES`) and a human `message`; `to_dict()` is the ack's error object."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(code, message)
        self.code: ErrorCode = code
