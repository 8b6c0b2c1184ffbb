"""A WHEP viewer we did not write: aiortc (PyPI) receiving a stream from rivulet.

    python3 web/tests/whep_aiortc.py http://HOST:PORT/live/NAME/whep [FRAMES]

Posts a receive-only offer (video + audio), decodes FRAMES video frames (default 30)
and some audio, ends the session with DELETE, and prints what it got. Exit 0 on
success, 1 on failure, 77 when aiortc is not installed (scripts/setup.sh installs it).
"""

import asyncio
import sys
import urllib.error
import urllib.parse
import urllib.request

try:
    from aiortc import RTCPeerConnection, RTCSessionDescription
except ImportError:
    print("SKIPPED: aiortc is not installed (scripts/setup.sh)")
    sys.exit(77)


def post(url, sdp):
    req = urllib.request.Request(
        url, data=sdp.encode(), method="POST", headers={"Content-Type": "application/sdp"}
    )
    with urllib.request.urlopen(req, timeout=20) as r:
        return r.status, r.headers.get("Location"), r.read().decode()


def delete(url):
    req = urllib.request.Request(url, method="DELETE")
    with urllib.request.urlopen(req, timeout=20) as r:
        return r.status


async def main(url, want):
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    got = {"video": 0, "audio": 0, "size": None}
    done = asyncio.Event()

    async def consume(track):
        while True:
            frame = await track.recv()
            got[track.kind] += 1
            if track.kind == "video":
                got["size"] = (frame.width, frame.height)
            if got["video"] >= want and got["audio"] >= 10:
                done.set()

    pc.on("track", lambda track: asyncio.ensure_future(consume(track)))
    await pc.setLocalDescription(await pc.createOffer())
    status, location, answer = await asyncio.to_thread(post, url, pc.localDescription.sdp)
    assert status == 201, f"POST answered {status}"
    assert location, "no Location header"
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    try:
        await asyncio.wait_for(done.wait(), timeout=60)
    except asyncio.TimeoutError:
        print(f"FAIL: in 60 s only {got}")
        await pc.close()
        return 1
    resource = urllib.parse.urljoin(url, location)
    deleted = await asyncio.to_thread(delete, resource)
    await pc.close()
    print(
        f"aiortc: {got['video']} video frames ({got['size'][0]}x{got['size'][1]}), "
        f"{got['audio']} audio frames; DELETE {deleted}"
    )
    return 0 if deleted == 200 else 1


if __name__ == "__main__":
    want = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    sys.exit(asyncio.run(main(sys.argv[1], want)))
