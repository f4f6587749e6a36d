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
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      if (i === 1) {
        const s = document.createElement("span");
        s.className = `status ${v.status}`;
        s.textContent = v.status;
        td.append(s);
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
