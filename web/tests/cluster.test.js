// Unit tests of the browser client's cluster behaviour (docs/protocol.md "Cluster"):
// following `moved` join refusals, the planned move (make before break) and the search
// for a live node after ours died. Fake sockets per node URL, fake peer connections, and
// a virtual clock for the back-off (short timers fire at once, long ones never).

import assert from "node:assert/strict";
import { test } from "node:test";

import { SfuClient } from "../js/protocol.js";
import { CAPS, FakePeerConnection, FakeSocket, FakeTrack, settle, until } from "./fakes.js";

const A = "http://127.0.0.1:7001";
const B = "http://127.0.0.1:7002";

/** @param {string} node @param {string} [room] */
const joinOk = (node, room = "r1") => ({
  ok: true,
  id: `${node}-me`,
  room,
  participants: [{ id: `${node}-alice`, name: "Alice", audioMuted: false, videoMuted: false }],
  iceServers: [],
  chat: [{ id: "c1", from: "x", name: "Alice", text: "hi", ts: 1700000000 }],
  node,
  nodes: [A, B],
});

/** @param {string} url */
const movedTo = (url) => ({ ok: false, error: { code: "moved", message: "elsewhere", url } });

/** A node that refuses connections (dead, or never there). */
class DeadSocket extends FakeSocket {
  connect() {
    this.active = true;
    setImmediate(() => this.fire("connect_error", new Error("xhr poll error")));
    return this;
  }
}

/**
 * A small fake cluster: `behaviour[url]` is "dead" or a replies table for that node's
 * sockets (changeable during a test). Every socket the client opens is kept in `sockets`.
 * @param {Record<string, "dead" | Record<string, (data: any) => any>>} behaviour
 * @param {object} [options]
 */
function cluster(behaviour, options = {}) {
  /** @type {{url: string | undefined, socket: FakeSocket, opts: any}[]} */
  const sockets = [];
  /** @type {number[]} delays of the short timers (back-off), in order */
  const delays = [];
  let clock = 0;
  FakePeerConnection.instances = [];
  const common = {
    sdp: (/** @type {any} */ d) => ({ ok: true, description: { type: "answer", sdp: `answer-${d.description.sdp}` } }),
    "ice candidates": () => ({ ok: true }),
    mute: () => ({ ok: true }),
    leave: () => ({ ok: true }),
  };
  const client = new SfuClient({
    url: A,
    token: "jwt",
    io: (url, opts) => {
      const b = behaviour[url ?? ""];
      const socket = b === "dead" || b === undefined ? new DeadSocket() : new FakeSocket({ ...common, ...b });
      socket.url = url;
      socket.opts = opts;
      sockets.push({ url, socket, opts });
      socket.connect();
      return socket;
    },
    createPeerConnection: (config) => /** @type {any} */ (new FakePeerConnection(config)),
    RTCRtpSender: CAPS,
    RTCRtpReceiver: CAPS,
    retryDelaysMs: [5],
    now: () => clock,
    // back-off timers (<= 1 s) fire at once and move the clock; ack timeouts never fire
    setTimeout: (fn, ms) => {
      if (ms <= 1000) {
        delays.push(ms);
        return setTimeout(() => {
          clock += ms;
          fn();
        }, 1);
      }
      const h = setTimeout(fn, 1e7);
      h.unref?.();
      return h;
    },
    clearTimeout: (h) => clearTimeout(h),
    ...options,
  });
  /** @type {Record<string, any[]>} */
  const events = {};
  for (const type of ["state", "joined", "reset", "participant-joined", "participant-updated", "participant-left", "chat", "tracks", "error", "moving", "moved"]) {
    events[type] = [];
    client.addEventListener(type, (e) => events[type].push(/** @type {CustomEvent} */ (e).detail));
  }
  /** @param {string} url */
  const on = (url) => sockets.filter((s) => s.url === url).map((s) => s.socket);
  return { client, sockets, on, events, delays };
}

test("a join refused with 'moved' is sent again to the owner's URL with the same auth; no error shown", async () => {
  const { client, on, events } = cluster({ [A]: { join: () => movedTo(B) }, [B]: { join: () => joinOk("b") } });
  client.publish(/** @type {any} */ (new FakeTrack("video")));
  const joined = await client.join("r1", "Bob");
  assert.equal(joined.id, "b-me");
  const [a] = on(A);
  const [b] = on(B);
  assert.deepEqual(a.named("join"), [{ room: "r1", name: "Bob" }]);
  assert.deepEqual(b.named("join"), [{ room: "r1", name: "Bob" }]);
  assert.equal(a.connected, false, "the refusing node's socket is closed");
  assert.deepEqual(b.opts.auth, { token: "jwt" });
  assert.deepEqual(client.nodes, [A, B]);
  assert.equal(client.node, "b");
  assert.equal(client.url, B);
  await until(() => b.named("sdp").length === 1);
  assert.equal(a.named("sdp").length, 0);
  assert.deepEqual(events.error, []);
  assert.deepEqual(events.reset, []);
  assert.equal(client.state, "joined");
  await client.leave();
});

test("at most 3 'moved' hops per join; then the client keeps looking, bounded, and fails 'unreachable'", async () => {
  // two nodes that keep sending each other the room (a split that never settles)
  const { client, sockets, events } = cluster(
    { [A]: { join: () => movedTo(B) }, [B]: { join: () => movedTo(A) } },
    { roamForMs: 3000 },
  );
  await assert.rejects(client.join("r1", "Bob"), { code: "unreachable" });
  assert.equal(client.state, "failed");
  // the first chain: the join on A then 3 hops
  const joins = sockets.map((s) => s.socket.named("join").length);
  assert.ok(joins.every((n) => n <= 1));
  assert.deepEqual(
    sockets.slice(0, 4).map((s) => s.url),
    [A, B, A, B],
  );
  assert.equal(events.error.filter((e) => e.fatal).length, 1);
  assert.equal(events.error.filter((e) => !e.fatal).length, 0, "no error while hopping");
  assert.ok(sockets.every((s) => !s.socket.connected), "every socket closed");
});

test("planned move: join the new node, publish there, and only then close the old socket and peer connection", async () => {
  let holdSdp = true;
  const { client, on, events } = cluster({
    [A]: { join: () => joinOk("a") },
    [B]: {
      join: () => joinOk("b"),
      // the answer to our publish offer on B waits for the test
      sdp: (d) => (holdSdp ? undefined : { ok: true, description: { type: "answer", sdp: `answer-${d.description.sdp}` } }),
    },
  });
  const video = new FakeTrack("video");
  client.publish(/** @type {any} */ (video));
  await client.join("r1", "Bob");
  const [a] = on(A);
  await until(() => a.named("sdp").length === 1 && client.pc?.signalingState === "stable");
  const oldPc = /** @type {FakePeerConnection} */ (/** @type {unknown} */ (client.pc));
  const states = events.state.length;

  a.fire("error", { code: "moved", message: "this node is shutting down", url: B });
  await until(() => on(B).length === 1 && on(B)[0].pending.has("sdp"));
  const [b] = on(B);
  assert.deepEqual(b.named("join"), [{ room: "r1", name: "Bob" }]);
  assert.deepEqual(b.opts.auth, { token: "jwt" });
  // the others leave the old node for the new one meanwhile: not a "left"
  a.fire("participant left", { id: "a-alice", reason: "left" });
  assert.equal(a.connected, true, "old socket still open until we publish on the new node");
  assert.equal(oldPc.closed, false);
  assert.equal(b.named("sdp")[0].tracks[0].source, "camera");
  const newPc = /** @type {FakePeerConnection} */ (/** @type {unknown} */ (client.pc));
  assert.notEqual(newPc, oldPc);

  holdSdp = false;
  const ack = /** @type {(r: any) => void} */ (b.pending.get("sdp")?.shift());
  ack({ ok: true, description: { type: "answer", sdp: "answer-1" } });
  await until(() => events.moved.length === 1);
  assert.equal(a.connected, false);
  assert.equal(oldPc.closed, true);
  assert.equal(newPc.closed, false);
  assert.equal(events.moving[0].url, B);
  assert.equal(events.moved[0].node, "b");
  assert.equal(events.joined.at(-1).moved, true);
  assert.equal(client.id, "b-me");
  assert.equal(client.url, B);
  // nothing a user would see as trouble
  assert.deepEqual(events["participant-left"], []);
  assert.deepEqual(events.reset, []);
  assert.deepEqual(events.error, []);
  assert.deepEqual(events.state.slice(states), [], "the state stays 'joined' throughout");
  // the old node closing us late changes nothing
  a.drop("transport close");
  await settle(5);
  assert.equal(client.state, "joined");
  // the new node now is ours: chat goes there
  const sent = client.sendChat("still here");
  assert.deepEqual(b.named("chat message"), [{ text: "still here" }]);
  b.pending.get("chat message")?.shift()?.({ ok: true, message: { id: "c2", text: "still here" } });
  await sent;
  await client.leave();
});

test("node died: try the last moved URL, the ack's nodes, then the origin, backing off 0.1 s doubling to 1 s", async () => {
  /** @type {Record<string, any>} */
  const behaviour = { [A]: { join: () => joinOk("a") }, [B]: "dead" };
  const { client, on, events, delays } = cluster(behaviour);
  const video = new FakeTrack("video");
  client.publish(/** @type {any} */ (video));
  await client.join("r1", "Bob");
  const [a] = on(A);
  await until(() => a.named("sdp").length === 1);
  const firstPc = /** @type {FakePeerConnection} */ (/** @type {unknown} */ (client.pc));

  // A is killed: B answers only after a few rounds, and first sends the room back to A
  // (A's record has not expired yet)
  behaviour[A] = "dead";
  let refusals = 0;
  a.drop("transport close");
  assert.equal(client.state, "reconnecting");
  assert.equal(events.reset.length, 1);
  assert.equal(firstPc.closed, true);
  await settle(20);
  behaviour[B] = { join: () => (refusals++ < 2 ? movedTo(A) : joinOk("b")) };
  await until(() => client.state === "joined" && on(B).some((s) => s.named("sdp").length === 1), 3000);
  const live = on(B).find((s) => s.connected);
  assert.ok(live);
  assert.equal(live.named("sdp")[0].tracks[0].source, "camera", "republished");
  assert.equal(client.url, B);
  assert.equal(client.node, "b");
  assert.equal(events.joined.at(-1).rejoin, true);
  assert.equal(FakePeerConnection.instances.filter((pc) => !pc.closed).length, 1);
  // back-off between rounds: 0.1 s doubling, capped at 1 s
  const backoff = delays.filter((d) => d >= 100);
  assert.ok(backoff.length >= 2, `rounds: ${backoff}`);
  assert.deepEqual(backoff.slice(0, 5), [100, 200, 400, 800, 1000].slice(0, Math.min(5, backoff.length)));
  assert.ok(backoff.every((d) => d <= 1000));
  assert.equal(events.error.length, 0, "no error while looking");
  await client.leave();
});

test("node died and no node answers: bounded search (about roamForMs), then 'unreachable'", async () => {
  /** @type {Record<string, any>} */
  const behaviour = { [A]: { join: () => joinOk("a") }, [B]: "dead" };
  const { client, on, events, delays } = cluster(behaviour, { roamForMs: 5000 });
  await client.join("r1", "Bob");
  behaviour[A] = "dead";
  on(A)[0].drop("transport close");
  await until(() => client.state === "failed", 3000);
  assert.equal(events.error.at(-1).code, "unreachable");
  assert.equal(events.error.at(-1).fatal, true);
  const total = delays.filter((d) => d >= 100).reduce((x, y) => x + y, 0);
  assert.ok(total >= 5000 && total <= 6100, `searched for ${total} ms`);
});

test("a single server (no nodes in the ack) keeps socket.io's own reconnection", async () => {
  const { client, on, sockets } = cluster({ [A]: { join: () => ({ ...joinOk("a"), nodes: undefined, node: undefined }) } });
  await client.join("r1", "Bob");
  assert.deepEqual(client.nodes, []);
  const [a] = on(A);
  assert.equal(a.opts.reconnection, true);
  a.drop("transport close");
  a.connect();
  await until(() => a.named("join").length === 2 && client.state === "joined");
  assert.equal(sockets.length, 1);
  await client.leave();
});

test("node died: a node an earlier ack listed is tried too (the last list may be stale)", async () => {
  const C = "http://127.0.0.1:7003";
  /** @type {Record<string, any>} */
  const behaviour = {
    [A]: { join: () => ({ ...joinOk("a"), nodes: [A, C] }) },
    [B]: { join: () => ({ ...joinOk("b"), nodes: [B] }) },
    [C]: "dead",
  };
  const { client, on, events } = cluster(behaviour);
  await client.join("r1", "Bob");
  on(A)[0].fire("error", { code: "moved", message: "draining", url: B });
  await until(() => events.moved.length === 1);
  assert.deepEqual(client.nodes, [B]);
  // A finished draining, C came up, then B is killed
  behaviour[A] = "dead";
  behaviour[B] = "dead";
  behaviour[C] = { join: () => ({ ...joinOk("c"), nodes: [C] }) };
  on(B)[0].drop("transport close");
  await until(() => client.state === "joined" && client.node === "c", 3000);
  assert.equal(client.url, C);
  await client.leave();
});

test("a room event that arrives with the join ack, before it is handled, is kept (not wiped by the ack's list)", async () => {
  const { client, on, events } = cluster({
    [A]: { join: () => joinOk("a") },
    [B]: { join: () => undefined }, // the test answers
  });
  await client.join("r1", "Bob");
  on(A)[0].fire("error", { code: "moved", message: "draining", url: B });
  await until(() => on(B).length === 1 && on(B)[0].pending.has("join"));
  const b = on(B)[0];
  const ack = /** @type {(r: any) => void} */ (b.pending.get("join")?.shift());
  // one packet batch: the ack (nobody there yet), then Alice arriving from the old node
  ack({ ...joinOk("b"), participants: [] });
  b.fire("participant joined", { id: "b-alice", name: "Alice", audioMuted: false, videoMuted: false });
  await until(() => events.moved.length === 1);
  assert.deepEqual(client.participants.map((p) => p.id), ["b-alice"]);
  assert.equal(events.joined.at(-1).participants.length, 0);
  // the same arrival also in a later ack-listed form: an update, not a second "joined"
  b.fire("participant joined", { id: "b-alice", name: "Alice", audioMuted: true, videoMuted: false });
  assert.equal(client.participants[0].audioMuted, true);
  assert.equal(events["participant-joined"].length, 1);
  assert.equal(events["participant-updated"].length, 1);
  await client.leave();
});
