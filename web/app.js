// The thin-slice viewer page: pick a DICOM file, analyse it in a Web Worker, show image and scores.
const worker = new Worker(new URL("./worker.js", import.meta.url), { type: "module" });
const pending = new Map();
let nextId = 1;

function call(type, payload = {}, transfer = []) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    pending.set(id, { resolve, reject });
    worker.postMessage({ id, type, ...payload }, transfer);
  });
}

worker.onmessage = (event) => {
  const { id, ok, error } = event.data;
  const p = pending.get(id);
  if (!p) return;
  pending.delete(id);
  ok ? p.resolve(event.data) : p.reject(new Error(error));
};

const status = document.getElementById("status");
const fileInput = document.getElementById("file");
const canvas = document.getElementById("image");

function setStatus(state, text) {
  status.dataset.state = state;
  status.textContent = text;
}

function showImage({ width, height, rgba }) {
  canvas.width = width;
  canvas.height = height;
  canvas.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(rgba), width, height), 0, 0);
}

function showAnalysis(analysis) {
  const body = document.querySelector("#findings tbody");
  body.replaceChildren(
    ...analysis.findings.map((f) => {
      const row = document.createElement("tr");
      row.className = f.present ? "present" : "";
      row.dataset.finding = f.name;
      const name = document.createElement("td");
      name.textContent = f.name;
      const p = document.createElement("td");
      p.textContent = f.probability.toFixed(3);
      row.append(name, p);
      return row;
    }),
  );
  const t = analysis.timings;
  document.getElementById("timings").textContent =
    `decode ${t.decode_ms.toFixed(1)} ms · preprocess ${t.preprocess_ms.toFixed(1)} ms · ` +
    `inference ${t.inference_ms.toFixed(1)} ms · total ${t.total_ms.toFixed(1)} ms`;
  document.getElementById("result").textContent = JSON.stringify(analysis, null, 2);
}

fileInput.addEventListener("change", async () => {
  const file = fileInput.files[0];
  if (!file) return;
  setStatus("busy", `Analysing ${file.name}…`);
  try {
    const bytes = await file.arrayBuffer();
    const { analysis, image } = await call("analyze", { bytes, name: file.name }, [bytes]);
    showImage(image);
    showAnalysis(analysis);
    const warnings = analysis.warnings.length ? ` Warnings: ${analysis.warnings.join("; ")}` : "";
    setStatus("done", `Analysed ${file.name} (${image.width} × ${image.height}).${warnings}`);
  } catch (e) {
    setStatus("error", `Could not analyse ${file.name}: ${e.message}`);
  }
});

call("load")
  .then(({ manifest }) => {
    setStatus("ready", `Model ${manifest.name} ${manifest.version} loaded. Open a DICOM file.`);
    fileInput.disabled = false;
  })
  .catch((e) => setStatus("error", `Could not load the model: ${e.message}`));
