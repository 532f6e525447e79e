// The viewer page: pick a DICOM file, analyse it in a Web Worker, show the image with the anatomy
// boxes, the grounded findings and a heatmap, the findings and regions as text, and check a
// report sentence by sentence.
import { AsgAnalyzer } from "./asg.js";

// The same worker plumbing other viewers embed (asg.js).
const asg = new AsgAnalyzer();
const call = (type, payload = {}, transfer = []) => asg.call(type, payload, transfer);

const status = document.getElementById("status");
const fileInput = document.getElementById("file");
const canvas = document.getElementById("image");

function setStatus(state, text) {
  status.dataset.state = state;
  status.textContent = text;
}

// The picture and how it is viewed: window/level in modality units (the file's rendering, VOI LUT
// or SIGMOID included, until the user changes the window), invert, zoom and pan.
let view = null;

function showImage(image) {
  view = {
    image,
    rgba: new Uint8ClampedArray(image.rgba),
    center: image.windowCenter,
    width: image.windowWidth,
    adjusted: false,
    invert: false,
    zoom: 1,
    x: 0,
    y: 0,
  };
  canvas.width = image.width;
  canvas.height = image.height;
  renderImage();
  applyTransform();
}

function renderImage() {
  if (!view) return;
  const { image } = view;
  const n = image.width * image.height;
  let px = view.rgba;
  if (view.adjusted || view.invert) {
    px = new Uint8ClampedArray(n * 4);
    const m = image.modality;
    // DICOM's linear window: ((x - (c - 0.5)) / (w - 1) + 0.5), clamped to [0, 1].
    const c = view.center - 0.5;
    const w = Math.max(view.width - 1, 1e-3);
    const flip = image.monochrome1 !== view.invert;
    for (let i = 0; i < n; i++) {
      let g = view.adjusted ? Math.min(Math.max((m[i] - c) / w + 0.5, 0), 1) * 255 : view.rgba[i * 4];
      if (view.adjusted ? flip : view.invert) g = 255 - g;
      px[i * 4] = px[i * 4 + 1] = px[i * 4 + 2] = g;
      px[i * 4 + 3] = 255;
    }
  }
  canvas.getContext("2d").putImageData(new ImageData(px, image.width, image.height), 0, 0);
  document.getElementById("wl").textContent = view.adjusted
    ? `W ${view.width.toFixed(0)} / L ${view.center.toFixed(0)}${view.invert ? " · inverted" : ""}`
    : `file window${view.invert ? " · inverted" : ""}`;
}

function applyTransform() {
  if (!view) return;
  document.getElementById("stack").style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.zoom})`;
}

function setWindow(center, width) {
  view.center = center;
  view.width = Math.max(width, 1);
  view.adjusted = true;
  renderImage();
}

function preset(name) {
  if (!view) return;
  const { windowCenter: c, windowWidth: w } = view.image;
  if (name === "default") {
    view.center = c;
    view.width = w;
    view.adjusted = false;
    renderImage();
  } else if (name === "wide") setWindow(c, w * 2);
  else if (name === "narrow") setWindow(c, w / 2);
}

function zoomBy(factor) {
  if (!view) return;
  view.zoom = Math.min(Math.max(view.zoom * factor, 0.25), 16);
  applyTransform();
}

function fit() {
  if (!view) return;
  view.zoom = 1;
  view.x = 0;
  view.y = 0;
  applyTransform();
}

// Colours shared with the native overlay (plugin/src/overlay.rs).
const ORIENTATION = ["right lung", "left lung", "cardiac silhouette", "mediastinum"];
function probabilityColour(p) {
  const t = Math.min(Math.max((p - 0.5) * 2, 0), 1);
  return `rgb(255, ${Math.round(220 * (1 - t))}, 0)`;
}

let current = null; // { analysis, selected: finding name or null, highlight: region name or null, check }
// null: the model's own threshold per finding; a number: one threshold for every finding.
let threshold = null;

// A finding the model was not trained to assess is never shown as present (bundles before the
// `assessed` list mark nothing).
function isAssessed(f) {
  return f.assessed !== false;
}

function isPresent(f) {
  if (!isAssessed(f)) return false;
  return threshold === null ? f.present : f.probability >= threshold;
}

function regionsOf(analysis, f) {
  if (!isAssessed(f)) return [];
  if (threshold === null) return f.regions;
  const fi = analysis.findings.indexOf(f);
  return analysis.regions
    .filter((r) => r.probabilities[fi] >= threshold)
    .sort((a, b) => b.probabilities[fi] - a.probabilities[fi])
    .map((r) => r.name);
}
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
    const shown = selected ? analysis.findings.filter((f) => f.name === selected) : analysis.findings.filter(isPresent);
    for (const f of shown) {
      const fi = analysis.findings.indexOf(f);
      for (const name of regionsOf(analysis, f).slice(0, 3)) {
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

function select(name, toggle = true) {
  current.selected = toggle && current.selected === name ? null : name;
  for (const row of document.querySelectorAll("#findings tbody tr")) {
    row.classList.toggle("selected", row.dataset.finding === current.selected);
  }
  drawOverlay();
}

function showFindings() {
  const { analysis } = current;
  for (const row of document.querySelectorAll("#findings tbody tr")) {
    const f = analysis.findings.find((x) => x.name === row.dataset.finding);
    row.classList.toggle("present", isPresent(f));
    row.cells[2].textContent = regionsOf(analysis, f).join(", ");
  }
}

function showAnalysis(analysis) {
  current = { analysis, selected: null, highlight: null, check: null };
  document.getElementById("export-json").disabled = false;
  document.getElementById("export-png").disabled = false;
  document.getElementById("export-sr").disabled = false;
  document.getElementById("export-fhir").disabled = false;
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
      p.textContent = isAssessed(f) ? f.probability.toFixed(3) : "not assessed";
      if (!isAssessed(f)) row.classList.add("not-assessed");
      const regions = document.createElement("td");
      regions.textContent = (f.regions || []).join(", ");
      row.append(name, p, regions);
      row.addEventListener("click", () => select(f.name));
      row.addEventListener("keydown", (e) => e.key === "Enter" && select(f.name));
      return row;
    }),
  );
  showFindings();
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
const slider = document.getElementById("threshold");
slider.addEventListener("input", () => {
  threshold = Number(slider.value);
  document.getElementById("threshold-value").textContent = threshold.toFixed(2);
  if (current) { showFindings(); drawOverlay(); }
});
document.getElementById("threshold-reset").addEventListener("click", () => {
  threshold = null;
  document.getElementById("threshold-value").textContent = "the model's own, per finding";
  if (current) { showFindings(); drawOverlay(); }
});

function download(blob, name) {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}
document.getElementById("export-json").addEventListener("click", () => {
  if (!current) return;
  const out = { ...current.analysis, report_check: current.check ?? undefined };
  download(new Blob([JSON.stringify(out, null, 2)], { type: "application/json" }), "analysis.json");
});
async function exportResults(kind) {
  if (!current || !current.file) return;
  try {
    const bytes = await readCapped(current.file);
    const { sr, fhir } = await call("export", { bytes, name: current.file.name, analysis: current.analysis }, [bytes]);
    if (kind === "sr") download(new Blob([sr], { type: "application/dicom" }), "analysis.sr.dcm");
    else download(new Blob([fhir], { type: "application/fhir+json" }), "analysis.fhir.json");
  } catch (e) {
    setStatus("error", `Could not export: ${e.message}`);
  }
}
document.getElementById("export-sr").addEventListener("click", () => exportResults("sr"));
document.getElementById("export-fhir").addEventListener("click", () => exportResults("fhir"));
document.getElementById("export-png").addEventListener("click", () => {
  if (!current) return;
  // The image as windowed now, with the overlay as drawn now.
  const c = document.createElement("canvas");
  c.width = canvas.width;
  c.height = canvas.height;
  const ctx = c.getContext("2d");
  ctx.drawImage(canvas, 0, 0);
  ctx.drawImage(overlay, 0, 0);
  c.toBlob((blob) => download(blob, "view.png"), "image/png");
});
const viewport = document.getElementById("viewport");
let drag = null;
viewport.addEventListener("pointerdown", (e) => {
  if (!view) return;
  drag = { x: e.clientX, y: e.clientY, pan: e.shiftKey || e.button === 1, center: view.center, width: view.width, px: view.x, py: view.y };
  viewport.setPointerCapture(e.pointerId);
});
viewport.addEventListener("pointermove", (e) => {
  if (!drag || !view) return;
  const dx = e.clientX - drag.x;
  const dy = e.clientY - drag.y;
  if (drag.pan) {
    view.x = drag.px + dx;
    view.y = drag.py + dy;
    applyTransform();
  } else {
    // Right: wider window; down: higher level. Scaled to the file's window.
    const k = view.image.windowWidth / 300;
    setWindow(drag.center + dy * k, drag.width + dx * k);
  }
});
viewport.addEventListener("pointerup", () => { drag = null; });
viewport.addEventListener("wheel", (e) => {
  e.preventDefault();
  zoomBy(e.deltaY < 0 ? 1.1 : 1 / 1.1);
}, { passive: false });
document.getElementById("preset-default").addEventListener("click", () => preset("default"));
document.getElementById("preset-wide").addEventListener("click", () => preset("wide"));
document.getElementById("preset-narrow").addEventListener("click", () => preset("narrow"));
document.getElementById("invert").addEventListener("click", () => { if (view) { view.invert = !view.invert; renderImage(); } });
document.getElementById("fit").addEventListener("click", fit);
document.addEventListener("keydown", (e) => {
  if (e.target instanceof HTMLTextAreaElement || e.target instanceof HTMLInputElement) return;
  const toggle = (id) => { const box = document.getElementById(id); box.checked = !box.checked; drawOverlay(); };
  const step = (delta) => {
    if (!current) return;
    const names = current.analysis.findings.map((f) => f.name);
    const at = names.indexOf(current.selected);
    select(names[(at + delta + names.length) % names.length], false);
  };
  const actions = {
    i: () => document.getElementById("invert").click(),
    f: fit,
    r: () => { preset("default"); fit(); },
    b: () => toggle("show-boxes"),
    h: () => toggle("show-heatmap"),
    "1": () => preset("default"),
    "2": () => preset("wide"),
    "3": () => preset("narrow"),
    "+": () => zoomBy(1.25),
    "=": () => zoomBy(1.25),
    "-": () => zoomBy(0.8),
    ArrowDown: () => step(1),
    ArrowUp: () => step(-1),
  };
  const action = actions[e.key];
  if (action) {
    e.preventDefault();
    action();
  }
});
document.getElementById("show-boxes").addEventListener("change", drawOverlay);
document.getElementById("show-heatmap").addEventListener("change", drawOverlay);
document.getElementById("check").addEventListener("click", async () => {
  if (!current) return;
  setStatus("busy", "Checking the report…");
  try {
    const { check } = await call("check", { analysis: current.analysis, report: document.getElementById("report").value });
    current.check = check;
    showCheck(check);
    setStatus("checked", `Report checked: ${check.sentences.length} sentences, ${check.omissions.length} omissions.`);
  } catch (e) {
    setStatus("error", `Could not check the report: ${e.message}`);
  }
});

// The browser build's file limit (asg-dicom's ReadOptions::browser): larger files are refused
// before they are read into the tab's memory.
const MAX_FILE_BYTES = 256 * 1024 * 1024;
async function readCapped(file) {
  if (file.size > MAX_FILE_BYTES) {
    const mb = (n) => `${Math.round(n / (1024 * 1024))} MB`;
    throw new Error(`the file is ${mb(file.size)}, more than the ${mb(MAX_FILE_BYTES)} the browser viewer reads; use the workstation CLI (asg analyze) for it`);
  }
  return file.arrayBuffer();
}

async function analyzeFile(file) {
  setStatus("busy", `Analysing ${file.name}…`);
  try {
    const bytes = await readCapped(file);
    const { analysis, image } = await call("analyze", { bytes, name: file.name }, [bytes]);
    showImage(image);
    showAnalysis(analysis);
    current.file = file;
    for (const b of document.querySelectorAll("#studies button")) {
      b.setAttribute("aria-current", String(b.fileRef === file));
    }
    const warnings = analysis.warnings.length ? ` Warnings: ${analysis.warnings.join("; ")}` : "";
    setStatus("done", `Analysed ${file.name} (${image.width} × ${image.height}).${warnings}`);
  } catch (e) {
    setStatus("error", `Could not analyse ${file.name}: ${e.message}`);
  }
}

// Several files: read each header (and a thumbnail), group into studies and series, list them,
// analyse the first image. Files that are not DICOM images are named and skipped.
async function openFiles(files) {
  files = [...files];
  if (files.length === 0) return;
  if (files.length === 1) {
    document.getElementById("studies").replaceChildren();
    return analyzeFile(files[0]);
  }
  setStatus("busy", `Reading ${files.length} files…`);
  const studies = new Map();
  const skipped = [];
  let done = 0;
  for (const file of files) {
    try {
      const bytes = await readCapped(file);
      const { meta, thumb } = await call("meta", { bytes, name: file.name }, [bytes]);
      const study = studies.get(meta.study_instance_uid) ?? new Map();
      studies.set(meta.study_instance_uid, study);
      const series = study.get(meta.series_instance_uid) ?? [];
      study.set(meta.series_instance_uid, series);
      series.push({ file, meta, thumb });
    } catch (e) {
      skipped.push(`${file.name}: ${e.message}`);
    }
    done++;
    setStatus("busy", `Reading ${done} of ${files.length} files…`);
  }
  const list = document.getElementById("studies");
  const items = [];
  let k = 0;
  for (const [, study] of studies) {
    k++;
    const li = document.createElement("li");
    const title = document.createElement("div");
    title.textContent = `Study ${k}: ${[...study.values()].reduce((n, s) => n + s.length, 0)} images in ${study.size} series`;
    li.append(title);
    for (const [, series] of study) {
      for (const { file, meta, thumb } of series) {
        const b = document.createElement("button");
        b.type = "button";
        b.fileRef = file;
        b.title = `${file.name} · ${meta.modality ?? "?"} ${meta.view_position ?? ""} · ${meta.columns} × ${meta.rows}`;
        const c = document.createElement("canvas");
        c.width = thumb.width;
        c.height = thumb.height;
        c.getContext("2d").putImageData(new ImageData(new Uint8ClampedArray(thumb.rgba), thumb.width, thumb.height), 0, 0);
        const caption = document.createElement("span");
        caption.textContent = meta.view_position ?? meta.modality ?? "image";
        b.append(c, caption);
        b.addEventListener("click", () => analyzeFile(file));
        li.append(b);
      }
    }
    items.push(li);
  }
  list.replaceChildren(...items);
  if (skipped.length) console.warn(`skipped: ${skipped.join("; ")}`);
  const first = [...studies.values()][0];
  if (!first) {
    setStatus("error", `None of the ${files.length} files is a DICOM image (${skipped[0] ?? ""})`);
    return;
  }
  await analyzeFile([...first.values()][0][0].file);
  if (skipped.length) {
    status.textContent += ` Skipped ${skipped.length} file(s) that are not DICOM images.`;
  }
}

fileInput.addEventListener("change", () => openFiles(fileInput.files));
document.getElementById("folder").addEventListener("change", (e) => openFiles(e.target.files));

// Drag and drop: files, and folders walked through the entries API.
async function entryFiles(entry) {
  if (entry.isFile) return [await new Promise((ok, no) => entry.file(ok, no))];
  if (!entry.isDirectory) return [];
  const reader = entry.createReader();
  const out = [];
  for (;;) {
    const batch = await new Promise((ok, no) => reader.readEntries(ok, no));
    if (batch.length === 0) break;
    for (const e of batch) out.push(...(await entryFiles(e)));
  }
  return out;
}
document.addEventListener("dragover", (e) => { e.preventDefault(); document.body.classList.add("dragging"); });
document.addEventListener("dragleave", () => document.body.classList.remove("dragging"));
document.addEventListener("drop", async (e) => {
  e.preventDefault();
  document.body.classList.remove("dragging");
  if (fileInput.disabled) return;
  const entries = [...e.dataTransfer.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
  const files = entries.length ? (await Promise.all(entries.map(entryFiles))).flat() : [...e.dataTransfer.files];
  openFiles(files);
});

call("load")
  .then(({ manifest }) => {
    modelHasText = Boolean(manifest.text_model);
    setStatus("ready", `Model ${manifest.name} ${manifest.version} loaded. Open a DICOM file.`);
    fileInput.disabled = false;
    document.getElementById("folder").disabled = false;
  })
  .catch((e) => setStatus("error", `Could not load the model: ${e.message}`));
