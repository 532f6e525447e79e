// The embedding entry point: the same on-device analysis the viewer runs, for other web viewers
// (OHIF, Cornerstone3D, dwv...). Everything runs in a Web Worker of the page's own origin; no
// pixel and no report leaves the browser. Types: asg.d.ts. Example: ../docs/embedding.md.
//
//   import { AsgAnalyzer } from "./asg.js";
//   const asg = new AsgAnalyzer();              // model from ./model/ beside this file
//   const manifest = await asg.load();
//   const { analysis } = await asg.analyze(dicomArrayBuffer, "image.dcm");
//   const check = await asg.checkReport(analysis, reportText);

export class AsgAnalyzer {
  constructor() {
    this.worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
    this.pending = new Map();
    this.nextId = 1;
    this.worker.onmessage = (event) => {
      const { id, ok, error, progress } = event.data;
      const p = this.pending.get(id);
      if (!p) return;
      if (progress) {
        if (p.onProgress) p.onProgress(progress);
        return;
      }
      this.pending.delete(id);
      ok ? p.resolve(event.data) : p.reject(new Error(error));
    };
  }

  call(type, payload = {}, transfer = [], onProgress = null) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, onProgress });
      this.worker.postMessage({ id, type, ...payload }, transfer);
    });
  }

  /**
   * Loads and checks the model bundle (manifest, image.onnx, text.onnx); resolves to the manifest.
   * `onProgress({ file, loaded, total })` is called as the files arrive (total 0 when unknown).
   */
  async load(onProgress = null) {
    return (await this.call("load", {}, [], onProgress)).manifest;
  }

  /** Analyses one DICOM file's bytes (the buffer is transferred); resolves to { analysis, image }. */
  analyze(bytes, name = "image.dcm") {
    return this.call("analyze", { bytes, name }, [bytes]);
  }

  /** Checks a report against an analysis; resolves to the report check. */
  async checkReport(analysis, report) {
    return (await this.call("check", { analysis, report })).check;
  }

  /** Header metadata and a 64-pixel thumbnail of a DICOM file (the buffer is transferred). */
  readMeta(bytes, name = "image.dcm") {
    return this.call("meta", { bytes, name }, [bytes]);
  }

  terminate() {
    this.worker.terminate();
  }
}
