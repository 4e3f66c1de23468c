"""The ONE package that touches aiortc private internals (`check.check_internals()` verifies
them at start-up and in the tests; the server refuses to start when any changed).

Modules: `receiver` (frame tap), `sender` (PLI/FIR and NACK hooks), `relay` (MediaRelay
proxies), `negotiation` (codec pinning, offers), `lean_sender` (the per-frame RTP send
path of every passthrough send slot, `--send-path lean`), `remb` (receive-side bandwidth
estimation once per feedback interval), `lean_receiver` (the lean per-packet RTP handler
of the server's passthrough receivers, `--receive-path lean`), `light_receiver` (frames
and bytes counted at the RTP layer, for light benchmark subscribers), `rtp_guard`
(malformed datagrams are counted and dropped), `check` (the start-up check). The modules
added after the first five list their internals in their own docstrings.

Stock aiortc decodes every received frame in a per-receiver decoder thread and re-encodes
it once per sender. An SFU only needs to re-packetize: this package taps complete encoded
frames out of an `RTCRtpReceiver` (no decoder thread ever starts), lets a sender's PLI/FIR
reach the SFU instead of a non-existent encoder, and bounds `MediaRelay`'s per-consumer
queues. Everything is per instance: no module global of aiortc is patched.

aiortc private internals relied upon (pinned: aiortc==1.16.0; `check_internals()` verifies
them and the server refuses to start when any is missing):

- `RTCRtpReceiver._handle_rtp_packet` depayloads into `packet._data` and calls
  `self.__jitter_buffer.add(packet) -> (pli_flag, frame_or_None)`; it sends a PLI for
  `packet.ssrc` when the flag is set and queues a frame for decoding only when the frame is
  not None AND `self.__decoder_thread` is set.
- Receiver instance attributes (name-mangled): `_RTCRtpReceiver__jitter_buffer`,
  `__codecs`, `__rtx_ssrc`, `__started`, `__transport`, `__rtcp_task`, `__decoder_thread`;
  and `_track` (the `RemoteStreamTrack`, whose `_queue` gets None to signal its end).
- `RTCRtpReceiver.receive(parameters)`: what it does besides starting the decoder thread
  (record codecs and RTX SSRCs, `transport._register_rtp_receiver(self, parameters)`,
  start `self._run_rtcp()`), re-done by `_receive_without_decoder`.
- `RTCRtpReceiver._RTCRtpReceiver__stop_decoder()`: called on `stop()`, on disconnect and on
  RTCP BYE; replaced per instance to learn that the publisher's stream ended.
- `RTCRtpReceiver._send_rtcp_pli(media_ssrc)` (coroutine): upstream keyframe request.
- `RTCRtpSender._handle_rtcp_packet` calls `self._send_keyframe()` on PLI/FIR; replaced per
  instance. `RTCRtpSender._next_encoded_frame` passes anything that is not an `av.Frame`
  to `encoder.pack(packet)` (re-packetize only), which reads `bytes(packet)`, `packet.pts`
  and `packet.time_base`.
- `RTCRtpSender._next_encoded_frame(codec)` returns an `RTCEncodedFrame` whose
  `audio_level` (negative dBov or None) `_run_rtp` writes into every packet as
  `packet.extensions.audio_level = (False, -audio_level)`; wrapped per instance by
  `install_sender_audio_level` (clients sending pre-encoded Opus). On the receive side
  `RtpPacket.extensions.audio_level` is the parsed `(voice, -dBov)` tuple (public-ish;
  the frame assembler passes it on).
- `aiortc.contrib.media.RelayStreamTrack._queue` / `._buffered`: `MediaRelay` feeds a
  buffered proxy with `proxy._queue.put_nowait(item)`, and None marks the end; an
  unbuffered proxy gets `_frame` and `_new_frame_event` instead (`end_relay_proxy`).
  The bounded queue (`_DropOldestQueue`) also removes a queued frame of the highest
  temporal layer from `asyncio.Queue._queue` (the stdlib's deque) on overflow.
- `RTCRtpReceiver.__codecs` again, read-only, for the negotiated codec in stats.
- `RTCRtpTransceiver._codecs` (narrowed by `pin_negotiated_codecs`: aiortc negotiates the
  first answer's codecs before the `track` event), `_set_mid`, `_set_mline_index`,
  `_offerDirection`, `_bundled` (`park_transceivers`, for a client's glare handling: aiortc
  has no rollback) and the module function `aiortc.rtcpeerconnection.
  add_transport_description` (a client builds an offer without applying it), and
  `RTCIceTransport._role_set` / `._connection.ice_controlling` (`claim_ice_controlling`).
- The lean sender's internals (`RTCRtpSender._run_rtp`, its name-mangled history, counters
  and events, `RTCDtlsTransport._tx_srtp` / `_state` / `_send_rtp`, aioice's nominated
  pair and its datagram transport): listed in `sfu/compat/lean_sender.py`'s docstring and
  verified by `check_lean_sender_internals()`, which `check_internals()` runs.
- `RTCRtpReceiver.__remote_bitrate_estimator` and how `_handle_rtp_packet` calls its
  `add()` (listed in `sfu/compat/remb.py`, verified by `check_remb_internals()`).
- The light receiver's (`_handle_rtp_packet` replaced per instance, `__remote_streams`,
  `__nack_generator`, `__rtcp_ssrc`, `_send_rtcp_nack`, `_send_rtcp`): listed in
  `sfu/compat/light_receiver.py`, verified by `check_light_receiver_internals()`.
- The lean receiver's (`_handle_rtp_packet` replaced per instance, the receiver's
  statistics, NACK generator, estimator, jitter buffer and active sources): listed in
  `sfu/compat/lean_receiver.py`, verified by `check_lean_receiver_internals()`.
- The downlink feedback hook (`RTCRtpSender._handle_rtcp_packet` wrapped per instance, its
  `_ssrc`, `__octet_count`, and the DTLS transport's RTCP routing) and the receiver's
  loss-recovery counters (`_send_rtcp_nack` wrapped per instance, `__remote_streams` read
  for the RTX SSRCs): listed in `sfu/compat/sender.py` and `sfu/compat/receiver.py`,
  verified by `check_sender_internals()` and `check_receiver_internals()`.
- `RTCRtpTransceiver._codecs` / `._headerExtensions`, which `RTCPeerConnection.createOffer`
  resets to aiortc's defaults (`create_offer_keeping_negotiated` restores them).
"""
