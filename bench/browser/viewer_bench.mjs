// The viewer as a radiologist meets it: the page opened in a fresh headless Chromium (empty
// cache), a DICOM file chosen at once (queued while the model loads), and the times, from the
// page's navigation, until the model is ready, until the first result is shown, and until a
// report typed right after it has been checked. Several built viewers (web/ folders) can be
// measured in one run, alternated, so that the machine's drift falls on all of them alike.
//
//   node bench/browser/viewer_bench.mjs DICOM RUNS LABEL=WEB_DIR [LABEL=WEB_DIR ...]
//
// Prints a Markdown table of medians (and every run's figure). Needs Debian's chromium (or
// CHROMIUM) and `npm ci` in bench/browser.

import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const [dicomArg, runsArg, ...dirArgs] = process.argv.slice(2);
if (!dicomArg || !runsArg || dirArgs.length === 0) {
  console.error("usage: node viewer_bench.mjs DICOM RUNS LABEL=WEB_DIR [LABEL=WEB_DIR ...]");
  process.exit(2);
}
const runs = Number(runsArg);
if (!Number.isInteger(runs) || runs < 1) {
  console.error(`RUNS must be a positive whole number, not ${JSON.stringify(runsArg)}`);
  process.exit(2);
}
const viewers = dirArgs.map((arg) => {
  const at = arg.indexOf("=");
  const [label, dir] = at > 0 ? [arg.slice(0, at), arg.slice(at + 1)] : [arg, arg];
  const root = path.resolve(dir);
  if (!fs.existsSync(path.join(root, "index.html")) || !fs.existsSync(path.join(root, "pkg"))) {
    console.error(`${dir}: not a built viewer (no index.html or pkg/; run scripts/build-web.sh)`);
    process.exit(2);
  }
  return { label, root };
});
const dicom = path.resolve(dicomArg);
const report = "The heart size is normal. The lungs are clear. No pleural effusion or pneumothorax.";

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".wasm": "application/wasm",
  ".json": "application/json",
};

// Serves `root` as `asg serve` does (Cache-Control: no-cache, no validators).
function serve(root) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://localhost");
    const rel = decodeURIComponent(url.pathname === "/" ? "/index.html" : url.pathname);
    const file = path.join(root, path.normalize(rel));
    if (!file.startsWith(root) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, {
      "Content-Type": TYPES[path.extname(file)] ?? "application/octet-stream",
      "Content-Length": fs.statSync(file).size,
      "Cache-Control": "no-cache",
    });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((ok) => server.listen(0, "127.0.0.1", () => ok(server)));
}

// Records, in the page, when #status first takes each state (ms since navigation).
const recordStates = () => {
  window.__asgStates = {};
  const watch = () => {
    const status = document.getElementById("status");
    if (!status) return false;
    const seen = (s, at) => {
      if (s && !(s in window.__asgStates)) window.__asgStates[s] = at;
    };
    // A state set and left within one task (ready, then busy with the queued file) shows only
    // as the next change's old value.
    new MutationObserver((records) => {
      const at = performance.now();
      records.forEach((r, i) => seen(i + 1 < records.length ? records[i + 1].oldValue : status.dataset.state, at));
    }).observe(status, { attributes: true, attributeFilter: ["data-state"], attributeOldValue: true });
    seen(status.dataset.state, performance.now());
    return true;
  };
  if (!watch()) document.addEventListener("DOMContentLoaded", watch);
};

// One visit: the page opened, the file chosen at once, its result, then a report checked.
async function visit(page, origin, label) {
  await page.goto(origin);
  await page.setInputFiles("#file", dicom);
  await page.waitForSelector('#status[data-state="done"], #status[data-state="error"]', { timeout: 120_000 });
  if ((await page.getAttribute("#status", "data-state")) !== "done") {
    throw new Error(`${label}: ${await page.textContent("#status")}`);
  }
  const doneAt = await page.evaluate(() => performance.now());
  await page.fill("#report", report);
  await page.click("#check");
  await page.waitForSelector('#status[data-state="checked"], #status[data-state="error"]', { timeout: 120_000 });
  if ((await page.getAttribute("#status", "data-state")) !== "checked") {
    throw new Error(`${label}: ${await page.textContent("#status")}`);
  }
  const states = await page.evaluate(() => window.__asgStates);
  return { ready: states.ready, done: states.done, checked: states.checked - doneAt };
}

// A first visit in a fresh browser context (empty cache), then RETURN_VISITS more in the same
// context, as a radiologist who opens the viewer again.
const RETURN_VISITS = 2;
async function once(browser, viewer) {
  const server = await serve(viewer.root);
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    await page.addInitScript(recordStates);
    const origin = `http://127.0.0.1:${server.address().port}/`;
    const first = await visit(page, origin, viewer.label);
    let again = null;
    for (let i = 0; i < RETURN_VISITS; i++) {
      // Time for the browser to store what it caches (V8 writes compiled code after tier-up).
      await new Promise((ok) => setTimeout(ok, 1000));
      again = await visit(page, origin, viewer.label);
    }
    return { ...first, returnReady: again.ready, returnDone: again.done };
  } finally {
    await context.close();
    server.close();
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
const results = new Map(viewers.map((v) => [v.label, []]));
try {
  for (let i = 0; i < runs; i++) {
    for (const v of viewers) results.get(v.label).push(await once(browser, v));
  }
} finally {
  await browser.close();
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const row = (name, key) =>
  `| ${name} | ${viewers
    .map((v) => {
      const xs = results.get(v.label).map((r) => r[key]);
      return `${median(xs).toFixed(0)} ms (${xs.map((x) => x.toFixed(0)).join(", ")})`;
    })
    .join(" | ")} |`;
console.log(`viewer opened in a fresh browser context each run, ${path.basename(dicom)} chosen at once; medians of ${runs} (every run)\n`);
console.log(`| from opening the page | ${viewers.map((v) => v.label).join(" | ")} |`);
console.log(`|---|${viewers.map(() => "---").join("|")}|`);
console.log(row("model ready", "ready"));
console.log(row("first result shown", "done"));
console.log(row("report checked (typed right after the result)", "checked"));
console.log(row(`return visit (opening ${RETURN_VISITS + 1}, same browser): model ready`, "returnReady"));
console.log(row(`return visit: first result shown`, "returnDone"));
