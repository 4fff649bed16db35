// Live traffic (ingest): per-minute impressions, clicks and CTR over the last hour, refreshed every few seconds.
import { call } from "../api.js";
import { el, errorBox, every, pct, showError, table } from "../ui.js";

const NS = "http://www.w3.org/2000/svg";
function svg(name, attrs, text) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function draw(chart, series) {
  chart.replaceChildren();
  const W = 900, H = 260, left = 50, right = 50, top = 10, bottom = 30;
  const plotW = W - left - right, plotH = H - top - bottom;
  const maxCount = Math.max(1, ...series.map((m) => m.impressions), ...series.map((m) => m.clicks));
  const maxCtr = Math.max(0.01, ...series.map((m) => m.ctr));
  const slot = plotW / Math.max(1, series.length), barW = Math.max(1, slot / 2 - 1);
  chart.append(svg("line", { x1: left, y1: top + plotH, x2: left + plotW, y2: top + plotH, stroke: "#889" }));
  chart.append(svg("text", { x: 4, y: top + 10, "font-size": 11 }, String(maxCount)));
  chart.append(svg("text", { x: W - right + 4, y: top + 10, "font-size": 11, fill: "#1a7f37" }, pct(maxCtr)));
  let path = "";
  series.forEach((m, i) => {
    const x = left + i * slot, hi = (m.impressions / maxCount) * plotH, hc = (m.clicks / maxCount) * plotH;
    const when = new Date(m.minute);
    const tip = `${when.toLocaleTimeString()} (${when.toISOString().slice(11, 16)} UTC): ${m.impressions} impressions, ${m.clicks} clicks`;
    const bar = svg("rect", { x, y: top + plotH - hi, width: barW, height: hi, fill: "#6b9bd1", "data-minute": m.minute });
    bar.append(svg("title", {}, tip));
    chart.append(bar, svg("rect", { x: x + barW + 1, y: top + plotH - hc, width: barW, height: hc, fill: "#e0894a" }));
    path += (i ? " L" : "M") + (x + barW).toFixed(1) + " " + (top + plotH - (m.ctr / maxCtr) * plotH).toFixed(1);
    if (i % 10 === 0) chart.append(svg("text", { x, y: H - 8, "font-size": 10 }, when.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })));
  });
  if (path) chart.append(svg("path", { d: path, fill: "none", stroke: "#1a7f37", "stroke-width": 2 }));
}

export async function mount(root, { query }) {
  const minutes = Number(query.get("minutes") || 60);
  const refreshMs = Number(query.get("refresh_ms") || 2000);
  const status = el("span", { id: "status", class: "muted" }, "connecting…");
  const card = (id, label) => el("div", { class: "card" }, el("div", { class: "label" }, label), el("div", { class: "value", id }, "–"));
  const chart = svg("svg", { id: "chart", width: 900, height: 260, viewBox: "0 0 900 260", role: "img", "aria-label": "per-minute chart" });
  const ads = table({
    id: "ads", pageSize: 20, emptyMessage: "No impressions or clicks in this window. Send some: `headwater loadgen` or `./run demo`.",
    rowAttrs: (r) => ({ "data-ad": r.ad }),
    columns: [
      { key: "ad", label: "ad" },
      { key: "impressions", label: "impressions", num: true },
      { key: "clicks", label: "clicks", num: true },
      { key: "ctr", label: "CTR", num: true, render: (r) => pct(r.ctr) },
    ],
  });
  const error = errorBox();
  root.append(
    el("h1", {}, `Live traffic: last ${minutes} minutes `, status),
    error,
    el("div", { class: "cards" }, card("total-impressions", "Impressions"), card("total-clicks", "Clicks"), card("total-ctr", "Click-through rate")),
    el("div", { class: "panel" },
      el("div", { class: "muted" }, "Blue: impressions / minute · orange: clicks / minute · green line: CTR (right axis). Times in your zone."),
      el("div", { class: "scroll" }, chart)),
    el("h2", {}, "By ad"), ads.node);
  return every(refreshMs, async () => {
    try {
      const data = await call("ingest", `/v1/realtime?minutes=${minutes}`);
      document.getElementById("total-impressions").textContent = data.totals.impressions;
      document.getElementById("total-clicks").textContent = data.totals.clicks;
      document.getElementById("total-ctr").textContent = pct(data.totals.ctr);
      draw(chart, data.series);
      ads.update(Object.entries(data.by_ad).map(([ad, c]) => ({ ad, ...c })).sort((a, b) => b.impressions - a.impressions));
      showError(error, null);
      status.textContent = "updated " + new Date().toLocaleTimeString();
    } catch (exc) { showError(error, exc); status.textContent = ""; }
  });
}
