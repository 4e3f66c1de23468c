// Per-participant connection quality (good / poor / lost) from this page's own getStats()
// and the server's figures for our subscriptions (the additive `stats` request).

/**
 * @typedef {{kind: "audio" | "video", flowing: boolean, fps: number | null, lossPct: number | null, rttMs: number | null}} QualityInput
 * @typedef {"good" | "poor" | "lost" | "unknown"} Quality
 */

/** Thresholds: loss above 8 %, round trip above 500 ms or video under 8 frames/s is poor. */
export const POOR = { lossPct: 8, rttMs: 500, fps: 8 };

/**
 * @param {QualityInput} s
 * @returns {Quality}
 */
export function classify(s) {
  if (!s.flowing) return "lost";
  if ((s.lossPct ?? 0) > POOR.lossPct) return "poor";
  if ((s.rttMs ?? 0) > POOR.rttMs) return "poor";
  if (s.kind === "video" && s.fps !== null && s.fps < POOR.fps) return "poor";
  return "good";
}

/**
 * @typedef {object} QualityHost
 * @property {() => RTCPeerConnection | null} pc
 * @property {() => import("../protocol.js").TrackInfo[]} trackInfos
 * @property {() => {id: string, videoMuted: boolean, audioMuted: boolean}[]} members  remote participants
 * @property {() => string | null} selfId
 * @property {() => {audio: boolean, video: boolean}} selfMuted
 * @property {() => Promise<{published: any[], subscriptions: any[]}>} serverStats
 * @property {(id: string, quality: Quality, details: [string, string][]) => void} show
 */

export class QualityMonitor {
  /**
   * @param {QualityHost} host
   * @param {number} [everyMs]
   */
  constructor(host, everyMs = 2000) {
    this.host = host;
    this.everyMs = everyMs;
    /** @type {Map<string, {t: number, frames: number, packets: number, lost: number, bytes: number}>} */
    this.prev = new Map();
    /** @type {any} */
    this.timer = null;
    this.busy = false;
  }

  start() {
    if (this.timer) return;
    this.timer = setInterval(() => this.sample().catch(() => {}), this.everyMs);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    this.prev.clear();
  }

  async sample() {
    const pc = this.host.pc();
    if (!pc || this.busy) return;
    this.busy = true;
    try {
      await this._sample(pc);
    } finally {
      this.busy = false;
    }
  }

  /** @param {RTCPeerConnection} pc */
  async _sample(pc) {
    const [report, server] = await Promise.all([
      pc.getStats(),
      this.host.serverStats().catch(() => ({ published: [], subscriptions: [] })),
    ]);
    const now = performance.now();
    /** @type {Map<string, any>} */
    const inbound = new Map();
    /** @type {any[]} */
    const outbound = [];
    /** @type {Map<string, any>} */
    const remoteInbound = new Map();
    let rttMs = null;
    report.forEach((/** @type {any} */ s) => {
      if (s.type === "inbound-rtp" && s.mid != null) inbound.set(String(s.mid), s);
      else if (s.type === "outbound-rtp") outbound.push(s);
      else if (s.type === "remote-inbound-rtp") remoteInbound.set(s.localId, s);
      else if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded" && s.currentRoundTripTime != null) {
        rttMs = s.currentRoundTripTime * 1000;
      }
    });
    const connected = pc.connectionState === "connected";
    const subs = new Map(server.subscriptions.map((r) => [String(r.mid), r]));

    for (const m of this.host.members()) {
      const infos = this.host.trackInfos().filter((t) => t.participantId === m.id && t.source !== "screen");
      const video = infos.find((t) => t.kind === "video");
      const audio = infos.find((t) => t.kind === "audio");
      const pick = !m.videoMuted && video ? video : !m.audioMuted && audio ? audio : null;
      if (!pick) {
        this.host.show(m.id, connected ? "unknown" : "lost", [["Sending", "nothing (muted)"]]);
        continue;
      }
      const s = inbound.get(pick.mid);
      const d = this._delta(`in:${pick.mid}`, now, {
        frames: s?.framesDecoded ?? 0,
        packets: s?.packetsReceived ?? 0,
        lost: s?.packetsLost ?? 0,
        bytes: s?.bytesReceived ?? 0,
      });
      if (!d) continue; // first sample: nothing to compare yet
      const fps = pick.kind === "video" ? (s?.framesPerSecond ?? d.frames / d.dt) : null;
      const lossPct = d.packets + d.lost > 0 ? (100 * Math.max(0, d.lost)) / (d.packets + Math.max(0, d.lost)) : 0;
      const sub = subs.get(pick.mid);
      // RTCP round trip as the server measures it for this stream; the ICE pair's (consent
      // checks, answered late by a busy server) only when there is none
      const rtt = sub?.rtt != null && sub.rtt >= 0 ? sub.rtt * 1000 : rttMs;
      const flowing = connected && (pick.kind === "video" ? d.frames > 0 : d.packets > 0);
      const q = classify({ kind: pick.kind, flowing, fps, lossPct, rttMs: rtt });
      /** @type {[string, string][]} */
      const details = [
        ["Receiving", pick.kind],
        ["Bitrate", `${Math.round((d.bytes * 8) / d.dt / 1000)} kbit/s`],
        ["Loss", `${lossPct.toFixed(1)} %`],
        ["Round trip", rtt === null ? "n/a" : `${Math.round(rtt)} ms`],
      ];
      if (fps !== null) details.splice(2, 0, ["Frame rate", `${fps.toFixed(0)} fps`]);
      if (sub) {
        details.push(["Server sends", `${Math.round(sub.bitrateOut / 1000)} kbit/s, ${Number(sub.fps ?? 0).toFixed(0)} fps`]);
        if (sub.nacks || sub.plis) details.push(["Repairs", `${sub.nacks ?? 0} NACK, ${sub.plis ?? 0} PLI`]);
      }
      this.host.show(m.id, q, details);
    }

    // our own upload: what we send (outbound-rtp), what the server reports back
    const selfId = this.host.selfId();
    if (!selfId) return;
    const muted = this.host.selfMuted();
    const out = outbound.find((o) => o.kind === "video" && !muted.video) ?? outbound.find((o) => o.kind === "audio" && !muted.audio);
    if (!out) {
      this.host.show(selfId, connected ? "unknown" : "lost", [["Sending", "nothing"]]);
      return;
    }
    const d = this._delta(`out:${out.id}`, now, {
      frames: out.framesEncoded ?? 0,
      packets: out.packetsSent ?? 0,
      lost: 0,
      bytes: out.bytesSent ?? 0,
    });
    if (!d) return;
    const ri = remoteInbound.get(out.id);
    const lossPct = ri?.fractionLost != null ? ri.fractionLost * 100 : null;
    const rtt = ri?.roundTripTime != null ? ri.roundTripTime * 1000 : rttMs;
    const fps = out.kind === "video" ? (out.framesPerSecond ?? d.frames / d.dt) : null;
    const pub = server.published.find((p) => p.kind === out.kind && p.source !== "screen");
    const flowing = connected && (out.kind === "video" ? d.frames > 0 : d.packets > 0);
    /** @type {[string, string][]} */
    const details = [
      ["Sending", out.kind],
      ["Bitrate", `${Math.round((d.bytes * 8) / d.dt / 1000)} kbit/s`],
      ["Loss", lossPct === null ? "n/a" : `${lossPct.toFixed(1)} %`],
      ["Round trip", rtt === null ? "n/a" : `${Math.round(rtt)} ms`],
    ];
    if (fps !== null) details.splice(2, 0, ["Frame rate", `${fps.toFixed(0)} fps`]);
    if (pub) details.push(["Server receives", `${Math.round(pub.bitrateIn / 1000)} kbit/s, ${Number(pub.fps ?? 0).toFixed(0)} fps`]);
    this.host.show(selfId, classify({ kind: out.kind, flowing, fps, lossPct, rttMs: rtt }), details);
  }

  /**
   * @param {string} key
   * @param {number} t
   * @param {{frames: number, packets: number, lost: number, bytes: number}} v
   * @returns {{dt: number, frames: number, packets: number, lost: number, bytes: number} | null}
   */
  _delta(key, t, v) {
    const p = this.prev.get(key);
    this.prev.set(key, { t, ...v });
    if (!p || t <= p.t) return null;
    const dt = (t - p.t) / 1000;
    return { dt, frames: v.frames - p.frames, packets: v.packets - p.packets, lost: v.lost - p.lost, bytes: v.bytes - p.bytes };
  }
}
