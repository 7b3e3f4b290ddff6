// Drawing: the sparklines of the list and the app's plot, as SVG strings
// (no library, nothing fetched).

// One app's history as the page keeps it: a value per second (or minute)
// from `start`, growing as points arrive.
interface Series {
  start: number;
  step: number;
  rps: number[];
  concurrency: number[];
  p99: number[];
  desired: number[];
  ready: number[];
  markers: ScaleMarker[];
}

interface ScaleMarker {
  timeUnix: string;
  fromReplicas: number;
  toReplicas: number;
  reason: string;
}

function emptySeries(step: number): Series {
  return { start: 0, step, rps: [], concurrency: [], p99: [], desired: [], ready: [], markers: [] };
}

// Adds the points of an AppHistory (JSON) to `s`; the oldest fall out past
// `keep` points.
function appendHistory(s: Series, h: any, keep: number): void {
  const start = num(h.startUnix);
  const step = num(h.stepSeconds) || s.step;
  const n = (h.rps || []).length;
  if (s.rps.length === 0 || step !== s.step) {
    Object.assign(s, emptySeries(step));
    s.start = start;
  }
  // Seconds nobody reported (idle apps left out of an event) are zeros.
  const end = s.start + s.rps.length * s.step;
  for (let t = end; t < start; t += s.step) pushPoint(s, 0, 0, 0, lastOr(s.desired), lastOr(s.ready));
  const skip = Math.max(0, Math.round((end - start) / s.step));
  for (let i = skip; i < n; i++) {
    pushPoint(s, num(h.rps[i]), num((h.concurrency || [])[i]), num((h.p99Ms || [])[i]),
              (h.desiredReplicas || [])[i] ?? lastOr(s.desired), (h.readyReplicas || [])[i] ?? lastOr(s.ready));
  }
  for (const m of h.scaleEvents || []) {
    if (!s.markers.some((x) => x.timeUnix === m.timeUnix)) s.markers.push(m);
  }
  const over = s.rps.length - keep;
  if (over > 0) {
    s.rps.splice(0, over); s.concurrency.splice(0, over); s.p99.splice(0, over);
    s.desired.splice(0, over); s.ready.splice(0, over);
    s.start += over * s.step;
    s.markers = s.markers.filter((m) => num(m.timeUnix) >= s.start);
  }
}

function lastOr(a: number[]): number {
  return a.length ? a[a.length - 1] : 0;
}

function pushPoint(s: Series, rps: number, c: number, p99: number, d: number, r: number): void {
  s.rps.push(rps); s.concurrency.push(c); s.p99.push(p99); s.desired.push(d); s.ready.push(r);
}

// A sparkline of the last `n` values (zeros before the data).
function sparkline(values: number[], n: number, w = 120, h = 22): string {
  const v = values.slice(-n);
  const max = Math.max(1, ...v);
  const pad = n - v.length;
  let pts = "";
  for (let i = 0; i < v.length; i++) {
    const x = ((pad + i) / Math.max(1, n - 1)) * w;
    const y = h - 1 - (v[i] / max) * (h - 2);
    pts += x.toFixed(1) + "," + y.toFixed(1) + " ";
  }
  if (!pts) pts = `0,${h - 1} ${w},${h - 1}`;
  return `<svg class="spark" width="${w}" height="${h}" viewBox="0 0 ${w} ${h}"><polyline points="${pts}"/></svg>`;
}

interface Line { name: string; values: number[]; cls: string; stepped?: boolean }

// The app's plot: three panels on one time axis (requests/s and
// concurrency; p99 latency; desired and ready replicas) and the scale events
// as vertical markers whose tooltip is the reason.
function appPlot(s: Series, width: number): string {
  const left = 54, right = 12, panelH = 110, gap = 26, top = 10;
  const plotW = Math.max(200, width - left - right);
  const n = Math.max(2, s.rps.length);
  const x = (i: number) => left + (i / (n - 1)) * plotW;
  const panels: { title: string; lines: Line[]; unit: string }[] = [
    { title: "requests/s · concurrency", unit: "", lines: [
      { name: "requests/s", values: s.rps, cls: "l-rps" },
      { name: "concurrency", values: s.concurrency, cls: "l-conc" }] },
    { title: "p99 latency", unit: "ms", lines: [{ name: "p99 ms", values: s.p99, cls: "l-p99" }] },
    { title: "replicas", unit: "", lines: [
      { name: "desired", values: s.desired, cls: "l-desired", stepped: true },
      { name: "ready", values: s.ready, cls: "l-ready", stepped: true }] },
  ];
  const height = top + panels.length * (panelH + gap);
  let out = `<svg class="plot" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img">`;
  panels.forEach((p, k) => {
    const y0 = top + k * (panelH + gap) + 14;
    const h = panelH - 14;
    let max = 0;
    for (const l of p.lines) for (const v of l.values) if (v > max) max = v;
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
        if (l.stepped && i > 0) pts += x(i).toFixed(1) + "," + (y0 + h - (l.values[i - 1] / max) * h).toFixed(1) + " ";
        pts += x(i).toFixed(1) + "," + y + " ";
      }
      out += `<polyline class="${l.cls}" data-series="${esc(l.name)}" points="${pts}"><title>${esc(l.name)}</title></polyline>`;
    }
  });
  // Scale events, across the panels.
  for (const m of s.markers) {
    const i = (num(m.timeUnix) - s.start) / s.step;
    if (i < 0 || i > n - 1) continue;
    const label = `${timeOf(num(m.timeUnix))}: ${m.fromReplicas} → ${m.toReplicas} replicas (${m.reason})`;
    out += `<g class="marker"><line x1="${x(i)}" x2="${x(i)}" y1="${top}" y2="${height - gap + 4}"/>` +
      `<circle cx="${x(i)}" cy="${top + 4}" r="4"/><title>${esc(label)}</title></g>`;
  }
  // Time axis: the start, the middle and the end.
  const yAxis = height - gap + 18;
  for (const f of [0, 0.5, 1]) {
    const t = s.start + Math.round(f * (n - 1)) * s.step;
    out += `<text class="tick" x="${left + f * plotW}" y="${yAxis}" text-anchor="${f === 0 ? "start" : f === 1 ? "end" : "middle"}">${s.rps.length ? timeOf(t) : ""}</text>`;
  }
  return out + "</svg>";
}

function niceCeil(v: number): number {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}
