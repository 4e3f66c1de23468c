// Unit tests of the connection-quality classification (web/js/ui/quality.js).

import assert from "node:assert/strict";
import { test } from "node:test";

import { classify } from "../js/ui/quality.js";

test("quality: lost when nothing flows, poor on loss, delay or a low frame rate", () => {
  const ok = { kind: /** @type {const} */ ("video"), flowing: true, fps: 25, lossPct: 0.5, rttMs: 40 };
  assert.equal(classify(ok), "good");
  assert.equal(classify({ ...ok, flowing: false }), "lost");
  assert.equal(classify({ ...ok, lossPct: 12 }), "poor");
  assert.equal(classify({ ...ok, rttMs: 800 }), "poor");
  assert.equal(classify({ ...ok, fps: 3 }), "poor");
  assert.equal(classify({ ...ok, kind: "audio", fps: null }), "good");
  assert.equal(classify({ ...ok, fps: null, lossPct: null, rttMs: null }), "good");
});
