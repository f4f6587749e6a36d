// The JSON API client: API key handling, problem+json errors (RFC 9457), WebSocket URLs,
// and media URLs that work in API-key mode (where <img>/<video> cannot send headers).

const KEY_STORAGE = "reelgen.api_key";

export function getApiKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || "";
  } catch {
    return "";
  }
}

export function setApiKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    /* private mode: the key lives for this page only */
  }
  memoryKey = key || "";
  clearMediaCache();
  window.dispatchEvent(new CustomEvent("reelgen:apikey"));
}

let memoryKey = null;
function currentKey() {
  return memoryKey ?? getApiKey();
}

/** An error answer of the API, with the problem document's parts. */
export class ApiError extends Error {
  constructor(status, problem, fallback) {
    const p = problem && typeof problem === "object" ? problem : {};
    const title = typeof p.title === "string" && p.title ? p.title : fallback || `HTTP ${status}`;
    super(typeof p.detail === "string" && p.detail ? `${title}: ${p.detail}` : title);
    this.name = "ApiError";
    this.status = status;
    this.title = title;
    this.detail = typeof p.detail === "string" ? p.detail : "";
    this.code = typeof p.code === "string" ? p.code : "";
    this.errors = Array.isArray(p.errors)
      ? p.errors.map((e) => ({
          field: e && typeof e.field === "string" ? e.field : "",
          message: e && e.message != null ? String(e.message) : "invalid",
          code: e && typeof e.code === "string" ? e.code : "",
        }))
      : [];
    this.problem = p;
  }
}

const STATUS_TEXT = {
  0: "Network error",
  400: "Bad request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not found",
  409: "Conflict",
  413: "Request too large",
  415: "Unsupported media type",
  422: "Invalid request",
  429: "Too many requests",
  500: "Server error",
  502: "Bad gateway",
  503: "Service unavailable",
};

export function authHeaders() {
  const key = currentKey();
  return key ? { "X-Api-Key": key } : {};
}

/**
 * fetch() a JSON route. Resolves to the parsed body (null for 204); rejects with ApiError
 * (status 0 when the server could not be reached).
 */
export async function api(path, { method = "GET", body, headers = {}, signal } = {}) {
  const init = { method, headers: { Accept: "application/json", ...authHeaders(), ...headers }, signal };
  if (body instanceof Blob) {
    // A file as the raw body (POST /api/v1/audio).
    init.headers["Content-Type"] = body.type || "application/octet-stream";
    init.body = body;
  } else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    if (e && e.name === "AbortError") throw e;
    throw new ApiError(0, { title: "Cannot reach the server", detail: "Check your connection and that reelgen is running." });
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const err = new ApiError(res.status, data, STATUS_TEXT[res.status] || `HTTP ${res.status}`);
    err.retryAfter = Number(res.headers.get("Retry-After")) || null;
    if (res.status === 401) window.dispatchEvent(new CustomEvent("reelgen:unauthorized"));
    throw err;
  }
  return data;
}

/** ws:// or wss:// URL of a path on this host, carrying the API key as access_token. */
export function wsUrl(path, params = {}) {
  const url = new URL(path, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v);
  const key = currentKey();
  if (key) url.searchParams.set("access_token", key);
  return url.toString();
}

export const videoFileUrl = (id) => `/api/v1/videos/${encodeURIComponent(id)}/file`;
export const thumbnailUrl = (id) => `/api/v1/videos/${encodeURIComponent(id)}/thumbnail`;
/** Caption files of a completed video with speech: "vtt" or "srt". */
export const captionsUrl = (id, format) => `/api/v1/videos/${encodeURIComponent(id)}/captions.${format}`;

// Media in API-key mode: <img src>, <video src> and <a href download> cannot send the
// X-Api-Key header, so with a key set the bytes are fetched and served from a blob: URL.
const mediaCache = new Map();

function clearMediaCache() {
  for (const p of mediaCache.values()) p.then((u) => u && URL.revokeObjectURL(u)).catch(() => {});
  mediaCache.clear();
}

export function needsBlobMedia() {
  return Boolean(currentKey());
}

/** A URL for `path` usable in src/href: the path itself in open mode, else a blob: URL. */
export function mediaUrl(path) {
  if (!needsBlobMedia()) return Promise.resolve(path);
  if (!mediaCache.has(path)) {
    const p = fetch(path, { headers: authHeaders() }).then(async (res) => {
      if (!res.ok) throw new ApiError(res.status, null, STATUS_TEXT[res.status]);
      return URL.createObjectURL(await res.blob());
    });
    p.catch(() => mediaCache.delete(path));
    mediaCache.set(path, p);
  }
  return mediaCache.get(path);
}

/** A random UUID for Idempotency-Key (crypto.randomUUID needs a secure context). */
export function uuid() {
  if (crypto.randomUUID) {
    try {
      return crypto.randomUUID();
    } catch {
      /* fall through */
    }
  }
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
