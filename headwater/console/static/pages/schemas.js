// Schemas & transforms (transform): the registry, an Upload form showing the registry's line-numbered errors over
// the YAML, a log2schema form that proposes a schema from a sample file, and the transform runs.
import { authHeaders, call, errorFrom } from "../api.js";
import { badge, el, errorBox, every, fieldErrors, guardForm, link, showError, table, time } from "../ui.js";

// The YAML with its lines numbered, the lines an error names marked.
function numbered(text, badLines) {
  return el("ol", { class: "lines", id: "yaml-lines" }, text.split("\n").map((line, i) =>
    el("li", { class: badLines.has(i + 1) ? "bad" : undefined, "data-line": i + 1 }, line || " ")));
}

function uploadForm(onDone) {
  const error = errorBox(); error.id = "upload-error";
  const preview = el("div");
  const yaml = el("textarea", { name: "yaml", id: "schema-yaml", class: "code", rows: 12, placeholder: "name: clicks\nversion: 1\ncolumns:\n  - {name: event_id, source: event_id, type: varchar(64), nullable: false}" });
  const file = el("input", { type: "file", accept: ".yaml,.yml,text/yaml", onchange: async () => { if (file.files[0]) yaml.value = await file.files[0].text(); } });
  const form = el("form", { class: "grid panel", id: "upload-form", novalidate: true },
    el("label", {}, "Name", el("input", { name: "name", id: "schema-name", placeholder: "clicks" })),
    el("label", {}, "Version", el("input", { name: "version", id: "schema-version", type: "number", min: 1 })),
    el("label", {}, "YAML file", file),
    el("label", { class: "wide" }, "Schema YAML", yaml),
    el("div", { class: "wide" }, el("button", { type: "submit", class: "primary" }, "Upload schema"), " ",
      el("span", { class: "muted" }, "Name and version, when given, must match the YAML's (they are added when it has none).")),
    el("div", { class: "wide" }, error, preview));
  guardForm(form, "jobs:admin");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(error, null); preview.replaceChildren(); fieldErrors(form, null);
    const name = form.elements.name.value.trim(), version = form.elements.version.value.trim();
    let text = yaml.value;
    // Fill the name and version the YAML leaves out; refuse a mismatch before sending.
    const own = (field) => (text.match(new RegExp(`^${field}:\\s*(.+?)\\s*$`, "m")) || [])[1];
    const mismatch = [];
    if (version && !own("version")) text = `version: ${version}\n` + text;
    else if (version && own("version") !== version) mismatch.push({ field: "version", reason: `the YAML says version ${own("version")}` });
    if (name && !own("name")) text = `name: ${name}\n` + text;
    else if (name && own("name") !== name) mismatch.push({ field: "name", reason: `the YAML says name ${own("name")}` });
    if (mismatch.length) { fieldErrors(form, { details: mismatch }); return; }
    const response = await fetch("/api/transform/v1/schemas", { method: "POST", headers: authHeaders({ "Content-Type": "application/yaml" }), body: text });
    if (!response.ok) {
      const exc = await errorFrom(response);
      const lines = new Set(exc.details.map((d) => d.line).filter(Boolean));
      showError(error, exc);
      preview.replaceChildren(el("p", { class: "muted" }, "As sent (the line the registry names is marked):"), numbered(text, lines));
      return;
    }
    const schema = await response.json();
    preview.replaceChildren(el("p", { id: "upload-ok" }, `Registered ${schema.name} v${schema.version} (${response.status === 200 ? "identical version already there" : "new"}). `,
      link(`/schemas/${schema.name}/${schema.version}`, "Open it")));
    onDone();
  });
  return { form, fill(text) { yaml.value = text; yaml.focus(); } };
}

function log2schemaForm(fill) {
  const error = errorBox(); error.id = "log2schema-error";
  const result = el("p", { class: "muted", id: "log2schema-result" });
  const form = el("form", { class: "grid panel", id: "log2schema-form", novalidate: true },
    el("label", {}, "Sample file (JSON lines, plain or .gz)", el("input", { type: "file", name: "file", id: "sample-file" })),
    el("label", {}, "Table name", el("input", { name: "name", value: "inferred", pattern: "[a-z_][a-z0-9_]*" })),
    el("label", {}, "Version", el("input", { name: "version", type: "number", min: 1, value: 1 })),
    el("div", { class: "wide" }, el("button", { type: "submit" }, "Propose a schema"), " ", result), error);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(error, null); fieldErrors(form, null);
    const file = form.elements.file.files[0];
    if (!file) { fieldErrors(form, { details: [{ field: "file", reason: "choose a sample file" }] }); return; }
    const query = new URLSearchParams({ name: form.elements.name.value, version: form.elements.version.value });
    const response = await fetch(`/console/log2schema?${query}`, { method: "POST", headers: authHeaders({ "Content-Type": "application/octet-stream" }), body: file });
    if (!response.ok) { const exc = await errorFrom(response); showError(error, { ...exc, message: exc.message, status: exc.status, details: fieldErrors(form, exc) }); return; }
    const body = await response.json();
    result.textContent = `Proposed from ${body.records} records (${body.bad_lines} lines skipped): review it in the upload form, then upload.`;
    fill(body.yaml);
  });
  return form;
}

async function overview(root, { navigate }) {
  const error = errorBox();
  const schemas = table({
    id: "schemas", emptyMessage: "No schemas registered. Upload one below, or propose one from a sample with log2schema.",
    rowAttrs: (s) => ({ "data-schema": `${s.name}/${s.version}` }), onRow: (s) => navigate(`/schemas/${s.name}/${s.version}`),
    columns: [
      { key: "name", label: "name", render: (s) => link(`/schemas/${s.name}/${s.version}`, s.name) },
      { key: "version", label: "version", num: true },
      { key: "created_at", label: "registered", render: (s) => time(s.created_at) },
      { key: "s3_uri", label: "S3" },
    ],
  });
  const runs = table({
    id: "runs", emptyMessage: "No transform runs yet: load jobs and `POST /v1/transforms` start them.",
    rowAttrs: (r) => ({ "data-run": r.id }), onRow: (r) => navigate(`/transforms/${r.id}`),
    columns: [
      { key: "id", label: "id", render: (r) => link(`/transforms/${r.id}`, r.id.slice(0, 12)) },
      { key: "table", label: "table", value: (r) => `${r.table} v${r.version}` },
      { key: "dt", label: "dt", value: (r) => (r.hour == null ? r.dt : `${r.dt} h${r.hour}`) },
      { key: "engine", label: "engine" },
      { key: "state", label: "state", render: (r) => badge(r.state) },
      { key: "rows", label: "rows in / out / bad", value: (r) => `${r.rows_in ?? "–"} / ${r.rows_out ?? "–"} / ${r.rows_bad ?? "–"}` },
      { key: "duration_s", label: "duration", num: true, value: (r) => (r.duration_s == null ? "" : `${r.duration_s}s`) },
      { key: "created_at", label: "created", render: (r) => time(r.created_at) },
    ],
  });
  const refresh = async () => {
    try {
      const [s, r] = await Promise.all([call("transform", "/v1/schemas"), call("transform", "/v1/transforms?limit=100")]);
      schemas.update(s.items); runs.update(r.items); showError(error, null);
    } catch (exc) { showError(error, exc); }
  };
  const upload = uploadForm(refresh);
  root.append(el("h1", {}, "Schemas & transforms"), error, schemas.node,
    el("h2", {}, "Upload a schema"), upload.form,
    el("h2", {}, "Propose a schema from a sample (log2schema)"), log2schemaForm(upload.fill),
    el("h2", {}, "Transform runs"), runs.node);
  return every(5000, refresh);
}

async function schemaPage(root, { params }) {
  const error = errorBox();
  root.append(el("p", {}, link("/schemas", "← schemas & transforms")), el("h1", {}, `Schema ${params.name} v${params.version}`), error);
  try {
    const schema = await call("transform", `/v1/schemas/${encodeURIComponent(params.name)}/${params.version}`);
    root.append(el("p", { class: "muted" }, "registered ", time(schema.created_at), ` · ${schema.s3_uri} · sha256 ${schema.sha256.slice(0, 12)}`),
      numbered(schema.yaml, new Set()));
  } catch (exc) { showError(error, exc); }
}

async function transformPage(root, { params }) {
  const error = errorBox();
  const body = el("div");
  root.append(el("p", {}, link("/schemas", "← schemas & transforms")), el("h1", {}, "Transform run ", el("code", {}, params.id)), error, body);
  return every(3000, async () => {
    try {
      const run = await call("transform", `/v1/transforms/${encodeURIComponent(params.id)}`);
      const rows = Object.entries(run).filter(([k]) => !["engine_states"].includes(k)).map(([k, v]) =>
        el("tr", {}, el("th", {}, k), el("td", {}, k === "state" ? badge(v) : k.endsWith("_at") ? time(v) : v == null ? "–" : typeof v === "object" ? JSON.stringify(v) : String(v))));
      let logs = null;
      try { logs = await call("transform", `/v1/transforms/${encodeURIComponent(params.id)}/logs`); } catch { /* no logs yet */ }
      body.replaceChildren(el("div", { class: "scroll" }, el("table", { id: "transform" }, el("tbody", {}, rows))),
        el("h2", {}, "Log"), el("pre", {}, logs ? (logs.text || "(empty)") : "(no log yet)"));
      showError(error, null);
    } catch (exc) { showError(error, exc); }
  });
}

export async function mount(root, ctx) {
  if (ctx.view === "schema") return schemaPage(root, ctx);
  if (ctx.view === "transform") return transformPage(root, ctx);
  return overview(root, ctx);
}
