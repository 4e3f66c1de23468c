// Unit tests of the stage layout geometry (web/js/ui/layout.js).

import assert from "node:assert/strict";
import { test } from "node:test";

import { bestGrid, gridRects, stageLayout } from "../js/ui/layout.js";

const area = (/** @type {{w: number, h: number}} */ r) => r.w * r.h;

test("a grid fills the stage at any count from 1 to 16, without overlaps", () => {
  for (const [W, H] of [[1600, 900], [1280, 700], [390, 600], [900, 1200]]) {
    for (let n = 1; n <= 16; n++) {
      const rects = gridRects({ x: 0, y: 0, w: W, h: H }, n);
      assert.equal(rects.length, n);
      const used = rects.reduce((s, r) => s + area(r), 0);
      assert.ok(used / (W * H) > 0.3, `n=${n} ${W}x${H}: ${(used / (W * H)).toFixed(2)}`);
      for (const r of rects) {
        assert.ok(r.x >= -0.01 && r.y >= -0.01 && r.x + r.w <= W + 0.01 && r.y + r.h <= H + 0.01);
        const a = r.w / r.h;
        assert.ok(a >= (4 / 3) / 1.31 && a <= (4 / 3) * 1.31, `aspect ${a}`);
      }
      for (let i = 0; i < n; i++) {
        for (let j = i + 1; j < n; j++) {
          const a = rects[i];
          const b = rects[j];
          const overlap = a.x < b.x + b.w - 0.01 && b.x < a.x + a.w - 0.01 && a.y < b.y + b.h - 0.01 && b.y < a.y + a.h - 0.01;
          assert.ok(!overlap, `tiles ${i} and ${j} overlap`);
        }
      }
    }
  }
});

test("bestGrid picks two columns for two tiles on a wide stage, one on a tall one", () => {
  assert.equal(bestGrid(1600, 900, 2).cols, 2);
  assert.equal(bestGrid(390, 700, 2).cols, 1);
  assert.equal(bestGrid(1600, 900, 4).cols, 2);
});

test("two participants: the remote fills the stage, ours floats small", () => {
  const { mode, rects } = stageLayout(1600, 900, ["me", "p1"], { selfId: "me" });
  assert.equal(mode, "pip");
  const remote = /** @type {any} */ (rects.get("p1"));
  const self = /** @type {any} */ (rects.get("me"));
  assert.ok(area(remote) / (1600 * 900) > 0.7);
  assert.ok(area(self) < area(remote) / 8);
});

test("a large tile takes the main area and the others a filmstrip", () => {
  const ids = ["me", "p1", "p2", "p3"];
  const wide = stageLayout(1600, 900, ids, { selfId: "me", largeId: "p2" });
  assert.equal(wide.mode, "large");
  const big = /** @type {any} */ (wide.rects.get("p2"));
  assert.ok(area(big) / (1600 * 900) > 0.7);
  for (const id of ["me", "p1", "p3"]) assert.ok(/** @type {any} */ (wide.rects.get(id)).x >= big.x + big.w);
  const tall = stageLayout(390, 600, ids, { selfId: "me", largeId: "p2" });
  const tbig = /** @type {any} */ (tall.rects.get("p2"));
  for (const id of ["me", "p1", "p3"]) assert.ok(/** @type {any} */ (tall.rects.get(id)).y >= tbig.y + tbig.h);
  // an unknown large id falls back to the grid
  assert.equal(stageLayout(1600, 900, ids, { largeId: "gone" }).mode, "grid");
});
