// reelgen's minimal page: create a video, list videos. Talks only to the JSON API.
"use strict";
const $ = (s) => document.querySelector(s);

async function api(path, opts = {}) {
  const res = await fetch(path, { headers: { "Content-Type": "application/json" }, ...opts });
  if (res.status === 204) return null;
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const fields = (body.errors || []).map((e) => `${e.field}: ${e.message}`).join("; ");
    throw new Error(`${body.title || res.status}: ${fields || body.detail || ""}`);
  }
  return body;
}

function option(select, item) {
  const o = document.createElement("option");
  o.value = item.id;
  o.textContent = item.name;
  select.append(o);
}

async function loadCatalog() {
  const [avatars, voices] = await Promise.all([api("/api/v1/avatars"), api("/api/v1/voices")]);
  avatars.data.forEach((a) => option($("select[name=avatar]"), a));
  voices.data.forEach((v) => option($("select[name=voice]"), v));
}

async function loadVideos() {
  const list = await api("/api/v1/videos?limit=50");
  const tbody = $("#videos tbody");
  tbody.replaceChildren();
  for (const v of list.data) {
    const tr = document.createElement("tr");
    const cells = [v.title, null, v.queue_position ?? "—", new Date(v.created_at).toLocaleString()];
    if (v.status === "rendering" || v.status === "queued") watch(v.id);
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      if (i === 1) {
        const s = document.createElement("span");
        s.className = `status ${v.status}`;
        s.id = `status-${v.id}`;
        s.textContent = v.status === "rendering" ? `rendering ${Math.round(v.progress * 100)}%` : v.status;
        td.append(s);
      } else if (i === 0 && v.status === "completed") {
        const a = document.createElement("a");
        a.href = v.video_url;
        a.textContent = text;
        td.append(a);
      } else td.textContent = text;
      tr.append(td);
    });
    const del = document.createElement("button");
    del.className = "link";
    del.textContent = "Delete";
    del.onclick = async () => { await api(`/api/v1/videos/${v.id}`, { method: "DELETE" }); loadVideos(); };
    const td = document.createElement("td");
    td.append(del);
    tr.append(td);
    tbody.append(tr);
  }
}

// Live progress of one video over its WebSocket (SPEC §4).
const watching = new Set();
function watch(id) {
  if (watching.has(id)) return;
  watching.add(id);
  const proto = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${proto}://${location.host}/api/v1/videos/${id}/ws`);
  ws.onmessage = (ev) => {
    const m = JSON.parse(ev.data);
    const el = document.getElementById(`status-${id}`);
    if (!el) return;
    if (m.type === "progress") {
      el.textContent = `rendering ${Math.round(m.progress * 100)}% · ${m.fps.toFixed(0)} fps · ${Math.ceil(m.eta_s)} s left`;
      el.className = "status rendering";
    } else if (m.type === "status") {
      el.textContent = m.status;
      el.className = `status ${m.status}`;
    } else if (["completed", "failed", "cancelled"].includes(m.type)) {
      loadVideos();
    }
  };
  ws.onclose = () => watching.delete(id);
}

$("#create").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const f = new FormData(ev.target);
  const [width, height] = f.get("size").split("x").map(Number);
  $("#create-error").textContent = "";
  try {
    await api("/api/v1/videos", {
      method: "POST",
      body: JSON.stringify({
        script: f.get("script"),
        avatar: { id: f.get("avatar") },
        voice: { id: f.get("voice") },
        dimension: { width, height },
        quality: f.get("quality"),
      }),
    });
    ev.target.reset();
    loadVideos();
  } catch (e) {
    $("#create-error").textContent = e.message;
  }
});

loadCatalog().then(loadVideos).catch((e) => { $("#create-error").textContent = e.message; });
