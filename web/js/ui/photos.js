// "Take photo": draw a video's current frame to a canvas, add it to the strip as a PNG
// with a download link.

import { el } from "./dom.js";

/**
 * @param {HTMLElement} strip
 * @param {HTMLVideoElement} video
 * @param {string} label
 * @returns {Promise<boolean>} false when the video has no frame yet
 */
export async function takePhoto(strip, video, label) {
  const w = video.videoWidth;
  const h = video.videoHeight;
  if (!w || !h) return false;
  const canvas = document.createElement("canvas");
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  if (!ctx) return false;
  ctx.drawImage(video, 0, 0, w, h);
  /** @type {Blob | null} */
  const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
  if (!blob) return false;
  const url = URL.createObjectURL(blob);
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const safe = label.replace(/[^A-Za-z0-9_-]+/g, "_").slice(0, 32) || "photo";
  const img = el("img", { attrs: { src: url, alt: `photo of ${label}` } });
  const link = el("a", { class: "photo-download", text: "Download", attrs: { href: url, download: `${safe}-${stamp}.png` } });
  const remove = el("button", { class: "photo-remove", text: "×", attrs: { type: "button", "aria-label": "remove photo" } });
  const item = el("figure", { class: "photo" }, img, el("figcaption", { text: label }), link, remove);
  remove.addEventListener("click", () => {
    URL.revokeObjectURL(url);
    item.remove();
    strip.hidden = strip.querySelector(".photo") === null;
  });
  strip.prepend(item);
  strip.hidden = false;
  return true;
}
