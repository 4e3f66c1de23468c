// Unit tests of viewer pause (issue #12): web/js/ui/viewer-pause.js (which remote videos
// to pause), protocol.js's `video pause` / `video state` and the camera's temporal layers.

import assert from "node:assert/strict";
import { test } from "node:test";

import { CAMERA_SCALABILITY_MODE, PeerSession, cameraEncodings } from "../js/protocol.js";
import { ViewerPause } from "../js/ui/viewer-pause.js";
import { CAPS, FakePeerConnection, FakeTrack, setup, until } from "./fakes.js";

/** A controller with a fake observer, fake timers and a recording `send`. */
function makePause(/** @type {{fail?: boolean}} */ opts = {}) {
  /** @type {[string, string, boolean][]} */
  const sent = [];
  /** @type {Map<string, object>} fake <video> elements by "pid/source" */
  const elements = new Map();
  /** @type {Set<object>} */
  const observed = new Set();
  /** @type {((entries: {target: any, isIntersecting: boolean}[]) => void) | null} */
  let report = null;
  /** @type {(() => void)[]} */
  const timers = [];
  const pause = new ViewerPause({
    send: async (pid, source, paused) => {
      sent.push([pid, source, paused]);
      if (opts.fail) throw Object.assign(new Error("nope"), { code: "rate_limited" });
    },
    elementFor: (pid, source) => /** @type {any} */ (elements.get(`${pid}/${source}`) ?? null),
    observer: (callback) => {
      report = callback;
      return {
        observe: (el) => observed.add(el),
        unobserve: (el) => observed.delete(el),
        disconnect: () => observed.clear(),
      };
    },
    setTimeout: (fn) => {
      timers.push(fn);
      return timers.length;
    },
    clearTimeout: () => {},
  });
  const video = (/** @type {string} */ key) => {
    const el = { key };
    elements.set(key, el);
    return el;
  };
  /** @param {any} el @param {boolean} shown */
  const show = (el, shown) => report?.([{ target: el, isIntersecting: shown }]);
  /** run the pending pause timers (the delay has passed) */
  const elapse = () => {
    for (const fn of timers.splice(0)) fn();
  };
  return { pause, sent, video, show, elapse, observed, timers };
}

const ROWS = [
  { participantId: "p1", source: "camera", kind: "video", mid: "1" },
  { participantId: "p1", source: "microphone", kind: "audio", mid: "2" },
  { participantId: "p2", source: "camera", kind: "video", mid: "3" },
];

test("viewer pause: a video not shown is paused after the delay, resumed at once when shown", async () => {
  const { pause, sent, video, show, elapse, observed } = makePause();
  const a = video("p1/camera");
  const b = video("p2/camera");
  pause.setRows(ROWS);
  assert.deepEqual([...observed], [a, b], "every remote video (no audio) is observed");
  show(a, true);
  show(b, true);
  elapse();
  assert.deepEqual(sent, [], "shown (or not known yet): nothing to say");
  show(b, false); // laid out off-stage
  assert.deepEqual(sent, [], "not before the delay");
  show(b, true); // it came back in time: nothing sent at all
  elapse();
  assert.deepEqual(sent, []);
  show(b, false);
  elapse();
  assert.deepEqual(sent, [["p2", "camera", true]]);
  show(b, false);
  elapse();
  assert.equal(sent.length, 1, "only changes are sent");
  show(b, true);
  assert.deepEqual(sent.at(-1), ["p2", "camera", false], "resumed without waiting");
});

test("viewer pause: a hidden page pauses every remote video, showing it again resumes them", () => {
  const { pause, sent, video, show, elapse } = makePause();
  const a = video("p1/camera");
  video("p2/camera");
  pause.setRows(ROWS);
  show(a, false);
  pause.setPageHidden(true);
  elapse();
  assert.deepEqual(sent, [
    ["p1", "camera", true],
    ["p2", "camera", true],
  ]);
  pause.setPageHidden(false);
  assert.deepEqual(sent.slice(2), [["p2", "camera", false]], "p1's tile is still off-stage");
});

test("viewer pause: new rows resend the pauses still wanted, vanished rows are forgotten", () => {
  const { pause, sent, video, show, elapse, observed } = makePause();
  const a = video("p1/camera");
  pause.setRows(ROWS);
  show(a, false);
  elapse();
  assert.deepEqual(sent, [["p1", "camera", true]]);
  // a renegotiation: the server may have started a new subscription (unpaused)
  pause.setRows(ROWS);
  elapse();
  assert.deepEqual(sent.slice(1), [["p1", "camera", true]]);
  // p1 leaves: nothing more is said about it, and a later p1 row starts from scratch
  pause.setRows(ROWS.filter((r) => r.participantId !== "p1"));
  assert.ok(!observed.has(a));
  show(a, true);
  assert.equal(sent.length, 2);
  pause.clear();
  pause.close();
  assert.equal(observed.size, 0);
});

test("viewer pause: a refused request is tried again at the next change", async () => {
  const { pause, sent, video, show, elapse } = makePause({ fail: true });
  const a = video("p1/camera");
  pause.setRows(ROWS);
  show(a, false);
  elapse();
  await until(() => pause.sent.get("p1\ncamera") === false);
  pause.setPageHidden(true);
  elapse();
  assert.deepEqual(sent, [
    ["p1", "camera", true],
    ["p1", "camera", true],
    ["p2", "camera", true],
  ]);
});

test("setVideoPaused sends `video pause` once joined; `video state` becomes a video-state event", async () => {
  const { socket, client } = setup({ "video pause": () => ({ ok: true }) });
  assert.equal(await client.setVideoPaused("p1", "camera", true), false, "not joined: nothing sent");
  await assert.rejects(client.setVideoPaused("p1", /** @type {any} */ ("microphone"), true), { code: "bad_request" });
  await client.join("r1", "Me");
  assert.equal(await client.setVideoPaused("p1", "screen", true), true);
  assert.deepEqual(socket.named("video pause"), [{ participantId: "p1", source: "screen", paused: true }]);
  /** @type {any[]} */
  const states = [];
  client.addEventListener("video-state", (e) => states.push(/** @type {CustomEvent} */ (e).detail));
  socket.fire("video state", { participantId: "p1", source: "camera", state: "paused-link", layer: null });
  socket.fire("video state", { participantId: "p1", source: "camera", state: "active", layer: 1 });
  socket.fire("video state", { participantId: "p1", source: "camera", state: "frozen" }); // ignored
  socket.fire("video state", "garbage"); // ignored
  assert.deepEqual(states, [
    { participantId: "p1", source: "camera", state: "paused-link", layer: null },
    { participantId: "p1", source: "camera", state: "active", layer: 1 },
  ]);
  await client.leave();
});

test("cameraEncodings asks for L1T3 unless the capabilities say VP8 cannot do it", () => {
  const want = [{ scalabilityMode: CAMERA_SCALABILITY_MODE }];
  assert.deepEqual(cameraEncodings(CAPS), want, "no scalabilityModes listed: try");
  const listed = (/** @type {string[]} */ modes) => ({
    getCapabilities: () => ({ codecs: [{ mimeType: "video/VP8", clockRate: 90000, scalabilityModes: modes }] }),
  });
  assert.deepEqual(cameraEncodings(/** @type {any} */ (listed(["L1T1", "L1T2", "L1T3"]))), want);
  assert.equal(cameraEncodings(/** @type {any} */ (listed(["L1T1"]))), null);
  assert.deepEqual(cameraEncodings(undefined), want);
});

/** @param {{refuse?: boolean, temporalLayers?: boolean}} opts */
function sessionWithCamera(opts) {
  /** @type {any[]} */
  const inits = [];
  const session = new PeerSession({
    createPeerConnection: (config) => {
      const pc = new FakePeerConnection(config);
      const add = pc.addTransceiver.bind(pc);
      pc.addTransceiver = (/** @type {any} */ track, /** @type {any} */ init) => {
        inits.push(init);
        if (opts.refuse && init.sendEncodings) throw new Error("OperationError: scalabilityMode");
        return add(track, init);
      };
      return /** @type {any} */ (pc);
    },
    senderCaps: CAPS,
    receiverCaps: CAPS,
    request: async () => ({ ok: true }),
    emit: () => {},
    rejoin: () => {},
    localTracks: () => [
      { track: new FakeTrack("video"), kind: "video", source: "camera" },
      { track: new FakeTrack("audio"), kind: "audio", source: "microphone" },
      { track: new FakeTrack("video"), kind: "video", source: "screen" },
    ],
    stepTimeoutMs: 200,
    reofferDelayMs: 20,
    setTimeout: (fn, ms) => setTimeout(fn, ms),
    clearTimeout: (h) => clearTimeout(h),
    log: () => {},
    temporalLayers: opts.temporalLayers,
  });
  const pc = /** @type {any} */ (session.open([]));
  return { pc, inits };
}

test("the camera (only) is published with L1T3; a browser that refuses gets a plain transceiver", () => {
  const plain = { direction: "sendonly" };
  const layered = { direction: "sendonly", sendEncodings: [{ scalabilityMode: "L1T3" }] };
  let { pc, inits } = sessionWithCamera({});
  assert.deepEqual(inits, [layered, plain, plain]);
  assert.equal(pc.transceivers.length, 3);
  ({ pc, inits } = sessionWithCamera({ refuse: true }));
  assert.deepEqual(inits, [layered, plain, plain, plain]);
  assert.equal(pc.transceivers.length, 3, "the refused attempt added nothing");
  ({ inits } = sessionWithCamera({ temporalLayers: false }));
  assert.deepEqual(inits, [plain, plain, plain]);
});
