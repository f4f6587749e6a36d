// Library page (#/library): GET /api/v1/videos with cursor pagination and a status filter;
// rendering videos update live over their WebSocket (progress only, no preview).

import { api, ApiError, wsUrl, mediaUrl, thumbnailUrl, videoFileUrl, needsBlobMedia } from "../api.js";
import {
  h, $, fill, fmtDuration, fmtBytes, fmtDateTime, fmtRelative, statusBadge, setStatusBadge,
  progressBar, setProgress, isTerminal, toast,
} from "../dom.js";

const PAGE = 24;
const MAX_LIVE = 8; // live sockets at once; the rest refresh when the page is reloaded
const STATUSES = ["queued", "rendering", "completed", "failed", "cancelled"];

function fileName(v) {
  const base = String(v.title || "video").replace(/[^\w\- ]+/g, "").trim().replace(/\s+/g, "-").slice(0, 60);
  return `${base || "video"}.mp4`;
}

export function mount(view) {
  let disposed = false;
  let cursor = null;
  let loading = false;
  let generation = 0; // bumps on filter change, so late answers of an old query are dropped
  const cards = new Map(); // id → {el, video, update(video), ws}
  const query = new URLSearchParams((location.hash.split("?")[1]) || "");
  const initialStatus = STATUSES.includes(query.get("status")) ? query.get("status") : "";

  const filter = h("select", { id: "status-filter", name: "status" },
    h("option", { value: "" }, "All statuses"),
    STATUSES.map((s) => h("option", { value: s, selected: s === initialStatus }, s[0].toUpperCase() + s.slice(1))));
  const refresh = h("button.btn.btn-ghost", { type: "button" }, "Refresh");
  const count = h("span.muted.count", { "aria-live": "polite" });
  const grid = h("div.video-grid", { "aria-busy": "true" });
  const more = h("button.btn.btn-ghost.load-more", { type: "button", hidden: true }, "Load more");
  const errorBox = h("div.error-summary", { role: "alert", hidden: true });

  view.append(
    h("div.page-head.with-action", {},
      h("div", {}, h("h1", {}, "Library"), h("p.muted", {}, "Every video you generated, newest first.")),
      h("a.btn.btn-primary", { href: "#/" }, "+ New video")),
    h("div.toolbar", {},
      h("label.inline-field", { for: "status-filter" }, h("span", {}, "Status"), filter),
      refresh,
      count),
    errorBox,
    grid,
    h("div.center", {}, more),
  );

  // ---- one card ------------------------------------------------------------------------------
  function card(v) {
    const el = h("article.video-card", { "data-testid": "video-card", "data-video-id": v.id });
    const entry = { el, video: v, ws: null, armed: null };

    function render() {
      const video = entry.video;
      const watchHref = `#/watch/${encodeURIComponent(video.id)}`;
      const thumb = h("a.thumb", { href: watchHref, "aria-label": `Watch ${video.title || "video"}`, tabindex: "-1" });
      const d = video.params && video.params.dimension;
      if (d && d.width && d.height) thumb.style.aspectRatio = d.height > d.width ? "9 / 16" : "16 / 9";
      if (video.status === "completed") {
        const img = h("img", { alt: "", loading: "lazy", decoding: "async" });
        img.addEventListener("error", () => img.replaceWith(h("span.thumb-icon", { "aria-hidden": "true" }, "▶")));
        mediaUrl(thumbnailUrl(video.id)).then((u) => { img.src = u; }).catch(() => img.dispatchEvent(new Event("error")));
        thumb.append(img, h("span.thumb-play", { "aria-hidden": "true" }, "▶"));
      } else {
        thumb.classList.add(`thumb-${video.status}`);
        thumb.append(h("span.thumb-icon", { "aria-hidden": "true" },
          video.status === "rendering" ? `${Math.floor((video.progress || 0) * 100)}%`
            : video.status === "queued" ? "⏳" : video.status === "failed" ? "!" : "✕"));
      }
      if (video.duration_s != null) thumb.append(h("span.duration", {}, fmtDuration(video.duration_s)));
      thumb.append(statusBadge(video.status));

      const title = h("h3.card-title", {}, h("a", { href: watchHref }, video.title || "Untitled"));
      const metaBits = [h("time", { datetime: video.created_at || "", title: fmtDateTime(video.created_at) }, fmtRelative(video.created_at))];
      if (d) metaBits.push(` · ${d.width}×${d.height}`);
      if (video.size_bytes != null) metaBits.push(` · ${fmtBytes(video.size_bytes)}`);
      const meta = h("p.card-meta.muted", {}, metaBits);

      let live = null;
      if (!isTerminal(video.status)) {
        const bar = progressBar({ "aria-label": `Progress of ${video.title || "video"}` });
        setProgress(bar, video.progress || 0);
        const label = h("span.muted.small", {},
          video.status === "queued"
            ? (video.queue_position != null ? `Queued · position ${video.queue_position}` : "Queued")
            : `${Math.floor((video.progress || 0) * 100)}% · ${video.frames_done ?? 0}/${video.frames_total ?? "?"} frames`);
        live = h("div.card-progress", {}, bar, label);
        entry.bar = bar;
        entry.label = label;
      }
      const err = video.status === "failed" && video.error
        ? h("p.card-error", {}, String(video.error.message || video.error.code || "failed")) : null;

      const actions = h("div.card-actions", {},
        h("a.btn.btn-sm.btn-ghost", { href: watchHref }, video.status === "completed" ? "Watch" : isTerminal(video.status) ? "Open" : "Watch live"));
      if (video.status === "completed") {
        const dl = h("a.btn.btn-sm.btn-ghost", { href: videoFileUrl(video.id), download: fileName(video) }, "Download");
        if (needsBlobMedia()) {
          dl.addEventListener("click", async (ev) => {
            if (dl.dataset.ready) return;
            ev.preventDefault();
            try {
              dl.href = await mediaUrl(videoFileUrl(video.id));
              dl.dataset.ready = "1";
              dl.click();
            } catch (e) {
              toast(`Download failed: ${e.message}`, "error");
            }
          });
        }
        actions.append(dl);
      }
      const del = h("button.btn.btn-sm.btn-ghost.btn-danger-text", { type: "button" }, "Delete");
      del.addEventListener("click", () => onDelete(entry, del));
      actions.append(del);

      fill(el,
        thumb,
        h("div.card-body", {},
          h("div.card-head", {}, title),
          meta, live, err, actions));
    }

    entry.update = (patch) => {
      const before = entry.video.status;
      entry.video = { ...entry.video, ...patch };
      if (patch.status && patch.status !== before) render();
      else if (entry.bar && patch.progress != null) {
        setProgress(entry.bar, patch.progress);
        entry.label.textContent = `${Math.floor(patch.progress * 100)}% · ${patch.frames_done ?? 0}/${patch.frames_total ?? "?"} frames`;
        const icon = $(".thumb-icon", el);
        if (icon && entry.video.status === "rendering") icon.textContent = `${Math.floor(patch.progress * 100)}%`;
      }
      const badge = $(".badge", el);
      if (badge) setStatusBadge(badge, entry.video.status);
    };
    entry.render = render;
    render();
    return entry;
  }

  async function onDelete(entry, btn) {
    if (!entry.armed) {
      btn.textContent = "Confirm delete";
      btn.classList.add("armed");
      entry.armed = setTimeout(() => {
        entry.armed = null;
        btn.textContent = "Delete";
        btn.classList.remove("armed");
      }, 4000);
      return;
    }
    clearTimeout(entry.armed);
    entry.armed = null;
    btn.disabled = true;
    try {
      await api(`/api/v1/videos/${encodeURIComponent(entry.video.id)}`, { method: "DELETE" });
      stopLive(entry);
      entry.el.classList.add("removing");
      setTimeout(() => entry.el.remove(), 200);
      cards.delete(entry.video.id);
      updateCount();
      toast("Video deleted.", "success");
    } catch (e) {
      btn.disabled = false;
      btn.textContent = "Delete";
      btn.classList.remove("armed");
      if (e instanceof ApiError && e.status === 404) {
        entry.el.remove();
        cards.delete(entry.video.id);
      } else toast(`Delete failed: ${e.message}`, "error");
    }
  }

  // ---- live updates -------------------------------------------------------------------------
  function liveCount() {
    let n = 0;
    for (const c of cards.values()) if (c.ws) n++;
    return n;
  }

  function startLive(entry) {
    if (entry.ws || isTerminal(entry.video.status) || liveCount() >= MAX_LIVE || disposed) return;
    const sock = new WebSocket(wsUrl(`/api/v1/videos/${encodeURIComponent(entry.video.id)}/ws`));
    entry.ws = sock;
    sock.onmessage = (ev) => {
      if (typeof ev.data !== "string") return;
      let m;
      try {
        m = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (m.type === "snapshot" && m.video) entry.update(m.video);
      else if (m.type === "status") entry.update({ status: m.status, queue_position: m.queue_position });
      else if (m.type === "progress") entry.update({ status: "rendering", ...m, type: undefined });
      else if (m.type === "completed") entry.update(m.video || { status: "completed" });
      else if (m.type === "failed") entry.update({ status: "failed", error: m.error });
      else if (m.type === "cancelled") entry.update({ status: "cancelled" });
    };
    sock.onclose = () => {
      entry.ws = null;
      if (disposed || !cards.has(entry.video.id)) return;
      if (!isTerminal(entry.video.status)) setTimeout(() => startLive(entry), 3000);
      // another card may now take the free slot
      for (const c of cards.values()) if (!c.ws && !isTerminal(c.video.status)) startLive(c);
    };
  }

  function stopLive(entry) {
    if (entry.ws) {
      const s = entry.ws;
      entry.ws = null;
      s.onclose = null;
      try {
        s.close(1000);
      } catch {
        /* ignore */
      }
    }
    clearTimeout(entry.armed);
  }

  // ---- loading ---------------------------------------------------------------------------
  function updateCount() {
    const n = cards.size;
    count.textContent = n ? `${n}${cursor ? "+" : ""} video${n === 1 ? "" : "s"}` : "";
    if (!n && !loading) {
      fill(grid, h("div.empty.card", {},
        h("h2", {}, filter.value ? `No ${filter.value} videos` : "No videos yet"),
        h("p.muted", {}, filter.value ? "Try another status." : "Your generated videos will show up here."),
        h("a.btn.btn-primary", { href: "#/" }, "Create your first video")));
    }
  }

  async function load(reset) {
    if (loading && !reset) return;
    const gen = reset ? ++generation : generation;
    loading = true;
    grid.setAttribute("aria-busy", "true");
    more.disabled = true;
    more.textContent = "Loading…";
    errorBox.hidden = true;
    if (reset) {
      for (const c of cards.values()) stopLive(c);
      cards.clear();
      cursor = null;
      fill(grid, Array.from({ length: 4 }, () => h("div.video-card.skeleton", { "aria-hidden": "true" })));
    }
    const params = new URLSearchParams({ limit: String(PAGE) });
    if (filter.value) params.set("status", filter.value);
    if (cursor && !reset) params.set("cursor", cursor);
    try {
      const page = await api(`/api/v1/videos?${params}`);
      if (disposed || gen !== generation) return;
      if (reset) grid.replaceChildren();
      for (const v of (page && Array.isArray(page.data) ? page.data : [])) {
        if (!v || !v.id || cards.has(v.id)) continue;
        const entry = card(v);
        cards.set(v.id, entry);
        grid.append(entry.el);
        startLive(entry);
      }
      cursor = page && page.next_cursor ? page.next_cursor : null;
      more.hidden = !cursor;
    } catch (e) {
      if (disposed || gen !== generation) return;
      if (reset) grid.replaceChildren();
      fill(errorBox,
        h("h2", {}, "Could not load videos"),
        h("p", {}, e.message || String(e)),
        e.status === 401 ? h("p", {}, h("button.linklike", { type: "button", "data-open-key": true }, "Set API key")) : null);
      errorBox.hidden = false;
    } finally {
      if (gen === generation) {
        loading = false;
        grid.setAttribute("aria-busy", "false");
        more.disabled = false;
        more.textContent = "Load more";
        updateCount();
      }
    }
  }

  filter.addEventListener("change", () => {
    const hash = filter.value ? `#/library?status=${filter.value}` : "#/library";
    history.replaceState(null, "", hash);
    load(true);
  });
  refresh.addEventListener("click", () => load(true));
  more.addEventListener("click", () => load(false));
  load(true);

  return () => {
    disposed = true;
    for (const c of cards.values()) stopLive(c);
    cards.clear();
  };
}
