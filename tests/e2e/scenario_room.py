"""Three Chromium participants in one room, end to end (run INSIDE a loopback-only network
namespace; ``test_browser_room.py`` does that through ``run_in_netns.sh``).

Starts ``sfu-server`` as a subprocess, opens three contexts of one headless Chromium at
``/room/<room>?name=...`` and checks what the browsers report: inbound video frames decoded
from both other participants (getStats, inbound-rtp ``mid`` mapped to a participant through
the server's TrackInfo rows), remote ``<video>`` time advancing and not black, chat, mute,
leave. Writes a JSON result (``--out``) and a screenshot to ``--artifacts``; exits 1 when a
check failed.

    tests/e2e/run_in_netns.sh .venv/bin/python -m tests.e2e.scenario_room --out result.json
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

from tests.e2e.harness import Scenario, launch_chromium, scenario_main, sfu_server

ROOM = "e2e-room"
NAMES = ("Alice", "Bob", "Carol")

STATS_JS = """
async () => {
  const app = window.sfuApp;
  if (!app || !app.pc) return null;
  const byMid = {};
  for (const t of app.trackMap()) byMid[t.mid] = t;
  const byTrack = {};
  for (const r of app.client.remoteTracks) byTrack[r.track.id] = r;
  const report = await app.pc.getStats();
  const codecs = {};
  report.forEach((s) => { if (s.type === "codec") codecs[s.id] = s.mimeType; });
  const inbound = [];
  report.forEach((s) => {
    if (s.type !== "inbound-rtp" || s.kind !== "video") return;
    const info = byMid[s.mid] || byTrack[s.trackIdentifier] || null;
    inbound.push({
      mid: s.mid ?? null,
      participantId: info ? info.participantId : null,
      source: info ? info.source : null,
      framesDecoded: s.framesDecoded ?? 0,
      frameWidth: s.frameWidth ?? null,
      frameHeight: s.frameHeight ?? null,
      codec: codecs[s.codecId] ?? null,
    });
  });
  return {
    self: app.client.id,
    state: app.client.state,
    connection: app.pc.connectionState,
    others: app.client.participants.map((p) => p.id),
    inbound,
  };
}
"""

VIDEO_JS = """
(pid) => {
  const tile = document.querySelector(`.tile[data-participant-id="${pid}"]`);
  if (!tile) return { present: false };
  const v = tile.querySelector("video.remote-video.camera-video");
  if (!v) return { present: true, video: false };
  const out = { present: true, video: true, currentTime: v.currentTime, paused: v.paused,
                width: v.videoWidth, height: v.videoHeight };
  if (!v.videoWidth) return out;
  const c = document.createElement("canvas");
  c.width = 64; c.height = 48;
  const ctx = c.getContext("2d");
  ctx.drawImage(v, 0, 0, 64, 48);
  const d = ctx.getImageData(0, 0, 64, 48).data;
  let bright = 0, sum = 0;
  const n = d.length / 4;
  for (let i = 0; i < d.length; i += 4) {
    const l = 0.299 * d[i] + 0.587 * d[i + 1] + 0.114 * d[i + 2];
    sum += l;
    if (l > 40) bright += 1;
  }
  out.meanLuma = sum / n;
  out.brightFraction = bright / n;
  return out;
}
"""

WIDEST_ELEMENTS_JS = """
() => {
  // how far the page scrolls sideways, and the elements that reach past the viewport
  const limit = document.documentElement.clientWidth;
  const widest = [];
  for (const el of document.querySelectorAll("body *")) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && r.right > limit + 1) {
      const cls = String(el.className);
      widest.push({tag: el.tagName, id: el.id, cls, right: Math.round(r.right)});
    }
  }
  widest.sort((a, b) => b.right - a.right);
  return {
    overflow: document.documentElement.scrollWidth - window.innerWidth,
    widest: widest.slice(0, 5),
  };
}
"""

TILE_ATTRS_JS = """
(pid) => {
  const tile = document.querySelector(`.tile[data-participant-id="${pid}"]`);
  return tile ? { audio: tile.dataset.audioMuted, video: tile.dataset.videoMuted } : null;
}
"""


def poll(fn: Callable[[], Any], pred: Callable[[Any], bool], timeout: float, every: float = 0.5):
    """Call ``fn`` until ``pred`` holds or the deadline passes; return (ok, last value)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = fn()
        except Exception as exc:  # a page mid-navigation: try again
            last = {"exception": repr(exc)}
        else:
            if pred(last):
                return True, last
        if time.monotonic() > deadline:
            return False, last
        time.sleep(every)


def frames_by_participant(stats: dict[str, Any] | None) -> dict[str, int]:
    """Camera framesDecoded per sending participant, from one STATS_JS sample."""
    out: dict[str, int] = {}
    for row in (stats or {}).get("inbound", []):
        pid = row.get("participantId")
        if pid and row.get("source") in (None, "camera"):
            out[pid] = max(out.get(pid, 0), int(row.get("framesDecoded") or 0))
    return out


def check_landing(sc: Scenario, browser: Any, url: str) -> None:
    """The landing form refuses a bad room name and navigates to /room/<room>?name=."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(url + "/")
    page.fill("#room", "bad room!")
    page.fill("#name", "Zed")
    page.click("button[type=submit]")
    error = page.text_content("#form-error") or ""
    sc.check("landing page refuses a bad room name", bool(error) and page.url == url + "/", error)
    requested: list[str] = []

    def fake_room(route: Any) -> None:
        requested.append(route.request.url)
        route.fulfill(status=200, content_type="text/html", body="<p>room</p>")

    page.route("**/room/**", fake_room)
    page.fill("#room", "e2e-room_2")
    page.fill("#name", "Zed Z")
    page.click("button[type=submit]")
    ok, _ = poll(lambda: requested, bool, timeout=10)
    sc.check(
        "landing page navigates to /room/<room>?name=<name>",
        ok and requested[0] == url + "/room/e2e-room_2?name=Zed%20Z",
        requested,
    )
    context.close()


def run(sc: Scenario) -> None:
    from playwright.sync_api import sync_playwright

    server_log = sc.artifacts / "e2e-server.log"
    sc.info["server_log"] = str(server_log)
    with sfu_server(server_log, "--log-level", "INFO") as url, sync_playwright() as pw:
        sc.info["url"] = url
        browser = launch_chromium(pw)
        sc.info["browser_version"] = browser.version
        check_landing(sc, browser, url)
        pages = {}
        for name in NAMES:
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.grant_permissions(["camera", "microphone"], origin=url)
            page = context.new_page()
            sc.follow_console(page, name)
            page.goto(f"{url}/room/{ROOM}?name={name}")
            pages[name] = page
            ok, state = poll(
                lambda page=page: page.evaluate("() => window.sfuApp?.client.state"),
                lambda s: s == "joined",
                timeout=20,
            )
            sc.check(f"{name} joined", ok, state)
        ids = {n: p.evaluate("() => window.sfuApp.client.id") for n, p in pages.items()}
        sc.info["ids"] = ids
        who = {v: k for k, v in ids.items()}

        # --- everyone knows everyone
        for name, page in pages.items():
            others = sorted(ids[n] for n in NAMES if n != name)
            ok, seen = poll(
                lambda page=page: sorted(
                    page.evaluate("() => sfuApp.client.participants.map(p => p.id)")
                ),
                lambda s, others=others: s == others,
                timeout=15,
            )
            sc.check(f"{name} sees both others in the participant list", ok, seen)

        # --- media: getStats framesDecoded increasing from both others, per participant
        for name, page in pages.items():
            others = [ids[n] for n in NAMES if n != name]
            ok, first = poll(
                lambda page=page: page.evaluate(STATS_JS),
                lambda s, others=others: all(
                    frames_by_participant(s).get(o, 0) > 0 for o in others
                ),
                timeout=45,
            )
            before = frames_by_participant(first)
            time.sleep(2.0)
            second = page.evaluate(STATS_JS)
            after = frames_by_participant(second)
            growing = {who.get(o, o): [before.get(o, 0), after.get(o, 0)] for o in others}
            codecs = sorted({r.get("codec") for r in (second or {}).get("inbound", [])} - {None})
            sc.check(
                f"{name} decodes video from both others (framesDecoded increasing)",
                ok and all(after.get(o, 0) > before.get(o, 0) > 0 for o in others),
                {
                    "framesDecoded": growing,
                    "codecs": codecs,
                    "connection": (second or {}).get("connection"),
                },
            )
            sc.check(
                f"{name} receives VP8 only",
                bool(codecs) and all(c.lower() == "video/vp8" for c in codecs),
                codecs,
            )

        # --- the remote <video> elements play and are not black
        for name, page in pages.items():
            for other in (n for n in NAMES if n != name):
                pid = ids[other]
                ok, v0 = poll(
                    lambda page=page, pid=pid: page.evaluate(VIDEO_JS, pid),
                    lambda v: bool(v.get("width")),
                    timeout=20,
                )
                time.sleep(1.0)
                v1 = page.evaluate(VIDEO_JS, pid)
                advancing = ok and v1.get("currentTime", 0) > v0.get("currentTime", 0)
                sc.check(
                    f"{name}: video of {other} advances", advancing, {"before": v0, "after": v1}
                )
                not_black = (v1.get("brightFraction") or 0) > 0.05 and (
                    v1.get("meanLuma") or 0
                ) > 10
                sc.check(
                    f"{name}: video of {other} is not black",
                    not_black,
                    {k: v1.get(k) for k in ("meanLuma", "brightFraction", "width", "height")},
                )

        # --- screenshot of a room page with two remote tiles
        sc.artifacts.mkdir(parents=True, exist_ok=True)
        shot = sc.artifacts / "room-three-participants.png"
        tiles = pages["Alice"].locator(".tile:not(.local)").count()
        pages["Alice"].screenshot(path=str(shot), full_page=True)
        sc.info["screenshot"] = str(shot)
        print(f"screenshot: {shot}", flush=True)
        sc.check(
            "Alice's page shows two remote tiles", tiles == 2, {"tiles": tiles, "path": str(shot)}
        )
        narrow = pages["Bob"]
        narrow.set_viewport_size({"width": 390, "height": 844})
        phone = sc.artifacts / "room-phone-width.png"
        # the tile layout follows a ResizeObserver: let two frames settle before measuring
        narrow.evaluate(
            "() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))"
        )
        narrow.screenshot(path=str(phone), full_page=True)
        layout = narrow.evaluate(WIDEST_ELEMENTS_JS)
        sc.check(
            "phone-width layout has no horizontal overflow",
            layout["overflow"] <= 1,
            {"overflow_px": layout["overflow"], "widest": layout["widest"], "path": str(phone)},
        )
        narrow.set_viewport_size({"width": 1280, "height": 800})

        # --- chat: one sends, the other two see it
        text = "hello from Alice <b>not bold</b>"
        pages["Alice"].fill("#chat-input", text)
        pages["Alice"].press("#chat-input", "Enter")
        for name in ("Bob", "Carol"):
            page = pages[name]
            ok, got = poll(
                lambda page=page: page.locator(".chat-message .text").all_text_contents(),
                lambda t: text in t,
                timeout=10,
            )
            sc.check(f"{name} sees Alice's chat message", ok, got)
        bold = pages["Bob"].locator(".chat-message b").count()
        sc.check("chat text is inserted as text, not HTML", bold == 0, {"b_elements": bold})
        own = pages["Alice"].locator(".chat-message.own .text").all_text_contents()
        sc.check("Alice sees her own message", text in own, own)

        # --- mute: Bob mutes microphone and camera; the others see it
        pages["Bob"].click("#mic-btn")
        pages["Bob"].click("#cam-btn")
        for name in ("Alice", "Carol"):
            page = pages[name]
            ok, attrs = poll(
                lambda page=page: page.evaluate(TILE_ATTRS_JS, ids["Bob"]),
                lambda a: bool(a) and a["audio"] == "true" and a["video"] == "true",
                timeout=10,
            )
            sc.check(f"{name} sees Bob muted", ok, attrs)
        pages["Bob"].click("#cam-btn")
        ok, attrs = poll(
            lambda: pages["Alice"].evaluate(TILE_ATTRS_JS, ids["Bob"]),
            lambda a: bool(a) and a["audio"] == "true" and a["video"] == "false",
            timeout=10,
        )
        sc.check("Alice sees Bob's camera back on", ok, attrs)

        # --- leave: Carol leaves; her tile disappears on the others
        pages["Carol"].click("#leave-btn")
        for name in ("Alice", "Bob"):
            page = pages[name]
            ok, count = poll(
                lambda page=page: page.locator(
                    f'.tile[data-participant-id="{ids["Carol"]}"]'
                ).count(),
                lambda c: c == 0,
                timeout=15,
            )
            sc.check(f"Carol's tile disappears on {name}'s page", ok, {"tiles": count})
            listed = page.locator(f'[data-member-id="{ids["Carol"]}"]').count()
            sc.check(f"Carol leaves {name}'s participant list", listed == 0, {"entries": listed})

        # --- and media keeps flowing between the two who stayed
        page = pages["Alice"]
        s0 = frames_by_participant(page.evaluate(STATS_JS)).get(ids["Bob"], 0)
        ok, s1 = poll(
            lambda: frames_by_participant(page.evaluate(STATS_JS)).get(ids["Bob"], 0),
            lambda f: f > s0 + 5,
            timeout=15,
        )
        sc.check("Alice still decodes Bob's video after Carol left", ok, [s0, s1])

        errors = {
            n: [line for line in lines if line.startswith(("error", "pageerror"))]
            for n, lines in sc.console.items()
        }
        sc.info["console_errors"] = errors
        browser.close()


if __name__ == "__main__":
    sys.exit(scenario_main(__doc__, run))
