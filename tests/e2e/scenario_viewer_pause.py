"""Viewer pause and temporal layers in real Chromium (issue #12; run INSIDE a loopback-only
network namespace: ``test_browser_viewer_pause.py`` does that).

An in-process server (so the scenario can read what it receives), one Python bot that
publishes a paced VP8 clip + audio, and one Chromium page (Alice, fake camera):

1. Alice's camera is published with ``scalabilityMode: "L1T3"``: the server reads the VP8
   payload descriptor (RFC 7741) of every packet it receives from her camera and finds the
   T bit with TIDs 0, 1 and 2 (and Y / TL0PICIDX); Chromium's own ``getStats`` says L1T3.
2. Alice hides the bot's tile: the page sends ``video pause``; the server's subscription
   stats show it stopped forwarding that video (``viewerPaused``, frames out frozen) while
   the bot's audio still flows; showing the tile again resumes it (a keyframe first,
   ``keyframesWaited``) and the page decodes again.
3. The page goes to the background (``visibilitychange``): the same pause, then resume.
4. A ``video state`` ``paused-link`` (what LAYERS' link pause sends, injected here on the
   server's slot) shows the tile as "paused: poor connection"; ``active`` clears it.

    tests/e2e/run_in_netns.sh .venv/bin/python -m tests.e2e.scenario_viewer_pause --out r.json
"""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.request
from collections import Counter
from dataclasses import asdict
from typing import Any

from tests.e2e.harness import Scenario, apoll, launch_chromium, scenario_main
from tests.e2e.scenario_room import STATS_JS, frames_by_participant

ROOM = "viewer-pause"
WAIT = 30.0

#: Chromium's view of what it sends: the camera's outbound-rtp rows.
OUTBOUND_JS = """
async () => {
  const app = window.sfuApp;
  if (!app || !app.pc) return null;
  const out = [];
  (await app.pc.getStats()).forEach((s) => {
    if (s.type === "outbound-rtp" && s.kind === "video")
      out.push({scalabilityMode: s.scalabilityMode ?? null, framesEncoded: s.framesEncoded ?? 0,
                encoderImplementation: s.encoderImplementation ?? null});
  });
  const enc = app.pc.getSenders().filter((s) => s.track && s.track.kind === "video")
    .map((s) => s.getParameters().encodings);
  return {outbound: out, encodings: enc};
}
"""

SET_TILE_HIDDEN_JS = """
([id, hidden]) => {
  const tile = document.querySelector(`.tile[data-participant-id="${id}"]`);
  if (!tile) return false;
  tile.hidden = hidden;
  window.sfuApp.tiles.layout();
  return true;
}
"""

#: Headless Chromium keeps a page "visible" whatever tab is in front: fake the hidden
#: state the way the browser reports it (document.hidden + visibilitychange).
SET_PAGE_HIDDEN_JS = """
(hidden) => {
  Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
  Object.defineProperty(document, "visibilityState", {configurable: true,
                        get: () => (hidden ? "hidden" : "visible")});
  document.dispatchEvent(new Event("visibilitychange"));
  return document.visibilityState;
}
"""

LINK_NOTE_JS = """
(id) => {
  const tile = document.querySelector(`.tile[data-participant-id="${id}"]`);
  const note = tile && tile.querySelector(".link-note");
  return note ? {shown: !note.hidden, text: note.textContent,
                 paused: tile.classList.contains("link-paused")} : null;
}
"""


def vp8_descriptor(payload: bytes) -> dict[str, Any] | None:
    """The RFC 7741 VP8 payload descriptor fields of one packet (None: too short)."""
    if not payload:
        return None
    first = payload[0]
    out: dict[str, Any] = {"start": bool(first & 0x10), "pid": first & 0x07, "t": False}
    if not first & 0x80:  # X: no extension byte
        return out
    if len(payload) < 2:
        return None
    ext = payload[1]
    pos = 2
    if ext & 0x80:  # I: picture id, 7 or 15 bits
        if len(payload) <= pos:
            return None
        pos += 2 if payload[pos] & 0x80 else 1
    if ext & 0x40:  # L: TL0PICIDX
        out["tl0picidx"] = True
        pos += 1
    if ext & 0x30:  # T or K: TID/Y/KEYIDX byte
        if len(payload) <= pos:
            return None
        byte = payload[pos]
        if ext & 0x20:
            out["t"] = True
            out["tid"] = byte >> 6
            out["y"] = bool(byte & 0x20)
    return out


class DescriptorTap:
    """Wraps the frame assembler a receiver feeds (its jitter buffer slot) to read the
    descriptor of every packet the server receives on it; test code only."""

    def __init__(self, receiver: Any) -> None:
        self.packets = 0
        self.with_t = 0
        self.tids: Counter[int] = Counter()
        self.sync = 0
        self.tl0 = 0
        attr = "_RTCRtpReceiver__jitter_buffer"
        self._inner = getattr(receiver, attr)
        setattr(receiver, attr, self)

    def add(self, packet: Any) -> Any:
        d = vp8_descriptor(bytes(packet.payload))
        self.packets += 1
        if d is not None and d["t"]:
            self.with_t += 1
            if d["start"]:  # one count per frame (its first packet)
                self.tids[d["tid"]] += 1
                self.sync += int(d["y"])
            self.tl0 += int(bool(d.get("tl0picidx")))
        return self._inner.add(packet)

    def summary(self) -> dict[str, Any]:
        return {
            "packets": self.packets,
            "packetsWithT": self.with_t,
            "framesByTid": dict(sorted(self.tids.items())),
            "layerSyncFrames": self.sync,
            "packetsWithTl0PicIdx": self.tl0,
        }


def api_stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url + "/api/stats", timeout=5) as r:
        data: dict[str, Any] = json.loads(r.read())
        return data


def subscription_row(url: str, viewer: str, publisher: str, kind: str) -> dict[str, Any] | None:
    for room in api_stats(url).get("rooms", []):
        for person in room.get("participants", []):
            if person.get("id") != viewer:
                continue
            for row in person.get("subscriptions", []):
                if row.get("publisherId") == publisher and row.get("kind") == kind:
                    return dict(row)
    return None


async def run(sc: Scenario) -> None:
    from playwright.async_api import async_playwright

    from benchmarks.servers import running
    from sfu.config import SfuConfig
    from signaling.client import PacedAudioTrack, SfuClient
    from signaling.config import ServerConfig
    from signaling.sources import PacedVideoTrack, encode_clip

    config = ServerConfig(sfu=SfuConfig(ice_addresses=("127.0.0.1",)))
    bot: SfuClient | None = None
    async with running(config) as server:
        url = server.url
        try:
            clip = await asyncio.to_thread(
                encode_clip, width=320, height=240, fps=15, seconds=4.0, bitrate=250_000, marker=6
            )
            bot = await SfuClient.connect(url, decode=False, timeout=20)
            await bot.join(ROOM, "bot")
            await bot.publish(video=PacedVideoTrack(clip), audio=PacedAudioTrack())
            await bot.wait_connected(timeout=20)
            bot_id = str(bot.id)
            async with async_playwright() as pw:
                browser = await launch_chromium(pw)
                context = await browser.new_context(viewport={"width": 1280, "height": 800})
                page = await context.new_page()
                sc.follow_console(page, "Alice")
                await page.goto(f"{url}/room/{ROOM}?name=Alice")
                joined = await bot.wait_for_event(
                    "participant joined", lambda p: p.get("name") == "Alice", WAIT
                )
                alice_id = str(joined.payload["id"])
                room = server.rooms.rooms[ROOM]

                # ---------------------------------------------------- 1. temporal layers
                def camera() -> Any:
                    alice = room.participants.get(alice_id)
                    pubs = [] if alice is None else list(alice.published.values())
                    return next(
                        (p for p in pubs if p.kind == "video" and p.source == "camera"), None
                    )

                ok, pub = await apoll(
                    lambda: asyncio.sleep(0, camera()), lambda p: p is not None, WAIT
                )
                sc.check("Alice publishes her camera", ok, str(pub))
                tap = DescriptorTap(pub.hook.receiver)
                ok, _ = await apoll(
                    lambda: asyncio.sleep(0, sum(tap.tids.values())), lambda n: n >= 90, WAIT
                )
                seen = tap.summary()
                sc.info["vp8Descriptor"] = seen
                sc.check(
                    "every camera packet the server receives carries a TID (T bit)",
                    ok and seen["packetsWithT"] == seen["packets"] > 0,
                    seen,
                )
                sc.check(
                    "TIDs 0, 1 and 2 all occur (L1T3)",
                    set(seen["framesByTid"]) == {0, 1, 2},
                    seen["framesByTid"],
                )
                sent = await page.evaluate(OUTBOUND_JS)
                sc.info["chromiumOutbound"] = sent
                modes = [row.get("scalabilityMode") for row in (sent or {}).get("outbound", [])]
                sc.check("Chromium's getStats says it encodes L1T3", "L1T3" in modes, sent)

                # ---------------------------------------------------- 2. hidden tile
                alice = room.participants[alice_id]

                def slot_of(kind: str) -> Any:
                    return next(
                        s
                        for s in alice.send_slots()
                        if s.kind == kind
                        and s.published is not None
                        and s.published.publisher_id == bot_id
                    )

                ok, _ = await apoll(
                    lambda: asyncio.sleep(0, slot_of("video").track.frames_out),
                    lambda n: n >= 15,
                    WAIT,
                )
                video, audio = slot_of("video"), slot_of("audio")
                sc.check(
                    "the server forwards the bot's video to Alice", ok, asdict(video.stats().track)
                )

                async def paused_and_frozen(why: str) -> None:
                    ok, _ = await apoll(
                        lambda: asyncio.sleep(0, video.track.viewer_paused), bool, WAIT
                    )
                    sc.check(
                        f"{why}: the page paused the bot's video", ok, asdict(video.stats().track)
                    )
                    await apoll(
                        lambda: asyncio.sleep(0, video.track.viewer_dropped),
                        lambda n: n >= 5,
                        WAIT,
                    )
                    frames, sound = video.track.frames_out, audio.track.frames_out
                    ok, row = await apoll(
                        lambda: asyncio.to_thread(subscription_row, url, alice_id, bot_id, "video"),
                        lambda r: bool(r) and r["viewerPaused"] and r["fps"] == 0,
                        WAIT,
                    )
                    sc.check(
                        f"{why}: /api/stats shows the subscription paused, 0 fps forwarded",
                        ok and video.track.frames_out == frames,
                        {"row": row, "framesOutBefore": frames, "after": video.track.frames_out},
                    )
                    sc.check(
                        f"{why}: the bot's audio still flows to Alice",
                        audio.track.frames_out > sound,
                        {"before": sound, "after": audio.track.frames_out},
                    )

                async def resumed(why: str, waited: int, frames: int, before: int) -> None:
                    """Forwarding went on after a resume triggered when the track had
                    waited `waited` keyframes, sent `frames` and the page decoded `before`."""
                    ok, _ = await apoll(
                        lambda: asyncio.sleep(0, video.track.frames_out),
                        lambda n: n >= frames + 10,
                        WAIT,
                    )
                    sc.check(
                        f"{why}: forwarding resumed from a keyframe",
                        ok
                        and not video.track.viewer_paused
                        and video.track.keyframes_waited == waited + 1,
                        asdict(video.stats().track),
                    )
                    ok, stats = await apoll(
                        lambda: page.evaluate(STATS_JS),
                        lambda s: frames_by_participant(s).get(bot_id, 0) >= before + 10,
                        WAIT,
                    )
                    sc.check(
                        f"{why}: the page decodes the bot's video again",
                        ok,
                        {"before": before, "after": frames_by_participant(stats).get(bot_id)},
                    )

                ok = await page.evaluate(SET_TILE_HIDDEN_JS, [bot_id, True])
                sc.check("the bot's tile is hidden", ok, ok)
                await paused_and_frozen("hidden tile")

                async def mark() -> tuple[int, int, int]:
                    decoded = frames_by_participant(await page.evaluate(STATS_JS))
                    track = video.track
                    return track.keyframes_waited, track.frames_out, decoded.get(bot_id, 0)

                before = await mark()
                await page.evaluate(SET_TILE_HIDDEN_JS, [bot_id, False])
                await resumed("tile shown again", *before)

                # ---------------------------------------------------- 3. background page
                other = await context.new_page()
                await other.bring_to_front()
                state = await page.evaluate("document.visibilityState")
                sc.info["visibilityAfterBringToFront"] = state
                if state != "hidden":
                    state = await page.evaluate(SET_PAGE_HIDDEN_JS, True)
                sc.check("the page is hidden", state == "hidden", state)
                await paused_and_frozen("background page")
                await page.bring_to_front()
                before = await mark()
                state = await page.evaluate(SET_PAGE_HIDDEN_JS, False)
                await resumed("page visible again", *before)
                await other.close()

                # ---------------------------------------------------- 4. paused-link tile
                assert video.on_video_state is not None
                video.on_video_state("paused-link")  # what LAYERS' link pause reports
                ok, note = await apoll(
                    lambda: page.evaluate(LINK_NOTE_JS, bot_id),
                    lambda n: bool(n) and n["shown"],
                    WAIT,
                )
                sc.check(
                    "a paused-link video shows the tile as 'paused: poor connection'",
                    ok and note["text"] == "paused: poor connection" and note["paused"],
                    note,
                )
                shot = sc.artifacts / "room-viewer-pause-link.png"
                sc.artifacts.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=str(shot))
                sc.info["screenshot"] = str(shot)
                print(f"screenshot: {shot}", flush=True)
                video.on_video_state("active")
                ok, note = await apoll(
                    lambda: page.evaluate(LINK_NOTE_JS, bot_id),
                    lambda n: bool(n) and not n["shown"],
                    WAIT,
                )
                sc.check("'active' clears the poor-connection note", ok, note)
                await browser.close()
        finally:
            if bot is not None:
                await bot.close()


if __name__ == "__main__":
    sys.exit(scenario_main(__doc__, lambda sc: asyncio.run(run(sc))))
