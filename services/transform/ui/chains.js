// The chains page: recent runs and a run's DAG, both kept live by server-sent events (read with fetch, since
// EventSource cannot send the Authorization header); click a task for its params, log and traceback.
const $ = (id) => document.getElementById(id);
const query = new URLSearchParams(location.search);
let selectedRun = query.get("run");
let selectedTarget = query.get("chain");
let selectedTask = null;
let runStream = null;
let lastStatus = null;

$("key").value = localStorage.getItem("headwater.key") || "";
$("key").onchange = () => { localStorage.setItem("headwater.key", $("key").value); start(); };

const headers = () => ({ Authorization: `Bearer ${$("key").value}`, "Content-Type": "application/json" });

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers() });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? `${body.error.message} ${JSON.stringify(body.error.details ?? "")}` : response.statusText);
  return body;
}

// Read a text/event-stream and call onEvent(name, data) per event, until the controller aborts.
async function stream(path, controller, onEvent) {
  const response = await fetch(path, { headers: headers(), signal: controller.signal });
  if (!response.ok) throw new Error(`${path}: ${response.status}`);
  $("live").textContent = "● live"; $("live").className = "on";
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const chunk = buffer.slice(0, end); buffer = buffer.slice(end + 2);
      let name = "message"; const data = [];
      for (const line of chunk.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      if (data.length) onEvent(name, JSON.parse(data.join("\n")));
    }
  }
}

function follow(path, onEvent) {
  const controller = new AbortController();
  const loop = async () => {
    while (!controller.signal.aborted) {
      try { await stream(path, controller, onEvent); }
      catch (exc) { if (controller.signal.aborted) return; $("live").textContent = "○ reconnecting"; $("live").className = ""; }
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  };
  loop();
  return controller;
}

function showRuns(runs) {
  const body = $("runs"); body.replaceChildren();
  for (const run of runs) {
    const row = document.createElement("tr");
    row.className = "run" + (run.run_id === selectedRun ? " selected" : "");
    row.dataset.run = run.run_id;
    row.innerHTML = `<td><span class="badge"></span></td><td></td><td></td><td></td>`;
    const cells = row.querySelectorAll("td");
    cells[0].firstChild.textContent = run.state; cells[0].firstChild.classList.add(run.state);
    cells[1].textContent = `${run.type}/${run.chain} ${run.task}`;
    cells[2].textContent = JSON.stringify(run.params).slice(0, 60);
    cells[3].textContent = new Date(run.created_at).toLocaleTimeString();
    row.onclick = () => selectRun(run.run_id, null);
    body.appendChild(row);
  }
}

function selectRun(runId, target) {
  selectedRun = runId; selectedTarget = target; selectedTask = null; $("task-panel").hidden = true;
  document.querySelectorAll("tr.run").forEach((row) => row.classList.toggle("selected", row.dataset.run === runId));
  if (runStream) runStream.abort();
  const params = runId ? `run=${encodeURIComponent(runId)}` : `chain=${encodeURIComponent(target)}`;
  runStream = follow(`/v1/chains/events?${params}`, (name, status) => { if (name === "status") showStatus(status); });
}

function showStatus(status) {
  lastStatus = status;
  $("title").textContent = `${status.target}`;
  $("state").textContent = status.job_status + (status.error ? `: ${status.error}` : "");
  $("output").textContent = ""; $("output").removeAttribute("href");
  if (status.job_status === "DONE") {
    api(`/v1/chains/status?chain=${encodeURIComponent(status.target)}`).then((fresh) => {
      if (fresh.resource_url) { $("output").textContent = "output"; $("output").href = fresh.resource_url; }
    }).catch(() => {});
  }
  draw(status.dag);
  if (selectedTask) showTask(selectedTask);
}

function draw(dag) {
  const svg = $("dag");
  [...svg.querySelectorAll("g, line")].forEach((el) => el.remove());
  const depth = {};
  const visit = (id, d) => { depth[id] = Math.max(depth[id] ?? 0, d); dag.edges.filter((e) => e.to === id).forEach((e) => visit(e.from, d + 1)); };
  visit(dag.root, 0);
  const maxDepth = Math.max(...Object.values(depth));
  const columns = {}; const position = {};
  for (const node of dag.nodes) {
    const column = maxDepth - (depth[node.target] ?? 0);
    columns[column] = (columns[column] ?? 0) + 1;
    position[node.target] = { x: 10 + column * 220, y: 10 + (columns[column] - 1) * 64 };
  }
  const ns = "http://www.w3.org/2000/svg";
  for (const edge of dag.edges) {
    const a = position[edge.from], b = position[edge.to]; const line = document.createElementNS(ns, "line");
    Object.entries({ x1: a.x + 190, y1: a.y + 25, x2: b.x, y2: b.y + 25 }).forEach(([k, v]) => line.setAttribute(k, v));
    svg.appendChild(line);
  }
  for (const node of dag.nodes) {
    const g = document.createElementNS(ns, "g");
    g.setAttribute("class", `node ${node.state}${node.target === selectedTask ? " selected" : ""}`);
    g.dataset.target = node.target; g.dataset.task = node.task;
    const { x, y } = position[node.target];
    g.innerHTML = `<rect x="${x}" y="${y}" width="190" height="50"></rect>
      <text x="${x + 8}" y="${y + 18}"></text><text x="${x + 8}" y="${y + 38}"></text>`;
    const [title, detail] = g.querySelectorAll("text");
    title.textContent = node.task;
    const duration = node.duration_s == null ? "" : ` ${node.duration_s.toFixed(1)}s`;
    detail.textContent = `${node.state}${duration} · ${node.attempts} attempt${node.attempts === 1 ? "" : "s"}`;
    const tip = document.createElementNS(ns, "title"); tip.textContent = `${node.target}\n${node.error ?? ""}`;
    g.appendChild(tip);
    g.onclick = () => { selectedTask = node.target; showTask(node.target); draw(lastStatus.dag); };
    svg.appendChild(g);
  }
  svg.setAttribute("height", Math.max(80, 20 + Math.max(...Object.values(columns)) * 64));
}

async function showTask(target) {
  try {
    const task = await api(`/v1/chains/task?chain=${encodeURIComponent(target)}`);
    $("task-panel").hidden = false;
    $("task-title").textContent = `${task.task} — ${task.state} (${task.attempts} attempts)`;
    $("task-error").textContent = task.error ?? "";
    $("task-params").textContent = JSON.stringify(task.params, null, 2);
    $("task-traceback").textContent = task.traceback ?? "(none)";
    $("task-log").textContent = task.log || "(no log yet)";
    $("retry").hidden = task.state !== "FAILED";
    $("retry").onclick = async () => {
      try { await api(`/v1/chains/retry?chain=${encodeURIComponent(target)}`, { method: "POST" }); $("retry").hidden = true; }
      catch (exc) { $("error").textContent = exc.message; }
    };
  } catch (exc) { $("error").textContent = exc.message; }
}

async function loadTasks() {
  const index = await api("/v1/chains");
  $("task").replaceChildren();
  for (const type of index.types) for (const chain of type.chains) for (const task of chain.tasks) {
    const option = document.createElement("option");
    option.value = task.url; option.textContent = `${type.type} / ${chain.name} / ${task.name}`;
    $("task").appendChild(option);
  }
}

$("run").onclick = async () => {
  try {
    const submitted = await api($("task").value, { method: "POST", body: $("params").value || "{}" });
    selectRun(submitted.run_id, null);
  } catch (exc) { $("error").textContent = exc.message; }
};

let runsStream = null;
function start() {
  if (!$("key").value) return;
  loadTasks().catch((exc) => { $("error").textContent = exc.message; });
  if (runsStream) runsStream.abort();
  runsStream = follow("/v1/chains/events", (name, body) => { if (name === "runs") showRuns(body.runs); });
  if (selectedRun || selectedTarget) selectRun(selectedRun, selectedTarget);
}
start();
