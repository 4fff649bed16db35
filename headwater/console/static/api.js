// Every call goes to this origin: /api/<service>/... is proxied to the service, with the signed-in key.
import { key } from "./session.js";

export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status; this.code = code; this.details = details || [];
  }
}

export function authHeaders(extra = {}) {
  return key() ? { Authorization: `Bearer ${key()}`, ...extra } : extra;
}

export async function errorFrom(response) {
  let body = null;
  try { body = await response.json(); } catch { /* not JSON */ }
  const error = body && body.error;
  if (error) return new ApiError(response.status, error.code, error.message, error.details);
  return new ApiError(response.status, "http_" + response.status, response.statusText || `HTTP ${response.status}`);
}

// call("loader", "/v1/jobs", { method: "POST", json: {...} }) -> parsed JSON (or text for `as: "text"`).
export async function call(service, path, { method = "GET", json, body, type, as = "json", signal } = {}) {
  const headers = authHeaders();
  if (json !== undefined) { headers["Content-Type"] = "application/json"; body = JSON.stringify(json); }
  else if (type) headers["Content-Type"] = type;
  const response = await fetch(`/api/${service}${path}`, { method, headers, body, signal });
  if (!response.ok) throw await errorFrom(response);
  if (response.status === 204 || method === "DELETE") return null;
  return as === "text" ? response.text() : response.json();
}

// Follow a text/event-stream (fetch, since EventSource cannot send Authorization); onEvent(name, data).
export async function stream(service, path, signal, onEvent) {
  const response = await fetch(`/api/${service}${path}`, { headers: authHeaders(), signal });
  if (!response.ok) throw await errorFrom(response);
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
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
