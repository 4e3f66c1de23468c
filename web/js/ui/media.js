// Local capture: camera + microphone with fallbacks, and screen capture.

/**
 * Ask for camera and microphone; fall back to one of them; null when neither is allowed.
 * @returns {Promise<{stream: MediaStream | null, error: string | null}>}
 */
export async function getLocalMedia() {
  const md = navigator.mediaDevices;
  if (!md?.getUserMedia) return { stream: null, error: "this browser (or an insecure http page) offers no camera access" };
  /** @type {any} */
  let first = null;
  for (const constraints of [
    { video: { width: { ideal: 640 }, height: { ideal: 480 } }, audio: true },
    { video: { width: { ideal: 640 }, height: { ideal: 480 } } },
    { audio: true },
  ]) {
    try {
      const stream = await md.getUserMedia(constraints);
      return { stream, error: first ? describe(first) : null };
    } catch (err) {
      first = first ?? err;
      if (/** @type {any} */ (err)?.name === "NotAllowedError") break; // refused: do not ask again
    }
  }
  return { stream: null, error: describe(first) };
}

/** @returns {boolean} */
export function canShareScreen() {
  return typeof navigator.mediaDevices?.getDisplayMedia === "function";
}

/** @returns {Promise<MediaStreamTrack>} */
export async function getScreenTrack() {
  const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
  return stream.getVideoTracks()[0];
}

/** @param {any} err */
function describe(err) {
  switch (err?.name) {
    case "NotAllowedError":
      return "camera/microphone access was refused";
    case "NotFoundError":
      return "no camera or microphone found";
    case "NotReadableError":
      return "the camera or microphone is in use by another application";
    default:
      return String(err?.message ?? err ?? "unknown error");
  }
}
