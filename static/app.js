// reelgen web app: a hash-routed single page (no build step). Each page module exports
// mount(container, params) → cleanup function; the router calls the cleanup (closing
// sockets, stopping timers) before mounting the next page.

import { getApiKey, setApiKey } from "./js/api.js";
import { h, $, $$ } from "./js/dom.js";
import * as create from "./js/pages/create.js";
import * as watch from "./js/pages/watch.js";
import * as library from "./js/pages/library.js";
import * as dashboard from "./js/pages/dashboard.js";
import * as live from "./js/pages/live.js";

const ROUTES = [
  { re: /^\/?$/, page: create, nav: "create", title: "Create" },
  { re: /^\/create\/?$/, page: create, nav: "create", title: "Create" },
  { re: /^\/watch\/([^/?#]+)\/?$/, page: watch, nav: "library", title: "Watch" },
  { re: /^\/library\/?$/, page: library, nav: "library", title: "Library" },
  { re: /^\/dashboard\/?$/, page: dashboard, nav: "dashboard", title: "Dashboard" },
  { re: /^\/live\/?$/, page: live, nav: "live", title: "Live" },
];

let cleanup = null;
let firstRoute = true;

function notFound(view) {
  view.append(
    h("section.card.empty", {},
      h("h1", {}, "Page not found"),
      h("p.muted", {}, "There is nothing at this address."),
      h("a.btn.btn-primary", { href: "#/" }, "Create a video")),
  );
}

function route() {
  if (cleanup) {
    try {
      cleanup();
    } catch (e) {
      console.error(e);
    }
    cleanup = null;
  }
  const path = decodeURIComponent((location.hash || "#/").replace(/^#/, "").split("?")[0]);
  const view = $("#view");
  view.replaceChildren();
  let match = null;
  let r = null;
  for (const candidate of ROUTES) {
    match = candidate.re.exec(path);
    if (match) {
      r = candidate;
      break;
    }
  }
  for (const a of $$(".mainnav a[data-route]")) {
    if (r && a.dataset.route === r.nav) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = r ? `${r.title} · reelgen` : "Not found · reelgen";
  if (!r) notFound(view);
  else {
    try {
      cleanup = r.page.mount(view, match.slice(1)) || null;
    } catch (e) {
      console.error(e);
      view.append(h("section.card", {}, h("p.error-text", {}, `This page failed to load: ${e.message || e}`)));
    }
  }
  if (!firstRoute) {
    window.scrollTo(0, 0);
    view.focus({ preventScroll: true });
  }
  firstRoute = false;
}

// ---- API key setting ----------------------------------------------------------------------

function refreshKeyLabel() {
  const has = Boolean(getApiKey());
  $("#key-label").textContent = has ? "API key ✓" : "API key";
  $("#key-button").classList.toggle("has-key", has);
  if (has) $("#auth-banner").hidden = true;
}

function openKeyDialog() {
  const dlg = $("#key-dialog");
  $("#key-input").value = getApiKey();
  $("#key-input").type = "password";
  $("#key-show").checked = false;
  if (typeof dlg.showModal === "function") dlg.showModal();
  else dlg.setAttribute("open", "");
  $("#key-input").focus();
}

function setupKeyDialog() {
  const dlg = $("#key-dialog");
  $("#key-button").addEventListener("click", openKeyDialog);
  document.addEventListener("click", (e) => {
    if (e.target.closest("[data-open-key]")) openKeyDialog();
  });
  $("#key-show").addEventListener("change", (e) => {
    $("#key-input").type = e.target.checked ? "text" : "password";
  });
  dlg.addEventListener("close", () => {
    if (dlg.returnValue === "save") {
      setApiKey($("#key-input").value.trim());
      route(); // reload the page's data with the new key
    } else if (dlg.returnValue === "clear") {
      setApiKey("");
      route();
    }
    refreshKeyLabel();
  });
  window.addEventListener("reelgen:unauthorized", () => {
    $("#auth-banner").hidden = false;
  });
  refreshKeyLabel();
}

function start() {
  setupKeyDialog();
  window.addEventListener("hashchange", route);
  route();
}

if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
