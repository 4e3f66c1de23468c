// Stage layout, pure geometry (no DOM): where each tile goes for a stage of W x H.
//
// - grid: every tile the same size, as large as possible, centred; a tile keeps its video's
//   aspect ratio within `maxStretch` (the video is cropped by at most that much, never
//   distorted); the number of columns is whichever gives the largest tiles.
// - two participants (one remote, nobody large): the remote fills the stage, our own tile
//   floats small in a corner (picture in picture).
// - large tile ("the large tile is X": pinned, a remote screen share, later the active
//   speaker): X takes the main area, every other tile goes to a filmstrip on the right
//   (landscape) or at the bottom (portrait).

/** @typedef {{x: number, y: number, w: number, h: number}} Rect */

/**
 * The best grid for `n` tiles in `W x H`.
 * @param {number} W
 * @param {number} H
 * @param {number} n
 * @param {{aspect?: number, gap?: number, maxStretch?: number}} [opts]
 * @returns {{cols: number, rows: number, w: number, h: number}}
 */
export function bestGrid(W, H, n, opts = {}) {
  const aspect = opts.aspect ?? 4 / 3;
  const gap = opts.gap ?? 8;
  const s = opts.maxStretch ?? 1.3;
  let best = { cols: 1, rows: Math.max(1, n), w: 0, h: 0 };
  if (n <= 0 || W <= 0 || H <= 0) return best;
  for (let cols = 1; cols <= n; cols++) {
    const rows = Math.ceil(n / cols);
    const cw = (W - gap * (cols - 1)) / cols;
    const ch = (H - gap * (rows - 1)) / rows;
    if (cw <= 0 || ch <= 0) continue;
    const w = Math.min(cw, ch * aspect * s);
    const h = Math.min(ch, (cw / aspect) * s);
    if (w * h > best.w * best.h + 0.5) best = { cols, rows, w, h };
  }
  return best;
}

/**
 * Rects of `n` equal tiles in a grid inside `area`, rows centred (the last one too).
 * @param {Rect} area
 * @param {number} n
 * @param {{aspect?: number, gap?: number, maxStretch?: number}} [opts]
 * @returns {Rect[]}
 */
export function gridRects(area, n, opts = {}) {
  const gap = opts.gap ?? 8;
  const g = bestGrid(area.w, area.h, n, opts);
  const out = [];
  const usedH = g.rows * g.h + (g.rows - 1) * gap;
  const y0 = area.y + (area.h - usedH) / 2;
  for (let i = 0; i < n; i++) {
    const row = Math.floor(i / g.cols);
    const inRow = Math.min(g.cols, n - row * g.cols);
    const usedW = inRow * g.w + (inRow - 1) * gap;
    const x0 = area.x + (area.w - usedW) / 2;
    const col = i - row * g.cols;
    out.push({ x: x0 + col * (g.w + gap), y: y0 + row * (g.h + gap), w: g.w, h: g.h });
  }
  return out;
}

/**
 * Place every tile on the stage.
 * @param {number} W
 * @param {number} H
 * @param {string[]} ids  tile ids in display order (ours included)
 * @param {{selfId?: string, largeId?: string | null, aspect?: number, gap?: number}} [opts]
 * @returns {{mode: "grid" | "pip" | "large", rects: Map<string, Rect>}}
 */
export function stageLayout(W, H, ids, opts = {}) {
  const gap = opts.gap ?? 8;
  const aspect = opts.aspect ?? 4 / 3;
  /** @type {Map<string, Rect>} */
  const rects = new Map();
  const full = { x: 0, y: 0, w: W, h: H };
  const large = opts.largeId && ids.includes(opts.largeId) && ids.length > 1 ? opts.largeId : null;
  if (large) {
    const others = ids.filter((id) => id !== large);
    const landscape = W >= H * 1.1;
    let main;
    let strip;
    if (landscape) {
      const sw = clamp(W * 0.2, 120, 320);
      main = { x: 0, y: 0, w: W - sw - gap, h: H };
      strip = { x: W - sw, y: 0, w: sw, h: H };
    } else {
      const sh = clamp(H * 0.22, 72, 220);
      main = { x: 0, y: 0, w: W, h: H - sh - gap };
      strip = { x: 0, y: H - sh, w: W, h: sh };
    }
    rects.set(large, main);
    gridRects(strip, others.length, { aspect, gap, maxStretch: 1.3 }).forEach((r, i) => rects.set(others[i], r));
    return { mode: "large", rects };
  }
  if (ids.length === 2 && opts.selfId && ids.includes(opts.selfId)) {
    const remote = /** @type {string} */ (ids.find((id) => id !== opts.selfId));
    // one other person: as large as possible; a portrait stage (phone) may crop the sides
    rects.set(remote, gridRects(full, 1, { aspect, gap, maxStretch: W < H ? 1.8 : 1.3 })[0]);
    const pw = clamp(Math.min(W, H * aspect) * 0.24, 96, 320);
    const ph = pw / aspect;
    // bottom right, above the other tile's quality indicator
    rects.set(opts.selfId, { x: W - pw - 12, y: Math.max(0, H - ph - 48), w: pw, h: ph });
    return { mode: "pip", rects };
  }
  gridRects(full, ids.length, { aspect, gap }).forEach((r, i) => rects.set(ids[i], r));
  return { mode: "grid", rects };
}

/**
 * @param {number} v
 * @param {number} lo
 * @param {number} hi
 */
function clamp(v, lo, hi) {
  return Math.max(lo, Math.min(hi, v));
}
