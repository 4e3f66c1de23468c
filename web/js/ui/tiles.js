// Video tiles: the local preview and one labelled tile per remote participant, each with
// its camera (+ microphone) video, an optional screen-share video and mute badges.

import { el } from "./dom.js";

/**
 * @typedef {import("../protocol.js").Participant} Participant
 * @typedef {import("../protocol.js").RemoteTrack} RemoteTrack
 */

export class TileGrid {
  /**
   * @param {HTMLElement} container
   * @param {{onPhoto: (video: HTMLVideoElement, label: string) => void, onAutoplayBlocked: () => void}} hooks
   */
  constructor(container, hooks) {
    this.container = container;
    this.hooks = hooks;
    /** @type {Map<string, HTMLElement>} */
    this.tiles = new Map();
    /** @type {RemoteTrack[]} */
    this.rows = [];
    this.local = this._makeTile("local", "You", true);
    this.local.classList.add("local");
    this.container.append(this.local);
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
    if (stream && video.srcObject !== stream) {
      video.srcObject = stream;
      this._play(video);
    }
    this.local.classList.toggle("no-video", !stream || stream.getVideoTracks().length === 0);
  }

  /** @param {MediaStreamTrack | null} track */
  setLocalScreen(track) {
    const video = /** @type {HTMLVideoElement} */ (this.local.querySelector("video.screen-video"));
    this._setStream(video, track ? [track] : []);
    this.local.classList.toggle("sharing", Boolean(track));
  }

  /** @param {{audio: boolean, video: boolean}} muted */
  setLocalMuted(muted) {
    this.local.dataset.audioMuted = String(muted.audio);
    this.local.dataset.videoMuted = String(muted.video);
  }

  /**
   * Add or relabel a remote participant's tile.
   * @param {Participant} p
   */
  upsert(p) {
    let tile = this.tiles.get(p.id);
    if (!tile) {
      tile = this._makeTile(p.id, p.name, false);
      this.tiles.set(p.id, tile);
      this.container.append(tile);
      this._apply();
    }
    /** @type {HTMLElement} */ (tile.querySelector(".name")).textContent = p.name;
    tile.querySelector(".avatar")?.replaceChildren(initials(p.name));
    tile.dataset.audioMuted = String(Boolean(p.audioMuted));
    tile.dataset.videoMuted = String(Boolean(p.videoMuted));
  }

  /** @param {string} id */
  remove(id) {
    const tile = this.tiles.get(id);
    if (!tile) return;
    for (const v of tile.querySelectorAll("video")) v.srcObject = null;
    tile.remove();
    this.tiles.delete(id);
  }

  /** Remove every remote tile (connection reset). */
  clear() {
    for (const id of [...this.tiles.keys()]) this.remove(id);
    this.rows = [];
  }

  /**
   * The incoming tracks changed: give every tile its camera/microphone and screen streams.
   * @param {RemoteTrack[]} rows
   */
  setTracks(rows) {
    this.rows = rows;
    this._apply();
  }

  /** Unmute remote videos after the user interacted (autoplay with sound was blocked). */
  unmuteAll() {
    for (const tile of this.tiles.values()) {
      const v = /** @type {HTMLVideoElement} */ (tile.querySelector("video.camera-video"));
      v.muted = false;
      this._play(v);
    }
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
    const photo = el("button", { class: "photo-btn", text: "Photo", attrs: { type: "button", title: "take a photo of this video" } });
    const nameEl = el("span", { class: "name", text: name });
    const tile = el(
      "figure",
      {
        class: "tile no-video",
        attrs: { "data-participant-id": id, "data-audio-muted": "false", "data-video-muted": "false" },
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
        photo,
      ),
    );
    photo.addEventListener("click", () => {
      const sharing = tile.classList.contains("sharing") && (camera.videoWidth === 0 || tile.dataset.videoMuted === "true");
      this.hooks.onPhoto(sharing ? screen : camera, nameEl.textContent ?? "");
    });
    return tile;
  }
}

/** @param {string} name */
function initials(name) {
  const parts = name.trim().split(/\s+/).filter(Boolean);
  return parts.slice(0, 2).map((p) => [...p][0]?.toUpperCase() ?? "").join("") || "?";
}
