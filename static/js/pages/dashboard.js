// Dashboard (#/dashboard): live performance charts (uPlot, vendored), bottlenecks,
// recommendations and a live alert list (SPEC §5). Every endpoint is optional: a server
// without /api/v1/performance/* shows "not available" panels and keeps retrying slowly.

import { api, ApiError, wsUrl } from "../api.js";
import { h, $, fill, fmtNumber, fmtRelative, fmtDateTime, asText } from "../dom.js";

const METRICS_EVERY_MS = 2000;
const SLOW_EVERY_MS = 10000; // bottlenecks, recommendations, and metrics retries after a 404
const WINDOW_S = 300; // seconds of history in the charts
const ALERTS_MAX = 200;

let uplotLoading = null;
function loadUPlot() {
  if (window.uPlot) return Promise.resolve(window.uPlot);
  if (!uplotLoading) {
    uplotLoading = new Promise((resolve, reject) => {
      const s = document.createElement("script");
      s.src = "/static/vendor/uplot/uPlot.iife.min.js";
      s.onload = () => (window.uPlot ? resolve(window.uPlot) : reject(new Error("uPlot did not load")));
      s.onerror = () => {
        uplotLoading = null;
        reject(new Error("uPlot could not be loaded"));
      };
      document.head.append(s);
    });
  }
  return uplotLoading;
}

/** A finite number at obj[a][b]…, else null. */
function num(obj, ...path) {
  let v = obj;
  for (const k of path) {
    if (v == null || typeof v !== "object") return null;
    v = v[k];
  }
  if (v == null || v === "") return null;
  const n = Number(v);
  return Number.isFinite(n) ? n : null;
}

function cssVar(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

const CHARTS = [
  {
    key: "latency", title: "Response time", unit: "ms",
    series: [
      { label: "avg", color: "--c1", get: (m) => num(m, "response_times", "avg") },
      { label: "p95", color: "--c2", get: (m) => num(m, "response_times", "p95") },
      { label: "p99", color: "--c3", get: (m) => num(m, "response_times", "p99") },
    ],
  },
  {
    key: "throughput", title: "Throughput", unit: "req/s",
    series: [
      { label: "rps", color: "--c1", get: (m) => num(m, "throughput", "rps"), fill: true },
      { label: "concurrent", color: "--c4", get: (m) => num(m, "throughput", "concurrent"), unit: "" },
    ],
  },
  {
    key: "resources", title: "Resource usage", unit: "%", range: [0, 100],
    series: [
      { label: "CPU", color: "--c1", get: (m) => num(m, "resource_usage", "cpu_percent") },
      { label: "memory", color: "--c4", get: (m) => num(m, "resource_usage", "memory_percent") },
      { label: "GPU", color: "--c2", get: (m) => num(m, "resource_usage", "gpu_percent") },
    ],
  },
  {
    key: "inference", title: "Inference time", unit: "ms",
    series: [{ label: "avg inference", color: "--c3", get: (m) => num(m, "ai_performance", "avg_inference_ms"), fill: true }],
  },
];

const TILES = [
  { label: "p95 latency", get: (m) => num(m, "response_times", "p95"), fmt: (v) => `${fmtNumber(v)} ms` },
  { label: "Requests/s", get: (m) => num(m, "throughput", "rps"), fmt: (v) => fmtNumber(v, 2) },
  { label: "In flight", get: (m) => num(m, "throughput", "concurrent"), fmt: (v) => fmtNumber(v, 0) },
  { label: "CPU", get: (m) => num(m, "resource_usage", "cpu_percent"), fmt: (v) => `${fmtNumber(v)}%` },
  { label: "Memory", get: (m) => num(m, "resource_usage", "memory_percent"), fmt: (v) => `${fmtNumber(v)}%` },
  { label: "GPU", get: (m) => num(m, "resource_usage", "gpu_percent"), fmt: (v) => `${fmtNumber(v)}%` },
  { label: "Inference", get: (m) => num(m, "ai_performance", "avg_inference_ms"), fmt: (v) => `${fmtNumber(v)} ms` },
  { label: "Model cache hits", get: (m) => num(m, "ai_performance", "model_cache_hit_rate"), fmt: ratioPct },
  { label: "Batch efficiency", get: (m) => num(m, "ai_performance", "batch_efficiency"), fmt: ratioPct },
];

function ratioPct(v) {
  // 0..1 ratios as percent; values above 1 are taken as already in percent
  return `${fmtNumber(v <= 1 ? v * 100 : v)}%`;
}

export function mount(view) {
  let disposed = false;
  let metricsTimer = null;
  let slowTimer = null;
  let alertSock = null;
  let alertTimer = null;
  let alertAttempts = 0;
  let lastOk = 0;
  const history = { t: [], values: CHARTS.map((c) => c.series.map(() => [])) };
  const plots = [];
  const alerts = new Map(); // id → {alert, seen}
  let seq = 0;

  // ---- layout ---------------------------------------------------------------------------------
  const liveState = h("span.live-state", { "aria-live": "polite" }, "connecting…");
  const tiles = h("div.tiles", {}, TILES.map((t) => h("div.tile", {}, h("span.tile-label", {}, t.label), h("span.tile-value", {}, "—"))));
  const metricsNote = h("div.notice", { hidden: true, role: "status" });
  const chartGrid = h("div.chart-grid", {}, CHARTS.map((c) =>
    h("section.card.chart-card", { "aria-label": `${c.title} chart` },
      h("h2", {}, c.title, h("span.muted.unit", {}, ` (${c.unit})`)),
      h("div.chart", { dataset: { chart: c.key } }))));
  const scoreEl = h("span.score", { hidden: true });
  const bottlenecks = h("div.list-body", {}, h("p.muted", {}, "Loading…"));
  const recommendations = h("div.list-body", {}, h("p.muted", {}, "Loading…"));
  const alertState = h("span.muted.small", { "aria-live": "polite" }, "");
  const alertList = h("ol.alert-list", { "aria-label": "Alerts, newest first" });
  const alertEmpty = h("p.muted", {}, "No alerts yet.");

  view.append(
    h("div.page-head.with-action", {},
      h("div", {}, h("h1", {}, "Dashboard"), h("p.muted", {}, "Live performance of this reelgen server.")),
      liveState),
    metricsNote,
    tiles,
    chartGrid,
    h("div.dash-grid", {},
      h("section.card", { "aria-labelledby": "alerts-h" },
        h("div.card-title-row", {}, h("h2#alerts-h", {}, "Alerts"), alertState),
        alertEmpty, alertList),
      h("section.card", { "aria-labelledby": "bn-h" },
        h("div.card-title-row", {}, h("h2#bn-h", {}, "Bottlenecks"), scoreEl),
        bottlenecks),
      h("section.card", { "aria-labelledby": "rec-h" },
        h("h2#rec-h", {}, "Recommendations"),
        recommendations)),
  );

  // ---- charts --------------------------------------------------------------------------------
  function chartData(i) {
    return [history.t, ...history.values[i]];
  }

  function buildPlots(uPlot) {
    for (const p of plots.splice(0)) p.plot.destroy();
    const axis = cssVar("--muted", "#64748b");
    const grid = cssVar("--grid", "rgba(128,128,128,.15)");
    CHARTS.forEach((c, i) => {
      const el = $(`[data-chart="${c.key}"]`, chartGrid);
      el.replaceChildren();
      const width = Math.max(200, el.clientWidth || 300);
      const opts = {
        width,
        height: 190,
        padding: [8, 8, 0, 0],
        cursor: { drag: { x: false, y: false }, points: { size: 6 } },
        legend: { live: true },
        scales: { x: { time: true }, y: c.range ? { range: c.range } : { range: (u, min, max) => [0, max > 0 ? max * 1.15 : 1] } },
        axes: [
          { stroke: axis, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, font: "11px system-ui, sans-serif" },
          {
            stroke: axis, grid: { stroke: grid, width: 1 }, ticks: { show: false }, size: 52, font: "11px system-ui, sans-serif",
            values: (u, vals) => vals.map((v) => (v >= 1000 ? `${(v / 1000).toFixed(1)}k` : String(+v.toFixed(2)))),
          },
        ],
        series: [
          { value: (u, v) => (v == null ? "—" : new Date(v * 1000).toLocaleTimeString()) },
          ...c.series.map((s) => {
            const color = cssVar(s.color, "#6366f1");
            const unit = s.unit ?? c.unit;
            return {
              label: s.label,
              stroke: color,
              width: 2,
              fill: s.fill ? `${color}22` : undefined,
              spanGaps: false,
              points: { show: false },
              value: (u, v) => (v == null ? "—" : `${fmtNumber(v, 2)}${unit ? ` ${unit}` : ""}`),
            };
          }),
        ],
      };
      plots.push({ el, plot: new uPlot(opts, chartData(i), el) });
    });
  }

  const resize = new ResizeObserver(() => {
    for (const p of plots) {
      const w = p.el.clientWidth;
      if (w > 0 && Math.abs(w - p.plot.width) > 2) p.plot.setSize({ width: w, height: 190 });
    }
  });
  for (const el of chartGrid.querySelectorAll(".chart")) resize.observe(el);

  const scheme = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
  const onScheme = () => window.uPlot && !disposed && buildPlots(window.uPlot);
  if (scheme && scheme.addEventListener) scheme.addEventListener("change", onScheme);

  loadUPlot().then((uPlot) => {
    if (!disposed) buildPlots(uPlot);
  }).catch((e) => {
    for (const el of chartGrid.querySelectorAll(".chart")) fill(el, h("p.muted", {}, `Charts unavailable: ${e.message}`));
  });

  // ---- metrics polling -------------------------------------------------------------------------
  function record(m) {
    const now = Date.now() / 1000;
    history.t.push(now);
    CHARTS.forEach((c, i) => c.series.forEach((s, j) => history.values[i][j].push(s.get(m))));
    while (history.t.length && history.t[0] < now - WINDOW_S) {
      history.t.shift();
      for (const series of history.values) for (const arr of series) arr.shift();
    }
    plots.forEach((p, i) => {
      p.plot.setData(chartData(i));
      // with the cursor off the chart, the legend shows the latest values
      if (p.plot.cursor.idx == null && history.t.length) p.plot.setLegend({ idx: history.t.length - 1 });
    });
    TILES.forEach((t, i) => {
      const v = t.get(m);
      tiles.children[i].lastChild.textContent = v == null ? "—" : t.fmt(v);
    });
  }

  function notAvailable(el, e, what) {
    const why = e instanceof ApiError && e.status === 404 ? "not available on this server" : `could not be loaded (${e.message || e})`;
    fill(el, h("p.muted.unavailable", {}, `${what}: ${why}.`));
  }

  async function pollMetrics() {
    if (disposed) return;
    let next = METRICS_EVERY_MS;
    if (!document.hidden) {
      try {
        const m = await api("/api/v1/performance/metrics");
        if (disposed) return;
        record(m || {});
        lastOk = Date.now();
        metricsNote.hidden = true;
        liveState.textContent = "● live";
        liveState.className = "live-state ok";
      } catch (e) {
        if (disposed) return;
        const missing = e instanceof ApiError && e.status === 404;
        metricsNote.hidden = false;
        metricsNote.textContent = missing
          ? "Performance metrics are not available on this server (GET /api/v1/performance/metrics answered 404). Retrying every 10 s."
          : `Could not read performance metrics: ${e.message}. Retrying…`;
        liveState.textContent = missing ? "not available" : "reconnecting…";
        liveState.className = "live-state bad";
        if (missing) next = SLOW_EVERY_MS;
        else if (e.retryAfter) next = e.retryAfter * 1000;
      }
    }
    metricsTimer = setTimeout(pollMetrics, next);
  }

  // ---- bottlenecks & recommendations ----------------------------------------------------------
  function evidenceList(ev) {
    if (ev == null) return null;
    if (typeof ev !== "object") return h("p.evidence", {}, asText(ev));
    const entries = Array.isArray(ev) ? ev.map((v, i) => [String(i + 1), v]) : Object.entries(ev);
    if (!entries.length) return null;
    return h("dl.evidence", {}, entries.slice(0, 12).map(([k, v]) =>
      h("div", {}, h("dt", {}, k.replace(/_/g, " ")), h("dd", {}, typeof v === "number" ? fmtNumber(v, 2) : asText(v)))));
  }

  function severityClass(s) {
    return s >= 0.7 ? "sev-high" : s >= 0.4 ? "sev-mid" : "sev-low";
  }

  function renderBottlenecks(b) {
    const list = b && Array.isArray(b.bottlenecks) ? b.bottlenecks.slice() : [];
    const score = num(b, "optimization_score");
    scoreEl.hidden = score == null;
    if (score != null) {
      scoreEl.textContent = `score ${Math.round(score)}/100`;
      scoreEl.className = `score ${score >= 80 ? "good" : score >= 50 ? "fair" : "poor"}`;
    }
    if (!list.length) {
      fill(bottlenecks, h("p.muted", {}, "No bottlenecks detected."));
      return;
    }
    list.sort((x, y) => (num(y, "severity") ?? 0) - (num(x, "severity") ?? 0));
    fill(bottlenecks, h("ul.bn-list", {}, list.map((item) => {
      const sev = Math.min(1, Math.max(0, num(item, "severity") ?? 0));
      const suggestions = Array.isArray(item && item.suggestions) ? item.suggestions : [];
      return h("li.bn", {},
        h("div.bn-head", {},
          h("strong", {}, asText(item && item.component) || "unknown component"),
          h("span.sev", { class: severityClass(sev), title: `severity ${sev.toFixed(2)}` },
            h("span.sev-bar", { style: { width: `${sev * 100}%` } }),
            h("span.sev-text", {}, `${Math.round(sev * 100)}%`))),
        evidenceList(item && item.evidence),
        suggestions.length ? h("ul.suggestions", {}, suggestions.map((s) => h("li", {}, asText(s)))) : null);
    })));
  }

  function renderRecommendations(r) {
    const list = r && Array.isArray(r.data) ? r.data : Array.isArray(r) ? r : r && Array.isArray(r.recommendations) ? r.recommendations : [];
    if (!list.length) {
      fill(recommendations, h("p.muted", {}, "No recommendations right now."));
      return;
    }
    fill(recommendations, h("ul.rec-list", {}, list.map((item) => {
      if (item == null || typeof item !== "object") return h("li.rec", {}, asText(item));
      const title = asText(item.title || item.name || item.setting || item.component) || "Recommendation";
      const detail = asText(item.detail || item.description || item.message || item.reason);
      return h("li.rec", {},
        h("strong", {}, title),
        detail ? h("p", {}, detail) : null,
        evidenceList(item.evidence));
    })));
  }

  async function pollSlow() {
    if (disposed) return;
    if (!document.hidden) {
      const [b, r] = await Promise.allSettled([
        api("/api/v1/performance/bottlenecks"),
        api("/api/v1/performance/recommendations"),
      ]);
      if (disposed) return;
      if (b.status === "fulfilled") renderBottlenecks(b.value);
      else notAvailable(bottlenecks, b.reason, "Bottleneck analysis");
      if (r.status === "fulfilled") renderRecommendations(r.value);
      else notAvailable(recommendations, r.reason, "Recommendations");
    }
    slowTimer = setTimeout(pollSlow, SLOW_EVERY_MS);
  }

  // ---- alerts -------------------------------------------------------------------------------
  function alertKey(a) {
    return a.id != null ? String(a.id) : `${asText(a.rule)}|${asText(a.started_at)}`;
  }

  function addAlert(a) {
    if (!a || typeof a !== "object") return;
    const key = alertKey(a);
    const prev = alerts.get(key);
    alerts.set(key, { alert: { ...(prev ? prev.alert : {}), ...a }, seen: prev ? prev.seen : ++seq, updated: ++seq });
    if (alerts.size > ALERTS_MAX) {
      const oldest = [...alerts.entries()].sort((x, y) => x[1].updated - y[1].updated)[0];
      if (oldest) alerts.delete(oldest[0]);
    }
  }

  function sortTime(entry) {
    const t = Date.parse(entry.alert.started_at || "");
    return Number.isFinite(t) ? t : 0;
  }

  function renderAlerts() {
    const items = [...alerts.values()].sort((x, y) => sortTime(y) - sortTime(x) || y.seen - x.seen);
    alertEmpty.hidden = items.length > 0;
    const firing = items.filter((e) => e.alert.state === "firing").length;
    fill(alertList, items.map(({ alert: a }) => {
      const isFiring = a.state === "firing";
      const sev = asText(a.severity) || "info";
      const valueText = a.value != null || a.threshold != null
        ? `value ${typeof a.value === "number" ? fmtNumber(a.value, 2) : asText(a.value) || "—"} / threshold ${typeof a.threshold === "number" ? fmtNumber(a.threshold, 2) : asText(a.threshold) || "—"}`
        : "";
      return h("li.alert", { class: isFiring ? "firing" : "resolved", "data-alert-id": alertKey(a) },
        h("div.alert-head", {},
          h("span.alert-state", {}, isFiring ? "firing" : asText(a.state) || "resolved"),
          h("strong.alert-rule", {}, asText(a.rule) || "alert"),
          h("span.pill", { class: `sev-${sev.toLowerCase().replace(/[^a-z]/g, "")}` }, sev)),
        a.message ? h("p.alert-msg", {}, asText(a.message)) : null,
        h("p.alert-meta.muted", {},
          valueText,
          a.started_at ? h("span", {}, `${valueText ? " · " : ""}started `, h("time", { datetime: a.started_at, title: fmtDateTime(a.started_at) }, fmtRelative(a.started_at))) : null,
          a.resolved_at ? h("span", {}, " · resolved ", h("time", { datetime: a.resolved_at, title: fmtDateTime(a.resolved_at) }, fmtRelative(a.resolved_at))) : null));
    }));
    alertList.setAttribute("aria-label", `Alerts, newest first: ${firing} firing`);
  }

  async function loadAlertHistory() {
    try {
      const r = await api("/api/v1/performance/alerts");
      if (disposed) return;
      for (const a of (r && Array.isArray(r.data) ? r.data : [])) addAlert(a);
      renderAlerts();
    } catch (e) {
      if (disposed) return;
      if (e instanceof ApiError && e.status === 404) alertEmpty.textContent = "Alerts are not available on this server.";
    }
  }

  function connectAlerts() {
    if (disposed) return;
    const sock = new WebSocket(wsUrl("/api/v1/performance/alerts"));
    alertSock = sock;
    let opened = false;
    sock.onopen = () => {
      opened = true;
      alertAttempts = 0;
      alertState.textContent = "● live";
      alertState.className = "small live-ok";
    };
    sock.onmessage = (ev) => {
      if (typeof ev.data !== "string") return;
      let m;
      try {
        m = JSON.parse(ev.data);
      } catch {
        return;
      }
      const list = Array.isArray(m) ? m : m && Array.isArray(m.data) ? m.data : m && m.alert ? [m.alert] : [m];
      for (const a of list) addAlert(a);
      renderAlerts();
    };
    sock.onclose = () => {
      if (alertSock === sock) alertSock = null;
      if (disposed) return;
      alertAttempts++;
      const delay = Math.min(30000, 1000 * 2 ** Math.min(alertAttempts - 1, 5)) * (0.8 + Math.random() * 0.4);
      alertState.textContent = `${opened ? "disconnected" : "not connected"} — retrying in ${Math.ceil(delay / 1000)} s`;
      alertState.className = "small live-bad";
      alertTimer = setTimeout(connectAlerts, delay);
    };
  }

  // relative times in the alert list stay fresh
  const ticker = setInterval(() => {
    if (!document.hidden && alerts.size) renderAlerts();
    if (lastOk && Date.now() - lastOk > 3 * METRICS_EVERY_MS + 1000 && liveState.classList.contains("ok")) {
      liveState.textContent = "stale";
      liveState.className = "live-state bad";
    }
  }, 15000);

  const onVisible = () => {
    if (document.hidden || disposed) return;
    clearTimeout(metricsTimer);
    clearTimeout(slowTimer);
    pollMetrics();
    pollSlow();
  };
  document.addEventListener("visibilitychange", onVisible);

  pollMetrics();
  pollSlow();
  loadAlertHistory().then(connectAlerts);

  return () => {
    disposed = true;
    clearTimeout(metricsTimer);
    clearTimeout(slowTimer);
    clearTimeout(alertTimer);
    clearInterval(ticker);
    document.removeEventListener("visibilitychange", onVisible);
    if (scheme && scheme.removeEventListener) scheme.removeEventListener("change", onScheme);
    resize.disconnect();
    for (const p of plots.splice(0)) p.plot.destroy();
    if (alertSock) {
      alertSock.onclose = null;
      try {
        alertSock.close(1000);
      } catch {
        /* ignore */
      }
    }
  };
}
