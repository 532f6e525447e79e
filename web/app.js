// The viewer page: pick a DICOM file, analyse it in a Web Worker, show the image with the anatomy
// boxes, the grounded findings and a heatmap, the findings and regions as text, and check a
// report sentence by sentence.
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

// Colours shared with the native overlay (plugin/src/overlay.rs).
const ORIENTATION = ["right lung", "left lung", "cardiac silhouette", "mediastinum"];
function probabilityColour(p) {
  const t = Math.min(Math.max((p - 0.5) * 2, 0), 1);
  return `rgb(255, ${Math.round(220 * (1 - t))}, 0)`;
}

let current = null; // { analysis, selected: finding name or null, highlight: region name or null }
const overlay = document.getElementById("overlay");

function drawOverlay() {
  if (!current) return;
  const { analysis, selected, highlight } = current;
  overlay.width = analysis.image.width;
  overlay.height = analysis.image.height;
  const ctx = overlay.getContext("2d");
  ctx.clearRect(0, 0, overlay.width, overlay.height);
  const scale = Math.max(1, Math.round(Math.max(overlay.width, overlay.height) / 600));
  const finding = analysis.findings.find((f) => f.name === selected);
  const lb = analysis.letterbox;
  if (document.getElementById("show-heatmap").checked && finding && finding.heatmap) {
    // The heatmap covers the model input square; map it back through the letterbox.
    const g = finding.heatmap.grid;
    const sx = lb.image_width / lb.content_width;
    const sy = lb.image_height / lb.content_height;
    const cell = lb.size / g;
    finding.heatmap.values.forEach((v, i) => {
      if (v < 0.3) return;
      const x = ((i % g) * cell - lb.offset_x) * sx;
      const y = (Math.floor(i / g) * cell - lb.offset_y) * sy;
      ctx.fillStyle = `rgba(255, ${Math.round(255 * (1 - v))}, 0, ${(0.45 * (v - 0.3)) / 0.7})`;
      ctx.fillRect(x, y, cell * sx, cell * sy);
    });
  }
  if (document.getElementById("show-boxes").checked) {
    ctx.font = `${12 * scale}px sans-serif`;
    const box = (r, colour, width) => {
      const [x1, y1, x2, y2] = r.bbox;
      ctx.strokeStyle = colour;
      ctx.lineWidth = width * scale;
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    };
    const label = (text, x, y, colour) => {
      const w = ctx.measureText(text).width + 4 * scale;
      ctx.fillStyle = "rgba(0, 0, 0, 0.65)";
      ctx.fillRect(x, y, w, 14 * scale);
      ctx.fillStyle = colour;
      ctx.fillText(text, x + 2 * scale, y + 11 * scale);
    };
    for (const r of analysis.regions.filter((r) => ORIENTATION.includes(r.name))) {
      box(r, "rgb(0, 200, 220)", 1);
      label(r.name, r.bbox[0], r.bbox[1], "rgb(0, 220, 240)");
    }
    const shown = selected ? analysis.findings.filter((f) => f.name === selected) : analysis.findings.filter((f) => f.present);
    for (const f of shown) {
      const fi = analysis.findings.indexOf(f);
      for (const name of f.regions.slice(0, 3)) {
        const r = analysis.regions.find((x) => x.name === name);
        if (!r) continue;
        const p = r.probabilities[fi];
        box(r, probabilityColour(p), 2);
        label(`${name}: ${f.name} ${p.toFixed(2)}`, r.bbox[0], r.bbox[3] + 2, probabilityColour(p));
      }
    }
    const hl = analysis.regions.find((r) => r.name === highlight);
    if (hl) box(hl, "rgb(255, 255, 255)", 3);
  }
}

function select(name) {
  current.selected = current.selected === name ? null : name;
  for (const row of document.querySelectorAll("#findings tbody tr")) {
    row.classList.toggle("selected", row.dataset.finding === current.selected);
  }
  drawOverlay();
}

function showAnalysis(analysis) {
  current = { analysis, selected: null, highlight: null };
  const body = document.querySelector("#findings tbody");
  body.replaceChildren(
    ...analysis.findings.map((f) => {
      const row = document.createElement("tr");
      row.className = f.present ? "present" : "";
      row.dataset.finding = f.name;
      row.tabIndex = 0;
      const name = document.createElement("td");
      name.textContent = f.name;
      const p = document.createElement("td");
      p.textContent = f.probability.toFixed(3);
      const regions = document.createElement("td");
      regions.textContent = (f.regions || []).join(", ");
      row.append(name, p, regions);
      row.addEventListener("click", () => select(f.name));
      row.addEventListener("keydown", (e) => e.key === "Enter" && select(f.name));
      return row;
    }),
  );
  document.querySelector("#regions tbody").replaceChildren(
    ...analysis.regions.map((r) => {
      const row = document.createElement("tr");
      row.dataset.region = r.name;
      const name = document.createElement("td");
      name.textContent = r.name;
      const found = document.createElement("td");
      found.textContent = r.findings.join(", ");
      row.append(name, found);
      row.addEventListener("mouseenter", () => { current.highlight = r.name; drawOverlay(); });
      row.addEventListener("mouseleave", () => { current.highlight = null; drawOverlay(); });
      return row;
    }),
  );
  document.getElementById("sentences").replaceChildren();
  document.getElementById("check").disabled = !modelHasText;
  const t = analysis.timings;
  document.getElementById("timings").textContent =
    `decode ${t.decode_ms.toFixed(1)} ms · preprocess ${t.preprocess_ms.toFixed(1)} ms · ` +
    `inference ${t.inference_ms.toFixed(1)} ms · total ${t.total_ms.toFixed(1)} ms`;
  document.getElementById("result").textContent = JSON.stringify(analysis, null, 2);
  drawOverlay();
}

function showCheck(check) {
  const list = document.getElementById("sentences");
  const items = [];
  for (const s of check.sentences) {
    if (s.verdict === "no_claim" || s.verdict === "not_assessed") continue;
    const li = document.createElement("li");
    li.dataset.verdict = s.verdict;
    li.textContent = s.text.split(/\s+/).join(" ");
    const why = document.createElement("span");
    why.className = "why";
    why.textContent = `${s.verdict.replace("_", " ")}: ${s.triplets.map((t) => t.explanation).join("; ")}`;
    li.append(why);
    const evidence = s.triplets.map((t) => t.evidence && t.evidence.region).find(Boolean);
    li.addEventListener("mouseenter", () => { current.highlight = evidence || (s.best_region && s.best_region[0]); drawOverlay(); });
    li.addEventListener("mouseleave", () => { current.highlight = null; drawOverlay(); });
    items.push(li);
  }
  for (const o of check.omissions) {
    const li = document.createElement("li");
    li.className = "omission";
    li.dataset.verdict = "omission";
    li.textContent = `Not in the report: ${o.finding} (p = ${o.probability.toFixed(2)}${o.regions.length ? `, ${o.regions.join(", ")}` : ""})`;
    li.addEventListener("mouseenter", () => { current.highlight = o.regions[0]; drawOverlay(); });
    li.addEventListener("mouseleave", () => { current.highlight = null; drawOverlay(); });
    items.push(li);
  }
  list.replaceChildren(...items);
}

let modelHasText = false;
document.getElementById("show-boxes").addEventListener("change", drawOverlay);
document.getElementById("show-heatmap").addEventListener("change", drawOverlay);
document.getElementById("check").addEventListener("click", async () => {
  if (!current) return;
  setStatus("busy", "Checking the report…");
  try {
    const { check } = await call("check", { analysis: current.analysis, report: document.getElementById("report").value });
    showCheck(check);
    setStatus("checked", `Report checked: ${check.sentences.length} sentences, ${check.omissions.length} omissions.`);
  } catch (e) {
    setStatus("error", `Could not check the report: ${e.message}`);
  }
});

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
    modelHasText = Boolean(manifest.text_model);
    setStatus("ready", `Model ${manifest.name} ${manifest.version} loaded. Open a DICOM file.`);
    fileInput.disabled = false;
  })
  .catch((e) => setStatus("error", `Could not load the model: ${e.message}`));
