"""Negotiation helpers over aiortc internals, for the server (codec pinning, re-offers
that keep negotiated ids) and for clients that send offers before applying them."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from typing import Any

from aiortc.rtcpeerconnection import RTCPeerConnection
from aiortc.rtcpeerconnection import add_transport_description as _add_transport_description
from aiortc.rtcrtptransceiver import RTCRtpTransceiver
from aiortc.rtcsessiondescription import RTCSessionDescription
from aiortc.sdp import SessionDescription


def pin_negotiated_codecs(transceiver: Any, mime_types: tuple[str, ...]) -> bool:
    """Restrict what `setRemoteDescription` already negotiated on a new transceiver
    (`RTCRtpTransceiver._codecs`, which `createAnswer` uses) to `mime_types` plus the RTX
    entries pointing at them. aiortc negotiates before the `track` event, so
    `setCodecPreferences` there is too late for the first answer. Return False when no
    wanted codec was negotiated (the offer cannot be served without transcoding)."""
    codecs = list(getattr(transceiver, "_codecs", []) or [])
    kept = [c for c in codecs if c.mimeType.lower() in mime_types and not _is_rtx(c)]
    if not kept:
        return False
    payload_types = {c.payloadType for c in kept}
    kept += [
        c
        for c in codecs
        if _is_rtx(c) and "video/rtx" in mime_types and c.parameters.get("apt") in payload_types
    ]
    transceiver._codecs = kept
    return True


def _is_rtx(codec: Any) -> bool:
    return str(codec.mimeType).lower().endswith("/rtx")


@contextlib.contextmanager
def park_transceivers(
    pc: RTCPeerConnection, transceivers: list[RTCRtpTransceiver]
) -> Iterator[None]:
    """Keep our not-yet-negotiated transceivers out of a remote offer being applied.

    aiortc has no rollback and matches a remote offer's new m-line to the first transceiver
    of its kind without a mid, so a pending send-only transceiver would be taken for the
    server's receive m-line; and `setLocalDescription(answer)` fails on a transceiver that
    was in no offer (`_offerDirection` None). While parked, each gets a placeholder mid (no
    real mid starts with "~"), no m-line index (createOffer gave it one for an offer that
    was refused) and an "inactive" offer direction; afterwards the mid is None again, so
    the next `createOffer` includes it as new.

    With max-bundle the first transceiver of a peer connection creates the one transport
    and aiortc assumes it becomes the BUNDLE's first mid. When that transceiver is ours and
    parked, the server's m-lines take the first mids on the same transport; a later answer
    would then "discard" our transceiver's transport as a bundled-away one, which closes
    the shared transport. So a parked transceiver whose transport is already used by a
    negotiated transceiver is marked bundled. aiortc 1.16 private internals used:
    `RTCRtpTransceiver._set_mid`, `._set_mline_index`, `._offerDirection`, `._bundled`.
    """
    private: list[Any] = list(transceivers)
    for i, transceiver in enumerate(private):
        transceiver._set_mid(f"~parked{i}")
        transceiver._set_mline_index(None)
        transceiver._offerDirection = "inactive"
    try:
        yield
    finally:
        for transceiver in private:
            transceiver._set_mid(None)
            transceiver._offerDirection = None
        negotiated = [t for t in pc.getTransceivers() if t.mid is not None]
        for transceiver in private:
            transport = transceiver.receiver.transport
            if any(t.receiver.transport is transport for t in negotiated):
                transceiver._bundled = True


def add_transport_description(media: Any, transport: Any) -> None:
    """Add ICE/DTLS attributes and candidates to an m-line, as `setLocalDescription` does
    (`aiortc.rtcpeerconnection.add_transport_description`, a module function outside
    aiortc's public API), so a client can send an offer without changing its state."""
    _add_transport_description(media, transport)


def claim_ice_controlling(pc: RTCPeerConnection) -> list[Any]:
    """Make the ICE transports whose role is not yet set controlling, as
    `setLocalDescription(offer)` would (`RTCIceTransport._role_set`,
    `._connection.ice_controlling`). For a client that sends its offer before applying
    it. Returns the transports changed, for `release_ice_role`."""
    changed: list[Any] = []
    for transceiver in pc.getTransceivers():
        transport: Any = transceiver.receiver.transport.transport
        if not transport._role_set and transport not in changed:
            transport._connection.ice_controlling = True
            transport._role_set = True
            changed.append(transport)
    return changed


def release_ice_role(transports: list[Any]) -> None:
    """Undo `claim_ice_controlling` (our offer was refused: we may answer instead)."""
    for transport in transports:
        transport._role_set = False
        transport._connection.ice_controlling = False


async def create_offer_keeping_negotiated(pc: RTCPeerConnection) -> RTCSessionDescription:
    """`pc.createOffer()` that keeps what earlier negotiations settled, bundle-wide.

    aiortc's `createOffer` resets every transceiver's `_codecs` and `_headerExtensions` to
    its fixed defaults, including m-lines the remote peer offered first with its own
    payload types and extension ids. Chrome refuses such a re-offer ("RTP extension ID
    reassignment not supported"), and an `RTCRtpReceiver` reads its codecs once, so a
    publisher moved to new payload types goes silent. And in one BUNDLE group an id or a
    payload type must mean the same thing on every m-line. So: negotiated m-lines keep
    their values; new ones reuse the ids/payload types the bundle already uses for the
    same extension/codec, and take free ones otherwise."""
    transceivers = pc.getTransceivers()
    saved = {
        t.mid: (list(t._codecs), list(t._headerExtensions))
        for t in transceivers
        if t.mid is not None and t.currentDirection is not None and t._codecs
    }
    offer = await pc.createOffer()
    if not saved:
        return offer
    ext_ids: dict[str, int] = {}
    pts: dict[tuple[Any, ...], int] = {}
    for codecs, extensions in saved.values():
        for ext in extensions:
            ext_ids.setdefault(ext.uri, ext.id)
        by_pt = {c.payloadType: c for c in codecs}
        for codec in codecs:
            pts.setdefault(_codec_key(codec, by_pt), codec.payloadType or 0)
    # new transceivers get their mid only from setLocalDescription; createOffer did give
    # every transceiver its m-line index
    by_index = {t._get_mline_index(): t for t in transceivers}
    description = SessionDescription.parse(offer.sdp)
    for index, media in enumerate(description.media):
        transceiver = by_index.get(index)
        if transceiver is None or media.kind != transceiver.kind:
            continue
        if media.rtp.muxId in saved:
            codecs, extensions = saved[media.rtp.muxId]
        else:
            codecs = _align_codecs(transceiver._codecs, pts)
            extensions = _align_extensions(transceiver._headerExtensions, ext_ids)
        transceiver._codecs = codecs
        transceiver._headerExtensions = extensions
        media.rtp.codecs = codecs
        media.rtp.headerExtensions = extensions
        media.fmt = [c.payloadType for c in codecs]
    return RTCSessionDescription(sdp=str(description), type="offer")


def _codec_key(codec: Any, by_pt: dict[Any, Any]) -> tuple[Any, ...]:
    """What makes two codec entries the same codec (RTX: the same codec it repairs)."""
    params = {k: v for k, v in codec.parameters.items() if k != "apt"}
    key: tuple[Any, ...] = (
        codec.mimeType.lower(),
        codec.clockRate,
        codec.channels,
        tuple(sorted(params.items())),
    )
    if "apt" in codec.parameters and codec.parameters["apt"] in by_pt:
        key += _codec_key(by_pt[codec.parameters["apt"]], by_pt)
    return key


def _align_codecs(codecs: list[Any], pts: dict[tuple[Any, ...], int]) -> list[Any]:
    """Copies of `codecs` with the bundle's payload types (new ones for unknown codecs);
    records what it assigns in `pts`."""
    by_pt = {c.payloadType: c for c in codecs}
    mapping: dict[Any, int] = {}
    for codec in sorted(codecs, key=lambda c: "apt" in c.parameters):  # RTX last
        key = _codec_key(codec, by_pt)
        if key not in pts:
            free = next(pt for pt in range(96, 128) if pt not in pts.values())
            pts[key] = free
        mapping[codec.payloadType] = pts[key]
    out = []
    for codec in codecs:
        parameters = dict(codec.parameters)
        if "apt" in parameters and parameters["apt"] in mapping:
            parameters["apt"] = mapping[parameters["apt"]]
        out.append(
            dataclasses.replace(
                codec,
                payloadType=mapping[codec.payloadType],
                parameters=parameters,
                rtcpFeedback=list(codec.rtcpFeedback),
            )
        )
    return out


def _align_extensions(extensions: list[Any], ext_ids: dict[str, int]) -> list[Any]:
    """Copies of `extensions` with the bundle's ids (free ones, 1-14, for new URIs)."""
    out = []
    for ext in extensions:
        if ext.uri not in ext_ids:
            ext_ids[ext.uri] = next(i for i in range(1, 15) if i not in ext_ids.values())
        out.append(dataclasses.replace(ext, id=ext_ids[ext.uri]))
    return out
