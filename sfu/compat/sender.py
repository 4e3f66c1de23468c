"""Sender hooks: a subscriber's PLI/FIR and NACKs reach the SFU instead of a non-existent
encoder; a client's pre-encoded audio carries an RFC 6464 level.
Per instance: no aiortc class or module global is patched."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiortc.rtcrtpsender import RTCRtpSender


def install_sender_keyframe_hook(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Route the sender's incoming PLI/FIR to `callback` (replaces `_send_keyframe` on this
    instance only; installing again replaces the callback)."""
    sender._send_keyframe = callback  # type: ignore[method-assign]


def install_sender_nack_counter(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Call `callback` once per packet a subscriber NACKs (wraps `_retransmit` on this
    instance only; installing twice wraps twice, so install once per sender)."""
    original = sender._retransmit

    async def retransmit(sequence_number: int) -> None:
        callback()
        await original(sequence_number)

    sender._retransmit = retransmit  # type: ignore[method-assign]


def install_sender_audio_level(sender: RTCRtpSender, level: Callable[[], int | None]) -> None:
    """Make the sender write an RFC 6464 audio level into every packet it sends for a
    pre-encoded frame (stock aiortc only computes one for the `AudioFrame`s it encodes).

    `level()` returns the current -dBov (0..127, 127 = silence) or None (no extension).
    Wraps `_next_encoded_frame` on this instance only and sets the `RTCEncodedFrame`'s
    `audio_level` (aiortc writes `(False, -audio_level)`); install once per sender."""
    original = sender._next_encoded_frame

    async def next_encoded_frame(codec: Any) -> Any:
        frame = await original(codec)
        if frame is not None and frame.audio_level is None:
            value = level()
            if value is not None:
                frame.audio_level = -min(max(int(value), 0), 127)
        return frame

    sender._next_encoded_frame = next_encoded_frame  # type: ignore[method-assign]
