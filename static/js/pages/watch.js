// Watch page (#/watch/{id}): live progress and live preview over the video's WebSocket
// (SPEC §4, ?preview=mse), then the finished MP4.

import { api, ApiError, wsUrl, mediaUrl, videoFileUrl, thumbnailUrl, captionsUrl, needsBlobMedia } from "../api.js";
import {
  h, $, fill, fmtDuration, fmtEta, fmtBytes, fmtDateTime, fmtRelative, fmtNumber, asText,
  setStatusBadge, progressBar, setProgress, isTerminal, toast,
} from "../dom.js";
import { LivePlayer, mseSupported } from "../live-player.js";
import { watchHandoff } from "./create.js";

const RECONNECT_MAX_MS = 15000;

function fileName(video, ext = "mp4") {
  const base = String((video && video.title) || "video").replace(/[^\w\- ]+/g, "").trim().replace(/\s+/g, "-").slice(0, 60);
  return `${base || "video"}.${ext}`;
}

export function mount(view, [id]) {
  let disposed = false;
  let current = watchHandoff.get(id) || null;
  watchHandoff.delete(id);
  let ws = null;
  let player = null;
  let knownMime = null;
  let terminal = false;
  let fileShown = false;
  let reconnectTimer = null;
  let attempts = 0;
  let cancelPending = false;
  let deleteArmed = null;

  // ---- skeleton ------------------------------------------------------------------------------
  const titleEl = h("h1.watch-title", {}, (current && current.title) || "Video");
  const badge = h("span.badge", { "data-testid": "status", "aria-live": "polite" }, "loading");
  const meta = h("p.muted.watch-meta");
  const videoEl = h("video.player-video", {
    "data-testid": "preview", controls: true, playsinline: true, muted: true, preload: "metadata",
    "aria-label": "Video preview",
  });
  videoEl.muted = true;
  const liveTag = h("span.live-tag", { hidden: true }, h("span.live-dot", { "aria-hidden": "true" }), "LIVE");
  const overlay = h("div.player-overlay", { "aria-live": "polite" }, h("div.spinner", { "aria-hidden": "true" }), h("p", {}, "Connecting…"));
  const player_ = h("div.player", {}, videoEl, liveTag, overlay);
  const bar = progressBar({ "data-testid": "progress", "aria-label": "Generation progress" });
  const pct = h("span.stat-value", {}, "0%");
  const frames = h("span.stat-value", {}, "—");
  const fpsEl = h("span.stat-value", {}, "—");
  const etaEl = h("span.stat-value", {}, "—");
  const stats = h("dl.stats", {},
    h("div", {}, h("dt", {}, "Progress"), h("dd", {}, pct)),
    h("div", {}, h("dt", {}, "Frames"), h("dd", {}, frames)),
    h("div", {}, h("dt", {}, "Render speed"), h("dd", {}, fpsEl)),
    h("div", {}, h("dt", {}, "Time left"), h("dd", {}, etaEl)));
  const progressBlock = h("div.progress-block", {}, bar, stats);
  const errorBox = h("div.error-summary", { role: "alert", hidden: true });
  const previewNote = h("p.hint.preview-note", { hidden: true });
  const connNote = h("p.hint.conn-note", { "aria-live": "polite" });

  const cancelBtn = h("button.btn.btn-danger", { type: "button", hidden: true }, "Cancel generation");
  const download = h("a.btn.btn-primary", { "data-testid": "download", hidden: true, href: "#", download: "" },
    downloadIcon(), "Download MP4");
  // Caption files, shown once the file is, for a video with speech.
  const vttLink = h("a.btn.btn-ghost", { "data-testid": "captions-vtt", href: "#", download: "" }, downloadIcon(), "Captions (VTT)");
  const srtLink = h("a.btn.btn-ghost", { "data-testid": "captions-srt", href: "#", download: "" }, downloadIcon(), "Captions (SRT)");
  const captionLinks = h("span.caption-links", { hidden: true }, vttLink, srtLink);
  const deleteBtn = h("button.btn.btn-ghost.btn-danger-text", { type: "button", hidden: true }, "Delete");
  const again = h("a.btn.btn-ghost", { href: "#/" }, "Create another");
  const actions = h("div.watch-actions", {}, cancelBtn, download, captionLinks, deleteBtn, again);
  const details = h("dl.details");

  view.append(
    h("nav.crumbs", { "aria-label": "Breadcrumb" }, h("a", { href: "#/library" }, "← Library")),
    h("div.watch-head", {}, h("div.watch-head-text", {}, titleEl, meta), badge),
    h("div.watch-grid", {},
      h("section.card.watch-main", { "aria-label": "Player" }, player_, progressBlock, errorBox, previewNote, actions, connNote),
      h("aside.card.watch-side", { "aria-label": "Video details" }, h("h2", {}, "Details"), details)),
  );

  // ---- rendering state ----------------------------------------------------------------------
  function setOverlay(text, spinner = true) {
    if (!text) {
      overlay.hidden = true;
      return;
    }
    overlay.hidden = false;
    fill(overlay, spinner ? h("div.spinner", { "aria-hidden": "true" }) : null, h("p", {}, text));
  }

  function setStatus(status, queuePosition) {
    if (!current) current = {};
    current.status = status;
    if (queuePosition !== undefined) current.queue_position = queuePosition;
    setStatusBadge(badge, status);
    cancelBtn.hidden = isTerminal(status);
    deleteBtn.hidden = !isTerminal(status);
    if (status === "queued") {
      const pos = current.queue_position;
      setOverlay(pos != null ? `Queued — position ${pos} in line` : "Queued — starting soon");
    } else if (status === "rendering" && !(player && player.video.buffered.length)) {
      setOverlay(player && player.failed ? "Rendering… (live preview unavailable)" : "Rendering — the live preview starts with the first second of video");
    }
    progressBlock.classList.toggle("done", status === "completed");
  }

  function setProgressFields(p) {
    const f = Number(p.progress);
    if (Number.isFinite(f)) {
      // progress never goes backwards; keep it monotonic on screen too
      const prev = Number(bar.getAttribute("aria-valuenow")) / 100;
      setProgress(bar, Math.max(prev, f));
      pct.textContent = `${Math.floor(Math.max(prev, f) * 100)}%`;
    }
    if (p.frames_total != null) frames.textContent = `${Number(p.frames_done || 0).toLocaleString()} / ${Number(p.frames_total).toLocaleString()}`;
    if (p.fps != null) fpsEl.textContent = `${fmtNumber(p.fps)} fps`;
    if (p.eta_s != null) etaEl.textContent = fmtEta(p.eta_s);
    if (current && current.status === "rendering" && Number(bar.getAttribute("aria-valuenow")) >= 100) {
      etaEl.textContent = "finishing…"; // all frames rendered; the MP4 is being finalised
    }
  }

  function renderDetails(v) {
    const p = (v && v.params) || {};
    const rows = [];
    const add = (k, val) => {
      if (val == null || val === "") return;
      rows.push(h("div", {}, h("dt", {}, k), h("dd", {}, val)));
    };
    if (p.script) add("Script", h("blockquote.script", {}, String(p.script)));
    if (Array.isArray(p.scenes)) {
      const spans = Array.isArray(v.scenes) ? v.scenes : [];
      add(`Scenes (${p.scenes.length})`, h("ol.scene-summary", {}, p.scenes.map((sc, i) => {
        const span = spans[i];
        const when = span ? ` (${Number(span.start_s).toFixed(1)}–${(Number(span.start_s) + Number(span.duration_s)).toFixed(1)} s)` : "";
        const who = sc.avatar ? `${asText(sc.avatar.id)} · ${asText(sc.avatar.expression)}` : "";
        return h("li", {}, h("blockquote.script", {}, String(sc.script || "")), h("small", {}, `${who}${when}`));
      })));
    }
    if (p.audio) add("Sound", `your recording · ${Number(p.audio.duration_s || 0).toFixed(1)} s`);
    if (p.avatar) add("Avatar", `${asText(p.avatar.id)}${p.avatar.expression ? ` · ${asText(p.avatar.expression)}` : ""}`);
    add("Voice", p.voice ? `${asText(p.voice.id)} · speed ${asText(p.voice.speed)} · pitch ${asText(p.voice.pitch)}` : p.voice === null ? "none (silent)" : null);
    const bg = p.background;
    if (bg && typeof bg === "object") {
      const sw = (c) => (/^#[0-9a-f]{6}$/i.test(c || "") ? h("span.swatch", { style: { background: c }, "aria-hidden": "true" }) : null);
      if (bg.type === "color") add("Background", h("span", {}, sw(bg.value), asText(bg.value)));
      else if (bg.type === "gradient") add("Background", h("span", {}, sw(bg.from), sw(bg.to), `gradient ${asText(bg.from)} → ${asText(bg.to)}, ${asText(bg.angle)}°`));
      else if (bg.type === "image") add("Background", `scene ${asText(bg.asset_id)}`);
      else add("Background", asText(bg));
    }
    if (p.dimension) add("Size", `${asText(p.dimension.width)} × ${asText(p.dimension.height)}`);
    add("Frame rate", p.fps != null ? `${asText(p.fps)} fps` : null);
    add("Quality", p.quality != null ? asText(p.quality) : null);
    add("Captions", p.captions != null ? (p.captions ? "yes" : "no") : null);
    add("Duration", v && v.duration_s != null ? fmtDuration(v.duration_s) : null);
    add("File size", v && v.size_bytes != null ? fmtBytes(v.size_bytes) : null);
    add("Seed", p.seed != null ? asText(p.seed) : null);
    add("Created", v && v.created_at ? h("time", { datetime: v.created_at, title: fmtDateTime(v.created_at) }, fmtRelative(v.created_at)) : null);
    add("Completed", v && v.completed_at ? h("time", { datetime: v.completed_at, title: fmtDateTime(v.completed_at) }, fmtRelative(v.completed_at)) : null);
    add("ID", h("code.id", {}, id));
    fill(details, rows);
    const d = p.dimension;
    if (d && d.width && d.height) player_.style.aspectRatio = `${d.width} / ${d.height}`;
    player_.classList.toggle("portrait", Boolean(d && d.height > d.width));
  }

  function apply(v) {
    if (!v || typeof v !== "object") return;
    current = { ...(current || {}), ...v };
    titleEl.textContent = current.title || "Video";
    document.title = `${current.title || "Video"} · reelgen`;
    const p = current.params || {};
    const bits = [];
    if (p.dimension) bits.push(`${p.dimension.width}×${p.dimension.height}`);
    if (p.fps) bits.push(`${p.fps} fps`);
    if (p.quality) bits.push(String(p.quality));
    if (current.duration_s != null) bits.push(fmtDuration(current.duration_s));
    meta.textContent = bits.join(" · ");
    renderDetails(current);
    setStatus(current.status, current.queue_position);
    setProgressFields(current);
    if (current.status === "completed") {
      setProgressFields({ progress: 1 });
      etaEl.textContent = "done";
    }
    if (current.status === "failed") showFailure(current.error);
    if (current.status === "cancelled") showCancelled();
  }

  function noMedia() {
    if (videoEl.dataset.source !== "file") videoEl.controls = false;
  }

  function showFailure(error) {
    const e = error && typeof error === "object" ? error : { message: asText(error) };
    fill(errorBox,
      h("h2", {}, "Generation failed"),
      h("p", {}, e.message ? String(e.message) : "The video could not be generated."),
      e.code ? h("p.muted", {}, "Code: ", h("code", {}, String(e.code))) : null);
    errorBox.hidden = false;
    setOverlay("This video failed to generate.", false);
    liveTag.hidden = true;
    noMedia();
    etaEl.textContent = "—";
  }

  function showCancelled() {
    setOverlay("This video was cancelled.", false);
    liveTag.hidden = true;
    noMedia();
    etaEl.textContent = "—";
  }

  // ---- media ----------------------------------------------------------------------------------
  function onPlayerState(state, detail) {
    if (disposed) return;
    if (state === "playing") {
      if (!terminal) {
        setOverlay(null);
        liveTag.hidden = false;
      }
    } else if (state === "unsupported" || state === "error") {
      previewNote.hidden = false;
      previewNote.textContent = `Live preview unavailable: ${detail || "this browser cannot play it"}. Progress keeps updating; the video plays here when it is done.`;
      if (!terminal) setOverlay("Rendering… (live preview unavailable in this browser)");
    }
  }

  function ensurePlayer(mime) {
    if (mime) knownMime = mime;
    if (!player) player = new LivePlayer(videoEl, { onState: onPlayerState });
    if (!player.started && knownMime) player.start(knownMime);
    if (player.started) videoEl.dataset.source = "live";
  }

  function onBinary(buf) {
    if (!player) player = new LivePlayer(videoEl, { onState: onPlayerState });
    player.push(buf);
    if (!player.started && !player.failed) player.start(knownMime); // sniffs the init segment when no mime was announced
    if (player.started) videoEl.dataset.source = "live";
  }

  async function showFile(autoplay) {
    if (fileShown || disposed) return;
    fileShown = true;
    const resumeAt = player && !player.failed ? videoEl.currentTime : 0;
    const wasPlaying = player ? !videoEl.paused && !videoEl.ended : false;
    if (player) {
      player.destroy();
      player = null;
    }
    liveTag.hidden = true;
    let src;
    let href;
    try {
      src = await mediaUrl(videoFileUrl(id));
      href = needsBlobMedia() ? src : videoFileUrl(id);
    } catch (e) {
      setOverlay(`The finished file could not be loaded (${e.message || e}).`, false);
      return;
    }
    if (disposed) return;
    mediaUrl(thumbnailUrl(id)).then((u) => { if (!disposed) videoEl.poster = u; }).catch(() => {});
    videoEl.autoplay = false;
    videoEl.muted = wasPlaying; // a playing live preview continues (muted, as autoplay requires)
    videoEl.src = src;
    videoEl.dataset.source = "file";
    videoEl.controls = true;
    videoEl.addEventListener("loadedmetadata", () => {
      if (resumeAt > 0 && resumeAt < videoEl.duration - 0.1) videoEl.currentTime = resumeAt;
      if (wasPlaying) videoEl.play().catch(() => {});
      else if (autoplay) {
        // with sound when the browser allows it, else muted (autoplay policy)
        videoEl.play().catch(() => {
          videoEl.muted = true;
          videoEl.play().catch(() => {});
        });
      }
    }, { once: true });
    videoEl.addEventListener("error", () => setOverlay("The finished video could not be played in this browser. Download it instead.", false), { once: true });
    setOverlay(null);
    download.href = href;
    download.setAttribute("download", fileName(current));
    download.hidden = false;
    showCaptions();
  }

  /** Caption download links and a captions track on the player (videos with a voice). */
  async function showCaptions() {
    if (!current || !current.params || !current.params.voice) return;
    let vtt;
    let srt;
    try {
      vtt = await mediaUrl(captionsUrl(id, "vtt"));
      srt = await mediaUrl(captionsUrl(id, "srt"));
    } catch {
      return; // no speech, or not reachable: no links
    }
    if (disposed) return;
    vttLink.href = vtt;
    vttLink.setAttribute("download", fileName(current, "vtt"));
    srtLink.href = srt;
    srtLink.setAttribute("download", fileName(current, "srt"));
    captionLinks.hidden = false;
    if (!videoEl.querySelector("track")) {
      videoEl.append(h("track", { kind: "captions", label: "Captions", srclang: "en", src: vtt }));
    }
  }

  // ---- live connection ----------------------------------------------------------------------
  function onMessage(ev) {
    if (disposed) return;
    if (typeof ev.data !== "string") {
      onBinary(ev.data);
      return;
    }
    let m;
    try {
      m = JSON.parse(ev.data);
    } catch {
      return;
    }
    switch (m.type) {
      case "snapshot":
        apply(m.video);
        if (m.mime) ensurePlayer(m.mime);
        break;
      case "preview":
        if (m.mime) ensurePlayer(m.mime);
        break;
      case "status":
        setStatus(m.status, m.queue_position);
        break;
      case "progress":
        if (current && current.status !== "rendering") setStatus("rendering");
        setProgressFields(m);
        break;
      case "completed":
        terminal = true;
        if (player) player.end();
        apply(m.video || { status: "completed" });
        if (!m.video) setStatus("completed");
        showFile(false);
        toast("Your video is ready.", "success");
        break;
      case "failed":
        terminal = true;
        if (player) player.end();
        setStatus("failed");
        showFailure(m.error);
        break;
      case "cancelled":
        terminal = true;
        if (player) player.end();
        setStatus("cancelled");
        showCancelled();
        break;
      default:
        break;
    }
  }

  function connect() {
    if (disposed || terminal) return;
    if (player) {
      player.destroy(); // the server sends the init segment again on a new connection
      player = null;
      videoEl.removeAttribute("src");
      videoEl.load();
      liveTag.hidden = true;
    }
    const wantPreview = mseSupported();
    if (!wantPreview) {
      previewNote.hidden = false;
      previewNote.textContent = "Live preview needs Media Source Extensions, which this browser lacks. Progress still updates live.";
    }
    const sock = new WebSocket(wsUrl(`/api/v1/videos/${encodeURIComponent(id)}/ws`, wantPreview ? { preview: "mse" } : {}));
    sock.binaryType = "arraybuffer";
    ws = sock;
    connNote.textContent = "";
    sock.onopen = () => {
      attempts = 0;
      connNote.textContent = "";
    };
    sock.onmessage = onMessage;
    sock.onclose = () => {
      if (ws === sock) ws = null;
      if (disposed || terminal) return;
      scheduleReconnect();
    };
  }

  function scheduleReconnect() {
    attempts++;
    const delay = Math.min(RECONNECT_MAX_MS, 500 * 2 ** Math.min(attempts, 6)) * (0.75 + Math.random() * 0.5);
    connNote.textContent = `Live connection lost — reconnecting in ${Math.ceil(delay / 1000)} s…`;
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(async () => {
      // The HTTP answer tells a finished, deleted or foreign video apart from a network blip.
      try {
        const v = await api(`/api/v1/videos/${encodeURIComponent(id)}`);
        if (disposed) return;
        apply(v);
        if (isTerminal(v.status)) {
          terminal = true;
          connNote.textContent = "";
          if (player) player.end();
          if (v.status === "completed") showFile(false);
          return;
        }
      } catch (e) {
        if (disposed) return;
        if (e instanceof ApiError && e.status === 404) {
          showNotFound();
          return;
        }
      }
      connect();
    }, delay);
  }

  function showNotFound() {
    terminal = true;
    fill(view,
      h("section.card.empty", {},
        h("h1", {}, "Video not found"),
        h("p.muted", {}, "It may have been deleted, or it belongs to another API key."),
        h("div.actions", {}, h("a.btn.btn-primary", { href: "#/library" }, "Open the library"), h("a.btn.btn-ghost", { href: "#/" }, "Create a video"))));
  }

  // ---- actions --------------------------------------------------------------------------------
  cancelBtn.addEventListener("click", async () => {
    if (cancelPending) return;
    cancelPending = true;
    cancelBtn.disabled = true;
    cancelBtn.textContent = "Cancelling…";
    try {
      const v = await api(`/api/v1/videos/${encodeURIComponent(id)}/cancel`, { method: "POST" });
      if (!disposed && v) {
        terminal = true;
        if (player) player.end();
        apply(v);
      }
    } catch (e) {
      toast(e.status === 409 ? "The video already finished." : `Cancel failed: ${e.message}`, "error");
    } finally {
      cancelPending = false;
      cancelBtn.disabled = false;
      cancelBtn.textContent = "Cancel generation";
    }
  });

  deleteBtn.addEventListener("click", async () => {
    if (!deleteArmed) {
      deleteBtn.textContent = "Click again to delete";
      deleteBtn.classList.add("armed");
      deleteArmed = setTimeout(() => {
        deleteArmed = null;
        deleteBtn.textContent = "Delete";
        deleteBtn.classList.remove("armed");
      }, 4000);
      return;
    }
    clearTimeout(deleteArmed);
    deleteArmed = null;
    try {
      await api(`/api/v1/videos/${encodeURIComponent(id)}`, { method: "DELETE" });
      toast("Video deleted.", "success");
      location.hash = "#/library";
    } catch (e) {
      toast(`Delete failed: ${e.message}`, "error");
    }
  });

  // ---- start ----------------------------------------------------------------------------------
  if (current) apply(current);
  (async () => {
    try {
      const v = await api(`/api/v1/videos/${encodeURIComponent(id)}`);
      if (disposed) return;
      apply(v);
      if (isTerminal(v.status)) {
        terminal = true;
        if (v.status === "completed") showFile(true);
        return;
      }
      connect();
    } catch (e) {
      if (disposed) return;
      if (e instanceof ApiError && (e.status === 404 || e.status === 422)) showNotFound();
      else {
        setOverlay(`Could not load the video: ${e.message}`, false);
        scheduleReconnect();
      }
    }
  })();

  return () => {
    disposed = true;
    clearTimeout(reconnectTimer);
    clearTimeout(deleteArmed);
    if (ws) {
      try {
        ws.close(1000);
      } catch {
        /* ignore */
      }
    }
    if (player) player.destroy();
    videoEl.removeAttribute("src");
    videoEl.load();
  };
}

function downloadIcon() {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "18");
  svg.setAttribute("height", "18");
  svg.setAttribute("aria-hidden", "true");
  const p = document.createElementNS(ns, "path");
  p.setAttribute("fill", "currentColor");
  p.setAttribute("d", "M12 3a1 1 0 0 1 1 1v9.59l3.3-3.3a1 1 0 1 1 1.4 1.42l-5 5a1 1 0 0 1-1.4 0l-5-5a1 1 0 1 1 1.4-1.42l3.3 3.3V4a1 1 0 0 1 1-1zM5 19h14a1 1 0 1 1 0 2H5a1 1 0 1 1 0-2z");
  svg.append(p);
  return svg;
}
