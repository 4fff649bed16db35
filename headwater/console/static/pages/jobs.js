// Load jobs (loader): the list, a "New job" form with the API's errors beside the fields, and a job's page with its
// dates as a calendar coloured by state, its history, and pause / resume / cancel / delete / retry.
import { call } from "../api.js";
import { action, badge, el, errorBox, every, fieldErrors, guardForm, link, showError, table, time } from "../ui.js";

const ACTIONS = { active: ["pause", "cancel", "delete"], paused: ["resume", "cancel", "delete"], cancelled: ["delete"] };

async function act(job, verb, error, after) {
  try {
    if (verb === "delete") {
      const drop = confirm(`Delete job ${job.name}. Also drop its loaded data from the warehouse?`);
      await call("loader", `/v1/jobs/${job.id}?drop_data=${drop}`, { method: "DELETE" });
    } else {
      await call("loader", `/v1/jobs/${job.id}/${verb}`, { method: "POST" });
    }
    showError(error, null);
  } catch (exc) { showError(error, exc); }
  await after(verb);
}

function actions(job, error, after) {
  return el("span", { class: "actions" }, (ACTIONS[job.state] || []).map((verb) =>
    action(verb, "jobs:admin", () => act(job, verb, error, after), { "data-action": verb })));
}

const runsText = (job) => Object.entries(job.runs || {}).map(([s, n]) => `${n} ${s}`).join(", ") || "–";

async function list(root, { navigate }) {
  const error = errorBox();
  const jobs = table({
    id: "jobs", emptyMessage: "No load jobs yet. Create one with “New job”: a schema, a source and a start date.",
    rowAttrs: (job) => ({ "data-job-id": String(job.id) }),
    onRow: (job) => navigate(`/jobs/${job.id}`),
    columns: [
      { key: "id", label: "Id", num: true, render: (j) => link(`/jobs/${j.id}`, String(j.id)) },
      { key: "name", label: "Name" },
      { key: "schema", label: "Schema", value: (j) => `${j.schema_name} v${j.schema_version}` },
      { key: "warehouse", label: "Warehouse", value: (j) => `${j.warehouse}: ${j.table}` },
      { key: "state", label: "State", render: (j) => el("span", { class: "job-state" }, badge(j.state)) },
      { key: "runs", label: "Dates", value: runsText },
      { key: "created_at", label: "Created", render: (j) => time(j.created_at) },
      { key: "actions", label: "Actions", sort: false, render: (j) => actions(j, error, refresh) },
    ],
  });
  async function refresh() {
    try { jobs.update(await call("loader", "/v1/jobs")); } catch (exc) { showError(error, exc); }
  }
  root.append(el("h1", {}, "Load jobs"),
    el("div", { class: "toolbar" }, link("/jobs/new", "New job", { class: "button", id: "new-job" })), error, jobs.node);
  return every(3000, refresh);
}

function newJob(root, { navigate }) {
  const input = (name, label, attrs = {}) => el("label", {}, label, el("input", { name, ...attrs }));
  const select = (name, label, options) => el("label", {}, label, el("select", { name }, options.map((o) => el("option", { value: o }, o))));
  const error = errorBox();
  const form = el("form", { class: "grid panel", id: "job-form", novalidate: true },
    input("name", "Name", { required: true, placeholder: "clicks daily" }),
    el("label", {}, "Schema", el("select", { name: "schema_name", id: "schema-select" })),
    input("schema_version", "Version", { type: "number", min: 1, value: 1 }),
    input("source", "Source (S3 template)", { placeholder: "s3://hw-raw/beacons/dt=YYYY-MM-DD/", class: "wide" }),
    input("start_date", "Start date", { type: "date" }),
    input("end_date", "End date (empty: keeps going)", { type: "date" }),
    select("warehouse", "Warehouse", ["duckdb", "postgres", "redshift"]),
    input("table", "Table (default: the schema name)"),
    input("emails", "Emails (comma separated)", { type: "text", placeholder: "ops@example.com" }),
    el("div", { class: "wide" }, el("button", { type: "submit", class: "primary" }, "Create job"), " ", link("/jobs", "Cancel")),
    error);
  call("transform", "/v1/schemas").then((body) => {
    const names = [...new Set(body.items.map((s) => s.name))].sort();
    document.getElementById("schema-select")?.replaceChildren(...names.map((n) => el("option", { value: n }, n)));
  }).catch((exc) => showError(error, exc));
  guardForm(form, "jobs:admin");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = Object.fromEntries(new FormData(form));
    const body = { name: data.name, schema_name: data.schema_name, schema_version: Number(data.schema_version),
      source: data.source, start_date: data.start_date || null, warehouse: data.warehouse };
    if (data.end_date) body.end_date = data.end_date;
    if (data.table) body.table = data.table;
    if (data.emails) body.emails = data.emails.split(",").map((e) => e.trim()).filter(Boolean);
    try {
      const job = await call("loader", "/v1/jobs", { method: "POST", json: body });
      navigate(`/jobs/${job.id}`);
    } catch (exc) {
      const rest = fieldErrors(form, exc);
      showError(error, { ...exc, message: exc.message, status: exc.status, details: rest });
    }
  });
  root.append(el("h1", {}, "New load job"), form);
}

const isoDay = (date) => date.toISOString().slice(0, 10);
function mondayOf(date) { const c = new Date(date); c.setUTCDate(c.getUTCDate() - ((c.getUTCDay() + 6) % 7)); return c; }

function calendar(job, runs, error, refresh) {
  const byDate = new Map(runs.map((run) => [run.dt, run]));
  const start = new Date(`${job.start_date}T00:00:00Z`);
  const lastRun = runs.length ? new Date(`${runs[runs.length - 1].dt}T00:00:00Z`) : start;
  const end = job.end_date ? new Date(`${job.end_date}T00:00:00Z`) : lastRun;
  const rows = [];
  for (let week = mondayOf(start); week <= end && rows.length < 60; week.setUTCDate(week.getUTCDate() + 7)) {
    const cells = [el("th", {}, isoDay(week))];
    for (let i = 0; i < 7; i++) {
      const day = new Date(week); day.setUTCDate(day.getUTCDate() + i);
      const key = isoDay(day), run = byDate.get(key), state = run ? run.state : "none";
      const cell = el("td", { class: `state-${state}`, "data-dt": key, "data-state": state });
      if ((day >= start && day <= end) || run) {
        cell.append(el("div", {}, key.slice(5)));
        if (run) {
          cell.append(el("div", {}, `${run.state}${run.rows_loaded == null ? "" : ` ${run.rows_loaded} rows`}`));
          cell.title = `${key}: ${run.state}, attempts ${run.attempts}${run.error ? `, ${run.error}` : ""}`;
          if (run.state === "failed") {
            cell.append(action("retry", "jobs:admin", async () => {
              try { await call("loader", `/v1/jobs/${job.id}/runs/${key}/retry`, { method: "POST" }); } catch (exc) { showError(error, exc); }
              await refresh();
            }, { "data-action": "retry" }));
          }
        }
      }
      cells.push(cell);
    }
    rows.push(el("tr", {}, cells));
  }
  const days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
  return el("div", { class: "scroll" }, el("table", { id: "calendar" },
    el("thead", {}, el("tr", {}, el("th", {}, "Week of (UTC)"), days.map((d) => el("th", {}, d)))), el("tbody", {}, rows)));
}

async function jobPage(root, { params, navigate }) {
  const error = errorBox();
  const header = el("div");
  const cal = el("div");
  const history = table({
    id: "history", pageSize: 20, emptyMessage: "No events yet: the scanner looks for the job's dates every few seconds.",
    rowAttrs: (e) => ({ "data-event": e.event }),
    columns: [
      { key: "at", label: "At", render: (e) => time(e.at) },
      { key: "dt", label: "Date" }, { key: "event", label: "Event" }, { key: "detail", label: "Detail" },
    ],
  });
  root.append(el("p", {}, link("/jobs", "← all load jobs")), header, error,
    el("ul", { class: "legend" }, ["waiting", "transforming", "loading", "loaded", "failed", "cancelled", "expired"].map((s) => el("li", { class: `state-${s}` }, s))),
    cal, el("h2", {}, "History"), history.node);
  async function refresh(verb) {
    if (verb === "delete") { navigate("/jobs"); return; }
    try {
      const [job, runs, events] = await Promise.all([
        call("loader", `/v1/jobs/${params.id}`), call("loader", `/v1/jobs/${params.id}/runs`), call("loader", `/v1/jobs/${params.id}/history`)]);
      header.replaceChildren(
        el("h1", { id: "detail-title" }, `Job ${job.id}: ${job.name} `, el("span", { class: "job-state" }, badge(job.state))),
        el("p", { class: "muted" }, `${job.schema_name} v${job.schema_version} · ${job.source} → ${job.warehouse}: ${job.table} · from ${job.start_date} to ${job.end_date || "open-ended"}`),
        el("div", { class: "toolbar", id: "job-actions" }, actions(job, error, refresh)));
      cal.replaceChildren(calendar(job, runs, error, refresh));
      history.update([...events].reverse());
    } catch (exc) { showError(error, exc); }
  }
  return every(3000, refresh);
}

export async function mount(root, ctx) {
  if (ctx.view === "new") return newJob(root, ctx);
  if (ctx.view === "job") return jobPage(root, ctx);
  return list(root, ctx);
}
