// The dashboard in Debian's Chromium (headless), driven by playwright-core
// from src/dashboard/web/node_modules. Run by tests/e2e/dashboard_e2e_test.cc
// against a real tidald:
//
//   node browser.mjs flow      sign in, the app list, one app, a surge that
//                              moves the plot (and scales the app), promote
//                              the canary
//   node browser.mjs load      the list of every app: how long the page takes
//                              until its rows are drawn (median of RUNS loads)
//
// Environment: DASHBOARD (the page's URL), TOKEN, GATEWAY_PORT, APP_HOST,
// APP ("ns/name"), SHOTS (screenshot directory), APPS (rows expected: load),
// RUNS (load). Prints one JSON line: {"ok": true|false, ...}. Any console
// error or page error fails the run.
import { createRequire } from "node:module";
import fs from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const web = path.resolve(here, "../../../src/dashboard/web");
const require = createRequire(path.join(web, "package.json"));
const { chromium } = require("playwright-core");

const mode = process.argv[2];
const env = (k, d) => process.env[k] ?? d;
const url = env("DASHBOARD");
const token = env("TOKEN", "");
// Screenshots go to SHOTS (the e2e test sets it), else to a directory under
// the system's temporary one, never into the working directory.
const shots = env("SHOTS", path.join(os.tmpdir(), "tidal-dashboard-shots"));
fs.mkdirSync(shots, { recursive: true });
const result = { ok: false, mode };
const errors = [];

function shot(page, name) {
  return page.screenshot({ path: path.join(shots, name), fullPage: true });
}

// Requests to the app through the gateway, `concurrency` at a time, until
// stop() is called.
function surge(port, host, concurrency) {
  const agent = new http.Agent({ keepAlive: true, maxSockets: concurrency });
  let running = true;
  let sent = 0;
  const one = () => new Promise((resolve) => {
    const req = http.get({ host: "127.0.0.1", port, path: "/", headers: { Host: host }, agent }, (res) => {
      res.resume();
      res.on("end", resolve);
    });
    req.on("error", resolve);
  });
  const loops = [];
  for (let i = 0; i < concurrency; i++) {
    loops.push((async () => { while (running) { await one(); sent++; } })());
  }
  return { stop: async () => { running = false; await Promise.all(loops); agent.destroy(); return sent; } };
}

async function flow(page) {
  const [ns, name] = env("APP").split("/");
  await page.goto(url);
  // Sign in with the token.
  await page.fill("#token", token);
  await page.click("#signin button[type=submit]");
  const row = page.locator(`#apps [data-app="${ns}/${name}"]`);
  await row.waitFor({ timeout: 15000 });
  result.list_rows = await page.locator("#apps .abody [role=row]").count();
  await shot(page, "01-app-list.png");

  await row.locator("a").click();
  await page.waitForSelector("#plot svg", { timeout: 15000 });
  await page.waitForSelector("#actions button[data-action=promote]", { timeout: 15000 });
  await shot(page, "02-app.png");
  const before = Number(await page.getAttribute("#plot", "data-max-rps"));
  const replicasBefore = await page.textContent("#replicas");
  result.phase_before = (await page.textContent("#phase")).trim();
  result.weight_before = (await page.textContent("#weight")).trim();
  result.step_before = (await page.textContent("#step")).trim();
  result.current_step = await page.locator("#rollout ol.steps li.current").allTextContents();

  // The surge: the plot's requests/s rise and the scaler adds replicas,
  // shown as a marker with its reason.
  const load = surge(Number(env("GATEWAY_PORT")), env("APP_HOST"), 6);
  await page.waitForFunction(() => {
    const p = document.querySelector("#plot");
    return p && Number(p.dataset.maxRps) >= 30 && document.querySelectorAll("#plot .marker").length > 0;
  }, null, { timeout: 90000, polling: 250 });
  result.max_rps_before = before;
  result.max_rps_during = Number(await page.getAttribute("#plot", "data-max-rps"));
  result.markers = await page.locator("#markers li").allTextContents();
  result.replicas_before = replicasBefore;
  result.replicas_during = await page.textContent("#replicas");
  await shot(page, "03-surge.png");
  result.requests_sent = await load.stop();

  // Promote the canary that waits at its manual pause.
  await page.click("#actions button[data-action=promote]");
  await page.waitForFunction(() => {
    const ph = document.querySelector("#phase");
    return ph && /Succeeded/.test(ph.textContent || "");
  }, null, { timeout: 120000, polling: 250 });
  result.phase_after = (await page.textContent("#phase")).trim();
  result.notice = (await page.textContent("#notice")).trim();
  await shot(page, "04-promoted.png");
}

async function loadList(context) {
  const runs = Number(env("RUNS", "5"));
  const want = Number(env("APPS", "0"));
  await context.addInitScript((t) => sessionStorage.setItem("tidal-token", t), token);
  const times = [];
  for (let i = 0; i < runs; i++) {
    const page = await context.newPage();
    watch(page);
    await page.goto(url);
    // Waited for inside the page: Playwright's selector engine (which
    // waitForSelector injects, about 50 ms of script) would compete with
    // the load it measures.
    await page.evaluate(() => new Promise((resolve, reject) => {
      const end = performance.now() + 30000;
      const check = () => {
        if (document.body.dataset.listPainted && document.body.dataset.listComplete) resolve();
        else if (performance.now() > end) reject(new Error("the list was not painted within 30 s"));
        else setTimeout(check, 10);
      };
      check();
    }));
    // Milliseconds from the start of the navigation to the rows laid out
    // and painted (the frame after they were put in the page).
    times.push(Number(await page.getAttribute("body", "data-list-painted")));
    (result.rendered_ms ??= []).push(Number(await page.getAttribute("body", "data-list-rendered")));
    // ... and every row in the page (drawn after the first screenful).
    (result.complete_ms ??= []).push(Number(await page.getAttribute("body", "data-list-complete")));
    (result.fetched_ms ??= []).push(Number(await page.getAttribute("body", "data-list-fetched")));
    (result.script_ms ??= []).push(await page.evaluate(() => { const r = performance.getEntriesByType("resource").find((e) => e.name.endsWith("app.js")); return r ? r.responseEnd : 0; }));
    // Where the time went: each API call's start, first byte and end.
    (result.api_ms ??= []).push(await page.evaluate(() => performance.getEntriesByType("resource")
      .filter((e) => e.name.includes("/api/"))
      .map((e) => [e.name.replace(/^.*\/api\//, "").replace(/\?.*/, ""),
                   Math.round(e.startTime), Math.round(e.requestStart),
                   Math.round(e.responseStart), Math.round(e.responseEnd),
                   (e.serverTiming || []).map((t) => `${t.name}=${t.duration}`).join(" ")])));
    result.rows = await page.locator("#apps .abody [role=row]").count();
    if (i === runs - 1) await shot(page, "05-list-of-all-apps.png");
    await page.close();
  }
  result.load_ms = times;
  const sorted = [...times].sort((a, b) => a - b);
  result.median_ms = sorted[Math.floor(sorted.length / 2)];
  result.first_ms = times[0];
  if (want && result.rows !== want) errors.push(`expected ${want} rows, saw ${result.rows}`);
}

function watch(page) {
  page.on("console", (m) => { if (m.type() === "error") errors.push(`console: ${m.text()}`); });
  page.on("pageerror", (e) => errors.push(`page: ${e.message}`));
}

const browser = await chromium.launch({
  executablePath: env("CHROMIUM", "/usr/bin/chromium"),
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  if (mode === "flow") {
    const page = await context.newPage();
    watch(page);
    await flow(page);
  } else if (mode === "load") {
    await loadList(context);
  } else {
    throw new Error(`unknown mode ${mode}: flow | load`);
  }
  result.ok = errors.length === 0;
} catch (e) {
  result.error = String(e && e.stack || e);
} finally {
  result.errors = errors;
  await browser.close();
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
