// The participant list (ourselves first), with mute badges.

import { el } from "./dom.js";

/** @typedef {import("../protocol.js").Participant} Participant */

/**
 * @param {HTMLElement} list
 * @param {{name: string, audioMuted: boolean, videoMuted: boolean}} self
 * @param {Participant[]} others
 */
export function renderParticipants(list, self, others) {
  const row = (/** @type {{name: string, audioMuted: boolean, videoMuted: boolean}} */ p, /** @type {string} */ id, own = false) =>
    el(
      "li",
      { attrs: { "data-member-id": id, "data-audio-muted": String(p.audioMuted), "data-video-muted": String(p.videoMuted) } },
      el("span", { class: "name", text: own ? `${p.name} (you)` : p.name }),
      p.audioMuted ? el("span", { class: "badge", text: "mic off" }) : null,
      p.videoMuted ? el("span", { class: "badge", text: "camera off" }) : null,
    );
  const sorted = [...others].sort((a, b) => a.name.localeCompare(b.name));
  list.replaceChildren(row(self, "self", true), ...sorted.map((p) => row(p, p.id)));
  const count = list.closest("section")?.querySelector(".count");
  if (count) count.textContent = String(others.length + 1);
}
