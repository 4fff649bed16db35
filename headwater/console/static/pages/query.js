// Query & replay (replay): SQL over the archive with a results table, a replay job form (bounds, filter, compaction
// key, annotation, rate, dry run), the jobs with live progress, and each job's own page.
import { call, errorFrom, authHeaders } from "../api.js";
import { action, badge, el, errorBox, every, fieldErrors, guardForm, link, showError, table, time } from "../ui.js";

function progressBar(p) {
  return el("div", { class: "bar", title: `${p.percentage}%` }, el("div", { style: `width:${Math.min(100, p.percentage)}%` }));
}

async function runQuery(sql, status, error, results) {
  showError(error, null); status.textContent = "running…";
  const started = performance.now();
  const response = await fetch("/api/replay/v1/query", { method: "POST", headers: authHeaders({ "Content-Type": "application/json" }),
    body: JSON.stringify({ sql, max_rows: 1000 }) });
  if (!response.ok) { status.textContent = ""; showError(error, await errorFrom(response)); return; }
  const rows = (await response.text()).split("\n").filter(Boolean).map((line) => JSON.parse(line));
  const truncated = rows.length && rows[rows.length - 1]._truncated ? rows.pop() : null;
  status.textContent = `${rows.length} rows in ${Math.round(performance.now() - started)} ms${truncated ? ` (cut: ${truncated.reason})` : ""}`;
  const columns = rows.length ? Object.keys(rows[0]) : [];
  const shown = table({ id: "results", pageSize: 50, emptyMessage: "The query returned no rows.",
    columns: columns.map((c) => ({ key: c, label: c, value: (r) => (r[c] !== null && typeof r[c] === "object" ? JSON.stringify(r[c]) : r[c]) })) });
  shown.update(rows);
  results.replaceChildren(shown.node);
}

function replayForm(navigate) {
  const input = (name, label, attrs = {}) => el("label", attrs.wide ? { class: "wide" } : {}, label, el("input", { name, ...attrs, wide: undefined }));
  const error = errorBox();
  const form = el("form", { class: "grid panel", id: "replay-form", novalidate: true },
    input("start", "From (your zone)", { type: "datetime-local", step: 1 }),
    input("end", "To (your zone)", { type: "datetime-local", step: 1 }),
    el("label", {}, "View", el("select", { name: "view" }, ["raw_events", "live_events", "all_events"].map((v) => el("option", { value: v }, v)))),
    input("event_types", "Event types (comma separated)", { placeholder: "click, impression" }),
    input("where", "Filter (SQL boolean over the view's columns)", { placeholder: "ad_id = 'ad-1'", wide: true }),
    el("label", { class: "inline" }, el("input", { type: "checkbox", name: "compact" }), "compact: only the last record per key"),
    input("key", "Key (partition / compaction key)", { value: "original" }),
    input("annotate", "Annotation (JSON object, under _replay)", { placeholder: '{"reason": "backfill"}' }),
    input("rate_limit", "Rate (records per second, empty: as fast as possible)", { type: "number", min: 0, step: "any" }),
    el("label", { class: "inline" }, el("input", { type: "checkbox", name: "dry_run" }), "dry run: count, emit nothing"),
    el("div", { class: "wide" }, el("button", { type: "submit", class: "primary" }, "Create replay job")),
    error);
  guardForm(form, "replay:run");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const utc = (value) => (value ? new Date(value).toISOString() : undefined);
    const selection = { view: data.get("view") };
    if (data.get("start")) selection.start = utc(data.get("start"));
    if (data.get("end")) selection.end = utc(data.get("end"));
    if (data.get("where")) selection.where = data.get("where");
    if (data.get("event_types")) selection.event_types = data.get("event_types").split(",").map((s) => s.trim()).filter(Boolean);
    const body = { selection, compact: data.get("compact") === "on", dry_run: data.get("dry_run") === "on" };
    if (data.get("key")) body.key = data.get("key");
    if (data.get("rate_limit")) body.rate_limit = Number(data.get("rate_limit"));
    try {
      if (data.get("annotate")) {
        try { body.annotate = JSON.parse(data.get("annotate")); }
        catch { throw { status: 0, message: "not sent", details: [{ field: "annotate", reason: "not a JSON object" }] }; }
      }
      const job = await call("replay", "/v1/replays", { method: "POST", json: body });
      navigate(`/replays/${job.id}`);
    } catch (exc) {
      const rest = fieldErrors(form, exc);
      showError(error, { status: exc.status, message: exc.message, details: rest });
    }
  });
  return form;
}

function jobsTable(error, navigate, refresh) {
  return table({
    id: "jobs", emptyMessage: "No replay jobs yet. Create one with the form above.",
    rowAttrs: (j) => ({ "data-id": j.id }), onRow: (j) => navigate(`/replays/${j.id}`),
    columns: [
      { key: "id", label: "id", render: (j) => link(`/replays/${j.id}`, j.id) },
      { key: "state", label: "state", render: (j) => badge(j.state) },
      { key: "target", label: "target", value: (j) => j.target_stream + (j.dry_run ? " (dry run)" : "") },
      { key: "progress", label: "progress", value: (j) => j.progress.percentage, render: (j) => progressBar(j.progress) },
      { key: "read", label: "read / total", value: (j) => j.progress.read, render: (j) => `${j.progress.read} / ${j.progress.total ?? "?"}` },
      { key: "emitted", label: "emitted", num: true, value: (j) => j.progress.emitted },
      { key: "created_at", label: "created", render: (j) => time(j.created_at) },
      { key: "actions", label: "", sort: false, render: (j) => (["queued", "running"].includes(j.state)
        ? action("cancel", "replay:run", async () => { try { await call("replay", `/v1/replays/${j.id}/cancel`, { method: "POST" }); } catch (exc) { showError(error, exc); } refresh(); }, { "data-action": "cancel" })
        : "") },
    ],
  });
}

async function overview(root, { navigate }) {
  const sql = el("textarea", { id: "sql", class: "code", rows: 4 }, "SELECT type, count(*) AS n FROM all_events GROUP BY type ORDER BY type");
  const status = el("span", { id: "query-status", class: "muted" });
  const queryError = errorBox(); queryError.id = "query-error";
  const results = el("div", { id: "results-box" });
  const jobsError = errorBox();
  const refresh = async () => {
    try { jobs.update((await call("replay", "/v1/replays")).jobs); showError(jobsError, null); } catch (exc) { showError(jobsError, exc); }
  };
  const jobs = jobsTable(jobsError, navigate, refresh);
  root.append(
    el("h1", {}, "Query & replay"),
    el("div", { class: "panel" },
      el("p", { class: "muted" }, "Views: raw_events (archive), live_events (the live tail), all_events (both, de-duplicated), and one per curated table."),
      el("label", {}, "SQL", sql),
      el("div", { class: "toolbar" }, el("button", { type: "button", id: "run", class: "primary", onclick: () => runQuery(sql.value, status, queryError, results).catch((exc) => showError(queryError, exc)) }, "Run query"), status),
      queryError, results),
    el("h2", {}, "New replay job"), replayForm(navigate),
    el("h2", {}, "Replay jobs"), jobsError, jobs.node);
  return every(1000, refresh);
}

async function replayPage(root, { params }) {
  const error = errorBox();
  const body = el("div", { id: "replay" });
  root.append(el("p", {}, link("/query", "← query & replay")), el("h1", {}, "Replay job ", el("code", {}, params.id)), error, body);
  let stop = null;
  stop = every(1000, async () => {
    try {
      const job = await call("replay", `/v1/replays/${params.id}`);
      const p = job.progress;
      const field = (label, value) => el("tr", {}, el("th", {}, label), el("td", {}, value));
      body.replaceChildren(el("div", { class: "panel" },
        el("div", { class: "toolbar" }, el("span", { id: "replay-state" }, badge(job.state)), progressBar(p),
          el("span", { id: "replay-progress" }, `${p.read} / ${p.total ?? "?"} read · ${p.emitted} emitted · ${p.failed} failed · ${p.rate}/s${p.eta_s != null ? ` · ETA ${Math.round(p.eta_s)} s` : ""}`),
          ["queued", "running"].includes(job.state) ? action("cancel", "replay:run", () => call("replay", `/v1/replays/${job.id}/cancel`, { method: "POST" }).catch((exc) => showError(error, exc)), { "data-action": "cancel" }) : ""),
        el("table", {}, el("tbody", {},
          field("target", job.target_stream + (job.dry_run ? " (dry run)" : "")),
          field("created", time(job.created_at)), field("started", time(job.started_at)), field("finished", time(job.finished_at)),
          job.error ? field("error", el("span", { class: "error" }, job.error)) : null)),
        el("h3", {}, "Request"), el("pre", {}, JSON.stringify(job.request, null, 2)),
        job.summary ? [el("h3", {}, "Summary"), el("pre", { id: "replay-summary" }, JSON.stringify(job.summary, null, 2))] : null));
      showError(error, null);
      if (["succeeded", "failed", "cancelled"].includes(job.state) && stop) stop();
    } catch (exc) { showError(error, exc); }
  });
  return () => stop();
}

export async function mount(root, ctx) {
  return ctx.view === "replay" ? replayPage(root, ctx) : overview(root, ctx);
}
