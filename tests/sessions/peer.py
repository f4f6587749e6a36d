#!/usr/bin/env python3
"""A real WebRTC peer for reelgen's live sessions, on aiortc (H.264/VP8/Opus decoders).

It offers to receive video and audio (and opens an `events` data channel), posts the offer to
`POST /api/v1/sessions/{id}/webrtc`, and decodes what arrives. Then:

  check  — waits for decoded video and audio frames, sends one `speak`, waits for its
           `speaking_started` / `word` / `speaking_ended` events over the data channel, and
           times speak → first decoded frame whose mouth differs from the idle mouth.
  bench  — the same timing over --count utterances; prints p50 and p95.
  soak   — speaks sentence after sentence for --seconds and counts what it decoded (the
           concurrency benchmark runs one per session).

The mouth is found without knowing the layout: while the avatar idles, the frames' luma is
recorded; the box that changes least while idle but is where speech changes the picture
most is learned from the first utterance (its frames against the idle ones), and later
frames count as "speaking" when that box's mean absolute difference from the idle
reference exceeds what idling ever produced there. Prints one JSON object on stdout.
"""

import argparse
import asyncio
import json
import statistics
import sys
import time
import urllib.request

from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

GRID = 24  # the picture is split into GRID x GRID cells
MOUTH_MIN = 4  # dark pixels (of those counted) beyond idling that make a mouth "speaking"
DARK = bytes(1 if v < 70 else 0 for v in range(256))  # luma → 1 where dark


def http(method, url, body=None, key=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if key:
        req.add_header("X-Api-Key", key)
    with urllib.request.urlopen(req, timeout=60) as r:
        raw = r.read()
        return r.status, (json.loads(raw) if raw else None)


def cells(frame):
    """Dark pixels in each grid cell (every second row): an open mouth is dark inside a
    bright face, and a count does not change when the head sways a pixel or two."""
    plane = frame.planes[0]
    w, h, stride = frame.width, frame.height, plane.line_size
    dark = bytes(plane).translate(DARK)
    out = []
    for gy in range(GRID):
        y0, y1 = gy * h // GRID, (gy + 1) * h // GRID
        rows = range(y0, y1, 2)
        for gx in range(GRID):
            x0, x1 = gx * w // GRID, (gx + 1) * w // GRID
            out.append(sum(sum(dark[r * stride + x0: r * stride + x1]) for r in rows))
    return out


class Peer:
    def __init__(self, args):
        self.args = args
        self.base = args.base.rstrip("/")
        self.pc = RTCPeerConnection()
        self.video_frames = 0
        self.audio_frames = 0
        self.audio_loud = 0
        self.size = None
        self.events = []
        self.event_waiters = []
        self.frames = []  # (arrival time, cells)
        self.frame_cond = asyncio.Condition()

    def url(self, path):
        return f"{self.base}/api/v1/sessions/{self.args.session}{path}"

    async def connect(self):
        video = self.pc.addTransceiver("video", direction="recvonly")
        if self.args.codec:
            from aiortc.rtcrtpsender import RTCRtpSender
            wanted = [c for c in RTCRtpSender.getCapabilities("video").codecs
                      if c.mimeType.lower() == f"video/{self.args.codec}"]
            video.setCodecPreferences(wanted)
        self.pc.addTransceiver("audio", direction="recvonly")
        channel = self.pc.createDataChannel("events")

        @channel.on("message")
        def on_message(msg):
            ev = json.loads(msg)
            ev["_at"] = time.monotonic()
            self.events.append(ev)

        @self.pc.on("track")
        def on_track(track):
            if track.kind == "video":
                asyncio.ensure_future(self.read_video(track))
            else:
                asyncio.ensure_future(self.read_audio(track))

        await self.pc.setLocalDescription(await self.pc.createOffer())
        offer = {"type": "offer", "sdp": self.pc.localDescription.sdp}
        status, answer = await asyncio.to_thread(http, "POST", self.url("/webrtc"), offer, self.args.api_key)
        assert status == 200, status
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        self.codec = next(
            (line.split()[1].split("/")[0] for line in answer["sdp"].splitlines()
             if line.startswith("a=rtpmap:") and "90000" in line),
            None,
        )

    async def read_video(self, track):
        try:
            while True:
                frame = await track.recv()
                now = time.monotonic()
                self.video_frames += 1
                self.size = (frame.width, frame.height)
                fp = await asyncio.to_thread(cells, frame)
                async with self.frame_cond:
                    self.frames.append((now, fp))
                    self.frame_cond.notify_all()
        except MediaStreamError:
            pass

    async def read_audio(self, track):
        try:
            while True:
                frame = await track.recv()
                self.audio_frames += 1
                samples = bytes(frame.planes[0])
                if any(b not in (0, 255) for b in samples[:64]):
                    self.audio_loud += 1
        except MediaStreamError:
            pass

    async def wait_for(self, pred, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return True
            await asyncio.sleep(0.01)
        return pred()

    async def event(self, kind, utterance, timeout=30):
        ok = await self.wait_for(
            lambda: any(e["type"] == kind and e.get("utterance_id") == utterance for e in self.events), timeout)
        return ok

    async def speak(self, text):
        t0 = time.monotonic()
        status, body = await asyncio.to_thread(http, "POST", self.url("/speak"), {"text": text}, self.args.api_key)
        assert status == 202, status
        return t0, body["utterance_id"]


def beyond_idle(frame, reference, spread, idx):
    """Dark pixels in the mouth cells beyond anything idling produced there."""
    return sum(max(0, abs(frame[i] - reference[i]) - spread[i]) for i in idx)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--session", required=True)
    ap.add_argument("--api-key")
    ap.add_argument("--mode", choices=["check", "bench", "soak"], default="check")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--codec", choices=["h264", "vp8"], help="offer only this video codec")
    ap.add_argument("--count", type=int, default=30)
    ap.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()

    peer = Peer(args)
    await peer.connect()
    result = {"codec": peer.codec}
    # Idle: decoded video and audio arrive, and the idle mouth is learned.
    ok = await peer.wait_for(lambda: peer.video_frames >= 50 and peer.audio_frames >= 20, args.timeout)
    result.update(video_frames_idle=peer.video_frames, audio_frames_idle=peer.audio_frames, size=peer.size)
    if not ok:
        result["error"] = "no media within the timeout"
        print(json.dumps(result))
        return 1
    if args.mode == "soak":
        texts = ["Hello there, welcome to the live session.", "This sentence keeps the avatar busy.",
                 "We measure how many sessions run at once."]
        v0, a0, t0 = peer.video_frames, peer.audio_frames, time.monotonic()
        k = 0
        while time.monotonic() - t0 < args.seconds:
            _, uid = await peer.speak(texts[k % len(texts)])
            await peer.event("speaking_ended", uid, 30)
            k += 1
        spent = time.monotonic() - t0
        result.update(seconds=round(spent, 2), utterances=k,
                      video_fps=round((peer.video_frames - v0) / spent, 2),
                      audio_fps=round((peer.audio_frames - a0) / spent, 2))
        await peer.pc.close()
        print(json.dumps(result))
        return 0
    # Four seconds of idling: the reference and how far idling alone moves each cell.
    await peer.wait_for(lambda: len(peer.frames) >= 100, args.timeout)
    idle = [fp for _, fp in peer.frames[-100:]]
    reference = [statistics.median(c[i] for c in idle) for i in range(GRID * GRID)]
    idle_spread = [max(abs(c[i] - reference[i]) for c in idle) for i in range(GRID * GRID)]

    # Learn where speech shows: the cells that change most while speaking, against idling.
    start_n = len(peer.frames)
    t0, uid = await peer.speak("Hello there, how are you doing today? Reelgen speaks live.")
    got = await peer.event("speaking_ended", uid, args.timeout)
    spoken = [fp for _, fp in peer.frames[start_n:]]
    gain = [max((abs(c[i] - reference[i]) for c in spoken), default=0) - idle_spread[i] for i in range(GRID * GRID)]
    mouth = [i for i in sorted(range(GRID * GRID), key=lambda i: -gain[i])[:4] if gain[i] > 0]
    if not mouth:
        result["error"] = "speech changed nothing in the picture"
        print(json.dumps(result))
        return 1
    result["events"] = sorted({e["type"] for e in peer.events})
    result["words"] = [e["text"] for e in peer.events if e["type"] == "word" and e.get("utterance_id") == uid]
    result["first_utterance_ended"] = got
    result["mouth_cells"] = mouth

    count = 1 if args.mode == "check" else args.count
    latencies = []
    texts = ["Good morning.", "Absolutely, let us begin.", "Open wide and say ah.", "Thanks a lot!",
             "We can do that right now.", "Hello again."]
    for k in range(count):
        # Back to idle first: the mouth box must read idle before the request.
        await peer.wait_for(lambda: beyond_idle(peer.frames[-1][1], reference, idle_spread, mouth) == 0, 5)
        before = len(peer.frames)
        t0, uid = await peer.speak(texts[k % len(texts)])
        seen = None
        deadline = time.monotonic() + 10
        while seen is None and time.monotonic() < deadline:
            async with peer.frame_cond:
                try:
                    await asyncio.wait_for(peer.frame_cond.wait(), 1)
                except asyncio.TimeoutError:
                    pass
            for at, fp in peer.frames[before:]:
                if at >= t0 and beyond_idle(fp, reference, idle_spread, mouth) >= MOUTH_MIN:
                    seen = at
                    break
        if seen is not None:
            latencies.append((seen - t0) * 1000)
        await peer.event("speaking_ended", uid, 30)

    result.update(
        video_frames=peer.video_frames,
        audio_frames=peer.audio_frames,
        audio_frames_with_sound=peer.audio_loud,
        latencies_ms=[round(x, 1) for x in latencies],
        utterances=count,
    )
    if latencies:
        s = sorted(latencies)
        result["p50_ms"] = round(statistics.median(s), 1)
        result["p95_ms"] = round(s[min(len(s) - 1, int(round(0.95 * (len(s) - 1))))], 1)
    await peer.pc.close()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
