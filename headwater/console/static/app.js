// The shell: sign-in once, the header (navigation, readiness, Swagger links, the key's scopes), and the router.
import { ApiError, authHeaders } from "./api.js";
import * as session from "./session.js";
import { el } from "./ui.js";

const PAGES = [
  { nav: "live", pattern: /^\/live$/, module: "./pages/live.js" },
  { nav: "schemas", pattern: /^\/schemas$/, module: "./pages/schemas.js" },
  { nav: "schemas", pattern: /^\/schemas\/(?<name>[^/]+)\/(?<version>\d+)$/, module: "./pages/schemas.js", view: "schema" },
  { nav: "schemas", pattern: /^\/transforms\/(?<id>[^/]+)$/, module: "./pages/schemas.js", view: "transform" },
  { nav: "chains", pattern: /^\/chains$/, module: "./pages/chains.js" },
  { nav: "jobs", pattern: /^\/jobs$/, module: "./pages/jobs.js" },
  { nav: "jobs", pattern: /^\/jobs\/new$/, module: "./pages/jobs.js", view: "new" },
  { nav: "jobs", pattern: /^\/jobs\/(?<id>\d+)$/, module: "./pages/jobs.js", view: "job" },
  { nav: "query", pattern: /^\/query$/, module: "./pages/query.js" },
  { nav: "query", pattern: /^\/replays\/(?<id>[^/]+)$/, module: "./pages/query.js", view: "replay" },
  { nav: "devices", pattern: /^\/devices$/, module: "./pages/devices.js" },
  { nav: "devices", pattern: /^\/devices\/(?<id>[^/]+)$/, module: "./pages/devices.js", view: "device" },
];

let leave = null;

export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", path); else history.pushState(null, "", path);
  render();
}

async function whoami() {
  const response = await fetch("/console/whoami", { headers: authHeaders() });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new ApiError(response.status, body.error?.code, body.error?.message || response.statusText);
  session.setIdentity(body.key_id, body.scopes);
}

function showWho() {
  const who = document.getElementById("who");
  if (!session.key()) { who.replaceChildren(); return; }
  const { keyId, scopes } = session.identity();
  who.replaceChildren(
    el("span", { title: `key id ${keyId}` }, "key ", el("code", {}, keyId), " · scopes: ", el("span", { id: "scopes" }, scopes.join(", "))),
    el("button", { type: "button", id: "signout", onclick: () => { session.signOut(); render(); } }, "Sign out"));
}

async function render() {
  if (leave) { try { leave(); } catch { /* page already gone */ } leave = null; }
  const signin = document.getElementById("signin");
  const page = document.getElementById("page");
  page.replaceChildren();
  if (location.pathname === "/" || location.pathname === "") { history.replaceState(null, "", "/live"); }
  if (!session.key()) { signin.hidden = false; showWho(); return; }
  if (!session.identity().keyId) {
    try { await whoami(); } catch (error) {
      session.signOut();
      signin.hidden = false;
      document.getElementById("signin-error").textContent = `Sign-in failed: ${error.message}`;
      showWho();
      return;
    }
  }
  signin.hidden = true;
  showWho();
  const path = location.pathname.replace(/\/+$/, "") || "/live";
  const route = PAGES.map((p) => ({ p, m: path.match(p.pattern) })).find((x) => x.m);
  for (const a of document.querySelectorAll("#nav a")) a.toggleAttribute("aria-current", false);
  document.getElementById("nav").classList.remove("open");
  if (!route) { page.append(el("div", { class: "empty" }, `No page at ${path}. `, el("a", { href: "/live", "data-link": "" }, "Go to live traffic"))); return; }
  document.querySelector(`#nav a[data-nav="${route.p.nav}"]`)?.setAttribute("aria-current", "page");
  const module = await import(route.p.module);
  const params = { ...(route.m.groups || {}) };
  const query = new URLSearchParams(location.search);
  leave = await module.mount(page, { view: route.p.view || "list", params, query, navigate }) || null;
}

async function readiness() {
  const box = document.getElementById("services");
  let services = [];
  try { services = (await (await fetch("/console/config")).json()).services; } catch { return; }
  const dots = Object.fromEntries(services.map((s) => [s.name, el("span", { class: "dot" })]));
  box.replaceChildren(...services.map((s) => el("a", { href: s.docs, target: "_blank", rel: "noopener",
    "data-service": s.name, title: `${s.name}: Swagger (API docs)` }, dots[s.name], s.name)));
  const probe = async () => {
    await Promise.all(services.map(async (s) => {
      let ready = false, detail = "";
      try {
        const response = await fetch(`${s.api}/readyz`);
        ready = response.ok;
        const body = await response.json();
        detail = Object.entries(body.checks || {}).filter(([, v]) => v !== "ok").map(([k, v]) => `${k}: ${v}`).join("; ");
      } catch { detail = "does not answer"; }
      const link = box.querySelector(`[data-service="${s.name}"]`);
      link.dataset.ready = String(ready);
      dots[s.name].className = `dot ${ready ? "ready" : "down"}`;
      link.title = `${s.name}: ${ready ? "ready" : "not ready " + detail} · click for Swagger`;
    }));
  };
  await probe();
  setInterval(probe, 10000);
}

document.addEventListener("click", (event) => {
  const a = event.target.closest("a[data-link]");
  if (!a || event.metaKey || event.ctrlKey || event.shiftKey || a.target === "_blank") return;
  event.preventDefault();
  navigate(a.getAttribute("href"));
});
window.addEventListener("popstate", render);
document.getElementById("menu").addEventListener("click", () => {
  const nav = document.getElementById("nav");
  nav.classList.toggle("open");
  document.getElementById("menu").setAttribute("aria-expanded", String(nav.classList.contains("open")));
});
document.getElementById("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  document.getElementById("signin-error").textContent = "";
  session.setKey(document.getElementById("signin-key").value.trim());
  session.setIdentity("", []);
  render();
});

session.takeKeyFromFragment();
readiness();
render();
