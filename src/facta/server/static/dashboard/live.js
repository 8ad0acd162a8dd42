"use strict";
// Live view queries: the rows of each (view, shape, parameters), kept current over SSE.
//
// The server sends a `snapshot` (all rows, id = position), then `update`s (rows to upsert, keys
// to delete, id = position), `progress` on idle streams and `reset` before a new snapshot.
// Applying them in order gives the snapshot at the last id. A browser keeps only six HTTP/1.1
// connections per host, so one LiveHub carries every panel's query on one EventSource
// (GET /live/queries, messages tagged with the query's index). EventSource reconnects by itself
// with Last-Event-ID and the server resumes every query from there. Where that route is
// missing, each query polls the request/response route instead.

class LiveQuery {
  constructor(view, shape, params, onChange) {
    this.view = view;
    this.shape = shape;
    this.params = params; // URLSearchParams
    this.onChange = onChange;
    this.rows = new Map(); // key text -> row
    this.key = [];
    this.columns = [];
    this.position = 0;
    this.definitionHash = null;
    this.snapshotAt = 0;
    this.timer = null;
    this.closed = false;
    this.mode = "live";
    this.error = null;
  }

  path(prefix) {
    const view = encodeURIComponent(this.view);
    return `${prefix}/views/${view}/${this.shape}?${this.params.toString()}`;
  }

  handle(event, data) {
    if (event === "snapshot") this.snapshot(data);
    else if (event === "update") this.update(data);
    else if (event === "reset") this.snapshotAt = 0;
    else if (event === "progress" && data.position > this.position) {
      this.position = data.position;
      this.onChange(this, false);
    }
  }

  snapshot(data) {
    if (!data.part || data.part === 1) this.rows = new Map(); // a large snapshot comes in parts
    this.key = data.key || [];
    this.columns = data.columns || [];
    for (const row of data.rows || []) this.rows.set(this.keyOf(row), row);
    this.position = data.position;
    this.definitionHash = data.definition_hash || null;
    this.error = null;
    if (data.part && data.part < data.parts) return;
    this.snapshotAt = Date.now();
    this.onChange(this, true);
  }

  update(data) {
    for (const values of data.delete || []) this.rows.delete(JSON.stringify(values));
    for (const row of data.upsert || []) this.rows.set(this.keyOf(row), row);
    if (data.position > this.position) this.position = data.position;
    this.onChange(this, true);
  }

  keyOf(row) {
    return JSON.stringify(this.key.map((name) => row[name]));
  }

  async poll() {
    this.mode = "poll";
    while (!this.closed) {
      try {
        const response = await fetch(this.path(""), { credentials: "same-origin" });
        const body = await response.json();
        if (response.ok) {
          if (body.position !== this.position || !this.snapshotAt) this.snapshot(body);
        } else {
          this.error = body.detail || `HTTP ${response.status}`;
          this.onChange(this, true);
        }
      } catch (err) {
        this.error = String(err);
      }
      await new Promise((resolve) => { this.timer = setTimeout(resolve, 1000); });
    }
  }

  close() {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
  }

  list() {
    return Array.from(this.rows.values());
  }
}

class LiveHub {
  constructor() {
    this.queries = [];
    this.source = null;
  }

  // Follow exactly these queries (LiveQuery objects) from now on, on one connection.
  follow(queries) {
    this.close();
    this.queries = queries;
    if (!queries.length) return;
    const params = new URLSearchParams();
    for (const q of queries) params.append("q", q.path("").slice("/views/".length));
    const source = new EventSource(`/live/queries?${params.toString()}`, { withCredentials: true });
    this.source = source;
    let opened = false;
    source.addEventListener("open", () => {
      opened = true;
    });
    for (const event of ["snapshot", "update", "progress", "reset"]) {
      source.addEventListener(event, (e) => {
        const data = JSON.parse(e.data);
        // A heartbeat's progress is the whole connection's: every query has reached it.
        const targets = data.query === undefined ? this.queries : [this.queries[data.query]];
        for (const query of targets) if (query && !query.closed) query.handle(event, data);
      });
    }
    source.addEventListener("error", () => {
      if (this.source !== source) return;
      if (!opened && source.readyState === EventSource.CLOSED) {
        // Refused (an old server without /live/queries, or a query it rejects): poll each
        // query on the request/response route, which also shows each panel its own error.
        for (const q of queries) q.poll();
      }
    });
  }

  close() {
    if (this.source) this.source.close();
    this.source = null;
  }
}

window.LiveQuery = LiveQuery;
window.LiveHub = LiveHub;
