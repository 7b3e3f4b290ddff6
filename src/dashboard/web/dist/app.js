"use strict";
const TOKEN_KEY = "tidal-token";
class ApiError extends Error {
    constructor(status, code, message) {
        super(message);
        this.status = status;
        this.code = code;
    }
}
function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
}
function setToken(t) {
    if (t)
        sessionStorage.setItem(TOKEN_KEY, t);
    else
        sessionStorage.removeItem(TOKEN_KEY);
}
function authHeaders() {
    const t = token();
    return t ? { Authorization: "Bearer " + t } : {};
}
async function apiGet(path) {
    const early = window.tidalEarly;
    const started = early && early[path];
    if (started) {
        delete early[path];
        return decode(await started);
    }
    const res = await fetch("api/" + path, { headers: authHeaders() });
    return decode(res);
}
async function apiPost(path, body) {
    const res = await fetch("api/" + path, {
        method: "POST",
        headers: Object.assign({ "Content-Type": "application/json" }, authHeaders()),
        body: JSON.stringify(body),
    });
    return decode(res);
}
async function apiText(path) {
    const res = await fetch("api/" + path, { headers: authHeaders() });
    if (!res.ok)
        await decode(res);
    return res.text();
}
async function decode(res) {
    const text = await res.text();
    let body = {};
    try {
        body = text ? JSON.parse(text) : {};
    }
    catch (e) {
        throw new ApiError(res.status, "ERROR", text);
    }
    if (!res.ok) {
        throw new ApiError(res.status, body.code || "ERROR", body.error || res.statusText);
    }
    return body;
}
class EventStream {
    constructor(path, onEvent, onError) {
        this.path = path;
        this.onEvent = onEvent;
        this.onError = onError;
        this.controller = null;
        this.closed = false;
        this.retry = 0;
    }
    open() {
        this.closed = false;
        void this.run();
    }
    close() {
        this.closed = true;
        if (this.controller)
            this.controller.abort();
        if (this.retry)
            window.clearTimeout(this.retry);
    }
    async run() {
        this.controller = new AbortController();
        try {
            const res = await fetch("api/" + this.path(), {
                headers: authHeaders(),
                signal: this.controller.signal,
            });
            if (!res.ok || !res.body) {
                await decode(res);
                return;
            }
            const reader = res.body.getReader();
            const utf8 = new TextDecoder();
            let buffered = "";
            for (;;) {
                const { value, done } = await reader.read();
                if (done)
                    break;
                buffered += utf8.decode(value, { stream: true });
                let end;
                while ((end = buffered.indexOf("\n\n")) >= 0) {
                    const block = buffered.slice(0, end);
                    buffered = buffered.slice(end + 2);
                    let event = "message";
                    let data = "";
                    for (const line of block.split("\n")) {
                        if (line.startsWith("event: "))
                            event = line.slice(7);
                        else if (line.startsWith("data: "))
                            data += line.slice(6);
                    }
                    if (data)
                        this.onEvent(event, JSON.parse(data));
                }
            }
        }
        catch (e) {
            if (this.closed)
                return;
            if (e instanceof ApiError) {
                this.onError(e.message);
                if (e.status === 401 || e.status === 403)
                    return;
            }
        }
        if (!this.closed) {
            this.retry = window.setTimeout(() => { if (!this.closed)
                void this.run(); }, 2000);
        }
    }
}
function num(v) {
    if (v === undefined || v === null || v === "")
        return 0;
    return Number(v);
}
function esc(s) {
    return String(s === undefined || s === null ? "" : s)
        .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
        .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}
function fmt(v) {
    if (!isFinite(v))
        return "-";
    if (v === 0)
        return "0";
    if (Math.abs(v) >= 100)
        return v.toFixed(0);
    if (Math.abs(v) >= 10)
        return v.toFixed(1);
    return v.toFixed(2).replace(/\.?0+$/, "");
}
function timeOf(unix) {
    const d = new Date(unix * 1000);
    return d.toTimeString().slice(0, 8);
}
function ago(ts) {
    if (!ts)
        return "";
    const s = Math.max(0, Math.round((Date.now() - Date.parse(ts)) / 1000));
    if (s < 120)
        return s + "s";
    if (s < 7200)
        return Math.round(s / 60) + "m";
    if (s < 172800)
        return Math.round(s / 3600) + "h";
    return Math.round(s / 86400) + "d";
}
let current = null;
function showError(message) {
    const el = document.getElementById("error");
    if (!el)
        return;
    el.textContent = message;
    el.hidden = !message;
}
function signIn(reason) {
    if (current)
        current.close();
    current = null;
    const main = document.getElementById("main");
    main.innerHTML = `<form id="signin" class="signin"><h1>Sign in</h1>
    <p>Paste a Tidal token (<code>tidalctl auth create-token NAME -n NS --role viewer</code>).
    It stays in this tab only.</p>
    <input id="token" type="password" autocomplete="off" placeholder="tidal_..." aria-label="token">
    <button type="submit">Sign in</button><p id="signin-error" class="bad">${esc(reason)}</p></form>`;
    const form = document.getElementById("signin");
    form.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        const t = document.getElementById("token").value.trim();
        setToken(t);
        if (!t)
            sessionStorage.setItem(TOKEN_KEY + "-none", "1");
        try {
            await whoami();
            route();
        }
        catch (e) {
            setToken("");
            document.getElementById("signin-error").textContent = e.message;
        }
    });
}
async function whoami() {
    const me = await apiGet("whoami");
    const roles = (me.bindings || []).map((b) => `${b.role} in ${b.namespace === "*" ? "every namespace" : b.namespace}`);
    document.getElementById("who").textContent = me.name ? `${me.name} (${roles.join(", ")})` : "";
}
function route() {
    if (current)
        current.close();
    showError("");
    const main = document.getElementById("main");
    const parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
    let view;
    if (parts[0] === "apps" && parts.length >= 3)
        view = new AppView(main, parts[1], parts[2]);
    else
        view = new ListView(main);
    current = view;
    view.show().catch((e) => {
        if (e instanceof ApiError && e.status === 401)
            signIn(e.message);
        else
            showError(e.message);
    });
}
async function start() {
    document.getElementById("signout").addEventListener("click", () => {
        setToken("");
        sessionStorage.removeItem(TOKEN_KEY + "-none");
        document.getElementById("who").textContent = "";
        signIn("");
    });
    window.addEventListener("hashchange", route);
    if (!token() && !sessionStorage.getItem(TOKEN_KEY + "-none")) {
        signIn("");
        return;
    }
    route();
    try {
        await whoami();
    }
    catch (e) {
        if (e instanceof ApiError && e.status === 401) {
            signIn(token() ? e.message : "");
            return;
        }
        showError(e.message);
    }
}
document.addEventListener("DOMContentLoaded", () => void start());
function emptySeries(step) {
    return { start: 0, step, rps: [], concurrency: [], p99: [], desired: [], ready: [], markers: [] };
}
function appendHistory(s, h, keep) {
    const start = num(h.startUnix);
    const step = num(h.stepSeconds) || s.step;
    const n = (h.rps || []).length;
    if (s.rps.length === 0 || step !== s.step) {
        Object.assign(s, emptySeries(step));
        s.start = start;
    }
    const end = s.start + s.rps.length * s.step;
    for (let t = end; t < start; t += s.step)
        pushPoint(s, 0, 0, 0, lastOr(s.desired), lastOr(s.ready));
    const skip = Math.max(0, Math.round((end - start) / s.step));
    for (let i = skip; i < n; i++) {
        pushPoint(s, num(h.rps[i]), num((h.concurrency || [])[i]), num((h.p99Ms || [])[i]), (h.desiredReplicas || [])[i] ?? lastOr(s.desired), (h.readyReplicas || [])[i] ?? lastOr(s.ready));
    }
    for (const m of h.scaleEvents || []) {
        if (!s.markers.some((x) => x.timeUnix === m.timeUnix))
            s.markers.push(m);
    }
    const over = s.rps.length - keep;
    if (over > 0) {
        s.rps.splice(0, over);
        s.concurrency.splice(0, over);
        s.p99.splice(0, over);
        s.desired.splice(0, over);
        s.ready.splice(0, over);
        s.start += over * s.step;
        s.markers = s.markers.filter((m) => num(m.timeUnix) >= s.start);
    }
}
function lastOr(a) {
    return a.length ? a[a.length - 1] : 0;
}
function pushPoint(s, rps, c, p99, d, r) {
    s.rps.push(rps);
    s.concurrency.push(c);
    s.p99.push(p99);
    s.desired.push(d);
    s.ready.push(r);
}
function sparkline(values, n, w = 120, h = 22) {
    const v = values.slice(-n);
    const max = Math.max(1, ...v);
    const pad = n - v.length;
    let pts = "";
    for (let i = 0; i < v.length; i++) {
        const x = ((pad + i) / Math.max(1, n - 1)) * w;
        const y = h - 1 - (v[i] / max) * (h - 2);
        pts += x.toFixed(1) + "," + y.toFixed(1) + " ";
    }
    if (!pts)
        pts = `0,${h - 1} ${w},${h - 1}`;
    return `<svg class="spark" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}"><polyline points="${pts}"/></svg>`;
}
function appPlot(s, width) {
    const left = 54, right = 12, panelH = 110, gap = 26, top = 10;
    const plotW = Math.max(200, width - left - right);
    const n = Math.max(2, s.rps.length);
    const x = (i) => left + (i / (n - 1)) * plotW;
    const panels = [
        { title: "requests/s · concurrency", unit: "", lines: [
                { name: "requests/s", values: s.rps, cls: "l-rps" },
                { name: "concurrency", values: s.concurrency, cls: "l-conc" }
            ] },
        { title: "p99 latency", unit: "ms", lines: [{ name: "p99 ms", values: s.p99, cls: "l-p99" }] },
        { title: "replicas", unit: "", lines: [
                { name: "desired", values: s.desired, cls: "l-desired", stepped: true },
                { name: "ready", values: s.ready, cls: "l-ready", stepped: true }
            ] },
    ];
    const height = top + panels.length * (panelH + gap);
    let out = `<svg class="plot" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img">`;
    panels.forEach((p, k) => {
        const y0 = top + k * (panelH + gap) + 14;
        const h = panelH - 14;
        let max = 0;
        for (const l of p.lines)
            for (const v of l.values)
                if (v > max)
                    max = v;
        max = max <= 0 ? 1 : niceCeil(max);
        out += `<text class="ptitle" x="${left}" y="${y0 - 4}">${esc(p.title)}</text>`;
        out += `<rect class="frame" x="${left}" y="${y0}" width="${plotW}" height="${h}"/>`;
        for (const f of [0, 0.5, 1]) {
            const y = y0 + h - f * h;
            out += `<line class="grid" x1="${left}" x2="${left + plotW}" y1="${y}" y2="${y}"/>`;
            out += `<text class="tick" x="${left - 4}" y="${y + 3}" text-anchor="end">${fmt(max * f)}${p.unit}</text>`;
        }
        for (const l of p.lines) {
            let pts = "";
            for (let i = 0; i < l.values.length; i++) {
                const y = (y0 + h - (l.values[i] / max) * h).toFixed(1);
                if (l.stepped && i > 0)
                    pts += x(i).toFixed(1) + "," + (y0 + h - (l.values[i - 1] / max) * h).toFixed(1) + " ";
                pts += x(i).toFixed(1) + "," + y + " ";
            }
            out += `<polyline class="${l.cls}" data-series="${esc(l.name)}" points="${pts}"><title>${esc(l.name)}</title></polyline>`;
        }
    });
    for (const m of s.markers) {
        const i = (num(m.timeUnix) - s.start) / s.step;
        if (i < 0 || i > n - 1)
            continue;
        const label = `${timeOf(num(m.timeUnix))}: ${m.fromReplicas} → ${m.toReplicas} replicas (${m.reason})`;
        out += `<g class="marker"><line x1="${x(i)}" x2="${x(i)}" y1="${top}" y2="${height - gap + 4}"/>` +
            `<circle cx="${x(i)}" cy="${top + 4}" r="4"/><title>${esc(label)}</title></g>`;
    }
    const yAxis = height - gap + 18;
    for (const f of [0, 0.5, 1]) {
        const t = s.start + Math.round(f * (n - 1)) * s.step;
        out += `<text class="tick" x="${left + f * plotW}" y="${yAxis}" text-anchor="${f === 0 ? "start" : f === 1 ? "end" : "middle"}">${s.rps.length ? timeOf(t) : ""}</text>`;
    }
    return out + "</svg>";
}
function niceCeil(v) {
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10])
        if (v <= m * p)
            return m * p;
    return 10 * p;
}
const SPARK_SECONDS = 300;
const FIRST_ROWS = 60;
const MORE_ROWS = 200;
const FIRST_PAGE = `apps?all=1&limit=${FIRST_ROWS}`;
const PAGE_SIZE = 500;
const FLAT = `<span class="flat"></span>`;
function afterPaint(f) {
    requestAnimationFrame(() => setTimeout(f, 0));
}
function statusBadge(status, reason, deleting) {
    if (deleting)
        return `<span class="badge warn">Deleting</span>`;
    const cls = status === "True" ? "ok" : status === "False" ? "bad" : "warn";
    const text = status === "True" ? "Ready" : reason || (status === "False" ? "NotReady" : "Unknown");
    return `<span class="badge ${cls}" title="${esc(reason)}">${esc(text)}</span>`;
}
function phaseBadge(phase, weight) {
    if (!phase)
        return "";
    const cls = phase === "Succeeded" ? "ok" : phase === "Failed" || phase === "RolledBack" ? "bad" : "warn";
    const w = phase === "Progressing" || phase === "Paused" ? ` ${weight}%` : "";
    return `<span class="badge ${cls}">${esc(phase)}${w}</span>`;
}
class ListView {
    constructor(root) {
        this.root = root;
        this.rows = new Map();
        this.series = new Map();
        this.stream = null;
        this.filter = "";
        this.now = 0;
        this.closed = false;
        this.renderGen = 0;
        this.onPainted = null;
        this.onComplete = null;
        this.loading = true;
    }
    async show() {
        this.root.innerHTML = `<section class="list"><div class="bar"><h1>Apps</h1>
      <input id="filter" type="search" placeholder="filter by name or namespace" aria-label="filter">
      <span id="count" class="muted"></span></div>
      <div id="apps" class="applist" role="table" aria-label="apps">
      <div class="arow ahead" role="row"><span role="columnheader">Namespace</span><span role="columnheader">Name</span>
      <span role="columnheader">Ready</span><span role="columnheader">Status</span><span role="columnheader">Release</span>
      <span role="columnheader">Metric / target</span><span role="columnheader">Req/s</span>
      <span role="columnheader">Last 5 min</span><span role="columnheader">URL</span></div>
      <div class="abody" role="rowgroup"></div></div></section>`;
        const input = this.root.querySelector("#filter");
        input.addEventListener("input", () => { this.filter = input.value.trim(); this.renderRows(false); });
        const [list, hist] = await Promise.all([
            apiGet(FIRST_PAGE),
            apiGet(`history?all=1&window=${SPARK_SECONDS}&rpsOnly=1&omitIdle=1`),
        ]);
        if (this.closed)
            return;
        document.body.dataset.listFetched = String(performance.now());
        for (const a of list.apps)
            this.rows.set(a.ns + "/" + a.name, a);
        this.onHistory(hist, false);
        this.onPainted = () => { document.body.dataset.listPainted = String(performance.now()); };
        this.onComplete = () => { document.body.dataset.listComplete = String(performance.now()); };
        this.loading = !!list.continue;
        this.renderRows(true);
        document.body.dataset.listRendered = String(performance.now());
        performance.mark("tidal-list-rendered");
        if (list.continue) {
            await new Promise((resolve) => afterPaint(resolve));
            let next = list.continue;
            while (next && !this.closed) {
                const page = await apiGet(`apps?all=1&limit=${PAGE_SIZE}&continue=${encodeURIComponent(next)}`);
                for (const a of page.apps)
                    this.rows.set(a.ns + "/" + a.name, a);
                if (page.continue === next)
                    throw new Error("tidald answered a list page with the token it was given");
                next = page.continue;
            }
            if (this.closed)
                return;
            this.loading = false;
            this.renderRows(true);
        }
        this.stream = new EventStream(() => `stream?all=1&rv=${list.resourceVersion}&after=${this.now}`, (event, data) => this.onEvent(event, data), (msg) => showError(msg));
        this.stream.open();
    }
    close() {
        this.closed = true;
        if (this.stream)
            this.stream.close();
    }
    onEvent(event, data) {
        if (event === "app") {
            const a = data.app;
            const key = a.ns + "/" + a.name;
            const had = this.rows.has(key);
            if (data.type === "DELETED")
                this.rows.delete(key);
            else
                this.rows.set(key, a);
            const row = document.getElementById("row-" + key);
            if (had && data.type !== "DELETED" && row)
                row.outerHTML = this.rowHtml(key);
            else if (had || data.type !== "DELETED")
                this.renderRows(false);
        }
        else if (event === "history") {
            this.onHistory(data, true);
        }
    }
    onHistory(h, live) {
        const now = num(h.nowUnix);
        const seen = new Set();
        for (const a of h.apps || []) {
            const key = a.namespace + "/" + a.app;
            seen.add(key);
            let s = this.series.get(key);
            if (!s) {
                s = emptySeries(1);
                this.series.set(key, s);
            }
            appendHistory(s, a, SPARK_SECONDS);
        }
        for (const [key, s] of this.series) {
            if (!seen.has(key) && now > 0)
                appendHistory(s, { startUnix: now, stepSeconds: 1, rps: [0] }, SPARK_SECONDS);
        }
        this.now = Math.max(this.now, now);
        if (!live)
            return;
        for (const [key, s] of this.series) {
            const row = document.getElementById("row-" + key);
            if (row) {
                row.querySelector(".rps").textContent = fmt(lastOr(s.rps));
                row.querySelector(".sparkcell").innerHTML = sparkline(s.rps, SPARK_SECONDS);
            }
            if (s.rps.every((v) => v === 0))
                this.series.delete(key);
        }
    }
    renderRows(progressive) {
        const body = this.root.querySelector("#apps .abody");
        if (!body)
            return;
        const gen = ++this.renderGen;
        const filter = this.filter.toLowerCase();
        const keys = [...this.rows.keys()].sort().filter((k) => !filter || k.toLowerCase().includes(filter));
        const html = (from, to) => {
            let out = "";
            for (let i = from; i < to && i < keys.length; i++)
                out += this.rowHtml(keys[i]);
            return out;
        };
        let at = progressive ? FIRST_ROWS : keys.length;
        body.innerHTML = html(0, at);
        const loaded = this.loading ? "+" : "";
        this.root.querySelector("#count").textContent =
            keys.length === this.rows.size ? `${keys.length}${loaded} apps` : `${keys.length} of ${this.rows.size}${loaded} apps`;
        const once = (which) => {
            const f = this[which];
            this[which] = null;
            if (f)
                f();
        };
        const done = () => { if (!this.loading)
            once("onComplete"); };
        const more = () => {
            once("onPainted");
            if (gen !== this.renderGen || this.closed)
                return;
            if (at >= keys.length)
                return done();
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
    rowHtml(key) {
        const a = this.rows.get(key);
        const s = this.series.get(key);
        const href = `#/apps/${encodeURIComponent(a.ns)}/${encodeURIComponent(a.name)}`;
        const metric = a.metric ? `${esc(a.metric)} ${fmt(a.value)} / ${fmt(a.target)}` : "";
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
class AppView {
    constructor(root, ns, name) {
        this.root = root;
        this.ns = ns;
        this.name = name;
        this.app = null;
        this.series = emptySeries(1);
        this.stream = null;
        this.closed = false;
        this.window = 3600;
        this.refreshTimer = 0;
        this.can = { rollout: false, scale: false };
    }
    path(what) {
        return `apps/${encodeURIComponent(this.ns)}/${encodeURIComponent(this.name)}${what}`;
    }
    async show() {
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
        for (const r of this.root.querySelectorAll("input[name=win]")) {
            r.addEventListener("change", () => { this.window = Number(r.value); void this.loadHistory(); });
        }
        const [app, can1, can2] = await Promise.all([
            apiGet(this.path("")),
            apiGet(`can-i?verb=rollout&resource=apps&ns=${encodeURIComponent(this.ns)}`).catch(() => ({ allowed: false })),
            apiGet(`can-i?verb=scale&resource=apps&ns=${encodeURIComponent(this.ns)}`).catch(() => ({ allowed: false })),
        ]);
        if (this.closed)
            return;
        this.can = { rollout: !!can1.allowed, scale: !!can2.allowed };
        this.app = app;
        this.renderApp();
        this.renderActions();
        await this.loadHistory();
        void this.refreshLists();
        if (this.closed)
            return;
        this.stream = new EventStream(() => `stream?ns=${encodeURIComponent(this.ns)}&app=${encodeURIComponent(this.name)}` +
            `&rv=${num(this.app.metadata.resourceVersion)}&after=${this.series.start + this.series.rps.length * this.series.step - 1}` +
            `&window=${this.window}`, (event, data) => this.onEvent(event, data), (msg) => showError(msg));
        this.stream.open();
    }
    close() {
        this.closed = true;
        if (this.stream)
            this.stream.close();
        window.clearTimeout(this.refreshTimer);
    }
    async loadHistory() {
        const step = this.window > 3600 ? 60 : 1;
        const h = await apiGet(`history?ns=${encodeURIComponent(this.ns)}&app=${encodeURIComponent(this.name)}` +
            `&window=${this.window}&step=${step}`);
        this.series = emptySeries(step);
        if (h.apps && h.apps.length)
            appendHistory(this.series, h.apps[0], this.window / step);
        this.renderPlot(num(h.nowUnix));
    }
    onEvent(event, data) {
        if (event === "app") {
            if (data.type === "DELETED") {
                showError(`${this.name} was deleted`);
                return;
            }
            this.app = data.app;
            this.renderApp();
            this.scheduleRefresh();
        }
        else if (event === "history") {
            if (this.series.step === 60) {
                if (num(data.nowUnix) % 60 === 0)
                    void this.loadHistory();
                return;
            }
            for (const a of data.apps || [])
                appendHistory(this.series, a, this.window);
            this.renderPlot(num(data.nowUnix));
        }
    }
    scheduleRefresh() {
        if (this.refreshTimer)
            return;
        this.refreshTimer = window.setTimeout(() => { this.refreshTimer = 0; void this.refreshLists(); }, 1000);
    }
    renderApp() {
        const a = this.app;
        const st = a.status || {};
        const sc = st.scaling || {};
        const ready = (st.conditions || []).find((c) => c.type === "Ready") || {};
        const metric = sc.metric ? ` · ${esc(sc.metric)} ${fmt(num(sc.value))} / target ${fmt(num(sc.target))}` : "";
        this.root.querySelector("#summary").innerHTML =
            `${statusBadge(ready.status || "Unknown", ready.reason || "", !!a.metadata.deletionTimestamp)} ` +
                `<span id="replicas">${num(st.readyReplicas)}/${num(st.desiredReplicas)} ready</span>${metric}` +
                (st.url ? ` · <span class="url">${esc(st.url)}</span>` : "");
        this.renderRollout();
    }
    renderRollout() {
        const a = this.app;
        const r = (a.status || {}).rollout || {};
        const spec = (a.spec || {}).rollout || {};
        const steps = spec.steps || [];
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
                const at = num(r.step) - 1;
                const moving = r.phase === "Progressing" || r.phase === "Paused";
                const cls = !num(r.totalSteps) ? "" : i < at ? "done" : i === at && moving ? "current" : "";
                return `<li class="${cls}">${what}${pause}</li>`;
            }).join("") + `</ol>`;
        }
        this.root.querySelector("#rollout").innerHTML = html;
    }
    renderActions() {
        const el = this.root.querySelector("#actions");
        let html = "";
        if (this.can.rollout) {
            html += `<button data-action="promote">Promote</button><button data-action="promote-full">Promote fully</button>` +
                `<button data-action="abort" class="danger">Abort</button><button data-action="undo">Undo</button>`;
        }
        if (this.can.scale) {
            html += `<span class="scale"><input id="replicas-input" type="number" min="0" aria-label="replicas" placeholder="replicas">` +
                `<button data-action="scale">Scale</button></span>`;
        }
        if (!html)
            html = `<span class="muted">Read only: your token may not change this app.</span>`;
        el.innerHTML = html;
        for (const b of el.querySelectorAll("button")) {
            b.addEventListener("click", () => void this.act(b.dataset.action || ""));
        }
    }
    async act(action) {
        const notice = this.root.querySelector("#notice");
        try {
            let app;
            if (action === "scale") {
                const v = this.root.querySelector("#replicas-input").value;
                if (v === "")
                    throw new Error("give a number of replicas");
                app = await apiPost(this.path("/scale"), { replicas: Number(v) });
            }
            else if (action === "abort" && !window.confirm(`Abort the release of ${this.name} and roll back?`)) {
                return;
            }
            else {
                const full = action === "promote-full";
                app = await apiPost(this.path("/rollout"), { action: full ? "promote" : action, full });
            }
            this.app = app;
            this.renderApp();
            notice.className = "notice ok";
            notice.textContent = `${action}: done`;
            this.scheduleRefresh();
        }
        catch (e) {
            notice.className = "notice bad";
            notice.textContent = `${action}: ${e.message}`;
        }
    }
    renderPlot(now) {
        const el = this.root.querySelector("#plot");
        if (!el)
            return;
        el.innerHTML = appPlot(this.series, Math.max(480, el.clientWidth || 900));
        el.dataset.points = String(this.series.rps.length);
        el.dataset.maxRps = String(Math.max(0, ...this.series.rps.slice(-120)));
        this.root.querySelector("#now").textContent = now ? `updated ${timeOf(now)}` : "";
        const ms = this.series.markers.slice(-8).reverse();
        this.root.querySelector("#markers").innerHTML = ms.map((m) => `<li><span class="mk"></span>${timeOf(num(m.timeUnix))} ${m.fromReplicas} → ${m.toReplicas}: ${esc(m.reason)}</li>`).join("");
    }
    async refreshLists() {
        const [revs, events, insts] = await Promise.all([
            apiGet(this.path("/revisions")).catch(() => ({ revisions: [] })),
            apiGet(this.path("/events?limit=20")).catch(() => ({ events: [] })),
            apiGet(this.path("/instances")).catch(() => ({ instances: [] })),
        ]);
        if (this.closed)
            return;
        const r = (this.app.status || {}).rollout || {};
        this.root.querySelector("#revisions").innerHTML = table(["#", "Hash", "Change cause", "Created", ""], (revs.revisions || []).slice().reverse().map((v) => [
            esc(num(v.number)), esc((v.templateHash || "").slice(0, 10)), esc(v.changeCause), esc(ago(v.created)) + " ago",
            num(v.number) === num(r.stableRevision) ? "stable" : num(v.number) === num(r.updateRevision) ? "update" : ""
        ]));
        this.root.querySelector("#events").innerHTML = table(["Type", "Reason", "Message", "Count", "Last"], (events.events || []).slice(-20).reverse().map((e) => [
            `<span class="${e.type === "Warning" ? "bad" : ""}">${esc(e.type)}</span>`, esc(e.reason), esc(e.message),
            esc(e.count), esc(ago(e.lastTime)) + " ago"
        ]));
        const el = this.root.querySelector("#instances");
        el.innerHTML = table(["Instance", "Rev", "Phase", "Ready", "Restarts", "Age", ""], (insts.instances || []).map((i) => [esc(i.id), esc(num(i.revision)), esc(i.phase), i.ready ? "yes" : "no",
            esc(num(i.restarts)), esc(ago(i.startTime)), `<button class="link" data-logs="${esc(i.id)}">logs</button>`]));
        for (const b of el.querySelectorAll("button[data-logs]")) {
            b.addEventListener("click", () => void this.showLogs(b.dataset.logs || ""));
        }
    }
    async showLogs(instance) {
        const pre = this.root.querySelector("#logs");
        pre.hidden = false;
        pre.textContent = "loading…";
        try {
            const text = await apiText(this.path(`/logs?instance=${encodeURIComponent(instance)}&tail=200`));
            pre.textContent = `== ${instance} (last 200 lines) ==\n` + (text || "(no output)");
        }
        catch (e) {
            pre.textContent = e.message;
        }
    }
}
function table(head, rows) {
    if (!rows.length)
        return `<p class="muted">none</p>`;
    return `<table><thead><tr>${head.map((h) => `<th>${h}</th>`).join("")}</tr></thead><tbody>` +
        rows.map((r) => `<tr>${r.map((c) => `<td>${c}</td>`).join("")}</tr>`).join("") + `</tbody></table>`;
}
