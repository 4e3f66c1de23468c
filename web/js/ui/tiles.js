// Video tiles: our own and one labelled tile per remote participant, each with its camera
// (+ microphone) video, an optional screen-share video, mute badges, a connection-quality
// indicator and pin / full-screen / photo buttons; placed on the stage by layout.js.
//
// The large tile: pinned (by the user) > a remote screen share > the active speaker
// (`setSpeaker(id)`) when the stage is narrow or the grid would make tiles too small.
// Nothing large: a grid (two people: the other fills the stage and we float small). The
// active speaker's tile is highlighted (class `speaking`) and every tile has a small audio
// level meter (`setLevels`).

import { el } from "./dom.js";
import { bestGrid, stageLayout } from "./layout.js";

/**
 * @typedef {import("../protocol.js").Participant} Participant
 * @typedef {import("../protocol.js").RemoteTrack} RemoteTrack
 * @typedef {import("./quality.js").Quality} Quality
 */

const SELF = "self";
/** A stage narrower than this (px) shows the active speaker large. */
export const NARROW_STAGE = 640;
/** A grid whose tiles would be narrower than this (px) shows the active speaker large. */
export const MIN_GRID_TILE = 200;
const QUALITY_TEXT = { good: "good", poor: "poor", lost: "lost", unknown: "not measured yet" };
let popSeq = 0;

export class TileGrid {
  /**
   * @param {HTMLElement} container
   * @param {{onPhoto: (video: HTMLVideoElement, label: string) => void, onAutoplayBlocked: () => void}} hooks
   */
  constructor(container, hooks) {
    this.container = container;
    this.hooks = hooks;
    /** @type {Map<string, HTMLElement>} remote tiles by participant id */
    this.tiles = new Map();
    /** @type {RemoteTrack[]} */
    this.rows = [];
    /** @type {string | null} pinned tile ("self" or a participant id) */
    this.pinned = null;
    /** @type {string | null} the active speaker (`setSpeaker`) */
    this.speaker = null;
    /** @type {Record<string, number>} the last audio levels (`setLevels`) */
    this.levels = {};
    this.sinkId = "";
    this.local = this._makeTile(SELF, "You", true);
    this.local.classList.add("local");
    this.container.append(this.local);
    this.mode = "grid";
    if (typeof ResizeObserver === "function") new ResizeObserver(() => this.layout()).observe(this.container);
    this.layout();
  }

  /** @returns {HTMLVideoElement} */
  get localVideo() {
    return /** @type {HTMLVideoElement} */ (this.local.querySelector("video.camera-video"));
  }

  /**
   * @param {MediaStream | null} stream
   * @param {string} [id]  our participant id once joined
   */
  setLocal(stream, id) {
    if (id) this.local.dataset.participantId = id;
    const video = this.localVideo;
    if (video.srcObject !== stream) {
      video.srcObject = stream;
      if (stream) this._play(video);
    }
    this.local.classList.toggle("no-video", !stream || stream.getVideoTracks().length === 0);
    this.local.hidden = false;
  }

  /** @param {string} label */
  setLocalName(label) {
    /** @type {HTMLElement} */ (this.local.querySelector(".name")).textContent = `${label} (you)`;
    this.local.querySelector(".avatar")?.replaceChildren(initials(label));
  }

  /** @param {MediaStreamTrack | null} track */
  setLocalScreen(track) {
    const video = /** @type {HTMLVideoElement} */ (this.local.querySelector("video.screen-video"));
    this._setStream(video, track ? [track] : []);
    this.local.classList.toggle("sharing", Boolean(track));
    this.layout();
  }

  /** @param {{audio: boolean, video: boolean}} muted */
  setLocalMuted(muted) {
    this.local.dataset.audioMuted = String(muted.audio);
    this.local.dataset.videoMuted = String(muted.video);
  }

  /**
   * Add or relabel a remote participant's tile.
   * @param {Participant} p
   * @param {string} [label]  the name to show (told apart from same names)
   */
  upsert(p, label = p.name) {
    let tile = this.tiles.get(p.id);
    if (!tile) {
      tile = this._makeTile(p.id, label, false);
      this.tiles.set(p.id, tile);
      this.container.append(tile);
      this._apply();
      // the speaker and levels may have come before this tile (a late joiner's first event)
      this.setSpeaker(this.speaker);
      this.setLevels(this.levels);
    }
    /** @type {HTMLElement} */ (tile.querySelector(".name")).textContent = label;
    tile.querySelector(".avatar")?.replaceChildren(initials(p.name));
    tile.dataset.audioMuted = String(Boolean(p.audioMuted));
    tile.dataset.videoMuted = String(Boolean(p.videoMuted));
  }

  /**
   * A participant came back under a new id (rejoin): its tile follows.
   * @param {string} oldId
   * @param {string} newId
   */
  rekey(oldId, newId) {
    const tile = this.tiles.get(oldId);
    if (!tile || oldId === newId) return;
    this.tiles.delete(oldId);
    this.tiles.set(newId, tile);
    tile.dataset.participantId = newId;
    if (this.pinned === oldId) this.pinned = newId;
    if (this.speaker === oldId) this.speaker = newId;
  }

  /**
   * Grey a tile while we (or the server) reconnect; keep its name and last frame.
   * @param {string} id
   * @param {boolean} stale
   */
  setStale(id, stale) {
    const tile = this.tiles.get(id);
    if (!tile) return;
    tile.classList.toggle("stale", stale);
    /** @type {HTMLElement} */ (tile.querySelector(".tile-state")).hidden = !stale;
  }

  /**
   * The <video> showing a remote participant's `source` ("camera" or "screen"), or null.
   * @param {string} id
   * @param {string} source
   * @returns {HTMLVideoElement | null}
   */
  videoElement(id, source) {
    const tile = this.tiles.get(id);
    if (!tile) return null;
    return tile.querySelector(source === "screen" ? "video.screen-video" : "video.camera-video");
  }

  /**
   * The server's forwarding state of a remote video (`video state`): "paused-link" shows
   * the tile as paused for a poor connection until the video is "active" again.
   * @param {string} id
   * @param {string} source
   * @param {string} state  "active" | "paused-link" | "paused-viewer"
   */
  setVideoState(id, source, state) {
    const tile = this.tiles.get(id);
    if (!tile) return;
    const paused = new Set((tile.dataset.linkPaused ?? "").split(" ").filter(Boolean));
    if (state === "paused-link") paused.add(source);
    else paused.delete(source);
    tile.dataset.linkPaused = [...paused].sort().join(" ");
    tile.classList.toggle("link-paused", paused.size > 0);
    const note = /** @type {HTMLElement} */ (tile.querySelector(".link-note"));
    note.hidden = paused.size === 0;
    note.textContent = paused.size === 1 && paused.has("screen") ? "screen paused: poor connection" : "paused: poor connection";
  }

  /** @param {string} id */
  remove(id) {
    const tile = this.tiles.get(id);
    if (!tile) return;
    for (const v of tile.querySelectorAll("video")) v.srcObject = null;
    tile.remove();
    this.tiles.delete(id);
    if (this.pinned === id) this.pinned = null;
    if (this.speaker === id) this.speaker = null;
    this.layout();
  }

  /** Remove every remote tile. */
  clear() {
    for (const id of [...this.tiles.keys()]) this.remove(id);
    this.rows = [];
  }

  /** Left the room: no remote tiles, our own tile empty and hidden. */
  reset() {
    this.clear();
    this.pinned = null;
    this.speaker = null;
    for (const v of this.local.querySelectorAll("video")) v.srcObject = null;
    this.local.classList.remove("sharing");
    this.local.classList.add("no-video");
    this.local.hidden = true;
    this.layout();
  }

  /**
   * The incoming tracks changed: give every tile its camera/microphone and screen streams.
   * @param {RemoteTrack[]} rows
   */
  setTracks(rows) {
    this.rows = rows;
    this._apply();
    this.layout();
  }

  /**
   * Pin a tile (it becomes the large one), or unpin with null.
   * @param {string | null} id  a participant id, "self", or null
   */
  pin(id) {
    this.pinned = id;
    for (const [tid, tile] of this._all()) {
      const on = tid === id;
      tile.classList.toggle("pinned", on);
      const btn = /** @type {HTMLButtonElement} */ (tile.querySelector(".pin-btn"));
      btn.setAttribute("aria-pressed", String(on));
      btn.textContent = on ? "Unpin" : "Pin";
      btn.setAttribute("aria-label", `${btn.textContent} ${tile.querySelector(".name")?.textContent ?? ""}`);
    }
    this.layout();
  }

  /**
   * The room's active speaker (a participant id, ours included; null: none): its tile is
   * highlighted, and shown large when the stage is narrow or the grid overflows.
   * @param {string | null} id
   */
  setSpeaker(id) {
    this.speaker = id;
    const selfId = this.local.dataset.participantId;
    for (const [tid, tile] of this._all()) {
      const on = id !== null && (tid === id || (tid === SELF && id === selfId));
      tile.classList.toggle("speaking", on);
      tile.dataset.speaking = String(on);
    }
    this.layout();
  }

  /**
   * Audio levels (linear 0..1) of the participants above silence; every other tile's
   * meter drops to zero.
   * @param {Record<string, number>} levels
   */
  setLevels(levels) {
    this.levels = levels;
    const selfId = this.local.dataset.participantId;
    for (const [tid, tile] of this._all()) {
      const key = tid === SELF ? selfId : tid;
      const level = key && typeof levels[key] === "number" ? levels[key] : 0;
      // the meter follows loudness, not amplitude: -50 dBov .. 0 dBov over the bar
      const db = level > 0 ? 20 * Math.log10(level) : -Infinity;
      const fill = Math.max(0, Math.min(1, (db + 50) / 50));
      const meter = /** @type {HTMLElement} */ (tile.querySelector(".level-meter"));
      meter.style.setProperty("--level", fill.toFixed(3));
      meter.setAttribute("aria-valuenow", String(Math.round(fill * 100)));
      tile.dataset.level = level.toFixed(3);
    }
  }

  /** Whether the active speaker should be the large tile at this stage size. */
  _speakerView() {
    const W = this.container.clientWidth;
    const H = this.container.clientHeight;
    if (W <= 0 || H <= 0) return false;
    if (W < NARROW_STAGE) return true;
    const visible = this._all().filter(([, t]) => !t.hidden).length;
    return visible > 2 && bestGrid(W, H, visible).w < MIN_GRID_TILE;
  }

  /** @returns {string | null} the tile shown large ("self" or a participant id) */
  get largeId() {
    if (this.pinned && (this.pinned === SELF || this.tiles.has(this.pinned))) return this.pinned;
    for (const [id, tile] of this.tiles) if (tile.classList.contains("sharing")) return id;
    if (this.speaker && this.tiles.has(this.speaker) && this._speakerView()) return this.speaker;
    return null;
  }

  /**
   * @param {string} id  a participant id, or our own id / "self"
   * @param {Quality} quality
   * @param {[string, string][]} details
   */
  setQuality(id, quality, details) {
    const tile = id === SELF || id === this.local.dataset.participantId ? this.local : this.tiles.get(id);
    if (!tile) return;
    tile.dataset.quality = quality;
    const btn = /** @type {HTMLButtonElement} */ (tile.querySelector(".quality"));
    const summary = `Connection ${QUALITY_TEXT[quality]}`;
    btn.setAttribute("aria-label", `${summary}: show details`);
    btn.title = [summary, ...details.map(([k, v]) => `${k}: ${v}`)].join("\n");
    const pop = /** @type {HTMLElement} */ (tile.querySelector(".quality-pop"));
    pop.replaceChildren(
      el("strong", { text: summary }),
      el("dl", {}, ...details.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: v })])),
    );
  }

  /**
   * Play remote audio on this output device (where the browser allows).
   * @param {string} deviceId
   */
  setSinkId(deviceId) {
    this.sinkId = deviceId;
    for (const tile of this.tiles.values()) {
      const v = /** @type {any} */ (tile.querySelector("video.camera-video"));
      if (typeof v.setSinkId === "function") v.setSinkId(deviceId).catch(() => {});
    }
  }

  /** Unmute remote videos after the user interacted (autoplay with sound was blocked). */
  unmuteAll() {
    for (const tile of this.tiles.values()) {
      const v = /** @type {HTMLVideoElement} */ (tile.querySelector("video.camera-video"));
      v.muted = false;
      this._play(v);
    }
  }

  /** Place every tile for the current stage size. */
  layout() {
    const W = this.container.clientWidth;
    const H = this.container.clientHeight;
    /** @type {[string, HTMLElement][]} */
    const all = this._all().filter(([, t]) => !t.hidden);
    const large = this.largeId;
    const { mode, rects } = stageLayout(
      W,
      H,
      all.map(([id]) => id),
      { selfId: SELF, largeId: large },
    );
    this.mode = mode;
    this.container.dataset.layout = mode;
    for (const [id, tile] of all) {
      const r = rects.get(id);
      if (!r) continue;
      Object.assign(tile.style, { left: `${r.x}px`, top: `${r.y}px`, width: `${r.w}px`, height: `${r.h}px` });
      tile.classList.toggle("large", id === large && mode === "large");
      tile.classList.toggle("pip", mode === "pip" && id === SELF);
      tile.classList.toggle("small", r.w < 220);
    }
  }

  /** @returns {[string, HTMLElement][]} our tile first, then the remote ones */
  _all() {
    return [[SELF, this.local], ...this.tiles];
  }

  _apply() {
    for (const [id, tile] of this.tiles) {
      const mine = this.rows.filter((r) => r.participantId === id);
      const main = mine.filter((r) => r.source !== "screen").map((r) => r.track);
      const screen = mine.filter((r) => r.source === "screen").map((r) => r.track);
      this._setStream(/** @type {HTMLVideoElement} */ (tile.querySelector("video.camera-video")), main);
      this._setStream(/** @type {HTMLVideoElement} */ (tile.querySelector("video.screen-video")), screen);
      tile.classList.toggle("sharing", screen.length > 0);
      tile.classList.toggle("no-video", !mine.some((r) => r.kind === "video" && r.source !== "screen"));
    }
  }

  /**
   * @param {HTMLVideoElement} video
   * @param {MediaStreamTrack[]} tracks
   */
  _setStream(video, tracks) {
    const current = /** @type {MediaStream | null} */ (video.srcObject);
    const have = current ? current.getTracks().map((t) => t.id).sort().join() : "";
    const want = tracks.map((t) => t.id).sort().join();
    if (have === want) return;
    video.srcObject = tracks.length ? new MediaStream(tracks) : null;
    video.hidden = tracks.length === 0 && video.classList.contains("screen-video");
    const v = /** @type {any} */ (video);
    if (this.sinkId && typeof v.setSinkId === "function") v.setSinkId(this.sinkId).catch(() => {});
    if (tracks.length) this._play(video);
  }

  /** @param {HTMLVideoElement} video */
  _play(video) {
    video.play().catch((err) => {
      if (err?.name !== "NotAllowedError" || video.muted) return;
      // autoplay with sound refused: play muted, ask for a click to unmute
      video.muted = true;
      video.play().catch(() => {});
      this.hooks.onAutoplayBlocked();
    });
  }

  /**
   * @param {string} id
   * @param {string} name
   * @param {boolean} local
   */
  _makeTile(id, name, local) {
    const cls = local ? "local-video" : "remote-video";
    const camera = el("video", { class: `${cls} camera-video`, attrs: { autoplay: "", playsinline: "" } });
    const screen = el("video", { class: `${cls} screen-video`, attrs: { autoplay: "", playsinline: "" } });
    screen.muted = true;
    screen.hidden = true;
    if (local) camera.muted = true; // never play our own microphone back
    const popId = `quality-pop-${++popSeq}`;
    const quality = el(
      "button",
      {
        class: "tile-btn quality",
        attrs: { type: "button", "aria-label": "Connection not measured yet: show details", "aria-expanded": "false", "aria-controls": popId },
      },
      el("span", { class: "bar b1" }),
      el("span", { class: "bar b2" }),
      el("span", { class: "bar b3" }),
    );
    const pop = el("div", { class: "quality-pop", attrs: { id: popId, role: "tooltip" } }, el("strong", { text: "Connection not measured yet" }));
    pop.hidden = true;
    const pin = el("button", { class: "tile-btn pin-btn", text: "Pin", attrs: { type: "button", "aria-pressed": "false" } });
    const full = el("button", { class: "tile-btn fs-btn", text: "Full screen", attrs: { type: "button" } });
    const photo = el("button", { class: "tile-btn photo-btn", text: "Photo", attrs: { type: "button", title: "take a photo of this video" } });
    const nameEl = el("span", { class: "name", text: name });
    const stateEl = el("span", { class: "tile-state", text: "reconnecting…" });
    stateEl.hidden = true;
    const linkNote = el("span", { class: "link-note", text: "paused: poor connection", attrs: { role: "status" } });
    linkNote.hidden = true;
    const tile = el(
      "figure",
      {
        class: "tile no-video",
        attrs: { "data-participant-id": id, "data-audio-muted": "false", "data-video-muted": "false", "data-quality": "unknown" },
      },
      el(
        "div",
        { class: "media" },
        el("div", { class: "avatar", text: initials(name), attrs: { "aria-hidden": "true" } }),
        camera,
        screen,
      ),
      el(
        "figcaption",
        {},
        nameEl,
        el("span", { class: "badge mic-off", text: "mic off", attrs: { title: "microphone muted" } }),
        el("span", { class: "badge cam-off", text: "camera off", attrs: { title: "camera off" } }),
        stateEl,
        linkNote,
      ),
      el("div", { class: "tile-tools" }, pin, full, photo),
      quality,
      pop,
      el(
        "div",
        {
          class: "level-meter",
          attrs: { role: "meter", "aria-label": `${name} audio level`, "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0" },
        },
        el("span", { class: "level-fill" }),
      ),
    );
    const key = () => (local ? SELF : /** @type {string} */ (tile.dataset.participantId));
    const label = () => nameEl.textContent ?? "";
    pin.setAttribute("aria-label", `Pin ${name}`);
    pin.addEventListener("click", () => this.pin(this.pinned === key() ? null : key()));
    full.addEventListener("click", () => {
      if (document.fullscreenElement === tile) document.exitFullscreen?.();
      else tile.requestFullscreen?.().catch(() => {});
    });
    tile.addEventListener("dblclick", () => this.pin(this.pinned === key() ? null : key()));
    quality.addEventListener("click", () => {
      pop.hidden = !pop.hidden;
      quality.setAttribute("aria-expanded", String(!pop.hidden));
    });
    photo.addEventListener("click", () => {
      const sharing = tile.classList.contains("sharing") && (camera.videoWidth === 0 || tile.dataset.videoMuted === "true");
      this.hooks.onPhoto(sharing ? screen : camera, label());
    });
    // accessible names follow the label
    new MutationObserver(() => {
      pin.setAttribute("aria-label", `${pin.textContent} ${label()}`);
      full.setAttribute("aria-label", `Show ${label()} full screen`);
      photo.setAttribute("aria-label", `Take a photo of ${label()}`);
    }).observe(nameEl, { childList: true, characterData: true, subtree: true });
    full.setAttribute("aria-label", `Show ${name} full screen`);
    photo.setAttribute("aria-label", `Take a photo of ${name}`);
    return tile;
  }
}

/** @param {string} name */
function initials(name) {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  return parts.slice(0, 2).map((p) => [...p][0]?.toUpperCase() ?? "").join("") || "?";
}
