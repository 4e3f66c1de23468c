// Unit tests of the one-at-a-time banner choice (web/js/ui/banner.js), without a DOM.

import assert from "node:assert/strict";
import { test } from "node:test";

import { Banner } from "../js/ui/banner.js";

class QuietBanner extends Banner {
  render() {}
}

test("one banner at a time: the most severe, newest among equals; clearing reveals the next", () => {
  const b = new QuietBanner(/** @type {any} */ ({}));
  assert.equal(b.current, null);
  b.show("media", "camera refused", "warn");
  b.show("conn", "reconnecting", "warn");
  assert.equal(b.current, "conn");
  b.show("info", "copied", "info");
  assert.equal(b.current, "conn", "an info does not hide a warning");
  b.show("fatal", "room full", "error");
  assert.equal(b.current, "fatal");
  b.clear("fatal");
  b.clear("conn");
  assert.equal(b.current, "media");
  b.show("conn", "cannot reach the server", "warn"); // the same key replaces, once
  assert.equal(b.items.size, 3);
  b.clearAll();
  assert.equal(b.current, null);
});
