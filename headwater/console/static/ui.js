// The console's few components: elements, badges, times, empty states, sortable paged tables, forms with errors.
import { can } from "./session.js";

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function link(href, text, attrs = {}) { return el("a", { href, "data-link": "", ...attrs }, text); }

const TONE = {
  ok: ["succeeded", "loaded", "active", "done", "ready", "created", "updated", "ok"],
  bad: ["failed", "auth_failed", "unreachable", "invalid", "error", "cancelled"],
  busy: ["running", "queued", "transforming", "loading", "pending", "waiting", "exists"],
};
export function badge(state) {
  const value = String(state ?? "–");
  const tone = Object.keys(TONE).find((t) => TONE[t].includes(value.toLowerCase())) || "idle";
  return el("span", { class: `badge ${tone}`, "data-state": value }, value);
}

// A time in the viewer's zone, UTC on hover.
export function time(iso) {
  if (!iso) return el("span", { class: "muted" }, "–");
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return el("span", {}, String(iso));
  return el("time", { datetime: date.toISOString(), title: date.toISOString().replace("T", " ").slice(0, 19) + " UTC" },
    date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" }));
}

export function empty(message, ...next) { return el("div", { class: "empty" }, el("p", {}, message), ...next); }

export function errorBox(error) {
  const box = el("div", { class: "error", role: "alert" });
  if (error) showError(box, error);
  return box;
}
export function showError(box, error) {
  box.replaceChildren();
  if (!error) return;
  box.append(error.status ? `${error.status} ${error.message}` : String(error.message || error));
  for (const d of error.details || []) box.append(el("div", {}, `${d.field ?? ""}${d.line ? ` (line ${d.line})` : ""}: ${d.reason ?? ""}`));
}

// A button that needs `scope`: disabled, with the reason, when the key lacks it.
export function action(label, scope, onClick, attrs = {}) {
  const allowed = can(scope);
  return el("button", {
    type: "button", ...attrs, disabled: !allowed,
    title: allowed ? attrs.title : `needs the ${scope} scope; this key lacks it`,
    onclick: allowed ? onClick : undefined,
  }, label);
}
export function guardForm(form, scope) {
  if (can(scope)) return;
  for (const control of form.querySelectorAll("button[type=submit], input, select, textarea")) control.disabled = true;
  form.prepend(el("p", { class: "muted", "data-reason": scope }, `Read-only: this needs the ${scope} scope, which this key lacks.`));
}

// Put an API error's details beside the fields they name (details[].field like "start_date" or "selection.start").
export function fieldErrors(form, error) {
  for (const node of form.querySelectorAll(".field-error")) node.remove();
  for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  const rest = [];
  for (const detail of (error && error.details) || []) {
    const name = String(detail.field || "");
    const input = form.querySelector(`[name="${CSS.escape(name)}"]`) || form.querySelector(`[name="${CSS.escape(name.split(".").pop())}"]`);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.closest("label").append(el("span", { class: "field-error", "data-field": input.name }, detail.reason));
    } else rest.push(detail);
  }
  return rest;
}

// A sortable, paged table. columns: [{ key, label, value?(row), render?(row), num? }]. Returns { node, update(rows) }.
export function table({ columns, pageSize = 25, rowAttrs, onRow, emptyMessage = "Nothing here yet.", id }) {
  let rows = [], sortKey = null, descending = false, page = 0;
  const node = el("div", { class: "table", id });
  const valueOf = (col, row) => (col.value ? col.value(row) : row[col.key]);
  function draw() {
    if (!rows.length) { node.replaceChildren(empty(emptyMessage)); return; }
    const sorted = [...rows];
    if (sortKey) {
      const col = columns.find((c) => c.key === sortKey);
      sorted.sort((a, b) => {
        const x = valueOf(col, a), y = valueOf(col, b);
        const order = typeof x === "number" && typeof y === "number" ? x - y : String(x ?? "").localeCompare(String(y ?? ""), undefined, { numeric: true });
        return descending ? -order : order;
      });
    }
    const pages = Math.max(1, Math.ceil(sorted.length / pageSize));
    page = Math.min(page, pages - 1);
    const head = el("tr", {}, columns.map((col) => el("th", {
      class: col.num ? "num" : undefined, "data-sort": col.sort === false ? undefined : col.key,
      "aria-sort": sortKey === col.key ? (descending ? "descending" : "ascending") : undefined,
      onclick: col.sort === false ? undefined : () => { descending = sortKey === col.key ? !descending : false; sortKey = col.key; draw(); },
    }, col.label)));
    const body = sorted.slice(page * pageSize, (page + 1) * pageSize).map((row) => {
      const attrs = rowAttrs ? rowAttrs(row) : {};
      const tr = el("tr", { ...attrs, class: [attrs.class, onRow ? "clickable" : ""].filter(Boolean).join(" ") || undefined });
      if (onRow) tr.addEventListener("click", (event) => { if (!event.target.closest("button, a, input")) onRow(row); });
      for (const col of columns) {
        const content = col.render ? col.render(row) : valueOf(col, row);
        tr.append(el("td", { class: col.num ? "num" : undefined, "data-col": col.key }, content ?? ""));
      }
      return tr;
    });
    const parts = [el("div", { class: "scroll" }, el("table", {}, el("thead", {}, head), el("tbody", {}, body)))];
    if (pages > 1) {
      parts.push(el("div", { class: "pager" },
        el("button", { type: "button", disabled: page === 0, onclick: () => { page -= 1; draw(); } }, "‹ previous"),
        el("span", {}, `page ${page + 1} of ${pages} (${sorted.length} rows)`),
        el("button", { type: "button", disabled: page >= pages - 1, onclick: () => { page += 1; draw(); } }, "next ›")));
    }
    node.replaceChildren(...parts);
  }
  return { node, update(next) { rows = next; draw(); } };
}

// Run `fn` now and every `ms` until the page is left; returns the stop function.
export function every(ms, fn) {
  let stopped = false, timer = null;
  const tick = async () => { if (stopped) return; try { await fn(); } finally { if (!stopped) timer = setTimeout(tick, ms); } };
  tick();
  return () => { stopped = true; clearTimeout(timer); };
}

export const pct = (x) => (x == null ? "–" : (100 * x).toFixed(1) + "%");
