// The views: the list of apps and one app. Each view owns one event stream
// while it is shown; render() fills #main.

interface View { close(): void }

interface AppRow {
  ns: string; name: string; rv: number; ready: number; desired: number; url: string;
  metric: string; value: number; target: number; status: string; reason: string;
  phase: string; weight: number; deleting: boolean;
}

const SPARK_SECONDS = 300;  // boot.js asks for the list's history with it
// The list's first drawing: rows drawn at once (more than a screenful),
// then rows added per task.
const FIRST_ROWS = 60;
const MORE_ROWS = 200;
// The list is read in pages (the API's limit/continue): the first page is
// the first screenful, so that it is drawn before the rest is read; the rest
// in pages of kubectl's default chunk size. boot.js asks for the first page.
const FIRST_PAGE = `apps?all=1&limit=${FIRST_ROWS}`;
const PAGE_SIZE = 500;

interface ListPage { resourceVersion: number; continue: string; apps: AppRow[] }
const FLAT = `<span class="flat"></span>`;

// Runs `f` in the first task after the next frame is laid out and painted.
function afterPaint(f: () => void): void {
  requestAnimationFrame(() => setTimeout(f, 0));
}

function statusBadge(status: string, reason: string, deleting: boolean): string {
  if (deleting) return `<span class="badge warn">Deleting</span>`;
  const cls = status === "True" ? "ok" : status === "False" ? "bad" : "warn";
  const text = status === "True" ? "Ready" : reason || (status === "False" ? "NotReady" : "Unknown");
  return `<span class="badge ${cls}" title="${esc(reason)}">${esc(text)}</span>`;
}

function phaseBadge(phase: string, weight: number): string {
  if (!phase) return "";
  const cls = phase === "Succeeded" ? "ok" : phase === "Failed" || phase === "RolledBack" ? "bad" : "warn";
  const w = phase === "Progressing" || phase === "Paused" ? ` ${weight}%` : "";
  return `<span class="badge ${cls}">${esc(phase)}${w}</span>`;
}

class ListView implements View {
  private rows = new Map<string, AppRow>();
  private series = new Map<string, Series>();
  private stream: EventStream | null = null;
  private filter = "";
  private now = 0;
  private closed = false;
  private renderGen = 0;  // a newer drawing stops an older one's later rows
  private onPainted: (() => void) | null = null;
  private onComplete: (() => void) | null = null;
  private loading = true;  // pages of the list still to read

  constructor(private root: HTMLElement) {}

  async show(): Promise<void> {
    this.root.innerHTML = `<section class="list"><div class="bar"><h1>Apps</h1>
      <input id="filter" type="search" placeholder="filter by name or namespace" aria-label="filter">
      <span id="count" class="muted"></span></div>
      <div id="apps" class="applist" role="table" aria-label="apps">
      <div class="arow ahead" role="row"><span role="columnheader">Namespace</span><span role="columnheader">Name</span>
      <span role="columnheader">Ready</span><span role="columnheader">Status</span><span role="columnheader">Release</span>
      <span role="columnheader">Metric / target</span><span role="columnheader">Req/s</span>
      <span role="columnheader">Last 5 min</span><span role="columnheader">URL</span></div>
      <div class="abody" role="rowgroup"></div></div></section>`;
    const input = this.root.querySelector<HTMLInputElement>("#filter")!;
    input.addEventListener("input", () => { this.filter = input.value.trim(); this.renderRows(false); });
    const [list, hist] = await Promise.all([
      apiGet<ListPage>(FIRST_PAGE),
      apiGet<any>(`history?all=1&window=${SPARK_SECONDS}&rpsOnly=1&omitIdle=1`),
    ]);
    if (this.closed) return;
    document.body.dataset.listFetched = String(performance.now());
    for (const a of list.apps) this.rows.set(a.ns + "/" + a.name, a);
    this.onHistory(hist, false);
    // When the browser has laid out and painted the first rows, and when
    // every row is in the page: the page's own timings (the browser test
    // reads them, docs/benchmarks.md).
    this.onPainted = () => { document.body.dataset.listPainted = String(performance.now()); };
    this.onComplete = () => { document.body.dataset.listComplete = String(performance.now()); };
    this.loading = !!list.continue;
    this.renderRows(true);
    document.body.dataset.listRendered = String(performance.now());
    performance.mark("tidal-list-rendered");
    // The other pages after the first rows are on screen; then the event
    // stream from the first page's revision, which replays every change
    // made while the pages were read (each page is read at its own).
    if (list.continue) {
      await new Promise<void>((resolve) => afterPaint(resolve));
      let next = list.continue;
      while (next && !this.closed) {
        const page = await apiGet<ListPage>(
          `apps?all=1&limit=${PAGE_SIZE}&continue=${encodeURIComponent(next)}`);
        for (const a of page.apps) this.rows.set(a.ns + "/" + a.name, a);
        if (page.continue === next) throw new Error("tidald answered a list page with the token it was given");
        next = page.continue;
      }
      if (this.closed) return;
      this.loading = false;
      this.renderRows(true);
    }
    this.stream = new EventStream(
      () => `stream?all=1&rv=${list.resourceVersion}&after=${this.now}`,
      (event, data) => this.onEvent(event, data),
      (msg) => showError(msg));
    this.stream.open();
  }

  close(): void {
    this.closed = true;
    if (this.stream) this.stream.close();
  }

  private onEvent(event: string, data: any): void {
    if (event === "app") {
      const a = data.app as AppRow;
      const key = a.ns + "/" + a.name;
      const had = this.rows.has(key);
      if (data.type === "DELETED") this.rows.delete(key);
      else this.rows.set(key, a);
      // A changed app's row is redrawn in place; an app added or gone
      // redraws the list (in the same order as the first drawing).
      const row = document.getElementById("row-" + key);
      if (had && data.type !== "DELETED" && row) row.outerHTML = this.rowHtml(key);
      else if (had || data.type !== "DELETED") this.renderRows(false);
    } else if (event === "history") {
      this.onHistory(data, true);
    }
  }

  private onHistory(h: any, live: boolean): void {
    const now = num(h.nowUnix);
    const seen = new Set<string>();
    for (const a of h.apps || []) {
      const key = a.namespace + "/" + a.app;
      seen.add(key);
      let s = this.series.get(key);
      if (!s) { s = emptySeries(1); this.series.set(key, s); }
      appendHistory(s, a, SPARK_SECONDS);
    }
    // Apps left out were idle: zeros up to now.
    for (const [key, s] of this.series) {
      if (!seen.has(key) && now > 0) appendHistory(s, { startUnix: now, stepSeconds: 1, rps: [0] }, SPARK_SECONDS);
    }
    this.now = Math.max(this.now, now);
    if (!live) return;
    for (const [key, s] of this.series) {
      const row = document.getElementById("row-" + key);
      if (row) {
        row.querySelector(".rps")!.textContent = fmt(lastOr(s.rps));
        row.querySelector(".sparkcell")!.innerHTML = sparkline(s.rps, SPARK_SECONDS);
      }
      if (s.rps.every((v) => v === 0)) this.series.delete(key);
    }
  }

  // Draws the rows that pass the filter. `progressive` (the first drawing):
  // the first screenful at once and the rest in later tasks, so that a
  // thousand apps do not hold back the first paint. After the first rows'
  // frame onPainted runs, and once every row is in the page onComplete
  // (each once, whichever drawing gets there).
  private renderRows(progressive: boolean): void {
    const body = this.root.querySelector("#apps .abody");
    if (!body) return;
    const gen = ++this.renderGen;
    const filter = this.filter.toLowerCase();
    const keys = [...this.rows.keys()].sort().filter((k) => !filter || k.toLowerCase().includes(filter));
    const html = (from: number, to: number) => {
      let out = "";
      for (let i = from; i < to && i < keys.length; i++) out += this.rowHtml(keys[i]);
      return out;
    };
    let at = progressive ? FIRST_ROWS : keys.length;
    body.innerHTML = html(0, at);
    const loaded = this.loading ? "+" : "";
    this.root.querySelector("#count")!.textContent =
      keys.length === this.rows.size ? `${keys.length}${loaded} apps` : `${keys.length} of ${this.rows.size}${loaded} apps`;
    const once = (which: "onPainted" | "onComplete") => {
      const f = this[which];
      this[which] = null;
      if (f) f();
    };
    // Complete once every page is read and drawn.
    const done = () => { if (!this.loading) once("onComplete"); };
    const more = () => {
      once("onPainted");  // the first task after the first rows' frame
      if (gen !== this.renderGen || this.closed) return;
      if (at >= keys.length) return done();
      body.insertAdjacentHTML("beforeend", html(at, at + MORE_ROWS));
      at += MORE_ROWS;
      setTimeout(more, 0);
    };
    if (at >= keys.length) {
      afterPaint(() => once("onPainted"));
      return done();
    }
    afterPaint(more);
  }

  private rowHtml(key: string): string {
    const a = this.rows.get(key)!;
    const s = this.series.get(key);
    const href = `#/apps/${encodeURIComponent(a.ns)}/${encodeURIComponent(a.name)}`;
    const metric = a.metric ? `${esc(a.metric)} ${fmt(a.value)} / ${fmt(a.target)}` : "";
    // Idle apps (most of a thousand) get a flat line without an SVG.
    return `<div class="arow" role="row" id="row-${esc(key)}" data-app="${esc(key)}">` +
      `<span role="cell">${esc(a.ns)}</span>` +
      `<span role="cell"><a href="${href}">${esc(a.name)}</a></span><span role="cell">${a.ready}/${a.desired}</span>` +
      `<span role="cell">${statusBadge(a.status, a.reason, a.deleting)}</span>` +
      `<span role="cell">${phaseBadge(a.phase, a.weight)}</span>` +
      `<span role="cell">${metric}</span><span role="cell" class="rps">${s ? fmt(lastOr(s.rps)) : "0"}</span>` +
      `<span role="cell" class="sparkcell">${s ? sparkline(s.rps, SPARK_SECONDS) : FLAT}</span>` +
      `<span role="cell" class="url" title="${esc(a.url)}">${esc(a.url)}</span></div>`;
  }
}

class AppView implements View {
  private app: any = null;
  private series: Series = emptySeries(1);
  private stream: EventStream | null = null;
  private closed = false;
  private window = 3600;
  private refreshTimer = 0;
  private can = { rollout: false, scale: false };

  constructor(private root: HTMLElement, private ns: string, private name: string) {}

  private path(what: string): string {
    return `apps/${encodeURIComponent(this.ns)}/${encodeURIComponent(this.name)}${what}`;
  }

  async show(): Promise<void> {
    this.root.innerHTML = `<section class="app">
      <div class="bar"><a href="#/">Apps</a> / <h1>${esc(this.name)}</h1> <span class="muted">in ${esc(this.ns)}</span>
        <span id="summary"></span></div>
      <div id="actions" class="actions"></div>
      <div id="notice" class="notice" role="status"></div>
      <div class="plotbar"><h2>Load and replicas</h2>
        <label><input type="radio" name="win" value="3600" checked> last hour</label>
        <label><input type="radio" name="win" value="86400"> last 24 hours</label>
        <span id="now" class="muted"></span></div>
      <div id="plot"></div>
      <ul id="markers" class="markers"></ul>
      <div class="cols"><div><h2>Release</h2><div id="rollout"></div><h2>Revisions</h2><div id="revisions"></div></div>
      <div><h2>Instances</h2><div id="instances"></div><pre id="logs" hidden></pre>
      <h2>Recent events</h2><div id="events"></div></div></div></section>`;
    for (const r of this.root.querySelectorAll<HTMLInputElement>("input[name=win]")) {
      r.addEventListener("change", () => { this.window = Number(r.value); void this.loadHistory(); });
    }
    const [app, can1, can2] = await Promise.all([
      apiGet<any>(this.path("")),
      apiGet<any>(`can-i?verb=rollout&resource=apps&ns=${encodeURIComponent(this.ns)}`).catch(() => ({ allowed: false })),
      apiGet<any>(`can-i?verb=scale&resource=apps&ns=${encodeURIComponent(this.ns)}`).catch(() => ({ allowed: false })),
    ]);
    if (this.closed) return;
    this.can = { rollout: !!can1.allowed, scale: !!can2.allowed };
    this.app = app;
    this.renderApp();
    this.renderActions();
    await this.loadHistory();
    void this.refreshLists();
    if (this.closed) return;
    this.stream = new EventStream(
      () => `stream?ns=${encodeURIComponent(this.ns)}&app=${encodeURIComponent(this.name)}` +
        `&rv=${num(this.app.metadata.resourceVersion)}&after=${this.series.start + this.series.rps.length * this.series.step - 1}` +
        `&window=${this.window}`,
      (event, data) => this.onEvent(event, data),
      (msg) => showError(msg));
    this.stream.open();
  }

  close(): void {
    this.closed = true;
    if (this.stream) this.stream.close();
    window.clearTimeout(this.refreshTimer);
  }

  private async loadHistory(): Promise<void> {
    const step = this.window > 3600 ? 60 : 1;
    const h = await apiGet<any>(`history?ns=${encodeURIComponent(this.ns)}&app=${encodeURIComponent(this.name)}` +
      `&window=${this.window}&step=${step}`);
    this.series = emptySeries(step);
    if (h.apps && h.apps.length) appendHistory(this.series, h.apps[0], this.window / step);
    this.renderPlot(num(h.nowUnix));
  }

  private onEvent(event: string, data: any): void {
    if (event === "app") {
      if (data.type === "DELETED") { showError(`${this.name} was deleted`); return; }
      this.app = data.app;
      this.renderApp();
      this.scheduleRefresh();
    } else if (event === "history") {
      // The stream sends one-second points; a 24-hour view reloads each minute.
      if (this.series.step === 60) {
        if (num(data.nowUnix) % 60 === 0) void this.loadHistory();
        return;
      }
      for (const a of data.apps || []) appendHistory(this.series, a, this.window);
      this.renderPlot(num(data.nowUnix));
    }
  }

  private scheduleRefresh(): void {
    if (this.refreshTimer) return;
    this.refreshTimer = window.setTimeout(() => { this.refreshTimer = 0; void this.refreshLists(); }, 1000);
  }

  private renderApp(): void {
    const a = this.app;
    const st = a.status || {};
    const sc = st.scaling || {};
    const ready = (st.conditions || []).find((c: any) => c.type === "Ready") || {};
    const metric = sc.metric ? ` · ${esc(sc.metric)} ${fmt(num(sc.value))} / target ${fmt(num(sc.target))}` : "";
    this.root.querySelector("#summary")!.innerHTML =
      `${statusBadge(ready.status || "Unknown", ready.reason || "", !!a.metadata.deletionTimestamp)} ` +
      `<span id="replicas">${num(st.readyReplicas)}/${num(st.desiredReplicas)} ready</span>${metric}` +
      (st.url ? ` · <span class="url">${esc(st.url)}</span>` : "");
    this.renderRollout();
  }

  private renderRollout(): void {
    const a = this.app;
    const r = (a.status || {}).rollout || {};
    const spec = (a.spec || {}).rollout || {};
    const steps: any[] = spec.steps || [];
    let html = `<dl class="kv"><dt>Phase</dt><dd id="phase">${phaseBadge(r.phase || "", num(r.weight)) || "none"}</dd>` +
      `<dt>Strategy</dt><dd>${esc(spec.strategy || "batch")}</dd>` +
      `<dt>Revisions</dt><dd>stable ${num(r.stableRevision)}${num(r.updateRevision) ? ", update " + num(r.updateRevision) : ""}</dd>` +
      `<dt>Step</dt><dd id="step">${num(r.totalSteps) ? `${num(r.step)} of ${num(r.totalSteps)}` : "-"}</dd>` +
      `<dt>Weight</dt><dd id="weight">${num(r.weight)}% to the update</dd>` +
      `<dt>Instances</dt><dd>update ${num(r.updateReady)}/${num(r.updateTarget)}, stable ${num(r.stableReady)}/${num(r.stableTarget)}</dd>` +
      `<dt>Analysis</dt><dd id="analysis">${esc(r.analysis || "-")}</dd>` +
      `<dt>Verdict</dt><dd id="verdict">${esc(r.reason || r.message || "-")}</dd></dl>`;
    if (steps.length) {
      html += `<ol class="steps">` + steps.map((s, i) => {
        const what = s.weight !== undefined ? `${num(s.weight)}% of traffic` : s.replicas !== undefined ? `${num(s.replicas)} instances` : "";
        const pause = s.pauseManual ? ", then wait for promote" : num(s.pauseMs) ? `, then ${num(s.pauseMs) / 1000}s` : "";
        // status.rollout.step counts from 1 (the step under way), as
        // `tidalctl rollout status` shows it; 0: no release.
        const at = num(r.step) - 1;
        const moving = r.phase === "Progressing" || r.phase === "Paused";
        const cls = !num(r.totalSteps) ? "" : i < at ? "done" : i === at && moving ? "current" : "";
        return `<li class="${cls}">${what}${pause}</li>`;
      }).join("") + `</ol>`;
    }
    this.root.querySelector("#rollout")!.innerHTML = html;
  }

  private renderActions(): void {
    const el = this.root.querySelector("#actions")!;
    let html = "";
    if (this.can.rollout) {
      html += `<button data-action="promote">Promote</button><button data-action="promote-full">Promote fully</button>` +
        `<button data-action="abort" class="danger">Abort</button><button data-action="undo">Undo</button>`;
    }
    if (this.can.scale) {
      html += `<span class="scale"><input id="replicas-input" type="number" min="0" aria-label="replicas" placeholder="replicas">` +
        `<button data-action="scale">Scale</button></span>`;
    }
    if (!html) html = `<span class="muted">Read only: your token may not change this app.</span>`;
    el.innerHTML = html;
    for (const b of el.querySelectorAll<HTMLButtonElement>("button")) {
      b.addEventListener("click", () => void this.act(b.dataset.action || ""));
    }
  }

  private async act(action: string): Promise<void> {
    const notice = this.root.querySelector("#notice")!;
    try {
      let app: any;
      if (action === "scale") {
        const v = this.root.querySelector<HTMLInputElement>("#replicas-input")!.value;
        if (v === "") throw new Error("give a number of replicas");
        app = await apiPost<any>(this.path("/scale"), { replicas: Number(v) });
      } else if (action === "abort" && !window.confirm(`Abort the release of ${this.name} and roll back?`)) {
        return;
      } else {
        const full = action === "promote-full";
        app = await apiPost<any>(this.path("/rollout"), { action: full ? "promote" : action, full });
      }
      this.app = app;
      this.renderApp();
      notice.className = "notice ok";
      notice.textContent = `${action}: done`;
      this.scheduleRefresh();
    } catch (e) {
      notice.className = "notice bad";
      notice.textContent = `${action}: ${(e as Error).message}`;
    }
  }

  private renderPlot(now: number): void {
    const el = this.root.querySelector<HTMLElement>("#plot");
    if (!el) return;
    el.innerHTML = appPlot(this.series, Math.max(480, el.clientWidth || 900));
    el.dataset.points = String(this.series.rps.length);
    el.dataset.maxRps = String(Math.max(0, ...this.series.rps.slice(-120)));
    this.root.querySelector("#now")!.textContent = now ? `updated ${timeOf(now)}` : "";
    const ms = this.series.markers.slice(-8).reverse();
    this.root.querySelector("#markers")!.innerHTML = ms.map((m) =>
      `<li><span class="mk"></span>${timeOf(num(m.timeUnix))} ${m.fromReplicas} → ${m.toReplicas}: ${esc(m.reason)}</li>`).join("");
  }

  private async refreshLists(): Promise<void> {
    const [revs, events, insts] = await Promise.all([
      apiGet<any>(this.path("/revisions")).catch(() => ({ revisions: [] })),
      apiGet<any>(this.path("/events?limit=20")).catch(() => ({ events: [] })),
      apiGet<any>(this.path("/instances")).catch(() => ({ instances: [] })),
    ]);
    if (this.closed) return;
    const r = (this.app.status || {}).rollout || {};
    this.root.querySelector("#revisions")!.innerHTML = table(["#", "Hash", "Change cause", "Created", ""],
      (revs.revisions || []).slice().reverse().map((v: any) => [
        esc(num(v.number)), esc((v.templateHash || "").slice(0, 10)), esc(v.changeCause), esc(ago(v.created)) + " ago",
        num(v.number) === num(r.stableRevision) ? "stable" : num(v.number) === num(r.updateRevision) ? "update" : ""]));
    this.root.querySelector("#events")!.innerHTML = table(["Type", "Reason", "Message", "Count", "Last"],
      (events.events || []).slice(-20).reverse().map((e: any) => [
        `<span class="${e.type === "Warning" ? "bad" : ""}">${esc(e.type)}</span>`, esc(e.reason), esc(e.message),
        esc(e.count), esc(ago(e.lastTime)) + " ago"]));
    const el = this.root.querySelector("#instances")!;
    el.innerHTML = table(["Instance", "Rev", "Phase", "Ready", "Restarts", "Age", ""],
      (insts.instances || []).map((i: any) => [esc(i.id), esc(num(i.revision)), esc(i.phase), i.ready ? "yes" : "no",
        esc(num(i.restarts)), esc(ago(i.startTime)), `<button class="link" data-logs="${esc(i.id)}">logs</button>`]));
    for (const b of el.querySelectorAll<HTMLButtonElement>("button[data-logs]")) {
      b.addEventListener("click", () => void this.showLogs(b.dataset.logs || ""));
    }
  }

  private async showLogs(instance: string): Promise<void> {
    const pre = this.root.querySelector<HTMLElement>("#logs")!;
    pre.hidden = false;
    pre.textContent = "loading…";
    try {
      const text = await apiText(this.path(`/logs?instance=${encodeURIComponent(instance)}&tail=200`));
      pre.textContent = `== ${instance} (last 200 lines) ==\n` + (text || "(no output)");
    } catch (e) {
      pre.textContent = (e as Error).message;
    }
  }
}

function table(head: string[], rows: string[][]): string {
  if (!rows.length) return `<p class="muted">none</p>`;
  return `<table><thead><tr>${head.map((h) => `<th>${h}</th>`).join("")}</tr></thead><tbody>` +
    rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join("")}</tr>`).join("") + `</tbody></table>`;
}
