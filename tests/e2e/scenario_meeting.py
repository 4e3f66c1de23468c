"""The room page as a meeting app (issue 13), end to end (run INSIDE a loopback-only
network namespace; ``test_browser_meeting.py`` does that through ``run_in_netns.sh``).

Two Chromium contexts (Alice, Bob) of one browser plus Python bots (``SfuClient``, paced
VP8 + Opus, nothing decoded) in one room. Checks and screenshots, in order: the pre-join
screen (preview plays before any peer connection, device pickers list the fake devices);
the stage fill at 1920x1080 with 2 and 4 participants; pinning; switching Bob's camera
mid-call (same peer connection, Alice keeps decoding him); screen share start/stop twice;
the quality indicator on a constrained participant (Bob capped at 2 frames/s); duplicate
names; 390 / 1280 / 1920 px with 2, 4 and 8 participants; the chat length hint; leave.
Writes a JSON result (``--out``) and PNGs to ``--artifacts``; exits 1 when a check failed.

    tests/e2e/run_in_netns.sh .venv/bin/python -m tests.e2e.scenario_meeting --out r.json
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from typing import Any

from tests.e2e.harness import (
    CHROMIUM_ARGS,
    Scenario,
    launch_chromium,
    scenario_main,
    sfu_server,
)
from tests.e2e.harness import apoll as poll
from tests.e2e.scenario_room import STATS_JS, frames_by_participant

ROOM = "meeting"
#: three fake cameras (Chromium's fake_device_1 delivers Y16 depth frames, which the
#: encoder does not take: the switch goes to fake_device_2) and a screen picked without a
#: dialog
ARGS = [
    "--use-fake-device-for-media-stream=device-count=3"
    if a == "--use-fake-device-for-media-stream"
    else a
    for a in CHROMIUM_ARGS
] + ["--auto-select-desktop-capture-source=Entire screen", "--enable-usermedia-screen-capturing"]

WIDTHS = {390: 844, 1280: 800, 1920: 1080}

#: share of the viewport covered by remote videos (and by the largest remote tile)
COVER_JS = """
() => {
  const vw = window.innerWidth, vh = window.innerHeight;
  const clip = (r) => Math.max(0, Math.min(r.right, vw) - Math.max(r.left, 0)) *
                      Math.max(0, Math.min(r.bottom, vh) - Math.max(r.top, 0));
  const remote = [...document.querySelectorAll(".tile:not(.local)")];
  const areas = remote.map(
    (t) => clip(t.querySelector("video.camera-video").getBoundingClientRect()));
  const tiles = [...document.querySelectorAll(".tile")].map((t) => ({
    id: t.dataset.participantId, share: clip(t.getBoundingClientRect()) / (vw * vh) }));
  return { total: areas.reduce((a, b) => a + b, 0) / (vw * vh),
           each: areas.map((a) => a / (vw * vh)), tiles,
           layout: document.getElementById("tiles").dataset.layout };
}
"""

PREVIEW_JS = """
() => { const v = document.getElementById("preview-video");
  return { width: v.videoWidth, t: v.currentTime, pc: window.sfuApp.pc === null,
           state: window.sfuApp.client.state,
           cameras: [...document.querySelectorAll("#camera-select option")]
             .map((o) => o.textContent),
           mics: [...document.querySelectorAll("#mic-select option")].map((o) => o.textContent),
           speakerShown: !document.getElementById("speaker-row").hidden }; }
"""

#: Bob's camera: the local track, and what the camera sender (published first) sends
CAMERA_JS = """
() => { const c = sfuApp.media.camera;
  const sent = sfuApp.pc.getTransceivers()[0].sender.track;
  return { live: !!c && c.readyState === "live", senderTrack: sent ? sent.label : null,
           button: document.getElementById("cam-btn").textContent }; }
"""

#: visible buttons, inputs and selects without an accessible name, or out of the tab order
A11Y_JS = """
() => [...document.querySelectorAll("button, input, select, a[href]")]
  .filter((e) => e.getClientRects().length > 0)
  .filter((e) => {
    const name = (e.getAttribute("aria-label") || e.textContent || "").trim()
      || (e.labels && e.labels.length ? e.labels[0].textContent.trim() : "");
    return !name || e.tabIndex < 0;
  })
  .map((e) => e.outerHTML.slice(0, 120))
"""

TILE_MUTED_JS = """
(pid) => { const t = document.querySelector(`.tile[data-participant-id="${pid}"]`);
  return t ? { audio: t.dataset.audioMuted, video: t.dataset.videoMuted } : null; }
"""

SHARE_JS = """
(pid) => { const b = document.getElementById("screen-btn");
  const t = document.querySelector(`.tile[data-participant-id="${pid}"]`);
  return { text: b.textContent, pressed: b.getAttribute("aria-pressed"),
           localSharing: document.querySelector(".tile.local").classList.contains("sharing"),
           sharing: t ? t.classList.contains("sharing") : null,
           large: t ? t.classList.contains("large") : null }; }
"""


async def run(sc: Scenario) -> None:
    from playwright.async_api import async_playwright

    from sfu.ice_policy import IcePolicy
    from signaling.client import SfuClient
    from signaling.sources import PacedAudioTrack, PacedVideoTrack, encode_clip

    art = sc.artifacts
    art.mkdir(parents=True, exist_ok=True)
    shots: dict[str, str] = {}
    sc.info["screenshots"] = shots
    policy = IcePolicy(["127.0.0.1"])
    policy.install()
    bots: list[Any] = []
    started = time.monotonic()
    try:
        with sfu_server(art / "e2e-meeting-server.log", "--log-level", "INFO") as url:
            clip = await asyncio.to_thread(
                encode_clip, width=320, height=240, fps=15, seconds=2.0, bitrate=200_000, marker=7
            )

            async def add_bot(name: str) -> None:
                bot = await SfuClient.connect(url, decode=False, timeout=20)
                bots.append(bot)
                await bot.join(ROOM, name)
                await bot.publish(video=PacedVideoTrack(clip), audio=PacedAudioTrack())

            async with async_playwright() as pw:
                browser = await launch_chromium(pw, ARGS)
                pages: dict[str, Any] = {}

                async def open_page(name: str, path: str) -> Any:
                    ctx = await browser.new_context(viewport={"width": 1920, "height": 1080})
                    await ctx.grant_permissions(
                        ["camera", "microphone", "clipboard-read", "clipboard-write"], origin=url
                    )
                    page = await ctx.new_page()
                    sc.follow_console(page, name)
                    await page.goto(url + path)
                    pages[name] = page
                    return page

                async def shot(page: Any, name: str, what: str) -> None:
                    path = art / f"meeting-{name}.png"
                    await page.screenshot(path=str(path))
                    shots[path.name] = what

                async def joined(page: Any) -> bool:
                    ok, _ = await poll(
                        lambda: page.evaluate("() => sfuApp.client.state"),
                        lambda s: s == "joined",
                        20,
                    )
                    return ok

                # --- a bad room name in the URL: a readable page, not raw JSON
                bad = await browser.new_page(viewport={"width": 1280, "height": 800})
                resp = await bad.goto(url + "/room/bad room!")
                heading = await bad.locator("h1").inner_text()
                sc.check(
                    "a bad room URL shows a friendly HTML page (400)",
                    resp is not None and resp.status == 400 and "room" in heading.lower(),
                    {"status": resp.status if resp else None, "h1": heading},
                )
                await shot(bad, "bad-room-1280", "the page for a bad room name in the URL")
                await bad.close()

                # --- pre-join: preview plays before any peer connection; pickers list devices
                alice = await open_page("Alice", f"/room/{ROOM}")
                ok, first = await poll(
                    lambda: alice.evaluate(PREVIEW_JS), lambda v: v["width"] > 0, 20
                )
                await asyncio.sleep(1.0)
                second = await alice.evaluate(PREVIEW_JS)
                sc.check(
                    "pre-join: the preview plays the local camera before any peer connection",
                    ok and second["t"] > first["t"] and second["pc"] and second["state"] == "idle",
                    {"first": first, "second": second},
                )
                sc.check(
                    "pre-join: the device pickers list the fake devices",
                    len(second["cameras"]) >= 2 and len(second["mics"]) >= 1,
                    {k: second[k] for k in ("cameras", "mics", "speakerShown")},
                )
                await alice.fill("#name-input", "Alice")
                await shot(alice, "prejoin-1920", "pre-join screen at 1920x1080")
                await alice.set_viewport_size({"width": 390, "height": 844})
                await shot(alice, "prejoin-390", "pre-join screen at 390x844")
                await alice.set_viewport_size({"width": 1920, "height": 1080})
                await alice.click("#join-btn")
                sc.check("Alice joins from the pre-join screen", await joined(alice), None)
                bob = await open_page("Bob", f"/room/{ROOM}?name=Bob")
                sc.check("Bob joins", await joined(bob), None)
                ids = {n: await p.evaluate("() => sfuApp.client.id") for n, p in pages.items()}
                sc.info["ids"] = ids

                async def decoding(page: Any, count: int) -> bool:
                    ok, _ = await poll(
                        lambda: page.evaluate(STATS_JS),
                        lambda s: (
                            sum(1 for f in frames_by_participant(s).values() if f > 0) >= count
                        ),
                        40,
                    )
                    return ok

                async def alice_keeps_decoding_bob() -> tuple[bool, list[Any]]:
                    """Alice decodes more than 10 new frames of Bob within 15 s: whether
                    she did, and Bob's decoded frames before and after."""
                    f0 = frames_by_participant(await alice.evaluate(STATS_JS)).get(ids["Bob"], 0)
                    ok, f1 = await poll(
                        lambda: alice.evaluate(STATS_JS),
                        lambda s: frames_by_participant(s).get(ids["Bob"], 0) > f0 + 10,
                        15,
                    )
                    after = (
                        frames_by_participant(f1).get(ids["Bob"], 0) if isinstance(f1, dict) else f1
                    )
                    return ok, [f0, after]

                async def sizes(label: str, n: int) -> None:
                    for w, h in WIDTHS.items():
                        await alice.set_viewport_size({"width": w, "height": h})
                        await asyncio.sleep(0.8)
                        await shot(alice, f"{n}p-{w}", f"{n} participants at {w}x{h} (Alice)")
                        if w == 390:
                            over = await alice.evaluate(
                                "() => document.documentElement.scrollWidth - window.innerWidth"
                            )
                            sc.check(f"{label}: no horizontal overflow at 390 px", over <= 1, over)
                    await alice.set_viewport_size({"width": 1920, "height": 1080})
                    await asyncio.sleep(0.8)

                async def stage(n: int, decodes: str, covers: str, minimum: float) -> None:
                    """n participants: Alice decodes the others, their videos cover
                    ``minimum`` of 1920x1080, then the widths (``sizes``)."""
                    sc.check(decodes, await decoding(alice, n - 1), None)
                    await asyncio.sleep(1.0)
                    cover = await alice.evaluate(COVER_JS)
                    sc.check(covers, cover["total"] >= minimum, cover)
                    await sizes(f"{n} participants", n)

                # --- two participants at 1920x1080
                await stage(
                    2,
                    "Alice decodes Bob",
                    "2 participants: the remote video covers >= 30 % of a 1920x1080 viewport",
                    0.30,
                )

                # --- phone: chat reachable within one tap
                await alice.set_viewport_size({"width": 390, "height": 844})
                await asyncio.sleep(0.5)
                await alice.click("#chat-btn")
                box = await alice.locator("#chat-input").bounding_box()
                visible = await alice.locator("#chat-input").is_visible()
                sc.check(
                    "390 px: one tap on Chat shows the chat input on screen",
                    visible
                    and box is not None
                    and box["y"] >= 0
                    and box["y"] + box["height"] <= 844,
                    box,
                )
                await shot(alice, "phone-chat-drawer", "390 px: the chat drawer after one tap")
                await alice.click("#side-close")
                await alice.set_viewport_size({"width": 1920, "height": 1080})

                # --- four participants
                for i in (1, 2):
                    await add_bot(f"Bot {i}")
                await stage(
                    4,
                    "Alice decodes 3 others",
                    "4 participants: remote videos together cover >= 40 % of 1920x1080",
                    0.40,
                )

                # --- pin Bob
                tile = f'.tile[data-participant-id="{ids["Bob"]}"]'
                await alice.hover(tile)
                await alice.click(f"{tile} .pin-btn")
                await asyncio.sleep(0.8)
                cover = await alice.evaluate(COVER_JS)
                bob_share = max(
                    (t["share"] for t in cover["tiles"] if t["id"] == ids["Bob"]), default=0
                )
                sc.check("pin: Bob's tile covers >= 50 % of the viewport", bob_share >= 0.5, cover)
                await shot(alice, "pinned-1920", "Bob pinned (large tile + filmstrip)")
                await alice.click(f"{tile} .pin-btn")
                await alice.click(f"{tile} .fs-btn")
                ok, fs = await poll(
                    lambda: alice.evaluate(
                        "() => document.fullscreenElement && document.fullscreenElement.dataset"
                        ".participantId"
                    ),
                    lambda v: v == ids["Bob"],
                    5,
                )
                sc.check("Full screen shows Bob's tile full screen", ok, fs)
                await alice.evaluate("() => document.exitFullscreen().catch(() => {})")

                # --- "Stop camera" stops the track for real; "Start camera" sends a new one
                await bob.click("#cam-btn")
                ok, cam = await poll(lambda: bob.evaluate(CAMERA_JS), lambda c: not c["live"], 10)
                sc.check(
                    "Stop camera stops the camera track (light off) and sends nothing",
                    ok and cam["senderTrack"] is None and cam["button"] == "Start camera",
                    cam,
                )
                await bob.click("#cam-btn")
                ok, cam = await poll(
                    lambda: bob.evaluate(CAMERA_JS),
                    lambda c: c["live"] and c["senderTrack"] and c["button"] == "Stop camera",
                    10,
                )
                ok2, _ = await alice_keeps_decoding_bob()
                sc.check(
                    "Start camera opens it again on the same sender and Alice decodes Bob",
                    ok and ok2 and cam["button"] == "Stop camera",
                    cam,
                )

                # --- every control has an accessible name and is keyboard reachable
                unnamed = await alice.evaluate(A11Y_JS)
                sc.check("every visible control has an accessible name", unnamed == [], unnamed)

                # --- switch Bob's camera mid-call: same peer connection, Alice keeps decoding
                await bob.evaluate("() => { window.__pcBefore = sfuApp.pc; }")
                before_label = await bob.evaluate("() => sfuApp.media.camera.label")
                await bob.click("#devices-btn")
                await bob.select_option("#camera-select", label="fake_device_2")
                ok, after_label = await poll(
                    lambda: bob.evaluate("() => sfuApp.media.camera && sfuApp.media.camera.label"),
                    lambda lab: bool(lab) and lab != before_label,
                    10,
                )
                await bob.select_option("#mic-select", label="Fake Audio Input 1")
                ok_mic, mic = await poll(
                    lambda: bob.evaluate(
                        "() => sfuApp.pc.getSenders().map((s) => s.track && s.track.label)"
                    ),
                    lambda labels: "Fake Audio Input 1" in labels,
                    10,
                )
                same = await bob.evaluate("() => sfuApp.pc === window.__pcBefore")
                sc.check(
                    "microphone switch replaces the track on the same peer connection",
                    ok_mic and same,
                    {"senders": mic, "same_pc": same},
                )
                await shot(bob, "devices-dialog", "Bob's device dialog during the call")
                await bob.keyboard.press("Escape")
                same_pc = await bob.evaluate("() => sfuApp.pc === window.__pcBefore")
                sent = await bob.evaluate(
                    "() => sfuApp.pc.getSenders().some("
                    "(s) => s.track && s.track.label === sfuApp.media.camera.label)"
                )
                ok2, frames = await alice_keeps_decoding_bob()
                sc.check(
                    "camera switch keeps the peer connection and Alice keeps decoding Bob",
                    ok and same_pc and sent and ok2,
                    {
                        "before": before_label,
                        "after": after_label,
                        "same_pc": same_pc,
                        "sender_has_new_track": sent,
                        "frames": frames,
                    },
                )

                # --- screen share start/stop twice
                for round_ in (1, 2):
                    await bob.click("#screen-btn")
                    ok, st = await poll(
                        lambda: bob.evaluate(SHARE_JS, ids["Alice"]),
                        lambda s: s["text"] == "Stop sharing" and s["localSharing"],
                        15,
                    )
                    ok_a, sa = await poll(
                        lambda: alice.evaluate(SHARE_JS, ids["Bob"]),
                        lambda s: bool(s["sharing"]) and bool(s["large"]),
                        45,  # a renegotiation on a loaded 2-core box (CI is quieter)
                    )
                    sc.check(
                        f"share {round_}: Bob's button says Stop sharing, "
                        "Alice shows his share large",
                        ok and ok_a,
                        {"bob": st, "alice": sa},
                    )
                    if round_ == 1:
                        await asyncio.sleep(1.5)
                        await alice.hover(tile)
                        await alice.click(f"{tile} .pin-btn")
                        await asyncio.sleep(0.8)
                        await shot(
                            alice,
                            "pinned-share-1920",
                            "Bob's screen share, pinned, on Alice's page",
                        )
                        await alice.click(f"{tile} .pin-btn")
                    await bob.click("#screen-btn")
                    ok, st = await poll(
                        lambda: bob.evaluate(SHARE_JS, ids["Alice"]),
                        lambda s: (
                            s["text"] == "Share screen"
                            and s["pressed"] == "false"
                            and not s["localSharing"]
                        ),
                        15,
                    )
                    ok_a, sa = await poll(
                        lambda: alice.evaluate(SHARE_JS, ids["Bob"]),
                        lambda s: s["sharing"] is False and s["large"] is False,
                        20,
                    )
                    sc.check(
                        f"stop {round_}: Bob's button is back to Share screen, Alice's tile too",
                        ok and ok_a,
                        {"bob": st, "alice": sa},
                    )
                sharing = await bob.evaluate("() => sfuApp.client.sharingScreen")
                sc.check("no share is left running", sharing is False, sharing)

                # --- quality: Bob's upload capped at 2 frames/s -> Alice sees him "poor"
                await bob.evaluate(
                    """async () => {
                      const s = sfuApp.pc.getSenders()
                        .find((x) => x.track && x.track.kind === "video");
                      const p = s.getParameters();
                      p.encodings[0].maxFramerate = 2; p.encodings[0].maxBitrate = 60000;
                      await s.setParameters(p);
                    }"""
                )
                ok, q = await poll(
                    lambda: alice.evaluate(
                        f"() => document.querySelector('{tile}').dataset.quality"
                    ),
                    lambda v: v == "poor",
                    25,
                )
                others = await alice.evaluate(
                    "() => [...document.querySelectorAll('.tile:not(.local)')]"
                    ".map((t) => t.dataset.quality)"
                )
                sc.check("quality: Alice sees Bob (2 fps) as poor", ok, {"bob": q, "all": others})
                await alice.click(f"{tile} .quality")
                details = await alice.locator(f"{tile} .quality-pop").inner_text()
                sc.check("quality: the popover shows the numbers", "fps" in details, details)
                await shot(
                    alice,
                    "quality-poor-1920",
                    "quality indicator and popover on Bob (capped at 2 fps)",
                )
                await alice.click(f"{tile} .quality")
                await bob.evaluate(
                    """async () => {
                      const s = sfuApp.pc.getSenders()
                        .find((x) => x.track && x.track.kind === "video");
                      const p = s.getParameters();
                      delete p.encodings[0].maxFramerate; delete p.encodings[0].maxBitrate;
                      await s.setParameters(p);
                    }"""
                )

                # --- duplicate names are told apart
                await add_bot("Bob")
                ok, names = await poll(
                    lambda: alice.evaluate(
                        "() => [...document.querySelectorAll('.tile:not(.local) .name')]"
                        ".map((n) => n.textContent)"
                    ),
                    lambda ns: "Bob" in ns and "Bob (2)" in ns,
                    15,
                )
                sc.check("two people called Bob are shown as Bob and Bob (2)", ok, names)

                # --- eight participants (Alice, Bob, 6 bots)
                for i in (3, 4, 5):
                    await add_bot(f"Bot {i}")
                ok, n = await poll(
                    lambda: alice.evaluate(
                        "() => document.querySelectorAll('.tile:not(.local)').length"
                    ),
                    lambda c: c == 7,
                    20,
                )
                sc.check("8 participants: Alice shows 7 remote tiles", ok, n)
                await decoding(alice, 7)
                await asyncio.sleep(4.0)  # two quality samples
                sc.info["quality_8p"] = await alice.evaluate(
                    "() => [...document.querySelectorAll('.tile')].map((t) =>"
                    " [t.querySelector('.name').textContent, t.querySelector('.quality').title])"
                )
                await sizes("8 participants", 8)

                # --- invite link, chat length
                await alice.click("#invite-btn")
                invite = await alice.locator("#invite-status").inner_text()
                clip_text = await alice.evaluate(
                    "() => navigator.clipboard.readText().catch(() => '')"
                )
                sc.check(
                    "the invite button copies (or shows) the room link",
                    f"/room/{ROOM}" in clip_text
                    or f"/room/{ROOM}" in await alice.locator("#invite-status").inner_html(),
                    {"status": invite, "clipboard": clip_text},
                )
                await alice.fill("#chat-input", "x" * 2100)
                hint = await alice.locator("#chat-hint").inner_text()
                send_disabled = await alice.locator("#chat-form button[type=submit]").is_disabled()
                sc.check(
                    "a chat message over 2,000 characters is refused with a word",
                    "Too long" in hint and send_disabled,
                    {"hint": hint, "send_disabled": send_disabled},
                )
                await shot(
                    alice,
                    "chat-too-long-1920",
                    "the chat says a 2,100-character message is too long",
                )
                await alice.fill("#chat-input", "")

                # --- leave clears the room view
                await alice.click("#leave-btn")
                ok, view = await poll(
                    lambda: alice.evaluate(
                        """() => ({ remote: document.querySelectorAll('.tile:not(.local)').length,
                             members: document.querySelectorAll('[data-member-id]').length,
                             localVideo: document.querySelector(
                               '.tile.local video.camera-video').srcObject,
                             leftShown: !document.getElementById('left-view').hidden,
                             camera: sfuApp.media.camera })"""
                    ),
                    lambda v: (
                        v["remote"] == 0
                        and v["members"] == 0
                        and v["leftShown"]
                        and v["localVideo"] is None
                        and v["camera"] is None
                    ),
                    10,
                )
                sc.check("leave clears the room view (tiles, people, own video)", ok, view)
                await shot(alice, "left-1920", "after leaving")
                # --- join from the pre-join screen with camera and mic off, then start the camera
                # (with fewer bots: this machine has 2 cores)
                for bot in bots[2:]:
                    await bot.close()
                del bots[2:]
                carol = await open_page("Carol", f"/room/{ROOM}")
                await poll(lambda: carol.evaluate(PREVIEW_JS), lambda v: v["width"] > 0, 20)
                await carol.click("#pre-cam-btn")
                await carol.click("#pre-mic-btn")
                await carol.fill("#name-input", "Carol")
                ok, off = await poll(
                    lambda: carol.evaluate(
                        "() => ({ camera: sfuApp.media.camera,"
                        " preview: !document.getElementById('preview-off').hidden })"
                    ),
                    lambda v: v["camera"] is None and v["preview"],
                    5,
                )
                await shot(carol, "prejoin-camera-off-1280", "pre-join with camera and mic off")
                await carol.click("#join-btn")
                sc.check("Carol joins with camera and mic off", await joined(carol) and ok, off)
                carol_id = await carol.evaluate("() => sfuApp.client.id")
                ok, attrs = await poll(
                    lambda: bob.evaluate(TILE_MUTED_JS, carol_id),
                    lambda a: bool(a) and a["audio"] == "true" and a["video"] == "true",
                    15,
                )
                sc.check("Bob sees Carol with camera and mic off", ok, attrs)
                await carol.click("#cam-btn")
                ok, attrs = await poll(
                    lambda: bob.evaluate(TILE_MUTED_JS, carol_id),
                    lambda a: bool(a) and a["video"] == "false",
                    30,
                )
                ok2, _ = await poll(
                    lambda: bob.evaluate(STATS_JS),
                    lambda s: frames_by_participant(s).get(carol_id, 0) > 10,
                    30,
                )
                sc.check("Carol starts her camera and Bob decodes her", ok and ok2, attrs)

                sc.info["console_errors"] = {
                    n: [x for x in lines if x.startswith(("error", "pageerror"))]
                    for n, lines in sc.console.items()
                }
                await browser.close()
    finally:
        for bot in bots:
            with contextlib.suppress(Exception):  # best effort at the end
                await bot.close()
        policy.uninstall()
        sc.info["seconds"] = round(time.monotonic() - started, 1)


if __name__ == "__main__":
    sys.exit(scenario_main(__doc__, lambda sc: asyncio.run(run(sc))))
