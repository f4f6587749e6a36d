#!/usr/bin/env python3
"""A real WebRTC peer for reelgen's live sessions, on aiortc (H.264/VP8/Opus decoders).

It offers to receive video and audio (and opens an `events` data channel), posts the offer to
`POST /api/v1/sessions/{id}/webrtc`, and decodes what arrives. Then:

  check  — waits for decoded video and audio frames, sends one `speak`, waits for its
           `speaking_started` / `word` / `speaking_ended` events over the data channel, and
           times speak → first decoded frame whose mouth differs from the idle mouth.
  bench  — the same timing over --count utterances; prints p50 and p95.

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

GRID = 12  # the picture is split into GRID x GRID cells


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
    """Mean luma of each grid cell (a coarse fingerprint of the picture)."""
    plane = frame.planes[0]
    w, h, stride = frame.width, frame.height, plane.line_size
    y = bytes(plane)
    out = []
    for gy in range(GRID):
        y0, y1 = gy * h // GRID, (gy + 1) * h // GRID
        for gx in range(GRID):
            x0, x1 = gx * w // GRID, (gx + 1) * w // GRID
            total, n = 0, 0
            for row in range(y0, y1, 2):
                seg = y[row * stride + x0: row * stride + x1: 2]
                total += sum(seg)
                n += len(seg)
            out.append(total / max(n, 1))
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
        self.pc.addTransceiver("video", direction="recvonly")
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


def diff(a, b, idx):
    return sum(abs(a[i] - b[i]) for i in idx) / len(idx)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--session", required=True)
    ap.add_argument("--api-key")
    ap.add_argument("--mode", choices=["check", "bench"], default="check")
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
    idle = [fp for _, fp in peer.frames[-50:]]
    reference = [statistics.mean(c[i] for c in idle) for i in range(GRID * GRID)]
    idle_spread = [max(abs(c[i] - reference[i]) for c in idle) for i in range(GRID * GRID)]

    # Learn where speech shows: the cells that change most while speaking, against idling.
    start_n = len(peer.frames)
    t0, uid = await peer.speak("Hello there, how are you doing today? Reelgen speaks live.")
    got = await peer.event("speaking_ended", uid, args.timeout)
    spoken = [fp for _, fp in peer.frames[start_n:]]
    gain = [max((abs(c[i] - reference[i]) for c in spoken), default=0) - idle_spread[i] for i in range(GRID * GRID)]
    mouth = sorted(range(GRID * GRID), key=lambda i: -gain[i])[:2]
    threshold = max(idle_spread[i] for i in mouth) + 2.0
    result["events"] = sorted({e["type"] for e in peer.events})
    result["words"] = [e["text"] for e in peer.events if e["type"] == "word" and e.get("utterance_id") == uid]
    result["first_utterance_ended"] = got
    result["mouth_cells"] = mouth
    await asyncio.sleep(1.0)

    count = 1 if args.mode == "check" else args.count
    latencies = []
    texts = ["Good morning.", "Absolutely, let us begin.", "Open wide and say ah.", "Thanks a lot!",
             "We can do that right now.", "Hello again."]
    for k in range(count):
        # Back to idle first: the mouth box must read idle before the request.
        await peer.wait_for(lambda: diff(peer.frames[-1][1], reference, mouth) <= threshold, 5)
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
                if at >= t0 and diff(fp, reference, mouth) > threshold:
                    seen = at
                    break
        if seen is not None:
            latencies.append((seen - t0) * 1000)
        await peer.event("speaking_ended", uid, 30)
        await asyncio.sleep(0.3)

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
