// Devices (poller): fleet state and shard map, the device list (paged by cursor), add / import (JSON lines) / edit.
// Credentials are write-only: the forms send them, nothing ever shows them (the API never returns them).
import { authHeaders, call, errorFrom } from "../api.js";
import { action, badge, el, errorBox, every, fieldErrors, guardForm, link, showError, table, time } from "../ui.js";

const STATES = ["active", "paused", "auth_failed", "unreachable"];
const PROTOCOLS = ["cloud", "eagle100-local", "eagle200-local"];
const COLORS = ["#3d7bd9", "#1f7a3a", "#8a4fbf", "#b36b00", "#0f7c8c", "#b3261e"];

function deviceFields(device) {
  const input = (name, label, attrs = {}) => el("label", {}, label, el("input", { name, ...attrs }));
  return [
    device ? null : input("cloud_id", "Cloud id", { required: true, placeholder: "002738" }),
    input("owner_email", "Owner email", { type: "email", value: device?.owner_email ?? "" }),
    el("label", {}, "Protocol", el("select", { name: "protocol" }, PROTOCOLS.map((p) => el("option", { value: p, selected: device?.protocol === p }, p)))),
    input("host", "Host (local protocols: address[:port])", { value: device?.host ?? "" }),
    input("eagle_user", "Eagle user (default: the owner)", { autocomplete: "off" }),
    input("eagle_password", device ? "Eagle password (write-only; empty keeps it)" : "Eagle password (write-only)", { type: "password", autocomplete: "new-password" }),
    el("label", {}, "State", el("select", { name: "state" }, ["active", "paused"].map((s) => el("option", { value: s, selected: device?.state === s }, s)))),
  ];
}

function bodyOf(form, { partial }) {
  const body = {};
  for (const [name, value] of new FormData(form)) {
    if (value === "" && (partial || name !== "cloud_id")) continue;
    body[name] = value;
  }
  return body;
}

function addForms(refresh) {
  const error = errorBox(); error.id = "device-error";
  const form = el("form", { class: "grid panel", id: "device-form", novalidate: true }, deviceFields(null),
    el("div", { class: "wide" }, el("button", { type: "submit", class: "primary" }, "Add device")), error);
  guardForm(form, "devices:admin");
  form.addEventListener("submit", async (event) => {
    event.preventDefault(); showError(error, null); fieldErrors(form, null);
    try {
      await call("poller", "/v1/devices", { method: "POST", json: bodyOf(form, { partial: false }) });
      form.reset(); refresh();
      error.replaceChildren(el("span", { class: "muted", id: "device-ok" }, "Device added."));
    } catch (exc) { showError(error, { status: exc.status, message: exc.message, details: fieldErrors(form, exc) }); }
  });

  const importError = errorBox(); importError.id = "import-error";
  const results = el("div", { id: "import-results" });
  const lines = el("textarea", { name: "lines", id: "import-lines", class: "code", rows: 5, placeholder: '{"cloud_id": "002738", "owner_email": "owner@example.com", "eagle_password": "..."}' });
  const file = el("input", { type: "file", accept: ".jl,.jsonl,.ndjson,.json", onchange: async () => { if (file.files[0]) lines.value = await file.files[0].text(); } });
  const importForm = el("form", { class: "grid panel", id: "import-form", novalidate: true },
    el("label", {}, "File (JSON lines)", file),
    el("label", { class: "inline" }, el("input", { type: "checkbox", name: "upsert" }), "update devices that exist"),
    el("label", { class: "wide" }, "JSON lines (one device per line)", lines),
    el("div", { class: "wide" }, el("button", { type: "submit" }, "Import")), importError, results);
  guardForm(importForm, "devices:admin");
  importForm.addEventListener("submit", async (event) => {
    event.preventDefault(); showError(importError, null); results.replaceChildren();
    const upsert = importForm.elements.upsert.checked;
    const response = await fetch(`/api/poller/v1/devices?upsert=${upsert}`, { method: "POST", headers: authHeaders({ "Content-Type": "application/x-ndjson" }), body: lines.value });
    if (!response.ok) { showError(importError, await errorFrom(response)); return; }
    const result = await response.json();
    const shown = table({ id: "import-table", columns: [
      { key: "index", label: "line", num: true, value: (r) => r.index + 1 }, { key: "cloud_id", label: "cloud id" },
      { key: "status", label: "result", render: (r) => badge(r.status) },
      { key: "errors", label: "errors", value: (r) => r.errors.map((e) => `${e.field ?? ""}: ${e.reason ?? e.msg ?? ""}`).join("; ") }] });
    shown.update(result.results);
    results.replaceChildren(el("p", { id: "import-summary" }, `${result.created} created, ${result.updated} updated, ${result.failed} failed.`), shown.node);
    refresh();
  });
  return [el("h2", {}, "Add a device"), form, el("h2", {}, "Import devices"), importForm];
}

function renderFleet(box, stats, shards) {
  const tiles = STATES.map((s) => el("div", { class: "card", "data-state": s },
    el("div", { class: "label" }, s), el("div", { class: "value" }, String(stats.devices_by_state[s] || 0))));
  const peak = Math.max(1, ...stats.minutes.map((m) => m.reads));
  const bars = stats.minutes.map((m) => el("div", { title: `${new Date(m.minute).toLocaleTimeString()}: ${m.reads} reads, ${m.late} late, ${m.failures} failures`, style: "display:flex;flex-direction:column-reverse" },
    el("div", { class: "b", style: `height:${100 * m.on_time / peak}px` }), el("div", { class: "b late", style: `height:${100 * m.late / peak}px` })));
  const colour = {};
  shards.replicas.forEach((r, i) => { colour[r.replica_id] = COLORS[i % COLORS.length]; });
  const squares = shards.shards.map((s) => el("div", { class: "shard", title: `shard ${s.shard}: ${s.owner || "unowned"}`, style: `background:${s.owner ? colour[s.owner] || "#555" : "#9aa3ad"}` },
    `#${s.shard} ${s.owner || "—"} · ${s.devices}`));
  box.replaceChildren(el("div", { class: "cards", id: "states" }, tiles),
    el("div", { class: "row" },
      el("div", { class: "panel" }, el("h3", {}, `Readings per minute ${stats.on_time_pct == null ? "(no readings yet)" : `(${stats.on_time_pct}% on time)`}`),
        el("div", { class: "bars", id: "minutes" }, bars), el("div", { class: "muted" }, "Blue: on time · orange: late · last 15 minutes")),
      el("div", { class: "panel", style: "flex:1;min-width:16rem" }, el("h3", {}, `Shards (${shards.replicas.length} replicas)`), el("div", { class: "shards", id: "shards" }, squares))));
}

async function overview(root, { navigate }) {
  const error = errorBox();
  const fleet = el("div", { id: "fleet" });
  let pages = [], cursor = null;
  const devices = table({
    id: "devices", pageSize: 25, emptyMessage: "No devices registered. Add one below, or import a JSON lines file.",
    rowAttrs: (d) => ({ "data-device": d.cloud_id }), onRow: (d) => navigate(`/devices/${encodeURIComponent(d.cloud_id)}`),
    columns: [
      { key: "cloud_id", label: "cloud id", render: (d) => link(`/devices/${encodeURIComponent(d.cloud_id)}`, d.cloud_id) },
      { key: "owner_email", label: "owner" }, { key: "protocol", label: "protocol" },
      { key: "state", label: "state", render: (d) => badge(d.state) }, { key: "shard", label: "shard", num: true },
      { key: "total_events_logged", label: "readings", num: true },
      { key: "last_timestamp", label: "last reading", render: (d) => time(d.last_timestamp) },
    ],
  });
  const more = el("button", { type: "button", id: "more", hidden: true, onclick: () => load(true) }, "Load more devices");
  async function load(next) {
    const page = await call("poller", `/v1/devices?limit=500${next && cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
    pages = next ? [...pages, ...page.devices] : page.devices;
    cursor = page.next_cursor; more.hidden = !cursor;
    devices.update(pages);
  }
  const refresh = async () => {
    try {
      const [stats, shards] = await Promise.all([call("poller", "/v1/stats?minutes=15"), call("poller", "/v1/shards")]);
      renderFleet(fleet, stats, shards); showError(error, null);
    } catch (exc) { showError(error, exc); }
  };
  root.append(el("h1", {}, "Devices"), error, fleet, el("h2", {}, "Registered devices"), devices.node, more,
    ...addForms(() => load(false).catch((exc) => showError(error, exc))));
  await load(false).catch((exc) => showError(error, exc));
  return every(5000, refresh);
}

async function devicePage(root, { params, navigate }) {
  const error = errorBox(); error.id = "device-error";
  const id = params.id;
  root.append(el("p", {}, link("/devices", "← devices")), el("h1", {}, "Device ", el("code", {}, decodeURIComponent(id))), error);
  let device;
  try { device = await call("poller", `/v1/devices/${id}`); } catch (exc) { showError(error, exc); return; }
  const info = el("table", { id: "device" }, el("tbody", {}, Object.entries(device).map(([k, v]) =>
    el("tr", {}, el("th", {}, k), el("td", { "data-field": k }, k === "state" ? badge(v) : (k.endsWith("_at") || k.endsWith("_timestamp")) ? time(v) : v == null ? "–" : String(v))))));
  const latest = el("pre", { id: "latest" }, "…");
  call("poller", `/v1/devices/${id}/latest`).then((r) => { latest.textContent = JSON.stringify(r, null, 2); }).catch((exc) => { latest.textContent = exc.message; });
  const form = el("form", { class: "grid panel", id: "edit-form", novalidate: true }, deviceFields(device),
    el("div", { class: "wide" }, el("button", { type: "submit", class: "primary" }, "Save"), " ",
      action("Delete device", "devices:admin", async () => {
        if (!confirm(`Delete device ${device.cloud_id}?`)) return;
        try { await call("poller", `/v1/devices/${id}`, { method: "DELETE" }); navigate("/devices"); } catch (exc) { showError(error, exc); }
      }, { "data-action": "delete" })));
  guardForm(form, "devices:admin");
  form.addEventListener("submit", async (event) => {
    event.preventDefault(); showError(error, null); fieldErrors(form, null);
    try {
      await call("poller", `/v1/devices/${id}`, { method: "PUT", json: bodyOf(form, { partial: true }) });
      root.replaceChildren(); await devicePage(root, { params, navigate });
      document.getElementById("device-error")?.append(el("span", { class: "muted", id: "device-saved" }, "Saved."));
    } catch (exc) { showError(error, { status: exc.status, message: exc.message, details: fieldErrors(form, exc) }); }
  });
  root.append(el("div", { class: "scroll" }, info), el("h2", {}, "Latest reading"), latest, el("h2", {}, "Edit"), form);
}

export async function mount(root, ctx) {
  return ctx.view === "device" ? devicePage(root, ctx) : overview(root, ctx);
}
