// The Cornerstone3D example (examples/cornerstone, bundled from the npm packages by its build.sh)
// in headless Chromium: it loads a DICOM file with @cornerstonejs/dicom-image-loader into a stack
// viewport, runs asg.js on it, and shows the regions and present findings as RectangleROI
// annotations, labelled with asg's words, over the image. The page asks nothing of any other
// origin.
//
// Inputs (set by scripts/test.sh): ASG_WEB_DIR (the built web/), ASG_CORNERSTONE_DIST (the
// example's dist/), ASG_DICOM, ASG_NATIVE_JSON (native `asg analyze` output for it),
// ASG_CORNERSTONE_SCREENSHOT (optional).

import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import fs from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

const TYPES = {
  ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".css": "text/css",
  ".wasm": "application/wasm", ".json": "application/json", ".onnx": "application/octet-stream",
};
const dist = process.env.ASG_CORNERSTONE_DIST;
const skip = dist && fs.existsSync(path.join(dist, "main.js")) ? false : "examples/cornerstone is not built (bash examples/cornerstone/build.sh)";

// web/ at the root (asg.js, its worker, wasm and model), the example under /cornerstone/.
function serve(web, example) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://localhost");
    let rel = decodeURIComponent(url.pathname);
    let root = web;
    if (rel === "/cornerstone" || rel.startsWith("/cornerstone/")) {
      root = example;
      rel = rel.slice("/cornerstone".length) || "/";
    }
    if (rel.endsWith("/")) rel += "index.html";
    const file = path.join(root, path.normalize(rel));
    if (!file.startsWith(root) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "Content-Type": TYPES[path.extname(file)] ?? "application/octet-stream" });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

test("the Cornerstone3D example shows asg's regions and findings as RectangleROI annotations", { skip }, async () => {
  const native = JSON.parse(fs.readFileSync(process.env.ASG_NATIVE_JSON, "utf8"));
  const server = await serve(path.resolve(process.env.ASG_WEB_DIR), path.resolve(dist));
  const origin = `http://127.0.0.1:${server.address().port}`;
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--no-first-run", "--disable-background-networking"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 1000 } });
    const requests = [];
    const problems = [];
    page.context().on("request", (r) => requests.push(r.url()));
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("console", (m) => m.type() === "error" && problems.push(`console error: ${m.text()}`));
    // The default model is quiet on phantoms (it offers 6 findings, tuned on real films, and
    // its region probabilities on this phantom stay under 0.1): a low threshold gives findings
    // to box (0.04: no probability within 0.002 of it, so wasm and native agree on each box).
    const threshold = 0.04;
    await page.goto(`${origin}/cornerstone/?threshold=${threshold}`);
    await page.waitForSelector('#status[data-state="ready"], #status[data-state="error"]', { timeout: 60_000 })
      .catch((e) => assert.fail(`${e.message}; ${problems.join("; ")}`));
    assert.equal(await page.getAttribute("#status", "data-state"), "ready", await page.textContent("#status"));
    await page.setInputFiles("#file", path.resolve(process.env.ASG_DICOM));
    await page.waitForSelector('#status[data-state="done"], #status[data-state="error"]', { timeout: 120_000 });
    assert.equal(await page.getAttribute("#status", "data-state"), "done", await page.textContent("#status"));

    // The same analysis as native; one annotation per box it names.
    const got = await page.evaluate(() => ({
      labels: window.asgExample.labels,
      probabilities: window.asgExample.analysis.findings.map((f) => f.probability),
    }));
    got.probabilities.forEach((p, i) => assert.ok(Math.abs(p - native.findings[i].probability) < 1e-4, `${native.findings[i].name}: ${p}`));
    const orientation = ["right lung", "left lung", "cardiac silhouette", "mediastinum"];
    const want = native.regions.filter((r) => orientation.includes(r.name)).map((r) => r.name);
    native.findings.forEach((f, fi) => {
      if (f.assessed === false || f.probability < threshold) return;
      native.regions
        .filter((r) => r.probabilities[fi] >= threshold)
        .sort((a, b) => b.probabilities[fi] - a.probabilities[fi])
        .slice(0, 3)
        .forEach((r) => want.push(`${r.name}: ${f.name} ${r.probabilities[fi].toFixed(2)}`));
    });
    assert.deepEqual(got.labels, want);
    assert.ok(want.length > 4, "no finding boxed: the test shows only the orientation boxes");

    // Cornerstone3D drew them: one SVG annotation group each, the labels as their text.
    await page.waitForFunction((n) => document.querySelectorAll("svg [data-annotation-uid]").length >= n, want.length, { timeout: 60_000 });
    const drawn = await page.$$eval("svg [data-annotation-uid]", (gs) => {
      const uids = new Set(gs.map((g) => g.getAttribute("data-annotation-uid")));
      const texts = [...document.querySelectorAll("svg text")].map((t) => t.textContent);
      return { n: uids.size, texts };
    });
    assert.equal(drawn.n, want.length);
    for (const label of want) assert.ok(drawn.texts.some((t) => t.includes(label)), `no drawn label ${label}: ${drawn.texts}`);
    // And the image under them: the viewport's canvas is not blank.
    const shot = await page.locator("#viewport").screenshot();
    assert.ok(shot.length > 20_000, "the viewport looks empty");
    if (process.env.ASG_CORNERSTONE_SCREENSHOT) await page.screenshot({ path: process.env.ASG_CORNERSTONE_SCREENSHOT });

    assert.deepEqual(requests.filter((u) => !u.startsWith(`${origin}/`) && !u.startsWith("blob:") && !u.startsWith("data:")), []);
    assert.deepEqual(problems, []);
  } finally {
    await browser.close();
    server.close();
  }
});
