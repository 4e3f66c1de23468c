// Unit tests of the participant labels (web/js/ui/participants.js).

import assert from "node:assert/strict";
import { test } from "node:test";

import { displayNames } from "../js/ui/participants.js";

test("a name used twice is told apart in join order; unique names stay as they are", () => {
  const labels = displayNames([
    { id: "p12", name: "Alex" },
    { id: "p3", name: "Sam" },
    { id: "p7", name: "alex" },
    { id: "p20", name: "Alex" },
  ]);
  assert.equal(labels.get("p7"), "alex");
  assert.equal(labels.get("p12"), "Alex (2)");
  assert.equal(labels.get("p20"), "Alex (3)");
  assert.equal(labels.get("p3"), "Sam");
});
