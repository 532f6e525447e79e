// Browser end-to-end test: the viewer page in real headless Chromium analyses a DICOM file with
// the WebAssembly build, and its result must match the native `asg analyze` output for the same
// file. The page must request nothing outside its own origin.
//
// Inputs (set by scripts/test.sh): ASG_WEB_DIR (the built web/ folder, with pkg/ and model/),
// ASG_DICOM (a DICOM file), ASG_NATIVE_JSON (native `asg analyze` output for it),
// ASG_SCREENSHOT (optional: where to save a screenshot).

import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import fs from "node:fs";
import { spawn } from "node:child_process";
import path from "node:path";
import { chromium } from "playwright-core";

const env = (name) => {
  const v = process.env[name];
  assert.ok(v, `${name} must be set (run through scripts/test.sh)`);
  return v;
};

const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".wasm": "application/wasm",
  ".json": "application/json",
  ".onnx": "application/octet-stream",
};

// Serves `root` on loopback. `hold` (optional): a path whose response waits for `hold.until`
// (a promise), to keep the model loading as long as a test needs.
function serve(root, hold = null) {
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, "http://localhost");
    const rel = decodeURIComponent(url.pathname === "/" ? "/index.html" : url.pathname);
    const file = path.join(root, path.normalize(rel));
    if (!file.startsWith(root) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      res.writeHead(404).end();
      return;
    }
    if (hold && url.pathname === hold.path) await hold.until;
    res.writeHead(200, {
      "Content-Type": TYPES[path.extname(file)] ?? "application/octet-stream",
      "Content-Length": fs.statSync(file).size,
    });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

// Headless Chromium (CHROMIUM, or Debian's), with its own background traffic off: the tests
// check that the page requests nothing outside its origin.
function launch() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
}

// Opens the viewer page (ASG_WEB_DIR served on loopback) in a fresh browser, runs `use(page)`
// and closes both whatever happens.
async function withViewerPage(use) {
  const server = await serve(path.resolve(env("ASG_WEB_DIR")));
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    return await use(page);
  } finally {
    await browser.close();
    server.close();
  }
}

function assertClose(what, browser, native) {
  assert.equal(browser.length, native.length, `${what}: lengths differ`);
  browser.forEach((b, i) => {
    const n = native[i];
    const tol = 1e-4 * Math.max(Math.abs(b), Math.abs(n)) + 1e-6;
    assert.ok(Math.abs(b - n) <= tol, `${what}[${i}]: browser ${b} vs native ${n}`);
  });
}

test("the viewer analyses a DICOM file in the browser exactly as the native CLI does", async () => {
  const webDir = path.resolve(env("ASG_WEB_DIR"));
  const dicom = path.resolve(env("ASG_DICOM"));
  const native = JSON.parse(fs.readFileSync(env("ASG_NATIVE_JSON"), "utf8"));
  const server = await serve(webDir);
  const origin = `http://127.0.0.1:${server.address().port}`;
  const browser = await launch();
  try {
    const page = await browser.newPage();
    const requests = [];
    const problems = [];
    page.on("request", (r) => requests.push(r.url()));
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("console", (m) => m.type() === "error" && problems.push(`console error: ${m.text()}`));
    // Requests from the worker are reported too (context-wide).
    page.context().on("request", (r) => requests.push(r.url()));

    await page.goto(`${origin}/`);
    await page.waitForSelector('#status[data-state="ready"], #status[data-state="error"]', { timeout: 60_000 });
    assert.equal(await page.getAttribute("#status", "data-state"), "ready", await page.textContent("#status"));

    await page.setInputFiles("#file", dicom);
    await page.waitForSelector('#status[data-state="done"], #status[data-state="error"]', { timeout: 60_000 });
    assert.equal(await page.getAttribute("#status", "data-state"), "done", await page.textContent("#status"));

    const shown = JSON.parse(await page.textContent("#result"));
    // Same model, same image geometry, same letterbox.
    assert.equal(shown.model.image_sha256, native.model.image_sha256);
    assert.deepEqual([shown.image.width, shown.image.height], [native.image.width, native.image.height]);
    assert.deepEqual(shown.letterbox, native.letterbox);
    // The JSON shown is what `asg analyze` writes by default: no raw outputs (the embedding
    // module's test compares those).
    assert.equal(shown.schema_version, native.schema_version);
    assert.equal(shown.outputs, undefined, "raw outputs in the default JSON");
    assertClose("probabilities", shown.findings.map((f) => f.probability), native.findings.map((f) => f.probability));
    // A bundle with a lung-crop model (scripts/test.sh runs this test again with one): the worker
    // fetched it from the page's origin and the finding it scores is its own.
    if (process.env.ASG_CROP_MODEL) {
      assert.ok(requests.some((u) => u.endsWith(`/model/${process.env.ASG_CROP_MODEL}`)), "the crop model was loaded");
      const scored = shown.findings.find((f) => f.name === "nodule");
      assert.equal(scored.heatmap?.source, "crop_cells");
    }

    // What a person sees: the image on the canvas at full size, and the findings table as text.
    const canvas = await page.evaluate(() => {
      const c = document.getElementById("image");
      const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let sum = 0;
      for (let i = 0; i < px.length; i += 4) sum += px[i];
      return { width: c.width, height: c.height, mean: sum / (px.length / 4) };
    });
    assert.deepEqual([canvas.width, canvas.height], [native.image.width, native.image.height]);
    assert.ok(canvas.mean > 5 && canvas.mean < 250, `canvas looks blank (mean grey ${canvas.mean})`);
    const rows = await page.$$eval("#findings tbody tr", (trs) =>
      trs.map((tr) => [tr.cells[0].textContent, tr.cells[1].textContent]));
    // The table holds the assessed findings with the native probabilities; the others are
    // named apart, with no probability.
    const assessedNative = native.findings.filter((f) => f.assessed !== false);
    assert.ok(assessedNative.length > 0, "no assessed finding to compare");
    assert.equal(rows.length, assessedNative.length);
    for (const [name, shown] of rows) {
      const f = assessedNative.find((x) => x.name === name);
      assert.ok(f, `${name} is in the table but not assessed`);
      assert.ok(Math.abs(Number(shown) - f.probability) < 1e-3, `${name}: shown ${shown}`);
    }
    const unassessed = native.findings.filter((f) => f.assessed === false).map((f) => f.name);
    if (unassessed.length) {
      assert.equal(await page.textContent("#not-assessed-list"), unassessed.join(", "));
      assert.equal(await page.textContent("#not-assessed-count"), String(unassessed.length));
    }

    // Window/level and invert change the pixels on the canvas.
    const meanGrey = () => page.evaluate(() => {
      const c = document.getElementById("image");
      const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let sum = 0;
      for (let i = 0; i < px.length; i += 4) sum += px[i];
      return sum / (px.length / 4);
    });
    const grey = await meanGrey();
    await page.click("#invert");
    const inverted = await meanGrey();
    assert.ok(Math.abs(inverted - (255 - grey)) < 1, `invert: ${grey} -> ${inverted}`);
    await page.keyboard.press("i");
    assert.ok(Math.abs((await meanGrey()) - grey) < 1e-6, "the i key inverts back");
    await page.click("#preset-narrow");
    const narrow = await meanGrey();
    assert.ok(Math.abs(narrow - grey) > 1, `a narrower window left the pixels as they were (${grey} -> ${narrow})`);
    assert.match(await page.textContent("#wl"), /^W \d+ \/ L -?\d+/);
    await page.keyboard.press("1");
    assert.ok(Math.abs((await meanGrey()) - grey) < 1e-6, "the file window is restored");
    // Dragging on the image changes the window too.
    const box = await page.locator("#viewport").boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(box.x + box.width / 2 + 60, box.y + box.height / 2 + 40);
    await page.mouse.up();
    assert.ok(Math.abs((await meanGrey()) - grey) > 1, "dragging did not change window/level");
    await page.keyboard.press("1");

    // The threshold slider decides what counts as present; the reset restores the model's own.
    const presentRows = () => page.$$eval("#findings tbody tr.present", (trs) => trs.length);
    // Findings the model was not trained to assess are never present, whatever the slider says.
    const assessed = native.findings.filter((f) => f.assessed !== false);
    await page.fill("#threshold", "0");
    assert.equal(await presentRows(), assessed.length);
    await page.fill("#threshold", "1");
    assert.equal(await presentRows(), assessed.filter((f) => f.probability >= 1).length);
    await page.click("#threshold-reset");
    assert.equal(await presentRows(), native.findings.filter((f) => f.present).length);

    // The regions as text, the same as native.
    const regionRows = await page.$$eval("#regions tbody tr", (trs) => trs.map((tr) => tr.cells[0].textContent));
    assert.deepEqual(regionRows, native.regions.map((r) => r.name));
    assert.equal(regionRows.length, 29);

    // The overlay is drawn: anatomy boxes at least; selecting a finding draws its heatmap.
    const overlaySum = () => page.evaluate(() => {
      const c = document.getElementById("overlay");
      const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let alpha = 0;
      for (let i = 3; i < px.length; i += 4) alpha += px[i] > 0 ? 1 : 0;
      return { width: c.width, height: c.height, drawn: alpha };
    });
    const before = await overlaySum();
    assert.deepEqual([before.width, before.height], [native.image.width, native.image.height]);
    assert.ok(before.drawn > 100, `overlay looks empty (${before.drawn} pixels drawn)`);
    // The anatomy outlines are the native ones, drawn, and the 'o' key hides them.
    assert.deepEqual(shown.anatomy.map((o) => [o.name, o.rings.map((r) => r.length)]), native.anatomy.map((o) => [o.name, o.rings.map((r) => r.length)]));
    assertClose("outlines", shown.anatomy.flatMap((o) => o.rings.flat(2)), native.anatomy.flatMap((o) => o.rings.flat(2)));
    const outlinedNames = () => page.$eval("#overlay", (c) => JSON.parse(c.dataset.outlines));
    assert.deepEqual(await outlinedNames(), native.anatomy.filter((o) => o.rings.length).map((o) => o.name));
    assert.ok((await outlinedNames()).includes("right lung"));
    await page.focus("#viewport");
    await page.keyboard.press("o");
    assert.deepEqual(await outlinedNames(), []);
    assert.ok((await overlaySum()).drawn < before.drawn, "hiding the outlines did not change the overlay");
    await page.keyboard.press("o");
    assert.deepEqual((await overlaySum()).drawn, before.drawn);
    // The most probable of the findings the viewer lists (those not assessed have no row).
    const top = assessed.reduce((a, b) => (b.probability > a.probability ? b : a));
    await page.click(`#findings tbody tr[data-finding="${top.name}"]`);
    const after = await overlaySum();
    assert.notEqual(after.drawn, before.drawn, "selecting a finding did not change the overlay");
    assert.ok(await page.$eval(`#findings tbody tr[data-finding="${top.name}"]`, (tr) => tr.classList.contains("selected")));

    // The report checked in the browser gives the native verdicts, shown by colour.
    await page.fill("#report", fs.readFileSync(path.resolve(env("ASG_REPORT")), "utf8"));
    await page.click("#check");
    await page.waitForSelector('#status[data-state="checked"], #status[data-state="error"]', { timeout: 60_000 });
    assert.equal(await page.getAttribute("#status", "data-state"), "checked", await page.textContent("#status"));
    const verdicts = await page.$$eval("#sentences li", (lis) =>
      lis.map((li) => [li.dataset.verdict, getComputedStyle(li).borderLeftColor]));
    const want = native.report_check.sentences
      .filter((x) => x.verdict !== "no_claim" && x.verdict !== "not_assessed")
      .map((x) => x.verdict)
      .concat(native.report_check.omissions.map(() => "omission"));
    assert.deepEqual(verdicts.map((v) => v[0]), want);
    assert.ok(want.length > 0, "the report made no checkable statement");
    for (const [verdict, colour] of verdicts) {
      assert.notEqual(colour, "rgb(119, 119, 119)", `${verdict} has no verdict colour`);
    }

    // Export: the analysis (with the report check) as JSON, and the view as a PNG.
    const [jsonDownload] = await Promise.all([page.waitForEvent("download"), page.click("#export-json")]);
    const exported = JSON.parse(fs.readFileSync(await jsonDownload.path(), "utf8"));
    assert.equal(exported.model.image_sha256, native.model.image_sha256);
    assert.equal(exported.report_check.sentences.length, native.report_check.sentences.length);
    const [pngDownload] = await Promise.all([page.waitForEvent("download"), page.click("#export-png")]);
    const png = fs.readFileSync(await pngDownload.path());
    assert.deepEqual([...png.subarray(0, 8)], [137, 80, 78, 71, 13, 10, 26, 10]);
    assert.equal(png.readUInt32BE(16), native.image.width);
    assert.equal(png.readUInt32BE(20), native.image.height);

    // The viewer exports the same DICOM SR and FHIR report as `asg analyze --sr --fhir`.
    const grounded = native.findings.filter((f) => f.present && (f.regions.length || (f.heatmap && f.heatmap.peak_region)));
    const [srDownload] = await Promise.all([page.waitForEvent("download"), page.click("#export-sr")]);
    const sr = fs.readFileSync(await srDownload.path());
    assert.equal(sr.subarray(128, 132).toString("latin1"), "DICM");
    assert.ok(sr.includes(Buffer.from("1.2.840.10008.5.1.4.1.1.88.22")), "not an Enhanced SR");
    if (process.env.ASG_SR_OUT) fs.writeFileSync(process.env.ASG_SR_OUT, sr);
    const [fhirDownload] = await Promise.all([page.waitForEvent("download"), page.click("#export-fhir")]);
    const fhir = JSON.parse(fs.readFileSync(await fhirDownload.path(), "utf8"));
    assert.equal(fhir.resourceType, "DiagnosticReport");
    assert.equal(fhir.contained?.length ?? 0, grounded.length);

    if (process.env.ASG_SCREENSHOT) await page.screenshot({ path: process.env.ASG_SCREENSHOT, fullPage: true });

    // Privacy: nothing outside the page's own origin was requested.
    const foreign = requests.filter((u) => !u.startsWith(`${origin}/`) && !u.startsWith("blob:") && !u.startsWith("data:"));
    assert.deepEqual(foreign, [], "requests outside the page's origin");
    assert.ok(requests.some((u) => u.endsWith("/model/image.onnx")), "the model was loaded from the page's origin");
    assert.ok(requests.some((u) => u.endsWith("/model/text.onnx")), "the text model was loaded from the page's origin");
    assert.deepEqual(problems, []);
  } finally {
    await browser.close();
    server.close();
  }
});

test("a file that is not DICOM gets a clear error on the page, not a crash", async () => {
  const webDir = path.resolve(env("ASG_WEB_DIR"));
  const server = await serve(webDir);
  const origin = `http://127.0.0.1:${server.address().port}`;
  const browser = await launch();
  try {
    const page = await browser.newPage();
    await page.goto(`${origin}/`);
    await page.waitForSelector('#status[data-state="ready"]', { timeout: 60_000 });
    await page.setInputFiles("#file", { name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("not a DICOM file") });
    await page.waitForSelector('#status[data-state="error"]', { timeout: 30_000 });
    const text = await page.textContent("#status");
    assert.match(text, /notes\.txt/);
    assert.match(text, /not a readable DICOM file/);
  } finally {
    await browser.close();
    server.close();
  }
});

test("a 300 MB file, a 20,000 x 20,000 image and a deflate bomb get clear messages and the tab lives on", async () => {
  const webDir = path.resolve(env("ASG_WEB_DIR"));
  const hostile = path.resolve(env("ASG_HOSTILE"));
  const server = await serve(webDir);
  const origin = `http://127.0.0.1:${server.address().port}`;
  const browser = await launch();
  try {
    const page = await browser.newPage();
    let crashed = false;
    page.on("crash", () => (crashed = true));
    await page.goto(`${origin}/`);
    await page.waitForSelector('#status[data-state="ready"]', { timeout: 60_000 });
    for (const [file, message] of [
      ["huge.dcm", /huge\.dcm: the file is 300 MB, more than the 256 MB the browser viewer reads; use the workstation CLI/],
      ["20000.dcm", /20000\.dcm.*image of 20000 x 20000 x 1 pixels exceeds the cap of 33554432 pixels/],
      ["bomb.dcm", /bomb\.dcm.*deflated data set.*inflates to more than 268435456 bytes/],
    ]) {
      await page.evaluate(() => document.getElementById("status").setAttribute("data-state", "ready"));
      await page.setInputFiles("#file", path.join(hostile, file));
      await page.waitForSelector('#status[data-state="error"]', { timeout: 60_000 });
      const text = await page.textContent("#status");
      assert.match(text, message, `${file}: ${text}`);
    }
    assert.equal(crashed, false, "the tab crashed");
    // The same page still analyses a good file afterwards.
    await page.setInputFiles("#file", path.resolve(env("ASG_DICOM")));
    await page.waitForSelector('#status[data-state="done"]', { timeout: 120_000 });
  } finally {
    await browser.close();
    server.close();
  }
});

test("several files are grouped into studies with thumbnails, and a bad one is named and skipped", async () => {
  const webDir = path.resolve(env("ASG_WEB_DIR"));
  const dir = path.resolve(env("ASG_SEVERAL"));
  const files = fs.readdirSync(dir, { recursive: true })
    .map((f) => path.join(dir, f))
    .filter((f) => f.endsWith(".dcm"));
  assert.equal(files.length, 4);
  const server = await serve(webDir);
  const origin = `http://127.0.0.1:${server.address().port}`;
  const browser = await launch();
  try {
    const page = await browser.newPage();
    const problems = [];
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    await page.goto(`${origin}/`);
    await page.waitForSelector('#status[data-state="ready"]', { timeout: 60_000 });
    await page.setInputFiles("#file", files);
    await page.waitForSelector('#status[data-state="done"], #status[data-state="error"]', { timeout: 60_000 });
    const text = await page.textContent("#status");
    assert.equal(await page.getAttribute("#status", "data-state"), "done", text);
    assert.match(text, /Skipped 1 file/);
    assert.equal(await page.$$eval("#studies > li", (lis) => lis.length), 3);
    const thumbs = await page.$$eval("#studies canvas", (cs) => cs.map((c) => {
      const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let sum = 0;
      for (let i = 0; i < px.length; i += 4) sum += px[i];
      return sum / (px.length / 4);
    }));
    assert.equal(thumbs.length, 3);
    thumbs.forEach((m) => assert.ok(m > 5 && m < 250, `blank thumbnail (${m})`));
    // The first is analysed; another opens on click.
    assert.equal(await page.$$eval('#studies button[aria-current="true"]', (b) => b.length), 1);
    await page.click("#studies > li:nth-child(2) button");
    await page.waitForSelector('#studies > li:nth-child(2) button[aria-current="true"]', { timeout: 60_000 });
    assert.deepEqual(problems, []);
  } finally {
    await browser.close();
    server.close();
  }
});

test("the embedding module (asg.js) gives other viewers the same analysis and report check", async () => {
  const native = JSON.parse(fs.readFileSync(env("ASG_NATIVE_JSON"), "utf8"));
  const dicom = fs.readFileSync(path.resolve(env("ASG_DICOM"))).toString("base64");
  const report = fs.readFileSync(path.resolve(env("ASG_REPORT")), "utf8");
  await withViewerPage(async (page) => {
    const got = await page.evaluate(async ({ dicom, report }) => {
      const { AsgAnalyzer } = await import("./asg.js");
      const asg = new AsgAnalyzer();
      const manifest = await asg.load();
      const bytes = Uint8Array.from(atob(dicom), (c) => c.charCodeAt(0)).buffer;
      const { analysis } = await asg.analyze(bytes, "embedded.dcm");
      const check = await asg.checkReport(analysis, report);
      asg.terminate();
      return {
        name: manifest.name,
        outputs: analysis.outputs,
        probabilities: analysis.findings.map((f) => f.probability),
        boxes: analysis.regions.map((r) => r.bbox),
        verdicts: check.sentences.map((s) => s.verdict),
      };
    }, { dicom, report });
    assert.equal(got.name, native.model.name);
    // Every raw output element within 1e-4 relative of `asg analyze --raw-outputs`.
    assert.deepEqual(got.outputs.map((o) => o.name), native.outputs.map((o) => o.name));
    got.outputs.forEach((o, i) => {
      assert.deepEqual(o.shape, native.outputs[i].shape);
      assertClose(o.name, o.values, native.outputs[i].values);
    });
    assertClose("probabilities", got.probabilities, native.findings.map((f) => f.probability));
    assertClose("boxes", got.boxes.flat(), native.regions.map((r) => r.bbox).flat());
    assert.deepEqual(got.verdicts, native.report_check.sentences.map((s) => s.verdict));
  });
});

test("a crash inside the WebAssembly analyzer names the file and the panic, and a fresh worker carries on", async () => {
  const dicom = fs.readFileSync(path.resolve(env("ASG_DICOM"))).toString("base64");
  await withViewerPage(async (page) => {
    const got = await page.evaluate(async ({ dicom }) => {
      const { AsgAnalyzer } = await import("./asg.js");
      const asg = new AsgAnalyzer();
      await asg.load();
      const bytes = () => Uint8Array.from(atob(dicom), (c) => c.charCodeAt(0)).buffer;
      const probabilities = (r) => r.analysis.findings.map((f) => f.probability);
      const before = probabilities(await asg.analyze(bytes(), "before.dcm"));
      // The module panics (a trap in WebAssembly); a request sent behind it is lost with the worker.
      const crash = asg.call("crash-for-testing", { name: "crash.dcm" }).then(() => "answered", (e) => e.message);
      const queued = asg.analyze(bytes(), "queued.dcm").then(() => "answered", (e) => e.message);
      const messages = { crash: await crash, queued: await queued };
      // The next request waits for the replacement worker to load the model again.
      const after = probabilities(await asg.analyze(bytes(), "after.dcm"));
      const restarts = asg.restarts;
      asg.terminate();
      return { ...messages, before, after, restarts };
    }, { dicom });
    assert.match(
      got.crash,
      /^crash\.dcm: the analyzer crashed \(asg-wasm: a panic asked for by panicForTesting \(at wasm\/src\/lib\.rs:\d+\)\) and was restarted/,
    );
    assert.match(got.queued, /the analyzer restarted after a crash/);
    assert.equal(got.restarts, 1);
    assert.deepEqual(got.after, got.before);
  });
});

test("asg serve shows the viewer with the embedded default model", async () => {
  const asg = path.resolve(env("ASG_BIN"));
  const child = spawn(asg, ["serve", "--port", "0", "--web", path.resolve(env("ASG_WEB_DIR"))], { stdio: ["ignore", "ignore", "pipe"] });
  try {
    const origin = await new Promise((resolve, reject) => {
      let text = "";
      child.stderr.on("data", (d) => {
        text += d;
        const m = text.match(/http:\/\/(127\.0\.0\.1:\d+)\//);
        if (m) resolve(`http://${m[1]}`);
      });
      child.on("exit", (code) => reject(new Error(`asg serve exited (${code}): ${text}`)));
    });
    const browser = await launch();
    try {
      const page = await browser.newPage();
      const requests = [];
      page.context().on("request", (r) => requests.push(r.url()));
      await page.goto(`${origin}/`);
      await page.waitForSelector('#status[data-state="ready"], #status[data-state="error"]', { timeout: 60_000 });
      const status = await page.textContent("#status");
      assert.equal(await page.getAttribute("#status", "data-state"), "ready", status);
      assert.match(status, /asg-default/);
      await page.setInputFiles("#file", path.resolve(env("ASG_DICOM")));
      await page.waitForSelector('#status[data-state="done"], #status[data-state="error"]', { timeout: 60_000 });
      assert.equal(await page.getAttribute("#status", "data-state"), "done", await page.textContent("#status"));
      assert.deepEqual(requests.filter((u) => !u.startsWith(`${origin}/`) && !u.startsWith("blob:")), []);
    } finally {
      await browser.close();
    }
  } finally {
    child.kill();
  }
});

test("as a radiologist expects: a file chosen during model load waits, the image fits, labels do not collide, findings are ordered, all by keyboard", async () => {
  const webDir = path.resolve(env("ASG_WEB_DIR"));
  const dicom = path.resolve(env("ASG_DICOM"));
  const native = JSON.parse(fs.readFileSync(env("ASG_NATIVE_JSON"), "utf8"));
  let release;
  const hold = { path: "/model/image.onnx", until: new Promise((ok) => (release = ok)) };
  const server = await serve(webDir, hold);
  const origin = `http://127.0.0.1:${server.address().port}`;
  const browser = await launch();
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    const problems = [];
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("console", (m) => m.type() === "error" && problems.push(`console error: ${m.text()}`));
    await page.goto(`${origin}/`);

    // The model is still loading (its weights are held back): a progress bar shows, the file
    // input works, and a file chosen now is queued with a message saying so.
    assert.equal(await page.getAttribute("#status", "data-state"), "loading");
    assert.equal(await page.isVisible("#progress"), true, "no progress indicator while loading");
    await page.setInputFiles("#file", dicom);
    await page.waitForFunction(() => /will open when it is ready/.test(document.getElementById("status").textContent));
    assert.equal(await page.getAttribute("#status", "data-state"), "loading");
    release();
    await page.waitForSelector('#status[data-state="done"], #status[data-state="error"]', { timeout: 120_000 });
    const done = await page.textContent("#status");
    assert.equal(await page.getAttribute("#status", "data-state"), "done", done);
    assert.match(done, new RegExp(`Analysed ${path.basename(dicom).replace(/\./g, "\\.")}`));
    assert.equal(await page.isVisible("#progress"), false, "the progress bar stays after the work is done");

    // The image fills the viewport (one side touches, the other fits), centred; the viewport
    // takes most of the window's height and the panels sit beside it.
    const rects = () => page.evaluate(() => {
      const r = (id) => {
        const b = document.getElementById(id).getBoundingClientRect();
        return { left: b.left, top: b.top, right: b.right, bottom: b.bottom, width: b.width, height: b.height };
      };
      return { viewport: r("viewport"), image: r("image"), results: document.querySelector(".results").getBoundingClientRect().left };
    });
    const fitted = (r) => {
      const eps = 1.5;
      assert.ok(r.image.left >= r.viewport.left - eps && r.image.right <= r.viewport.right + eps, `image ${JSON.stringify(r.image)} overflows the viewport ${JSON.stringify(r.viewport)} sideways`);
      assert.ok(r.image.top >= r.viewport.top - eps && r.image.bottom <= r.viewport.bottom + eps, `image ${JSON.stringify(r.image)} overflows the viewport ${JSON.stringify(r.viewport)} vertically`);
      assert.ok(Math.abs(r.image.width - r.viewport.width) < eps || Math.abs(r.image.height - r.viewport.height) < eps, `image ${r.image.width} x ${r.image.height} does not fill the viewport ${r.viewport.width} x ${r.viewport.height}`);
      assert.ok(Math.abs((r.image.left + r.image.right) / 2 - (r.viewport.left + r.viewport.right) / 2) < 2, "not centred sideways");
      assert.ok(Math.abs((r.image.top + r.image.bottom) / 2 - (r.viewport.top + r.viewport.bottom) / 2) < 2, "not centred vertically");
    };
    let r = await rects();
    fitted(r);
    assert.ok(r.viewport.height > 0.55 * 800, `the viewport is ${r.viewport.height} px high in an 800 px window`);
    assert.ok(r.results >= r.viewport.right, "the panels are not beside the image");
    // Still fitted after the window changes size.
    await page.setViewportSize({ width: 1000, height: 700 });
    await page.waitForFunction(() => {
      const v = document.getElementById("viewport").getBoundingClientRect();
      const i = document.getElementById("image").getBoundingClientRect();
      return Math.abs(i.width - v.width) < 1.5 || Math.abs(i.height - v.height) < 1.5;
    });
    fitted(await rects());

    // Zoom, pan, window and fit by keyboard.
    await page.focus("#viewport");
    const before = await rects();
    await page.keyboard.press("+");
    const zoomed = await rects();
    assert.ok(zoomed.image.width > before.image.width * 1.2, "+ did not zoom in");
    await page.keyboard.press("Shift+ArrowLeft");
    assert.ok(Math.abs((await rects()).image.left - zoomed.image.left - 40) < 1, "shift+left did not pan");
    await page.keyboard.press("f");
    fitted(await rects());
    const wl = await page.textContent("#wl");
    await page.keyboard.press("]");
    assert.notEqual(await page.textContent("#wl"), wl, "] did not widen the window");
    await page.keyboard.press("1");

    // Findings: present first, then the others, each most probable first.
    const order = await page.$$eval("#findings tbody tr", (trs) => trs.map((tr) => [tr.dataset.finding, tr.classList.contains("present"), Number(tr.cells[1].textContent)]));
    const presentFlags = order.map((o) => o[1]);
    assert.deepEqual(presentFlags, [...presentFlags].sort((a, b) => Number(b) - Number(a)), "a present finding after an absent one");
    for (const group of [true, false]) {
      const ps = order.filter((o) => o[1] === group).map((o) => o[2]);
      assert.deepEqual(ps, [...ps].sort((a, b) => b - a), "not most probable first");
    }
    assert.deepEqual(order.filter((o) => o[1]).map((o) => o[0]).sort(), native.findings.filter((f) => f.present).map((f) => f.name).sort());

    // Labels: only findings above their threshold, in their native regions; none overlapping.
    const labels = async () => JSON.parse(await page.getAttribute("#overlay", "data-labels"));
    const disjoint = (ls) => {
      const [w, h] = [native.image.width, native.image.height];
      ls.forEach(({ text, rect: [x0, y0, x1, y1] }, i) => {
        assert.ok(x0 >= 0 && y0 >= 0 && x1 <= w && y1 <= h, `${text} outside the image`);
        ls.slice(i + 1).forEach(({ text: t2, rect: [a0, b0, a1, b1] }) => {
          assert.ok(x1 <= a0 || a1 <= x0 || y1 <= b0 || b1 <= y0, `labels overlap: ${text} / ${t2}`);
        });
      });
    };
    const findingLabels = (ls) => ls.filter((l) => l.text.includes(": "));
    let ls = await labels();
    disjoint(ls);
    for (const { text } of findingLabels(ls)) {
      const [region, rest] = text.split(": ");
      const f = native.findings.find((x) => rest.startsWith(`${x.name} `));
      assert.ok(f && f.present && f.regions.includes(region), `label ${text} for a finding not present there`);
    }
    // An absent finding, selected, shows its heatmap but no labelled box.
    const absent = order.find((o) => !o[1]);
    if (absent) {
      await page.click(`#findings tbody tr[data-finding="${absent[0]}"]`);
      assert.deepEqual(findingLabels(await labels()), [], `${absent[0]} (absent) got labels`);
      await page.click(`#findings tbody tr[data-finding="${absent[0]}"]`);
    }
    // Everything present (slider at 0): many labels, still none overlapping.
    await page.fill("#threshold", "0");
    ls = await labels();
    assert.ok(findingLabels(ls).length >= 3, `only ${findingLabels(ls).length} finding labels with every finding present`);
    disjoint(ls);
    await page.click("#threshold-reset");

    // Keyboard: Tab reaches the findings; Enter selects one; a focused region row highlights it.
    let reached = false;
    for (let i = 0; i < 60 && !reached; i++) {
      await page.keyboard.press("Tab");
      reached = await page.evaluate(() => document.activeElement?.closest("#findings tbody") !== null && document.activeElement?.tagName === "TR");
    }
    assert.ok(reached, "Tab never reached the findings table");
    await page.keyboard.press("Enter");
    assert.equal(await page.$$eval("#findings tbody tr.selected", (t) => t.length), 1, "Enter did not select the focused finding");
    // White pixels: the highlight's colour (the selected finding's heatmap covers much else).
    const drawn = () => page.evaluate(() => {
      const c = document.getElementById("overlay");
      const px = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
      let n = 0;
      for (let i = 0; i < px.length; i += 4) n += px[i] > 240 && px[i + 1] > 240 && px[i + 2] > 240 && px[i + 3] > 200 ? 1 : 0;
      return n;
    });
    const plain = await drawn();
    await page.focus("#regions tbody tr:nth-child(5)");
    assert.notEqual(await drawn(), plain, "focusing a region row did not highlight it");
    assert.deepEqual(problems, []);
    if (process.env.ASG_SCREENSHOT) await page.screenshot({ path: process.env.ASG_SCREENSHOT.replace(/\.png$/, "-reading.png") });
  } finally {
    release();
    await browser.close();
    server.close();
  }
});
