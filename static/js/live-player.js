// Live preview through Media Source Extensions (SPEC §4, `?preview=mse`).
//
// The server sends one fMP4 initialisation segment, then moof+mdat fragments, each starting
// on a key frame, stamped with their real position in the video (baseMediaDecodeTime). The
// SourceBuffer stays in the default "segments" mode, so a late joiner's first fragment lands
// at, say, 12 s and the buffered range is [12, 13): the player seeks the playhead into the
// first buffered range when it is not inside one. The same rule skips the gaps a slow viewer
// gets when the server drops fragments for it. Appends are queued and issued one at a time
// (a SourceBuffer rejects appendBuffer while `updating`); the terminal message calls end(),
// which runs endOfStream() once the queue has drained, so playback runs to the last frame
// and fires `ended` instead of stalling.

const EPS = 0.04; // seconds: tolerance when deciding whether the playhead is inside a range
const KEEP_BEHIND = 30; // seconds of already-played media kept in the buffer

function MediaSourceClass() {
  return window.ManagedMediaSource || window.MediaSource || null;
}

export function mseSupported(mime) {
  const MS = MediaSourceClass();
  if (!MS) return false;
  try {
    return mime ? MS.isTypeSupported(mime) : true;
  } catch {
    return false;
  }
}

/** Builds an MSE mime type from an fMP4 init segment (fallback when the server gave none). */
export function sniffMime(buf) {
  const b = new Uint8Array(buf);
  const find = (a, b2, c, d) => {
    for (let i = 0; i + 8 < b.length; i++) if (b[i] === a && b[i + 1] === b2 && b[i + 2] === c && b[i + 3] === d) return i;
    return -1;
  };
  const codecs = [];
  const avc = find(0x61, 0x76, 0x63, 0x43); // "avcC"
  if (avc >= 0) {
    const hex = (x) => x.toString(16).padStart(2, "0");
    codecs.push(`avc1.${hex(b[avc + 5])}${hex(b[avc + 6])}${hex(b[avc + 7])}`);
  }
  if (find(0x6d, 0x70, 0x34, 0x61) >= 0) codecs.push("mp4a.40.2"); // "mp4a"
  if (find(0x4f, 0x70, 0x75, 0x73) >= 0) codecs.push("opus"); // "Opus"
  return codecs.length ? `video/mp4; codecs="${codecs.join(",")}"` : null;
}

export class LivePlayer {
  /**
   * @param {HTMLVideoElement} video
   * @param {{onState?: (state: string, detail?: string) => void}} opts
   *   states: "waiting" (no media yet), "playing", "ended", "error", "unsupported"
   */
  constructor(video, { onState } = {}) {
    this.video = video;
    this.onState = onState || (() => {});
    this.mime = null;
    this.ms = null;
    this.sb = null;
    this.url = null;
    this.queue = [];
    this.pending = []; // buffers received before the mime type was known
    this.ending = false;
    this.ended = false;
    this.failed = false;
    this.destroyed = false;
    this.appended = 0; // binary frames appended (the init segment included)
    this.bytes = 0;
    this._onUpdateEnd = () => this._afterAppend();
    this._onVideoEvent = () => this.seekIntoBuffer();
    this._tick = null;
  }

  get started() {
    return Boolean(this.ms);
  }

  /** Opens the MediaSource for `mime`. Returns false when this browser cannot play it. */
  start(mime) {
    if (this.ms || this.destroyed) return true;
    if (!mime && this.pending.length) mime = sniffMime(this.pending[0]);
    if (!mime) return false;
    this.mime = mime;
    if (!mseSupported(mime)) {
      this.failed = true;
      this.onState("unsupported", `This browser cannot play ${mime} through Media Source Extensions.`);
      return false;
    }
    const MS = MediaSourceClass();
    const video = this.video;
    this.ms = new MS();
    if (window.ManagedMediaSource && MS === window.ManagedMediaSource) video.disableRemotePlayback = true;
    this.ms.addEventListener("sourceopen", () => this._open(), { once: true });
    this.url = URL.createObjectURL(this.ms);
    video.muted = true; // autoplay policies allow muted playback without a gesture
    video.autoplay = true;
    video.playsInline = true;
    video.src = this.url;
    for (const ev of ["waiting", "stalled", "loadedmetadata", "canplay", "seeked"]) video.addEventListener(ev, this._onVideoEvent);
    this._tick = setInterval(() => this.seekIntoBuffer(), 500);
    this.queue.push(...this.pending);
    this.pending = [];
    this.onState("waiting");
    return true;
  }

  _open() {
    if (this.destroyed || !this.ms || this.ms.readyState !== "open") return;
    try {
      this.sb = this.ms.addSourceBuffer(this.mime); // mode stays "segments"
    } catch (e) {
      this._fail(`Cannot open a buffer for ${this.mime}: ${e.message || e}`);
      return;
    }
    this.sb.addEventListener("updateend", this._onUpdateEnd);
    this.sb.addEventListener("error", () => this._fail("The browser rejected a media fragment."));
    this._pump();
  }

  /** Queues one binary frame (the init segment first, then fragments, in arrival order). */
  push(buffer) {
    if (this.destroyed || this.failed) return;
    if (!this.ms) {
      this.pending.push(buffer);
      return;
    }
    this.queue.push(buffer);
    this._pump();
  }

  /** No more data: ends the stream once everything queued is appended. */
  end() {
    this.ending = true;
    this._pump();
  }

  _pump() {
    const sb = this.sb;
    if (!sb || this.destroyed || this.failed || sb.updating || this.ms.readyState !== "open") return;
    if (this.queue.length) {
      const buf = this.queue[0];
      try {
        sb.appendBuffer(buf);
        this.queue.shift();
        this.bytes += buf.byteLength;
        this.appended++;
      } catch (e) {
        if (e && e.name === "QuotaExceededError") {
          if (!this._evict(true)) this.queue.shift(); // nothing to free: drop it, a gap is skipped later
        } else {
          this._fail(`Appending a fragment failed: ${e.message || e}`);
        }
      }
      return;
    }
    if (this.ending && !this.ended) {
      this.ended = true;
      try {
        this.ms.endOfStream();
      } catch {
        /* already ended or closed */
      }
      this.onState("ended");
    }
  }

  _afterAppend() {
    if (this.destroyed) return;
    this.seekIntoBuffer();
    if (this.video.buffered.length && this.video.paused && !this.video.ended && this.video.autoplay) {
      const p = this.video.play();
      if (p && p.catch) p.catch(() => {});
    }
    if (this.video.buffered.length) this.onState("playing");
    if (!this._evict(false)) this._pump();
  }

  /** Frees played media. Returns true when a remove() was started (updateend pumps again). */
  _evict(force) {
    const sb = this.sb;
    const b = this.video.buffered;
    if (!sb || sb.updating || !b.length) return false;
    const start = b.start(0);
    const keep = force ? 5 : KEEP_BEHIND;
    const upTo = this.video.currentTime - keep;
    if (upTo - start < (force ? 0.5 : 10)) return false;
    try {
      sb.remove(start, upTo);
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Keeps the playhead inside buffered media: before the first range (a late joiner starts
   * at 0 while its first fragment is at, say, 12 s) or in a gap (skipped fragments), it jumps
   * to the start of the next buffered range. Past the last range it waits for more data.
   */
  seekIntoBuffer() {
    const v = this.video;
    if (this.destroyed || !this.ms) return;
    const b = v.buffered;
    if (!b.length) return;
    const t = v.currentTime;
    for (let i = 0; i < b.length; i++) {
      if (t >= b.start(i) - EPS && t < b.end(i)) return; // inside: nothing to do
    }
    for (let i = 0; i < b.length; i++) {
      if (b.start(i) > t) {
        v.currentTime = b.start(i) + 0.001;
        return;
      }
    }
  }

  /** End of the buffered media (the live edge), in seconds. */
  get liveEdge() {
    const b = this.video.buffered;
    return b.length ? b.end(b.length - 1) : 0;
  }

  _fail(message) {
    if (this.failed) return;
    this.failed = true;
    this.onState("error", message);
  }

  /** Detaches from the <video>; it can then be given another src. */
  destroy() {
    if (this.destroyed) return;
    this.destroyed = true;
    clearInterval(this._tick);
    const v = this.video;
    for (const ev of ["waiting", "stalled", "loadedmetadata", "canplay", "seeked"]) v.removeEventListener(ev, this._onVideoEvent);
    if (this.sb) this.sb.removeEventListener("updateend", this._onUpdateEnd);
    if (this.ms && this.ms.readyState === "open") {
      try {
        this.ms.endOfStream();
      } catch {
        /* ignore */
      }
    }
    if (this.url) URL.revokeObjectURL(this.url);
    this.queue = [];
    this.pending = [];
  }
}
