// Status and error messages above the room, keyed so that one condition ("reconnecting")
// shows once and can be cleared when it is over.

import { el } from "./dom.js";

/** @typedef {"info" | "warn" | "error"} Level */

export class Banner {
  /** @param {HTMLElement} container */
  constructor(container) {
    this.container = container;
    /** @type {Map<string, HTMLElement>} */
    this.items = new Map();
  }

  /**
   * Show (or replace) the message for `key`.
   * @param {string} key
   * @param {string} text
   * @param {Level} [level]
   * @param {{label: string, onClick: () => void}} [action]
   */
  show(key, text, level = "info", action) {
    this.clear(key);
    const close = el("button", { class: "banner-close", text: "×", attrs: { type: "button", "aria-label": "dismiss" } });
    const item = el(
      "div",
      { class: `banner-item ${level}`, attrs: { "data-key": key, role: level === "info" ? "status" : "alert" } },
      el("span", { class: "banner-text", text }),
    );
    if (action) {
      const button = el("button", { class: "banner-action", text: action.label, attrs: { type: "button" } });
      button.addEventListener("click", action.onClick);
      item.append(button);
    }
    item.append(close);
    close.addEventListener("click", () => this.clear(key));
    this.items.set(key, item);
    this.container.append(item);
  }

  /** @param {string} key */
  clear(key) {
    this.items.get(key)?.remove();
    this.items.delete(key);
  }
}
