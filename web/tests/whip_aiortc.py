"""A WHIP publisher we did not write: aiortc (PyPI) publishing to rivulet.

    python3 web/tests/whip_aiortc.py http://HOST:PORT/whip STREAM_KEY [SECONDS]

Publishes a file that ffmpeg makes first (lavfi testsrc 640x360 at 30 fps and a
440 Hz sine, ten seconds, looped by aiortc's MediaPlayer; aiortc encodes the video
to H.264 with libx264 and the audio to Opus) for SECONDS (default 20), with the key
as Bearer token, then ends the publish with DELETE. Exit 0 on success, 1 on failure,
77 when aiortc is not installed (scripts/setup.sh installs it).
"""

import asyncio
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

try:
    from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
    from aiortc.contrib.media import MediaPlayer
except ImportError:
    print("SKIPPED: aiortc is not installed (scripts/setup.sh)")
    sys.exit(77)


def source_file(directory):
    """Ten seconds of test pattern and tone, made by ffmpeg."""
    path = os.path.join(directory, "source.mp4")
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", "testsrc=size=640x360:rate=30",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-t", "10", "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-c:a", "aac", path,
        ],
        check=True,
    )
    return path


def post(url, key, sdp):
    req = urllib.request.Request(
        url,
        data=sdp.encode(),
        method="POST",
        headers={"Content-Type": "application/sdp", "Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(req, timeout=20) as r:
        return r.status, r.headers.get("Location"), r.read().decode()


def delete(url):
    req = urllib.request.Request(url, method="DELETE")
    with urllib.request.urlopen(req, timeout=20) as r:
        return r.status


async def main(url, key, seconds, directory):
    player = MediaPlayer(source_file(directory), loop=True)
    pc = RTCPeerConnection()
    video = pc.addTransceiver(player.video, direction="sendonly")
    pc.addTransceiver(player.audio, direction="sendonly")
    # H.264 only: the server takes nothing else.
    h264 = [c for c in RTCRtpSender.getCapabilities("video").codecs if c.mimeType == "video/H264"]
    video.setCodecPreferences(h264)
    await pc.setLocalDescription(await pc.createOffer())
    status, location, answer = post(url, key, pc.localDescription.sdp)
    if status != 201 or not location:
        print(f"FAILED: POST answered {status}, Location {location}")
        return 1
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if pc.connectionState in ("failed", "closed"):
            print(f"FAILED: connection {pc.connectionState}")
            return 1
        await asyncio.sleep(0.5)
    state = pc.connectionState
    resource = urllib.parse.urljoin(url, location)
    deleted = delete(resource)
    await pc.close()
    print(f"aiortc published {seconds} s over WHIP (connection {state}), DELETE {deleted}")
    return 0 if state == "connected" and deleted == 200 else 1


if __name__ == "__main__":
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 20.0
    with tempfile.TemporaryDirectory() as directory:
        sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2], seconds, directory)))
