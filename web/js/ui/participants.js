// The participant list (ourselves first), with mute badges; names that appear twice are
// told apart ("Alex", "Alex (2)"), and members greyed while we reconnect.

import { el } from "./dom.js";

/**
 * @typedef {{id: string, name: string, audioMuted: boolean, videoMuted: boolean, stale?: boolean}} Member
 */

/**
 * Display labels: a name shared by several people gets " (2)", " (3)"... in join order
 * (participant ids grow with every join: "p7" joined before "p12").
 * @param {{id: string, name: string}[]} people  everyone, ourselves included
 * @returns {Map<string, string>} id -> label
 */
export function displayNames(people) {
  /** @type {Map<string, {id: string, name: string}[]>} */
  const byName = new Map();
  for (const p of people) {
    const key = p.name.trim().toLocaleLowerCase();
    const list = byName.get(key) ?? [];
    list.push(p);
    byName.set(key, list);
  }
  /** @type {Map<string, string>} */
  const out = new Map();
  for (const list of byName.values()) {
    list.sort((a, b) => joinOrder(a.id) - joinOrder(b.id) || a.id.localeCompare(b.id));
    list.forEach((p, i) => out.set(p.id, i === 0 ? p.name : `${p.name} (${i + 1})`));
  }
  return out;
}

/** @param {string} id */
function joinOrder(id) {
  const m = /(\d+)$/.exec(id);
  return m ? Number(m[1]) : Number.MAX_SAFE_INTEGER;
}

/**
 * @param {HTMLElement} list
 * @param {Member | null} self  null: not in the room (left)
 * @param {Member[]} others
 * @param {Map<string, string>} labels
 */
export function renderParticipants(list, self, others, labels) {
  const row = (/** @type {Member} */ p, /** @type {string} */ id, own = false) =>
    el(
      "li",
      {
        class: p.stale ? "stale" : "",
        attrs: { "data-member-id": id, "data-audio-muted": String(p.audioMuted), "data-video-muted": String(p.videoMuted) },
      },
      el("span", { class: "name", text: own ? `${labels.get(p.id) ?? p.name} (you)` : (labels.get(p.id) ?? p.name) }),
      p.stale ? el("span", { class: "badge muted-badge", text: "reconnecting" }) : null,
      p.audioMuted ? el("span", { class: "badge", text: "mic off" }) : null,
      p.videoMuted ? el("span", { class: "badge", text: "camera off" }) : null,
    );
  const sorted = [...others].sort((a, b) => (labels.get(a.id) ?? a.name).localeCompare(labels.get(b.id) ?? b.name));
  const rows = sorted.map((p) => row(p, p.id));
  if (self) rows.unshift(row(self, "self", true));
  list.replaceChildren(...rows);
  const n = rows.length;
  for (const count of document.querySelectorAll(".people-count")) count.textContent = String(n);
}
