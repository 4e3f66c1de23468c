// Unit tests of web/js/protocol.js with a fake Socket.IO socket and a fake
// RTCPeerConnection: `node --test web/tests/` (no browser, no server).

import assert from "node:assert/strict";
import { test } from "node:test";

import { ProtocolError, SfuClient, pickCodecs, validateJoin } from "../js/protocol.js";
import { CAPS, FakePeerConnection, FakeSocket, FakeTrack, JOIN_OK, setup, settle, until } from "./fakes.js";

// ---------------------------------------------------------------------- tests

test("validateJoin enforces the room charset and the name length", () => {
  assert.deepEqual(validateJoin("room_1-A", "  Bob "), { room: "room_1-A", name: "Bob" });
  for (const room of ["", "a b", "x".repeat(65), "é", "a/b"]) {
    assert.throws(() => validateJoin(room, "Bob"), (e) => e instanceof ProtocolError && e.code === "bad_request");
  }
  assert.throws(() => validateJoin("r", "   "), { code: "bad_request" });
  assert.throws(() => validateJoin("r", "n".repeat(65)), { code: "bad_request" });
});

test("pickCodecs keeps VP8 + RTX / Opus in that order", () => {
  assert.deepEqual(
    pickCodecs(CAPS.getCapabilities("video").codecs, "video").map((c) => c.mimeType),
    ["video/VP8", "video/rtx"],
  );
  assert.deepEqual(
    pickCodecs(CAPS.getCapabilities("audio").codecs, "audio").map((c) => c.mimeType),
    ["audio/opus"],
  );
});

test("join publishes send-only VP8/Opus transceivers, offers, and applies the ack's answer", async () => {
  const { socket, client, events } = setup();
  const video = new FakeTrack("video");
  const audio = new FakeTrack("audio");
  client.publish(/** @type {any} */ (video));
  client.publish(/** @type {any} */ (audio));
  const joined = await client.join("r1", "Bob");
  assert.equal(joined.id, "me");
  assert.deepEqual(socket.named("join"), [{ room: "r1", name: "Bob" }]);
  assert.equal(events.joined.length, 1);
  assert.equal(events.joined[0].chat[0].text, "hi");
  assert.equal(events.joined[0].rejoin, false);
  assert.deepEqual(client.participants.map((p) => p.name), ["Alice"]);
  assert.equal(client.state, "joined");

  await until(() => client.pc?.signalingState === "stable" && socket.named("sdp").length === 1);
  await settle(5);
  const pc = /** @type {FakePeerConnection} */ (/** @type {unknown} */ (client.pc));
  assert.deepEqual(pc.config, { iceServers: [], bundlePolicy: "max-bundle" });
  assert.deepEqual(pc.log, [
    "addTransceiver:video:sendonly",
    "addTransceiver:audio:sendonly",
    "createOffer",
    "setLocal:offer",
    "setRemote:answer",
  ]);
  assert.deepEqual(pc.transceivers[0].codecPreferences?.map((c) => c.mimeType), ["video/VP8", "video/rtx"]);
  assert.deepEqual(pc.transceivers[1].codecPreferences?.map((c) => c.mimeType), ["audio/opus"]);
  assert.deepEqual(socket.named("sdp")[0], {
    description: { type: "offer", sdp: "client-offer-1" },
    tracks: [
      { mid: "0", source: "camera" },
      { mid: "1", source: "microphone" },
    ],
  });
  assert.equal(pc.remoteDescription.sdp, "server-answer-to-client-offer-1");
});

test("a receive-only client does not offer; it answers the server's offer in the ack", async () => {
  const { socket, client, events } = setup();
  await client.join("r1", "Viewer");
  await settle(5);
  assert.equal(socket.named("sdp").length, 0);
  const reply = await socket.serverOffer({
    description: { type: "offer", sdp: "offer mids=0:video,1:audio" },
    tracks: [
      { mid: "0", participantId: "p1", kind: "video", source: "camera" },
      { mid: "1", participantId: "p1", kind: "audio", source: "microphone" },
    ],
  });
  assert.deepEqual(reply, { description: { type: "answer", sdp: "client-answer-to-offer mids=0:video,1:audio" } });
  const last = events.tracks.at(-1).tracks;
  assert.deepEqual(
    last.map((/** @type {any} */ t) => [t.mid, t.participantId, t.kind, t.source]),
    [
      ["0", "p1", "video", "camera"],
      ["1", "p1", "audio", "microphone"],
    ],
  );
  assert.equal(last[0].track.kind, "video");

  // a later offer drops mid 1 (p1 stopped its microphone): the track list follows
  await socket.serverOffer({
    description: { type: "offer", sdp: "offer mids=0:video,1:audio" },
    tracks: [{ mid: "0", participantId: "p1", kind: "video", source: "camera" }],
  });
  assert.deepEqual(
    events.tracks.at(-1).tracks.map((/** @type {any} */ t) => t.mid),
    ["0"],
  );
});

test("a malformed server offer is answered with an error envelope, not a crash", async () => {
  const { socket, client } = setup();
  await client.join("r1", "Viewer");
  const reply = await socket.serverOffer({ description: { type: "answer", sdp: "x" } });
  assert.equal(reply.ok, false);
  assert.equal(reply.error.code, "bad_request");
});

test("ack envelope: error codes are surfaced as ProtocolError", async () => {
  const { client } = setup({
    "chat message": (d) =>
      d.text === "spam"
        ? { ok: false, error: { code: "rate_limited", message: "slow down" } }
        : d.text === "weird"
          ? "not an envelope"
          : { ok: true, message: { id: "m1", from: "me", name: "Bob", text: d.text, ts: 1 } },
  });
  await client.join("r1", "Bob");
  const message = await client.sendChat("  hello  ");
  assert.equal(message.text, "hello");
  await assert.rejects(client.sendChat("spam"), (e) => e instanceof ProtocolError && e.code === "rate_limited" && e.message === "slow down");
  await assert.rejects(client.sendChat("weird"), { code: "bad_response" });
  await assert.rejects(client.sendChat("   "), { code: "bad_request" });
  await assert.rejects(client.sendChat("x".repeat(2001)), { code: "bad_request" });
});

test("an ack that never comes times out", async () => {
  const { client } = setup({ "chat message": () => undefined }, { ackTimeoutMs: 20 });
  await client.join("r1", "Bob");
  await assert.rejects(client.sendChat("hello"), { code: "timeout" });
});

test("room_full is fatal: join rejects, error event, no retry", async () => {
  const { socket, client, events } = setup({
    join: () => ({ ok: false, error: { code: "room_full", message: "room r1 is full (4)" } }),
  });
  await assert.rejects(client.join("r1", "Bob"), { code: "room_full", message: "room r1 is full (4)" });
  assert.deepEqual(events.error, [{ code: "room_full", message: "room r1 is full (4)", fatal: true }]);
  assert.equal(client.state, "failed");
  assert.equal(socket.connected, false);
  await settle(20);
  assert.equal(socket.named("join").length, 1);
});

test("a transient join error is retried", async () => {
  let calls = 0;
  const { socket, client, events } = setup({
    join: () => (++calls === 1 ? { ok: false, error: { code: "internal_error", message: "oops" } } : JOIN_OK),
  });
  const joined = await client.join("r1", "Bob");
  assert.equal(joined.id, "me");
  assert.equal(socket.named("join").length, 2);
  assert.equal(events.error[0].code, "internal_error");
  assert.equal(events.error[0].fatal, false);
});

test("glare: invalid_state -> roll back, answer the server's offer, offer again", async () => {
  let sdpCalls = 0;
  /** @type {FakeSocket} */
  let sock;
  const { socket, client } = setup({
    sdp: (d) => {
      sdpCalls += 1;
      if (sdpCalls === 1) {
        // the server's own offer is in flight: it arrives before the refusal
        setImmediate(() => {
          sock.serverOffer({
            description: { type: "offer", sdp: "offer mids=0:video,5:video" },
            tracks: [{ mid: "5", participantId: "p1", kind: "video", source: "camera" }],
          }).then((r) => (serverReply = r));
        });
        return { ok: false, error: { code: "invalid_state", message: "the server's offer awaits your answer" } };
      }
      return { ok: true, description: { type: "answer", sdp: `server-answer-to-${d.description.sdp}` } };
    },
  });
  sock = socket;
  /** @type {any} */
  let serverReply = null;
  client.publish(/** @type {any} */ (new FakeTrack("video")));
  await client.join("r1", "Bob");
  await until(() => sdpCalls === 2 && client.pc?.signalingState === "stable" && client.pc?.remoteDescription?.type === "answer");
  const pc = /** @type {FakePeerConnection} */ (/** @type {unknown} */ (client.pc));
  assert.deepEqual(pc.log, [
    "addTransceiver:video:sendonly",
    "createOffer",
    "setLocal:offer",
    "setLocal:rollback",
    "setRemote:offer",
    "createAnswer",
    "setLocal:answer",
    "createOffer",
    "setLocal:offer",
    "setRemote:answer",
  ]);
  assert.equal(serverReply.description.type, "answer");
  assert.equal(client.remoteTracks[0].participantId, "p1");
});

test("glare: a server offer that arrives after the refusal is still answered, then we re-offer", async () => {
  let sdpCalls = 0;
  const { socket, client } = setup({
    sdp: (d) =>
      ++sdpCalls === 1
        ? { ok: false, error: { code: "invalid_state", message: "busy" } }
        : { ok: true, description: { type: "answer", sdp: `server-answer-to-${d.description.sdp}` } },
  }, { reofferDelayMs: 10000 });
  client.publish(/** @type {any} */ (new FakeTrack("video")));
  await client.join("r1", "Bob");
  await until(() => client.pc?.log.includes("setLocal:rollback") ?? false);
  assert.equal(sdpCalls, 1);
  const reply = await socket.serverOffer({ description: { type: "offer", sdp: "offer mids=0:video" }, tracks: [] });
  assert.equal(reply.description.type, "answer");
  await until(() => sdpCalls === 2 && client.pc?.remoteDescription?.type === "answer");
});

test("local candidates are held until our description is sent, then trickled in order", async () => {
  /** @type {FakeSocket} */
  let sock;
  /** @type {string[]} */
  const order = [];
  const { socket, client } = setup({
    sdp: (d) => {
      order.push("sdp");
      return { ok: true, description: { type: "answer", sdp: `a-${d.description.sdp}` } };
    },
    "ice candidates": (d) => {
      order.push(d.candidate === null ? "end" : d.candidate.candidate);
      return { ok: true };
    },
  });
  sock = socket;
  void sock;
  client.publish(/** @type {any} */ (new FakeTrack("video")));
  // gather as soon as the peer connection exists, before the offer goes out
  const origin = FakePeerConnection.prototype.setLocalDescription;
  FakePeerConnection.prototype.setLocalDescription = async function (d) {
    await origin.call(this, d);
    if (d.type === "offer") {
      this.fireCandidate("candidate:1 1 udp 1 127.0.0.1 5000 typ host");
      this.fireCandidate("candidate:2 1 udp 1 127.0.0.1 5001 typ host");
    }
  };
  try {
    await client.join("r1", "Bob");
    await until(() => order.length === 3);
    const pc = /** @type {FakePeerConnection} */ (/** @type {unknown} */ (client.pc));
    pc.fireCandidate(null);
    await until(() => order.length === 4);
  } finally {
    FakePeerConnection.prototype.setLocalDescription = origin;
  }
  assert.deepEqual(order, [
    "sdp",
    "candidate:1 1 udp 1 127.0.0.1 5000 typ host",
    "candidate:2 1 udp 1 127.0.0.1 5001 typ host",
    "end",
  ]);
  assert.deepEqual(socket.named("ice candidates")[0], {
    candidate: { candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host", sdpMid: "0", sdpMLineIndex: 0 },
  });
  assert.deepEqual(socket.named("ice candidates")[2], { candidate: null });
});

test("room events update the participant list and are re-dispatched", async () => {
  const { socket, client, events } = setup();
  await client.join("r1", "Bob");
  socket.fire("participant joined", { id: "p2", name: "Carol", audioMuted: false, videoMuted: false });
  socket.fire("participant updated", { id: "p2", name: "Carol", audioMuted: true, videoMuted: false });
  socket.fire("chat message", { id: "c2", from: "p2", name: "Carol", text: "yo", ts: 2 });
  socket.fire("participant left", { id: "p1", reason: "left" });
  socket.fire("error", { code: "server_busy", message: "the server is shutting down" });
  assert.equal(events["participant-joined"][0].participant.name, "Carol");
  assert.equal(events["participant-updated"][0].participant.audioMuted, true);
  assert.equal(events.chat[0].message.text, "yo");
  assert.deepEqual(events["participant-left"], [{ id: "p1", reason: "left" }]);
  assert.deepEqual(client.participants.map((p) => p.id), ["p2"]);
  assert.deepEqual(events.error.at(-1), { code: "server_busy", message: "the server is shutting down", fatal: false });
});

test("active speaker and recording: join ack flags, events, and the recording request", async () => {
  const { socket, client, events } = setup({
    join: () => ({ ...JOIN_OK, recording: true, canRecord: true }),
    recording: (d) => ({ ok: true, recording: { id: "r1", room: "r1", startedAt: "t", files: [], manifest: "m", active: d.active } }),
  });
  const joined = await client.join("r1", "Bob");
  assert.equal(joined.recording, true);
  assert.equal(client.canRecord, true);
  assert.deepEqual(events.recording, [{ active: true }]);
  socket.fire("active speaker", { participantId: "p1", levels: { p1: 0.5, p2: 7, p3: "x" } });
  assert.deepEqual(events["active-speaker"], [{ participantId: "p1", levels: { p1: 0.5, p2: 1 } }]);
  assert.equal(client.activeSpeaker, "p1");
  socket.fire("active speaker", { participantId: null, levels: {} });
  assert.equal(client.activeSpeaker, null);
  socket.fire("recording", { active: false });
  assert.equal(client.recording, false);
  assert.deepEqual(events.recording.at(-1), { active: false });
  const info = await client.setRecording(true);
  assert.equal(info.id, "r1");
  assert.deepEqual(socket.named("recording"), [{ active: true }]);
});

test("mute disables the local track and tells the server; it is replayed after a rejoin", async () => {
  const { socket, client } = setup();
  const audio = new FakeTrack("audio");
  client.publish(/** @type {any} */ (audio));
  await client.join("r1", "Bob");
  await client.setMuted("audio", true);
  assert.equal(audio.enabled, false);
  assert.deepEqual(socket.named("mute"), [{ kind: "audio", muted: true }]);
  socket.drop();
  socket.connect();
  await until(() => socket.named("join").length === 2 && socket.named("mute").length === 2);
  assert.deepEqual(socket.named("mute")[1], { kind: "audio", muted: true });
  await client.setMuted("audio", false);
  assert.equal(audio.enabled, true);
});

test("a dropped connection resets the room and rejoins with a new peer connection", async () => {
  const { socket, client, events } = setup();
  client.publish(/** @type {any} */ (new FakeTrack("video")));
  await client.join("r1", "Bob");
  await until(() => socket.named("sdp").length === 1);
  const first = /** @type {FakePeerConnection} */ (/** @type {unknown} */ (client.pc));
  socket.drop("transport close");
  assert.equal(client.state, "reconnecting");
  assert.equal(events.reset.length, 1);
  assert.equal(first.closed, true);
  assert.equal(client.pc, null);
  assert.deepEqual(client.participants, []);
  socket.connect();
  await until(() => socket.named("sdp").length === 2);
  assert.equal(client.state, "joined");
  assert.notEqual(client.pc, first);
  assert.equal(FakePeerConnection.instances.length, 2);
  assert.equal(events.joined.at(-1).rejoin, true);
  assert.equal(socket.named("sdp")[1].tracks[0].source, "camera");
});

test("a server-side disconnect is followed by a manual reconnect", async () => {
  const { socket, client } = setup();
  await client.join("r1", "Bob");
  socket.drop("io server disconnect");
  assert.equal(client.state, "reconnecting");
  await until(() => socket.named("join").length === 2 && client.state === "joined");
});

test("ICE failure rejoins: leave, then join again on the same socket", async () => {
  const { socket, client } = setup();
  client.publish(/** @type {any} */ (new FakeTrack("video")));
  await client.join("r1", "Bob");
  const pc = /** @type {FakePeerConnection} */ (/** @type {unknown} */ (client.pc));
  pc.setConnectionState("failed");
  await until(() => socket.named("join").length === 2 && client.state === "joined");
  assert.equal(socket.named("leave").length, 1);
  assert.equal(pc.closed, true);
});

test("screen share adds a 'screen' transceiver; stopping makes it inactive; restarting reuses it", async () => {
  const { socket, client } = setup();
  client.publish(/** @type {any} */ (new FakeTrack("video")));
  await client.join("r1", "Bob");
  await until(() => socket.named("sdp").length === 1 && client.pc?.signalingState === "stable");
  const screen = new FakeTrack("video");
  await client.startScreenShare(/** @type {any} */ (screen));
  assert.equal(client.sharingScreen, true);
  assert.deepEqual(socket.named("sdp")[1].tracks, [
    { mid: "0", source: "camera" },
    { mid: "1", source: "screen" },
  ]);
  const pc = /** @type {FakePeerConnection} */ (/** @type {unknown} */ (client.pc));
  await client.stopScreenShare();
  assert.equal(screen.stopped, true);
  assert.equal(pc.transceivers[1].direction, "inactive");
  assert.equal(pc.transceivers[1].sender.track, null);
  assert.equal(socket.named("sdp").length, 3);
  assert.deepEqual(socket.named("sdp")[2].tracks, [{ mid: "0", source: "camera" }]);
  const again = new FakeTrack("video");
  await client.startScreenShare(/** @type {any} */ (again));
  assert.equal(pc.transceivers.length, 2);
  assert.equal(pc.transceivers[1].direction, "sendonly");
  assert.equal(pc.transceivers[1].sender.track, again);
  assert.deepEqual(socket.named("sdp")[3].tracks.at(-1), { mid: "1", source: "screen" });
  // the browser's "stop sharing" button ends the track
  again.dispatchEvent(new Event("ended"));
  await until(() => socket.named("sdp").length === 5);
  assert.equal(client.sharingScreen, false);
});

test("leave sends leave, closes the peer connection and stops rejoining", async () => {
  const { socket, client } = setup();
  await client.join("r1", "Bob");
  const pc = /** @type {FakePeerConnection} */ (/** @type {unknown} */ (client.pc));
  await client.leave();
  assert.equal(socket.named("leave").length, 1);
  assert.equal(pc.closed, true);
  assert.equal(client.state, "closed");
  assert.equal(socket.connected, false);
  await settle(20);
  assert.equal(socket.named("join").length, 1);
});

test("unauthorized at connect is fatal", async () => {
  const socket = new FakeSocket();
  const client = new SfuClient({
    io: () => socket,
    createPeerConnection: () => /** @type {any} */ (new FakePeerConnection({})),
    token: "bad",
  });
  const joined = client.join("r1", "Bob");
  socket.fire("connect_error", Object.assign(new Error("refused"), { data: { code: "unauthorized", message: "bad token" } }));
  await assert.rejects(joined, { code: "unauthorized" });
  assert.equal(client.state, "failed");
});

test("the token goes into the Socket.IO auth payload", async () => {
  const { socket, client } = setup({}, { token: "jwt-123" });
  await client.join("r1", "Bob");
  assert.deepEqual(/** @type {any} */ (socket.opts).auth, { token: "jwt-123" });
});

test("a step stuck on the old peer connection does not block the new one", async () => {
  const { socket, client } = setup();
  client.publish(/** @type {any} */ (new FakeTrack("video")));
  await client.join("r1", "Bob");
  await until(() => socket.named("sdp").length === 1 && client.pc?.signalingState === "stable");
  const old = /** @type {FakePeerConnection} */ (/** @type {unknown} */ (client.pc));
  // the server's offer arrives and the connection dies while it is being applied
  old.setRemoteDescription = () => new Promise(() => {}); // never settles, as after close()
  socket.serverOffer({ description: { type: "offer", sdp: "offer mids=0:video" }, tracks: [] });
  await settle(5);
  socket.drop();
  socket.connect();
  await until(() => socket.named("sdp").length === 2, 500);
  await until(() => client.pc?.remoteDescription?.type === "answer");
  assert.notEqual(client.pc, old);
});

test("a step that never finishes times out and rejoins", async () => {
  const { socket, client, events } = setup({}, { ackTimeoutMs: 20 });
  await client.join("r1", "Bob");
  const pc = /** @type {FakePeerConnection} */ (/** @type {unknown} */ (client.pc));
  pc.setRemoteDescription = () => new Promise(() => {});
  socket.serverOffer({ description: { type: "offer", sdp: "offer mids=0:video" }, tracks: [] });
  await until(() => socket.named("join").length === 2 && client.state === "joined");
  assert.ok(events.error.some((e) => e.code === "timeout"));
  assert.equal(pc.closed, true);
});
