// The room page (UI only): the pre-join screen, then protocol.js's SfuClient wired to the
// tiles, the participant list, the chat, the photo strip, the device pickers and the
// controls. All signaling lives in protocol.js.

import { io } from "/vendor/socket.io-client/socket.io.esm.min.js";

import { MAX_CHAT, ROOM_RE, SfuClient } from "./protocol.js";
import { Banner } from "./ui/banner.js";
import { ChatView } from "./ui/chat.js";
import { DevicePickers, LocalMedia, MicMeter, describeMediaError } from "./ui/devices.js";
import { byId } from "./ui/dom.js";
import { canShareScreen, getScreenTrack } from "./ui/media.js";
import { displayNames, renderParticipants } from "./ui/participants.js";
import { takePhoto } from "./ui/photos.js";
import { QualityMonitor } from "./ui/quality.js";
import { TileGrid } from "./ui/tiles.js";
import { ViewerPause } from "./ui/viewer-pause.js";

/** @typedef {import("./ui/participants.js").Member} Member */

const params = new URLSearchParams(location.search);
const room = decodeURIComponent(location.pathname.replace(/^\/room\//, "").replace(/\/$/, ""));
/** Members gone quiet during a reconnect are forgotten this long after our rejoin. */
const STALE_GRACE_MS = 15000;

const banner = new Banner(byId("banner"));
const status = byId("conn-status");
const micBtn = /** @type {HTMLButtonElement} */ (byId("mic-btn"));
const camBtn = /** @type {HTMLButtonElement} */ (byId("cam-btn"));
const screenBtn = /** @type {HTMLButtonElement} */ (byId("screen-btn"));
const devicesBtn = /** @type {HTMLButtonElement} */ (byId("devices-btn"));
const leaveBtn = /** @type {HTMLButtonElement} */ (byId("leave-btn"));
const recBtn = /** @type {HTMLButtonElement} */ (byId("rec-btn"));
const recIndicator = byId("rec-indicator");
const peopleBtn = /** @type {HTMLButtonElement} */ (byId("people-btn"));
const chatBtn = /** @type {HTMLButtonElement} */ (byId("chat-btn"));
const photoStrip = byId("photos");
const participantList = byId("participant-list");
const preview = /** @type {HTMLVideoElement} */ (byId("preview-video"));
const devicesDialog = /** @type {HTMLDialogElement} */ (byId("devices-dialog"));

const debug = params.has("debug") || /** @type {any} */ (window).__debug === true;
const client = new SfuClient({
  io,
  token: params.get("token") ?? undefined,
  log: debug ? (...args) => console.debug("[sfu]", ...args) : undefined,
});
const media = new LocalMedia();
const meter = new MicMeter(byId("mic-meter"));
let selfName = "";
/** @type {string | null} */
let selfId = null;
let started = false;
let hadCamera = false;
/** The server said it is going away: "left" events are not people leaving. */
let goingAway = false;
/** @type {Map<string, Member>} the other participants as the page shows them */
const members = new Map();
/** @type {any} */
let staleTimer = null;

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

// remote videos this page does not show (off-stage tile, background tab) are paused
const viewerPause = new ViewerPause({
  send: (participantId, source, paused) =>
    client.setVideoPaused(participantId, /** @type {"camera" | "screen"} */ (source), paused),
  elementFor: (participantId, source) => tiles.videoElement(participantId, source),
  log: debug ? (...args) => console.debug("[sfu]", ...args) : undefined,
});
document.addEventListener("visibilitychange", () => viewerPause.setPageHidden(document.hidden));
viewerPause.setPageHidden(document.hidden);

const chat = new ChatView(
  {
    log: byId("chat-log"),
    form: /** @type {HTMLFormElement} */ (byId("chat-form")),
    input: /** @type {HTMLInputElement} */ (byId("chat-input")),
    hint: byId("chat-hint"),
  },
  (text) => client.sendChat(text),
  (message) => banner.show("chat", `Message not sent: ${message}`, "warn"),
  MAX_CHAT,
);
chat.setEnabled(false);

const quality = new QualityMonitor({
  pc: () => (client.state === "joined" ? client.pc : null),
  trackInfos: () => client.trackInfos,
  members: () => [...members.values()].filter((m) => !m.stale),
  selfId: () => selfId,
  selfMuted: () => ({ audio: client.muted.audio || !media.mic, video: client.muted.video || !media.camera }),
  serverStats: () => client.serverStats(),
  show: (id, q, details) => tiles.setQuality(id === selfId ? "self" : id, q, details),
});

const pickers = new DevicePickers(
  {
    camera: /** @type {HTMLSelectElement} */ (byId("camera-select")),
    mic: /** @type {HTMLSelectElement} */ (byId("mic-select")),
    speaker: /** @type {HTMLSelectElement} */ (byId("speaker-select")),
    speakerRow: byId("speaker-row"),
  },
  media,
  (kind, deviceId) => switchDevice(kind, deviceId),
);

/** For tests and debugging: the client, the current peer connection, the tiles. */
Object.defineProperty(window, "sfuApp", {
  value: Object.freeze({
    client,
    media,
    tiles,
    get pc() {
      return client.pc;
    },
    viewerPause,
    get localStream() {
      return media.camera || media.mic ? media.stream() : null;
    },
    /** mid -> participant of every incoming track (from the server's offers) */
    trackMap() {
      return client.trackInfos;
    },
  }),
});

// ---------------------------------------------------------------------- members

function labels() {
  return displayNames([{ id: selfId ?? "self", name: selfName }, ...members.values()]);
}

/** Redraw names (told apart), tiles' labels and the participant list. */
function refreshMembers() {
  const l = labels();
  for (const m of members.values()) {
    tiles.upsert(m, l.get(m.id) ?? m.name);
    tiles.setStale(m.id, Boolean(m.stale));
  }
  tiles.setLocalName(l.get(selfId ?? "self") ?? selfName);
  viewerPause.refresh();
  const muted = client.muted;
  const self = started
    ? {
        id: selfId ?? "self",
        name: selfName,
        audioMuted: muted.audio || !media.mic,
        videoMuted: muted.video || !media.camera,
      }
    : null;
  renderParticipants(participantList, self, [...members.values()], l);
}

/**
 * A participant (from the join ack or `participant joined`): a member we greyed during a
 * reconnect with the same name is the same person back under a new id.
 * @param {import("./protocol.js").Participant} p
 * @returns {boolean} whether it was someone coming back
 */
function adopt(p) {
  if (members.has(p.id)) {
    members.set(p.id, { ...p });
    return false;
  }
  const back = [...members.values()].find((m) => m.stale && m.name === p.name);
  if (back) {
    members.delete(back.id);
    tiles.rekey(back.id, p.id);
  }
  members.set(p.id, { ...p });
  return Boolean(back);
}

function markAllStale() {
  for (const m of members.values()) m.stale = true;
  refreshMembers();
}

/** After our rejoin: whoever has not come back within the grace period is gone. */
function forgetStaleLater() {
  clearTimeout(staleTimer);
  staleTimer = setTimeout(() => {
    for (const m of [...members.values()]) {
      if (!m.stale) continue;
      members.delete(m.id);
      tiles.remove(m.id);
    }
    refreshMembers();
  }, STALE_GRACE_MS);
}

// ---------------------------------------------------------------------- client events

/**
 * @template {keyof ClientEvents} K
 * @typedef {{
 *   state: {state: string, reason?: string},
 *   joined: {id: string, room: string, participants: import("./protocol.js").Participant[], chat: import("./protocol.js").ChatMessage[], rejoin: boolean, recording: boolean, canRecord: boolean, moved: boolean},
 *   "active-speaker": {participantId: string | null, levels: Record<string, number>},
 *   "video-state": {participantId: string, source: string, state: string, layer: number | null},
 *   recording: {active: boolean},
 *   moving: {url: string},
 *   moved: {url: string, node: string | null, ms: number},
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
  if (state === "reconnecting" && !goingAway) banner.show("conn", "Connection lost: reconnecting…", "warn");
  if (state === "joined") banner.clear("conn");
});

on("joined", ({ id, participants, chat: history, rejoin, moved }) => {
  selfId = id;
  goingAway = false;
  chat.selfId = id;
  tiles.setLocal(media.camera || media.mic ? media.stream() : null, id);
  // a planned move (cluster): everyone has a new id on the new node; members are matched
  // by name as they arrive (adopt), the others are forgotten after the grace period
  if (moved) for (const m of members.values()) m.stale = true;
  for (const p of participants) adopt(p);
  chat.addHistory(history); // the new node's history: lines already shown are skipped
  if (rejoin && !moved) chat.notice("Reconnected");
  if (rejoin) forgetStaleLater();
  refreshMembers();
  quality.start();
});

// cluster: our node hands the room to another one (planned drain); nothing to do but say so
on("moving", () => {
  status.textContent = "moving…";
  status.dataset.state = "moving";
});

on("moved", ({ url, ms }) => {
  status.textContent = STATE_TEXT[client.state] ?? client.state;
  status.dataset.state = client.state;
  document.body.dataset.node = url;
  if (debug) console.debug("[sfu] moved to", url, "in", ms, "ms");
});

on("reset", () => {
  tiles.setTracks([]);
  viewerPause.clear();
  markAllStale();
});

on("participant-joined", ({ participant }) => {
  const back = adopt(participant);
  refreshMembers();
  if (!back) chat.notice(`${labels().get(participant.id) ?? participant.name} joined`);
});

on("participant-updated", ({ participant }) => {
  adopt(participant);
  refreshMembers();
});

on("participant-left", ({ id }) => {
  const m = members.get(id);
  if (!m) return;
  if (goingAway) {
    // the server is shutting down and disconnects everyone: nobody left on purpose
    m.stale = true;
    refreshMembers();
    return;
  }
  const name = labels().get(id) ?? m.name;
  members.delete(id);
  tiles.remove(id);
  chat.notice(`${name} left`);
  refreshMembers();
});

on("chat", ({ message }) => chat.add(message, false));

on("active-speaker", ({ participantId, levels }) => {
  tiles.setSpeaker(participantId);
  tiles.setLevels(levels);
});

on("recording", ({ active }) => {
  recIndicator.hidden = !active;
  document.body.dataset.recording = String(active);
  recBtn.hidden = !client.canRecord;
  recBtn.setAttribute("aria-pressed", String(active));
  recBtn.textContent = active ? "Stop recording" : "Start recording";
});

let recBusy = false;
recBtn.addEventListener("click", async () => {
  if (recBusy) return;
  recBusy = true;
  try {
    await client.setRecording(!client.recording);
  } catch (err) {
    banner.show("recording", `Recording: ${/** @type {any} */ (err).message}`, "warn");
  } finally {
    recBusy = false;
  }
});

on("tracks", ({ tracks }) => {
  tiles.setTracks(tracks);
  viewerPause.setRows(tracks);
});

on("video-state", ({ participantId, source, state }) => tiles.setVideoState(participantId, source, state));

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
    banner.show("conn", "Cannot reach the server (gone or restarting): retrying…", "warn");
  } else if (code === "server_busy" && !fatal) {
    // the server is going away (restart or shutdown): others' "left" events are not real
    goingAway = true;
    banner.show("conn", "The server is restarting: reconnecting…", "warn");
  } else if (code === "server_busy") {
    banner.show("fatal", `Server busy: ${message}`, "error");
  } else if (fatal) {
    banner.show("fatal", `Cannot join: ${message} (${code})`, "error");
  } else {
    banner.show(`err-${code}`, `${message} (${code})`, "warn");
  }
  if (fatal) setControls(false);
});

// ---------------------------------------------------------------------- controls

/** @param {boolean} enabled */
function setControls(enabled) {
  micBtn.disabled = !enabled || !media.mic;
  camBtn.disabled = !enabled || !hadCamera;
  screenBtn.disabled = !enabled || !canShareScreen();
  devicesBtn.disabled = !enabled;
  leaveBtn.disabled = !enabled;
}

function updateMediaButtons() {
  const muted = client.muted;
  micBtn.setAttribute("aria-pressed", String(muted.audio));
  micBtn.textContent = muted.audio ? "Unmute mic" : "Mute mic";
  const camOff = muted.video || !media.camera;
  camBtn.setAttribute("aria-pressed", String(camOff && hadCamera));
  camBtn.textContent = camOff ? "Start camera" : "Stop camera";
  tiles.setLocalMuted({ audio: muted.audio || !media.mic, video: camOff });
}

async function toggleMic() {
  const muted = !client.muted.audio;
  try {
    await client.setMuted("audio", muted);
  } catch (err) {
    banner.show("mute", `Could not tell the others: ${/** @type {any} */ (err).message}`, "warn");
  }
  updateMediaButtons();
  refreshMembers();
}

let camBusy = false;

/** "Stop camera" stops the track for real (light off); "Start camera" opens it again. */
async function toggleCamera() {
  if (camBusy) return;
  camBusy = true;
  try {
    if (!client.muted.video && media.camera) {
      try {
        await client.setMuted("video", true);
      } catch (err) {
        banner.show("mute", `Could not tell the others: ${/** @type {any} */ (err).message}`, "warn");
      }
      await client.replaceTrack("camera", null);
      media.stopCamera();
    } else {
      let track;
      try {
        track = await media.openCamera();
      } catch (err) {
        banner.show("camera", `Could not start the camera: ${describeMediaError(err)}`, "warn");
        return;
      }
      await client.replaceTrack("camera", track);
      try {
        await client.setMuted("video", false);
      } catch (err) {
        banner.show("mute", `Could not tell the others: ${/** @type {any} */ (err).message}`, "warn");
      }
    }
    tiles.setLocal(media.camera || media.mic ? media.stream() : null);
    updateMediaButtons();
    refreshMembers();
  } finally {
    camBusy = false;
  }
}

micBtn.addEventListener("click", () => toggleMic());
camBtn.addEventListener("click", () => toggleCamera());

let screenBusy = false;

screenBtn.addEventListener("click", async () => {
  if (screenBusy) return;
  screenBusy = true;
  try {
    if (client.sharingScreen) {
      await client.stopScreenShare();
      showScreen(null);
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
    // the browser's own "Stop sharing" ends the track: protocol.js stops publishing it
    track.addEventListener("ended", () => showScreen(null));
    showScreen(track);
    try {
      await client.startScreenShare(track);
    } catch (err) {
      banner.show("screen", `Screen sharing failed: ${/** @type {any} */ (err)?.message ?? err}`, "warn");
      await client.stopScreenShare().catch(() => {});
      showScreen(null);
    }
  } finally {
    screenBusy = false;
  }
});

/** @param {MediaStreamTrack | null} track */
function showScreen(track) {
  tiles.setLocalScreen(track);
  screenBtn.setAttribute("aria-pressed", String(Boolean(track)));
  screenBtn.textContent = track ? "Stop sharing" : "Share screen";
}

devicesBtn.addEventListener("click", () => {
  byId("device-dialog-home").append(byId("device-fields"));
  pickers.refresh();
  meter.watch(media.mic);
  devicesDialog.showModal();
});
devicesDialog.addEventListener("close", () => meter.stop());

/**
 * A picker changed: switch the device on the existing sender (no rejoin).
 * @param {"camera" | "mic" | "speaker"} kind
 * @param {string} deviceId
 */
async function switchDevice(kind, deviceId) {
  try {
    if (kind === "speaker") {
      media.speakerId = deviceId;
      tiles.setSinkId(deviceId);
      const p = /** @type {any} */ (preview);
      if (typeof p.setSinkId === "function") p.setSinkId(deviceId).catch(() => {});
      return;
    }
    if (kind === "camera") {
      media.cameraId = deviceId;
      if (!media.camera) return; // off: used at the next "Start camera"
      await media.openCamera(deviceId, async (track) => {
        if (started) await client.replaceTrack("camera", track);
      });
    } else {
      media.micId = deviceId;
      const track = await media.openMic(deviceId, async (t) => {
        if (started) await client.replaceTrack("microphone", t);
      });
      meter.watch(track);
    }
    showLocalMedia();
  } catch (err) {
    banner.show("device", `Could not switch to that device: ${describeMediaError(err)}`, "warn");
    pickers.refresh();
  }
}

function showLocalMedia() {
  const stream = media.camera || media.mic ? media.stream() : null;
  if (started) tiles.setLocal(stream);
  preview.srcObject = media.camera ? new MediaStream([media.camera]) : null;
  byId("preview-off").hidden = Boolean(media.camera);
}

// ---------------------------------------------------------------------- side panel

const narrow = matchMedia("(max-width: 800px)");

/** @param {"all" | "none" | "chat" | "people"} side */
function setSide(side) {
  document.body.dataset.side = side;
  const open = (/** @type {string} */ which) => side === "all" || side === which;
  peopleBtn.setAttribute("aria-expanded", String(open("people")));
  chatBtn.setAttribute("aria-expanded", String(open("chat")));
  if (open("chat")) byId("chat-unread").hidden = true;
  requestAnimationFrame(() => tiles.layout());
}

/** @param {"chat" | "people"} which */
function toggleSide(which) {
  const side = document.body.dataset.side;
  if (narrow.matches) {
    setSide(side === which ? "none" : which);
  } else {
    setSide(side === "none" ? "all" : "none");
  }
  if (document.body.dataset.side !== "none" && which === "chat") {
    /** @type {HTMLInputElement} */ (byId("chat-input")).focus({ preventScroll: true });
  }
}

peopleBtn.addEventListener("click", () => toggleSide("people"));
chatBtn.addEventListener("click", () => toggleSide("chat"));
byId("side-close").addEventListener("click", () => setSide("none"));
narrow.addEventListener("change", () => setSide(narrow.matches ? "none" : "all"));
setSide(narrow.matches ? "none" : "all");
chat.onIncoming = () => {
  const side = document.body.dataset.side;
  if (side === "all" || side === "chat") return;
  const badge = byId("chat-unread");
  badge.textContent = String(Number(badge.textContent || 0) + 1);
  badge.hidden = false;
};

// ---------------------------------------------------------------------- invite

byId("invite-btn").addEventListener("click", async () => {
  const link = `${location.origin}/room/${encodeURIComponent(room)}`;
  const say = byId("invite-status");
  try {
    await navigator.clipboard.writeText(link);
    say.textContent = "Invite link copied";
  } catch {
    // no clipboard permission (or http): select the link for the user to copy
    const field = document.createElement("input");
    field.value = link;
    field.setAttribute("aria-label", "invite link");
    field.readOnly = true;
    field.className = "invite-field";
    say.replaceChildren("Copy this link: ", field);
    field.select();
  }
  setTimeout(() => {
    if (say.textContent === "Invite link copied") say.textContent = "";
  }, 4000);
});

// ---------------------------------------------------------------------- leave

leaveBtn.addEventListener("click", async () => {
  setControls(false);
  quality.stop();
  clearTimeout(staleTimer);
  await client.leave();
  media.stopAll();
  meter.stop();
  started = false;
  members.clear();
  viewerPause.clear();
  tiles.reset();
  photoStrip.replaceChildren();
  photoStrip.hidden = true;
  refreshMembers();
  banner.clearAll();
  document.body.dataset.view = "left";
  byId("room-view").hidden = true;
  byId("left-view").hidden = false;
  byId("rejoin-btn").focus();
});

byId("rejoin-btn").addEventListener("click", () => location.reload());

window.addEventListener("pagehide", () => {
  if (client.state === "joined") client.leave();
});

// ---------------------------------------------------------------------- start

/**
 * Join with what the user chose (the pre-join screen), or straight away.
 * @param {string} name
 * @param {{camOff?: boolean, micOff?: boolean}} [choice]
 */
async function start(name, choice = {}) {
  selfName = name.trim();
  byId("self-name").textContent = selfName;
  document.body.dataset.view = "room";
  byId("prejoin").hidden = true;
  meter.stop();
  if (!media.camera && !media.mic && !hadCamera) await acquire();
  if (media.error) {
    const receiveOnly = !media.camera && !media.mic && !hadCamera;
    banner.show(
      "media",
      receiveOnly ? `${media.error}: you can watch and chat, the others will not see or hear you` : media.error,
      "warn",
    );
  }
  if (choice.camOff && media.camera) media.stopCamera();
  if (hadCamera) client.publish(media.camera, "camera");
  if (media.mic) client.publish(media.mic, "microphone");
  if (choice.camOff && hadCamera) await client.setMuted("video", true);
  if (choice.micOff && media.mic) await client.setMuted("audio", true);
  started = true;
  tiles.setLocal(media.camera || media.mic ? media.stream() : null);
  updateMediaButtons();
  setControls(true);
  refreshMembers();
  try {
    await client.join(room, selfName);
  } catch (err) {
    // fatal refusals are shown by the "error" handler
    console.warn("join failed", err);
  }
}

async function acquire() {
  await media.start();
  hadCamera = hadCamera || Boolean(media.camera);
}

/** The pre-join screen: preview, level meter, device pickers, name, camera/mic toggles. */
async function prejoin() {
  document.body.dataset.view = "prejoin";
  const section = byId("prejoin");
  section.hidden = false;
  const form = /** @type {HTMLFormElement} */ (byId("name-form"));
  const input = /** @type {HTMLInputElement} */ (byId("name-input"));
  const camToggle = /** @type {HTMLButtonElement} */ (byId("pre-cam-btn"));
  const micToggle = /** @type {HTMLButtonElement} */ (byId("pre-mic-btn"));
  try {
    input.value = localStorage.getItem("sfu-name") ?? "";
  } catch {
    /* private mode */
  }
  input.focus();
  status.textContent = "not joined yet";
  let camOff = false;
  let micOff = false;
  await acquire();
  if (media.error) banner.show("media", media.error, "warn");
  showLocalMedia();
  await pickers.refresh();
  meter.watch(media.mic);
  camToggle.disabled = !hadCamera;
  micToggle.disabled = !media.mic;
  camToggle.addEventListener("click", async () => {
    camOff = !camOff;
    if (camOff) media.stopCamera();
    else {
      try {
        await media.openCamera();
      } catch (err) {
        camOff = true;
        banner.show("camera", `Could not start the camera: ${describeMediaError(err)}`, "warn");
      }
    }
    camToggle.setAttribute("aria-pressed", String(camOff));
    camToggle.textContent = camOff ? "Camera off" : "Camera on";
    showLocalMedia();
  });
  micToggle.addEventListener("click", () => {
    micOff = !micOff;
    if (media.mic) media.mic.enabled = !micOff; // the meter shows silence too
    micToggle.setAttribute("aria-pressed", String(micOff));
    micToggle.textContent = micOff ? "Mic off" : "Mic on";
  });
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = input.value.trim();
    if (!value || started) return;
    try {
      localStorage.setItem("sfu-name", value);
    } catch {
      /* private mode */
    }
    const url = new URL(location.href);
    url.searchParams.set("name", value);
    history.replaceState(null, "", url);
    banner.clear("media");
    start(value, { camOff, micOff });
  });
}

function main() {
  byId("room-name").textContent = room;
  byId("device-home").append(byId("device-fields"));
  document.title = `${room} · sfu-relay`;
  if (!ROOM_RE.test(room)) {
    banner.show("fatal", "Invalid room name: use 1-64 of A-Z, a-z, 0-9, '_' and '-'.", "error");
    setControls(false);
    return;
  }
  setControls(false);
  const name = (params.get("name") ?? "").trim();
  if (name) start(name);
  else prejoin();
}

main();
