"""Sender hooks: a subscriber's PLI/FIR and NACKs reach the SFU instead of a non-existent
encoder. Per instance: no aiortc class or module global is patched."""

from __future__ import annotations

from collections.abc import Callable

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
