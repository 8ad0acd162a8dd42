"use strict";
// A live view query: the rows of one (view, shape, parameters), kept current over SSE.
//
// The server sends a `snapshot` (all rows, id = position), then `update`s (rows to upsert, keys
// to delete, id = position), `progress` on idle streams and `reset` before a new snapshot.
// Applying them in order gives the snapshot at the last id. EventSource reconnects by itself
// with Last-Event-ID, and the server answers with one coalesced update. If the live route is
// missing (an older server), the query falls back to polling the request/response route.

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
    this.source = null;
    this.timer = null;
    this.closed = false;
    this.mode = "live";
    this.error = null;
  }

  path(prefix) {
    const view = encodeURIComponent(this.view);
    return `${prefix}/views/${view}/${this.shape}?${this.params.toString()}`;
  }

  start() {
    const source = new EventSource(this.path("/live"), { withCredentials: true });
    this.source = source;
    let opened = false;
    source.addEventListener("open", () => { opened = true; });
    source.addEventListener("snapshot", (e) => this.snapshot(JSON.parse(e.data)));
    source.addEventListener("update", (e) => this.update(JSON.parse(e.data)));
    source.addEventListener("progress", (e) => {
      const data = JSON.parse(e.data);
      if (data.position > this.position) {
        this.position = data.position;
        this.onChange(this, false);
      }
    });
    source.addEventListener("reset", () => { this.snapshotAt = 0; });
    source.addEventListener("error", () => {
      if (this.closed) return;
      if (!opened && source.readyState === EventSource.CLOSED) {
        this.poll(); // no live route here: ask the plain query route instead
      }
    });
  }

  snapshot(data) {
    this.rows = new Map();
    this.key = data.key || [];
    this.columns = data.columns || [];
    for (const row of data.rows || []) this.rows.set(this.keyOf(row), row);
    this.position = data.position;
    this.definitionHash = data.definition_hash || null;
    this.snapshotAt = Date.now();
    this.error = null;
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
    if (this.source) this.source.close();
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
    if (this.source) this.source.close();
    if (this.timer) clearTimeout(this.timer);
  }

  list() {
    return Array.from(this.rows.values());
  }
}

window.LiveQuery = LiveQuery;
