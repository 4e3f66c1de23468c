// Status and error messages above the room, keyed so that one condition ("reconnecting")
// shows once and can be cleared when it is over. ONE banner is visible at a time: the
// most severe active message (the newest among equals); clearing it reveals the next.

import { el } from "./dom.js";

/** @typedef {"info" | "warn" | "error"} Level */

const SEVERITY = { info: 0, warn: 1, error: 2 };

export class Banner {
  /** @param {HTMLElement} container */
  constructor(container) {
    this.container = container;
    /** @type {Map<string, {text: string, level: Level, action?: {label: string, onClick: () => void}, seq: number}>} */
    this.items = new Map();
    this.seq = 0;
  }

  /**
   * Show (or replace) the message for `key`.
   * @param {string} key
   * @param {string} text
   * @param {Level} [level]
   * @param {{label: string, onClick: () => void}} [action]
   */
  show(key, text, level = "info", action) {
    this.items.delete(key);
    this.items.set(key, { text, level, action, seq: ++this.seq });
    this.render();
  }

  /** @param {string} key */
  clear(key) {
    if (this.items.delete(key)) this.render();
  }

  /** Forget every message. */
  clearAll() {
    this.items.clear();
    this.render();
  }

  /** @returns {string | null} the key of the visible message */
  get current() {
    let best = null;
    let bestRank = -1;
    for (const [key, m] of this.items) {
      const rank = SEVERITY[m.level] * 1e9 + m.seq;
      if (rank > bestRank) {
        best = key;
        bestRank = rank;
      }
    }
    return best;
  }

  render() {
    const key = this.current;
    if (key === null) {
      this.container.replaceChildren();
      return;
    }
    const m = /** @type {any} */ (this.items.get(key));
    const close = el("button", { class: "banner-close", text: "×", attrs: { type: "button", "aria-label": "dismiss message" } });
    const item = el(
      "div",
      { class: `banner-item ${m.level}`, attrs: { "data-key": key, role: m.level === "info" ? "status" : "alert" } },
      el("span", { class: "banner-text", text: m.text }),
    );
    if (m.action) {
      const button = el("button", { class: "banner-action", text: m.action.label, attrs: { type: "button" } });
      button.addEventListener("click", m.action.onClick);
      item.append(button);
    }
    const more = this.items.size - 1;
    if (more > 0) item.append(el("span", { class: "banner-more", text: `+${more} more` }));
    item.append(close);
    close.addEventListener("click", () => this.clear(key));
    this.container.replaceChildren(item);
  }
}
