// Runs the WebAssembly analyzer off the main thread so the page never freezes.
import init, { Analyzer, panicForTesting, readMeta, thumbnail } from "./pkg/asg_wasm.js";

let analyzer = null;

// A panic inside the WebAssembly module aborts it (a WebAssembly.RuntimeError, "unreachable");
// its panic hook (asg-wasm's `start`) hands the message here first.
let lastPanic = null;
self.asgPanic = (message) => {
  lastPanic = String(message);
};

// Fetches one file of the bundle, reporting the bytes received so far through `progress`.
async function fetchBytes(name, progress) {
  const r = await fetch(new URL(`./model/${name}`, import.meta.url));
  if (!r.ok) throw new Error(`model/${name}: HTTP ${r.status}`);
  const total = Number(r.headers.get("Content-Length")) || 0;
  if (!r.body) return new Uint8Array(await r.arrayBuffer());
  const reader = r.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    progress(name, loaded, total);
  }
  const out = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

async function load(progress) {
  await init({ module_or_path: new URL("./pkg/asg_wasm_bg.wasm", import.meta.url) });
  const [manifest, onnx] = await Promise.all([
    fetchBytes("manifest.json", progress).then((b) => new TextDecoder().decode(b)),
    fetchBytes("image.onnx", progress),
  ]);
  analyzer = new Analyzer(manifest, onnx);
  const parsed = JSON.parse(analyzer.manifest());
  // The lung-crop model (the nodule reader), when the bundle has one: the first result waits
  // for it, since without it the finding it scores would come from the image model.
  if (parsed.crop_model) {
    analyzer.loadCropModel(await fetchBytes(parsed.crop_model.file, progress));
  }
  // The text model (for the report check), when the bundle has one.
  if (parsed.text_model) {
    const [text, tokenizer] = await Promise.all([
      fetchBytes(parsed.text_model.file, progress),
      fetchBytes(parsed.text_model.tokenizer, progress),
    ]);
    analyzer.loadText(text, tokenizer);
  }
  return parsed;
}

self.onmessage = async (event) => {
  const { id, type } = event.data;
  try {
    if (type === "load") {
      const manifest = await load((file, loaded, total) =>
        self.postMessage({ id, progress: { file, loaded, total } }));
      self.postMessage({ id, ok: true, manifest });
    } else if (type === "analyze") {
      if (!analyzer) throw new Error("the model is not loaded");
      const bytes = new Uint8Array(event.data.bytes);
      // One decode serves the analysis and the picture.
      const result = analyzer.analyzeWithDisplay(bytes, event.data.name);
      const analysis = JSON.parse(result.json);
      const display = result.takeDisplay();
      result.free();
      const image = {
        width: display.width,
        height: display.height,
        rgba: display.rgba,
        modality: display.modality,
        windowCenter: display.windowCenter,
        windowWidth: display.windowWidth,
        monochrome1: display.monochrome1,
      };
      display.free();
      self.postMessage({ id, ok: true, analysis, image }, [image.rgba.buffer, image.modality.buffer]);
    } else if (type === "meta") {
      // Header only; plus a thumbnail for the study list.
      const bytes = new Uint8Array(event.data.bytes);
      const meta = JSON.parse(readMeta(bytes, event.data.name));
      const t = thumbnail(bytes, event.data.name, 64);
      const thumb = { width: t.width, height: t.height, rgba: t.rgba };
      t.free();
      self.postMessage({ id, ok: true, meta, thumb }, [thumb.rgba.buffer]);
    } else if (type === "export") {
      if (!analyzer) throw new Error("the model is not loaded");
      const r = analyzer.exportResults(new Uint8Array(event.data.bytes), event.data.name, JSON.stringify(event.data.analysis), new Date().toISOString());
      const sr = r.sr;
      const fhir = r.fhir;
      r.free();
      self.postMessage({ id, ok: true, sr, fhir }, [sr.buffer]);
    } else if (type === "check") {
      if (!analyzer) throw new Error("the model is not loaded");
      const check = JSON.parse(analyzer.checkReport(JSON.stringify(event.data.analysis), event.data.report));
      self.postMessage({ id, ok: true, check });
    } else if (type === "crash-for-testing") {
      // The crash-recovery test's way to make the module panic.
      panicForTesting();
    } else {
      throw new Error(`unknown request ${JSON.stringify(type)}`);
    }
  } catch (e) {
    if (e instanceof WebAssembly.RuntimeError) {
      // The instance trapped and its state is gone: say why, then end this worker; asg.js starts
      // a fresh one (and loads the model again) for the next request.
      const file = event.data.name ? `${event.data.name}: ` : "";
      const cause = lastPanic ?? e.message;
      self.postMessage({
        id,
        ok: false,
        fatal: true,
        error: `${file}the analyzer crashed (${cause}) and was restarted; other files are not affected`,
      });
      self.close();
      return;
    }
    self.postMessage({ id, ok: false, error: String(e && e.message ? e.message : e) });
  }
};
