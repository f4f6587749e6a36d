// Create page: the request form of POST /api/v1/videos (SPEC §3). Problem+json errors are
// shown as a summary above the form and next to each field named by its dotted path.

import { api, ApiError, authHeaders, uuid } from "../api.js";
import { h, $, $$, fill } from "../dom.js";

const SCRIPT_MAX = 5000;
const WORDS_PER_MINUTE = 165; // the server's estimate (domain.rs)
const SIZES = [
  { value: "1280x720", label: "1280 × 720 — HD landscape" },
  { value: "1920x1080", label: "1920 × 1080 — Full HD landscape" },
  { value: "1080x1920", label: "1080 × 1920 — vertical (stories)" },
  { value: "640x360", label: "640 × 360 — small preview" },
];
const FPS = [24, 25, 30, 60];
const QUALITIES = [
  { value: "draft", label: "Draft", hint: "fastest" },
  { value: "standard", label: "Standard", hint: "balanced" },
  { value: "high", label: "High", hint: "best" },
];
const EXPRESSIONS_DEFAULT = ["neutral", "friendly", "serious"];

// The last form values survive navigation within the session (not across reloads).
let remembered = null;

function field(name, label, control, hint) {
  const id = control.id || `f-${name.replace(/\W/g, "-")}`;
  if (!control.id) control.id = id;
  const err = h("p.field-error", { id: `${id}-error`, hidden: true });
  const hintEl = hint ? h("p.hint", { id: `${id}-hint` }, hint) : null;
  const describedby = [hintEl && hintEl.id, err.id].filter(Boolean).join(" ");
  control.setAttribute("aria-describedby", describedby);
  return h("div.field", { dataset: { field: name } },
    h("label.label", { for: id }, label),
    control,
    hintEl,
    err);
}

const BREAK_TAG = /<break\b[^<>]*>/g;

function estimateSeconds(script, speed) {
  // Each <break time="…"/> adds its pause; the tag itself is not spoken.
  let breaks = 0;
  for (const tag of script.match(BREAK_TAG) || []) {
    const m = /time\s*=\s*["']([\d.]+)(ms|s)["']/.exec(tag);
    breaks += m ? Number(m[1]) / (m[2] === "ms" ? 1000 : 1) : 0.5;
  }
  const text = script.replace(BREAK_TAG, " ");
  const words = text.split(/\s+/).filter(Boolean).length;
  const pauses = (text.match(/[.!?;:,]/g) || []).length;
  return Math.max(1, (words * 60) / (WORDS_PER_MINUTE * (speed || 1)) + pauses * 0.25 + breaks + 0.5);
}

export function mount(view) {
  let disposed = false;
  const state = { avatars: [], voices: [], backgrounds: [] };

  // ---- controls ---------------------------------------------------------------------------
  const title = h("input", { type: "text", name: "title", maxlength: "200", placeholder: "Defaults to the script's first words", autocomplete: "off" });
  const script = h("textarea", {
    name: "script", id: "script", rows: "7", maxlength: String(SCRIPT_MAX), required: true,
    placeholder: "Hello! Welcome to our product tour. In the next minute I'll show you around.",
  });
  const counter = h("span.counter", { "aria-live": "polite" });
  const pauseSeconds = h("input", { type: "number", min: "0.1", max: "10", step: "0.1", value: "1",
    "aria-label": "Pause length in seconds", "data-testid": "pause-seconds" });
  const pauseBtn = h("button.btn.btn-ghost.btn-sm", { type: "button", "data-testid": "insert-pause" }, "Insert pause");
  // What the presenter says: a script read by a voice, or the user's own recording.
  const sourceScript = h("input", { type: "radio", name: "source", value: "script", checked: true, "data-testid": "source-script" });
  const sourceAudio = h("input", { type: "radio", name: "source", value: "audio", "data-testid": "source-audio" });
  const source = h("div.segmented", { role: "radiogroup", "aria-label": "What the presenter says" },
    h("label.segment", {}, sourceScript, h("span", {}, "Script", h("small", {}, "read by a voice"))),
    h("label.segment", {}, sourceAudio, h("span", {}, "My recording", h("small", {}, "lip-synced"))));
  const audioFile = h("input", { type: "file", name: "audio", id: "audio-file", "data-testid": "audio-file",
    accept: "audio/*,.wav,.mp3,.ogg,.opus,.flac,.m4a" });
  // More scenes after the first (the script above, with the presenter below): each its own
  // script, avatar and expression; with any, the request sends `scenes` instead of `script`.
  const sceneList = h("ol.scene-list", { "data-testid": "scene-list" });
  const addSceneBtn = h("button.btn.btn-ghost.btn-sm", { type: "button", "data-testid": "add-scene" }, "Add scene");
  const avatarGrid = h("div.avatar-grid", { role: "radiogroup", "aria-label": "Avatar" }, h("p.muted", {}, "Loading avatars…"));
  // "Make your own avatar": a base, colours and hair style, previewed live by the server's
  // kernels (POST /api/v1/avatars/preview), saved with POST /api/v1/avatars.
  const edName = h("input", { type: "text", maxlength: "100", placeholder: "My presenter", "data-testid": "avatar-name" });
  const edBase = h("select", { "data-testid": "avatar-base" });
  const edSkin = h("input", { type: "color", value: "#e8b98f", "data-testid": "avatar-skin" });
  const edHairStyle = h("select", {}, ["bob", "short", "long", "swept"].map((v) => h("option", { value: v }, v)));
  const edHair = h("input", { type: "color", value: "#7a3b1d" });
  const edEyes = h("input", { type: "color", value: "#5b3a29" });
  const edOutfit = h("input", { type: "color", value: "#0f766e" });
  const edPreview = h("img.avatar-preview", { alt: "Preview of the avatar being made", width: "480", height: "270", "data-testid": "avatar-preview" });
  const edSave = h("button.btn.btn-sm", { type: "button", "data-testid": "avatar-save" }, "Save avatar");
  const edStatus = h("p.hint", { "aria-live": "polite" });
  const editor = h("details.avatar-editor", {},
    h("summary", {}, "Make your own avatar"),
    h("div.row", {},
      h("label.field", {}, h("span.label", {}, "Name"), edName),
      h("label.field", {}, h("span.label", {}, "Based on"), edBase)),
    h("div.row", {},
      h("label.field", {}, h("span.label", {}, "Skin"), edSkin),
      h("label.field", {}, h("span.label", {}, "Hair"), edHairStyle, edHair),
      h("label.field", {}, h("span.label", {}, "Eyes"), edEyes),
      h("label.field", {}, h("span.label", {}, "Outfit"), edOutfit)),
    edPreview, edStatus, edSave);
  const expression = h("select", { name: "expression", id: "expression" },
    EXPRESSIONS_DEFAULT.map((e) => h("option", { value: e }, e[0].toUpperCase() + e.slice(1))));
  const voice = h("select", { name: "voice", id: "voice" }, h("option", { value: "" }, "Loading voices…"));
  const speed = h("input", { type: "range", name: "speed", id: "speed", min: "0.5", max: "2", step: "0.05", value: "1" });
  const pitch = h("input", { type: "range", name: "pitch", id: "pitch", min: "0.5", max: "2", step: "0.05", value: "1" });
  const speedOut = h("output", { for: "speed" }, "1.00×");
  const pitchOut = h("output", { for: "pitch" }, "1.00×");

  const bgType = h("select", { name: "bg_type", id: "bg-type" },
    h("option", { value: "color" }, "Solid color"),
    h("option", { value: "gradient" }, "Gradient"),
    h("option", { value: "image" }, "Scene"));
  const bgColor = h("input", { type: "color", name: "bg_color", id: "bg-color", value: "#0f172a" });
  const bgFrom = h("input", { type: "color", name: "bg_from", id: "bg-from", value: "#4f46e5" });
  const bgTo = h("input", { type: "color", name: "bg_to", id: "bg-to", value: "#0f172a" });
  const bgAngle = h("input", { type: "number", name: "bg_angle", id: "bg-angle", min: "0", max: "360", step: "1", value: "180", inputmode: "numeric" });
  const bgImage = h("select", { name: "bg_image", id: "bg-image" }, h("option", { value: "" }, "Loading scenes…"));
  const bgSwatch = h("div.bg-swatch", { "aria-hidden": "true" });

  const size = h("select", { name: "size", id: "size" }, SIZES.map((s) => h("option", { value: s.value }, s.label)));
  const fps = h("select", { name: "fps", id: "fps" }, FPS.map((f) => h("option", { value: String(f), selected: f === 30 }, `${f} fps`)));
  const quality = h("div.segmented", { role: "radiogroup", "aria-labelledby": "quality-label", id: "quality" },
    QUALITIES.map((q) => h("label.segment", {},
      h("input", { type: "radio", name: "quality", value: q.value, checked: q.value === "standard" }),
      h("span", {}, q.label, h("small", {}, q.hint)))));
  const captions = h("input", { type: "checkbox", name: "captions", id: "captions" });
  const seed = h("input", { type: "number", name: "seed", id: "seed", min: "0", step: "1", placeholder: "random", inputmode: "numeric" });
  const callback = h("input", { type: "url", name: "callback_url", id: "callback-url", placeholder: "https://example.com/hooks/reelgen" });

  const summary = h("div.error-summary", { role: "alert", tabindex: "-1", hidden: true });
  const submit = h("button.btn.btn-primary.btn-lg", { type: "submit" }, "Generate video");
  const estimate = h("span.muted.estimate");

  const bgFields = {
    color: field("background.value", "Color", bgColor),
    gradient: h("div.row", {},
      field("background.from", "From", bgFrom),
      field("background.to", "To", bgTo),
      field("background.angle", "Angle (°)", bgAngle)),
    image: field("background.asset_id", "Scene", bgImage),
  };

  const form = h("form.create-form", { novalidate: true, "aria-describedby": "create-intro" },
    summary,
    h("fieldset.card", {},
      h("legend", {}, "Script"),
      field("title", "Title (optional)", title),
      source,
      field("audio", "Recording (WAV, MP3, OGG/Opus, FLAC or M4A; up to 25 MB and 10 minutes)", audioFile,
        "The presenter's lips follow it, and it is the video's sound."),
      h("div.field", { dataset: { field: "script" } },
        h("div.label-row", {}, h("label.label", { for: "script" }, "What should the presenter say?"), counter),
        script,
        h("div.script-tools", {},
          pauseSeconds,
          pauseBtn,
          h("span.hint", {}, "A pause is silent, with the mouth closed (up to 10 s).")),
        h("p.field-error", { id: "script-error", hidden: true })),
      h("div.field.scenes-field", { dataset: { field: "scenes" } },
        h("span.label", {}, "More scenes"),
        h("p.hint", {}, "Each scene follows the one before in the same video, with a clean cut."),
        sceneList,
        addSceneBtn,
        h("p.field-error", { hidden: true })),
    ),
    h("fieldset.card", {},
      h("legend", {}, "Presenter"),
      h("div.field", { dataset: { field: "avatar.id" } },
        h("span.label", { id: "avatar-label" }, "Avatar"),
        avatarGrid,
        h("p.field-error", { id: "avatar-error", hidden: true }),
        editor),
      h("div.row", {},
        field("avatar.expression", "Expression", expression),
        field("voice.id", "Voice", voice)),
      h("div.row.voice-tuning", {},
        h("div.field", { dataset: { field: "voice.speed" } },
          h("div.label-row", {}, h("label.label", { for: "speed" }, "Speaking speed"), speedOut), speed,
          h("p.field-error", { hidden: true })),
        h("div.field", { dataset: { field: "voice.pitch" } },
          h("div.label-row", {}, h("label.label", { for: "pitch" }, "Pitch"), pitchOut), pitch,
          h("p.field-error", { hidden: true }))),
    ),
    h("fieldset.card", {},
      h("legend", {}, "Background"),
      h("div.bg-layout", {},
        h("div.bg-controls", {},
          field("background.type", "Type", bgType),
          h("div.bg-detail", {}, bgFields.color, bgFields.gradient, bgFields.image)),
        bgSwatch),
    ),
    h("fieldset.card", {},
      h("legend", {}, "Output"),
      h("div.row", {},
        field("dimension", "Size", size),
        field("fps", "Frame rate", fps)),
      h("div.field", { dataset: { field: "quality" } },
        h("span.label", { id: "quality-label" }, "Quality"),
        quality,
        h("p.field-error", { hidden: true })),
      h("div.field", { dataset: { field: "captions" } },
        h("label.check", {}, captions, " Burn in captions (the spoken word is highlighted)"),
        h("p.field-error", { hidden: true })),
      h("details.advanced", {},
        h("summary", {}, "Advanced"),
        h("div.row", {},
          field("seed", "Seed", seed, "Same script + same seed → the same frames."),
          field("callback_url", "Webhook URL", callback, "Receives video.completed / video.failed."))),
    ),
    h("div.submit-row", {}, submit, estimate),
  );

  view.append(h("div.narrow", {},
    h("div.page-head", {},
      h("h1", {}, "Create a video"),
      h("p.muted", { id: "create-intro" }, "Write a script, pick a presenter and a look. You can watch the video being generated live.")),
    form,
  ));

  // ---- behaviour ---------------------------------------------------------------------------
  /** A scene card: its script, avatar and expression; removable. */
  function addScene(values = {}) {
    const n = sceneList.children.length + 2;
    const sScript = h("textarea", { rows: "3", maxlength: String(SCRIPT_MAX), "data-testid": "scene-script",
      "aria-label": `Scene ${n} script`, placeholder: "What the presenter says in this scene" });
    sScript.value = values.script || "";
    const sAvatar = h("select", { "aria-label": `Scene ${n} avatar`, "data-testid": "scene-avatar" },
      state.avatars.map((a) => h("option", { value: a.id }, a.name || a.id)));
    sAvatar.value = values.avatar || selectedAvatar() || "";
    const sExpr = h("select", { "aria-label": `Scene ${n} expression` },
      EXPRESSIONS_DEFAULT.map((e) => h("option", { value: e }, e[0].toUpperCase() + e.slice(1))));
    sExpr.value = values.expression || expression.value;
    const remove = h("button.btn.btn-ghost.btn-sm", { type: "button", "aria-label": `Remove scene ${n}` }, "Remove");
    const card = h("li.scene-card", {}, sScript, h("div.row", {}, sAvatar, sExpr, remove));
    card.scene = () => ({ script: sScript.value, avatar: { id: sAvatar.value }, expression: sExpr.value });
    remove.addEventListener("click", () => { card.remove(); updateCounter(); });
    sScript.addEventListener("input", updateCounter);
    sceneList.append(card);
    return card;
  }
  addSceneBtn.addEventListener("click", () => {
    const card = addScene();
    $("textarea", card).focus();
  });
  const extraScenes = () => Array.from(sceneList.children, (c) => c.scene());

  const editedLook = () => ({
    name: edName.value.trim() || "My presenter", base: edBase.value, skin_tone: edSkin.value,
    hair: { style: edHairStyle.value, color: edHair.value }, eye_color: edEyes.value, outfit_color: edOutfit.value,
  });
  let previewTimer = null;
  let previewUrl = null;
  async function refreshPreview() {
    try {
      const res = await fetch("/api/v1/avatars/preview", {
        method: "POST", headers: { "Content-Type": "application/json", ...authHeaders() }, body: JSON.stringify(editedLook()),
      });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      const url = URL.createObjectURL(await res.blob());
      if (previewUrl) URL.revokeObjectURL(previewUrl);
      previewUrl = url;
      edPreview.src = url;
      edStatus.textContent = "";
    } catch (e) {
      edStatus.textContent = `No preview (${e.message || e}).`;
    }
  }
  const schedulePreview = () => {
    clearTimeout(previewTimer);
    previewTimer = setTimeout(refreshPreview, 350);
  };
  for (const el of [edBase, edSkin, edHairStyle, edHair, edEyes, edOutfit]) el.addEventListener("input", schedulePreview);
  edBase.addEventListener("change", () => {
    // Start from the base's own colours.
    const b = state.avatars.find((a) => a.id === edBase.value);
    if (b) {
      for (const [el, v] of [[edSkin, b.skin], [edHair, b.hair], [edEyes, b.iris], [edOutfit, b.clothing]]) if (/^#[0-9a-f]{6}$/i.test(v || "")) el.value = v;
      if (b.hair_style) edHairStyle.value = b.hair_style;
    }
    schedulePreview();
  });
  editor.addEventListener("toggle", () => { if (editor.open) refreshPreview(); });
  edSave.addEventListener("click", async () => {
    edSave.disabled = true;
    try {
      const made = await api("/api/v1/avatars", { method: "POST", body: editedLook() });
      state.avatars.push(made);
      renderAvatars();
      const radio = $(`input[name=avatar][value="${CSS.escape(made.id)}"]`, avatarGrid);
      if (radio) {
        radio.checked = true;
        syncExpressions();
      }
      edStatus.textContent = `Saved "${made.name}": selected for this video.`;
      editor.open = false;
    } catch (e) {
      edStatus.textContent = e instanceof ApiError && e.errors.length ? e.errors.map((x) => `${x.field}: ${x.message}`).join("; ") : String(e.message || e);
    } finally {
      edSave.disabled = false;
    }
  });

  const usingRecording = () => sourceAudio.checked;
  function updateSource() {
    const rec = usingRecording();
    $(".field[data-field=audio]", form).hidden = !rec;
    $(".field[data-field=script]", form).hidden = rec;
    $(".field[data-field=scenes]", form).hidden = rec;
    // A recording has its own voice: the voice settings do not apply.
    $(".field[data-field='voice.id']", form).hidden = rec;
    $(".voice-tuning", form).hidden = rec;
  }
  sourceScript.addEventListener("change", updateSource);
  sourceAudio.addEventListener("change", updateSource);

  // "Insert pause": a <break time="…"/> at the cursor, with spaces around it.
  pauseBtn.addEventListener("click", () => {
    const secs = Math.min(10, Math.max(0.1, Number(pauseSeconds.value) || 1));
    const tag = `<break time="${secs}s"/>`;
    const { selectionStart: a, selectionEnd: b, value } = script;
    const before = value.slice(0, a).replace(/\s+$/, "");
    const after = value.slice(b).replace(/^\s+/, "");
    script.value = `${before}${before ? " " : ""}${tag}${after ? " " : ""}${after}`;
    const at = before.length + (before ? 1 : 0) + tag.length;
    script.setSelectionRange(at, at);
    script.focus();
    updateCounter();
  });

  function updateCounter() {
    const n = script.value.length;
    counter.textContent = `${n.toLocaleString()} / ${SCRIPT_MAX.toLocaleString()}`;
    counter.classList.toggle("warn", n > SCRIPT_MAX * 0.9);
    const text = script.value.trim();
    const scenesText = Array.from(sceneList.querySelectorAll("textarea"), (t) => t.value.trim()).filter(Boolean);
    const secs = [text, ...scenesText].filter(Boolean).reduce((sum, t) => sum + estimateSeconds(t, Number(speed.value)), 0);
    estimate.textContent = text ? `≈ ${Math.round(secs)} s of video` : "";
  }
  script.addEventListener("input", updateCounter);
  speed.addEventListener("input", () => {
    speedOut.textContent = `${Number(speed.value).toFixed(2)}×`;
    updateCounter();
  });
  pitch.addEventListener("input", () => {
    pitchOut.textContent = `${Number(pitch.value).toFixed(2)}×`;
  });
  voice.addEventListener("change", () => {
    const silent = voice.value === "";
    speed.disabled = silent;
    pitch.disabled = silent;
  });

  function updateBackground() {
    const t = bgType.value;
    for (const [k, el] of Object.entries(bgFields)) el.hidden = k !== t;
    let css = "";
    if (t === "color") css = bgColor.value;
    else if (t === "gradient") css = `linear-gradient(${Number(bgAngle.value) || 0}deg, ${bgFrom.value}, ${bgTo.value})`;
    else {
      const item = state.backgrounds.find((b) => b.id === bgImage.value);
      const from = item && /^#[0-9a-f]{6}$/i.test(item.from || "") ? item.from : "#64748b";
      const to = item && /^#[0-9a-f]{6}$/i.test(item.to || "") ? item.to : "#1e293b";
      css = `radial-gradient(circle at 50% 40%, ${from}, ${to})`;
    }
    bgSwatch.style.background = css;
    bgSwatch.style.aspectRatio = size.value.replace("x", " / ");
  }
  for (const el of [bgType, bgColor, bgFrom, bgTo, bgAngle, bgImage, size]) {
    el.addEventListener("input", updateBackground);
    el.addEventListener("change", updateBackground);
  }

  function renderAvatars() {
    if (!state.avatars.length) {
      fill(avatarGrid, h("p.muted", {}, "No avatars available."));
      return;
    }
    fill(avatarGrid, state.avatars.map((a, i) => {
      // Built-in avatars say skin/hair/clothing; custom ones skin_tone/hair.color/outfit_color.
      const hex = (c, d) => (/^#[0-9a-f]{6}$/i.test(c || "") ? c : d);
      const skin = hex(a.skin || a.skin_tone, "#d6a77a");
      const hair = hex(a.hair && typeof a.hair === "object" ? a.hair.color : a.hair, "#3b2a20");
      const cloth = hex(a.clothing || a.outfit_color, "#334155");
      const face = h("span.avatar-face", { "aria-hidden": "true", style: { "--skin": skin, "--hair": hair, "--cloth": cloth } },
        h("span.avatar-hair"), h("span.avatar-head"), h("span.avatar-body"));
      return h("label.avatar-card", { title: a.description || a.name },
        h("input", { type: "radio", name: "avatar", value: a.id, checked: i === 0 }),
        face,
        h("span.avatar-text", {},
          h("strong", {}, a.name || a.id),
          a.custom ? h("small", {}, `Yours · based on ${a.base || "a built-in avatar"}`)
            : a.description ? h("small", {}, String(a.description).split(":")[0]) : null));
    }));
    for (const r of $$("input[name=avatar]", avatarGrid)) r.addEventListener("change", syncExpressions);
    syncExpressions();
  }

  function selectedAvatar() {
    const r = $("input[name=avatar]:checked", avatarGrid);
    return r ? r.value : "";
  }

  function syncExpressions() {
    const a = state.avatars.find((x) => x.id === selectedAvatar());
    const list = a && Array.isArray(a.expressions) && a.expressions.length ? a.expressions.map(String) : EXPRESSIONS_DEFAULT;
    const prev = expression.value;
    fill(expression, list.map((e) => h("option", { value: e }, e[0].toUpperCase() + e.slice(1))));
    expression.value = list.includes(prev) ? prev : list.includes("friendly") ? "friendly" : list[0];
  }

  function renderVoices() {
    fill(voice,
      state.voices.map((v) => h("option", { value: v.id }, v.name || v.id)),
      h("option", { value: "" }, "No voice (silent video)"));
    if (!state.voices.length) voice.value = "";
  }

  function renderBackgrounds() {
    if (!state.backgrounds.length) {
      fill(bgImage, h("option", { value: "" }, "No scenes available"));
      bgType.querySelector("option[value=image]").disabled = true;
      return;
    }
    fill(bgImage, state.backgrounds.map((b) => h("option", { value: b.id }, b.name || b.id)));
  }

  async function loadCatalog() {
    const [avatars, voices, backgrounds] = await Promise.allSettled([
      api("/api/v1/avatars"), api("/api/v1/voices"), api("/api/v1/backgrounds"),
    ]);
    if (disposed) return;
    const list = (r) => (r.status === "fulfilled" && r.value && Array.isArray(r.value.data) ? r.value.data : []);
    state.avatars = list(avatars);
    state.voices = list(voices);
    state.backgrounds = list(backgrounds);
    renderAvatars();
    fill(edBase, state.avatars.filter((a) => !a.custom).map((a) => h("option", { value: a.id }, a.name || a.id)));
    renderVoices();
    renderBackgrounds();
    const failed = [avatars, voices].find((r) => r.status === "rejected");
    if (failed) showProblem(failed.reason, "Could not load avatars and voices");
    restore();
    updateBackground();
  }

  // ---- request ---------------------------------------------------------------------------
  function buildRequest() {
    const [width, height] = size.value.split("x").map(Number);
    const body = {
      script: script.value,
      avatar: { id: selectedAvatar() || undefined, expression: expression.value },
      voice: voice.value ? { id: voice.value, speed: Number(speed.value), pitch: Number(pitch.value) } : null,
      dimension: { width, height },
      fps: Number(fps.value),
      quality: ($("input[name=quality]:checked", form) || {}).value || "standard",
      captions: captions.checked,
    };
    if (!body.avatar.id) delete body.avatar.id;
    if (title.value.trim()) body.title = title.value.trim();
    const t = bgType.value;
    if (t === "color") body.background = { type: "color", value: bgColor.value };
    else if (t === "gradient") body.background = { type: "gradient", from: bgFrom.value, to: bgTo.value, angle: Number(bgAngle.value) };
    else if (bgImage.value) body.background = { type: "image", asset_id: bgImage.value };
    const more = extraScenes();
    if (more.length) {
      // The first scene is the script above with the chosen presenter.
      body.scenes = [{ script: body.script, avatar: { id: body.avatar.id }, expression: body.avatar.expression }, ...more];
      delete body.script;
    }
    if (seed.value.trim() !== "") body.seed = Number(seed.value);
    if (callback.value.trim()) body.callback_url = callback.value.trim();
    return body;
  }

  function remember() {
    remembered = {
      title: title.value, script: script.value, avatar: selectedAvatar(), expression: expression.value,
      voice: voice.value, speed: speed.value, pitch: pitch.value, bgType: bgType.value, bgColor: bgColor.value,
      bgFrom: bgFrom.value, bgTo: bgTo.value, bgAngle: bgAngle.value, bgImage: bgImage.value, size: size.value,
      fps: fps.value, quality: ($("input[name=quality]:checked", form) || {}).value, captions: captions.checked,
      seed: seed.value, callback: callback.value,
    };
  }

  function restore() {
    const r = remembered;
    if (!r) return;
    title.value = r.title || "";
    script.value = r.script || "";
    const av = r.avatar && $(`input[name=avatar][value="${CSS.escape(r.avatar)}"]`, avatarGrid);
    if (av) {
      av.checked = true;
      syncExpressions();
    }
    for (const [el, v] of [[expression, r.expression], [voice, r.voice], [speed, r.speed], [pitch, r.pitch], [bgType, r.bgType],
      [bgColor, r.bgColor], [bgFrom, r.bgFrom], [bgTo, r.bgTo], [bgAngle, r.bgAngle], [bgImage, r.bgImage], [size, r.size],
      [fps, r.fps], [seed, r.seed], [callback, r.callback]]) {
      if (v != null) el.value = v;
    }
    const q = r.quality && $(`input[name=quality][value="${CSS.escape(r.quality)}"]`, form);
    if (q) q.checked = true;
    captions.checked = Boolean(r.captions);
    speed.dispatchEvent(new Event("input"));
    pitch.dispatchEvent(new Event("input"));
    voice.dispatchEvent(new Event("change"));
    updateCounter();
  }

  // ---- errors ----------------------------------------------------------------------------
  function clearErrors() {
    summary.hidden = true;
    summary.replaceChildren();
    for (const f of $$(".field.invalid", form)) f.classList.remove("invalid");
    for (const e of $$(".field-error", form)) {
      e.hidden = true;
      e.textContent = "";
    }
    for (const c of $$("[aria-invalid]", form)) c.removeAttribute("aria-invalid");
  }

  /** The .field for a dotted path: exact match, else the longest matching prefix. */
  function fieldFor(path) {
    const fields = $$(".field[data-field]", form);
    let best = null;
    let bestLen = -1;
    for (const f of fields) {
      const name = f.dataset.field;
      if (path === name || path.startsWith(`${name}.`) || name.startsWith(`${path}.`)) {
        const len = path === name ? 1e6 : name.length;
        if (len > bestLen && f.offsetParent !== null) {
          best = f;
          bestLen = len;
        }
      }
    }
    if (!best && path.startsWith("background")) best = $(".field[data-field='background.type']", form);
    if (!best && path.startsWith("avatar")) best = $(".field[data-field='avatar.id']", form);
    if (!best && path.startsWith("voice")) best = $(".field[data-field='voice.id']", form);
    if (!best && path.startsWith("scenes")) best = $(".field[data-field=scenes]", form);
    return best;
  }

  function showFieldError(path, message) {
    const f = fieldFor(path);
    if (!f) return null;
    f.classList.add("invalid");
    const err = $(".field-error", f);
    if (err) {
      err.textContent = err.textContent ? `${err.textContent} ${message}` : message;
      err.hidden = false;
    }
    const control = $("input:not([type=radio]), select, textarea", f) || $("input", f);
    if (control) control.setAttribute("aria-invalid", "true");
    return control;
  }

  function showProblem(err, heading) {
    clearErrors();
    const e = err instanceof ApiError ? err : new ApiError(0, { title: heading || "Something went wrong", detail: String(err && err.message || err) });
    if (e.errors.some((fe) => /^(seed|callback_url)/.test(fe.field))) $("details.advanced", form).open = true;
    const items = e.errors.map((fe) => {
      const control = showFieldError(fe.field, fe.message);
      const text = [h("code", {}, fe.field || "request"), " ", fe.message];
      return h("li", {}, control
        ? h("a", { href: "#", onclick: (ev) => { ev.preventDefault(); control.focus(); } }, text)
        : text);
    });
    let detail = e.detail;
    if (e.status === 401) detail = detail || "Set your API key (top right) and try again.";
    if (e.status === 429) detail = `${detail || "Rate limited."}${e.retryAfter ? ` Try again in ${e.retryAfter} s.` : ""}`;
    fill(summary,
      h("h2", {}, heading && e.status === 0 ? heading : e.title),
      detail ? h("p", {}, detail) : null,
      items.length ? h("ul", {}, items) : null,
      e.status === 401 ? h("p", {}, h("button.linklike", { type: "button", "data-open-key": true }, "Set API key")) : null);
    summary.hidden = false;
    summary.focus();
  }

  let idempotencyKey = null;
  let lastBody = null;
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors();
    const recording = usingRecording() ? audioFile.files[0] : null;
    if (usingRecording() && !recording) {
      showProblem(new ApiError(422, { title: "Choose your recording", errors: [{ field: "audio", message: "Pick an audio file to lip-sync to." }] }));
      audioFile.focus();
      return;
    }
    if (!recording && !script.value.trim()) {
      showProblem(new ApiError(422, { title: "Your video needs a script", errors: [{ field: "script", message: "Write what the presenter should say (1–5000 characters)." }] }));
      script.focus();
      return;
    }
    const body = buildRequest();
    if (recording) {
      // The recording goes up first; the video then refers to it instead of script and voice.
      submit.disabled = true;
      submit.textContent = "Uploading…";
      try {
        const rec = await api("/api/v1/audio", { method: "POST", body: recording });
        delete body.script;
        delete body.voice;
        body.audio = { id: rec.id };
      } catch (e) {
        submit.disabled = false;
        submit.textContent = "Generate video";
        if (disposed) return;
        if (e instanceof ApiError) e.errors = e.errors.map((fe) => ({ ...fe, field: fe.field === "body" ? "audio" : fe.field }));
        showProblem(e, "Could not upload the recording");
        return;
      }
    }
    const json = JSON.stringify(body);
    // A retry of the very same request (e.g. after a network error) reuses its key, so a
    // double submit never queues the video twice.
    if (json !== lastBody) {
      idempotencyKey = uuid();
      lastBody = json;
    }
    remember();
    submit.disabled = true;
    submit.classList.add("busy");
    submit.textContent = "Queuing…";
    try {
      const video = await api("/api/v1/videos", { method: "POST", body: json, headers: { "Idempotency-Key": idempotencyKey } });
      if (disposed) return;
      lastBody = null;
      if (video && video.id) {
        // Keep the look for the next video, not the words.
        script.value = "";
        sceneList.replaceChildren();
        title.value = "";
        seed.value = "";
        watchHandoff.set(video.id, video);
        location.hash = `#/watch/${encodeURIComponent(video.id)}`;
      } else {
        showProblem(new ApiError(0, { title: "Unexpected answer", detail: "The server accepted the request but sent no video id." }));
      }
    } catch (e) {
      if (!disposed) showProblem(e, "Could not queue the video");
    } finally {
      submit.disabled = false;
      submit.classList.remove("busy");
      submit.textContent = "Generate video";
    }
  });

  updateCounter();
  updateSource();
  updateBackground();
  loadCatalog();
  return () => {
    disposed = true;
    remember();
  };
}

/** Video objects just created, so the watch page can render before its first fetch. */
export const watchHandoff = new Map();
