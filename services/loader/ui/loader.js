// The jobs page: lists jobs, shows a job's dates as a calendar coloured by state, and calls the JSON API
// for pause / resume / cancel / delete and date retries. The API key stays in this browser's localStorage.
"use strict";

const KEY_STORAGE = "headwater.loader.apiKey";
let selectedJob = null;

function apiKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

function setStatus(text) {
  document.getElementById("status").textContent = text;
}

async function api(method, path) {
  const response = await fetch(path, { method, headers: { Authorization: `Bearer ${apiKey()}` } });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const message = body.error ? body.error.message : response.statusText;
    throw new Error(`${response.status}: ${message}`);
  }
  return body;
}

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text) node.textContent = text;
  return node;
}

const ACTIONS = {
  active: ["pause", "cancel", "delete"],
  paused: ["resume", "cancel", "delete"],
  cancelled: ["delete"],
};

async function act(job, action) {
  try {
    if (action === "delete") {
      const drop = confirm(`Delete job ${job.name}. Also drop its loaded data from the warehouse?`);
      await api("DELETE", `/v1/jobs/${job.id}?drop_data=${drop}`);
      if (selectedJob === job.id) selectedJob = null;
    } else {
      await api("POST", `/v1/jobs/${job.id}/${action}`);
    }
    setStatus("");
  } catch (error) {
    setStatus(error.message);
  }
  await refresh();
}

function renderJobs(jobs) {
  const body = document.querySelector("#jobs tbody");
  body.replaceChildren();
  for (const job of jobs) {
    const row = el("tr", { "data-job-id": String(job.id) });
    if (job.id === selectedJob) row.classList.add("selected");
    row.append(
      el("td", {}, String(job.id)),
      el("td", {}, job.name),
      el("td", {}, `${job.schema_name} v${job.schema_version}`),
      el("td", {}, job.source),
      el("td", {}, `${job.warehouse}: ${job.table}`),
      el("td", { class: "job-state" }, job.state),
      el("td", {}, Object.entries(job.runs).map(([s, n]) => `${n} ${s}`).join(", ") || "-"),
    );
    const actions = el("td");
    for (const action of ACTIONS[job.state] || []) {
      const button = el("button", { type: "button", "data-action": action }, action);
      button.addEventListener("click", (event) => {
        event.stopPropagation();
        act(job, action);
      });
      actions.append(button);
    }
    row.append(actions);
    row.addEventListener("click", () => {
      selectedJob = job.id;
      refresh();
    });
    body.append(row);
  }
}

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function mondayOf(date) {
  const copy = new Date(date);
  copy.setUTCDate(copy.getUTCDate() - ((copy.getUTCDay() + 6) % 7));
  return copy;
}

function renderCalendar(job, runs) {
  document.getElementById("job-detail").hidden = false;
  document.getElementById("detail-title").textContent = `Job ${job.id}: ${job.name} (${job.state})`;
  const body = document.querySelector("#calendar tbody");
  body.replaceChildren();
  const byDate = new Map(runs.map((run) => [run.dt, run]));
  const start = new Date(`${job.start_date}T00:00:00Z`);
  const lastRun = runs.length ? new Date(`${runs[runs.length - 1].dt}T00:00:00Z`) : start;
  const end = job.end_date ? new Date(`${job.end_date}T00:00:00Z`) : lastRun;
  for (let week = mondayOf(start); week <= end; week.setUTCDate(week.getUTCDate() + 7)) {
    const row = el("tr");
    row.append(el("th", {}, isoDay(week)));
    for (let i = 0; i < 7; i++) {
      const day = new Date(week);
      day.setUTCDate(day.getUTCDate() + i);
      const key = isoDay(day);
      const run = byDate.get(key);
      const inRange = day >= start && day <= end;
      const state = run ? run.state : "none";
      const cell = el("td", { class: `state-${state}`, "data-dt": key, "data-state": state });
      if (inRange || run) {
        cell.append(el("div", {}, key.slice(5)));
        if (run) {
          const rows = run.rows_loaded == null ? "" : ` ${run.rows_loaded} rows`;
          cell.append(el("div", {}, `${run.state}${rows}`));
          cell.title = `${key}: ${run.state}, attempts ${run.attempts}${run.error ? `, ${run.error}` : ""}`;
          if (run.state === "failed") {
            const retry = el("button", { type: "button", "data-action": "retry" }, "retry");
            retry.addEventListener("click", async () => {
              try {
                await api("POST", `/v1/jobs/${job.id}/runs/${key}/retry`);
              } catch (error) {
                setStatus(error.message);
              }
              await refresh();
            });
            cell.append(retry);
          }
        }
      }
      row.append(cell);
    }
    body.append(row);
  }
}

function renderHistory(events) {
  const body = document.querySelector("#history tbody");
  body.replaceChildren();
  for (const entry of events.slice(-50).reverse()) {
    const row = el("tr", { "data-event": entry.event });
    row.append(
      el("td", {}, entry.at.replace("T", " ").slice(0, 19)),
      el("td", {}, entry.dt),
      el("td", {}, entry.event),
      el("td", {}, entry.detail),
    );
    body.append(row);
  }
}

async function refresh() {
  if (!apiKey()) {
    setStatus("enter an API key with the read scope (jobs:admin for actions)");
    return;
  }
  try {
    const jobs = await api("GET", "/v1/jobs");
    renderJobs(jobs);
    const job = jobs.find((candidate) => candidate.id === selectedJob);
    if (job) {
      const [runs, events] = await Promise.all([
        api("GET", `/v1/jobs/${job.id}/runs`),
        api("GET", `/v1/jobs/${job.id}/history`),
      ]);
      renderCalendar(job, runs);
      renderHistory(events);
    } else {
      document.getElementById("job-detail").hidden = true;
    }
  } catch (error) {
    setStatus(error.message);
  }
}

document.getElementById("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem(KEY_STORAGE, document.getElementById("api-key").value.trim());
  setStatus("");
  refresh();
});

refresh();
setInterval(refresh, 3000);
