"""A bot for emulated-network tests, run inside a host's namespace: joins a room, publishes
a paced 640x480 VP8 clip (about 600 kbps) and Opus when asked, stays until killed.

    python -m tests.netem_bot URL ICE_ADDRESS ROOM NAME {publish,subscribe} SECONDS
"""

from __future__ import annotations

import asyncio
import sys


async def run(url: str, address: str, room: str, name: str, publish: bool, seconds: float) -> None:
    from sfu.ice_policy import IcePolicy
    from signaling.client import SfuClient
    from signaling.sources import PacedAudioTrack, PacedVideoTrack, encode_clip

    IcePolicy([address]).install()  # ICE on this namespace's address only
    clip = None
    if publish:
        clip = await asyncio.to_thread(
            encode_clip, width=640, height=480, fps=30, seconds=4.0, bitrate=600_000
        )
    client = await SfuClient.connect(url, decode=False, timeout=20)
    try:
        await client.join(room, name)
        if clip is not None:
            await client.publish(video=PacedVideoTrack(clip), audio=PacedAudioTrack())
        await client.wait_connected(timeout=20)
        print(f"{name} connected", flush=True)
        await asyncio.sleep(seconds)
    finally:
        await client.close()


def main() -> None:
    url, address, room, name, role, seconds = sys.argv[1:7]
    asyncio.run(run(url, address, room, name, role == "publish", float(seconds)))


if __name__ == "__main__":
    main()
