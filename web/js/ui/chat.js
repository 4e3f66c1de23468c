// Chat: history from the join ack, live messages, Enter to send. Text goes in through
// textContent only.

import { clock, el } from "./dom.js";

/** @typedef {import("../protocol.js").ChatMessage} ChatMessage */

export class ChatView {
  /**
   * @param {{log: HTMLElement, form: HTMLFormElement, input: HTMLInputElement, hint: HTMLElement}} parts
   * @param {(text: string) => Promise<ChatMessage>} send
   * @param {(message: string) => void} onError
   * @param {number} maxLength  longer messages are refused here, with a word (not cut)
   */
  constructor(parts, send, onError, maxLength) {
    this.log = parts.log;
    this.form = parts.form;
    this.input = parts.input;
    this.hint = parts.hint;
    this.maxLength = maxLength;
    this.enabled = true;
    /** @type {Set<string>} */
    this.seen = new Set();
    /** @type {string | null} */
    this.selfId = null;
    /** @type {(() => void) | null} called for every message from someone else */
    this.onIncoming = null;
    this.input.addEventListener("input", () => this.checkLength());
    this.form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const text = this.input.value.trim();
      if (!text) return;
      if (!this.checkLength()) {
        this.input.focus();
        return;
      }
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

  /** @returns {boolean} whether the draft fits; says so next to the input when not */
  checkLength() {
    const n = this.input.value.trim().length;
    const over = n > this.maxLength;
    this.hint.hidden = !over;
    this.hint.textContent = over
      ? `Too long: ${n.toLocaleString("en")} of at most ${this.maxLength.toLocaleString("en")} characters. Shorten it or split it.`
      : "";
    this.input.setAttribute("aria-invalid", String(over));
    const send = /** @type {HTMLButtonElement | null} */ (this.form.querySelector("button[type=submit]"));
    if (send) send.disabled = over || !this.enabled;
    return !over;
  }

  /** @param {boolean} enabled */
  setEnabled(enabled) {
    this.enabled = enabled;
    for (const node of this.form.querySelectorAll("input, button")) {
      /** @type {HTMLInputElement} */ (node).disabled = !enabled;
    }
    if (enabled) this.checkLength();
  }

  /** Empty the log (left the room). */
  reset() {
    this.log.replaceChildren();
    this.seen.clear();
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
    if (!own) this.onIncoming?.();
  }

  /** @param {string} text */
  notice(text) {
    this.log.append(el("li", { class: "chat-notice", text }));
    this.log.scrollTop = this.log.scrollHeight;
  }
}
