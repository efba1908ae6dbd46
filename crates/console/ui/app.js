// The Portcullis console. Plain JavaScript, no build step, no dependency.
// Every value that came from traffic (paths, evidence, user agents) is put
// in the page as text, never as HTML.

const view = document.getElementById("view");
const statusBox = document.getElementById("status");
let csrf = null;
let user = null;

// ---------------------------------------------------------------- helpers

/** Creates an element: h("a", {href: "#"}, "text", child, ...). */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

/** Replaces the page's content. */
function show(...children) {
  view.replaceChildren();
  append(view, children);
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

function say(message, kind = "ok") {
  statusBox.className = `status ${kind}`;
  statusBox.setAttribute("role", kind === "error" ? "alert" : "status");
  statusBox.textContent = message;
}

function time(ms) {
  if (ms === null || ms === undefined) return "";
  const d = new Date(ms);
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

function number(n) {
  return (n ?? 0).toLocaleString("en-US");
}

function field(label, input, hint) {
  const id = input.id || `f-${Math.random().toString(36).slice(2)}`;
  input.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hint ? h("small", {}, hint) : null);
}

function select(id, options, value) {
  const el = h("select", { id });
  for (const [v, text] of options) {
    const opt = h("option", { value: v }, text);
    if (String(v) === String(value ?? "")) opt.selected = true;
    el.append(opt);
  }
  return el;
}

function table(headers, rows, caption) {
  return h(
    "table",
    {},
    caption ? h("caption", {}, caption) : null,
    h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
    h("tbody", {}, rows.length ? rows : h("tr", {}, h("td", { colspan: headers.length, class: "empty" }, "Nothing yet."))),
  );
}

/** The query of the hash route: #/events?cid=x -> {cid: "x"}. */
function routeQuery() {
  const hash = location.hash || "#/dashboard";
  const at = hash.indexOf("?");
  return at < 0 ? {} : Object.fromEntries(new URLSearchParams(hash.slice(at + 1)));
}

// -------------------------------------------------------------------- API

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error || `HTTP ${status}`);
    this.status = status;
    this.errors = body?.errors || [];
  }
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (response.status === 401 && path !== "/api/login") {
    showLogin("Your session ended; log in again.");
    throw new ApiError(401, data);
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return data;
}

const get = (path) => api("GET", path);
const post = (path, body) => api("POST", path, body ?? {});

// ------------------------------------------------------------------ login

function showLogin(message) {
  csrf = null;
  user = null;
  document.querySelector("header.top").hidden = true;
  const userInput = h("input", { id: "login-user", name: "username", autocomplete: "username", required: true, value: "admin" });
  const password = h("input", { id: "login-password", name: "password", type: "password", autocomplete: "current-password", required: true });
  const error = h("p", { class: "error", role: "alert" }, message || "");
  const form = h(
    "form",
    { class: "login card", "aria-labelledby": "login-title" },
    h("h1", { id: "login-title" }, "Portcullis console"),
    field("User", userInput),
    field("Password", password),
    error,
    h("button", { type: "submit" }, "Log in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    error.textContent = "";
    try {
      const session = await post("/api/login", { username: userInput.value, password: password.value });
      startSession(session);
    } catch (e) {
      error.textContent = e.message;
      password.select();
    }
  });
  show(form);
  (message ? password : userInput).focus();
}

function startSession(session) {
  csrf = session.csrf_token || null;
  user = session.user;
  document.getElementById("who").textContent = user;
  document.querySelector("header.top").hidden = false;
  if (!location.hash || location.hash === "#/login") location.hash = "#/dashboard";
  else render();
}

document.getElementById("logout").addEventListener("click", async () => {
  try {
    await post("/api/logout");
  } finally {
    showLogin("Logged out.");
  }
});

// ----------------------------------------------------------------- router

const pages = {
  dashboard: dashboardPage,
  events: eventsPage,
  policies: policiesPage,
  lists: listsPage,
  audit: auditPage,
  tokens: tokensPage,
};

async function render() {
  if (!user) return;
  const path = (location.hash || "#/dashboard").slice(2).split("?")[0];
  const [name, arg] = path.split("/");
  const page = pages[name] || dashboardPage;
  for (const link of document.querySelectorAll("nav a")) {
    if (link.getAttribute("href") === `#/${name}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  say("");
  show(h("p", { class: "loading" }, "Loading…"));
  try {
    await page(arg);
  } catch (e) {
    if (e.status !== 401) show(h("p", { class: "error", role: "alert" }, `Could not load: ${e.message}`));
  }
  view.focus({ preventScroll: true });
}

window.addEventListener("hashchange", render);

// -------------------------------------------------------------- dashboard

let dashboardWindow = "hour";
const COLORS = ["#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#64748b"];

async function dashboardPage() {
  const w = dashboardWindow;
  const [summary, byAction, byLayer, byReason, challenges] = await Promise.all([
    get(`/api/dashboard/summary?window=${w}`),
    get(`/api/dashboard/series?window=${w}&group=action`),
    get(`/api/dashboard/series?window=${w}&group=layer&kind=intercept`),
    get(`/api/dashboard/series?window=${w}&group=reason&kind=intercept`),
    get(`/api/dashboard/challenges?window=${w}`),
  ]);
  const t = summary.totals;
  const trial = summary.trial.reduce((n, c) => n + c.events, 0);
  const toggle = h(
    "div",
    { class: "toggle", role: "group", "aria-label": "Time window" },
    [["hour", "Last hour"], ["day", "Last day"]].map(([value, label]) =>
      h("button", {
        type: "button",
        "aria-pressed": String(value === w),
        onclick: () => { dashboardWindow = value; render(); },
      }, label),
    ),
  );
  const card = (id, label, value, extra) =>
    h("div", { class: `stat ${extra || ""}` }, h("span", { class: "label", id: `${id}-label` }, label), h("span", { class: "value", id, "aria-labelledby": `${id}-label` }, number(value)));
  const store = summary.store;
  show(
    h("div", { class: "heading" }, h("h1", {}, "Dashboard"), toggle),
    h(
      "section",
      { class: "stats", "aria-label": "Totals" },
      card("total-requests", "Requests", t.requests),
      card("total-passes", "Passed", t.passes, "pass"),
      card("total-challenges", "Challenged", t.challenges, "challenge"),
      card("total-intercepts", "Intercepted", t.intercepts, "intercept"),
      card("total-trial", "Would stop (log-only)", trial),
      store ? card("store-dropped", "Events dropped", store.dropped) : null,
    ),
    h("div", { class: "charts" },
      chart("Requests by action", byAction, w),
      chart("Intercepts by layer", byLayer, w),
      chart("Intercepts by reason", byReason, w),
      rateChart("Challenge solve rate by route", challenges, w),
    ),
    h("h2", {}, "Challenges"),
    challengeTable(challenges),
    h("h2", {}, "Top lists"),
    h("div", { class: "tops", id: "tops" }, h("p", { class: "loading" }, "Loading…")),
  );
  const fields = [["client_ip", "Client addresses", "ip"], ["device", "Devices", "device"], ["account", "Accounts", "account"], ["route", "Routes", "route"]];
  const tops = await Promise.all(fields.map(([f]) => get(`/api/dashboard/top?window=${w}&field=${f}&limit=10`)));
  document.getElementById("tops")?.replaceChildren(
    ...fields.map(([, title, filter], i) =>
      table(["Value", "Requests", "Intercepts"], tops[i].map((e) =>
        h("tr", {},
          h("td", {}, h("a", { href: `#/events?${new URLSearchParams({ [filter]: e.key })}` }, e.key)),
          h("td", { class: "num" }, number(e.requests)),
          h("td", { class: "num" }, number(e.intercepts)),
        )), title),
    ),
  );
}

const percent = (rate) => (rate === null || rate === undefined ? "–" : `${Math.round(rate * 100)}%`);
const routeName = (route) => route || "(the check)";

/** Per route: challenged devices, how they fared, and the solve rate. */
function challengeTable(reply) {
  const rows = reply.routes.map((r) =>
    h("tr", {},
      h("td", {}, r.route ? h("a", { href: `#/events?${new URLSearchParams({ route: r.route })}` }, r.route) : routeName(r.route)),
      h("td", { class: "num" }, number(r.total.challenged)),
      h("td", { class: "num" }, number(r.total.solved)),
      h("td", { class: "num" }, h("a", { href: "#/events?rule=portal_failed" }, number(r.total.failed))),
      h("td", { class: "num" }, h("a", { href: "#/events?rule=portal_limited" }, number(r.total.limited))),
      h("td", { class: "num", "data-route": r.route }, percent(r.total.solve_rate)),
    ));
  if (!rows.length) return h("p", { class: "empty", id: "challenges" }, "No challenges in this window.");
  const caption = `Challenge solve rate per route (a device counts as solving when it gets a clearance within ${reply.window_ms / 1000} s of its challenge; "(the check)" counts every call to the check)`;
  const t = table(["Route", "Challenged", "Solved", "Failed", "Limited", "Solve rate"], rows, caption);
  t.id = "challenges";
  return t;
}

/** The solve rate of each route, minute by minute, in percent. */
function rateChart(title, reply, windowName) {
  const step = windowName === "day" ? 10 : 1;
  const from = reply.from_minute;
  const buckets = Math.ceil((reply.to_minute - from) / step);
  const lines = reply.routes.slice(0, 8).map((r) => {
    const challenged = new Array(buckets).fill(0);
    const solved = new Array(buckets).fill(0);
    for (const m of r.minutes) {
      const i = Math.floor((m.minute - from) / step);
      if (i >= 0 && i < buckets) { challenged[i] += m.challenged; solved[i] += m.solved; }
    }
    // A bucket without challenges has no rate: the line keeps the last one.
    let last = null;
    const values = challenged.map((c, i) => (last = c ? Math.min(100, (100 * solved[i]) / c) : last));
    return { key: routeName(r.route), values: values.map((v) => v ?? 0), total: r.total.challenged, summary: percent(r.total.solve_rate) };
  });
  return plot(title, lines, reply, step, 100, "%");
}

/** A line chart of minute series as inline SVG, with a text summary. */
function chart(title, reply, windowName) {
  const from = reply.from_minute;
  const to = reply.to_minute;
  const step = windowName === "day" ? 10 : 1;
  const buckets = Math.ceil((to - from) / step);
  const shown = reply.series.slice(0, 7);
  const rest = reply.series.slice(7);
  if (rest.length) {
    const other = { key: "other", points: rest.flatMap((x) => x.points) };
    shown.push(other);
  }
  const lines = shown.map((series) => {
    const values = new Array(buckets).fill(0);
    for (const [minute, count] of series.points) {
      const i = Math.floor((minute - from) / step);
      if (i >= 0 && i < buckets) values[i] += count;
    }
    const total = values.reduce((a, b) => a + b, 0);
    return { key: series.key || "(none)", values, total, summary: number(total) };
  });
  return plot(title, lines, reply, step, Math.max(1, ...lines.flatMap((l) => l.values)), "");
}

/** Draws `lines` ({key, values, summary}) over the reply's minutes. */
function plot(title, lines, reply, step, max, unit) {
  const from = reply.from_minute;
  const to = reply.to_minute;
  const buckets = Math.ceil((to - from) / step);
  const W = 600, H = 180, L = 40, B = 22;
  const x = (i) => L + (i * (W - L - 8)) / Math.max(1, buckets - 1);
  const y = (v) => H - B - (v * (H - B - 8)) / max;
  const label = `${title}: ${lines.map((l) => `${l.key} ${l.summary}`).join(", ") || "no events"}`;
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, class: "chart" },
    s("title", {}, label),
    s("line", { x1: L, y1: H - B, x2: W - 8, y2: H - B, class: "axis" }),
    s("line", { x1: L, y1: 8, x2: L, y2: H - B, class: "axis" }),
    s("text", { x: L - 6, y: 14, "text-anchor": "end", class: "tick" }, `${number(max)}${unit}`),
    s("text", { x: L - 6, y: H - B, "text-anchor": "end", class: "tick" }, "0"),
    s("text", { x: L, y: H - 6, class: "tick" }, time(from * 60000).slice(11, 16)),
    s("text", { x: W - 8, y: H - 6, "text-anchor": "end", class: "tick" }, time(to * 60000).slice(11, 16)),
    lines.map((line, n) =>
      s("polyline", {
        points: line.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" "),
        fill: "none",
        stroke: COLORS[n % COLORS.length],
        "stroke-width": 2,
        "data-series": line.key,
      }),
    ),
  );
  const legend = h("ul", { class: "legend" }, lines.map((line, n) =>
    h("li", {}, h("span", { class: `swatch c${n % COLORS.length}`, "aria-hidden": "true" }), `${line.key} (${line.summary})`)));
  return h("figure", { class: "card" }, h("figcaption", {}, title, step > 1 ? h("small", {}, ` per ${step} minutes`) : null), svg, lines.length ? legend : h("p", { class: "empty" }, "No events in this window."));
}

// -------------------------------------------------------- interception log

const FILTERS = [
  ["cid", "Challenge id (cid)"], ["request_id", "Request id"], ["ip", "Client address"], ["route", "Route"],
  ["device", "Device"], ["account", "Account"], ["rule", "Rule"], ["class", "Traffic class"],
];

async function eventsPage(id) {
  if (id) return eventDetail(id);
  const q = routeQuery();
  const inputs = {};
  const form = h("form", { class: "filters card", "aria-label": "Filters" });
  for (const [name, label] of FILTERS) {
    inputs[name] = h("input", { id: `f-${name}`, name, value: q[name] || "" });
    form.append(field(label, inputs[name]));
  }
  inputs.action = select("f-action", [["", "any"], ["pass", "pass"], ["block", "block"], ["intercept", "intercept"], ["challenge", "challenge"], ["refuse", "refuse"], ["throttle", "throttle"], ["bad_request", "bad_request"]], q.action);
  inputs.kind = select("f-kind", [["", "any"], ["intercept", "intercepted"], ["challenge", "challenged"], ["pass", "passed"]], q.kind);
  const local = (ms) => (ms ? new Date(Number(ms) - new Date().getTimezoneOffset() * 60000).toISOString().slice(0, 16) : "");
  inputs.from = h("input", { id: "f-from", type: "datetime-local", value: local(q.from_ms) });
  inputs.to = h("input", { id: "f-to", type: "datetime-local", value: local(q.to_ms) });
  inputs.trial = h("input", { id: "f-trial", type: "checkbox" });
  inputs.trial.checked = q.trial === "true";
  form.append(
    field("Action", inputs.action), field("Outcome", inputs.kind), field("From", inputs.from), field("To", inputs.to),
    h("div", { class: "field check" }, inputs.trial, h("label", { for: "f-trial" }, "Only what log-only policies would have stopped")),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Search"), h("a", { href: "#/events", class: "button secondary" }, "Clear")),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const params = new URLSearchParams();
    for (const [name] of FILTERS) if (inputs[name].value.trim()) params.set(name, inputs[name].value.trim());
    if (inputs.action.value) params.set("action", inputs.action.value);
    if (inputs.kind.value) params.set("kind", inputs.kind.value);
    if (inputs.from.value) params.set("from_ms", new Date(inputs.from.value).getTime());
    if (inputs.to.value) params.set("to_ms", new Date(inputs.to.value).getTime());
    if (inputs.trial.checked) params.set("trial", "true");
    const next = `#/events?${params}`;
    if (location.hash === next) render();
    else location.hash = next;
  });
  const results = h("div", { id: "results" });
  show(h("h1", {}, "Interception log"), form, results);
  await loadEvents(results, q, null);
}

async function loadEvents(results, q, before) {
  const params = new URLSearchParams(q);
  if (!params.has("limit")) params.set("limit", "50");
  if (before) params.set("before_id", before);
  const page = await get(`/api/events?${params}`);
  const rows = page.events.map((e) => {
    const open = () => { location.hash = `#/events/${e.id}`; };
    return h("tr", { class: `ev ${kindOf(e.action)}`, "data-request-id": e.request_id },
      h("td", {}, h("a", { href: `#/events/${e.id}`, onclick: (ev) => { ev.preventDefault(); open(); } }, time(e.ts_ms))),
      h("td", {}, h("span", { class: `badge ${kindOf(e.action)}` }, e.action), e.would ? h("span", { class: "badge trial" }, `would ${e.would}`) : null),
      h("td", { class: "num" }, e.status),
      h("td", { class: "path" }, `${e.method} ${e.host}${e.path}`),
      h("td", {}, e.client_ip),
      h("td", {}, e.route || ""),
      h("td", { class: "num" }, e.risk_rank ?? ""),
      h("td", {}, e.rule || reasonOf(e)),
      h("td", { class: "mono" }, e.cid || ""),
    );
  });
  const more = page.next_before_id
    ? h("button", { type: "button", class: "secondary", onclick: async (ev) => { ev.target.remove(); await loadEvents(results, q, page.next_before_id); } }, "Older events")
    : null;
  const t = table(["Time", "Action", "Status", "Request", "Client", "Route", "Rank", "Reason", "cid"], rows, before ? null : `${page.events.length}${page.next_before_id ? "+" : ""} events`);
  t.classList.add("events");
  results.append(t, more || "");
}

function kindOf(action) {
  if (action === "pass") return "pass";
  if (action === "challenge") return "challenge";
  return "intercept";
}

function reasonOf(event) {
  const signals = Array.isArray(event.signals) ? event.signals : [];
  const top = signals.reduce((best, x) => (!best || (x.weight ?? 0) > (best.weight ?? 0) ? x : best), null);
  return top ? top.name : "";
}

async function eventDetail(id) {
  const e = await get(`/api/events/${encodeURIComponent(id)}`);
  const facts = [
    ["Time", time(e.ts_ms)], ["Request id", e.request_id], ["Action", e.action], ["Would (log-only)", e.would],
    ["Status", e.status], ["Layer", e.layer], ["Request", `${e.method} ${e.host}${e.path}`], ["Client address", e.client_ip],
    ["Traffic class", e.class], ["Route (policy)", e.route], ["Risk rank", e.risk_rank], ["Device risk rank", e.device_risk_rank],
    ["cid", e.cid], ["Device", e.device_id], ["Account", e.account_id], ["Rule", e.rule], ["Duration", `${e.duration_us} µs`],
  ].filter(([, v]) => v !== null && v !== undefined && v !== "");
  const signals = (Array.isArray(e.signals) ? e.signals : []).map((x) =>
    h("tr", {}, h("td", {}, x.name), h("td", {}, x.layer), h("td", { class: "num" }, x.weight), h("td", { class: "evidence" }, x.evidence), h("td", {}, x.demand?.kind || "")));
  show(
    h("p", {}, h("a", { href: "#/events", onclick: (ev) => { ev.preventDefault(); history.length > 1 ? history.back() : (location.hash = "#/events"); } }, "← Back to the log")),
    h("h1", {}, `Event ${e.request_id}`),
    h("dl", { class: "facts card" }, facts.map(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])),
    e.reasons?.length ? [h("h2", {}, "Reasons of the rank"), h("ul", {}, e.reasons.map((r) => h("li", {}, r)))] : null,
    h("h2", {}, "Signals and evidence"),
    table(["Signal", "Layer", "Weight", "Evidence", "Demand"], signals),
    h("details", {}, h("summary", {}, "Raw event"), h("pre", {}, JSON.stringify(e, null, 2))),
  );
}

// --------------------------------------------------------------- policies

const RANKS = [["", "never"], ["0", "0"], ["1", "1"], ["2", "2"], ["3", "3"], ["4", "4"]];
const KEY_PARTS = ["ip", "ip_prefix", "device", "account", "route"];

async function policiesPage() {
  const [current, history, trial] = await Promise.all([
    get("/api/policies"),
    get("/api/policies/history?limit=50"),
    get("/api/policies/trial?window=hour").catch(() => ({ counts: [] })),
  ]);
  const policies = structuredClone(current.effective.policies);
  const limits = structuredClone(current.effective.rate_limits);
  const errors = h("div", { id: "apply-errors", role: "alert" });
  const policyList = h("div", { class: "stack", id: "policy-list" });
  const limitList = h("div", { class: "stack", id: "limit-list" });

  const redraw = () => {
    const none = (what) => h("p", { class: "empty" }, `No ${what}.`);
    policyList.replaceChildren(...(policies.length ? policies.map((p, i) => policyCard(p, i, policies, trial, redraw)) : [none("policies: every URL passes layer 3")]));
    limitList.replaceChildren(...(limits.length ? limits.map((r, i) => limitCard(r, i, limits, redraw)) : [none("rate limits")]));
  };
  redraw();

  const comment = h("input", { id: "apply-comment", placeholder: "What and why" });
  const documentOf = () => ({ policies, rate_limits: limits, ip_lists: current.document.ip_lists || {} });
  const showErrors = (list) => {
    errors.replaceChildren(list.length ? h("ul", { class: "errors" }, list.map((x) =>
      h("li", {}, h("a", { href: `#${fieldId(x.field)}`, onclick: (ev) => { ev.preventDefault(); document.getElementById(fieldId(x.field))?.focus(); } }, x.field || "configuration"), `: ${x.message}`))) : "");
  };
  const validate = async () => {
    const result = await post("/api/policies/validate", documentOf());
    showErrors(result.errors);
    say(result.valid ? "Valid: ready to apply." : `${result.errors.length} problem(s) to fix.`, result.valid ? "ok" : "error");
  };
  const apply = async () => {
    try {
      const applied = await post("/api/policies/apply", { document: documentOf(), comment: comment.value, base_version: current.overlay_version });
      showErrors([]);
      await render();
      say(`Applied as version ${applied.version} (configuration ${applied.config_version}): ${applied.summary}`);
    } catch (e) {
      showErrors(e.errors);
      say(e.message, "error");
    }
  };
  const source = current.document.policies ? "the console" : "the configuration file";
  show(
    h("div", { class: "heading" }, h("h1", {}, "Policies"),
      h("span", { class: "meta" }, `Version ${current.overlay_version ?? 0}${current.in_force ? "" : " (not in force)"} · configuration ${current.config_version} · policies from ${source}`)),
    h("p", { class: "hint" }, "Only core URLs named here get a risk rank and a decision; the first matching policy applies. Log-only policies record what they would do and let requests through."),
    policyList,
    h("button", { type: "button", class: "secondary", onclick: () => { policies.push({ name: `policy-${policies.length + 1}`, path: "/api/", mode: "log-only" }); redraw(); } }, "Add a policy"),
    h("h2", {}, "Rate limits"),
    limitList,
    h("button", { type: "button", class: "secondary", onclick: () => { limits.push({ name: `limit-${limits.length + 1}`, path: "/", key: ["ip"], rate: 10, burst: 20, action: "reject" }); redraw(); } }, "Add a rate limit"),
    h("section", { class: "apply card", "aria-label": "Apply" },
      field("Comment", comment),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "secondary", onclick: validate }, "Validate"),
        h("button", { type: "button", id: "apply", onclick: apply }, "Apply")),
      errors),
    h("h2", {}, "History"),
    historyTable(history),
  );
}

/** `policies[0].intercept.status` -> the id of its input. */
function fieldId(path) {
  return `in-${(path || "").replace(/[^a-zA-Z0-9]+/g, "-")}`;
}

function policyCard(p, i, all, trial, redraw) {
  const id = (name) => fieldId(`policies[${i}].${name}`);
  const text = (name, value, onchange, attrs = {}) => h("input", { id: id(name), value: value ?? "", onchange: (e) => onchange(e.target.value), ...attrs });
  const list = (v) => v.split(",").map((x) => x.trim()).filter(Boolean);
  const rank = (name) => {
    const el = select(id(name), RANKS, p[name]);
    el.addEventListener("change", () => { p[name] = el.value === "" ? null : Number(el.value); });
    return el;
  };
  const mode = select(id("mode"), [["enforce", "enforce"], ["log-only", "log-only (trial)"]], p.mode || "enforce");
  mode.addEventListener("change", () => { p.mode = mode.value; });
  const clearance = select(id("clearance"), [["off", "off"], ["optional", "optional"], ["required", "required"]], p.clearance || "off");
  clearance.addEventListener("change", () => { p.clearance = clearance.value; });
  const custom = h("input", { type: "checkbox", id: id("intercept-custom") });
  custom.checked = !!p.intercept;
  const response = p.intercept || { status: 403, content_type: "application/json", body: "{\"error\":\"blocked\",\"request_id\":\"{{request_id}}\"}" };
  const responseFields = h("div", { class: "grid", hidden: !p.intercept },
    field("Status", h("input", { id: id("intercept.status"), type: "number", min: 200, max: 599, value: response.status, onchange: (e) => { response.status = Number(e.target.value); } })),
    field("Content type", h("input", { id: id("intercept.content_type"), value: response.content_type || "application/json", onchange: (e) => { response.content_type = e.target.value; } })),
    field("Body", h("textarea", { id: id("intercept.body"), rows: 2, onchange: (e) => { response.body = e.target.value; } }, response.body || ""), "{{request_id}} is replaced"),
  );
  custom.addEventListener("change", () => {
    p.intercept = custom.checked ? response : null;
    responseFields.hidden = !custom.checked;
  });
  const flag = (name, label, fallback) => {
    const box = h("input", { type: "checkbox", id: id(name) });
    box.checked = p[name] ?? fallback;
    box.addEventListener("change", () => { p[name] = box.checked; });
    return h("div", { class: "field check" }, box, h("label", { for: id(name) }, label));
  };
  const counts = trial.counts.filter((c) => c.route === p.name);
  const trialNote = p.mode === "log-only"
    ? h("p", { class: "trial-note" }, counts.length
      ? `Last hour, this trial would have ${counts.map((c) => `${c.would === "intercept" ? "intercepted" : "challenged"} ${number(c.events)}`).join(" and ")} request(s). `
      : "Last hour, this trial would have stopped nothing. ",
      h("a", { href: `#/events?${new URLSearchParams({ route: p.name, trial: "true" })}` }, "See them"))
    : null;
  const move = (delta) => { const j = i + delta; if (j < 0 || j >= all.length) return; [all[i], all[j]] = [all[j], all[i]]; redraw(); };
  return h("fieldset", { class: "card policy", "data-policy": p.name },
    h("legend", {}, `Policy ${i + 1}: ${p.name}`),
    trialNote,
    h("div", { class: "grid" },
      field("Name", text("name", p.name, (v) => { p.name = v; })),
      field("Path", text("path", p.path, (v) => { p.path = v; }), "prefix, * wildcards, $ for an exact path"),
      field("Methods", text("methods", (p.methods || []).join(", "), (v) => { p.methods = list(v); }), "comma separated; empty = any"),
      field("Hosts", text("hosts", (p.hosts || []).join(", "), (v) => { p.hosts = list(v); }), "comma separated; empty = any"),
      field("Challenge from rank", rank("challenge_at")),
      field("Intercept from rank", rank("intercept_at")),
      field("Clearance", clearance),
      field("Mode", mode),
    ),
    h("div", { class: "row" },
      flag("risk_headers", "Send risk headers to the origin", true),
      flag("debug", "Also send the reasons", false),
      flag("signature", "Require signed requests", false),
      h("div", { class: "field check" }, custom, h("label", { for: id("intercept-custom") }, "Custom intercept response"))),
    responseFields,
    h("div", { class: "actions" },
      h("button", { type: "button", class: "secondary", onclick: () => move(-1), disabled: i === 0 }, "Move up"),
      h("button", { type: "button", class: "secondary", onclick: () => move(1), disabled: i === all.length - 1 }, "Move down"),
      h("button", { type: "button", class: "danger", onclick: () => { all.splice(i, 1); redraw(); } }, `Remove ${p.name}`)),
  );
}

function limitCard(r, i, all, redraw) {
  const id = (name) => fieldId(`rate_limits[${i}].${name}`);
  const list = (v) => v.split(",").map((x) => x.trim()).filter(Boolean);
  const keys = h("fieldset", { class: "keys" }, h("legend", {}, "Counted per"),
    KEY_PARTS.map((part) => {
      const box = h("input", { type: "checkbox", id: id(`key-${part}`) });
      box.checked = (r.key || ["ip"]).includes(part);
      box.addEventListener("change", () => {
        const set = new Set(r.key || ["ip"]);
        if (box.checked) set.add(part); else set.delete(part);
        r.key = KEY_PARTS.filter((k) => set.has(k));
      });
      return h("span", { class: "check" }, box, h("label", { for: id(`key-${part}`) }, part));
    }));
  const action = select(id("action"), [["reject", "reject (429)"], ["tag", "tag only"]], r.action || "reject");
  action.addEventListener("change", () => { r.action = action.value; });
  const esc = r.escalate || { violations: 10, within_s: 60, ban_s: 60, max_ban_s: 86400 };
  const escalate = h("input", { type: "checkbox", id: id("escalate-on") });
  escalate.checked = !!r.escalate;
  const escFields = h("div", { class: "grid", hidden: !r.escalate },
    ["violations", "within_s", "ban_s", "max_ban_s"].map((k) =>
      field(k.replace("_s", " (s)").replace("_", " "), h("input", { id: id(`escalate.${k}`), type: "number", min: 1, value: esc[k], onchange: (e) => { esc[k] = Number(e.target.value); } }))));
  escalate.addEventListener("change", () => { r.escalate = escalate.checked ? esc : null; escFields.hidden = !escalate.checked; });
  return h("fieldset", { class: "card limit" },
    h("legend", {}, `Rate limit ${i + 1}: ${r.name}`),
    h("div", { class: "grid" },
      field("Name", h("input", { id: id("name"), value: r.name, onchange: (e) => { r.name = e.target.value; } })),
      field("Path", h("input", { id: id("path"), value: r.path, onchange: (e) => { r.path = e.target.value; } })),
      field("Methods", h("input", { id: id("methods"), value: (r.methods || []).join(", "), onchange: (e) => { r.methods = list(e.target.value); } })),
      field("Rate (per second)", h("input", { id: id("rate"), type: "number", min: 0, step: "any", value: r.rate, onchange: (e) => { r.rate = Number(e.target.value); } })),
      field("Burst", h("input", { id: id("burst"), type: "number", min: 1, value: r.burst, onchange: (e) => { r.burst = Number(e.target.value); } })),
      field("Action", action),
    ),
    keys,
    h("div", { class: "field check" }, escalate, h("label", { for: id("escalate-on") }, "Ban repeat offenders")),
    escFields,
    h("div", { class: "actions" }, h("button", { type: "button", class: "danger", onclick: () => { all.splice(i, 1); redraw(); } }, `Remove ${r.name}`)),
  );
}

function historyTable(history) {
  const rollback = async (version) => {
    try {
      const applied = await post("/api/policies/rollback", { version });
      await render();
      say(`Rolled back: now version ${applied.version} (${applied.summary}).`);
    } catch (e) {
      say(e.message, "error");
    }
  };
  const rows = history.map((v, n) => h("tr", {},
    h("td", { class: "num" }, v.version),
    h("td", {}, time(v.ts_ms)),
    h("td", {}, v.actor),
    h("td", {}, v.comment || (v.rollback_of !== null && v.rollback_of !== undefined ? `rollback to ${v.rollback_of}` : "")),
    h("td", {}, v.summary),
    h("td", {}, n === 0 ? h("span", { class: "badge pass" }, "live") : h("button", { type: "button", class: "secondary", onclick: () => rollback(v.version) }, `Roll back to ${v.version}`)),
  ));
  rows.push(h("tr", {},
    h("td", { class: "num" }, 0), h("td", {}, ""), h("td", {}, ""), h("td", {}, "The configuration file alone"), h("td", {}, ""),
    h("td", {}, history.length ? h("button", { type: "button", class: "secondary", onclick: () => rollback(0) }, "Roll back to 0") : h("span", { class: "badge pass" }, "live"))));
  return table(["Version", "When", "Who", "Comment", "Change", ""], rows);
}

// ------------------------------------------------------------ lists, bans

async function listsPage() {
  const [lists, bans] = await Promise.all([get("/api/lists"), get("/api/bans")]);
  const area = (id, values) => h("textarea", { id, rows: 6, spellcheck: "false" }, values.join("\n"));
  const allow = area("allow", lists.allow);
  const deny = area("deny", lists.deny);
  const fromFile = (id, source) => { const box = h("input", { type: "checkbox", id }); box.checked = source === "file"; return box; };
  const allowFile = fromFile("allow-file", lists.allow_source);
  const denyFile = fromFile("deny-file", lists.deny_source);
  // Editing a list makes it the console's.
  allow.addEventListener("input", () => { allowFile.checked = false; });
  deny.addEventListener("input", () => { denyFile.checked = false; });
  const comment = h("input", { id: "lists-comment" });
  const errors = h("div", { role: "alert" });
  const lines = (el) => el.value.split(/\s+/).map((x) => x.trim()).filter(Boolean);
  const save = async (event) => {
    event.preventDefault();
    try {
      const applied = await api("PUT", "/api/lists", {
        allow: allowFile.checked ? null : lines(allow),
        deny: denyFile.checked ? null : lines(deny),
        comment: comment.value,
      });
      await render();
      say(`Lists applied as version ${applied.version}: ${applied.summary}`);
    } catch (e) {
      errors.replaceChildren(h("ul", { class: "errors" }, (e.errors.length ? e.errors : [{ field: "", message: e.message }]).map((x) => h("li", {}, `${x.field} ${x.message}`))));
    }
  };
  const banIp = h("input", { id: "ban-ip", required: true, placeholder: "203.0.113.7" });
  const banMinutes = h("input", { id: "ban-minutes", type: "number", min: 1, value: 60, required: true });
  const banReason = h("input", { id: "ban-reason" });
  const addBan = async (event) => {
    event.preventDefault();
    try {
      await post("/api/bans", { ip: banIp.value.trim(), ttl_s: Number(banMinutes.value) * 60, reason: banReason.value });
      await render();
      say(`${banIp.value} banned.`);
    } catch (e) {
      say(e.message, "error");
    }
  };
  const lift = async (ip) => {
    try {
      await api("DELETE", `/api/bans/${encodeURIComponent(ip)}`);
      await render();
      say(`Ban on ${ip} lifted.`);
    } catch (e) {
      say(e.message, "error");
    }
  };
  show(
    h("h1", {}, "Lists and bans"),
    h("form", { class: "card", onsubmit: save, "aria-labelledby": "lists-title" },
      h("h2", { id: "lists-title" }, "Allow and deny lists"),
      h("p", { class: "hint" }, "Addresses or CIDRs, one per line. The allow list skips reputation, classes and detection; the deny list is refused with 403."),
      h("div", { class: "grid two" },
        h("div", {}, field("Allow", allow), h("div", { class: "field check" }, allowFile, h("label", { for: "allow-file" }, "Use the configuration file's list"))),
        h("div", {}, field("Deny", deny), h("div", { class: "field check" }, denyFile, h("label", { for: "deny-file" }, "Use the configuration file's list")))),
      field("Comment", comment),
      errors,
      h("button", { type: "submit" }, "Apply lists")),
    h("h2", {}, "Temporary bans"),
    table(["Address", "Reason", "Until", ""], bans.map((b) => h("tr", {},
      h("td", {}, b.ip), h("td", {}, b.reason), h("td", {}, time(b.until * 1000)),
      h("td", {}, h("button", { type: "button", class: "secondary", onclick: () => lift(b.ip) }, `Lift ban on ${b.ip}`))))),
    h("form", { class: "card inline", onsubmit: addBan, "aria-label": "Ban an address" },
      field("Address", banIp), field("Minutes", banMinutes), field("Reason", banReason),
      h("button", { type: "submit" }, "Ban")),
  );
}

// ------------------------------------------------------------- audit log

async function auditPage() {
  const body = h("tbody");
  const more = h("button", { type: "button", class: "secondary" }, "Older entries");
  const load = async (before) => {
    const entries = await get(`/api/audit?limit=100${before ? `&before_id=${before}` : ""}`);
    for (const e of entries) {
      body.append(h("tr", {},
        h("td", {}, time(e.ts_ms)), h("td", {}, e.actor), h("td", {}, e.ip), h("td", {}, e.action), h("td", {}, e.target),
        h("td", {}, e.summary, e.before || e.after ? h("details", {}, h("summary", {}, "Before / after"),
          e.before ? [h("h3", {}, "Before"), h("pre", {}, e.before)] : null,
          e.after ? [h("h3", {}, "After"), h("pre", {}, pretty(e.after))] : null) : null)));
    }
    more.hidden = entries.length < 100;
    more.onclick = () => load(entries[entries.length - 1]?.id);
  };
  show(
    h("h1", {}, "Audit log"),
    h("table", {}, h("thead", {}, h("tr", {}, ["When", "Who", "From", "Action", "Target", "What"].map((x) => h("th", { scope: "col" }, x)))), body),
    more,
  );
  await load(null);
}

function pretty(text) {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

// ------------------------------------------------------------- API tokens

async function tokensPage() {
  const tokens = await get("/api/tokens");
  const name = h("input", { id: "token-name", required: true, maxlength: 64 });
  const shown = h("div", { "aria-live": "polite" });
  const create = async (event) => {
    event.preventDefault();
    try {
      const created = await post("/api/tokens", { name: name.value });
      await render();
      const secret = h("input", { id: "new-token", readonly: true, value: created.token, size: 60 });
      document.getElementById("token-shown")?.replaceChildren(
        h("div", { class: "card notice" }, field(`Token ${created.info.name}: copy it now, it is not shown again`, secret)));
      secret.focus();
      secret.select();
    } catch (e) {
      say(e.message, "error");
    }
  };
  const revoke = async (token) => {
    try {
      await api("DELETE", `/api/tokens/${token.id}`);
      await render();
      say(`Token ${token.name} revoked.`);
    } catch (e) {
      say(e.message, "error");
    }
  };
  shown.id = "token-shown";
  show(
    h("h1", {}, "API tokens"),
    h("p", { class: "hint" }, "For automation: send Authorization: Bearer <token>. Tokens have every right; revoke the ones you no longer use."),
    h("form", { class: "card inline", onsubmit: create, "aria-label": "Create a token" }, field("Name", name), h("button", { type: "submit" }, "Create token")),
    shown,
    table(["Name", "Created", "By", "Last used", "State", ""], tokens.map((t) => h("tr", {},
      h("td", {}, t.name), h("td", {}, time(t.created_ms)), h("td", {}, t.created_by), h("td", {}, time(t.last_used_ms)),
      h("td", {}, t.revoked_ms ? `revoked ${time(t.revoked_ms)}` : "active"),
      h("td", {}, t.revoked_ms ? "" : h("button", { type: "button", class: "danger", onclick: () => revoke(t) }, `Revoke ${t.name}`))))),
  );
}

// ------------------------------------------------------------------ start

(async () => {
  try {
    const response = await fetch("/api/session", { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (response.ok) startSession(await response.json());
    else showLogin("");
  } catch {
    showLogin("The console cannot be reached.");
  }
})();
