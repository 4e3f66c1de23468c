// The room page (UI only): wires protocol.js's SfuClient to the tiles, the participant
// list, the chat, the photo strip and the controls. All signaling lives in protocol.js.

import { io } from "/vendor/socket.io-client/socket.io.esm.min.js";

import { ROOM_RE, SfuClient } from "./protocol.js";
import { Banner } from "./ui/banner.js";
import { ChatView } from "./ui/chat.js";
import { byId } from "./ui/dom.js";
import { canShareScreen, getLocalMedia, getScreenTrack } from "./ui/media.js";
import { renderParticipants } from "./ui/participants.js";
import { takePhoto } from "./ui/photos.js";
import { TileGrid } from "./ui/tiles.js";

const params = new URLSearchParams(location.search);
const room = decodeURIComponent(location.pathname.replace(/^\/room\//, "").replace(/\/$/, ""));

const banner = new Banner(byId("banner"));
const status = byId("conn-status");
const micBtn = /** @type {HTMLButtonElement} */ (byId("mic-btn"));
const camBtn = /** @type {HTMLButtonElement} */ (byId("cam-btn"));
const screenBtn = /** @type {HTMLButtonElement} */ (byId("screen-btn"));
const leaveBtn = /** @type {HTMLButtonElement} */ (byId("leave-btn"));
const photoStrip = byId("photos");
const participantList = byId("participant-list");

const debug = params.has("debug") || /** @type {any} */ (window).__debug === true;
const client = new SfuClient({
  io,
  token: params.get("token") ?? undefined,
  log: debug ? (...args) => console.debug("[sfu]", ...args) : undefined,
});
/** @type {MediaStream | null} */
let localStream = null;
let selfName = "";

const tiles = new TileGrid(byId("tiles"), {
  onPhoto: async (video, label) => {
    if (!(await takePhoto(photoStrip, video, label))) banner.show("photo", `No picture from ${label} yet`, "warn");
  },
  onAutoplayBlocked: () => {
    banner.show("autoplay", "The browser blocked sound: click anywhere to hear the others", "warn");
    document.addEventListener(
      "click",
      () => {
        tiles.unmuteAll();
        banner.clear("autoplay");
      },
      { once: true },
    );
  },
});

const chat = new ChatView(
  {
    log: byId("chat-log"),
    form: /** @type {HTMLFormElement} */ (byId("chat-form")),
    input: /** @type {HTMLInputElement} */ (byId("chat-input")),
  },
  (text) => client.sendChat(text),
  (message) => banner.show("chat", `Message not sent: ${message}`, "warn"),
);
chat.setEnabled(false);

/** For tests and debugging: the client, and the current peer connection. */
Object.defineProperty(window, "sfuApp", {
  value: Object.freeze({
    client,
    get pc() {
      return client.pc;
    },
    get localStream() {
      return localStream;
    },
    /** mid -> participant of every incoming track (from the server's offers) */
    trackMap() {
      return client.trackInfos;
    },
  }),
});

// ---------------------------------------------------------------------- client events

/**
 * @template {keyof ClientEvents} K
 * @typedef {{
 *   state: {state: string, reason?: string},
 *   joined: {id: string, room: string, participants: import("./protocol.js").Participant[], chat: import("./protocol.js").ChatMessage[], rejoin: boolean},
 *   reset: {reason: string},
 *   "participant-joined": {participant: import("./protocol.js").Participant},
 *   "participant-updated": {participant: import("./protocol.js").Participant},
 *   "participant-left": {id: string, reason: string},
 *   chat: {message: import("./protocol.js").ChatMessage},
 *   tracks: {tracks: import("./protocol.js").RemoteTrack[]},
 *   connection: {state: RTCPeerConnectionState},
 *   error: {code: string, message: string, fatal: boolean},
 * }} ClientEvents
 */

/**
 * @template {keyof ClientEvents} K
 * @param {K} type
 * @param {(detail: ClientEvents[K]) => void} fn
 */
function on(type, fn) {
  client.addEventListener(type, (ev) => fn(/** @type {CustomEvent} */ (ev).detail));
}

const STATE_TEXT = /** @type {Record<string, string>} */ ({
  idle: "",
  connecting: "connecting…",
  joining: "joining…",
  joined: "connected",
  reconnecting: "reconnecting…",
  failed: "disconnected",
  closed: "left",
});

on("state", ({ state }) => {
  status.textContent = STATE_TEXT[state] ?? state;
  status.dataset.state = state;
  document.body.dataset.state = state;
  chat.setEnabled(state === "joined");
  if (state === "reconnecting") banner.show("conn", "Connection lost: reconnecting…", "warn");
  if (state === "joined") {
    banner.clear("conn");
    banner.clear("unreachable");
    banner.clear("server");
  }
});

on("joined", ({ id, participants, chat: history, rejoin }) => {
  chat.selfId = id;
  tiles.setLocal(localStream, id);
  tiles.clear();
  for (const p of participants) tiles.upsert(p);
  chat.addHistory(history);
  if (rejoin) chat.notice("Reconnected");
  refreshParticipants();
});

on("reset", () => {
  tiles.clear();
  refreshParticipants();
});

on("participant-joined", ({ participant }) => {
  tiles.upsert(participant);
  chat.notice(`${participant.name} joined`);
  refreshParticipants();
});

on("participant-updated", ({ participant }) => {
  tiles.upsert(participant);
  refreshParticipants();
});

on("participant-left", ({ id }) => {
  const name = byIdName(id);
  tiles.remove(id);
  if (name) chat.notice(`${name} left`);
  refreshParticipants();
});

on("chat", ({ message }) => chat.add(message, false));

on("tracks", ({ tracks }) => tiles.setTracks(tracks));

on("connection", ({ state }) => {
  if (state === "failed") banner.show("conn", "Media connection failed: reconnecting…", "warn");
});

on("error", ({ code, message, fatal }) => {
  if (code === "room_full") {
    banner.show("fatal", `Room "${room}" is full. Try again later or pick another room.`, "error", {
      label: "Other room",
      onClick: () => location.assign("/"),
    });
  } else if (code === "unauthorized") {
    banner.show("fatal", `Not allowed to join: ${message}`, "error");
  } else if (code === "unreachable") {
    banner.show("unreachable", "Cannot reach the server (gone or restarting): retrying…", "warn");
  } else if (code === "server_busy") {
    // fatal: the join was refused (too many rooms); otherwise the server is going away
    banner.show(fatal ? "fatal" : "server", fatal ? `Server busy: ${message}` : `Server: ${message}`, fatal ? "error" : "warn");
  } else if (fatal) {
    banner.show("fatal", `Cannot join: ${message} (${code})`, "error");
  } else {
    banner.show(`err-${code}`, `${message} (${code})`, "warn");
  }
  if (fatal) setControls(false);
});

/** @param {string} id */
function byIdName(id) {
  const tile = document.querySelector(`.tile[data-participant-id="${CSS.escape(id)}"] .name`);
  return tile?.textContent ?? "";
}

function refreshParticipants() {
  const muted = client.muted;
  const self = {
    name: selfName,
    audioMuted: muted.audio || !localStream?.getAudioTracks().length,
    videoMuted: muted.video || !localStream?.getVideoTracks().length,
  };
  renderParticipants(participantList, self, client.participants);
}

// ---------------------------------------------------------------------- controls

/** @param {boolean} enabled */
function setControls(enabled) {
  micBtn.disabled = !enabled || !localStream?.getAudioTracks().length;
  camBtn.disabled = !enabled || !localStream?.getVideoTracks().length;
  screenBtn.disabled = !enabled || !canShareScreen();
  leaveBtn.disabled = !enabled;
}

/**
 * @param {"audio" | "video"} kind
 * @param {HTMLButtonElement} button
 */
async function toggleMute(kind, button) {
  const muted = !client.muted[kind];
  try {
    await client.setMuted(kind, muted);
  } catch (err) {
    banner.show("mute", `Could not tell the others: ${/** @type {any} */ (err).message}`, "warn");
  }
  button.setAttribute("aria-pressed", String(muted));
  button.textContent = kind === "audio" ? (muted ? "Unmute mic" : "Mute mic") : muted ? "Start camera" : "Stop camera";
  tiles.setLocalMuted(client.muted);
  refreshParticipants();
}

micBtn.addEventListener("click", () => toggleMute("audio", micBtn));
camBtn.addEventListener("click", () => toggleMute("video", camBtn));

screenBtn.addEventListener("click", async () => {
  if (client.sharingScreen) {
    await client.stopScreenShare();
    return;
  }
  let track;
  try {
    track = await getScreenTrack();
  } catch (err) {
    if (/** @type {any} */ (err)?.name !== "NotAllowedError") {
      banner.show("screen", `Screen sharing failed: ${/** @type {any} */ (err)?.message ?? err}`, "warn");
    }
    return;
  }
  track.addEventListener("ended", () => showScreen(null));
  showScreen(track);
  try {
    await client.startScreenShare(track);
  } catch (err) {
    banner.show("screen", `Screen sharing failed: ${/** @type {any} */ (err)?.message ?? err}`, "warn");
    showScreen(null);
  }
});

/** @param {MediaStreamTrack | null} track */
function showScreen(track) {
  tiles.setLocalScreen(track);
  screenBtn.setAttribute("aria-pressed", String(Boolean(track)));
  screenBtn.textContent = track ? "Stop sharing" : "Share screen";
}

leaveBtn.addEventListener("click", async () => {
  setControls(false);
  await client.leave();
  for (const t of localStream?.getTracks() ?? []) t.stop();
  tiles.clear();
  banner.show("left", "You left the room.", "info", { label: "Rejoin", onClick: () => location.reload() });
});

window.addEventListener("pagehide", () => {
  if (client.state === "joined") client.leave();
});

// ---------------------------------------------------------------------- start

/** @param {string} name */
async function start(name) {
  selfName = name.trim();
  byId("self-name").textContent = selfName;
  const media = await getLocalMedia();
  localStream = media.stream;
  if (media.error) {
    const receiveOnly = !localStream;
    banner.show(
      "media",
      receiveOnly ? `${media.error}: you can watch and chat, the others will not see or hear you` : media.error,
      "warn",
    );
  }
  tiles.setLocal(localStream);
  for (const track of localStream?.getTracks() ?? []) client.publish(track);
  setControls(true);
  refreshParticipants();
  try {
    await client.join(room, selfName);
  } catch (err) {
    // fatal refusals are shown by the "error" handler
    console.warn("join failed", err);
  }
}

function main() {
  byId("room-name").textContent = room;
  document.title = `${room} · sfu-relay`;
  if (!ROOM_RE.test(room)) {
    banner.show("fatal", "Invalid room name: use 1-64 of A-Z, a-z, 0-9, '_' and '-'.", "error");
    setControls(false);
    return;
  }
  const name = (params.get("name") ?? "").trim();
  if (name) {
    start(name);
    return;
  }
  setControls(false);
  const form = /** @type {HTMLFormElement} */ (byId("name-form"));
  const input = /** @type {HTMLInputElement} */ (byId("name-input"));
  form.hidden = false;
  input.focus();
  let started = false;
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = input.value.trim();
    if (!value || started) return;
    started = true;
    form.hidden = true;
    const url = new URL(location.href);
    url.searchParams.set("name", value);
    history.replaceState(null, "", url);
    start(value);
  });
}

main();
