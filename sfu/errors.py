"""Errors with stable machine-readable codes (the `code` of PROTOCOL.md's error envelope)."""

from __future__ import annotations

from sfu.wire import ERROR_CODES, ErrorCode

__all__ = ["ERROR_CODES", "ErrorCode", "SfuError"]


class SfuError(Exception):
    """A refusal the client is told about: a stable `code` and a human `message`."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message

    def to_dict(self) -> dict[str, str]:
        """The `error` object of the ack envelope."""
        return {"code": self.code, "message": self.message}

    def __repr__(self) -> str:
        return f"SfuError({self.code!r}, {self.message!r})"
