// Fakes shared by the unit tests of web/js/protocol.js: a Socket.IO socket, an
// RTCPeerConnection and its transceivers, media tracks (no browser, no server).

import { SfuClient } from "../js/protocol.js";

// ---------------------------------------------------------------------- fakes

let trackSeq = 0;

/** A MediaStreamTrack stand-in. */
export class FakeTrack extends EventTarget {
  /** @param {"audio" | "video"} kind */
  constructor(kind) {
    super();
    this.kind = kind;
    this.id = `track-${++trackSeq}`;
    this.enabled = true;
    this.stopped = false;
  }

  stop() {
    this.stopped = true;
  }
}

export class FakeTransceiver {
  /**
   * @param {"audio" | "video"} kind
   * @param {FakeTrack | null} track
   * @param {string} direction
   */
  constructor(kind, track, direction) {
    this.kind = kind;
    /** @type {string | null} */
    this.mid = null;
    this.direction = direction;
    /** @type {any[] | null} */
    this.codecPreferences = null;
    this.sender = {
      track,
      /** @param {FakeTrack | null} t */
      replaceTrack: async (t) => {
        this.sender.track = t;
      },
    };
    this.receiver = { track: new FakeTrack(kind) };
  }

  /** @param {any[]} codecs */
  setCodecPreferences(codecs) {
    this.codecPreferences = codecs;
  }
}

/**
 * Models the signaling-state machine closely enough to catch misuse: an offer applied in
 * have-local-offer throws (the client must roll back itself), rollback only from
 * have-local-offer. Server offer SDP in these tests is "offer mids=<mid>:<kind>,...".
 */
export class FakePeerConnection extends EventTarget {
  /** @type {FakePeerConnection[]} */
  static instances = [];

  /** @param {any} config */
  constructor(config) {
    super();
    this.config = config;
    /** @type {string[]} */
    this.log = [];
    this.signalingState = "stable";
    this.connectionState = "new";
    /** @type {FakeTransceiver[]} */
    this.transceivers = [];
    /** @type {any} */
    this.localDescription = null;
    /** @type {any} */
    this.remoteDescription = null;
    this.closed = false;
    this.offers = 0;
    this.nextMid = 0;
    FakePeerConnection.instances.push(this);
  }

  /**
   * @param {FakeTrack | string} track
   * @param {{direction: string}} init
   */
  addTransceiver(track, init) {
    // a track, or a kind ("audio" | "video") for a transceiver that sends nothing yet
    const kind = typeof track === "string" ? track : track.kind;
    const t = new FakeTransceiver(kind === "audio" ? "audio" : "video", typeof track === "string" ? null : track, init.direction);
    this.transceivers.push(t);
    this.log.push(`addTransceiver:${kind}:${init.direction}`);
    return t;
  }

  getTransceivers() {
    return [...this.transceivers];
  }

  async createOffer() {
    this.log.push("createOffer");
    return { type: "offer", sdp: `client-offer-${++this.offers}` };
  }

  async createAnswer() {
    this.log.push("createAnswer");
    if (this.signalingState !== "have-remote-offer") throw new Error("InvalidStateError: createAnswer");
    return { type: "answer", sdp: `client-answer-to-${this.remoteDescription.sdp}` };
  }

  /** @param {{type: string, sdp?: string}} d */
  async setLocalDescription(d) {
    this.log.push(`setLocal:${d.type}`);
    if (d.type === "rollback") {
      if (this.signalingState !== "have-local-offer") throw new Error("InvalidStateError: rollback");
      this.signalingState = "stable";
      this.localDescription = this._stableLocal ?? null;
      return;
    }
    if (d.type === "offer") {
      if (this.signalingState !== "stable") throw new Error("InvalidStateError: offer");
      this._stableLocal = this.localDescription;
      for (const t of this.transceivers) if (t.mid === null) t.mid = String(this.nextMid++);
      this.signalingState = "have-local-offer";
    } else if (d.type === "answer") {
      if (this.signalingState !== "have-remote-offer") throw new Error("InvalidStateError: answer");
      this.signalingState = "stable";
    }
    this.localDescription = { type: d.type, sdp: d.sdp };
  }

  /** @param {{type: string, sdp: string}} d */
  async setRemoteDescription(d) {
    this.log.push(`setRemote:${d.type}`);
    if (d.type === "offer") {
      if (this.signalingState !== "stable") throw new Error("InvalidStateError: remote offer in " + this.signalingState);
      const m = /mids=(\S*)/.exec(d.sdp);
      for (const item of m && m[1] ? m[1].split(",") : []) {
        const [mid, kind] = item.split(":");
        if (!this.transceivers.some((t) => t.mid === mid)) {
          const t = new FakeTransceiver(kind === "audio" ? "audio" : "video", null, "recvonly");
          t.mid = mid;
          this.transceivers.push(t);
          this.dispatchEvent(Object.assign(new Event("track"), { transceiver: t, track: t.receiver.track }));
        }
      }
      this.signalingState = "have-remote-offer";
    } else {
      if (this.signalingState !== "have-local-offer") throw new Error("InvalidStateError: remote answer");
      this.signalingState = "stable";
    }
    this.remoteDescription = { type: d.type, sdp: d.sdp };
  }

  /** @param {string | null} candidate */
  fireCandidate(candidate) {
    const c = candidate === null ? null : { candidate, sdpMid: "0", sdpMLineIndex: 0, usernameFragment: "u" };
    this.dispatchEvent(Object.assign(new Event("icecandidate"), { candidate: c }));
  }

  /** @param {string} state */
  setConnectionState(state) {
    this.connectionState = state;
    this.dispatchEvent(new Event("connectionstatechange"));
  }

  close() {
    this.closed = true;
    this.log.push("close");
  }
}

/**
 * A socket.io-client Socket stand-in. `replies[event]` answers client events: a function of
 * the payload returning the ack (or undefined to leave the ack pending, kept in `pending`).
 */
export class FakeSocket {
  /** @param {Record<string, (data: any) => any>} replies */
  constructor(replies = {}) {
    /** @type {Map<string, ((...a: any[]) => void)[]>} */
    this.handlers = new Map();
    /** @type {{event: string, data: any}[]} */
    this.emitted = [];
    /** @type {Map<string, ((r: any) => void)[]>} */
    this.pending = new Map();
    this.replies = replies;
    this.connected = false;
    this.active = false;
    this.url = undefined;
    this.opts = undefined;
  }

  /**
   * @param {string} event
   * @param {(...a: any[]) => void} fn
   */
  on(event, fn) {
    const list = this.handlers.get(event) ?? [];
    list.push(fn);
    this.handlers.set(event, list);
    return this;
  }

  /**
   * @param {string} event
   * @param {any} data
   * @param {(r: any) => void} [ack]
   */
  emit(event, data, ack) {
    this.emitted.push({ event, data });
    const reply = this.replies[event];
    const answer = reply ? reply(data) : undefined;
    if (answer !== undefined) {
      setImmediate(() => ack?.(answer));
    } else if (ack) {
      const list = this.pending.get(event) ?? [];
      list.push(ack);
      this.pending.set(event, list);
    }
    return this;
  }

  /**
   * @param {string} event
   * @param {...any} args
   */
  fire(event, ...args) {
    for (const fn of this.handlers.get(event) ?? []) fn(...args);
  }

  connect() {
    this.active = true;
    setImmediate(() => {
      if (this.connected || !this.active) return;
      this.connected = true;
      this.fire("connect");
    });
    return this;
  }

  disconnect() {
    const was = this.connected;
    this.connected = false;
    this.active = false;
    if (was) this.fire("disconnect", "io client disconnect");
    return this;
  }

  /** @param {string} reason */
  drop(reason = "transport close") {
    this.connected = false;
    this.fire("disconnect", reason);
  }

  /**
   * The server sends an `sdp` offer; resolves with the client's ack.
   * @param {any} payload
   * @returns {Promise<any>}
   */
  serverOffer(payload) {
    return new Promise((resolve) => this.fire("sdp", payload, resolve));
  }

  /** @param {string} event */
  named(event) {
    return this.emitted.filter((e) => e.event === event).map((e) => e.data);
  }
}

export const CAPS = {
  getCapabilities: (/** @type {string} */ kind) =>
    kind === "video"
      ? {
          codecs: [
            { mimeType: "video/H264", clockRate: 90000 },
            { mimeType: "video/VP9", clockRate: 90000 },
            { mimeType: "video/rtx", clockRate: 90000 },
            { mimeType: "video/VP8", clockRate: 90000 },
            { mimeType: "video/AV1", clockRate: 90000 },
          ],
        }
      : { codecs: [{ mimeType: "audio/G722", clockRate: 8000 }, { mimeType: "audio/opus", clockRate: 48000 }] },
};

export const JOIN_OK = {
  ok: true,
  id: "me",
  room: "r1",
  participants: [{ id: "p1", name: "Alice", audioMuted: false, videoMuted: true }],
  iceServers: [],
  chat: [{ id: "c1", from: "p1", name: "Alice", text: "hi", ts: 1700000000 }],
};

/**
 * @param {Record<string, (data: any) => any>} [replies]
 * @param {Partial<import("../js/protocol.js").ClientOptions>} [options]
 */
export function setup(replies = {}, options = {}) {
  const socket = new FakeSocket({
    join: () => JOIN_OK,
    sdp: (d) => ({ ok: true, description: { type: "answer", sdp: `server-answer-to-${d.description.sdp}` } }),
    "ice candidates": () => ({ ok: true }),
    mute: () => ({ ok: true }),
    leave: () => ({ ok: true }),
    ...replies,
  });
  FakePeerConnection.instances = [];
  const client = new SfuClient({
    io: (url, opts) => {
      socket.url = url;
      socket.opts = opts;
      socket.connect();
      return socket;
    },
    createPeerConnection: (config) => /** @type {any} */ (new FakePeerConnection(config)),
    RTCRtpSender: CAPS,
    RTCRtpReceiver: CAPS,
    retryDelaysMs: [5],
    reofferDelayMs: 50,
    ...options,
  });
  /** @type {Record<string, any[]>} */
  const events = {};
  for (const type of [
    "state",
    "joined",
    "reset",
    "participant-joined",
    "participant-updated",
    "participant-left",
    "chat",
    "tracks",
    "connection",
    "error",
    "active-speaker",
    "recording",
  ]) {
    events[type] = [];
    client.addEventListener(type, (e) => events[type].push(/** @type {CustomEvent} */ (e).detail));
  }
  return { socket, client, events };
}

/** Let queued promises, immediates and short timers run. */
export const settle = (ms = 0) => new Promise((r) => setTimeout(r, ms));

/** @param {() => boolean} predicate */
export async function until(predicate, timeoutMs = 1000) {
  const end = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await settle(2);
  }
}
