// The signaling + media client of PROTOCOL.md: one Socket.IO connection and ONE
// RTCPeerConnection to the server. No DOM access here: room.js (the UI) listens to the
// events this module dispatches. Importable in node for unit tests: inject the `io`,
// `RTCPeerConnection` and `RTCRtpSender` factories (they default to browser globals).
//
// `SfuClient` holds what lasts across rejoins (socket, room, name, local tracks, mute
// state); each join attempt gets a `PeerSession` (peer connection, negotiation queue,
// held candidates, glare state, remote track labels, senders) that is thrown away on
// leave, drop or rejoin, as Galene's `Stream` is per stream.
//
// Cluster (docs/protocol.md "Cluster", browser client): a `moved` join refusal is followed
// to the owner's URL, a planned `moved` event moves make-before-break to the new node, and
// after our node died the client looks for another one (`_roam`).

/**
 * @typedef {{id: string, name: string, audioMuted: boolean, videoMuted: boolean}} Participant
 * @typedef {{id: string, from: string, name: string, text: string, ts: number}} ChatMessage
 * @typedef {"camera" | "microphone" | "screen"} Source
 * @typedef {{mid: string, participantId: string, kind: "audio" | "video", source: Source}} TrackInfo
 * @typedef {TrackInfo & {track: MediaStreamTrack}} RemoteTrack
 * @typedef {{track: MediaStreamTrack | null, kind: "audio" | "video", source: Source}} LocalTrack
 *   (track null: the device is stopped, the sender sends nothing; the sender belongs to the PeerSession)
 * @typedef {"idle" | "connecting" | "joining" | "joined" | "reconnecting" | "failed" | "closed"} ClientState
 *
 * @typedef {object} SocketLike  The part of a socket.io-client `Socket` this module uses.
 * @property {boolean} connected
 * @property {boolean} [active]
 * @property {(event: string, handler: (...args: any[]) => void) => unknown} on
 * @property {(event: string, ...args: any[]) => unknown} emit
 * @property {() => unknown} connect
 * @property {() => unknown} disconnect
 *
 * @typedef {object} ClientOptions
 * @property {string} [url]  Socket.IO server URL; default: the page's origin.
 * @property {(url: string | undefined, opts: object) => SocketLike} [io]  socket.io-client `io`.
 * @property {(config: RTCConfiguration) => RTCPeerConnection} [createPeerConnection]
 * @property {{getCapabilities(kind: string): RTCRtpCapabilities | null}} [RTCRtpSender]
 * @property {{getCapabilities(kind: string): RTCRtpCapabilities | null}} [RTCRtpReceiver]
 * @property {string} [token]  JWT sent as the Socket.IO `auth` payload.
 * @property {number} [ackTimeoutMs]  How long to wait for any ack (default 10 s).
 * @property {number[]} [retryDelaysMs]  Back-off between rejoin attempts.
 * @property {number} [reofferDelayMs]  Fallback re-offer after glare when no offer came.
 * @property {(fn: () => void, ms: number) => any} [setTimeout]
 * @property {(handle: any) => void} [clearTimeout]
 * @property {(...args: any[]) => void} [log]  Debug log (default: silent).
 * @property {number} [connectTimeoutMs]  Cluster: how long a connection to a node may take (3 s).
 * @property {number} [roamForMs]  Cluster: how long to look for a node after ours died (30 s).
 * @property {() => number} [now]  Clock in ms (default Date.now).
 * @property {boolean} [temporalLayers]  Publish the camera with VP8 temporal layers (L1T3)
 *   where the browser supports it (default true).
 */

/** Cluster: `moved` refusals a join follows in a row before it counts as a failure. */
export const MAX_MOVES = 3;
/** Cluster: back-off between rounds over the known nodes after ours died. */
export const ROAM_DELAY_MS = 100;
export const ROAM_DELAY_MAX_MS = 1000;

export const ROOM_RE = /^[A-Za-z0-9_-]{1,64}$/;
export const MAX_NAME = 64;
export const MAX_CHAT = 2000;

/** Join refusals that a retry cannot fix: the client stops and reports them. */
export const FATAL_JOIN_CODES = new Set(["room_full", "unauthorized", "bad_request", "server_busy"]);

/** The server's forwarding states of a remote video (`video state`). */
export const VIDEO_STATES = new Set(["active", "paused-link", "paused-viewer"]);

/** Codecs every room uses (the SFU never transcodes): VP8 (+RTX) and Opus. */
export const PREFERRED_CODECS = {
  video: ["video/vp8", "video/rtx"],
  audio: ["audio/opus"],
};

/** An error with PROTOCOL.md's stable `code` (or a client-side one: timeout, disconnected). */
export class ProtocolError extends Error {
  /**
   * @param {string} code
   * @param {string} message
   */
  constructor(code, message) {
    super(message || code);
    this.name = "ProtocolError";
    this.code = code;
    /** @type {string | undefined} cluster `moved`: the owner node's base URL */
    this.url = undefined;
  }
}

/**
 * Check a room name and a display name as the server will; throw `bad_request`.
 * @param {string} room
 * @param {string} name
 * @returns {{room: string, name: string}}
 */
export function validateJoin(room, name) {
  if (typeof room !== "string" || !ROOM_RE.test(room)) {
    throw new ProtocolError("bad_request", "room must be 1-64 characters of A-Z, a-z, 0-9, '_' or '-'");
  }
  const trimmed = typeof name === "string" ? name.trim() : "";
  if (trimmed.length < 1 || trimmed.length > MAX_NAME) {
    throw new ProtocolError("bad_request", `name must be 1-${MAX_NAME} characters`);
  }
  return { room, name: trimmed };
}

/**
 * Filter capabilities down to the room's codecs, in our preferred order.
 * @param {RTCRtpCodec[]} codecs
 * @param {string} kind
 * @returns {RTCRtpCodec[]}
 */
export function pickCodecs(codecs, kind) {
  const wanted = PREFERRED_CODECS[/** @type {"audio" | "video"} */ (kind)] ?? [];
  const out = [];
  for (const mime of wanted) {
    for (const c of codecs) if (c.mimeType.toLowerCase() === mime) out.push(c);
  }
  return out;
}

/** The camera's temporal layers (issue #12): the server forwards 30 / 15 / 7.5 fps. */
export const CAMERA_SCALABILITY_MODE = "L1T3";

/**
 * The `sendEncodings` that ask for VP8 temporal layers, or null when the sender's
 * capabilities say VP8 cannot do L1T3 (browsers that list `scalabilityModes`). Browsers
 * that list none get the encodings too; one that refuses them gets a plain transceiver.
 * @param {{getCapabilities(kind: string): RTCRtpCapabilities | null} | undefined} senderCaps
 * @returns {RTCRtpEncodingParameters[] | null}
 */
export function cameraEncodings(senderCaps) {
  let caps = null;
  try {
    caps = senderCaps?.getCapabilities?.("video") ?? null;
  } catch {
    caps = null;
  }
  const vp8 = (caps?.codecs ?? []).filter((c) => c.mimeType.toLowerCase() === "video/vp8");
  /** @type {string[][]} */
  const modes = vp8.map((c) => /** @type {any} */ (c).scalabilityModes).filter(Array.isArray);
  if (modes.length > 0 && !modes.some((m) => m.includes(CAMERA_SCALABILITY_MODE))) return null;
  return [/** @type {any} */ ({ scalabilityMode: CAMERA_SCALABILITY_MODE })];
}

/**
 * What a `PeerSession` needs from its owner (the `SfuClient`).
 * @typedef {object} SessionHooks
 * @property {(config: RTCConfiguration) => RTCPeerConnection} createPeerConnection
 * @property {{getCapabilities(kind: string): RTCRtpCapabilities | null} | undefined} [senderCaps]
 * @property {{getCapabilities(kind: string): RTCRtpCapabilities | null} | undefined} [receiverCaps]
 * @property {(event: string, data: object, timeoutMs?: number) => Promise<any>} request  ack'd emit
 * @property {(type: string, detail: object) => void} emit  dispatch a client event
 * @property {(reason: string) => void} rejoin  throw this session away and join again
 * @property {() => LocalTrack[]} localTracks  what we publish, in publish order
 * @property {number} stepTimeoutMs  a negotiation step that takes longer fails (and rejoins)
 * @property {number} reofferDelayMs  fallback re-offer after glare when no offer came
 * @property {(fn: () => void, ms: number) => any} setTimeout
 * @property {(handle: any) => void} clearTimeout
 * @property {(...args: any[]) => void} log
 * @property {boolean} [temporalLayers]  camera: ask for L1T3 (see `cameraEncodings`)
 */

/**
 * ONE join of the room: the RTCPeerConnection and everything scoped to it (negotiation
 * queue, held candidates, glare state, mid -> participant rows, our senders). Created for
 * every join attempt and thrown away on leave, drop or rejoin; a closed session ignores
 * its own late callbacks (`closed`), so nothing of an old connection leaks into the next.
 */
export class PeerSession {
  /** @param {SessionHooks} hooks */
  constructor(hooks) {
    this.hooks = hooks;
    /** @type {SocketLike | null} the connection to the node this session joined */
    this.socket = null;
    /** @type {RTCPeerConnection | null} created by `open` once the join is acknowledged */
    this.pc = null;
    /** true once retired or closed: every callback of this session is stale */
    this.closed = false;
    /** @type {Promise<unknown>} negotiations run one at a time, in order */
    this.queue = Promise.resolve();
    /** @type {(RTCIceCandidateInit | null)[]} local candidates held until our description is sent */
    this.candidateBuffer = [];
    this.descriptionSent = false;
    this.offerWanted = false;
    this.glareRetries = 0;
    /** @type {any} */
    this.reofferTimer = null;
    /** @type {Map<string, TrackInfo>} the rows of the server's last offer */
    this.trackInfos = new Map();
    /** @type {RemoteTrack[]} */
    this.remoteTracks = [];
    /** @type {Map<LocalTrack, RTCRtpTransceiver>} our send-only transceivers */
    this.senders = new Map();
    /** @type {Set<RTCRtpTransceiver>} inactive transceivers kept for reuse (stopped screen share) */
    this.spare = new Set();
  }

  /**
   * Create the peer connection and attach every local track.
   * @param {RTCIceServer[]} iceServers
   * @returns {RTCPeerConnection}
   */
  open(iceServers) {
    const pc = this.hooks.createPeerConnection({ iceServers, bundlePolicy: "max-bundle" });
    this.pc = pc;
    pc.addEventListener("icecandidate", (/** @type {any} */ ev) => {
      if (!this.closed) this.onLocalCandidate(ev.candidate ?? null);
    });
    pc.addEventListener("connectionstatechange", () => {
      if (this.closed) return;
      this.hooks.emit("connection", { state: pc.connectionState });
      if (pc.connectionState === "failed") this.hooks.rejoin("ice_failed");
    });
    for (const local of this.hooks.localTracks()) this.attach(local);
    return pc;
  }

  /** Stop acting on this session's callbacks (the peer connection stays open for now). */
  retire() {
    this.closed = true;
    if (this.reofferTimer) this.hooks.clearTimeout(this.reofferTimer);
    this.reofferTimer = null;
  }

  /**
   * Retire and close the peer connection.
   * @returns {boolean} whether remote tracks were announced (the owner announces none now)
   */
  close() {
    this.retire();
    const hadTracks = this.remoteTracks.length > 0;
    this.remoteTracks = [];
    this.trackInfos = new Map();
    this.candidateBuffer = [];
    this.senders.clear();
    const pc = this.pc;
    this.pc = null;
    if (pc) {
      try {
        pc.close();
      } catch (err) {
        this.hooks.log("pc.close", err);
      }
    }
    return hadTracks;
  }

  /**
   * Send a local track: a new send-only transceiver, or (screen) a spare one.
   * @param {LocalTrack} local
   */
  attach(local) {
    const pc = this.pc;
    if (!pc) return;
    const reuse =
      local.source === "screen" ? [...this.spare].find((t) => t.receiver?.track?.kind === local.kind) : undefined;
    if (reuse) {
      this.spare.delete(reuse);
      reuse.direction = "sendonly";
      reuse.sender.replaceTrack(local.track).catch((e) => this.hooks.log("replaceTrack", e));
      this.senders.set(local, reuse);
      return;
    }
    const what = local.track ?? local.kind;
    const encodings =
      local.kind === "video" && local.source === "camera" && this.hooks.temporalLayers !== false
        ? cameraEncodings(this.hooks.senderCaps)
        : null;
    let t = null;
    if (encodings) {
      try {
        t = pc.addTransceiver(what, { direction: "sendonly", sendEncodings: encodings });
      } catch (err) {
        this.hooks.log("temporal layers refused: a plain camera transceiver", err);
      }
    }
    t = t ?? pc.addTransceiver(what, { direction: "sendonly" });
    this.preferCodecs(t, local.kind);
    this.senders.set(local, t);
  }

  /**
   * Stop sending a local track: its transceiver goes inactive and is kept for reuse.
   * @param {LocalTrack} local
   * @returns {Promise<boolean>} whether it was sent (a renegotiation is due)
   */
  async detach(local) {
    const t = this.senders.get(local);
    if (!t || !this.pc) return false;
    this.senders.delete(local);
    try {
      await t.sender.replaceTrack(null);
    } catch (err) {
      this.hooks.log("replaceTrack(null) failed", err);
    }
    t.direction = "inactive";
    this.spare.add(t);
    return true;
  }

  /**
   * Send `local.track` (changed device) on the existing sender: no renegotiation.
   * @param {LocalTrack} local
   * @returns {Promise<boolean>} whether a sender carried it
   */
  async replaceTrack(local) {
    const t = this.senders.get(local);
    if (!t) return false;
    await t.sender.replaceTrack(local.track);
    return true;
  }

  /**
   * Pin VP8 (+RTX) / Opus with setCodecPreferences (sender capabilities for a send-only
   * transceiver; older browsers want receiver capabilities).
   * @param {RTCRtpTransceiver} t
   * @param {string} kind
   */
  preferCodecs(t, kind) {
    if (typeof t.setCodecPreferences !== "function") return;
    for (const source of [this.hooks.senderCaps, this.hooks.receiverCaps]) {
      const caps = source?.getCapabilities?.(kind);
      const codecs = pickCodecs(caps?.codecs ?? [], kind);
      if (codecs.length === 0) continue;
      try {
        t.setCodecPreferences(codecs);
        return;
      } catch (err) {
        this.hooks.log("setCodecPreferences refused", err);
      }
    }
  }

  // ------------------------------------------------------------------ candidates

  /** @param {RTCIceCandidate | null} candidate */
  onLocalCandidate(candidate) {
    /** @type {RTCIceCandidateInit | null} */
    const init = candidate
      ? { candidate: candidate.candidate, sdpMid: candidate.sdpMid ?? null, sdpMLineIndex: candidate.sdpMLineIndex ?? null }
      : null;
    if (!this.descriptionSent) {
      this.candidateBuffer.push(init);
      return;
    }
    this.sendCandidate(init);
  }

  /** @param {RTCIceCandidateInit | null} init */
  sendCandidate(init) {
    this.hooks.request("ice candidates", { candidate: init }).catch((err) => this.hooks.log("candidate refused", err));
  }

  /** Our description reached the server: trickle what was gathered meanwhile. */
  markDescriptionSent() {
    if (this.descriptionSent) return;
    this.descriptionSent = true;
    for (const c of this.candidateBuffer.splice(0)) this.sendCandidate(c);
  }

  // ------------------------------------------------------------------ negotiation

  /**
   * Run one negotiation step after the previous ones (one at a time, in order).
   * @param {() => Promise<void>} fn
   * @returns {Promise<void>}
   */
  enqueue(fn) {
    const step = async () => {
      if (this.closed) return;
      // a WebRTC promise can stay pending for good (e.g. the connection closed under it):
      // never let one step block the ones after it
      let timer;
      const deadline = new Promise((_, reject) => {
        timer = this.hooks.setTimeout(
          () => reject(new ProtocolError("timeout", "negotiation step took too long")),
          this.hooks.stepTimeoutMs,
        );
      });
      try {
        await Promise.race([fn(), deadline]);
      } finally {
        this.hooks.clearTimeout(timer);
      }
    };
    const next = this.queue.then(step).catch((err) => {
      if (this.closed) return;
      this.hooks.log("negotiation step failed", err);
      const e = /** @type {any} */ (err);
      this.hooks.emit("error", { code: e?.code ?? "negotiation_failed", message: String(e?.message ?? e), fatal: false });
      if (e?.code === "timeout") this.hooks.rejoin("negotiation_timeout");
    });
    this.queue = next;
    return next;
  }

  /** Queue a client offer. */
  renegotiate() {
    return this.enqueue(() => this.negotiate());
  }

  /**
   * Client offer -> answer in the ack. On `invalid_state` (the server's own offer is
   * pending: glare, we are the polite peer) roll back, let the server's offer be answered,
   * then offer again.
   */
  async negotiate() {
    const pc = this.pc;
    if (!pc || this.closed) return;
    if (pc.signalingState !== "stable") {
      this.offerWanted = true;
      return;
    }
    this.offerWanted = false;
    if (this.reofferTimer) this.hooks.clearTimeout(this.reofferTimer);
    this.reofferTimer = null;
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const local = /** @type {RTCSessionDescription} */ (pc.localDescription);
    const tracks = [];
    for (const l of this.hooks.localTracks()) {
      const mid = this.senders.get(l)?.mid;
      if (mid) tracks.push({ mid, source: l.source });
    }
    const request = this.hooks.request("sdp", { description: { type: "offer", sdp: local.sdp }, tracks });
    this.markDescriptionSent();
    let res;
    try {
      res = await request;
    } catch (err) {
      if (this.closed) return;
      const e = /** @type {ProtocolError} */ (err);
      if (pc.signalingState === "have-local-offer") await pc.setLocalDescription({ type: "rollback" });
      if (e.code === "invalid_state") {
        this.glareRetries += 1;
        if (this.glareRetries > 5) throw new ProtocolError("negotiation_failed", "offer refused repeatedly (glare)");
        this.hooks.log("glare: rolled back; re-offering after the server's offer");
        this.offerWanted = true;
        this.armReoffer();
        return;
      }
      if (e.code === "not_joined" || e.code === "timeout") {
        this.hooks.rejoin(e.code);
        return;
      }
      if (e.code === "disconnected") return;
      throw e;
    }
    if (this.closed) return;
    this.glareRetries = 0;
    await pc.setRemoteDescription(res.description);
    this.refreshTracks();
  }

  /** Fallback when no server offer follows a glare refusal. */
  armReoffer() {
    if (this.reofferTimer) this.hooks.clearTimeout(this.reofferTimer);
    this.reofferTimer = this.hooks.setTimeout(() => {
      this.reofferTimer = null;
      if (this.offerWanted && !this.closed) this.renegotiate();
    }, this.hooks.reofferDelayMs);
  }

  /**
   * A server `sdp` offer: answer it in the ack; `tracks` says whose track each mid carries.
   * @param {any} payload
   * @param {(reply: object) => void} reply
   */
  onServerOffer(payload, reply) {
    this.enqueue(async () => {
      const pc = this.pc;
      const description = payload?.description;
      if (!pc || this.closed) {
        reply({ ok: false, error: { code: "invalid_state", message: "no peer connection" } });
        return;
      }
      if (!description || description.type !== "offer" || typeof description.sdp !== "string") {
        reply({ ok: false, error: { code: "bad_request", message: "expected an offer" } });
        return;
      }
      try {
        // perfect negotiation, polite side: our own pending offer gives way
        if (pc.signalingState === "have-local-offer") await pc.setLocalDescription({ type: "rollback" });
        await pc.setRemoteDescription({ type: "offer", sdp: description.sdp });
        const answer = await pc.createAnswer();
        await pc.setLocalDescription(answer);
      } catch (err) {
        reply({ ok: false, error: { code: "invalid_sdp", message: String(/** @type {any} */ (err)?.message ?? err) } });
        throw err;
      }
      /** @type {Map<string, TrackInfo>} */
      const infos = new Map();
      for (const row of Array.isArray(payload.tracks) ? payload.tracks : []) {
        if (row && typeof row.mid === "string") infos.set(row.mid, row);
      }
      this.trackInfos = infos;
      const local = /** @type {RTCSessionDescription} */ (pc.localDescription);
      reply({ description: { type: "answer", sdp: local.sdp } });
      this.markDescriptionSent();
      this.refreshTracks();
      if (this.offerWanted && !this.closed) this.renegotiate();
    });
  }

  /** Recompute mid -> participant labels of the incoming tracks and announce them. */
  refreshTracks() {
    const pc = this.pc;
    if (!pc || this.closed) return;
    /** @type {RemoteTrack[]} */
    const rows = [];
    for (const t of pc.getTransceivers()) {
      const info = t.mid ? this.trackInfos.get(t.mid) : undefined;
      if (!info || !t.receiver?.track) continue;
      rows.push({ ...info, track: t.receiver.track });
    }
    const key = (/** @type {RemoteTrack[]} */ r) => r.map((x) => `${x.mid}:${x.participantId}:${x.source}:${x.track.id}`).join(",");
    if (key(rows) === key(this.remoteTracks)) return;
    this.remoteTracks = rows;
    this.hooks.emit("tracks", { tracks: [...rows] });
  }
}

/**
 * One participant's connection to the SFU.
 *
 * Events (all `CustomEvent`, payload in `detail`):
 * - `state` `{state: ClientState, reason?: string}`
 * - `joined` `{id, room, participants: Participant[], chat: ChatMessage[], rejoin: boolean,
 *   moved: boolean, node: string | null}` (moved: after a planned cluster move, no `reset` before)
 * - `moving` `{url}` / `moved` `{url, node, ms}`: a planned cluster move started / is done
 *   (the old node's connection is closed)
 * - `reset` `{reason}`: the connection dropped; every remote participant and track is gone
 * - `participant-joined` / `participant-updated` `{participant: Participant}`
 * - `participant-left` `{id, reason}`
 * - `chat` `{message: ChatMessage}` (from others; your own come back from `sendChat`)
 * - `tracks` `{tracks: RemoteTrack[]}`: the full set of incoming tracks after each negotiation
 * - `connection` `{state: RTCPeerConnectionState}`
 * - `video-state` `{participantId, source, state: "active" | "paused-link" | "paused-viewer",
 *   layer: number | null}`: the server's forwarding of one remote video to us changed
 * - `error` `{code, message, fatal: boolean}`
 */
export class SfuClient extends EventTarget {
  /** @param {ClientOptions} [options] */
  constructor(options = {}) {
    super();
    const g = /** @type {any} */ (globalThis);
    this._url = options.url;
    this._io = options.io ?? g.io;
    this._createPc =
      options.createPeerConnection ?? ((/** @type {RTCConfiguration} */ c) => new g.RTCPeerConnection(c));
    this._senderCaps = options.RTCRtpSender ?? g.RTCRtpSender;
    this._receiverCaps = options.RTCRtpReceiver ?? g.RTCRtpReceiver;
    this._token = options.token;
    this._ackTimeoutMs = options.ackTimeoutMs ?? 10000;
    this._retryDelaysMs = options.retryDelaysMs ?? [500, 1000, 2000, 4000, 8000];
    this._reofferDelayMs = options.reofferDelayMs ?? 2000;
    this._setTimeout = options.setTimeout ?? ((fn, ms) => setTimeout(fn, ms));
    this._clearTimeout = options.clearTimeout ?? ((h) => clearTimeout(h));
    this._log = options.log ?? (() => {});
    this._connectTimeoutMs = options.connectTimeoutMs ?? 3000;
    this._roamForMs = options.roamForMs ?? 30000;
    this._now = options.now ?? (() => Date.now());
    this._temporalLayers = options.temporalLayers ?? true;

    /** @type {SocketLike | null} */
    this._socket = null;
    /** @type {PeerSession | null} the current join attempt / peer connection (new on every rejoin) */
    this._session = null;
    /** @type {ClientState} */
    this._state = "idle";
    /** @type {string | null} */
    this._id = null;
    /** the room is being recorded (join ack, then `recording` events) */
    this.recording = false;
    /** we may start/stop the recording (join ack) */
    this.canRecord = false;
    /** @type {string | null} the room's active speaker (last `active speaker` event) */
    this.activeSpeaker = null;
    this._room = "";
    this._name = "";
    this._wantJoined = false;
    this._joinedOnce = false;
    this._attempt = 0;
    /** @type {Map<string, Participant>} */
    this._participants = new Map();
    /** @type {LocalTrack[]} */
    this._local = [];
    this._muted = { audio: false, video: false };
    /** @type {any} */
    this._retryTimer = null;
    /** @type {Map<(err: ProtocolError) => void, SocketLike>} pending acks, rejected when their socket drops */
    this._pending = new Map();
    // cluster (docs/protocol.md "Cluster")
    /** @type {string | undefined} the URL of the first connection (default: the page's origin) */
    this._homeUrl = options.url;
    /** @type {string[]} public base URLs of the serving nodes (last join ack) */
    this._nodes = [];
    /** @type {Set<string>} every node URL any join ack listed (the last list may be stale) */
    this._known = new Set();
    /** @type {string | null} the node id of the last join ack */
    this._node = null;
    /** @type {string | null} the URL of the last `moved` this client followed */
    this._movedUrl = null;
    /** @type {SocketLike | null} the socket we are moving away from (planned drain) */
    this._moving = null;
    /** @type {SocketLike | null} the socket of the installed join: its room events apply now */
    this._joinedSocket = null;
    /** @type {Map<SocketLike, (() => void)[]>} room events that came before our join was installed */
    this._early = new Map();
    /** @type {WeakSet<SocketLike>} sockets we closed: their events are stale */
    this._discarded = new WeakSet();
    /** bumped to stop a running search for a node */
    this._roamToken = 0;
    /** @type {{resolve: (v: any) => void, reject: (e: any) => void}[]} */
    this._joinWaiters = [];
  }

  // ------------------------------------------------------------------ getters

  /** @returns {RTCPeerConnection | null} the one peer connection (new after every rejoin) */
  get pc() {
    return this._session?.pc ?? null;
  }

  /** @returns {PeerSession | null} the current peer session (new after every rejoin) */
  get session() {
    return this._session;
  }

  /** @returns {string | null} our participant id (changes after a rejoin) */
  get id() {
    return this._id;
  }

  /** @returns {ClientState} */
  get state() {
    return this._state;
  }

  /** @returns {string} */
  get room() {
    return this._room;
  }

  /** @returns {Participant[]} the other participants */
  get participants() {
    return [...this._participants.values()];
  }

  /** @returns {RemoteTrack[]} incoming tracks labelled by participant */
  get remoteTracks() {
    return [...(this._session?.remoteTracks ?? [])];
  }

  /** @returns {TrackInfo[]} the rows of the server's last offer (mid -> participant) */
  get trackInfos() {
    return [...(this._session?.trackInfos.values() ?? [])];
  }

  /** @returns {string[]} cluster: the public base URLs of the serving nodes (last join ack) */
  get nodes() {
    return [...this._nodes];
  }

  /** @returns {string | null} cluster: the id of the node we are joined on */
  get node() {
    return this._node;
  }

  /** @returns {string | undefined} the URL of the current connection (undefined: the page's origin) */
  get url() {
    return this._url;
  }

  /** @returns {{audio: boolean, video: boolean}} */
  get muted() {
    return { ...this._muted };
  }

  /** @returns {boolean} */
  get sharingScreen() {
    return this._local.some((l) => l.source === "screen");
  }

  // ------------------------------------------------------------------ public API

  /**
   * Add a local track to publish (call before `join`, or after: it renegotiates).
   * `null` with a source: a camera/microphone that is off for now (its sender sends
   * nothing until `replaceTrack`).
   * @param {MediaStreamTrack | null} track
   * @param {Source} [source]  default: camera for video, microphone for audio
   */
  publish(track, source) {
    const kind = track ? (track.kind === "video" ? "video" : "audio") : source === "microphone" ? "audio" : "video";
    /** @type {LocalTrack} */
    const local = {
      track,
      kind,
      source: source ?? (kind === "video" ? "camera" : "microphone"),
    };
    this._local.push(local);
    if (track && local.source !== "screen") {
      track.enabled = !this._muted[kind];
    }
    if (this._session?.pc) {
      this._session.attach(local);
      this._renegotiate();
    }
  }

  /**
   * Join a room. Resolves with the join ack after the first successful join; rejects with a
   * `ProtocolError` when the server refuses for good (room_full, unauthorized, ...).
   * Reconnects and rejoins by itself afterwards until `leave()`.
   * @param {string} room
   * @param {string} name
   * @returns {Promise<{id: string, room: string, participants: Participant[], chat: ChatMessage[]}>}
   */
  join(room, name) {
    const checked = validateJoin(room, name);
    if (this._wantJoined) return Promise.reject(new ProtocolError("already_joined", "join called twice"));
    this._room = checked.room;
    this._name = checked.name;
    this._wantJoined = true;
    const result = new Promise((resolve, reject) => this._joinWaiters.push({ resolve, reject }));
    const socket = this._ensureSocket();
    if (socket.connected) this._doJoin();
    else this._setState("connecting");
    return result;
  }

  /**
   * Start (true) or stop (false) recording the room (needs `canRecord` from the join ack);
   * resolves with the server's `recording` object, rejects with a `ProtocolError`.
   * @param {boolean} active
   * @returns {Promise<{id: string, room: string, startedAt: string, files: string[], manifest: string}>}
   */
  async setRecording(active) {
    const res = await this._request("recording", { active: Boolean(active) });
    return res.recording;
  }

  /**
   * Stop (true) or resume (false) receiving one remote video we do not show (`video
   * pause`); resolves false when not joined (nothing to pause), rejects with a
   * `ProtocolError` (`not_found`: that video is not sent to us).
   * @param {string} participantId
   * @param {"camera" | "screen"} source
   * @param {boolean} paused
   * @returns {Promise<boolean>}
   */
  async setVideoPaused(participantId, source, paused) {
    if (source !== "camera" && source !== "screen") throw new ProtocolError("bad_request", "source must be camera or screen");
    if (this._state !== "joined") return false;
    await this._request("video pause", { participantId: String(participantId), source, paused: Boolean(paused) });
    return true;
  }

  /**
   * Send a chat message; resolves with the stored `ChatMessage`.
   * @param {string} text
   * @returns {Promise<ChatMessage>}
   */
  async sendChat(text) {
    const trimmed = String(text ?? "").trim();
    if (trimmed.length < 1 || trimmed.length > MAX_CHAT) {
      throw new ProtocolError("bad_request", `a message is 1-${MAX_CHAT} characters`);
    }
    const res = await this._request("chat message", { text: trimmed });
    return res.message;
  }

  /**
   * Mute or unmute our camera ("video") or microphone ("audio"): the local track is disabled
   * and the server stops forwarding it; others get `participant updated`.
   * @param {"audio" | "video"} kind
   * @param {boolean} muted
   */
  async setMuted(kind, muted) {
    if (kind !== "audio" && kind !== "video") throw new ProtocolError("bad_request", "kind must be audio or video");
    this._muted[kind] = Boolean(muted);
    for (const l of this._local) {
      if (l.track && l.kind === kind && l.source !== "screen") l.track.enabled = !muted;
    }
    if (this._state === "joined") await this._request("mute", { kind, muted: Boolean(muted) });
  }

  /**
   * Publish a screen-capture track (source "screen"): a new send-only transceiver, or the
   * one of a previous share (replaceTrack); renegotiates with a client offer.
   * @param {MediaStreamTrack} track
   */
  async startScreenShare(track) {
    if (this.sharingScreen) await this.stopScreenShare();
    /** @type {LocalTrack} */
    const local = { track, kind: "video", source: "screen" };
    this._local.push(local);
    track.addEventListener?.("ended", () => {
      if (this._local.includes(local)) this.stopScreenShare();
    });
    if (this._session?.pc) {
      this._session.attach(local);
      await this._renegotiate();
    }
  }

  /** Stop publishing the screen: its transceiver goes inactive (kept for the next share). */
  async stopScreenShare() {
    const local = this._local.find((l) => l.source === "screen");
    if (!local) return;
    this._local = this._local.filter((l) => l !== local);
    local.track?.stop?.();
    if (await this._session?.detach(local)) await this._renegotiate();
  }

  /**
   * Send another track for a published camera or microphone (device switch), or none
   * (`null`: the device was stopped, e.g. "Stop camera" turning the camera light off), on
   * the existing sender of the current peer connection: no renegotiation, no rejoin. A
   * source not published yet is published (that one renegotiates).
   * @param {"camera" | "microphone"} source
   * @param {MediaStreamTrack | null} track
   */
  async replaceTrack(source, track) {
    const local = this._local.find((l) => l.source === source);
    if (!local) {
      if (track) this.publish(track, source);
      return;
    }
    local.track = track;
    if (track) track.enabled = !this._muted[local.kind];
    await this._session?.replaceTrack(local);
  }

  /** @returns {MediaStreamTrack | null} the track sent for a source (null: none) */
  localTrack(/** @type {Source} */ source) {
    return this._local.find((l) => l.source === source)?.track ?? null;
  }

  /**
   * The server's figures for our own connection (PROTOCOL `stats`, additive): what it
   * receives from us (`published`) and what it sends us (`subscriptions`, by `mid`).
   * @returns {Promise<{connectionState: string | null, published: any[], subscriptions: any[]}>}
   */
  async serverStats() {
    const res = await this._request("stats", {});
    return {
      connectionState: res.connectionState ?? null,
      published: Array.isArray(res.published) ? res.published : [],
      subscriptions: Array.isArray(res.subscriptions) ? res.subscriptions : [],
    };
  }

  /** Leave the room for good: no more rejoin attempts. */
  async leave() {
    this._wantJoined = false;
    this._roamToken += 1;
    this._clearTimers();
    const wasJoined = this._state === "joined";
    const session = this._session;
    this._session = null;
    session?.retire(); // its late callbacks are stale from now on
    if (wasJoined && this._socket?.connected) {
      try {
        await this._request("leave", {}, Math.min(this._ackTimeoutMs, 3000));
      } catch (err) {
        this._log("leave refused", err);
      }
    }
    this._closeSession(session);
    this._socket?.disconnect();
    this._rejectJoinWaiters(new ProtocolError("left", "left the room"));
    this._setState("closed");
  }

  // ------------------------------------------------------------------ socket

  /** @returns {SocketLike} */
  _ensureSocket() {
    if (this._socket) {
      if (!this._socket.connected && !this._socket.active) this._socket.connect();
      return this._socket;
    }
    const socket = this._openSocket(this._url, true);
    this._socket = socket;
    return socket;
  }

  /**
   * A Socket.IO connection to `url` with every handler wired. Its events count only while
   * it is ours: not discarded, and (room events) not the one a planned move leaves.
   * @param {string | undefined} url
   * @param {boolean} reconnection  socket.io's own reconnection (off for cluster nodes:
   *   the client picks the next node itself)
   * @returns {SocketLike}
   */
  _openSocket(url, reconnection) {
    if (typeof this._io !== "function") throw new Error("no socket.io client: pass options.io");
    /** @type {Record<string, unknown>} */
    const opts = reconnection
      ? { reconnection: true, reconnectionDelay: 500, reconnectionDelayMax: 5000 }
      : // forceNew: never share a manager (socket.io's multiplexing) with a closed connection
        { reconnection: false, timeout: this._connectTimeoutMs, forceNew: true };
    if (this._token) opts.auth = { token: this._token };
    const socket = this._io(url, opts);
    const live = () => socket === this._socket && !this._discarded.has(socket);
    /**
     * A room event: applied at once on the socket of our installed join; kept for later on
     * a socket whose join ack is still being handled (it may come in the same packet batch
     * as the ack, before the ack's handling: the ack's participant list must not wipe it);
     * dropped on a discarded socket or the one a move leaves.
     * @param {() => void} fn
     */
    const room = (fn) => {
      if (this._discarded.has(socket) || socket === this._moving) return;
      if (socket === this._joinedSocket) fn();
      else {
        const list = this._early.get(socket) ?? [];
        list.push(fn);
        this._early.set(socket, list);
      }
    };
    socket.on("connect", () => {
      if (live()) this._onConnect();
    });
    socket.on("disconnect", (/** @type {string} */ reason) => {
      for (const [fail, s] of [...this._pending]) {
        if (s === socket) fail(new ProtocolError("disconnected", `connection lost (${reason})`));
      }
      // the node we are leaving may close us before the move is done: the move goes on
      if (live() && socket !== this._moving) this._onDisconnect(reason);
    });
    socket.on("connect_error", (/** @type {any} */ err) => {
      if (live()) this._onConnectError(err);
    });
    socket.on("sdp", (/** @type {any} */ payload, /** @type {(r: object) => void} */ ack) =>
      this._onServerOffer(payload, ack, socket),
    );
    socket.on("participant joined", (/** @type {Participant} */ p) =>
      room(() => this._onParticipant(p, "participant-joined")),
    );
    socket.on("participant updated", (/** @type {Participant} */ p) =>
      room(() => this._onParticipant(p, "participant-updated")),
    );
    // during a move the others leave the old node for the new one: nobody left
    socket.on("participant left", (/** @type {any} */ p) => room(() => this._onParticipantLeft(p)));
    socket.on("chat message", (/** @type {ChatMessage} */ m) => {
      if (m && typeof m === "object") room(() => this._emit("chat", { message: m }));
    });
    socket.on("active speaker", (/** @type {any} */ p) => {
      if (!p || typeof p !== "object") return;
      const id = typeof p.participantId === "string" ? p.participantId : null;
      /** @type {Record<string, number>} */
      const levels = {};
      if (p.levels && typeof p.levels === "object") {
        for (const [k, v] of Object.entries(p.levels)) if (typeof v === "number" && v >= 0) levels[k] = Math.min(1, v);
      }
      this.activeSpeaker = id;
      this._emit("active-speaker", { participantId: id, levels });
    });
    socket.on("video state", (/** @type {any} */ p) => {
      if (!p || typeof p !== "object" || typeof p.participantId !== "string" || !VIDEO_STATES.has(p.state)) return;
      const layer = Number.isInteger(p.layer) ? p.layer : null;
      room(() =>
        this._emit("video-state", { participantId: p.participantId, source: String(p.source ?? "camera"), state: p.state, layer }),
      );
    });
    socket.on("recording", (/** @type {any} */ p) => {
      this.recording = p?.active === true;
      this._emit("recording", { active: this.recording });
    });
    socket.on("error", (/** @type {any} */ e) => {
      if (!live()) return;
      const code = typeof e?.code === "string" ? e.code : "server_error";
      if (code === "moved" && typeof e?.url === "string" && e.url) {
        this._moveTo(e.url);
        return;
      }
      this._emit("error", { code, message: String(e?.message ?? code), fatal: false });
    });
    return socket;
  }

  /**
   * Close a socket for good; its late events are ignored.
   * @param {SocketLike | null} socket
   */
  _discard(socket) {
    if (!socket) return;
    this._discarded.add(socket);
    this._early.delete(socket);
    if (socket === this._joinedSocket) this._joinedSocket = null;
    if (socket === this._socket) this._socket = null;
    try {
      socket.disconnect();
    } catch (err) {
      this._log("disconnect", err);
    }
  }

  /**
   * Connect to a cluster node; resolves once connected, rejects (and discards the socket)
   * when it refuses or does not answer within `connectTimeoutMs`.
   * @param {string | undefined} url
   * @returns {Promise<SocketLike>}
   */
  _connectTo(url) {
    const socket = this._openSocket(url, false);
    return new Promise((resolve, reject) => {
      let done = false;
      /** @param {Error | null} err */
      const finish = (err) => {
        if (done) return;
        done = true;
        this._clearTimeout(timer);
        if (err) {
          this._discard(socket);
          reject(err);
        } else resolve(socket);
      };
      const timer = this._setTimeout(
        () => finish(new ProtocolError("unreachable", `no answer from ${url ?? "the page's server"}`)),
        this._connectTimeoutMs,
      );
      socket.on("connect", () => finish(null));
      socket.on("connect_error", (/** @type {any} */ err) =>
        finish(new ProtocolError(err?.data?.code ?? "unreachable", String(err?.message ?? "cannot connect"))),
      );
      if (socket.connected) finish(null);
      else if (!socket.active) socket.connect();
    });
  }

  _onConnect() {
    this._log("socket connected");
    if (this._wantJoined && this._state !== "joining" && this._state !== "joined") this._doJoin();
  }

  /** @param {string} reason */
  _onDisconnect(reason) {
    this._log("socket disconnected", reason);
    if (!this._wantJoined) return;
    this._dropSession(reason);
    this._setState("reconnecting", reason);
    if (this._clustered()) {
      // our node may be gone for good: look for one that serves the room
      this._discard(this._socket);
      this._roam(reason);
      return;
    }
    // socket.io reconnects by itself, except after a server-side disconnect
    if (reason === "io server disconnect") this._scheduleRetry(() => this._socket?.connect());
  }

  /** @param {any} err */
  _onConnectError(err) {
    const code = err?.data?.code;
    if (code === "unauthorized") {
      this._fail(new ProtocolError("unauthorized", String(err?.data?.message ?? "unauthorized")));
      return;
    }
    if (!this._wantJoined) return;
    this._setState(this._joinedOnce ? "reconnecting" : "connecting", "server unreachable");
    this._emit("error", { code: "unreachable", message: "cannot reach the server; retrying", fatal: false });
    if (this._socket && this._socket.active === false) this._scheduleRetry(() => this._socket?.connect());
  }

  /**
   * Emit an event and await PROTOCOL.md's ack envelope.
   * @param {string} event
   * @param {object} data
   * @param {number} [timeoutMs]
   * @returns {Promise<any>} the ack (ok: true); rejects with ProtocolError
   */
  _request(event, data, timeoutMs = this._ackTimeoutMs) {
    return this._requestOn(this._socket, event, data, timeoutMs);
  }

  /**
   * `_request` on a given socket (a session talks to the node it joined).
   * @param {SocketLike | null} socket
   * @param {string} event
   * @param {object} data
   * @param {number} [timeoutMs]
   * @returns {Promise<any>}
   */
  _requestOn(socket, event, data, timeoutMs = this._ackTimeoutMs) {
    return new Promise((resolve, reject) => {
      if (!socket || !socket.connected) {
        reject(new ProtocolError("disconnected", "not connected to the server"));
        return;
      }
      let done = false;
      /** @param {ProtocolError} err */
      const fail = (err) => {
        if (done) return;
        done = true;
        this._clearTimeout(timer);
        this._pending.delete(fail);
        reject(err);
      };
      const timer = this._setTimeout(
        () => fail(new ProtocolError("timeout", `no answer to '${event}' within ${timeoutMs} ms`)),
        timeoutMs,
      );
      this._pending.set(fail, socket);
      socket.emit(event, data, (/** @type {any} */ res) => {
        if (done) return;
        if (res && typeof res === "object" && res.ok === true) {
          done = true;
          this._clearTimeout(timer);
          this._pending.delete(fail);
          resolve(res);
        } else if (res && typeof res === "object" && res.ok === false) {
          const e = res.error ?? {};
          const err = new ProtocolError(String(e.code ?? "internal_error"), String(e.message ?? ""));
          if (typeof e.url === "string" && e.url) err.url = e.url;
          fail(err);
        } else {
          fail(new ProtocolError("bad_response", `malformed ack to '${event}'`));
        }
      });
    });
  }

  // ------------------------------------------------------------------ join / rejoin

  async _doJoin() {
    this._clearTimers();
    this._closeSession(this._session);
    const session = this._newSession(this._socket);
    this._session = session;
    this._joinedSocket = null;
    if (this._socket) this._early.delete(this._socket);
    this._setState("joining");
    let joined;
    try {
      joined = await this._joinFollowing(this._socket, () => session === this._session && this._wantJoined);
    } catch (err) {
      if (session !== this._session || !this._wantJoined) return;
      const e = /** @type {ProtocolError} */ (err);
      if (FATAL_JOIN_CODES.has(e.code)) {
        this._fail(e);
      } else if (e.code === "already_joined") {
        // a previous join of this connection went through after all: start afresh
        this._request("leave", {}).catch(() => {});
        this._scheduleRetry(() => this._doJoin());
      } else if (this._clustered() && (e.code === "moved" || e.code === "unreachable" || !this._socket)) {
        // too many hops, or the node we were sent to does not answer: look for another
        this._closeSession(session);
        this._discard(this._socket);
        this._setState(this._joinedOnce ? "reconnecting" : "connecting", e.code);
        this._roam(e.code);
      } else if (e.code !== "disconnected") {
        this._emit("error", { code: e.code, message: e.message, fatal: false });
        this._scheduleRetry(() => this._doJoin());
      }
      return;
    }
    if (session !== this._session || !this._wantJoined) {
      if (joined.socket !== this._socket) this._discard(joined.socket);
      return;
    }
    // after following `moved`, the session talks to the node that owns the room
    this._socket = joined.socket;
    session.socket = joined.socket;
    this._install(session, joined.res, false);
  }

  /**
   * Send `join` on `socket`; on a cluster `moved` refusal close it, connect to the owner's
   * URL with the same auth and send the same `join` there (at most MAX_MOVES hops).
   * @param {SocketLike | null} socket
   * @param {() => boolean} [current]  false once the caller gave up (stop hopping)
   * @returns {Promise<{socket: SocketLike, res: any}>} the socket that took the join and the ack
   */
  async _joinFollowing(socket, current = () => true) {
    for (let hop = 0; ; hop++) {
      try {
        const res = await this._requestOn(socket, "join", { room: this._room, name: this._name });
        return { socket: /** @type {SocketLike} */ (socket), res };
      } catch (err) {
        const e = /** @type {ProtocolError} */ (err);
        if (e.code !== "moved" || !e.url || hop >= MAX_MOVES || !current()) {
          if (socket && socket !== this._socket) this._discard(socket);
          throw e;
        }
        this._log(`join moved to ${e.url}`);
        this._movedUrl = e.url;
        // the socket we leave is no longer ours: its disconnect is not a drop
        const wasOurs = socket === this._socket;
        this._discard(socket);
        const next = await this._connectTo(e.url);
        if (wasOurs && current()) {
          this._socket = next;
          this._url = e.url;
        }
        socket = next;
      }
    }
  }

  /**
   * A join went through on `session.socket`: remember the cluster, open the peer connection
   * and publish the local tracks.
   * @param {PeerSession} session
   * @param {any} res  the join ack
   * @param {boolean} moved  a planned move (no reset, no "Reconnected")
   */
  _install(session, res, moved) {
    this._attempt = 0;
    this._id = String(res.id);
    if (Array.isArray(res.nodes)) this._nodes = res.nodes.filter((/** @type {unknown} */ u) => typeof u === "string");
    for (const url of this._nodes) this._known.add(url);
    if (typeof res.node === "string") this._node = res.node;
    this._participants = new Map();
    for (const p of Array.isArray(res.participants) ? res.participants : []) this._participants.set(p.id, p);
    session.open(Array.isArray(res.iceServers) ? res.iceServers : []);
    const rejoin = this._joinedOnce;
    this._joinedOnce = true;
    this._setState("joined");
    this.recording = res.recording === true;
    this.canRecord = res.canRecord === true;
    const detail = {
      id: this._id,
      room: String(res.room ?? this._room),
      participants: this.participants,
      chat: Array.isArray(res.chat) ? res.chat : [],
      rejoin,
      recording: this.recording,
      canRecord: this.canRecord,
      moved,
      node: this._node,
    };
    this._emit("joined", detail);
    this._emit("recording", { active: this.recording });
    // room events that came with the ack, before it was handled, apply now
    const socket = session.socket;
    this._joinedSocket = socket;
    const early = socket ? (this._early.get(socket) ?? []) : [];
    if (socket) this._early.delete(socket);
    for (const fn of early) fn();
    const waiters = this._joinWaiters.splice(0);
    for (const w of waiters) w.resolve(detail);
    for (const kind of /** @type {const} */ (["audio", "video"])) {
      if (this._muted[kind]) this._request("mute", { kind, muted: true }).catch((e) => this._log("mute", e));
    }
    // with nothing to send we do not offer: the server offers once others publish
    if (this._local.length > 0 && session === this._session) session.renegotiate();
  }

  /** @returns {boolean} whether we are in a cluster (the last join ack listed nodes, or we followed `moved`) */
  _clustered() {
    return this._nodes.length > 0 || this._movedUrl !== null;
  }

  /**
   * Planned drain: our node said `moved`. Make before break: connect to `url`, join the
   * same room as the same name, publish the same tracks on a new peer connection, and
   * only then close the old socket and peer connection. No reset: tiles and chat stay.
   * @param {string} url
   */
  async _moveTo(url) {
    if (this._moving || !this._wantJoined || this._state !== "joined") return;
    const oldSocket = this._socket;
    const oldSession = this._session;
    this._moving = oldSocket;
    this._movedUrl = url;
    const started = this._now();
    this._emit("moving", { url });
    const token = ++this._roamToken;
    /** @type {PeerSession | null} */
    let session = null;
    try {
      const joined = await this._joinFollowing(await this._connectTo(url), () => token === this._roamToken);
      if (token !== this._roamToken || !this._wantJoined) {
        this._discard(joined.socket);
        return;
      }
      session = this._newSession(joined.socket);
      // switch: from now on the new node is ours; the old session goes quiet
      this._socket = joined.socket;
      this._url = url;
      this._session = session;
      oldSession?.retire();
      this._install(session, joined.res, true);
      await session.queue; // our tracks are published (bounded by the step timeout)
    } catch (err) {
      this._log("move failed", err);
      if (token !== this._roamToken || !this._wantJoined) return;
      // the new node does not take us: fall back to looking for any node
      this._moving = null;
      if (this._session === session) this._closeSession(session);
      oldSession?.close();
      this._discard(oldSocket);
      this._dropSession("moved");
      this._setState("reconnecting", "moved");
      this._roam("moved");
      return;
    } finally {
      if (this._moving === oldSocket) this._moving = null;
    }
    oldSession?.close(); // no "tracks" event: the new session's tracks are the ones shown
    this._discard(oldSocket);
    this._emit("moved", { url, node: this._node, ms: this._now() - started });
  }

  /**
   * Our node died (or refused us): try, in order, the last `moved` URL, the nodes of the
   * join acks, then the first URL (the page's origin); on each connect, join (following
   * `moved`) and publish. Rounds are `ROAM_DELAY_MS` apart, doubling to
   * `ROAM_DELAY_MAX_MS`, for `roamForMs`; then the client fails with `unreachable`.
   * @param {string} reason
   */
  async _roam(reason) {
    const token = ++this._roamToken;
    const deadline = this._now() + this._roamForMs;
    let delay = ROAM_DELAY_MS;
    const current = () => token === this._roamToken && this._wantJoined;
    this._log("looking for a node:", reason);
    while (current()) {
      for (const url of this._candidates()) {
        if (!current()) return;
        const session = this._newSession(null);
        try {
          const socket = await this._connectTo(url);
          session.socket = socket;
          if (!current()) {
            this._discard(socket);
            return;
          }
          this._session = session;
          this._setState("joining");
          const joined = await this._joinFollowing(socket, current);
          if (!current() || this._session !== session) {
            this._discard(joined.socket);
            return;
          }
          session.socket = joined.socket;
          this._socket = joined.socket;
          this._url = url;
          this._install(session, joined.res, false);
          return;
        } catch (err) {
          const e = /** @type {ProtocolError} */ (err);
          this._log("node refused:", url, e.code);
          if (this._session === session) this._session = null;
          if (!current()) return;
          if (FATAL_JOIN_CODES.has(e.code) && e.code !== "server_busy") {
            this._fail(e);
            return;
          }
          this._setState("reconnecting", e.code);
        }
      }
      if (this._now() >= deadline) {
        this._fail(new ProtocolError("unreachable", "no node of the cluster answers"));
        return;
      }
      await new Promise((resolve) => {
        this._retryTimer = this._setTimeout(() => {
          this._retryTimer = null;
          resolve(null);
        }, delay);
      });
      delay = Math.min(delay * 2, ROAM_DELAY_MAX_MS);
    }
  }

  /**
   * Nodes to try after ours died, in order, once each: the last `moved` URL, the last ack's
   * nodes, nodes earlier acks listed (a node restarted since), then the first URL.
   * @returns {(string | undefined)[]}
   */
  _candidates() {
    /** @type {(string | undefined)[]} */
    const out = [];
    const seen = new Set();
    for (const url of [this._movedUrl ?? null, ...this._nodes, ...this._known, this._homeUrl]) {
      if (url === null) continue;
      const key = (url ?? "").replace(/\/+$/, "");
      if (seen.has(key)) continue;
      seen.add(key);
      out.push(url);
    }
    return out;
  }

  /**
   * @param {SocketLike | null} socket  the node this session talks to (`session.socket`)
   * @returns {PeerSession} a fresh session wired to this client
   */
  _newSession(socket) {
    /** @type {PeerSession} */
    const session = new PeerSession({
      createPeerConnection: this._createPc,
      senderCaps: this._senderCaps,
      receiverCaps: this._receiverCaps,
      request: (event, data, timeoutMs) => this._requestOn(session.socket, event, data, timeoutMs),
      // a session replaced by a move stays open a moment: its events are not ours any more
      emit: (type, detail) => {
        if (session === this._session) this._emit(type, detail);
      },
      rejoin: (reason) => {
        if (session === this._session) this._rejoin(reason);
      },
      localTracks: () => this._local,
      stepTimeoutMs: this._ackTimeoutMs * 2,
      reofferDelayMs: this._reofferDelayMs,
      setTimeout: this._setTimeout,
      clearTimeout: this._clearTimeout,
      log: this._log,
      temporalLayers: this._temporalLayers,
    });
    session.socket = socket;
    return session;
  }

  /**
   * Close a session (the current one: forget it) and announce that its tracks are gone.
   * @param {PeerSession | null} session
   */
  _closeSession(session) {
    if (!session) return;
    if (session === this._session) this._session = null;
    if (session.close()) this._emit("tracks", { tracks: [] });
  }

  /**
   * Throw away the session after a drop: the server forgot us (a disconnect is a leave).
   * @param {string} reason
   */
  _dropSession(reason) {
    this._joinedSocket = null;
    this._closeSession(this._session);
    this._participants.clear();
    this._emit("reset", { reason });
  }

  /**
   * Rejoin on the same socket with a new peer connection (ICE failed, removed by the server).
   * @param {string} reason
   */
  _rejoin(reason) {
    if (!this._wantJoined || this._state === "reconnecting") return;
    this._log("rejoin:", reason);
    this._dropSession(reason);
    this._setState("reconnecting", reason);
    this._request("leave", {}, 3000)
      .catch(() => {})
      .finally(() => this._scheduleRetry(() => this._socket?.connected && this._doJoin()));
  }

  /** @param {() => unknown} fn */
  _scheduleRetry(fn) {
    const delays = this._retryDelaysMs;
    const ms = delays[Math.min(this._attempt, delays.length - 1)] ?? 1000;
    this._attempt += 1;
    if (this._retryTimer) this._clearTimeout(this._retryTimer);
    this._retryTimer = this._setTimeout(() => {
      this._retryTimer = null;
      if (this._wantJoined) fn();
    }, ms);
  }

  /** @param {ProtocolError} err */
  _fail(err) {
    this._wantJoined = false;
    this._clearTimers();
    this._closeSession(this._session);
    this._emit("error", { code: err.code, message: err.message, fatal: true });
    this._rejectJoinWaiters(err);
    this._setState("failed", err.code);
    this._socket?.disconnect();
  }

  /** @param {Error} err */
  _rejectJoinWaiters(err) {
    for (const w of this._joinWaiters.splice(0)) w.reject(err);
  }

  _clearTimers() {
    if (this._retryTimer) this._clearTimeout(this._retryTimer);
    this._retryTimer = null;
  }

  /** Ask for a client offer (new local track, stopped share). */
  _renegotiate() {
    const session = this._session;
    if (this._state !== "joined" || !session?.pc) return Promise.resolve();
    return session.renegotiate();
  }

  /**
   * A server `sdp` offer: the current session answers it in the ack.
   * @param {any} payload
   * @param {(reply: object) => void} ack
   * @param {SocketLike} socket  the socket it came on
   */
  _onServerOffer(payload, ack, socket) {
    const reply = typeof ack === "function" ? ack : () => {};
    const session = this._session;
    if (!session?.pc || session.socket !== socket) {
      reply({ ok: false, error: { code: "invalid_state", message: "no peer connection" } });
      return;
    }
    session.onServerOffer(payload, reply);
  }
  // ------------------------------------------------------------------ room events

  /**
   * @param {any} p
   * @param {"participant-joined" | "participant-updated"} type
   */
  _onParticipant(p, type) {
    if (!p || typeof p.id !== "string" || p.id === this._id) return;
    // a "joined" for someone the join ack already listed (it came with the ack): an update
    const known = this._participants.has(p.id);
    this._participants.set(p.id, p);
    this._emit(known ? "participant-updated" : type, { participant: p });
  }

  /** @param {any} p */
  _onParticipantLeft(p) {
    if (!p || typeof p.id !== "string") return;
    if (p.id === this._id) {
      this._rejoin(String(p.reason ?? "removed"));
      return;
    }
    this._participants.delete(p.id);
    this._emit("participant-left", { id: p.id, reason: String(p.reason ?? "") });
  }

  // ------------------------------------------------------------------ helpers

  /**
   * @param {ClientState} state
   * @param {string} [reason]
   */
  _setState(state, reason) {
    if (this._state === state) return;
    this._state = state;
    this._emit("state", { state, reason });
  }

  /**
   * @param {string} type
   * @param {object} detail
   */
  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
