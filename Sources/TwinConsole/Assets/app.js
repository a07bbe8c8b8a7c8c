// twin console: plain ES module, no build step. Talks to twind through its Connect bridge
// (POST /<service>/<method>, JSON). The access token lives only in this page's memory; the
// refresh token is an HttpOnly cookie the page cannot read.

const $ = (sel) => document.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : document.createTextNode(String(c ?? "")));
  return e;
};

const session = { token: null, user: null };
const ROLES = { ROLE_VIEWER: 1, ROLE_OPERATOR: 2, ROLE_ADMIN: 3 };
const canOperate = () => (ROLES[session.user?.role] ?? 0) >= 2;
const isAdmin = () => (ROLES[session.user?.role] ?? 0) >= 3;

class CallError extends Error {
  constructor(body, status) {
    super(body.message || `HTTP ${status}`);
    this.code = body.code || "unknown";
    this.details = body.details || [];
    this.reason = this.details.find((d) => d.type === "google.rpc.ErrorInfo")?.debug?.reason;
  }
}

function headers(json = true) {
  const h = { "X-Twin-Session": "cookie", "Content-Type": json ? "application/json" : "application/connect+json" };
  if (session.token) h.Authorization = `Bearer ${session.token}`;
  return h;
}

async function call(method, body = {}, retry = true) {
  const response = await fetch(`/${method}`, { method: "POST", headers: headers(), body: JSON.stringify(body), credentials: "same-origin" });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new CallError(answer, response.status);
    if (error.code === "unauthenticated" && retry && method !== "twin.v1.AuthService/Login" && (await refresh())) return call(method, body, false);
    if (error.code === "unauthenticated") showLogin();
    throw error;
  }
  return answer;
}

async function refresh() {
  try {
    const response = await fetch("/twin.v1.AuthService/Refresh", { method: "POST", headers: { "Content-Type": "application/json", "X-Twin-Session": "cookie" }, body: "{}", credentials: "same-origin" });
    if (!response.ok) return false;
    session.token = (await response.json()).accessToken;
    session.user = (await call("twin.v1.AuthService/WhoAmI", {}, false)).user;
    return true;
  } catch {
    return false;
  }
}

function envelope(message) {
  const bytes = new TextEncoder().encode(JSON.stringify(message));
  const out = new Uint8Array(5 + bytes.length);
  new DataView(out.buffer).setUint32(1, bytes.length);
  out.set(bytes, 5);
  return out;
}

// A server stream: calls onMessage for each message; resolves when it ends, rejects with its error.
async function stream(method, body, onMessage, signal) {
  const response = await fetch(`/${method}`, { method: "POST", headers: headers(false), body: envelope(body), signal, credentials: "same-origin" });
  if (!response.ok) throw new CallError(await response.json().catch(() => ({})), response.status);
  const reader = response.body.getReader();
  let buffer = new Uint8Array(0);
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    const joined = new Uint8Array(buffer.length + value.length);
    joined.set(buffer);
    joined.set(value, buffer.length);
    buffer = joined;
    while (buffer.length >= 5) {
      const length = new DataView(buffer.buffer, buffer.byteOffset).getUint32(1);
      if (buffer.length < 5 + length) break;
      const flags = buffer[0];
      const message = JSON.parse(new TextDecoder().decode(buffer.subarray(5, 5 + length)));
      buffer = buffer.slice(5 + length);
      if (flags & 2) {
        if (message.error) throw new CallError(message.error, 200);
        return;
      }
      onMessage(message);
    }
  }
}

// ---------- pages ----------

const pages = ["login", "overview", "device", "alerts", "recommendations", "models", "notifications"];
let leave = () => {};

function show(page) {
  for (const p of pages) $(`#page-${p}`).hidden = p !== page;
  $("#bar").hidden = page === "login";
  for (const a of document.querySelectorAll("header nav a")) a.classList.toggle("active", a.id === `nav-${page}`);
  document.body.dataset.page = page;
}

function showLogin() {
  leave();
  session.token = null;
  session.user = null;
  show("login");
  $("#login-username").focus();
}

async function route() {
  leave();
  leave = () => {};
  if (!session.token && !(await refresh())) return showLogin();
  $("#who").textContent = `${session.user.username} (${(session.user.role || "").replace("ROLE_", "").toLowerCase()})`;
  // The channels' state is for operators and admins (the server decides either way).
  $("#nav-notifications").hidden = (ROLES[session.user?.role] ?? 0) < 2;
  const [, page, arg] = (location.hash || "#/overview").split("/");
  if (page === "device" && arg) return deviceView(decodeURIComponent(arg));
  if (page === "alerts") return alertsView();
  if (page === "recommendations") return recommendationsView();
  if (page === "models") return modelsView();
  if (page === "notifications") return notificationsView();
  return overviewView();
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("#login-error").textContent = "";
  try {
    const answer = await call("twin.v1.AuthService/Login", { username: $("#login-username").value, password: $("#login-password").value });
    session.token = answer.accessToken;
    session.user = answer.user;
    $("#login-password").value = "";
    if (!location.hash || location.hash === "#/login") location.hash = "#/overview";
    route();
  } catch (error) {
    $("#login-error").textContent = error.message;
  }
});

$("#logout").addEventListener("click", async () => {
  try { await call("twin.v1.AuthService/Logout", {}, false); } catch {}
  location.hash = "#/login";
  showLogin();
});

window.addEventListener("hashchange", route);

// ---------- overview ----------

const fmt = (v) => (Math.abs(v) >= 1000 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2));
const stateName = (s) => (s || "DEVICE_STATE_UNSPECIFIED").replace("DEVICE_STATE_", "").toLowerCase();

async function listAll() {
  const devices = [];
  let pageToken = "";
  do {
    const page = await call("twin.v1.TwinService/ListDevices", { pageSize: 1000, pageToken });
    devices.push(...(page.devices || []));
    pageToken = page.nextPageToken || "";
  } while (pageToken);
  return devices;
}

function overviewView() {
  show("overview");
  const controller = new AbortController();
  leave = () => controller.abort();
  const rows = new Map(); // id -> { device, snapshot, tr }
  const pending = new Map();
  let frame = 0;
  const tbody = $("#devices tbody");
  const filters = ["site", "line", "type", "state"].map((f) => $(`#filter-${f}`));

  const score = (r) => (r.snapshot?.health?.score ?? 100) - (stateName(r.snapshot?.state) === "offline" ? 1000 : 0) - (r.snapshot?.openAlerts ?? 0);
  const visible = (r) => {
    const [site, line, type, state] = filters.map((f) => f.value);
    return (!site || r.device.site === site) && (!line || r.device.line === line) && (!type || r.device.type === type) && (!state || stateName(r.snapshot?.state) === state);
  };

  // A row is built once; updates only change the text and classes of its cells.
  function build(r) {
    const cells = Array.from({ length: 8 }, () => el("td"));
    cells[0].append(el("a", { href: `#/device/${encodeURIComponent(r.device.id)}` }, r.device.name || r.device.id));
    cells[1].textContent = r.device.type;
    cells[2].textContent = [r.device.site, r.device.line].filter(Boolean).join(" / ");
    cells[7].className = "readings";
    r.tr = el("tr", { "data-device": r.device.id }, ...cells);
    r.cells = cells;
    r.units = Object.fromEntries((r.device.sensors || []).map((x) => [x.name, x.unit || ""]));
    r.shown = "";
  }

  function set(cell, text, className) {
    if (cell.textContent !== text) cell.textContent = text;
    if (className !== undefined && cell.className !== className) cell.className = className;
  }

  function render(r) {
    if (!r.tr) build(r);
    const s = r.snapshot || {};
    const state = stateName(s.state);
    const values = (s.values || []).slice(0, 4);
    const stale = values.some((v) => v.stale);
    const health = s.health || {};
    const rowClass = `${state === "offline" ? "offline" : ""} ${stale ? "stale" : ""}`;
    if (r.tr.className !== rowClass) r.tr.className = rowClass;
    const c = r.cells;
    set(c[3], state, `state-${state}`);
    set(c[4], health.score !== undefined ? health.score.toFixed(0) : "–", `health-${(health.state || "").replace("HEALTH_STATE_", "").toLowerCase()}`);
    set(c[5], health.headline || "");
    set(c[6], String(s.openAlerts || 0), s.openAlerts ? "sev-critical" : "");
    const spans = c[7].children;
    if (spans.length !== values.length) c[7].replaceChildren(...values.map((v) => el("span", { "data-sensor": v.sensor })));
    values.forEach((v, i) => set(spans[i], `${v.sensor} ${fmt(v.value ?? 0)} ${r.units[v.sensor] ?? ""}${v.stale ? " (stale)" : ""}`));
    // Every reading in full on hover (the cell shows the first four, cut to the column).
    const all = (s.values || []).map((v) => `${v.sensor} ${fmt(v.value ?? 0)} ${r.units[v.sensor] ?? ""}`).join("\n");
    if (c[7].title !== all) c[7].title = all;
  }

  function layout() {
    const sorted = [...rows.values()].sort((a, b) => score(a) - score(b) || a.device.id.localeCompare(b.device.id));
    tbody.replaceChildren(...sorted.filter(visible).map((r) => r.tr));
    $("#overview-count").textContent = `${tbody.children.length} of ${rows.size} devices`;
  }

  // Updates are applied once per animation frame, however many arrive: each changed row is
  // redrawn in place; the rows are sorted again only when an order changed, at most every 2 s.
  let sortTimer = 0, lastSort = 0;
  function scheduleLayout() {
    if (sortTimer) return;
    const wait = Math.max(0, 2000 - (performance.now() - lastSort));
    sortTimer = setTimeout(() => { sortTimer = 0; lastSort = performance.now(); layout(); }, wait);
  }
  function flush() {
    frame = 0;
    let reorder = false;
    for (const [id, snapshot] of pending) {
      const r = rows.get(id);
      if (!r) continue;
      const before = score(r), shown = visible(r);
      r.snapshot = snapshot;
      render(r);
      reorder ||= score(r) !== before || visible(r) !== shown;
    }
    pending.clear();
    if (reorder) scheduleLayout();
  }

  (async () => {
    try {
      const devices = await listAll();
      for (const d of devices) {
        const r = { device: d, snapshot: null, tr: null };
        rows.set(d.id, r);
        render(r);
      }
      for (const [i, f] of ["site", "line", "type"].entries()) {
        const values = [...new Set(devices.map((d) => d[f]).filter(Boolean))].sort();
        filters[i].replaceChildren(el("option", { value: "" }, `every ${f}`), ...values.map((v) => el("option", { value: v }, v)));
      }
      filters[3].replaceChildren(el("option", { value: "" }, "every state"), ...["running", "idle", "warning", "fault", "maintenance", "offline"].map((v) => el("option", { value: v }, v)));
      for (const f of filters) f.addEventListener("change", layout);
      layout();
      $("#stream-status").textContent = "live";
      await stream("twin.v1.TwinService/StreamUpdates", { heartbeatInterval: "15s" }, (message) => {
        for (const u of message.devices?.updates || []) pending.set(u.snapshot.deviceId, u.snapshot);
        if (message.syncComplete) document.body.dataset.synced = "yes";
        if (pending.size && !frame) frame = requestAnimationFrame(flush);
      }, controller.signal);
    } catch (error) {
      if (controller.signal.aborted) return;
      $("#stream-status").textContent = `stream ended: ${error.message}`;
      if (error.code === "unauthenticated" && (await refresh())) route();
    }
  })();
}

// ---------- device ----------

const SVG = "http://www.w3.org/2000/svg";
const svg = (tag, attrs = {}) => {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
};

// A series' points from GetHistory's packed columns (time_deltas: the first Unix nanoseconds,
// then differences; a running sum gives the times), or from per-point answers.
function seriesPoints(series) {
  const c = series.columns;
  if (!c) return (series.points || []).map((p) => ({ t: Date.parse(p.time), min: p.min ?? p.value ?? 0, max: p.max ?? p.value ?? 0, mean: p.mean ?? p.value ?? 0 }));
  const values = c.values || [], deltas = c.timeDeltas || [];
  const n = Math.min(values.length, deltas.length);
  const out = new Array(n);
  let ns = 0;
  for (let i = 0; i < n; i++) {
    ns += Number(deltas[i]);
    const v = Number(values[i]);
    out[i] = { t: ns / 1e6, min: c.min ? Number(c.min[i]) : v, max: c.max ? Number(c.max[i]) : v, mean: c.mean ? Number(c.mean[i]) : v };
  }
  return out;
}

function chart(series, spec, from, to) {
  const points = seriesPoints(series);
  const box = el("div", { class: "chart", "data-sensor": series.sensor, "data-points": points.length });
  box.append(el("h3", {}, `${series.sensor}${series.unit ? ` (${series.unit})` : ""} — ${points.length} points`));
  const W = 1000, H = 160, P = 28;
  const s = svg("svg", { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none" });
  const limits = [spec?.alarmLow, spec?.alarmHigh].filter((v) => v !== undefined);
  const nominal = [spec?.nominalMin, spec?.nominalMax].filter((v) => v !== undefined && !(spec.nominalMin === 0 && spec.nominalMax === 0));
  let lo = Math.min(...points.map((p) => p.min), ...limits, ...nominal);
  let hi = Math.max(...points.map((p) => p.max), ...limits, ...nominal);
  if (!isFinite(lo) || !isFinite(hi)) { lo = 0; hi = 1; }
  if (hi === lo) { hi += 1; lo -= 1; }
  const x = (t) => P + ((t - from) / (to - from)) * (W - 2 * P);
  const y = (v) => H - 14 - ((v - lo) / (hi - lo)) * (H - 28);
  if (points.length) {
    const band = points.map((p) => `${x(p.t).toFixed(1)},${y(p.max).toFixed(1)}`).concat([...points].reverse().map((p) => `${x(p.t).toFixed(1)},${y(p.min).toFixed(1)}`));
    s.append(svg("polygon", { class: "band", points: band.join(" ") }));
    s.append(svg("polyline", { class: "mean", points: points.map((p) => `${x(p.t).toFixed(1)},${y(p.mean).toFixed(1)}`).join(" ") }));
  }
  for (const v of limits) s.append(svg("line", { class: "alarm", x1: P, x2: W - P, y1: y(v), y2: y(v) }));
  for (const v of nominal) s.append(svg("line", { class: "nominal", x1: P, x2: W - P, y1: y(v), y2: y(v) }));
  for (const v of [lo, hi]) { const t = svg("text", { x: 2, y: y(v) + 3 }); t.textContent = fmt(v); s.append(t); }
  box.append(s);
  return box;
}

// Shelving (ISA-18.2): for how long an operator may choose; the reason is the comment.
const SHELVE_FOR = [["1h", "3600s"], ["8h", "28800s"], ["24h", "86400s"], ["7d", "604800s"]];

function alertRow(a, onChange) {
  const sev = (a.severity || "").replace("ALERT_SEVERITY_", "").toLowerCase();
  const state = (a.state || "").replace("ALERT_STATE_", "").toLowerCase();
  const shelved = a.shelvedUntil && Date.parse(a.shelvedUntil) > Date.now();
  const actions = el("td", { class: "actions" });
  if (canOperate() && state !== "resolved") {
    const comment = el("input", { placeholder: shelved ? "comment" : "comment (the reason, to shelve)", class: "ack-comment", maxlength: "1000" });
    actions.append(comment);
    if (state === "open") actions.append(el("button", { class: "ack", type: "button", onclick: () => onChange("AckAlert", a.id, { comment: comment.value }) }, "Acknowledge"));
    actions.append(el("button", { class: "resolve", type: "button", onclick: () => onChange("ResolveAlert", a.id, { comment: comment.value }) }, "Resolve"));
    if (shelved) {
      actions.append(el("button", { class: "unshelve", type: "button", onclick: () => onChange("UnshelveAlert", a.id, {}) }, "Unshelve"));
    } else {
      const span = el("select", { class: "shelve-for", "aria-label": "shelve for" }, ...SHELVE_FOR.map(([label, value]) => el("option", { value }, label)));
      actions.append(span, el("button", { class: "shelve", type: "button", onclick: () => onChange("ShelveAlert", a.id, { duration: span.value, reason: comment.value }) }, "Shelve"));
    }
  }
  const stateText = state + (a.acknowledgedBy ? ` by ${a.acknowledgedBy}` : "")
    + (shelved ? `, shelved until ${new Date(a.shelvedUntil).toLocaleString()} by ${a.shelvedBy || "?"}: ${a.shelveReason || ""}` : "");
  return el("tr", { "data-alert": a.id, "data-state": state, "data-shelved": shelved ? "yes" : "no" },
    el("td", { class: `sev-${sev}` }, sev),
    el("td", {}, el("a", { href: `#/device/${encodeURIComponent(a.deviceId)}` }, a.deviceId)),
    el("td", {}, a.rule),
    el("td", {}, a.message),
    el("td", {}, stateText),
    el("td", {}, a.openedAt ? new Date(a.openedAt).toLocaleString() : ""),
    actions);
}

async function changeAlert(method, id, fields) {
  await call(`twin.v1.TwinService/${method}`, { alertId: id, ...fields });
}

function deviceView(id) {
  show("device");
  let alive = true;
  leave = () => { alive = false; };
  const range = $("#device-range");
  const charts = $("#charts");
  // The window shown: the range chosen, then zoomed (wheel) and panned (drag); double-click resets.
  const view = { from: 0, to: 0, specs: {} };
  const resetView = () => { view.to = Date.now(); view.from = view.to - Number(range.value) * 1000; };
  let generation = 0;
  async function drawCharts() {
    const mine = ++generation;
    const { from, to } = view;
    const began = performance.now();
    const history = await call("twin.v1.TwinService/GetHistory", { deviceId: id, from: new Date(from).toISOString(), to: new Date(to).toISOString(), maxPoints: 500, columnar: true });
    if (!alive || mine !== generation) return;
    charts.replaceChildren(...(history.series || []).map((s) => chart(s, view.specs[s.sensor], from, to)));
    charts.dataset.from = String(from);
    charts.dataset.to = String(to);
    $("#chart-status").textContent = `${new Date(from).toLocaleString()} – ${new Date(to).toLocaleString()} · drawn in ${(performance.now() - began).toFixed(0)} ms · wheel to zoom, drag to pan, double-click to reset`;
    document.body.dataset.chartMs = (performance.now() - began).toFixed(0);
  }
  let redraw = 0;
  const later = () => { clearTimeout(redraw); redraw = setTimeout(() => drawCharts().catch(() => {}), 120); };
  const fraction = (event) => {
    const box = event.target.closest?.("svg")?.getBoundingClientRect();
    return box ? Math.min(1, Math.max(0, (event.clientX - box.left) / box.width)) : 0.5;
  };
  charts.onwheel = (event) => {
    if (!event.target.closest?.("svg")) return;
    event.preventDefault();
    const f = fraction(event), span = view.to - view.from;
    const next = Math.min(Math.max(span * (event.deltaY < 0 ? 0.8 : 1.25), 60_000), 90 * 86_400_000);
    const at = view.from + f * span;
    view.from = at - f * next;
    view.to = view.from + next;
    later();
  };
  let drag = null;
  charts.onmousedown = (event) => { if (event.target.closest?.("svg")) drag = { x: event.clientX, from: view.from, to: view.to, width: event.target.closest("svg").getBoundingClientRect().width }; };
  window.onmouseup = () => { drag = null; };
  charts.onmousemove = (event) => {
    if (!drag) return;
    const shift = ((drag.x - event.clientX) / drag.width) * (drag.to - drag.from);
    view.from = drag.from + shift;
    view.to = drag.to + shift;
    later();
  };
  charts.ondblclick = () => { resetView(); later(); };
  async function load() {
    try {
      const { device, snapshot } = await call("twin.v1.TwinService/GetDevice", { deviceId: id });
      if (!alive) return;
      $("#device-title").textContent = `${device.name || device.id} · ${device.type}`;
      $("#device-summary").textContent = snapshot?.health ? `Health ${snapshot.health.score?.toFixed(0) ?? "–"}: ${snapshot.health.headline || ""}` : "";
      view.specs = Object.fromEntries((device.sensors || []).map((s) => [s.name, s]));
      if (!view.to) resetView();
      await drawCharts();
      const health = await call("twin.v1.TwinService/GetHealth", { deviceIds: [id] }).catch(() => null);
      const factors = health?.devices?.[0]?.health?.factors || [];
      $("#device-factors").replaceChildren(...(factors.length ? factors.map((f) => el("li", {}, f.description)) : [el("li", {}, "nothing wrong")]));
      const prediction = await call("twin.v1.TwinService/GetPrediction", { deviceIds: [id] }).catch((e) => ({ error: e.message }));
      const p = prediction.predictions?.[0];
      const life = p?.remainingLife;
      const hours = (d) => (d ? `${(parseFloat(d) / 3600).toFixed(0)} h` : "–");
      $("#device-prediction").replaceChildren(...(p
        ? [el("span", {}, (p.failureProbabilities || []).map((f) => `failure within ${hours(f.horizon)}: ${((f.probability ?? 0) * 100).toFixed(0)} %`).join("; ") || "no failure predicted"),
           el("br"), el("span", {}, life ? `remaining life ${hours(life.expected)} (${hours(life.lower)} – ${hours(life.upper)})` : ""),
           el("br"), el("span", {}, (p.topFeatures || []).slice(0, 3).map((f) => f.feature).join(", "))]
        : [el("span", {}, prediction.error || prediction.note || "no prediction")]));
      const alerts = await call("twin.v1.TwinService/ListAlerts", { deviceIds: [id], states: ["ALERT_STATE_OPEN", "ALERT_STATE_ACKNOWLEDGED"] });
      $("#device-alerts tbody").replaceChildren(...(alerts.alerts || []).map((a) => alertRow(a, async (m, aid, c) => {
        $("#device-alerts-error").textContent = "";
        try {
          await changeAlert(m, aid, c);
          load();
        } catch (error) {
          $("#device-alerts-error").textContent = error.message;
        }
      })));
      const events = await call("twin.v1.TwinService/ListEvents", { deviceIds: [id], pageSize: 50 }).catch(() => ({ events: [] }));
      $("#device-events tbody").replaceChildren(...(events.events || []).map((e) => el("tr", { "data-event": e.id },
        el("td", {}, e.time ? new Date(e.time).toLocaleString() : ""),
        el("td", {}, (e.kind || "").replace("EVENT_KIND_", "").toLowerCase().replace("_", " ")),
        el("td", {}, e.component || ""), el("td", {}, e.fault || ""), el("td", {}, e.notes || ""), el("td", {}, e.recordedBy || ""))));
    } catch (error) {
      $("#device-summary").textContent = error.message;
    }
  }
  range.onchange = () => { resetView(); load(); };
  const form = $("#event-form");
  form.hidden = !canOperate();
  form.onsubmit = async (event) => {
    event.preventDefault();
    $("#event-error").textContent = "";
    try {
      await call("twin.v1.TwinService/RecordEvent", { event: { deviceId: id, kind: $("#event-kind").value, component: $("#event-component").value, notes: $("#event-notes").value, time: new Date().toISOString() } });
      $("#event-notes").value = "";
      load();
    } catch (error) {
      $("#event-error").textContent = error.message;
    }
  };
  load();
}

// ---------- models ----------

function modelsView() {
  show("models");
  let alive = true;
  leave = () => { alive = false; };
  // Proto JSON writes NaN as the string "NaN" (a figure the model does not have).
  const fixed = (v, digits) => (typeof v === "number" && Number.isFinite(v) ? v.toFixed(digits) : "–");
  const pct = (v) => fixed(v, 3);
  async function load() {
    $("#models-error").textContent = "";
    try {
      const answer = await call("twin.v1.ModelService/ListModels", {});
      $("#models-active").textContent = answer.activeVersion ? `Active: ${answer.activeVersion}` : "No model is active yet.";
      $("#models-actions").hidden = !isAdmin();
      $("#models tbody").replaceChildren(...(answer.models || []).map((m) => {
        const x = m.metrics || {};
        const status = (m.status || "").replace("MODEL_STATUS_", "").toLowerCase();
        const activate = isAdmin() && status !== "active"
          ? el("button", { class: "activate", type: "button", onclick: async () => {
              try { await call("twin.v1.ModelService/ActivateModel", { version: m.version }); } catch (error) { $("#models-error").textContent = error.message; }
              load();
            } }, "Activate")
          : "";
        return el("tr", { "data-version": m.version, "data-status": status, title: m.promotionNote || "" },
          el("td", {}, m.version), el("td", {}, status), el("td", {}, m.createdAt ? new Date(m.createdAt).toLocaleString() : ""),
          el("td", {}, `${pct(x.rocAuc)} (${pct(x.baselineRocAuc)})`), el("td", {}, `${pct(x.precision)} / ${pct(x.recall)}`),
          el("td", {}, `${fixed(x.rulWholeLifeMaeHours, 1)} (${fixed(x.baselineRulWholeLifeMaeHours, 1)}); last 7 d ${fixed(x.rulMaeHours, 1)} (${fixed(x.baselineRulMaeHours, 1)})`),
          el("td", {}, `${fixed(x.rulIntervalCoverage, 2)}`),
          el("td", {}, `${x.trainExamples ?? 0} / ${x.testExamples ?? 0}`), el("td", {}, activate));
      }));
    } catch (error) {
      $("#models-error").textContent = error.message;
    }
  }
  $("#retrain").onclick = async () => {
    $("#retrain-status").textContent = "";
    try {
      let { job } = await call("twin.v1.ModelService/Retrain", { force: true });
      const bar = $("#retrain-progress");
      bar.hidden = false;
      while (alive && job && ["JOB_STATE_QUEUED", "JOB_STATE_RUNNING"].includes(job.state)) {
        bar.value = job.progress ?? 0;
        $("#retrain-status").textContent = job.stage || "queued";
        await new Promise((resolve) => setTimeout(resolve, 1000));
        job = (await call("twin.v1.ModelService/GetTrainingJob", { jobId: job.id })).job;
      }
      bar.hidden = true;
      $("#retrain-status").textContent = job?.state === "JOB_STATE_SUCCEEDED" ? `trained ${job.modelVersion}${job.promoted ? " (promoted)" : " (not promoted)"}` : `failed: ${job?.error || ""}`;
      load();
    } catch (error) {
      $("#retrain-status").textContent = error.message;
    }
  };
  load();
}

// ---------- alerts ----------

function alertsView() {
  show("alerts");
  leave = () => {};
  async function load() {
    $("#alerts-error").textContent = "";
    try {
      const answer = await call("twin.v1.TwinService/ListAlerts", { states: ["ALERT_STATE_OPEN", "ALERT_STATE_ACKNOWLEDGED"], pageSize: 500, includeShelved: $("#alerts-shelved").checked });
      $("#alerts tbody").replaceChildren(...(answer.alerts || []).map((a) => alertRow(a, async (m, id, c) => {
        try {
          await changeAlert(m, id, c);
          load();
        } catch (error) {
          $("#alerts-error").textContent = error.message;  // the list stays as it was
        }
      })));
    } catch (error) {
      $("#alerts-error").textContent = error.message;
    }
  }
  $("#alerts-shelved").onchange = load;
  load();
}

// ---------- notifications ----------

function notificationsView() {
  show("notifications");
  let alive = true;
  leave = () => { alive = false; };
  let version = "";
  const count = (v) => `${v ?? 0}`;
  async function load() {
    $("#notify-error").textContent = "";
    try {
      const status = await call("twin.v1.TwinService/GetNotificationStatus", {});
      if (!alive) return;
      $("#notify-summary").textContent = status.version && status.version !== "none"
        ? `Configuration ${status.version}${status.path ? ` from ${status.path}` : ""}; routes: ${(status.routes || []).join(", ") || "none"}`
        : "No channels yet: nothing is sent.";
      if (status.lastError) $("#notify-error").textContent = `The last reload failed; this stayed in force: ${status.lastError}`;
      $("#channels tbody").replaceChildren(...(status.channels || []).map((c) => el("tr", { "data-channel": c.name },
        el("td", {}, c.name), el("td", {}, c.type), el("td", {}, c.target),
        el("td", {}, count(c.delivered)), el("td", {}, count(c.pending)), el("td", {}, count(c.failed)),
        el("td", {}, c.consecutiveFailures ? `failing (${c.consecutiveFailures})` : c.rateLimited ? "rate limited" : "ok"),
        el("td", {}, c.lastError || ""),
        el("td", {}, isAdmin() ? el("button", { class: "test", type: "button", onclick: async () => {
          $("#notify-test-result").textContent = `Sending a test message on ${c.name}…`;
          try {
            const r = await call("twin.v1.TwinService/TestNotification", { channel: c.name });
            $("#notify-test-result").textContent = `${c.name}: ${r.delivered ? "delivered" : "not delivered"}${r.result ? ` — ${r.result}` : ""}`;
          } catch (error) {
            $("#notify-test-result").textContent = `${c.name}: ${error.message}`;
          }
          load();
        } }, "Send a test") : ""))));
      $("#notify-form").hidden = !isAdmin();
      if (isAdmin()) {
        const config = await call("twin.v1.TwinService/GetNotifyConfig", {});
        if (!alive) return;
        version = config.version || "";
        $("#notify-text").value = config.text || "";
      }
    } catch (error) {
      $("#notify-error").textContent = error.message;
    }
  }
  async function submit(validateOnly) {
    $("#notify-result").textContent = "";
    $("#notify-error").textContent = "";
    try {
      const r = await call("twin.v1.TwinService/SetNotifyConfig", { text: $("#notify-text").value, validateOnly, expectedVersion: version });
      const what = `${(r.channels || []).length} channels, ${(r.routes || []).length} routes`;
      $("#notify-result").textContent = validateOnly ? `Checks out: ${what}.` : `In force (${what}), written to ${r.path}.`;
      if (!validateOnly) load();
    } catch (error) {
      $("#notify-error").textContent = error.message;
    }
  }
  $("#notify-check").onclick = () => submit(true);
  $("#notify-form").onsubmit = (event) => { event.preventDefault(); submit(false); };
  load();
}

// ---------- recommendations ----------

async function recommendationsView() {
  show("recommendations");
  try {
    const answer = await call("twin.v1.TwinService/GetRecommendations", {});
    $("#recommendations tbody").replaceChildren(...(answer.recommendations || []).map((r) => el("tr", {},
      el("td", {}, (r.priority || "").replace("PRIORITY_", "").toLowerCase()),
      el("td", {}, el("a", { href: `#/device/${encodeURIComponent(r.deviceId)}` }, r.deviceId)),
      el("td", {}, r.title || (r.action || "").replace("RECOMMENDED_ACTION_", "").toLowerCase()),
      el("td", {}, (r.evidence || []).map((e) => e.description).join("; ") + (r.expectedEffect ? ` — ${r.expectedEffect}` : "")),
      el("td", {}, r.deadline ? new Date(r.deadline).toLocaleString() : ""))));
  } catch (error) {
    $("#recommendations tbody").replaceChildren(el("tr", {}, el("td", {}, error.message)));
  }
}

route();
