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
    this.pending = new Map();
    this.nextId = 1;
    /** How many times a crashed worker has been replaced. */
    this.restarts = 0;
    // Whether a load succeeded: a replacement worker then loads the model again by itself.
    this.loaded = false;
    // The replacement worker's model load, which the next requests wait for.
    this.reloading = null;
    this.startWorker();
  }

  startWorker() {
    this.worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
    this.worker.onmessage = (event) => {
      const { id, ok, error, progress, fatal } = event.data;
      const p = this.pending.get(id);
      if (p && progress) {
        if (p.onProgress) p.onProgress(progress);
        return;
      }
      if (p) {
        this.pending.delete(id);
        ok ? p.resolve(event.data) : p.reject(new Error(error));
      }
      if (fatal) {
        // A load that crashes would crash again: the replacement worker does not retry it.
        if (p && p.type === "load") this.loaded = false;
        this.restart(error);
      }
    };
    // The worker's script failed to load or threw outside a request: nothing in flight will
    // be answered.
    this.worker.onerror = (event) => {
      event.preventDefault();
      this.failPending(`the analyzer's worker failed: ${event.message || "unknown error"}`);
    };
  }

  failPending(reason) {
    for (const p of this.pending.values()) p.reject(new Error(reason));
    this.pending.clear();
  }

  // The WebAssembly module crashed (a panic aborts it): the worker has ended. Requests still in
  // flight are rejected, a fresh worker takes its place and, if the model had been loaded,
  // loads it again before the next request runs.
  restart(reason) {
    this.worker.terminate();
    this.failPending(`the analyzer restarted after a crash (${reason}); try again`);
    this.restarts += 1;
    this.startWorker();
    this.reloading = this.loaded ? this.post("load") : null;
    // (Its failure reaches the requests that wait for it; unwaited, it is not an unhandled one.)
    this.reloading?.catch(() => {});
  }

  post(type, payload = {}, transfer = [], onProgress = null) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { type, resolve, reject, onProgress });
      this.worker.postMessage({ id, type, ...payload }, transfer);
    });
  }

  /**
   * Sends one request to the worker; resolves to its answer. After a crash, waits for the
   * replacement worker's model load first (and rejects with its error if that load fails).
   */
  async call(type, payload = {}, transfer = [], onProgress = null) {
    const reloading = this.reloading;
    if (reloading && type !== "load") {
      try {
        await reloading;
      } finally {
        if (this.reloading === reloading) this.reloading = null;
      }
    }
    const answer = await this.post(type, payload, transfer, onProgress);
    if (type === "load") this.loaded = true;
    return answer;
  }

  /**
   * Loads and checks the model bundle (manifest, image.onnx, text.onnx, and the crop model when the
   * manifest names one); resolves to the manifest.
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
