// The viewer's analysis in headless Chromium against onnxruntime-web running the same image.onnx
// on the same tensor in the same browser, in the same run; prints a Markdown table.
//
//   (cd bench/browser && npm ci) && node bench/browser/browser_bench.mjs WEB_DIR DICOM [RUNS]
//
// WEB_DIR is the built viewer (scripts/build-web.sh, with the default bundle in WEB_DIR/model; a
// bundle with a lung-crop model loads and runs it too, as the viewer does).
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import zlib from "node:zlib";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const [webArg, dicomArg, runsArg] = process.argv.slice(2);
if (!webArg || !dicomArg) throw new Error("usage: browser_bench.mjs WEB_DIR DICOM [RUNS]");
const web = path.resolve(webArg);
const ortDir = path.join(here, "node_modules/onnxruntime-web/dist");
const runs = Number(runsArg ?? 30);
const TYPES = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".json": "application/json" };

const server = http.createServer((req, res) => {
  const url = new URL(req.url, "http://localhost");
  if (url.pathname === "/bench-blank") return res.writeHead(200, { "Content-Type": "text/html" }).end("<!doctype html><title>bench</title>");
  const [root, rel] = url.pathname.startsWith("/ort/") ? [ortDir, url.pathname.slice(4)] : [web, url.pathname === "/" ? "/index.html" : url.pathname];
  const file = path.join(root, path.normalize(decodeURIComponent(rel)));
  if (!file.startsWith(root) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) return res.writeHead(404).end();
  res.writeHead(200, { "Content-Type": TYPES[path.extname(file)] ?? "application/octet-stream" });
  fs.createReadStream(file).pipe(res);
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const origin = `http://127.0.0.1:${server.address().port}`;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
});
const page = await browser.newPage();
await page.goto(`${origin}/bench-blank`);
const dicom = fs.readFileSync(dicomArg).toString("base64");
const r = await page.evaluate(async ({ dicom, runs }) => {
  const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];
  const bytes = Uint8Array.from(atob(dicom), (c) => c.charCodeAt(0));
  const get = (p) => fetch(p).then((x) => x.arrayBuffer()).then((b) => new Uint8Array(b));
  // ASG: time to first result = wasm compile + bundle fetch and check + analysis.
  let t = performance.now();
  const asgModule = await import("/pkg/asg_wasm.js");
  await asgModule.default({ module_or_path: "/pkg/asg_wasm_bg.wasm" });
  const wasmMs = performance.now() - t;
  const manifestText = await fetch("/model/manifest.json").then((x) => x.text());
  const cropSpec = JSON.parse(manifestText).crop_model;
  const [imageOnnx, cropOnnx] = await Promise.all([
    get("/model/image.onnx"),
    cropSpec ? get(`/model/${cropSpec.file}`) : null,
  ]);
  const fetchedMs = performance.now() - t;
  const analyzer = new asgModule.Analyzer(manifestText, imageOnnx);
  // The lung-crop model, when the bundle has one (as web/worker.js loads it).
  if (cropOnnx) analyzer.loadCropModel(cropOnnx);
  const loadMs = performance.now() - t;
  const first = JSON.parse(analyzer.analyze(bytes, "bench.dcm"));
  const firstMs = performance.now() - t;
  const analyses = [];
  const cropMs = [];
  for (let i = 0; i < runs; i++) {
    const s = performance.now();
    const a = JSON.parse(analyzer.analyze(bytes, "bench.dcm"));
    analyses.push(performance.now() - s);
    cropMs.push(a.timings.crop_model_ms ?? 0);
  }
  const manifest = JSON.parse(manifestText);
  const size = manifest.input.size;
  const x = new Float32Array(size * size);
  let seed = 1;
  for (let i = 0; i < x.length; i++) { seed = (seed * 1103515245 + 12345) % 2147483648; x[i] = seed / 2147483648 * 4 - 2; }
  const asgInfer = [];
  let asgLogits = null;
  for (let i = 0; i < runs; i++) {
    const s = performance.now();
    asgLogits = analyzer.infer(x);
    asgInfer.push(performance.now() - s);
  }
  // onnxruntime-web, 1 thread (the page is not cross-origin isolated), same model, same tensor.
  t = performance.now();
  const ort = await import("/ort/ort.min.mjs");
  ort.env.wasm.wasmPaths = "/ort/";
  ort.env.wasm.numThreads = 1;
  const session = await ort.InferenceSession.create("/model/image.onnx", { executionProviders: ["wasm"] });
  const ortLoadMs = performance.now() - t;
  const feeds = { image: new ort.Tensor("float32", x, [1, 1, size, size]) };
  const out = await session.run(feeds);
  const ortFirstMs = performance.now() - t;
  const ortInfer = [];
  for (let i = 0; i < runs; i++) {
    const s = performance.now();
    await session.run(feeds);
    ortInfer.push(performance.now() - s);
  }
  const ortLogits = out.finding_logits.data;
  let worst = 0;
  for (let i = 0; i < ortLogits.length; i++) {
    const scale = Math.max(Math.abs(ortLogits[i]), Math.abs(asgLogits[i]), 1e-3);
    worst = Math.max(worst, Math.abs(ortLogits[i] - asgLogits[i]) / scale);
  }
  return {
    ua: navigator.userAgent, runs, size, findings: first.findings.length,
    cropModel: Boolean(cropSpec), cropMs: median(cropMs),
    wasmMs, modelFetchMs: fetchedMs - wasmMs, modelMs: loadMs - fetchedMs, loadMs, firstMs, analysisMs: median(analyses), asgInferMs: median(asgInfer),
    ortLoadMs, ortFirstMs, ortInferMs: median(ortInfer), worstRelative: worst,
    timings: first.timings,
  };
}, { dicom, runs });
await browser.close();
server.close();

const sizes = (f) => { const b = fs.readFileSync(f); return [b.length, zlib.gzipSync(b, { level: 9 }).length]; };
const mb = (n) => `${(n / 1e6).toFixed(2)} MB`;
const [asgRaw, asgGz] = sizes(path.join(web, "pkg/asg_wasm_bg.wasm"));
const [ortRaw, ortGz] = sizes(path.join(ortDir, "ort-wasm-simd-threaded.wasm"));
const chrome = r.ua.match(/Chrome\/[\d.]+/)?.[0] ?? r.ua;
console.log(`${chrome}, headless; model input ${r.size}x${r.size}; medians of ${r.runs} runs; onnxruntime-web 1.30.0 (wasm, 1 thread)\n`);
console.log("| work | asg-wasm (tract) | onnxruntime-web |");
console.log("|---|---|---|");
console.log(`| load: wasm compile + model fetch and optimise | ${r.loadMs.toFixed(0)} ms | ${r.ortLoadMs.toFixed(0)} ms (session create) |`);
console.log(`| of which: wasm fetch, compile and instantiate / bundle fetch / graph read, typed, optimised | ${r.wasmMs.toFixed(0)} / ${r.modelFetchMs.toFixed(0)} / ${r.modelMs.toFixed(0)} ms | |`);
console.log(`| time to first result | ${r.firstMs.toFixed(0)} ms (decode + preprocess + inference + regions) | ${r.ortFirstMs.toFixed(0)} ms (first inference, no DICOM decode) |`);
console.log(`| inference only, same tensor | ${r.asgInferMs.toFixed(2)} ms | ${r.ortInferMs.toFixed(2)} ms |`);
console.log(`| whole analysis of the DICOM file | ${r.analysisMs.toFixed(1)} ms | — (no DICOM reader) |`);
if (r.cropModel) console.log(`| of which: lung crops and the crop model (nodule) | ${r.cropMs.toFixed(1)} ms | — |`);
console.log(`| wasm binary (raw / gzip -9) | ${mb(asgRaw)} / ${mb(asgGz)} | ${mb(ortRaw)} / ${mb(ortGz)} (ort-wasm-simd-threaded.wasm) |`);
console.log(`\nfinding logits, asg vs onnxruntime-web on the same tensor: worst relative difference ${r.worstRelative.toExponential(2)}`);
