// Chat: history from the join ack, live messages, Enter to send. Text goes in through
// textContent only.

import { clock, el } from "./dom.js";

/** @typedef {import("../protocol.js").ChatMessage} ChatMessage */

export class ChatView {
  /**
   * @param {{log: HTMLElement, form: HTMLFormElement, input: HTMLInputElement}} parts
   * @param {(text: string) => Promise<ChatMessage>} send
   * @param {(message: string) => void} onError
   */
  constructor(parts, send, onError) {
    this.log = parts.log;
    this.form = parts.form;
    this.input = parts.input;
    /** @type {Set<string>} */
    this.seen = new Set();
    /** @type {string | null} */
    this.selfId = null;
    this.form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const text = this.input.value.trim();
      if (!text) return;
      this.input.disabled = true;
      try {
        const message = await send(text);
        this.input.value = "";
        this.add(message, true);
      } catch (err) {
        onError(/** @type {any} */ (err)?.message ?? String(err));
      } finally {
        this.input.disabled = false;
        this.input.focus();
      }
    });
  }

  /** @param {boolean} enabled */
  setEnabled(enabled) {
    for (const node of this.form.querySelectorAll("input, button")) {
      /** @type {HTMLInputElement} */ (node).disabled = !enabled;
    }
  }

  /** @param {ChatMessage[]} history oldest first */
  addHistory(history) {
    for (const m of history) this.add(m, m.from === this.selfId);
  }

  /**
   * @param {ChatMessage} m
   * @param {boolean} [own]
   */
  add(m, own = false) {
    if (!m || typeof m.text !== "string" || this.seen.has(m.id)) return;
    this.seen.add(m.id);
    const stick = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 40;
    const time = el("time", { text: clock(m.ts), attrs: { datetime: new Date(m.ts * 1000).toISOString() } });
    const item = el(
      "li",
      { class: own ? "chat-message own" : "chat-message", attrs: { "data-message-id": m.id, "data-from": m.from } },
      time,
      el("span", { class: "author", text: own ? `${m.name} (you)` : m.name }),
      el("span", { class: "text", text: m.text }),
    );
    this.log.append(item);
    if (stick || own) this.log.scrollTop = this.log.scrollHeight;
  }

  /** @param {string} text */
  notice(text) {
    this.log.append(el("li", { class: "chat-notice", text }));
    this.log.scrollTop = this.log.scrollHeight;
  }
}
