#!/usr/bin/env node
// End-to-end check of the reelgen web app in headless Chromium (no test runner).
//
//   BASE_URL=http://127.0.0.1:8000 SCREENSHOT=/tmp/watch.png node tests/browser/watch.mjs
//
// Creates a short 640x360 draft video through the Create form, then on the watch page:
// waits for the progress bar to move, for the live preview (<video data-testid=preview>,
// MediaSource fed over the WebSocket) to play while the status badge still says
// "rendering" (the screenshot is taken then), and for "completed"; checks the download
// link answers 200 video/mp4 starting with an ftyp box, that the player switched to the
// finished file, that the video has the two scenes made with the form (the script — with a
// custom avatar made in the form's avatar editor, previewed live and saved — and one
// added with "Add scene" for another presenter), that the script's pause (inserted with the
// form's "Insert pause" button) never reaches the captions while every word of both scenes
// does (the "Captions (VTT)" link's file), and that the Library lists the video. Prints one JSON line and exits 0,
// or prints "watch.mjs: FAIL: …" and exits 1.
//
// With AUDIO_FILE (a recording), it then makes a second video from that file through the
// form's "My recording" choice and waits for it to complete.
//
// Env: BASE_URL (required), SCREENSHOT (png path, optional), CHROMIUM (browser binary,
// default /usr/bin/chromium), API_KEY (optional, for AUTH_MODE=api_key servers),
// COMPLETE_TIMEOUT_MS (default 120000).

import { chromium } from "playwright-core";

const BASE_URL = process.env.BASE_URL;
const SCREENSHOT = process.env.SCREENSHOT || "";
const API_KEY = process.env.API_KEY || "";
const COMPLETE_TIMEOUT_MS = Number(process.env.COMPLETE_TIMEOUT_MS) || 120_000;
const AUDIO_FILE = process.env.AUDIO_FILE || "";
const POLL_MS = 100;
// Six sentences, about thirty seconds of speech: long enough that the live preview plays
// for a while before the render finishes, even with the GPU scheduler batching frames.
const SCRIPT = "Hello and welcome to reelgen, the self-hosted studio that turns a written script into a talking presenter. "
  + "This short clip is rendered frame by frame while you watch it arrive live in the browser. "
  + "When it is done, the finished file replaces the live preview and you can download it. "
  + "Every frame is drawn by compute shaders, encoded by GStreamer, and cut into fragments. "
  + "Each fragment starts on a key frame, so a viewer who joins late still sees the picture. "
  + "Thank you for watching this demonstration of live generation from start to finish.";

// The second scene, added with the form's "Add scene" button.
const SCENE_TWO = "And this second scene has another presenter.";

class Failure extends Error {}
const fail = (msg) => {
  throw new Failure(msg);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (msg) => console.error(`watch.mjs: ${msg}`);

async function main() {
  if (!BASE_URL) fail("BASE_URL is required (e.g. BASE_URL=http://127.0.0.1:8000)");
  const started = Date.now();
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
  });
  const pageErrors = [];
  try {
    const context = await browser.newContext({
      viewport: { width: 1280, height: 900 },
      extraHTTPHeaders: API_KEY ? { "X-Api-Key": API_KEY } : {},
    });
    if (API_KEY) await context.addInitScript((k) => localStorage.setItem("reelgen.api_key", k), API_KEY);
    // Every Content-Security-Policy violation the page causes is recorded (and fails the run).
    await context.addInitScript(() => {
      window.__cspViolations = [];
      document.addEventListener("securitypolicyviolation", (e) =>
        window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"}`));
    });
    const page = await context.newPage();
    page.on("pageerror", (e) => pageErrors.push(`pageerror: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error") pageErrors.push(`console: ${m.text()}`);
    });

    // ---- create ------------------------------------------------------------------------
    const res = await page.goto(BASE_URL, { waitUntil: "domcontentloaded" });
    if (!res || !res.ok()) fail(`GET ${BASE_URL} answered ${res ? res.status() : "nothing"}`);
    const csp = (await res.allHeaders())["content-security-policy"] || "";
    if (!csp.includes("script-src 'self'")) fail(`the app page has no strict Content-Security-Policy: "${csp}"`);
    await page.locator("#script").waitFor({ timeout: 15_000 }).catch(() => fail("the Create form (#script) did not appear"));
    await page.locator("input[name=avatar]").first().waitFor({ state: "attached", timeout: 15_000 })
      .catch(() => fail("avatars did not load into the Create form"));
    // A custom avatar through the editor: a live preview from the server, then saved and
    // selected for this video.
    await page.locator("details.avatar-editor summary").click();
    await page.locator("[data-testid=avatar-name]").fill("Test host");
    await page.locator("[data-testid=avatar-skin]").fill("#f1c27d");
    try {
      await page.waitForFunction(() => {
        const i = document.querySelector("[data-testid=avatar-preview]");
        return i && i.complete && i.naturalWidth === 480;
      }, null, { timeout: 30_000, polling: 200 });
    } catch {
      fail("the avatar editor showed no preview");
    }
    await page.locator("[data-testid=avatar-save]").click();
    try {
      await page.waitForFunction(() => {
        const r = document.querySelector("input[name=avatar]:checked");
        return r && r.closest("label") && r.closest("label").textContent.includes("Test host");
      }, null, { timeout: 15_000, polling: 200 });
    } catch {
      fail("the saved avatar was not selected");
    }
    await page.locator("#script").fill(SCRIPT);
    // A one-second pause after the first sentence, through the form's button.
    const firstEnd = SCRIPT.indexOf(". ") + 1;
    await page.locator("#script").evaluate((el, at) => el.setSelectionRange(at, at), firstEnd);
    await page.locator("[data-testid=pause-seconds]").fill("1");
    await page.locator("[data-testid=insert-pause]").click();
    // A second scene with another presenter, through "Add scene".
    await page.locator("[data-testid=add-scene]").click();
    await page.locator("[data-testid=scene-script]").fill(SCENE_TWO);
    const avatars = await page.locator("[data-testid=scene-avatar] option").evaluateAll((os) => os.map((o) => o.value));
    if (avatars.length < 2) fail(`the scene's avatar list has ${avatars.length} avatars`);
    await page.locator("[data-testid=scene-avatar]").selectOption(avatars[1]);
    const withPause = await page.locator("#script").inputValue();
    if (!withPause.includes('presenter. <break time="1s"/> This short clip')) {
      fail(`"Insert pause" did not put a break after the first sentence: ${JSON.stringify(withPause.slice(0, 160))}`);
    }
    await page.locator("#size").selectOption("640x360");
    await page.getByRole("radio", { name: /draft/i }).check();
    await page.getByRole("button", { name: "Generate video" }).click();
    try {
      await page.waitForURL(/#\/watch\/[0-9a-f-]{36}/i, { timeout: 20_000 });
    } catch {
      const err = await page.locator(".error-summary").first().innerText().catch(() => "");
      fail(`submitting the form did not open the watch page${err ? `; the form says: ${err.replace(/\s+/g, " ")}` : ""}`);
    }
    const id = /#\/watch\/([0-9a-f-]{36})/i.exec(page.url())[1];
    log(`created video ${id}`);

    // ---- watch: progress, live preview while rendering, completion -----------------------
    const deadline = Date.now() + COMPLETE_TIMEOUT_MS;
    const progressValues = new Set();
    const statuses = [];
    let maxLive = 0;
    let sawProgress = false;
    let screenshotTaken = false;
    let last = null;
    for (;;) {
      last = await page.evaluate(() => {
        const badge = document.querySelector("[data-testid=status]");
        const bar = document.querySelector("[data-testid=progress]");
        const video = document.querySelector("video[data-testid=preview]");
        const err = document.querySelector(".watch-main .error-summary:not([hidden])");
        return {
          status: badge ? (badge.dataset.status || badge.textContent || "").trim().toLowerCase() : null,
          progress: bar ? Number(bar.getAttribute("aria-valuenow")) : null,
          time: video ? video.currentTime : null,
          buffered: video && video.buffered.length ? [video.buffered.start(0), video.buffered.end(video.buffered.length - 1)] : null,
          error: err ? err.innerText : "",
        };
      });
      if (statuses[statuses.length - 1] !== last.status) statuses.push(last.status);
      if (last.progress == null) fail("no [data-testid=progress] element on the watch page");
      if (last.time == null) fail("no <video data-testid=preview> on the watch page");
      if (last.progress > 0) {
        sawProgress = true;
        progressValues.add(last.progress);
      }
      if (last.status === "rendering" && last.time > 0) {
        maxLive = Math.max(maxLive, last.time);
        if (sawProgress && !screenshotTaken) {
          screenshotTaken = true;
          if (SCREENSHOT) {
            await page.screenshot({ path: SCREENSHOT, fullPage: false });
            log(`screenshot of the live preview at ${last.time.toFixed(2)} s, ${last.progress}% → ${SCREENSHOT}`);
          }
        }
      }
      if (last.status === "completed") break;
      if (last.status === "failed" || last.status === "cancelled") {
        fail(`the video ${last.status}${last.error ? `: ${last.error.replace(/\s+/g, " ")}` : ""}`);
      }
      if (Date.now() > deadline) {
        fail(`not completed after ${COMPLETE_TIMEOUT_MS / 1000} s (status ${last.status}, progress ${last.progress}%, preview time ${last.time})`);
      }
      await sleep(POLL_MS);
    }
    log(`completed; statuses seen: ${statuses.join(" → ")}; max live time ${maxLive.toFixed(2)} s`);
    if (!sawProgress) fail("the progress bar's aria-valuenow never went above 0 before completion");
    if (!(maxLive > 0)) {
      fail(`the live preview never played while rendering (statuses ${statuses.join(" → ")}; progress samples ${progressValues.size})`);
    }
    const finalProgress = Number(await page.locator("[data-testid=progress]").getAttribute("aria-valuenow"));
    if (finalProgress !== 100) fail(`progress shows ${finalProgress} after completion, expected 100`);

    // ---- download ------------------------------------------------------------------------
    const link = page.locator("[data-testid=download]");
    await link.waitFor({ state: "visible", timeout: 10_000 }).catch(() => fail("no visible download link after completion"));
    const href = await link.getAttribute("href");
    if (!href || href === "#") fail(`the download link has no usable href (${href})`);
    const fileUrl = new URL(href, page.url()).toString();
    let downloadBytes = null;
    if (fileUrl.startsWith("blob:")) {
      log("download link is a blob: URL (API key mode); checking the file endpoint instead");
    }
    const fileRes = await page.request.get(fileUrl.startsWith("blob:") ? new URL(`/api/v1/videos/${id}/file`, BASE_URL).toString() : fileUrl);
    if (fileRes.status() !== 200) fail(`GET ${fileUrl} answered ${fileRes.status()}, expected 200`);
    const ctype = fileRes.headers()["content-type"] || "";
    if (!ctype.startsWith("video/mp4")) fail(`GET ${fileUrl} has content-type "${ctype}", expected video/mp4`);
    const body = await fileRes.body();
    downloadBytes = body.length;
    const box = body.subarray(4, 8).toString("latin1");
    if (box !== "ftyp") fail(`the downloaded file does not start with an ftyp box (bytes 4..8: ${JSON.stringify(box)})`);

    // ---- the player switched to the finished file ---------------------------------------
    try {
      await page.waitForFunction(() => {
        const v = document.querySelector("video[data-testid=preview]");
        return v && v.dataset.source === "file" && Number.isFinite(v.duration) && v.duration > 0;
      }, null, { timeout: 15_000, polling: 200 });
    } catch {
      const src = await page.evaluate(() => {
        const v = document.querySelector("video[data-testid=preview]");
        return v ? `source=${v.dataset.source} src=${v.currentSrc} readyState=${v.readyState} error=${v.error && v.error.message}` : "no video";
      });
      fail(`the player did not load the finished file (${src})`);
    }
    const fileDuration = await page.evaluate(() => document.querySelector("video[data-testid=preview]").duration);

    // ---- captions: every word, no tag --------------------------------------------------------
    const vttLink = page.locator("[data-testid=captions-vtt]");
    await vttLink.waitFor({ state: "visible", timeout: 15_000 }).catch(() => fail("no visible captions (VTT) link after completion"));
    const vttHref = new URL(await vttLink.getAttribute("href"), page.url()).toString();
    const vttRes = await page.request.get(vttHref.startsWith("blob:") ? new URL(`/api/v1/videos/${id}/captions.vtt`, BASE_URL).toString() : vttHref);
    if (vttRes.status() !== 200) fail(`GET ${vttHref} answered ${vttRes.status()}`);
    const vtt = await vttRes.text();
    if (!vtt.startsWith("WEBVTT")) fail(`the captions file is not WebVTT: ${JSON.stringify(vtt.slice(0, 80))}`);
    const cueWords = vtt.split("\n\n").filter((b) => b.includes("-->"))
      .flatMap((b) => b.split("\n").slice(2).join(" ").split(" ")).filter(Boolean);
    const scriptWords = `${SCRIPT} ${SCENE_TWO}`.split(/\s+/).filter(Boolean);
    if (cueWords.join(" ") !== scriptWords.join(" ")) {
      fail(`the captions' words differ from the script's:\n  captions: ${cueWords.join(" ")}\n  script:   ${scriptWords.join(" ")}`);
    }
    const made = await (await page.request.get(new URL(`/api/v1/videos/${id}`, BASE_URL).toString())).json();
    if (!Array.isArray(made.scenes) || made.scenes.length !== 2) fail(`the video does not have two scenes: ${JSON.stringify(made.scenes)}`);
    const first = (made.params.scenes || [])[0] || {};
    if (!first.avatar || !first.avatar.look || first.avatar.look.skin_tone !== "#f1c27d") fail(`the first scene is not the saved custom avatar: ${JSON.stringify(first.avatar)}`);
    const hasTrack = await page.evaluate(() => Boolean(document.querySelector("video[data-testid=preview] track[kind=captions]")));
    if (!hasTrack) fail("the player has no captions <track>");

    // ---- library ---------------------------------------------------------------------------
    await page.locator("nav.mainnav a[data-route=library]").click();
    await page.waitForURL(/#\/library/, { timeout: 5_000 });
    const card = page.locator(`[data-video-id="${id}"]`);
    await card.waitFor({ state: "visible", timeout: 15_000 }).catch(() => fail(`the library does not list video ${id}`));
    const cardStatus = (await card.locator(".badge").first().getAttribute("data-status")) || "";
    if (cardStatus !== "completed") fail(`the library shows video ${id} as "${cardStatus}", expected completed`);

    // ---- a second video from the user's own recording (AUDIO_FILE) -----------------------
    let recordingVideo = null;
    if (AUDIO_FILE) {
      await page.locator("nav.mainnav a[data-route=create]").click();
      await page.locator("[data-testid=source-audio]").check();
      await page.locator("[data-testid=audio-file]").setInputFiles(AUDIO_FILE);
      if (await page.locator("#script").isVisible()) fail("the script box still shows with a recording chosen");
      await page.getByRole("radio", { name: /draft/i }).check();
      await page.getByRole("button", { name: "Generate video" }).click();
      try {
        await page.waitForURL((u) => /#\/watch\/[0-9a-f-]{36}/i.test(u.hash) && !u.hash.includes(id), { timeout: 30_000 });
      } catch {
        const err = await page.locator(".error-summary").first().innerText().catch(() => "");
        fail(`the recording's video was not created${err ? `; the form says: ${err.replace(/\s+/g, " ")}` : ""}`);
      }
      recordingVideo = /#\/watch\/([0-9a-f-]{36})/i.exec(page.url())[1];
      const until = Date.now() + COMPLETE_TIMEOUT_MS;
      for (;;) {
        const st = await page.locator("[data-testid=status]").getAttribute("data-status").catch(() => null);
        if (st === "completed") break;
        if (st === "failed" || st === "cancelled") fail(`the recording's video ${st}`);
        if (Date.now() > until) fail(`the recording's video did not complete (status ${st})`);
        await sleep(POLL_MS);
      }
      const v = await page.request.get(new URL(`/api/v1/videos/${recordingVideo}`, BASE_URL).toString());
      const params = (await v.json()).params || {};
      if (!params.audio || params.script) fail(`the recording's video was not made from the recording: ${JSON.stringify(params)}`);
      log(`video ${recordingVideo} lip-synced to ${AUDIO_FILE}`);
    }

    const seriousErrors = pageErrors.filter((e) => e.startsWith("pageerror"));
    if (seriousErrors.length) fail(`uncaught errors in the page: ${seriousErrors.join(" | ")}`);
    const violations = (await page.evaluate(() => window.__cspViolations || []))
      .concat(pageErrors.filter((e) => /Content Security Policy/i.test(e)));
    if (violations.length) fail(`Content-Security-Policy violations: ${violations.join(" | ")}`);

    console.log(JSON.stringify({
      ok: true,
      id,
      max_live_time: Number(maxLive.toFixed(3)),
      progress_samples: progressValues.size,
      statuses,
      csp_violations: violations.length,
      file_duration: Number(fileDuration.toFixed(3)),
      caption_words: cueWords.length,
      recording_video: recordingVideo,
      download_bytes: downloadBytes,
      screenshot: SCREENSHOT || null,
      elapsed_s: Number(((Date.now() - started) / 1000).toFixed(1)),
    }));
  } catch (e) {
    if (pageErrors.length) log(`page console/errors:\n  ${pageErrors.slice(-15).join("\n  ")}`);
    throw e;
  } finally {
    await browser.close().catch(() => {});
  }
}

main().catch((e) => {
  const msg = e instanceof Failure ? e.message : e && e.stack ? e.stack : String(e);
  console.error(`watch.mjs: FAIL: ${msg}`);
  console.log(JSON.stringify({ ok: false, error: e instanceof Failure ? e.message : String(e && e.message || e) }));
  process.exit(1);
});
