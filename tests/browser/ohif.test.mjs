// OHIF shows our results: a real PACS (Debian's Orthanc with its DICOMweb plugin, started here on
// loopback with a config of its own) gets a phantom radiograph; `asg analyze --dicomweb
// --store-sr` analyses it and stores the DICOM SR back; the released OHIF viewer (the npm
// package @ohif/app's dist/, served here with an app config pointing at that Orthanc through a
// same-origin proxy) opens the study in headless Chromium, lists the SR, and once it is opened
// draws our findings as measurements with their boxes over the image (screenshot saved).
//
// Inputs (set by scripts/test.sh): ASG_BIN, ASG_DICOM, ASG_OHIF_DIST (the unpacked dist/),
// ASG_OHIF_SCREENSHOT (optional: where to save the screenshot).

import { test } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { spawn, execFile } from "node:child_process";
import { promisify } from "node:util";
import { chromium } from "playwright-core";

const ORTHANC = "/usr/sbin/Orthanc";
const DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";
const missing = [ORTHANC, DICOMWEB_PLUGIN, process.env.ASG_OHIF_DIST ?? "(ASG_OHIF_DIST unset)"]
  .filter((p) => !fs.existsSync(p));
const skip = missing.length ? `needs ${missing.join(", ")} (scripts/setup.sh installs them)` : false;

const freePort = () => new Promise((resolve) => {
  const s = http.createServer().listen(0, "127.0.0.1", () => {
    const { port } = s.address();
    s.close(() => resolve(port));
  });
});

async function startOrthanc() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "asg-orthanc-"));
  const port = await freePort();
  const config = {
    Name: "asg-ohif-test", StorageDirectory: `${dir}/db`, IndexDirectory: `${dir}/db`, HttpPort: port,
    DicomServerEnabled: false, RemoteAccessAllowed: false, AuthenticationEnabled: false,
    Plugins: [DICOMWEB_PLUGIN], DicomWeb: { Enable: true, Root: "/dicom-web/" },
  };
  fs.writeFileSync(`${dir}/orthanc.json`, JSON.stringify(config));
  const child = spawn(ORTHANC, [`${dir}/orthanc.json`], { stdio: ["ignore", "ignore", fs.openSync(`${dir}/orthanc.log`, "w")] });
  const rest = `http://127.0.0.1:${port}`;
  for (let i = 0; ; i++) {
    try {
      if ((await fetch(`${rest}/system`)).ok) break;
    } catch {}
    assert.ok(i < 300, "Orthanc did not answer within 60 s");
    await new Promise((ok) => setTimeout(ok, 200));
  }
  return { rest, child, dir };
}

// OHIF's dist/ with our app config, and /dicom-web/ proxied to Orthanc (one origin: no CORS).
function serveOhif(dist, orthanc) {
  const config = `window.config = {
  routerBasename: "/", extensions: [], modes: [], showStudyList: true, maxNumberOfWebWorkers: 2,
  defaultDataSourceName: "orthanc",
  dataSources: [{
    namespace: "@ohif/extension-default.dataSourcesModule.dicomweb", sourceName: "orthanc",
    configuration: {
      friendlyName: "test Orthanc", name: "orthanc", wadoUriRoot: "/wado", qidoRoot: "/dicom-web", wadoRoot: "/dicom-web",
      qidoSupportsIncludeField: false, imageRendering: "wadors", thumbnailRendering: "wadors", enableStudyLazyLoad: true,
      supportsFuzzyMatching: false, supportsWildcard: true, omitQuotationForMultipartRequest: true, bulkDataURI: { enabled: true },
    },
  }],
};`;
  const TYPES = { ".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".wasm": "application/wasm", ".json": "application/json", ".svg": "image/svg+xml", ".ico": "image/x-icon" };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, "http://localhost");
    if (url.pathname.startsWith("/dicom-web/")) {
      const target = new URL(orthanc);
      const proxied = http.request(
        { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: { ...req.headers, host: target.host } },
        (r) => { res.writeHead(r.statusCode, r.headers); r.pipe(res); },
      );
      proxied.on("error", () => res.writeHead(502).end());
      req.pipe(proxied);
      return;
    }
    if (url.pathname === "/app-config.js") {
      res.writeHead(200, { "Content-Type": "text/javascript" }).end(config);
      return;
    }
    // A single-page app: unknown paths are its index.
    let file = path.join(dist, path.normalize(decodeURIComponent(url.pathname)));
    if (!file.startsWith(dist) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) file = path.join(dist, "index.html");
    res.writeHead(200, { "Content-Type": TYPES[path.extname(file)] ?? "application/octet-stream" });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

test("OHIF lists the SR that asg stored over DICOMweb and draws its findings as measurements", { skip }, async () => {
  const dist = path.resolve(process.env.ASG_OHIF_DIST);
  const orthanc = await startOrthanc();
  let server;
  let browser;
  try {
    // The phantom into the PACS over its REST API.
    const upload = await fetch(`${orthanc.rest}/instances`, {
      method: "POST", headers: { "Content-Type": "application/dicom" }, body: fs.readFileSync(path.resolve(process.env.ASG_DICOM)),
    });
    assert.equal(upload.status, 200);
    const studies = await (await fetch(`${orthanc.rest}/dicom-web/studies`)).json();
    assert.equal(studies.length, 1);
    const study = studies[0]["0020000D"].Value[0];

    // asg reads it back over DICOMweb, analyses it and stores the SR into the same study. (The
    // default model is quiet on phantoms; a low threshold gives OHIF findings to draw.)
    const out = fs.mkdtempSync(path.join(os.tmpdir(), "asg-ohif-out-"));
    const run = await promisify(execFile)(path.resolve(process.env.ASG_BIN), [
      "analyze", "--dicomweb", `${orthanc.rest}/dicom-web`, "--study", study, "--store-sr", "--json", out,
      "--threshold", "0.1",
    ]);
    assert.match(run.stderr, /stored 1 DICOM SR in the PACS/);
    const [name] = fs.readdirSync(out).filter((f) => f !== "summary.json");
    const analysis = JSON.parse(fs.readFileSync(path.join(out, name), "utf8"));
    // What the SR holds (plugin/src/results.rs): each present finding in its regions, or at
    // its heatmap's peak.
    const grounded = analysis.findings.filter((f) => f.present && (f.regions.length || f.heatmap?.peak_region));
    assert.ok(grounded.length > 0, "the analysis grounded no finding: nothing for OHIF to draw");

    server = await serveOhif(dist, orthanc.rest);
    const origin = `http://127.0.0.1:${server.address().port}`;
    browser = await chromium.launch({
      executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
      // Cornerstone3D renders with WebGL: SwiftShader's, in software.
      args: ["--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--no-first-run", "--disable-background-networking"],
    });
    const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
    const requests = [];
    page.context().on("request", (r) => requests.push(r.url()));
    await page.goto(`${origin}/viewer?StudyInstanceUIDs=${study}`);

    // The study browser lists the image's series and our SR's.
    await page.waitForSelector('[data-cy="study-browser-thumbnail"]', { timeout: 120_000 });
    await page.getByText("SR", { exact: true }).first().waitFor({ timeout: 60_000 });
    // OHIF's onboarding tour (a Shepherd modal over the page) can open late on a loaded
    // machine, after a first look for it: dismiss it whenever it is there, and retry opening
    // the SR while it blocks the click.
    const dismissTour = async () => {
      for (const t of ["Skip all", "Confirm and hide"]) {
        const b = page.getByText(t, { exact: true });
        if (await b.count()) await b.first().click({ timeout: 5_000 }).catch(() => {});
      }
    };
    for (let attempt = 1; ; attempt++) {
      await dismissTour();
      try {
        // Opened, it asks to track its measurements; yes: they are drawn over the image.
        await page.getByText("SR", { exact: true }).first().dblclick({ timeout: 10_000 });
        break;
      } catch (e) {
        if (attempt >= 6) throw e;
      }
    }
    await page.getByText("Yes", { exact: true }).first().click({ timeout: 60_000 });
    await page.waitForFunction(
      (n) => document.querySelectorAll("svg [data-annotation-uid]").length >= n,
      grounded.length,
      { timeout: 120_000 },
    );
    const boxes = await page.$$eval("svg [data-annotation-uid]", (gs) => new Set(gs.map((g) => g.getAttribute("data-annotation-uid"))).size);
    // One measurement group, so one box, per grounded finding.
    assert.equal(boxes, grounded.length, `${boxes} boxes drawn for ${grounded.length} grounded findings`);

    // The measurements panel names each finding and its region.
    await page.click('[data-cy="side-panel-header-right"]');
    await page.click('[data-cy="trackedMeasurements-btn"]');
    // The panel fills in as the tracked measurements arrive: wait for it to count them all.
    await page.waitForFunction(
      (n) => new RegExp(`Measurements \\(${n}\\)`).test(document.body.innerText),
      boxes,
      { timeout: 60_000 },
    ).catch(() => {});
    // (Coded names: SNOMED CT's meaning where we use its code, "Pleural effusion".)
    const panel = (await page.evaluate(() => document.body.innerText)).toLowerCase();
    const counts = [...panel.matchAll(/measurements \((\d+)\)/g)].map((m) => Number(m[1]));
    assert.ok(counts.includes(boxes), `the panel counts ${counts.join(", ") || "no"} measurements; ${boxes} are drawn`);
    for (const f of grounded) {
      assert.ok(panel.includes(f.name), `the measurements panel does not name ${f.name}`);
      const region = f.regions[0] ?? f.heatmap.peak_region;
      assert.ok(panel.includes(region), `the measurements panel does not name ${region}`);
    }
    if (process.env.ASG_OHIF_SCREENSHOT) await page.screenshot({ path: process.env.ASG_OHIF_SCREENSHOT });

    // OHIF fetched from its own origin only (the PACS through it).
    assert.deepEqual(requests.filter((u) => !u.startsWith(`${origin}/`) && !u.startsWith("blob:") && !u.startsWith("data:")), []);
  } finally {
    await browser?.close();
    server?.close();
    orthanc.child.kill();
  }
});
