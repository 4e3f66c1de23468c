"""Operator endpoints: `/api/stats` (JSON snapshot), `/metrics` (Prometheus), `/stats`
(live dashboard page). With an admin token configured, all three require it, as
`Authorization: Bearer <token>` or `?token=<token>`."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from sfu.stats import StatsSampler
from signaling.events import SignalingEvents

MAX_TOKEN = 256


class SfuCollector(Collector):
    """Turns the sampler's snapshot and the signaling counters into `sfu_` metrics on
    each scrape; owns nothing."""

    def __init__(self, sampler: StatsSampler, events: SignalingEvents) -> None:
        self._sampler = sampler
        self._events = events

    def collect(self) -> Iterator[Metric]:
        sampler, events = self._sampler, self._events
        rooms = sampler.rooms
        published = forwarded = capped = limited = 0
        for room in rooms.rooms.values():
            capped += len(room.publisher_caps.caps())
            for participant in room.participants.values():
                published += len(participant.published)
                forwarded += sum(1 for s in participant.send_slots() if s.published is not None)
                limited += participant.downlink.bitrate() is not None
        gauges = (
            ("sfu_rooms", "Rooms open", len(rooms.rooms)),
            ("sfu_participants", "Participants in all rooms", rooms.participant_count()),
            ("sfu_published_tracks", "Tracks received from publishers", published),
            ("sfu_forwarded_streams", "Tracks being sent to subscribers", forwarded),
            (
                "sfu_publisher_caps",
                "Published videos whose publisher is asked (REMB) to lower its bitrate",
                capped,
            ),
            (
                "sfu_limited_downlinks",
                "Participants with a known downlink estimate (loss or REMB feedback)",
                limited,
            ),
            ("sfu_event_loop_lag_seconds", "Event loop lag at the last sample", sampler.loop_lag),
            (
                "sfu_process_cpu_percent",
                "Process CPU over the last sample interval",
                sampler.cpu_percent,
            ),
        )
        for name, doc, value in gauges:
            yield GaugeMetricFamily(name, doc, value=value)
        totals = sampler.totals
        counters = (
            ("sfu_packets_forwarded", "RTP packets sent to subscribers", totals.packets_forwarded),
            (
                "sfu_bytes_forwarded",
                "RTP payload bytes sent to subscribers",
                totals.bytes_forwarded,
            ),
            ("sfu_frames_forwarded", "Encoded frames sent to subscribers", totals.frames_forwarded),
            (
                "sfu_keyframe_requests",
                "Keyframe requests sent to publishers",
                totals.keyframe_requests,
            ),
            ("sfu_nacks_sent", "NACK packets sent to publishers", totals.nacks_sent),
            (
                "sfu_rtx_received",
                "RTX retransmissions received from publishers",
                totals.rtx_received,
            ),
            (
                "sfu_frames_lost",
                "Published frames given up on (loss not recovered in time)",
                totals.frames_lost,
            ),
            (
                "sfu_nacks_received",
                "Packets subscribers asked to be retransmitted (NACK)",
                totals.nacks_received,
            ),
            (
                "sfu_retransmits_sent",
                "Retransmissions sent to subscribers from the history (lean send path)",
                totals.retransmits_sent,
            ),
            (
                "sfu_negotiation_failures",
                "Participants removed after a failed negotiation",
                rooms.removals["negotiation_failed"] + rooms.removals["ice_timeout"],
            ),
        )
        for name, doc, value in counters:
            yield CounterMetricFamily(name, doc, value=value)
        malformed = CounterMetricFamily(
            "sfu_malformed_packets",
            "Malformed datagrams from clients, counted and dropped, by kind",
            labels=["kind"],
        )
        for kind in ("rtp", "rtcp", "srtp", "datagram"):
            malformed.add_metric([kind], rooms.malformed[kind])
        yield malformed
        joins = CounterMetricFamily("sfu_joins", "Join attempts by outcome", labels=["outcome"])
        for outcome, count in sorted(events.joins.items()):
            joins.add_metric([outcome], count)
        yield joins
        rejected = CounterMetricFamily(
            "sfu_rejected_messages", "Client events refused, by error code", labels=["reason"]
        )
        for reason, count in sorted(events.rejected.items()):
            rejected.add_metric([reason], count)
        yield rejected
        by_event = CounterMetricFamily(
            "sfu_rejected_events",
            "Client events refused, by event and error code",
            labels=["event", "reason"],
        )
        for (event, reason), count in sorted(events.rejected_by_event.items()):
            by_event.add_metric([event, reason], count)
        yield by_event


def build_registry(sampler: StatsSampler, events: SignalingEvents) -> CollectorRegistry:
    """A registry owned by one app (no global default registry)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SfuCollector(sampler, events))
    ProcessCollector(registry=registry)
    return registry


def check_admin(request: web.Request, token: str | None) -> None:
    """Raise 401 unless the request carries the admin token (when one is configured)."""
    if token is None:
        return
    given = request.query.get("token")
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        given = header[len("Bearer ") :].strip()
    if (
        given is None
        or len(given) > MAX_TOKEN
        or not hmac.compare_digest(given.encode(), token.encode())
    ):
        raise web.HTTPUnauthorized(
            text='{"code": "unauthorized", "message": "admin token required"}',
            content_type="application/json",
            headers={"WWW-Authenticate": "Bearer"},
        )


def stats_payload(sampler: StatsSampler, history: bool) -> dict[str, Any]:
    snapshot = dict(sampler.snapshot())
    if history:
        snapshot["history"] = list(sampler.history)
    return snapshot


def metrics_text(registry: CollectorRegistry) -> tuple[bytes, str]:
    return generate_latest(registry), CONTENT_TYPE_LATEST
