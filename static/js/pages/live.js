// Live page: pick an avatar and a voice, start a live session (WebRTC; a WebSocket with
// fragmented MP4 through Media Source Extensions where WebRTC is missing or fails, or with
// #/live?transport=mse), type and send, interrupt, and see the word events and the measured
// latency.

import { api, wsUrl } from "../api.js";
import { h } from "../dom.js";
import { LivePlayer } from "../live-player.js";

const SIZES = [
  ["640x360", "640 × 360"],
  ["1280x720", "1280 × 720"],
  ["320x180", "320 × 180"],
];

/** Waits until the peer has gathered its candidates (non-trickle offer), at most `ms`. */
function gathered(pc, ms) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      if (pc.iceGatheringState === "complete") {
        pc.removeEventListener("icegatheringstatechange", done);
        resolve();
      }
    };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(resolve, ms);
  });
}

export function mount(view) {
  let session = null;
  let pc = null;
  let socket = null;
  let player = null;
  let disposed = false;
  // The speak → speaking_started readout: the event can arrive before the speak's response
  // (the avatar starts on the next frame), so whichever comes second shows it.
  const sentAt = new Map(); // utterance id → when its speak was sent (performance.now())
  const startedAt = new Map(); // utterance id → [when speaking_started arrived, server ms]

  function showLatency(id) {
    const sent = sentAt.get(id);
    const started = startedAt.get(id);
    if (sent === undefined || !started) return;
    const seen = Math.max(1, Math.round(started[0] - sent));
    latency.textContent = `Latency: ${seen} ms from Speak to the first frame's event (server: ${Math.round(started[1])} ms to the first frame)`;
    latency.dataset.ms = seen;
    sentAt.delete(id);
    startedAt.delete(id);
  }

  const avatar = h("select", { id: "live-avatar", name: "avatar" }, h("option", {}, "Loading…"));
  const voice = h("select", { id: "live-voice", name: "voice" }, h("option", {}, "Loading…"));
  const size = h("select", { id: "live-size", name: "size" }, SIZES.map(([v, t]) => h("option", { value: v }, t)));
  const startBtn = h("button.btn.btn-primary", { type: "submit", "data-testid": "live-start" }, "Start session");
  const stopBtn = h("button.btn.btn-ghost", { type: "button", "data-testid": "live-stop", disabled: true }, "End session");
  const status = h("p.muted", { "data-testid": "live-status", role: "status" }, "No session yet.");
  const video = h("video.live-video", { playsinline: true, autoplay: true, muted: true, "data-testid": "live-video" });
  const unmute = h("button.btn.btn-ghost.btn-sm", { type: "button" }, "Unmute");
  const text = h("input", { id: "live-text", type: "text", maxlength: 1000, placeholder: "Type something for the avatar to say…", disabled: true, autocomplete: "off" });
  const speakBtn = h("button.btn.btn-primary", { type: "submit", "data-testid": "live-speak", disabled: true }, "Speak");
  const interruptBtn = h("button.btn.btn-ghost", { type: "button", "data-testid": "live-interrupt", disabled: true }, "Interrupt");
  const words = h("p.live-words", { "data-testid": "live-words", "aria-live": "polite" });
  const latency = h("p.muted", { "data-testid": "live-latency" }, "Latency: —");
  const log = h("ol.live-log", { "data-testid": "live-log" });

  const setup = h("form.card.live-setup", {},
    h("h1", {}, "Live avatar"),
    h("p.muted", {}, "The avatar speaks what you type, streamed as it is rendered."),
    h("div.live-row", {},
      h("label.field", {}, h("span.label", {}, "Avatar"), avatar),
      h("label.field", {}, h("span.label", {}, "Voice"), voice),
      h("label.field", {}, h("span.label", {}, "Size"), size)),
    h("div.actions", {}, startBtn, stopBtn),
    status);
  const stage = h("section.card.live-stage", {},
    h("div.live-video-wrap", {}, video),
    h("div.actions", {}, unmute),
    h("form.live-say", {}, h("label.field.grow", {}, h("span.label", {}, "Say"), text), h("div.actions", {}, speakBtn, interruptBtn)),
    words,
    latency,
    h("details", {}, h("summary", {}, "Events"), log));
  view.append(h("div.live-page", {}, setup, stage));

  unmute.addEventListener("click", () => {
    video.muted = !video.muted;
    unmute.textContent = video.muted ? "Unmute" : "Mute";
  });

  function note(line) {
    log.prepend(h("li", {}, line));
    while (log.children.length > 200) log.lastChild.remove();
  }

  function onEvent(e) {
    if (e.type === "speaking_started") {
      words.replaceChildren();
      startedAt.set(e.utterance_id, [performance.now(), e.latency_ms]);
      showLatency(e.utterance_id);
      note(`speaking: “${e.text}”`);
    } else if (e.type === "word") {
      const w = h("span.live-word", {}, `${e.text} `);
      words.append(w);
      for (const other of words.querySelectorAll(".current")) other.classList.remove("current");
      w.classList.add("current");
    } else if (e.type === "speaking_ended") {
      note(e.interrupted ? "interrupted" : "done speaking");
      for (const other of words.querySelectorAll(".current")) other.classList.remove("current");
    } else if (e.type === "closed") {
      note(`session closed (${e.reason})`);
      ended(`The session closed (${e.reason}).`);
    }
  }

  async function loadCatalog() {
    const [avatars, voices] = await Promise.all([api("/api/v1/avatars"), api("/api/v1/voices")]);
    if (disposed) return;
    avatar.replaceChildren(...avatars.data.map((a) => h("option", { value: a.id }, a.name || a.id)));
    voice.replaceChildren(...voices.data.map((v) => h("option", { value: v.id }, v.name || v.id)));
  }

  async function viaWebRtc(s) {
    if (typeof RTCPeerConnection !== "function") throw new Error("this browser has no WebRTC");
    pc = new RTCPeerConnection({ iceServers: s.ice_servers || [] });
    window.reelgenLive = { pc, session: s.id };
    pc.addTransceiver("video", { direction: "recvonly" });
    pc.addTransceiver("audio", { direction: "recvonly" });
    const channel = pc.createDataChannel("events");
    channel.onmessage = (m) => onEvent(JSON.parse(m.data));
    const stream = new MediaStream();
    pc.ontrack = (ev) => {
      stream.addTrack(ev.track);
      video.srcObject = stream;
      const p = video.play();
      if (p && p.catch) p.catch(() => {});
    };
    pc.onconnectionstatechange = () => {
      if (pc && pc.connectionState === "failed") ended("The WebRTC connection failed.");
    };
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, 3000);
    const answer = await api(`/api/v1/sessions/${s.id}/webrtc`, {
      method: "POST",
      body: { type: "offer", sdp: pc.localDescription.sdp },
    });
    await pc.setRemoteDescription(answer);
    const codec = (answer.sdp.match(/a=rtpmap:\d+ (H264|VP8)\/90000/) || [])[1] || "?";
    return `WebRTC (${codec} + Opus)`;
  }

  function viaWebSocket(s) {
    player = new LivePlayer(video, { onState: (st, detail) => st === "error" && note(detail || "stream error") });
    socket = new WebSocket(wsUrl(`/api/v1/sessions/${s.id}/ws`, { media: "mse" }));
    socket.binaryType = "arraybuffer";
    socket.onmessage = (m) => {
      if (typeof m.data !== "string") {
        player.push(m.data);
        return;
      }
      const e = JSON.parse(m.data);
      if (e.type === "media") player.start(e.mime);
      else if (e.type !== "session") onEvent(e);
    };
    socket.onclose = () => {
      if (session) ended("The stream closed.");
    };
    return "WebSocket + MSE (fragmented MP4)";
  }

  function ready(on) {
    text.disabled = !on;
    speakBtn.disabled = !on;
    interruptBtn.disabled = !on;
    stopBtn.disabled = !on;
    startBtn.disabled = on;
  }

  function teardown() {
    if (pc) pc.close();
    if (socket) socket.close();
    if (player) player.destroy();
    pc = socket = player = null;
    window.reelgenLive = null;
  }

  function ended(why) {
    teardown();
    session = null;
    ready(false);
    status.textContent = why;
  }

  setup.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    startBtn.disabled = true;
    const [w, hgt] = size.value.split("x").map(Number);
    status.textContent = "Starting…";
    try {
      session = await api("/api/v1/sessions", {
        method: "POST",
        body: { avatar: { id: avatar.value }, voice: { id: voice.value }, dimension: { width: w, height: hgt } },
      });
      let transport;
      const forced = new URLSearchParams(location.hash.split("?")[1] || "").get("transport");
      try {
        if (forced === "mse") throw new Error("the WebSocket stream was asked for");
        transport = await viaWebRtc(session);
      } catch (e) {
        note(`WebRTC unavailable (${e.message || e}); using the WebSocket stream`);
        teardown();
        transport = viaWebSocket(session);
      }
      if (disposed) return;
      status.textContent = `Live over ${transport}.`;
      status.dataset.transport = transport.startsWith("WebRTC") ? "webrtc" : "mse";
      ready(true);
      text.focus();
    } catch (e) {
      status.textContent = `Could not start: ${e.detail || e.message || e}`;
      startBtn.disabled = false;
    }
  });

  stage.querySelector("form.live-say").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const said = text.value.trim();
    if (!said || !session) return;
    const sent = performance.now();
    try {
      const r = await api(`/api/v1/sessions/${session.id}/speak`, { method: "POST", body: { text: said } });
      sentAt.set(r.utterance_id, sent);
      showLatency(r.utterance_id);
      text.value = "";
    } catch (e) {
      note(`speak refused: ${e.detail || e.message || e}`);
    }
  });

  interruptBtn.addEventListener("click", async () => {
    if (!session) return;
    try {
      await api(`/api/v1/sessions/${session.id}/interrupt`, { method: "POST", body: {} });
    } catch (e) {
      note(`interrupt failed: ${e.message || e}`);
    }
  });

  stopBtn.addEventListener("click", async () => {
    const s = session;
    ended("Session ended.");
    if (s) await api(`/api/v1/sessions/${s.id}`, { method: "DELETE" }).catch(() => {});
  });

  loadCatalog().catch((e) => {
    status.textContent = `Could not load avatars and voices: ${e.message || e}`;
  });

  return () => {
    disposed = true;
    const s = session;
    teardown();
    if (s) api(`/api/v1/sessions/${s.id}`, { method: "DELETE" }).catch(() => {});
  };
}

