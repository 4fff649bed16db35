// Chains (transform): recent runs and a run's DAG, live over server-sent events; a task's params, log and traceback.
// Deep links: /chains?run=<run id> and /chains?chain=<target>.
import { call, stream } from "../api.js";
import { action, badge, el, errorBox, showError, table, time } from "../ui.js";

export async function mount(root, { query }) {
  let selectedRun = query.get("run"), selectedTarget = query.get("chain"), selectedTask = null, lastStatus = null;
  const controllers = new Set();
  const error = errorBox(); error.id = "error";
  const live = el("span", { id: "live", class: "muted" }, "○ not connected");
  const title = el("h2", { id: "title" }, "Pick a run");
  const state = el("span", { id: "state" });
  const output = el("a", { id: "output", target: "_blank" });
  const NS = "http://www.w3.org/2000/svg";
  const dag = document.createElementNS(NS, "svg");
  dag.id = "dag"; dag.setAttribute("width", "100%"); dag.setAttribute("height", "160");
  dag.innerHTML = '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#8796a5"/></marker></defs>';
  const panel = el("div", { id: "task-panel", hidden: true });
  const taskSelect = el("select", { id: "task" });
  const params = el("textarea", { id: "params", class: "code", rows: 3 }, "{}");
  const runs = table({
    id: "runs", pageSize: 15, emptyMessage: "No chain runs yet. Run a task with the form above.",
    rowAttrs: (r) => ({ "data-run": r.run_id, class: r.run_id === selectedRun ? "run selected" : "run" }),
    onRow: (r) => selectRun(r.run_id, null),
    columns: [
      { key: "state", label: "state", render: (r) => badge(r.state) },
      { key: "task", label: "chain / task", value: (r) => `${r.type}/${r.chain} ${r.task}` },
      { key: "params", label: "params", value: (r) => JSON.stringify(r.params).slice(0, 60) },
      { key: "created_at", label: "submitted", render: (r) => time(r.created_at) },
    ],
  });

  function follow(path, onEvent) {
    const controller = new AbortController();
    controllers.add(controller);
    (async () => {
      while (!controller.signal.aborted) {
        try { await stream("transform", path, controller.signal, (name, data) => { live.textContent = "● live"; onEvent(name, data); }); }
        catch (exc) { if (controller.signal.aborted) return; live.textContent = "○ reconnecting"; if (exc.status) showError(error, exc); }
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    })();
    return controller;
  }

  let runStream = null;
  function selectRun(runId, target) {
    selectedRun = runId; selectedTarget = target; selectedTask = null; panel.hidden = true;
    const search = runId ? `run=${encodeURIComponent(runId)}` : `chain=${encodeURIComponent(target)}`;
    history.replaceState(null, "", `/chains?${search}`);
    for (const row of root.querySelectorAll("#runs tr[data-run]")) row.classList.toggle("selected", row.dataset.run === runId);
    if (runStream) { runStream.abort(); controllers.delete(runStream); }
    runStream = follow(`/v1/chains/events?${search}`, (name, status) => { if (name === "status") showStatus(status); });
  }

  function showStatus(status) {
    lastStatus = status;
    title.textContent = status.target;
    state.replaceChildren(badge(status.job_status), status.error ? ` ${status.error}` : "");
    output.textContent = ""; output.removeAttribute("href");
    if (status.job_status === "DONE") {
      call("transform", `/v1/chains/status?chain=${encodeURIComponent(status.target)}`).then((fresh) => {
        if (fresh.resource_url) { output.textContent = "output"; output.href = fresh.resource_url; }
      }).catch(() => {});
    }
    draw(status.dag);
    if (selectedTask) showTask(selectedTask);
  }

  function draw(graph) {
    [...dag.querySelectorAll("g, line")].forEach((node) => node.remove());
    const depth = {};
    const visit = (id, d) => { depth[id] = Math.max(depth[id] ?? 0, d); graph.edges.filter((e) => e.to === id).forEach((e) => visit(e.from, d + 1)); };
    visit(graph.root, 0);
    const maxDepth = Math.max(...Object.values(depth));
    const columns = {}, position = {};
    for (const node of graph.nodes) {
      const column = maxDepth - (depth[node.target] ?? 0);
      columns[column] = (columns[column] ?? 0) + 1;
      position[node.target] = { x: 10 + column * 220, y: 10 + (columns[column] - 1) * 64 };
    }
    for (const edge of graph.edges) {
      const a = position[edge.from], b = position[edge.to], line = document.createElementNS(NS, "line");
      Object.entries({ x1: a.x + 190, y1: a.y + 25, x2: b.x, y2: b.y + 25 }).forEach(([k, v]) => line.setAttribute(k, v));
      dag.appendChild(line);
    }
    for (const node of graph.nodes) {
      const g = document.createElementNS(NS, "g");
      g.setAttribute("class", `node ${node.state}${node.target === selectedTask ? " selected" : ""}`);
      g.dataset.target = node.target; g.dataset.task = node.task;
      const { x, y } = position[node.target];
      g.innerHTML = `<rect x="${x}" y="${y}" width="190" height="50"></rect><text x="${x + 8}" y="${y + 18}"></text><text x="${x + 8}" y="${y + 38}"></text>`;
      const [name, detail] = g.querySelectorAll("text");
      name.textContent = node.task;
      const duration = node.duration_s == null ? "" : ` ${node.duration_s.toFixed(1)}s`;
      detail.textContent = `${node.state}${duration} · ${node.attempts} attempt${node.attempts === 1 ? "" : "s"}`;
      const tip = document.createElementNS(NS, "title"); tip.textContent = `${node.target}\n${node.error ?? ""}`;
      g.appendChild(tip);
      g.onclick = () => { selectedTask = node.target; showTask(node.target); draw(lastStatus.dag); };
      dag.appendChild(g);
    }
    const width = 20 + (maxDepth + 1) * 220;
    dag.setAttribute("viewBox", `0 0 ${width} ${Math.max(80, 20 + Math.max(...Object.values(columns)) * 64)}`);
    dag.setAttribute("height", Math.max(80, 20 + Math.max(...Object.values(columns)) * 64));
  }

  async function showTask(target) {
    try {
      const task = await call("transform", `/v1/chains/task?chain=${encodeURIComponent(target)}`);
      panel.hidden = false;
      panel.replaceChildren(
        el("h3", { id: "task-title" }, `${task.task} — ${task.state} (${task.attempts} attempts)`),
        task.state === "FAILED" ? action("Retry", "jobs:admin", async () => {
          try { await call("transform", `/v1/chains/retry?chain=${encodeURIComponent(target)}`, { method: "POST" }); } catch (exc) { showError(error, exc); }
        }, { id: "retry" }) : "",
        el("p", { id: "task-error", class: "error" }, task.error ?? ""),
        el("h4", {}, "Params"), el("pre", { id: "task-params" }, JSON.stringify(task.params, null, 2)),
        el("h4", {}, "Traceback"), el("pre", { id: "task-traceback" }, task.traceback ?? "(none)"),
        el("h4", {}, "Log"), el("pre", { id: "task-log" }, task.log || "(no log yet)"));
    } catch (exc) { showError(error, exc); }
  }

  root.append(el("h1", {}, "Chains ", live), error,
    el("details", { class: "panel" }, el("summary", {}, "Run a task"),
      el("label", {}, "Task", taskSelect), el("label", {}, "Params (JSON)", params),
      el("div", { class: "toolbar" }, action("Run", "jobs:admin", async () => {
        try { const submitted = await call("transform", taskSelect.value, { method: "POST", json: JSON.parse(params.value || "{}") }); selectRun(submitted.run_id, null); }
        catch (exc) { showError(error, exc); }
      }, { id: "run" }))),
    el("div", { class: "split" },
      el("section", {}, el("h2", {}, "Recent runs"), runs.node),
      el("section", { class: "panel", id: "detail" }, title, el("p", {}, state, " ", output), el("div", { class: "scroll" }, dag), panel)));

  try {
    const index = await call("transform", "/v1/chains");
    const options = [];
    for (const type of index.types) for (const chain of type.chains) for (const task of chain.tasks) {
      options.push(el("option", { value: task.url.replace(/^https?:\/\/[^/]+/, "") }, `${type.type} / ${chain.name} / ${task.name}`));
    }
    taskSelect.replaceChildren(...options);
  } catch (exc) { showError(error, exc); }
  follow("/v1/chains/events", (name, body) => { if (name === "runs") runs.update(body.runs); });
  if (selectedRun || selectedTarget) selectRun(selectedRun, selectedTarget);
  return () => { for (const c of controllers) c.abort(); };
}
