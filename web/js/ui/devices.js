// Camera and microphone capture with device choice: one camera track and one microphone
// track at most, each replaceable by another device or stopped for real (camera light
// off); the device pickers (camera, microphone, speaker output where the browser allows)
// and a microphone level meter.

import { el } from "./dom.js";

const VIDEO = { width: { ideal: 640 }, height: { ideal: 480 } };

/** @param {any} err */
export function describeMediaError(err) {
  switch (err?.name) {
    case "NotAllowedError":
      return "camera/microphone access was refused";
    case "NotFoundError":
      return "no camera or microphone found";
    case "NotReadableError":
      return "the camera or microphone is in use by another application";
    case "OverconstrainedError":
      return "that device is no longer available";
    default:
      return String(err?.message ?? err ?? "unknown error");
  }
}

/** @returns {boolean} whether media elements can pick an audio output (setSinkId) */
export function canPickSpeaker() {
  return typeof (/** @type {any} */ (globalThis.HTMLMediaElement?.prototype))?.setSinkId === "function";
}

export class LocalMedia extends EventTarget {
  constructor() {
    super();
    /** @type {MediaStreamTrack | null} */
    this.camera = null;
    /** @type {MediaStreamTrack | null} */
    this.mic = null;
    this.cameraId = "";
    this.micId = "";
    this.speakerId = "";
    /** @type {string | null} why capture failed (null: fine) */
    this.error = null;
  }

  /** @returns {MediaStream} a stream of the current tracks (for a preview element) */
  stream() {
    return new MediaStream([this.camera, this.mic].filter((t) => t !== null));
  }

  /**
   * Ask for camera and microphone; fall back to one of them; keep what was granted.
   * @returns {Promise<void>}
   */
  async start() {
    const md = navigator.mediaDevices;
    if (!md?.getUserMedia) {
      this.error = "this browser (or an insecure http page) offers no camera access";
      return;
    }
    /** @type {any} */
    let first = null;
    for (const constraints of [{ video: VIDEO, audio: true }, { video: VIDEO }, { audio: true }]) {
      try {
        const stream = await md.getUserMedia(constraints);
        this._adopt(stream.getVideoTracks()[0] ?? null, "video");
        this._adopt(stream.getAudioTracks()[0] ?? null, "audio");
        this.error = first ? describeMediaError(first) : null;
        return;
      } catch (err) {
        first = first ?? err;
        if (/** @type {any} */ (err)?.name === "NotAllowedError") break; // refused: do not ask again
      }
    }
    this.error = describeMediaError(first);
  }

  /**
   * @param {MediaStreamTrack | null} track
   * @param {"audio" | "video"} kind
   */
  _adopt(track, kind) {
    if (kind === "video") {
      this.camera = track;
      if (track) this.cameraId = track.getSettings?.().deviceId ?? this.cameraId;
    } else {
      this.mic = track;
      if (track) this.micId = track.getSettings?.().deviceId ?? this.micId;
    }
  }

  /**
   * Open a camera (the chosen one); returns the new track. The previous one is stopped
   * now, or (`then`) after `then(track)` settled: a sender must have the new track before
   * the old one stops, or Chromium's encoder stays stalled.
   * @param {string} [deviceId]
   * @param {(track: MediaStreamTrack) => Promise<unknown>} [then]
   * @returns {Promise<MediaStreamTrack>}
   */
  async openCamera(deviceId = this.cameraId, then) {
    const video = deviceId ? { ...VIDEO, deviceId: { exact: deviceId } } : VIDEO;
    const stream = await navigator.mediaDevices.getUserMedia({ video });
    const old = this.camera;
    this._adopt(stream.getVideoTracks()[0], "video");
    try {
      if (then) await then(/** @type {MediaStreamTrack} */ (this.camera));
    } finally {
      if (old && old !== this.camera) old.stop();
    }
    this.dispatchEvent(new Event("change"));
    return /** @type {MediaStreamTrack} */ (this.camera);
  }

  /**
   * Open a microphone (the chosen one); returns the new track (the old one stops as in
   * `openCamera`).
   * @param {string} [deviceId]
   * @param {(track: MediaStreamTrack) => Promise<unknown>} [then]
   * @returns {Promise<MediaStreamTrack>}
   */
  async openMic(deviceId = this.micId, then) {
    const audio = deviceId ? { deviceId: { exact: deviceId } } : true;
    const stream = await navigator.mediaDevices.getUserMedia({ audio });
    const old = this.mic;
    const track = stream.getAudioTracks()[0];
    if (old) track.enabled = old.enabled;
    this._adopt(track, "audio");
    try {
      if (then) await then(track);
    } finally {
      if (old && old !== this.mic) old.stop();
    }
    this.dispatchEvent(new Event("change"));
    return /** @type {MediaStreamTrack} */ (this.mic);
  }

  /** Stop the camera for real (its light goes off). */
  stopCamera() {
    this.camera?.stop();
    this.camera = null;
    this.dispatchEvent(new Event("change"));
  }

  /** Stop everything (leaving). */
  stopAll() {
    this.camera?.stop();
    this.mic?.stop();
    this.camera = null;
    this.mic = null;
    this.dispatchEvent(new Event("change"));
  }

  /** @returns {Promise<{cameras: MediaDeviceInfo[], mics: MediaDeviceInfo[], speakers: MediaDeviceInfo[]}>} */
  async devices() {
    const all = (await navigator.mediaDevices?.enumerateDevices?.()) ?? [];
    return {
      cameras: all.filter((d) => d.kind === "videoinput"),
      mics: all.filter((d) => d.kind === "audioinput"),
      speakers: all.filter((d) => d.kind === "audiooutput"),
    };
  }
}

/**
 * The three device pickers; `onPick(kind, deviceId)` when the user chooses another.
 */
export class DevicePickers {
  /**
   * @param {{camera: HTMLSelectElement, mic: HTMLSelectElement, speaker: HTMLSelectElement, speakerRow: HTMLElement}} parts
   * @param {LocalMedia} media
   * @param {(kind: "camera" | "mic" | "speaker", deviceId: string) => void} onPick
   */
  constructor(parts, media, onPick) {
    this.parts = parts;
    this.media = media;
    parts.camera.addEventListener("change", () => onPick("camera", parts.camera.value));
    parts.mic.addEventListener("change", () => onPick("mic", parts.mic.value));
    parts.speaker.addEventListener("change", () => onPick("speaker", parts.speaker.value));
    navigator.mediaDevices?.addEventListener?.("devicechange", () => this.refresh());
  }

  async refresh() {
    const { cameras, mics, speakers } = await this.media.devices();
    fill(this.parts.camera, cameras, this.media.cameraId, "Camera");
    fill(this.parts.mic, mics, this.media.micId, "Microphone");
    this.parts.speakerRow.hidden = !canPickSpeaker() || speakers.length === 0;
    fill(this.parts.speaker, speakers, this.media.speakerId, "Speaker");
  }
}

/**
 * @param {HTMLSelectElement} select
 * @param {MediaDeviceInfo[]} list
 * @param {string} current
 * @param {string} fallback
 */
function fill(select, list, current, fallback) {
  const options = list.map((d, i) =>
    el("option", { text: d.label || `${fallback} ${i + 1}`, attrs: { value: d.deviceId } }),
  );
  if (options.length === 0) options.push(el("option", { text: `No ${fallback.toLowerCase()} found`, attrs: { value: "" } }));
  select.replaceChildren(...options);
  select.disabled = list.length === 0;
  if (current && list.some((d) => d.deviceId === current)) select.value = current;
}

/**
 * A microphone level meter on `bar` (its width follows the level) while `running()`.
 */
export class MicMeter {
  /** @param {HTMLElement} bar */
  constructor(bar) {
    this.bar = bar;
    /** @type {AudioContext | null} */
    this.ctx = null;
    /** @type {MediaStreamAudioSourceNode | null} */
    this.source = null;
    /** @type {AnalyserNode | null} */
    this.analyser = null;
    this.frame = 0;
  }

  /** @param {MediaStreamTrack | null} track */
  watch(track) {
    this.stop();
    if (!track) return;
    try {
      const AC = /** @type {any} */ (globalThis).AudioContext ?? /** @type {any} */ (globalThis).webkitAudioContext;
      this.ctx = this.ctx ?? new AC();
      const ctx = /** @type {AudioContext} */ (this.ctx);
      if (ctx.state === "suspended") {
        // an AudioContext made before any user gesture starts suspended: resume on the first
        const resume = () => ctx.resume?.().catch(() => {});
        resume();
        for (const type of ["pointerdown", "keydown"]) document.addEventListener(type, resume, { once: true });
      }
      this.source = ctx.createMediaStreamSource(new MediaStream([track]));
      this.analyser = ctx.createAnalyser();
      this.analyser.fftSize = 512;
      this.source.connect(this.analyser);
    } catch {
      return;
    }
    const data = new Uint8Array(/** @type {AnalyserNode} */ (this.analyser).fftSize);
    const tick = () => {
      if (!this.analyser) return;
      this.analyser.getByteTimeDomainData(data);
      let peak = 0;
      for (const v of data) peak = Math.max(peak, Math.abs(v - 128));
      const level = Math.min(1, (peak / 128) * 1.6);
      this.bar.style.transform = `scaleX(${level.toFixed(3)})`;
      this.bar.parentElement?.setAttribute("aria-valuenow", String(Math.round(level * 100)));
      this.frame = requestAnimationFrame(tick);
    };
    tick();
  }

  stop() {
    cancelAnimationFrame(this.frame);
    this.source?.disconnect();
    this.source = null;
    this.analyser = null;
    this.bar.style.transform = "scaleX(0)";
  }
}
