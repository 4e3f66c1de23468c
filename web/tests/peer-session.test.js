// Unit tests of PeerSession (web/js/protocol.js): the per-join object that owns the
// RTCPeerConnection and its negotiation state, driven through fake hooks.

import assert from "node:assert/strict";
import { test } from "node:test";

import { PeerSession } from "../js/protocol.js";
import { CAPS, FakePeerConnection, FakeTrack, setup, settle, until } from "./fakes.js";

/**
 * A session with recording hooks; `replies[event]` answers requests (default ok).
 * @param {Record<string, (data: any) => any>} [replies]
 */
function makeSession(replies = {}) {
  /** @type {{event: string, data: any}[]} */
  const requests = [];
  /** @type {{type: string, detail: any}[]} */
  const emitted = [];
  /** @type {string[]} */
  const rejoins = [];
  /** @type {any[]} */
  const local = [];
  const session = new PeerSession({
    createPeerConnection: (config) => /** @type {any} */ (new FakePeerConnection(config)),
    senderCaps: CAPS,
    receiverCaps: CAPS,
    request: async (event, data) => {
      requests.push({ event, data });
      const reply = replies[event];
      if (reply) return reply(data);
      if (event === "sdp") return { ok: true, description: { type: "answer", sdp: `answer-to-${data.description.sdp}` } };
      return { ok: true };
    },
    emit: (type, detail) => emitted.push({ type, detail }),
    rejoin: (reason) => rejoins.push(reason),
    localTracks: () => local,
    stepTimeoutMs: 200,
    reofferDelayMs: 20,
    setTimeout: (fn, ms) => setTimeout(fn, ms),
    clearTimeout: (h) => clearTimeout(h),
    log: () => {},
  });
  return { session, requests, emitted, rejoins, local };
}

test("a session has no peer connection until open; open attaches every local track", () => {
  const { session, local } = makeSession();
  local.push({ track: new FakeTrack("video"), kind: "video", source: "camera" }, { track: new FakeTrack("audio"), kind: "audio", source: "microphone" });
  assert.equal(session.pc, null);
  const pc = /** @type {any} */ (session.open([{ urls: "stun:x" }]));
  assert.equal(session.pc, pc);
  assert.deepEqual(pc.config, { iceServers: [{ urls: "stun:x" }], bundlePolicy: "max-bundle" });
  assert.deepEqual(pc.log, ["addTransceiver:video:sendonly", "addTransceiver:audio:sendonly"]);
  assert.equal(session.senders.size, 2);
  assert.deepEqual(pc.transceivers[0].codecPreferences.map((/** @type {any} */ c) => c.mimeType), ["video/VP8", "video/rtx"]);
});

test("negotiate sends the offer with source rows, then trickles the held candidates", async () => {
  const { session, requests, local } = makeSession();
  local.push({ track: new FakeTrack("video"), kind: "video", source: "camera" });
  const pc = /** @type {any} */ (session.open([]));
  pc.fireCandidate("candidate:early");
  assert.equal(requests.length, 0, "held until our description is sent");
  await session.renegotiate();
  assert.deepEqual(
    requests.map((r) => r.event),
    ["sdp", "ice candidates"],
  );
  assert.deepEqual(requests[0].data.tracks, [{ mid: "0", source: "camera" }]);
  assert.equal(requests[1].data.candidate.candidate, "candidate:early");
  pc.fireCandidate(null);
  assert.deepEqual(requests.at(-1), { event: "ice candidates", data: { candidate: null } });
  assert.equal(pc.remoteDescription.sdp, "answer-to-client-offer-1");
});

test("a closed session ignores its late callbacks and closes its peer connection once", async () => {
  const { session, requests, emitted, rejoins } = makeSession();
  const pc = /** @type {any} */ (session.open([]));
  const hadTracks = session.close();
  assert.equal(hadTracks, false);
  assert.equal(pc.closed, true);
  assert.equal(session.pc, null);
  assert.equal(session.closed, true);
  pc.fireCandidate("candidate:late");
  pc.setConnectionState("failed");
  await session.renegotiate();
  assert.deepEqual(requests, []);
  assert.deepEqual(emitted, []);
  assert.deepEqual(rejoins, []);
  assert.equal(session.close(), false); // idempotent
});

test("ICE failure asks the owner to rejoin", () => {
  const { session, emitted, rejoins } = makeSession();
  const pc = /** @type {any} */ (session.open([]));
  pc.setConnectionState("failed");
  assert.deepEqual(emitted, [{ type: "connection", detail: { state: "failed" } }]);
  assert.deepEqual(rejoins, ["ice_failed"]);
});

test("server offers label remote tracks; close reports they were announced", async () => {
  const { session, emitted } = makeSession();
  session.open([]);
  /** @type {any} */
  const reply = await new Promise((resolve) =>
    session.onServerOffer(
      {
        description: { type: "offer", sdp: "offer mids=0:video" },
        tracks: [{ mid: "0", participantId: "p1", kind: "video", source: "screen" }],
      },
      resolve,
    ),
  );
  assert.equal(reply.description.type, "answer");
  await settle(1);
  assert.equal(session.remoteTracks.length, 1);
  assert.equal(session.remoteTracks[0].source, "screen");
  assert.equal(emitted.filter((e) => e.type === "tracks").length, 1);
  assert.equal(session.close(), true);
  assert.deepEqual(session.remoteTracks, []);
});

test("detach parks the transceiver inactive; a new screen reuses it; replaceTrack swaps in place", async () => {
  const { session, local } = makeSession();
  const screen = { track: new FakeTrack("video"), kind: "video", source: "screen" };
  local.push(screen);
  const pc = /** @type {any} */ (session.open([]));
  assert.equal(await session.detach(/** @type {any} */ (screen)), true);
  assert.equal(pc.transceivers[0].direction, "inactive");
  assert.equal(pc.transceivers[0].sender.track, null);
  assert.equal(await session.detach(/** @type {any} */ (screen)), false);
  const again = { track: new FakeTrack("video"), kind: "video", source: "screen" };
  session.attach(/** @type {any} */ (again));
  assert.equal(pc.transceivers.length, 1);
  assert.equal(pc.transceivers[0].direction, "sendonly");
  const next = new FakeTrack("video");
  again.track = next;
  assert.equal(await session.replaceTrack(/** @type {any} */ (again)), true);
  assert.equal(pc.transceivers[0].sender.track, next);
  assert.equal(pc.log.filter((l) => l === "createOffer").length, 0, "no renegotiation");
});

test("a step that never settles times out and asks for a rejoin", async () => {
  const { session, emitted, rejoins } = makeSession();
  session.open([]);
  await session.enqueue(() => new Promise(() => {}));
  assert.equal(emitted.at(-1)?.type, "error");
  assert.equal(emitted.at(-1)?.detail.code, "timeout");
  assert.deepEqual(rejoins, ["negotiation_timeout"]);
});

test("the client makes a new session per join and throws the old one away", async () => {
  const { socket, client } = setup();
  client.publish(/** @type {any} */ (new FakeTrack("video")));
  await client.join("r1", "Bob");
  const first = client.session;
  assert.ok(first && first.pc === client.pc);
  socket.drop();
  assert.equal(first.closed, true);
  assert.equal(client.session, null);
  socket.connect();
  await until(() => client.state === "joined" && client.session !== null);
  assert.notEqual(client.session, first);
  assert.equal(client.session?.closed, false);
  await client.leave();
  assert.equal(client.session, null);
});

test("replaceTrack switches the camera on the same sender, and null stops sending", async () => {
  const { socket, client } = setup();
  const cam = new FakeTrack("video");
  client.publish(/** @type {any} */ (cam));
  await client.join("r1", "Bob");
  await until(() => socket.named("sdp").length === 1 && client.pc?.signalingState === "stable");
  const pc = /** @type {any} */ (client.pc);
  const other = new FakeTrack("video");
  await client.replaceTrack("camera", /** @type {any} */ (other));
  assert.equal(client.pc, pc);
  assert.equal(pc.transceivers[0].sender.track, other);
  assert.equal(client.localTrack("camera"), other);
  await client.setMuted("video", true);
  await client.replaceTrack("camera", null);
  assert.equal(pc.transceivers[0].sender.track, null);
  const back = new FakeTrack("video");
  await client.replaceTrack("camera", /** @type {any} */ (back));
  assert.equal(back.enabled, false, "a track swapped in while muted stays disabled");
  assert.equal(socket.named("sdp").length, 1, "no renegotiation");
  // a rejoin while the camera is stopped still offers a camera transceiver (no track)
  await client.replaceTrack("camera", null);
  socket.drop();
  socket.connect();
  await until(() => socket.named("sdp").length === 2);
  assert.deepEqual(socket.named("sdp")[1].tracks, [{ mid: "0", source: "camera" }]);
  assert.equal(/** @type {any} */ (client.pc).transceivers[0].sender.track, null);
});

test("serverStats asks the server for our own figures", async () => {
  const { client } = setup({
    stats: () => ({ ok: true, connectionState: "connected", published: [], subscriptions: [{ mid: "3", fps: 12 }] }),
  });
  await client.join("r1", "Bob");
  const stats = await client.serverStats();
  assert.equal(stats.connectionState, "connected");
  assert.equal(stats.subscriptions[0].fps, 12);
});
