// Runs the WebAssembly analyzer off the main thread so the page never freezes.
import init, { Analyzer, readMeta, thumbnail } from "./pkg/asg_wasm.js";

let analyzer = null;

async function load() {
  await init({ module_or_path: new URL("./pkg/asg_wasm_bg.wasm", import.meta.url) });
  const [manifest, onnx] = await Promise.all([
    fetch(new URL("./model/manifest.json", import.meta.url)).then((r) => {
      if (!r.ok) throw new Error(`model/manifest.json: HTTP ${r.status}`);
      return r.text();
    }),
    fetch(new URL("./model/image.onnx", import.meta.url)).then((r) => {
      if (!r.ok) throw new Error(`model/image.onnx: HTTP ${r.status}`);
      return r.arrayBuffer();
    }),
  ]);
  analyzer = new Analyzer(manifest, new Uint8Array(onnx));
  const parsed = JSON.parse(analyzer.manifest());
  // The text model (for the report check), when the bundle has one.
  if (parsed.text_model) {
    const get = (name) =>
      fetch(new URL(`./model/${name}`, import.meta.url)).then((r) => {
        if (!r.ok) throw new Error(`model/${name}: HTTP ${r.status}`);
        return r.arrayBuffer();
      });
    const [text, tokenizer] = await Promise.all([get(parsed.text_model.file), get(parsed.text_model.tokenizer)]);
    analyzer.loadText(new Uint8Array(text), new Uint8Array(tokenizer));
  }
  return parsed;
}

self.onmessage = async (event) => {
  const { id, type } = event.data;
  try {
    if (type === "load") {
      const manifest = await load();
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
    }
  } catch (e) {
    self.postMessage({ id, ok: false, error: String(e && e.message ? e.message : e) });
  }
};
