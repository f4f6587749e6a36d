// Small DOM and formatting helpers. Everything user- or server-provided goes through
// textContent / setAttribute, never innerHTML.

/**
 * h("div.card#x", {attrs}, ...children): builds an element. `attrs` keys: `class`,
 * `dataset`, `style` (object), `on*` (listeners), anything else is an attribute
 * (`true` → empty attribute, `false`/`null`/`undefined` → omitted). Children: nodes,
 * strings, numbers, arrays, null/false (skipped).
 */
export function h(spec, attrs, ...children) {
  if (attrs == null || typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs)) {
    if (attrs != null && attrs !== false) children.unshift(attrs);
    attrs = {};
  }
  const m = /^([a-z0-9-]+)?((?:[.#][\w-]+)*)$/i.exec(spec);
  const el = document.createElement((m && m[1]) || "div");
  if (m && m[2]) {
    for (const part of m[2].match(/[.#][\w-]+/g)) {
      if (part[0] === ".") el.classList.add(part.slice(1));
      else el.id = part.slice(1);
    }
  }
  for (const [k, v] of Object.entries(attrs)) {
    if (v == null || v === false) continue;
    if (k === "class") String(v).split(/\s+/).filter(Boolean).forEach((c) => el.classList.add(c));
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "style" && typeof v === "object") {
      for (const [prop, val] of Object.entries(v)) {
        if (prop.startsWith("--")) el.style.setProperty(prop, val);
        else el.style[prop] = val;
      }
    }
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "value" && "value" in el) el.value = v;
    else if (k === "checked" || k === "selected" || k === "disabled") el[k] = Boolean(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c == null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

/** Replaces the children of `el`. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

// ---- formatting -------------------------------------------------------------------------

export function fmtDuration(s) {
  if (s == null || !Number.isFinite(Number(s))) return "—";
  s = Math.max(0, Number(s));
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)} s`;
  const m = Math.floor(s / 60);
  const r = Math.round(s % 60);
  if (m < 60) return `${m}:${String(r).padStart(2, "0")}`;
  return `${Math.floor(m / 60)}:${String(m % 60).padStart(2, "0")}:${String(r).padStart(2, "0")}`;
}

export function fmtEta(s) {
  if (s == null || !Number.isFinite(Number(s))) return "—";
  s = Math.max(0, Math.ceil(Number(s)));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

export function fmtBytes(n) {
  if (n == null || !Number.isFinite(Number(n))) return "—";
  n = Number(n);
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

const rtf = typeof Intl !== "undefined" && Intl.RelativeTimeFormat
  ? new Intl.RelativeTimeFormat(undefined, { numeric: "auto" })
  : null;

export function fmtRelative(iso) {
  if (!iso) return "—";
  const t = Date.parse(iso);
  if (!Number.isFinite(t)) return String(iso);
  const diff = (t - Date.now()) / 1000;
  const abs = Math.abs(diff);
  if (!rtf) return new Date(t).toLocaleString();
  if (abs < 45) return rtf.format(Math.round(diff), "second");
  if (abs < 45 * 60) return rtf.format(Math.round(diff / 60), "minute");
  if (abs < 22 * 3600) return rtf.format(Math.round(diff / 3600), "hour");
  if (abs < 26 * 86400) return rtf.format(Math.round(diff / 86400), "day");
  return new Date(t).toLocaleDateString();
}

export function fmtDateTime(iso) {
  if (!iso) return "";
  const t = Date.parse(iso);
  return Number.isFinite(t) ? new Date(t).toLocaleString() : String(iso);
}

export function fmtNumber(v, digits = 1) {
  if (v == null || v === "" || !Number.isFinite(Number(v))) return "—";
  const n = Number(v);
  if (Number.isInteger(n) || Math.abs(n) >= 100) return Math.round(n).toLocaleString();
  return n.toFixed(digits);
}

export function fmtPercent(v, digits = 0) {
  if (v == null || !Number.isFinite(Number(v))) return "—";
  return `${Number(v).toFixed(digits)}%`;
}

/** A value from a loosely-shaped server object as display text. */
export function asText(v) {
  if (v == null) return "";
  if (typeof v === "string") return v;
  if (typeof v === "number" || typeof v === "boolean") return String(v);
  try {
    return JSON.stringify(v);
  } catch {
    return String(v);
  }
}

export const STATUS_LABELS = {
  queued: "queued",
  rendering: "rendering",
  completed: "completed",
  failed: "failed",
  cancelled: "cancelled",
};

export function statusBadge(status, extra = {}) {
  const s = String(status || "unknown");
  return h("span.badge", { class: `badge-${s}`, "data-status": s, ...extra }, STATUS_LABELS[s] || s);
}

export function setStatusBadge(el, status) {
  const s = String(status || "unknown");
  el.className = `badge badge-${s}`;
  el.dataset.status = s;
  el.textContent = STATUS_LABELS[s] || s;
}

/** role=progressbar with a fill; call setProgress(el, 0..1). */
export function progressBar(attrs = {}) {
  const bar = h("div.progress", {
    role: "progressbar",
    "aria-valuemin": "0",
    "aria-valuemax": "100",
    "aria-valuenow": "0",
    ...attrs,
  }, h("div.progress-fill"));
  return bar;
}

export function setProgress(bar, fraction) {
  const f = Math.min(1, Math.max(0, Number(fraction) || 0));
  const pct = Math.floor(f * 1000) / 10; // one decimal, never rounds up to 100 early
  bar.setAttribute("aria-valuenow", String(pct));
  bar.setAttribute("aria-valuetext", `${pct.toFixed(pct % 1 ? 1 : 0)} percent`);
  bar.firstElementChild.style.width = `${f * 100}%`;
}

export function isTerminal(status) {
  return status === "completed" || status === "failed" || status === "cancelled";
}

export function toast(message, kind = "info", ms = 4000) {
  let region = document.getElementById("toasts");
  if (!region) return;
  const t = h("div.toast", { class: `toast-${kind}`, role: kind === "error" ? "alert" : "status" }, message);
  region.append(t);
  setTimeout(() => {
    t.classList.add("toast-out");
    setTimeout(() => t.remove(), 300);
  }, ms);
}
