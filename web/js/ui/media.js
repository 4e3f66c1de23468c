// Screen capture (camera and microphone: devices.js).

/** @returns {boolean} */
export function canShareScreen() {
  return typeof navigator.mediaDevices?.getDisplayMedia === "function";
}

/** @returns {Promise<MediaStreamTrack>} */
export async function getScreenTrack() {
  const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
  return stream.getVideoTracks()[0];
}
