#!/usr/bin/env node
// The Live page in headless Chromium (no test runner):
//
//   BASE_URL=http://127.0.0.1:8000 SCREENSHOT=/tmp/live.png node tests/browser/live.mjs
//
// Opens #/live, starts a session, checks it went over WebRTC on the app's own origin and that
// the browser's RTCPeerConnection decodes video (getStats(): framesDecoded > 0), types a
// sentence and presses Speak, waits for its words to appear (the data channel's `word`
// events) and for the latency readout, interrupts a long sentence, and ends the session. Then
// the fallback (#/live?transport=mse): the same page over the WebSocket, the <video> playing
// the fragmented MP4 through Media Source Extensions while the avatar speaks.
// Prints one JSON line and exits 0, or prints "live.mjs: FAIL: …" and exits 1.
//
// Env: BASE_URL (required), SCREENSHOT (png path, optional), CHROMIUM (default
// /usr/bin/chromium), API_KEY (optional).

import { chromium } from "playwright-core";

const BASE_URL = process.env.BASE_URL;
const SCREENSHOT = process.env.SCREENSHOT || "";
const API_KEY = process.env.API_KEY || "";
const WAIT_MS = 60_000;

class Failure extends Error {}
const fail = (msg) => {
  throw new Failure(msg);
};

async function stats(page) {
  return page.evaluate(async () => {
    const live = window.reelgenLive;
    if (!live || !live.pc) return null;
    const out = { framesDecoded: 0, audioPackets: 0, codec: null };
    const report = await live.pc.getStats();
    const codecs = {};
    report.forEach((s) => {
      if (s.type === "codec") codecs[s.id] = s.mimeType;
    });
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") {
        out.framesDecoded = s.framesDecoded || 0;
        out.codec = codecs[s.codecId] || null;
      }
      if (s.type === "inbound-rtp" && s.kind === "audio") out.audioPackets = s.packetsReceived || 0;
    });
    return out;
  });
}

/**
 * Opens the Live page at `route`, starts a session and returns the transport it chose. A
 * `fresh` load must answer; a change of the hash alone loads nothing (no response).
 */
async function startSession(page, route, fresh) {
  const res = await page.goto(`${BASE_URL}/${route}`, { waitUntil: "domcontentloaded" });
  if (fresh ? !res || !res.ok() : res && !res.ok()) {
    fail(`GET ${BASE_URL}/${route} answered ${res ? res.status() : "nothing"}`);
  }
  await page.waitForFunction(() => document.querySelectorAll("#live-voice option[value]").length > 0, null, { timeout: WAIT_MS });
  await page.click("[data-testid=live-start]");
  await page.waitForFunction(() => {
    const s = document.querySelector("[data-testid=live-status]");
    return s && s.dataset.transport;
  }, null, { timeout: WAIT_MS });
  return page.getAttribute("[data-testid=live-status]", "data-transport");
}

async function main() {
  if (!BASE_URL) fail("BASE_URL is required");
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--autoplay-policy=no-user-gesture-required"],
  });
  const pageErrors = [];
  try {
    const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    if (API_KEY) await context.addInitScript((k) => localStorage.setItem("reelgen.api_key", k), API_KEY);
    await context.addInitScript(() => {
      window.__cspViolations = [];
      document.addEventListener("securitypolicyviolation", (e) =>
        window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"}`));
    });
    const page = await context.newPage();
    page.on("pageerror", (e) => pageErrors.push(`pageerror: ${e.message}`));

    const transport = await startSession(page, "#/live", true);
    if (transport !== "webrtc") {
      const why = await page.textContent("[data-testid=live-log]");
      fail(`the session did not go over WebRTC (${transport}): ${why}`);
    }

    // The browser decodes the avatar.
    const deadline = Date.now() + WAIT_MS;
    let s = null;
    while (Date.now() < deadline) {
      s = await stats(page);
      if (s && s.framesDecoded > 10 && s.audioPackets > 10) break;
      await page.waitForTimeout(200);
    }
    if (!s || s.framesDecoded <= 10) fail(`no decoded video over WebRTC: ${JSON.stringify(s)}`);
    if (s.audioPackets <= 10) fail(`no audio over WebRTC: ${JSON.stringify(s)}`);

    // Speak: the words arrive over the data channel, with the latency readout.
    await page.fill("#live-text", "Hello from the browser test.");
    await page.click("[data-testid=live-speak]");
    await page.waitForFunction(() => {
      const w = document.querySelector("[data-testid=live-words]");
      return w && w.textContent.includes("browser");
    }, null, { timeout: WAIT_MS });
    await page.waitForFunction(() => {
      const l = document.querySelector("[data-testid=live-latency]");
      return l && l.dataset.ms && Number(l.dataset.ms) > 0;
    }, null, { timeout: WAIT_MS });
    const latencyMs = Number(await page.getAttribute("[data-testid=live-latency]", "data-ms"));
    if (SCREENSHOT) await page.screenshot({ path: SCREENSHOT });

    // Interrupt a long sentence.
    await page.waitForFunction(() => document.querySelector("[data-testid=live-log]").textContent.includes("done speaking"),
      null, { timeout: WAIT_MS });
    await page.fill("#live-text", "This is a long sentence that will be cut off by the interrupt button long before it reaches its end, because the test presses it.");
    await page.click("[data-testid=live-speak]");
    await page.waitForFunction(() => document.querySelector("[data-testid=live-words]").textContent.includes("long"),
      null, { timeout: WAIT_MS });
    await page.click("[data-testid=live-interrupt]");
    await page.waitForFunction(() => document.querySelector("[data-testid=live-log]").textContent.includes("interrupted"),
      null, { timeout: WAIT_MS });
    const after = await stats(page);

    await page.click("[data-testid=live-stop]");
    await page.waitForFunction(() => document.querySelector("[data-testid=live-status]").textContent.includes("ended"),
      null, { timeout: WAIT_MS });

    // The fallback: the WebSocket stream through MSE.
    const fallback = await startSession(page, "#/live?transport=mse", false);
    if (fallback !== "mse") fail(`the fallback was not used: ${fallback}`);
    await page.fill("#live-text", "Now over the WebSocket stream.");
    await page.click("[data-testid=live-speak]");
    await page.waitForFunction(() => document.querySelector("[data-testid=live-words]").textContent.includes("WebSocket"),
      null, { timeout: WAIT_MS });
    await page.waitForFunction(() => {
      const v = document.querySelector("[data-testid=live-video]");
      return v && v.currentTime > 0.5 && v.readyState >= 2;
    }, null, { timeout: WAIT_MS });
    const mseTime = await page.evaluate(() => document.querySelector("[data-testid=live-video]").currentTime);
    await page.click("[data-testid=live-stop]");

    if (pageErrors.length) fail(`uncaught errors in the page: ${pageErrors.join(" | ")}`);
    const violations = await page.evaluate(() => window.__cspViolations || []);
    if (violations.length) fail(`Content-Security-Policy violations: ${violations.join(" | ")}`);
    console.log(JSON.stringify({
      ok: true,
      transport,
      codec: after.codec,
      frames_decoded: after.framesDecoded,
      audio_packets: after.audioPackets,
      latency_ms: latencyMs,
      mse_played_s: Number(mseTime.toFixed(3)),
      screenshot: SCREENSHOT || null,
    }));
  } finally {
    await browser.close().catch(() => {});
  }
}

main().catch((e) => {
  const msg = e instanceof Failure ? e.message : e && e.stack ? e.stack : String(e);
  console.error(`live.mjs: FAIL: ${msg}`);
  console.log(JSON.stringify({ ok: false, error: e instanceof Failure ? e.message : String(e && e.message || e) }));
  process.exit(1);
});
