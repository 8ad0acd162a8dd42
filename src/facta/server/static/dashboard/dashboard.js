"use strict";
// The dashboard page: sign in, draw the panels of a dashboard as live queries, filter, zoom,
// add and remove panels (saved into the project file by PUT /dashboards/NAME).

const DRAW = window.FactaCharts.CHARTS;
const KIND_LABELS = {
  kpi: "KPI tile (one number)",
  bar: "Bar chart (top groups)",
  line: "Line chart (along a dimension)",
  series: "Time series",
  box: "Box plots per group",
  box_sequence: "Box plots over time",
  heatmap: "Heat map (two dimensions)",
  ellipse: "Scatter of groups with data ellipses",
};
const WIDTHS = ["1h", "1d", "1w", "1mo"];
const WIDTH_SECONDS = { "1h": 3600, "1d": 86400, "1w": 7 * 86400, "1mo": 31 * 86400 };
const PANEL_FIELDS = ["id", "title", "kind", "view", "measure", "group_by", "every", "x", "y", "where", "range", "k"];
const RESUBSCRIBE_AFTER_MS = 10000;

const state = {
  data: null,
  dashboard: null,
  csrf: null,
  views: new Map(), // PanelView by panel id
  hub: new LiveHub(),
  subscribedAt: 0,
  filters: [], // {dimension, value}
  zoom: null, // {from, to} in ms
  clock: null,
};

window.__facta = { panels: {}, position: null, head: null, lag: null, ready: false, errors: [] };

const $ = (id) => document.getElementById(id);

function csrfToken() {
  if (state.csrf) return state.csrf;
  const found = document.cookie.split("; ").find((c) => c.startsWith("facta_csrf="));
  return found ? decodeURIComponent(found.slice("facta_csrf=".length)) : "";
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET") headers["X-CSRF-Token"] = csrfToken();
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let payload = null;
  try {
    payload = await response.json();
  } catch (err) {
    payload = null;
  }
  return { status: response.status, ok: response.ok, body: payload };
}

async function openSession(token) {
  const response = await fetch("/auth/session", {
    method: "POST",
    headers: { Authorization: `Bearer ${token}` },
    credentials: "same-origin",
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.detail || `HTTP ${response.status}`);
  state.csrf = body.csrf_token;
  return body;
}

function showMessage(text, isError = true) {
  const box = $("message");
  box.textContent = text;
  box.className = isError ? "message error" : "message";
  box.hidden = !text;
}

// ---- panels -------------------------------------------------------------------------------

class PanelView {
  constructor(panel) {
    this.panel = panel;
    this.live = null;
    this.chart = null;
    this.pending = false;
    this.from = null;
    this.card = document.createElement("section");
    this.card.className = `panel panel-${panel.kind}`;
    this.card.dataset.panel = panel.id;
    this.card.dataset.kind = panel.kind;
    const head = document.createElement("header");
    const title = document.createElement("h2");
    title.textContent = panel.title || panel.id;
    const badge = document.createElement("span");
    badge.className = "badge";
    badge.textContent = `${KIND_LABELS[panel.kind] || panel.kind} · ${panel.view}${panel.range ? ` · last ${panel.range}` : ""}`;
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "remove";
    remove.title = "remove this panel (saves the dashboard)";
    remove.textContent = "×";
    remove.addEventListener("click", () => removePanel(panel.id));
    head.append(title, badge, remove);
    this.body = document.createElement("div");
    this.body.className = panel.kind === "kpi" ? "kpi-value" : "chart";
    this.status = document.createElement("footer");
    this.status.textContent = "waiting for data…";
    this.card.append(head, this.body, this.status);
  }

  view() {
    return state.data.views[this.panel.view] || null;
  }

  timeRange() {
    const view = this.view();
    if (!view || !view.width) return { from: null, to: null };
    if (state.zoom) return { from: state.zoom.from, to: state.zoom.to };
    if (this.panel.range_seconds && view.latest_epoch !== null && view.latest_epoch !== undefined) {
      return { from: (view.latest_epoch - this.panel.range_seconds) * 1000, to: null };
    }
    return { from: null, to: null };
  }

  params() {
    const params = new URLSearchParams(this.panel.params);
    const view = this.view();
    const dims = view ? view.dimensions : [];
    for (const [name, value] of Object.entries(this.panel.where || {})) {
      for (const v of Array.isArray(value) ? value : [value]) params.append("where", `${name}:${v}`);
    }
    for (const f of state.filters) {
      if (dims.includes(f.dimension)) params.append("where", `${f.dimension}:${f.value}`);
    }
    const range = this.timeRange();
    if (range.from !== null) params.set("from", String(Math.floor(range.from / 1000)));
    if (range.to !== null) params.set("to", String(Math.ceil(range.to / 1000)));
    this.from = range.from;
    return params;
  }

  // A fresh live query with the current filters and time range (the hub opens it).
  subscribe() {
    if (this.live) this.live.close();
    this.live = new LiveQuery(this.panel.view, this.panel.shape, this.params(), () => this.schedule());
    return this.live;
  }

  rangeMoved() {
    if (state.zoom || !this.panel.range_seconds) return false;
    return this.timeRange().from !== this.from;
  }

  schedule() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.render();
    });
  }

  render() {
    const live = this.live;
    if (!live) return;
    if (live.error) {
      this.status.textContent = `error: ${live.error}`;
      this.status.className = "error";
      window.__facta.errors.push({ panel: this.panel.id, error: live.error });
      return;
    }
    if (!live.snapshotAt) return;
    const rows = live.list();
    // Time series and box-plot sequences drop the buckets that slid out of a relative range
    // since the query was opened (it is re-opened at most every 10 s).
    const from = this.timeRange().from;
    const drawn = DRAW[this.panel.kind](this.panel, rows, { from, view: this.view() });
    if (this.panel.kind === "kpi") {
      this.body.textContent = drawn.text;
    } else {
      if (!this.chart) {
        this.chart = echarts.init(this.body, null, { renderer: "canvas" });
        this.chart.on("datazoom", () => this.zoomed(drawn.zoom));
      }
      this.zoomKind = drawn.zoom;
      this.plottedNow = drawn.plotted;
      this.chart.setOption(drawn.option, { replaceMerge: ["series"] });
    }
    const mode = live.mode === "poll" ? " (polling)" : "";
    this.status.className = "";
    this.status.textContent = `position ${live.position.toLocaleString()} · ${rows.length} rows${mode}`;
    window.__facta.panels[this.panel.id] = {
      id: this.panel.id,
      kind: this.panel.kind,
      view: this.panel.view,
      shape: this.panel.shape,
      query: live.path(""),
      mode: live.mode,
      position: live.position,
      key: live.key,
      rows,
      plotted: drawn.plotted,
      series: this.chart ? this.chart.getOption().series.map((s) => s.data) : null,
      renderedAt: Date.now(),
    };
    updateIndicator();
  }

  zoomed() {
    clearTimeout(this.zoomTimer);
    this.zoomTimer = setTimeout(() => {
      const zoom = this.chart.getOption().dataZoom;
      if (!zoom || !zoom.length) return;
      const { startValue, endValue } = zoom[0];
      let from;
      let to;
      if (this.zoomKind === "time") {
        from = startValue;
        to = endValue;
      } else {
        const buckets = (this.plottedNow && this.plottedNow.buckets) || [];
        if (!buckets.length) return;
        from = Date.parse(buckets[Math.max(0, startValue)]);
        const last = buckets[Math.min(buckets.length - 1, endValue)];
        to = Date.parse(last) + 1000 * (WIDTH_SECONDS[this.panel.every || this.view().width] || 86400);
      }
      if (Number.isFinite(from) && Number.isFinite(to) && to > from) setZoom({ from, to });
    }, 600);
  }

  close() {
    if (this.live) this.live.close();
    if (this.chart) this.chart.dispose();
  }
}

function updateIndicator() {
  const positions = Array.from(state.views.values())
    .filter((p) => p.live && p.live.snapshotAt)
    .map((p) => p.live.position);
  const text = $("indicator-text");
  const dot = document.querySelector("#indicator .dot");
  if (!positions.length) return;
  const position = Math.min(...positions);
  const head = state.clock ? state.clock.head : null;
  const lag = head === null ? null : Math.max(head - position, 0);
  window.__facta.position = position;
  window.__facta.head = head;
  window.__facta.lag = lag;
  window.__facta.ready = positions.length === state.views.size;
  const time = new Date().toLocaleTimeString();
  text.textContent = `log position ${position.toLocaleString()}${lag === null ? "" : ` · lag ${lag.toLocaleString()}`} · ${time}`;
  dot.className = `dot ${lag !== null && lag > 10000 ? "behind" : "live"}`;
}

// ---- loading and drawing a dashboard ------------------------------------------------------

async function load() {
  const response = await api("GET", "/dashboards");
  if (response.status === 401) {
    $("login").hidden = false;
    $("toolbar").hidden = true;
    $("indicator-text").textContent = "signed out";
    return;
  }
  if (!response.ok) {
    showMessage(response.body ? response.body.detail : `GET /dashboards: HTTP ${response.status}`);
    return;
  }
  $("login").hidden = true;
  $("toolbar").hidden = false;
  state.data = response.body;
  const wanted = new URLSearchParams(location.search).get("dashboard");
  const dashboards = state.data.dashboards;
  const picker = $("dashboard-picker");
  picker.replaceChildren(...dashboards.map((d) => new Option(d.title || d.name, d.name)));
  picker.hidden = dashboards.length < 2;
  const chosen = dashboards.find((d) => d.name === wanted) || dashboards[0] || null;
  if (!chosen) {
    showMessage("No dashboard is applied yet: declare [dashboards.NAME] in facta.toml and run facta apply.", false);
    state.dashboard = { name: "main", title: "", panels: [] };
  } else {
    picker.value = chosen.name;
    state.dashboard = chosen;
  }
  draw();
  fillFilterDimensions();
  await pollClock();
}

function draw() {
  state.hub.close();
  for (const view of state.views.values()) view.close();
  state.views.clear();
  window.__facta.panels = {};
  const dashboard = state.dashboard;
  $("title").textContent = dashboard.title || dashboard.name;
  document.title = `${dashboard.title || dashboard.name} · facta`;
  const container = $("panels");
  container.replaceChildren();
  for (const panel of dashboard.panels) {
    const view = new PanelView(panel);
    state.views.set(panel.id, view);
    container.append(view.card);
  }
  resubscribeAll();
}

function resubscribeAll() {
  state.subscribedAt = Date.now();
  state.hub.follow(Array.from(state.views.values(), (view) => view.subscribe()));
  renderChips();
}

async function pollClock() {
  const response = await api("GET", "/dashboards/clock");
  if (response.ok) {
    state.clock = response.body;
    for (const [name, info] of Object.entries(response.body.views)) {
      const view = state.data.views[name];
      if (view) {
        view.latest_epoch = info.latest_epoch;
        view.position = info.position;
      }
    }
    // Relative ranges follow the views' latest event time, re-asked at most every 10 s.
    const moved = Array.from(state.views.values()).some((view) => view.rangeMoved());
    if (moved && Date.now() - state.subscribedAt >= RESUBSCRIBE_AFTER_MS) resubscribeAll();
    updateIndicator();
  }
}

// ---- filters and zoom ---------------------------------------------------------------------

function usedViews() {
  return Array.from(new Set(state.dashboard.panels.map((p) => p.view)))
    .map((name) => state.data.views[name])
    .filter(Boolean);
}

function fillFilterDimensions() {
  const dims = Array.from(new Set(usedViews().flatMap((v) => v.dimensions))).sort();
  $("filter-dimension").replaceChildren(new Option("dimension…", ""), ...dims.map((d) => new Option(d, d)));
  $("filter-value").replaceChildren();
}

async function fillFilterValues() {
  const dimension = $("filter-dimension").value;
  const select = $("filter-value");
  select.replaceChildren();
  const view = usedViews().find((v) => v.dimensions.includes(dimension));
  if (!view) return;
  const query = new URLSearchParams({ group_by: dimension });
  const response = await api("GET", `/views/${encodeURIComponent(view.name)}/groups?${query}`);
  if (!response.ok) return;
  const values = Array.from(new Set(response.body.rows.map((r) => r[dimension]))).sort((a, b) =>
    typeof a === "number" ? a - b : String(a).localeCompare(String(b)),
  );
  select.replaceChildren(...values.map((v) => new Option(String(v), String(v))));
}

function addFilter() {
  const dimension = $("filter-dimension").value;
  const value = $("filter-value").value;
  if (!dimension || value === "") return;
  if (!state.filters.some((f) => f.dimension === dimension && f.value === value)) {
    state.filters.push({ dimension, value });
    resubscribeAll();
  }
}

function renderChips() {
  const chips = [];
  for (const f of state.filters) {
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = "chip";
    chip.textContent = `${f.dimension} = ${f.value} ×`;
    chip.addEventListener("click", () => {
      state.filters = state.filters.filter((g) => g !== f);
      resubscribeAll();
    });
    chips.push(chip);
  }
  if (state.zoom) {
    const chip = document.createElement("button");
    chip.type = "button";
    chip.className = "chip";
    chip.textContent = `${new Date(state.zoom.from).toLocaleString()} → ${new Date(state.zoom.to).toLocaleString()} ×`;
    chip.addEventListener("click", () => setZoom(null));
    chips.push(chip);
  }
  $("filters").replaceChildren(...chips);
}

function toLocalInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}

function setZoom(zoom) {
  state.zoom = zoom;
  $("zoom-from").value = zoom ? toLocalInput(zoom.from) : "";
  $("zoom-to").value = zoom ? toLocalInput(zoom.to) : "";
  resubscribeAll();
}

// ---- adding and removing panels -----------------------------------------------------------

function definitionOf(panel) {
  const out = {};
  for (const key of PANEL_FIELDS) {
    const value = panel[key];
    if (value === null || value === undefined || value === "") continue;
    if (key === "where" && !Object.keys(value).length) continue;
    out[key] = value;
  }
  return out;
}

async function saveDashboard(panels) {
  const dashboard = state.dashboard;
  const body = {
    dashboard: { title: dashboard.title || undefined, panels: panels.map(definitionOf) },
    version: state.data.version,
  };
  const response = await api("PUT", `/dashboards/${encodeURIComponent(dashboard.name)}`, body);
  if (response.ok) {
    state.data.version = response.body.version;
    const saved = response.body.dashboard;
    const index = state.data.dashboards.findIndex((d) => d.name === saved.name);
    if (index >= 0) state.data.dashboards[index] = saved;
    else state.data.dashboards.push(saved);
    state.dashboard = saved;
    draw();
    fillFilterDimensions();
    showMessage("");
    return null;
  }
  if (response.status === 409) {
    return `${response.body.detail} — reload the page to see the current file.`;
  }
  if (response.status === 403) {
    return "Saving needs a token with the admin scope (sign in with one).";
  }
  return response.body ? response.body.detail : `HTTP ${response.status}`;
}

async function removePanel(id) {
  if (!confirm(`Remove panel ${id} from the dashboard and save the project file?`)) return;
  const error = await saveDashboard(state.dashboard.panels.filter((p) => p.id !== id));
  if (error) showMessage(error);
}

function form() {
  return $("panel-form").elements;
}

function measureChoices(kind, view) {
  if (!view) return [];
  if (kind === "box" || kind === "box_sequence") {
    return Object.keys(view.measures).filter((m) => view.measures[m] === "quantiles");
  }
  if (kind === "ellipse") {
    return Object.keys(view.measures).filter((m) => ["covariance", "correlation"].includes(view.measures[m]));
  }
  return view.columns;
}

function refreshForm() {
  const f = form();
  const kind = f.kind.value;
  const view = state.data.views[f.view.value];
  const keep = f.measure.value;
  f.measure.replaceChildren(...measureChoices(kind, view).map((m) => new Option(m, m)));
  if (Array.from(f.measure.options).some((o) => o.value === keep)) f.measure.value = keep;
  const dims = view ? view.dimensions : [];
  const choices = document.querySelector("#field-group-by .choices");
  choices.replaceChildren(
    ...dims.map((d) => {
      const label = document.createElement("label");
      const box = document.createElement("input");
      box.type = kind === "line" ? "radio" : "checkbox";
      box.name = "group_by";
      box.value = d;
      label.append(box, ` ${d}`);
      return label;
    }),
  );
  for (const axis of ["x", "y"]) f[axis].replaceChildren(...dims.map((d) => new Option(d, d)));
  if (dims.length > 1) f.y.value = dims[1];
  const width = view ? view.width : null;
  const everies = width ? WIDTHS.slice(WIDTHS.indexOf(width)) : [];
  f.every.replaceChildren(new Option("view's bucket", ""), ...everies.map((w) => new Option(w, w)));
  $("field-group-by").hidden = ["kpi", "heatmap"].includes(kind) || !dims.length;
  $("field-x").hidden = kind !== "heatmap";
  $("field-y").hidden = kind !== "heatmap";
  $("field-every").hidden = !["series", "box_sequence"].includes(kind);
  $("field-k").hidden = kind !== "bar";
}

function openPanelDialog() {
  const f = form();
  f.kind.replaceChildren(...state.data.panel_kinds.map((k) => new Option(KIND_LABELS[k] || k, k)));
  f.view.replaceChildren(...Object.keys(state.data.views).map((v) => new Option(v, v)));
  f.title.value = "";
  f.range.value = "";
  $("panel-error").textContent = "";
  refreshForm();
  $("panel-dialog").showModal();
}

function uniqueId(title) {
  const base = (title.toLowerCase().replace(/[^a-z0-9]+/g, "_").replace(/^_+|_+$/g, "") || "panel").replace(/^([^a-z])/, "p_$1").slice(0, 50);
  const taken = new Set(state.dashboard.panels.map((p) => p.id));
  let id = base;
  for (let i = 2; taken.has(id); i += 1) id = `${base}_${i}`;
  return id;
}

async function submitPanel(event) {
  event.preventDefault();
  const f = form();
  const kind = f.kind.value;
  const panel = { id: uniqueId(f.title.value), title: f.title.value, kind, view: f.view.value, measure: f.measure.value };
  const grouped = Array.from(document.querySelectorAll("#field-group-by input:checked")).map((b) => b.value);
  if (!["kpi", "heatmap"].includes(kind) && (grouped.length || !["series", "box_sequence"].includes(kind))) {
    panel.group_by = grouped;
  }
  if (kind === "heatmap") {
    panel.x = f.x.value;
    panel.y = f.y.value;
  }
  if (["series", "box_sequence"].includes(kind) && f.every.value) panel.every = f.every.value;
  if (kind === "bar") panel.k = Number(f.k.value) || 10;
  if (f.range.value) panel.range = f.range.value;
  const error = await saveDashboard([...state.dashboard.panels, panel]);
  if (error) {
    $("panel-error").textContent = error;
    return;
  }
  $("panel-dialog").close();
}

// ---- start --------------------------------------------------------------------------------

async function start() {
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await openSession($("login-token").value);
      $("login-token").value = "";
      await load();
    } catch (err) {
      $("login-error").textContent = String(err.message || err);
    }
  });
  $("dashboard-picker").addEventListener("change", (e) => {
    state.dashboard = state.data.dashboards.find((d) => d.name === e.target.value);
    history.replaceState(null, "", `?dashboard=${encodeURIComponent(state.dashboard.name)}`);
    draw();
    fillFilterDimensions();
  });
  $("filter-dimension").addEventListener("change", fillFilterValues);
  $("filter-add").addEventListener("click", addFilter);
  $("zoom-apply").addEventListener("click", () => {
    const from = Date.parse($("zoom-from").value);
    const to = Date.parse($("zoom-to").value);
    if (Number.isFinite(from) && Number.isFinite(to) && to > from) setZoom({ from, to });
    else showMessage("Zoom needs a start before its end.");
  });
  $("zoom-reset").addEventListener("click", () => setZoom(null));
  $("panel-new").addEventListener("click", openPanelDialog);
  form().kind.addEventListener("change", refreshForm);
  form().view.addEventListener("change", refreshForm);
  $("panel-form").addEventListener("submit", (event) => {
    if (event.submitter && event.submitter.value === "cancel") return;
    submitPanel(event);
  });
  window.addEventListener("resize", () => {
    for (const view of state.views.values()) if (view.chart) view.chart.resize();
  });
  // A token in the address's fragment (never sent to the server) opens a session, then leaves.
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("token");
  if (token) {
    history.replaceState(null, "", location.pathname + location.search);
    try {
      await openSession(token);
    } catch (err) {
      showMessage(`Signing in with the token of the address failed: ${err.message || err}`);
    }
  }
  await load();
  setInterval(pollClock, 2000);
}

start();
