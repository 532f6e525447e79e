// Runs the WebAssembly analyzer off the main thread so the page never freezes.
import init, { Analyzer } from "./pkg/asg_wasm.js";

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
  return JSON.parse(analyzer.manifest());
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
      const image = { width: display.width, height: display.height, rgba: display.rgba };
      display.free();
      self.postMessage({ id, ok: true, analysis, image }, [image.rgba.buffer]);
    }
  } catch (e) {
    self.postMessage({ id, ok: false, error: String(e && e.message ? e.message : e) });
  }
};
