// Viewer pause (issue #12): stop receiving the remote videos this page does not show.
//
// A remote video is "not shown" when its <video> element does not intersect the viewport
// (a tile hidden, laid out off-stage or with no area: IntersectionObserver) or when the
// page itself is hidden (document.visibilitychange: a background tab, a minimised window).
// For each remote video row (participant id + source) the controller tells the server
// what it wants with `video pause` (protocol.js `setVideoPaused`), only on changes:
// resuming at once, pausing after `pauseDelayMs` (a layout that flickers, a quick tab
// switch, costs nothing). The server forgets a pause when it starts a new subscription,
// so after every change of the incoming tracks (`setRows`) the pauses still wanted are
// sent again (the server takes them idempotently).

/**
 * @typedef {{participantId: string, source: string, kind: string}} VideoRow
 * @typedef {{observe(el: Element): void, unobserve(el: Element): void, disconnect(): void}} ObserverLike
 * @typedef {object} ViewerPauseHooks
 * @property {(participantId: string, source: string, paused: boolean) => Promise<unknown>} send
 * @property {(participantId: string, source: string) => Element | null} elementFor  the row's <video>
 * @property {(callback: (entries: {target: Element, isIntersecting: boolean}[]) => void) => ObserverLike | null} [observer]
 *   makes the visibility observer (default: an IntersectionObserver on the viewport; null: none)
 * @property {number} [pauseDelayMs]  how long a video stays not shown before it is paused
 * @property {(fn: () => void, ms: number) => any} [setTimeout]
 * @property {(handle: any) => void} [clearTimeout]
 * @property {(...args: any[]) => void} [log]
 */

export const PAUSE_DELAY_MS = 500;

/** @param {string} participantId @param {string} source */
const keyOf = (participantId, source) => `${participantId}\n${source}`;

export class ViewerPause {
  /** @param {ViewerPauseHooks} hooks */
  constructor(hooks) {
    this.hooks = hooks;
    this.pauseDelayMs = hooks.pauseDelayMs ?? PAUSE_DELAY_MS;
    this._setTimeout = hooks.setTimeout ?? ((fn, ms) => setTimeout(fn, ms));
    this._clearTimeout = hooks.clearTimeout ?? ((h) => clearTimeout(h));
    /** @type {Map<string, {participantId: string, source: string}>} the remote video rows */
    this.rows = new Map();
    /** @type {Map<string, Element>} the observed <video> of each row */
    this.elements = new Map();
    /** @type {Map<Element, boolean>} last known visibility (absent: unknown = shown) */
    this.visible = new Map();
    /** @type {Map<string, boolean>} what the server was told (absent: not paused) */
    this.sent = new Map();
    this.pageHidden = false;
    /** the rows changed: pauses still wanted are sent again */
    this._resync = false;
    /** @type {any} */
    this._timer = null;
    /** @type {ObserverLike | null} */
    this._observer = null;
    const make = hooks.observer ?? defaultObserver;
    this._observer = make((entries) => {
      for (const e of entries) this.visible.set(e.target, Boolean(e.isIntersecting));
      this.update();
    });
  }

  /**
   * The incoming tracks changed (protocol.js `tracks`): follow their video rows.
   * @param {VideoRow[]} tracks
   */
  setRows(tracks) {
    /** @type {Map<string, {participantId: string, source: string}>} */
    const rows = new Map();
    for (const t of tracks) {
      if (t.kind === "video") rows.set(keyOf(t.participantId, t.source), { participantId: t.participantId, source: t.source });
    }
    for (const key of this.rows.keys()) if (!rows.has(key)) this.sent.delete(key);
    this.rows = rows;
    this._resync = true;
    this.refresh();
  }

  /** Tiles changed (a new tile, a rejoin's new ids): observe the current <video> of every row. */
  refresh() {
    for (const [key, el] of [...this.elements]) {
      const row = this.rows.get(key);
      const now = row ? this.hooks.elementFor(row.participantId, row.source) : null;
      if (now !== el) {
        this._observer?.unobserve(el);
        this.visible.delete(el);
        this.elements.delete(key);
      }
    }
    for (const [key, row] of this.rows) {
      if (this.elements.has(key)) continue;
      const el = this.hooks.elementFor(row.participantId, row.source);
      if (!el) continue;
      this.elements.set(key, el);
      this._observer?.observe(el);
    }
    this.update();
  }

  /** @param {boolean} hidden  the page is hidden (document.hidden) */
  setPageHidden(hidden) {
    this.pageHidden = Boolean(hidden);
    this.update();
  }

  /** @param {string} key */
  wanted(key) {
    if (this.pageHidden) return true;
    const el = this.elements.get(key);
    return el !== undefined && this.visible.get(el) === false;
  }

  /** Resume what is shown again now; pause what is not shown after the delay. */
  update() {
    let pausing = false;
    for (const [key, row] of this.rows) {
      const want = this.wanted(key);
      const told = this.sent.get(key) ?? false;
      if (!want && told) this._send(key, row, false);
      else if (want && (!told || this._resync)) pausing = true;
    }
    if (!pausing && this._timer === null) this._resync = false;
    if (pausing && this._timer === null) {
      this._timer = this._setTimeout(() => {
        this._timer = null;
        this._flushPauses();
      }, this.pauseDelayMs);
    }
  }

  _flushPauses() {
    const resync = this._resync;
    this._resync = false;
    for (const [key, row] of this.rows) {
      if (this.wanted(key) && (resync || !(this.sent.get(key) ?? false))) this._send(key, row, true);
    }
  }

  /**
   * @param {string} key
   * @param {{participantId: string, source: string}} row
   * @param {boolean} paused
   */
  _send(key, row, paused) {
    const before = this.sent.get(key) ?? false;
    this.sent.set(key, paused);
    this.hooks.send(row.participantId, row.source, paused).catch((/** @type {any} */ err) => {
      this.hooks.log?.("video pause", row.participantId, row.source, paused, err?.code ?? err);
      // not told: try again at the next change (a vanished video is dropped by setRows)
      if (this.sent.get(key) === paused && this.rows.has(key)) this.sent.set(key, before);
    });
  }

  /** Forget every row (left the room, or the connection is being re-established). */
  clear() {
    this.setRows([]);
  }

  /** Stop observing; nothing is sent any more. */
  close() {
    if (this._timer !== null) this._clearTimeout(this._timer);
    this._timer = null;
    this._observer?.disconnect();
    this._observer = null;
    this.rows.clear();
    this.elements.clear();
    this.visible.clear();
    this.sent.clear();
  }
}

/**
 * An IntersectionObserver on the viewport, or null where there is none.
 * @param {(entries: {target: Element, isIntersecting: boolean}[]) => void} callback
 * @returns {ObserverLike | null}
 */
function defaultObserver(callback) {
  if (typeof IntersectionObserver !== "function") return null;
  return new IntersectionObserver((entries) => callback(entries), { threshold: 0 });
}
