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

function serve(root) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://localhost");
    const rel = decodeURIComponent(url.pathname === "/" ? "/index.html" : url.pathname);
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
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
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
    // Every output element within 1e-4 relative.
    assert.deepEqual(shown.outputs.map((o) => o.name), native.outputs.map((o) => o.name));
    shown.outputs.forEach((o, i) => {
      assert.deepEqual(o.shape, native.outputs[i].shape);
      assertClose(o.name, o.values, native.outputs[i].values);
    });
    assertClose("probabilities", shown.findings.map((f) => f.probability), native.findings.map((f) => f.probability));

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
    assert.equal(rows.length, native.findings.length);
    rows.forEach(([name, shown], i) => {
      assert.equal(name, native.findings[i].name);
      // A finding the model was not trained to assess shows no probability.
      if (native.findings[i].assessed === false) {
        assert.equal(shown, "not assessed", `${name}: shown ${shown}`);
      } else {
        const p = Number(shown);
        assert.ok(Math.abs(p - native.findings[i].probability) < 1e-3, `${name}: shown ${shown}`);
      }
    });
    assert.ok(native.findings.some((f) => f.assessed !== false), "no assessed finding to compare");

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
    const top = native.findings.reduce((a, b) => (b.probability > a.probability ? b : a));
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
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
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
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
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
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  });
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
  const webDir = path.resolve(env("ASG_WEB_DIR"));
  const native = JSON.parse(fs.readFileSync(env("ASG_NATIVE_JSON"), "utf8"));
  const dicom = fs.readFileSync(path.resolve(env("ASG_DICOM"))).toString("base64");
  const report = fs.readFileSync(path.resolve(env("ASG_REPORT")), "utf8");
  const server = await serve(webDir);
  const origin = `http://127.0.0.1:${server.address().port}`;
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
  });
  try {
    const page = await browser.newPage();
    await page.goto(`${origin}/`);
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
        probabilities: analysis.findings.map((f) => f.probability),
        boxes: analysis.regions.map((r) => r.bbox),
        verdicts: check.sentences.map((s) => s.verdict),
      };
    }, { dicom, report });
    assert.equal(got.name, native.model.name);
    assertClose("probabilities", got.probabilities, native.findings.map((f) => f.probability));
    assertClose("boxes", got.boxes.flat(), native.regions.map((r) => r.bbox).flat());
    assert.deepEqual(got.verdicts, native.report_check.sentences.map((s) => s.verdict));
  } finally {
    await browser.close();
    server.close();
  }
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
    const browser = await chromium.launch({
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
    });
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
