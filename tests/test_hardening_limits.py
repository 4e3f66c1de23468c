"""Hardening 9-11 and the join rate limit: capacity limits, duplicate joins, a join storm
with the event loop staying responsive. Two publishers keep receiving media throughout and
resources return to baseline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.servers import RunningServer
from signaling.client import SfuClient
from signaling.config import ServerConfig
from tests.hardening_util import (
    Baseline,
    assert_empty,
    hardening_config,
    media_client,
    publishing_pair,
    running,
    wait_until,
)

Setup = Callable[..., Any]


@pytest.fixture
async def media_server() -> AsyncIterator[Setup]:
    """Start a server with the given config and two publishers in room `media`."""
    base = Baseline.take()
    stack: list[Any] = []
    clients: list[SfuClient] = []

    async def start(**config: Any) -> tuple[RunningServer, list[SfuClient], list[SfuClient]]:
        sfu = config.pop("sfu", {})
        ctx = running(ServerConfig(sfu=hardening_config(**sfu), **config))
        server = await ctx.__aenter__()
        stack.append((ctx, server))
        pair = await publishing_pair(server.url)
        await flowing(pair)
        clients.extend(pair)
        return server, pair, clients

    yield start
    for ctx, server in stack:
        await flowing(clients[:2])
        for client in clients:
            await client.close()
        await wait_until(lambda s=server: not s.rooms.rooms, 10)
        assert_empty(server)
        await ctx.__aexit__(None, None, None)
    await base.wait_back()


async def flowing(pair: list[SfuClient]) -> None:
    for client in pair:
        await client.wait_more_frames(10, timeout=10)


async def connect(server: RunningServer, clients: list[SfuClient]) -> SfuClient:
    client = await media_client(server.url)
    clients.append(client)
    return client


async def test_capacity_limits(media_server: Setup) -> None:
    server, pair, clients = await media_server(sfu={"max_rooms": 3, "max_participants": 3})
    carol = await connect(server, clients)
    await carol.join("media", "Carol")  # 3 of 3
    extra = await connect(server, clients)
    ack = await extra.call("join", {"room": "media", "name": "Extra"})
    assert ack["ok"] is False and ack["error"]["code"] == "room_full", ack
    assert "full" in ack["error"]["message"]
    # rooms per server: media + r1 + r2 = 3 of 3
    r1 = await connect(server, clients)
    await r1.join("r1", "One")
    await (await connect(server, clients)).join("r2", "Two")
    ack = await extra.call("join", {"room": "r3", "name": "Extra"})
    assert ack["ok"] is False and ack["error"]["code"] == "server_busy", ack
    assert "too many rooms" in ack["error"]["message"]
    # a refused join leaves no state behind; after r1 empties, r3 can open
    assert set(server.rooms.rooms) == {"media", "r1", "r2"}
    assert (await r1.call("leave", {}))["ok"]
    await wait_until(lambda: "r1" not in server.rooms.rooms, 5)
    await extra.join("r3", "Extra")
    await flowing(pair)


async def test_duplicate_join(media_server: Setup) -> None:
    server, pair, clients = await media_server()
    dup = await connect(server, clients)
    first = await dup.join("media", "Dup")
    again = await dup.call("join", {"room": "media", "name": "Dup"})
    assert again["ok"] is False and again["error"]["code"] == "already_joined"
    other_room = await dup.call("join", {"room": "other", "name": "Dup"})
    assert other_room["error"]["code"] == "already_joined"
    # concurrent joins on one connection: exactly one wins
    racer = await connect(server, clients)
    acks = await asyncio.gather(
        *(racer.call("join", {"room": "race", "name": f"R{i}"}) for i in range(5))
    )
    assert sum(a["ok"] for a in acks) == 1, acks
    assert {a["error"]["code"] for a in acks if not a["ok"]} == {"already_joined"}
    assert len(server.rooms.rooms["race"]) == 1
    # the same display name from another connection is a different participant
    twin = await connect(server, clients)
    second = await twin.join("media", "Dup")
    assert second.id != first.id
    assert len(server.rooms.rooms["media"]) == 4
    await flowing(pair)


async def test_join_storm_event_loop_responsive(media_server: Setup) -> None:
    server, pair, clients = await media_server(sfu={"max_participants": 8})
    latencies: list[float] = []
    stop = asyncio.Event()

    async def probe() -> None:
        async with aiohttp.ClientSession() as http:
            while not stop.is_set():
                started = time.monotonic()
                async with http.get(server.url + "/healthz") as resp:
                    assert resp.status == 200
                    await resp.json()
                latencies.append(time.monotonic() - started)
                await asyncio.sleep(0.05)

    async def one(i: int) -> str:
        await asyncio.sleep(i * 2.0 / 50)  # 50 joins spread over 2 s
        client = await connect(server, clients)
        ack = await client.call("join", {"room": f"storm{i % 10}", "name": f"S{i}"})
        return "ok" if ack["ok"] else str(ack["error"]["code"])

    prober = asyncio.create_task(probe())
    started = time.monotonic()
    outcomes = await asyncio.gather(*(one(i) for i in range(50)))
    elapsed = time.monotonic() - started
    await asyncio.sleep(1.0)  # the joiners' initial-offer grace runs out meanwhile
    stop.set()
    await prober
    assert outcomes == ["ok"] * 50, outcomes
    assert server.rooms.participant_count() == 52
    worst = max(latencies)
    print(f"\n50 joins in {elapsed:.2f} s; {len(latencies)} /healthz, max {worst * 1000:.0f} ms")
    assert worst < 1.0, latencies
    await flowing(pair)


async def test_join_rate_limit_and_metric(media_server: Setup) -> None:
    burst, rate = 4, 2.0
    server, pair, clients = await media_server(join_burst=burst, join_per_second=rate)
    # connect first: only joins take tokens, and a slow connect would refill the bucket
    joiners = [await connect(server, clients) for _ in range(6)]
    codes = []
    started = time.monotonic()
    for i, client in enumerate(joiners):
        ack = await client.call("join", {"room": "rl", "name": f"J{i}"})
        codes.append("ok" if ack["ok"] else ack["error"]["code"])
    elapsed = time.monotonic() - started
    assert "rate_limited" in codes and codes[0] == "ok", codes
    # never more than a full bucket plus what refilled while the joins ran (the bystanders'
    # two tokens may have refilled while their media started, on a slow machine)
    assert codes.count("ok") <= burst + int(rate * elapsed), (codes, elapsed)
    await asyncio.sleep(1.1)  # the bucket refills at 2/s
    late = await connect(server, clients)
    assert (await late.call("join", {"room": "rl", "name": "Late"}))["ok"]
    async with aiohttp.ClientSession() as http, http.get(server.url + "/metrics") as resp:
        text = await resp.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    by_event = {
        (s.labels["event"], s.labels["reason"]): s.value
        for s in families["sfu_rejected_events"].samples
    }
    assert by_event[("join", "rate_limited")] == codes.count("rate_limited")
    joins = {s.labels["outcome"]: s.value for s in families["sfu_joins"].samples}
    assert joins["rate_limited"] == codes.count("rate_limited")
    await flowing(pair)
