"""Hardening 5: property-based fuzzing of every client event (hypothesis).

Random JSON-ish payloads, and payloads shaped like each event with random field values,
always get PROTOCOL.md's ack envelope: ok true, or ok false with a known code and a
message. Never an internal_error, never a dropped connection, and two publishers in the
same room keep receiving media throughout.

The server and its clients run on an event loop in a helper thread, so hypothesis drives
plain synchronous test functions.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.servers import RunningServer, start_server
from sfu.errors import ERROR_CODES
from signaling.app import EVENTS
from signaling.client import SfuClient
from signaling.config import ServerConfig
from tests.hardening_util import hardening_config, media_client, publishing_pair

T = TypeVar("T")
EXAMPLES = 120

# aiortc/aioice on the loop thread use `random` while hypothesis generates a payload
pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module")
EVENTS_NAMES = ["join", "sdp", "ice candidates", "chat message", "mute", "leave", "video pause"]


class Harness:
    """A loop thread with a server, two publishing bystanders and the fuzzing client."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-loop")
        self.thread.start()
        self.server: RunningServer
        self.runner: Any = None
        self.bystanders: list[SfuClient] = []
        self.fuzzer: SfuClient
        self.fresh: SfuClient

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def start(self) -> None:
        config = ServerConfig(sfu=hardening_config(max_candidates=100_000))
        self.server, self.runner = await start_server(config)
        self.bystanders = await publishing_pair(self.server.url)
        for client in self.bystanders:
            await client.wait_more_frames(10, timeout=20)
        self.fuzzer = await media_client(self.server.url)
        await self.fuzzer.join("media", "Fuzzer")
        self.fresh = await media_client(self.server.url)  # never joined

    async def call(self, client: SfuClient, event: str, payload: Any) -> Any:
        ack = await client.call(event, payload, timeout=10)
        if event == "leave" and ack.get("ok") and client is self.fuzzer:
            await client.forget_room()  # the server closed our peer connection
            await client.join("media", "Fuzzer")
        if event == "join" and ack.get("ok") and client is self.fresh:
            assert (await client.call("leave", {}))["ok"]
        return ack

    async def stop(self) -> None:
        for client in [*self.bystanders, self.fuzzer, self.fresh]:
            await client.close()
        await self.runner.cleanup()


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    h = Harness()
    try:
        h.run(h.start())
        yield h
        # the bystanders kept receiving media all along, and nobody was dropped
        for client in h.bystanders:
            h.run(client.wait_more_frames(10, timeout=10))
        assert h.fuzzer.sio.connected and h.fresh.sio.connected
        assert h.server.app[EVENTS].rejected["internal_error"] == 0
        h.run(h.stop())
    finally:
        h.run(_cancel_leftovers())  # engine.io's ping sleepers (25 s), not leaks
        h.loop.call_soon_threadsafe(h.loop.stop)
        h.thread.join(10)
        h.loop.close()


async def _cancel_leftovers() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def check_envelope(ack: Any, context: Any) -> None:
    assert isinstance(ack, dict), context
    assert isinstance(ack.get("ok"), bool), (context, ack)
    if not ack["ok"]:
        error = ack.get("error")
        assert isinstance(error, dict), (context, ack)
        assert error.get("code") in ERROR_CODES, (context, ack)
        assert error["code"] != "internal_error", (context, ack)
        assert isinstance(error.get("message"), str) and error["message"], (context, ack)


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.sampled_from(["offer", "answer", "audio", "video", "v=0\r\n", "", "0", "candidate:"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)


def shaped(event: str) -> st.SearchStrategy[Any]:
    """Payloads with the event's own field names and random values."""
    v = json_values
    if event == "join":
        return st.fixed_dictionaries({"room": v, "name": v})
    if event == "sdp":
        description = st.fixed_dictionaries({"type": v, "sdp": v}) | v
        return st.fixed_dictionaries(
            {"description": description},
            optional={"tracks": st.lists(st.fixed_dictionaries({"mid": v, "source": v}) | v)},
        )
    if event == "ice candidates":
        candidate = st.fixed_dictionaries(
            {"candidate": v | st.from_regex(r"candidate:\d [12] (udp|tcp) \d+ [\d.]+ \d+ typ \w+")},
            optional={"sdpMid": v, "sdpMLineIndex": v},
        )
        return st.fixed_dictionaries({"candidate": candidate | v})
    if event == "chat message":
        return st.fixed_dictionaries({"text": v})
    if event == "mute":
        return st.fixed_dictionaries({"kind": v, "muted": v})
    if event == "video pause":
        return st.fixed_dictionaries({"participantId": v, "source": v, "paused": v})
    return v


FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)


@FUZZ_SETTINGS
@given(event=st.sampled_from(EVENTS_NAMES), payload=json_values, joined=st.booleans())
def test_fuzz_any_payload(harness: Harness, event: str, payload: Any, joined: bool) -> None:
    client = harness.fuzzer if joined else harness.fresh
    check_envelope(harness.run(harness.call(client, event, payload)), (event, payload))


@FUZZ_SETTINGS
@given(data=st.data(), event=st.sampled_from(EVENTS_NAMES))
def test_fuzz_shaped_payload(harness: Harness, data: st.DataObject, event: str) -> None:
    payload = data.draw(shaped(event))
    check_envelope(harness.run(harness.call(harness.fuzzer, event, payload)), (event, payload))


@settings(max_examples=40, deadline=None, derandomize=True)
@given(event=st.text(min_size=1, max_size=30), payload=json_values)
def test_fuzz_unknown_events(harness: Harness, event: str, payload: Any) -> None:
    if event in EVENTS_NAMES or event in ("connect", "disconnect", "message"):
        return
    ack = harness.run(harness.call(harness.fuzzer, event, payload))
    check_envelope(ack, (event, payload))
    assert ack["ok"] is False and ack["error"]["code"] == "bad_request"
