// The viewer page: pick a DICOM file, analyse it in a Web Worker, show the image with the anatomy
// boxes, the grounded findings and a heatmap, the findings and regions as text, and check a
// report sentence by sentence.
import { AsgAnalyzer } from "./asg.js";

// The same worker plumbing other viewers embed (asg.js).
const asg = new AsgAnalyzer();
const call = (type, payload = {}, transfer = []) => asg.call(type, payload, transfer);

const status = document.getElementById("status");
const progress = document.getElementById("progress");
const fileInput = document.getElementById("file");
const canvas = document.getElementById("image");

// The status line, and the progress bar beside it while the model loads or works: `fraction`
// in [0, 1], or undefined for "busy, no measure".
function setStatus(state, text, fraction) {
  status.dataset.state = state;
  status.textContent = text;
  const working = state === "loading" || state === "busy";
  progress.hidden = !working;
  if (working && fraction !== undefined) progress.value = fraction;
  else progress.removeAttribute("value");
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
    // Zoom in screen pixels per image pixel and the image's top-left corner in the viewport;
    // `fitted` while the user has not zoomed or panned (the view refits when the window resizes).
    zoom: 1,
    x: 0,
    y: 0,
    fitted: true,
  };
  canvas.width = image.width;
  canvas.height = image.height;
  const stack = document.getElementById("stack");
  stack.style.width = `${image.width}px`;
  stack.style.height = `${image.height}px`;
  renderImage();
  fit();
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

let redraw = 0;
function applyTransform() {
  if (!view) return;
  document.getElementById("stack").style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.zoom})`;
  // The overlay's labels follow the zoom (once per frame at most).
  if (current && !redraw) redraw = requestAnimationFrame(() => { redraw = 0; drawOverlay(); });
}

// The zoom at which the whole image fits the viewport (OHIF's and Cornerstone3D's default).
function fitZoom() {
  const vp = viewport.getBoundingClientRect();
  return Math.min(vp.width / view.image.width, vp.height / view.image.height) || 1;
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

// Zooms about a point of the viewport (its centre by default), between a quarter of the fitted
// size and 16 screen pixels per image pixel.
function zoomBy(factor, at) {
  if (!view) return;
  const vp = viewport.getBoundingClientRect();
  const [cx, cy] = at ?? [vp.width / 2, vp.height / 2];
  const f = fitZoom();
  const zoom = Math.min(Math.max(view.zoom * factor, f / 4), Math.max(16, f));
  view.x = cx - ((cx - view.x) * zoom) / view.zoom;
  view.y = cy - ((cy - view.y) * zoom) / view.zoom;
  view.zoom = zoom;
  view.fitted = false;
  applyTransform();
}

function panBy(dx, dy) {
  if (!view) return;
  view.x += dx;
  view.y += dy;
  view.fitted = false;
  applyTransform();
}

// The whole image in the viewport, centred.
function fit() {
  if (!view) return;
  const vp = viewport.getBoundingClientRect();
  view.zoom = fitZoom();
  view.x = (vp.width - view.image.width * view.zoom) / 2;
  view.y = (vp.height - view.image.height * view.zoom) / 2;
  view.fitted = true;
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

// The regions that carry a finding: none unless the finding is present (the model's threshold or
// the slider's), then those at or above the region threshold (the slider's when it is set).
function regionsOf(analysis, f) {
  if (!isPresent(f)) return [];
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
  // Labels and lines keep their size on screen whatever the zoom (12 px text).
  const scale = view && view.zoom > 0 ? Math.min(Math.max(1 / view.zoom, 1 / 16), 16) : 1;
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
  // The outlines of the anatomy the model segments (lungs, heart, clavicles, mediastinum).
  const outlined = [];
  if (document.getElementById("show-outlines").checked) {
    ctx.strokeStyle = "rgba(0, 200, 220, 0.9)";
    ctx.lineWidth = 1.5 * scale;
    for (const o of analysis.anatomy || []) {
      if (!o.rings.length) continue;
      ctx.beginPath();
      for (const ring of o.rings) {
        ring.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
        ctx.closePath();
      }
      ctx.stroke();
      outlined.push(o.name);
    }
  }
  overlay.dataset.outlines = JSON.stringify(outlined);
  const placed = [];
  if (document.getElementById("show-boxes").checked) {
    ctx.font = `${12 * scale}px sans-serif`;
    const box = (r, colour, width) => {
      const [x1, y1, x2, y2] = r.bbox;
      ctx.strokeStyle = colour;
      ctx.lineWidth = width * scale;
      ctx.strokeRect(x1, y1, x2 - x1, y2 - y1);
    };
    const labels = new LabelPlacer(overlay.width, overlay.height);
    const label = (text, bbox, colour) => {
      const w = Math.ceil(ctx.measureText(text).width + 4 * scale);
      const h = 14 * scale;
      const at = labels.place(bbox, w, h);
      if (!at) return; // no free place: the box stays, unlabelled
      const [x, y] = at;
      ctx.fillStyle = "rgba(0, 0, 0, 0.65)";
      ctx.fillRect(x, y, w, h);
      ctx.fillStyle = colour;
      ctx.fillText(text, x + 2 * scale, y + 11 * scale);
      placed.push({ text, rect: [x, y, x + w, y + h] });
    };
    // Findings first (they matter most when space runs out), then the orientation boxes.
    const shown = selected ? analysis.findings.filter((f) => f.name === selected && isPresent(f)) : analysis.findings.filter(isPresent);
    const grounded = [];
    for (const f of shown) {
      const fi = analysis.findings.indexOf(f);
      for (const name of regionsOf(analysis, f).slice(0, 3)) {
        const r = analysis.regions.find((x) => x.name === name);
        if (r) grounded.push({ r, f, p: r.probabilities[fi] });
      }
    }
    const orientation = analysis.regions.filter((r) => ORIENTATION.includes(r.name));
    // An outlined structure needs no box as well (its label stays).
    for (const r of orientation) if (!outlined.includes(r.name)) box(r, "rgb(0, 200, 220)", 1);
    for (const { r, p } of grounded) box(r, probabilityColour(p), 2);
    for (const { r, f, p } of grounded) label(`${r.name}: ${f.name} ${p.toFixed(2)}`, r.bbox, probabilityColour(p));
    for (const r of orientation) label(r.name, r.bbox, "rgb(0, 220, 240)");
    const hl = analysis.regions.find((r) => r.name === highlight);
    if (hl) box(hl, "rgb(255, 255, 255)", 3);
  }
  // For tests and integrators: what was labelled, where (image pixels).
  overlay.dataset.labels = JSON.stringify(placed);
}

// Places labels beside their boxes without covering each other: below the box, inside its top,
// above it, inside its bottom, then sliding down and up from there; null when nothing is free.
// The same rule as the PNG overlay's (plugin/src/overlay.rs).
class LabelPlacer {
  constructor(width, height) {
    this.width = width;
    this.height = height;
    this.taken = [];
  }

  free(x, y, w, h) {
    return this.taken.every(([x0, y0, x1, y1]) => x + w <= x0 || x >= x1 || y + h <= y0 || y >= y1);
  }

  place([bx1, by1, bx2, by2], w, h) {
    if (w > this.width || h > this.height) return null;
    const clampX = (x) => Math.min(Math.max(Math.round(x), 0), this.width - w);
    const clampY = (y) => Math.min(Math.max(Math.round(y), 0), this.height - h);
    const xs = [...new Set([clampX(bx1), clampX(bx2 - w)])];
    const ys = [by2 + 2, by1 + 2, by1 - h - 2, by2 - h - 2].map(clampY);
    for (const y0 of ys) {
      for (const x of xs) if (this.free(x, y0, w, h)) return this.take(x, y0, w, h);
    }
    for (let step = 1; step * h < this.height; step++) {
      for (const y of [ys[0] + step * h, ys[0] - step * h]) {
        if (y < 0 || y > this.height - h) continue;
        for (const x of xs) if (this.free(x, y, w, h)) return this.take(x, y, w, h);
      }
    }
    return null;
  }

  take(x, y, w, h) {
    this.taken.push([x, y, x + w, y + h]);
    return [x, y];
  }
}

function select(name, toggle = true) {
  current.selected = toggle && current.selected === name ? null : name;
  for (const row of document.querySelectorAll("#findings tbody tr")) {
    row.classList.toggle("selected", row.dataset.finding === current.selected);
  }
  drawOverlay();
}

// The assessed findings in the order a reader wants them: present first, then the others, each
// most probable first.
function findingOrder(analysis) {
  return analysis.findings
    .filter(isAssessed)
    .sort((a, b) => Number(isPresent(b)) - Number(isPresent(a)) || b.probability - a.probability);
}

function showFindings() {
  const { analysis } = current;
  const body = document.querySelector("#findings tbody");
  const rows = new Map([...body.rows].map((row) => [row.dataset.finding, row]));
  const focused = document.activeElement;
  for (const f of findingOrder(analysis)) {
    const row = rows.get(f.name);
    row.classList.toggle("present", isPresent(f));
    row.cells[2].textContent = regionsOf(analysis, f).join(", ");
    body.append(row);
  }
  if (focused instanceof HTMLElement && body.contains(focused)) focused.focus();
}

function showAnalysis(analysis) {
  current = { analysis, selected: null, highlight: null, check: null };
  document.getElementById("export-json").disabled = false;
  document.getElementById("export-png").disabled = false;
  document.getElementById("export-sr").disabled = false;
  document.getElementById("export-fhir").disabled = false;
  const body = document.querySelector("#findings tbody");
  body.replaceChildren(
    ...analysis.findings.filter(isAssessed).map((f) => {
      const row = document.createElement("tr");
      row.dataset.finding = f.name;
      row.tabIndex = 0;
      const name = document.createElement("td");
      name.textContent = f.name;
      const p = document.createElement("td");
      p.textContent = f.probability.toFixed(3);
      const regions = document.createElement("td");
      row.append(name, p, regions);
      row.addEventListener("click", () => select(f.name));
      row.addEventListener("keydown", (e) => (e.key === "Enter" || e.key === " ") && (e.preventDefault(), select(f.name)));
      return row;
    }),
  );
  showFindings();
  // Findings the model was not trained to assess: named apart, with no probability.
  const unassessed = analysis.findings.filter((f) => !isAssessed(f)).map((f) => f.name);
  document.getElementById("not-assessed").hidden = unassessed.length === 0;
  document.getElementById("not-assessed-count").textContent = String(unassessed.length);
  document.getElementById("not-assessed-list").textContent = unassessed.join(", ");
  document.querySelector("#regions tbody").replaceChildren(
    ...analysis.regions.map((r) => {
      const row = document.createElement("tr");
      row.dataset.region = r.name;
      const name = document.createElement("td");
      name.textContent = r.name;
      const found = document.createElement("td");
      found.textContent = r.findings.join(", ");
      row.append(name, found);
      row.tabIndex = 0;
      hoverOrFocus(row, () => r.name);
      return row;
    }),
  );
  document.getElementById("sentences").replaceChildren();
  document.getElementById("check").disabled = !modelHasText;
  const t = analysis.timings;
  document.getElementById("timings").textContent =
    `decode ${t.decode_ms.toFixed(1)} ms · preprocess ${t.preprocess_ms.toFixed(1)} ms · ` +
    `inference ${t.inference_ms.toFixed(1)} ms · total ${t.total_ms.toFixed(1)} ms`;
  document.getElementById("result").textContent = JSON.stringify(analysisJson(), null, 2);
  drawOverlay();
}

// Highlights a region on the overlay while the pointer is over `el` or it has the focus.
function hoverOrFocus(el, region) {
  const on = () => { current.highlight = region(); drawOverlay(); };
  const off = () => { current.highlight = null; drawOverlay(); };
  el.addEventListener("mouseenter", on);
  el.addEventListener("mouseleave", off);
  el.addEventListener("focus", on);
  el.addEventListener("blur", off);
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
    li.tabIndex = 0;
    hoverOrFocus(li, () => evidence || (s.best_region && s.best_region[0]));
    items.push(li);
  }
  for (const o of check.omissions) {
    const li = document.createElement("li");
    li.className = "omission";
    li.dataset.verdict = "omission";
    li.textContent = `Not in the report: ${o.finding} (p = ${o.probability.toFixed(2)}${o.regions.length ? `, ${o.regions.join(", ")}` : ""})`;
    li.tabIndex = 0;
    hoverOrFocus(li, () => o.regions[0]);
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
// The analysis as `asg analyze` writes it: the raw model outputs only when asked for
// (`--raw-outputs`; here the "with raw outputs" box), the report check when there is one.
function analysisJson() {
  const { outputs, ...rest } = current.analysis;
  const raw = document.getElementById("export-raw").checked;
  return { ...rest, ...(raw && outputs ? { outputs } : {}), report_check: current.check ?? undefined };
}
document.getElementById("export-json").addEventListener("click", () => {
  if (!current) return;
  const out = analysisJson();
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
    view.fitted = false;
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
  const vp = viewport.getBoundingClientRect();
  zoomBy(e.deltaY < 0 ? 1.1 : 1 / 1.1, [e.clientX - vp.left, e.clientY - vp.top]);
}, { passive: false });
// A fitted image stays fitted when the window (or the panels) resize.
new ResizeObserver(() => { if (view && view.fitted) fit(); }).observe(viewport);
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
    const names = findingOrder(current.analysis).map((f) => f.name);
    if (names.length === 0) return;
    const at = names.indexOf(current.selected);
    const next = at < 0 ? (delta > 0 ? 0 : names.length - 1) : (at + delta + names.length) % names.length;
    select(names[next], false);
  };
  // Window/level by keyboard, in steps of a tenth of the file's window.
  const windowStep = (dc, dw) => {
    if (!view) return;
    const k = view.image.windowWidth / 10;
    setWindow(view.center + dc * k, view.width + dw * k);
  };
  const pan = 40;
  const actions = {
    i: () => document.getElementById("invert").click(),
    f: fit,
    r: () => { preset("default"); fit(); },
    b: () => toggle("show-boxes"),
    o: () => toggle("show-outlines"),
    h: () => toggle("show-heatmap"),
    "1": () => preset("default"),
    "2": () => preset("wide"),
    "3": () => preset("narrow"),
    "+": () => zoomBy(1.25),
    "=": () => zoomBy(1.25),
    "-": () => zoomBy(0.8),
    ArrowDown: () => step(1),
    ArrowUp: () => step(-1),
    "[": () => windowStep(0, -1),
    "]": () => windowStep(0, 1),
    "{": () => windowStep(-1, 0),
    "}": () => windowStep(1, 0),
  };
  const panKeys = { ArrowLeft: [pan, 0], ArrowRight: [-pan, 0], ArrowUp: [0, pan], ArrowDown: [0, -pan] };
  const action = e.shiftKey && panKeys[e.key] ? () => panBy(...panKeys[e.key]) : actions[e.key];
  if (action) {
    e.preventDefault();
    action();
  }
});
document.getElementById("show-boxes").addEventListener("change", drawOverlay);
document.getElementById("show-outlines").addEventListener("change", drawOverlay);
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
  if (!modelReady) {
    // Chosen while the model loads: opened as soon as it is ready (the latest choice wins).
    queued = files;
    const what = files.length === 1 ? files[0].name : `${files.length} files`;
    setStatus("loading", `Loading the model… ${what} will open when it is ready.`, loadFraction);
    return;
  }
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
    setStatus("busy", `Reading ${done} of ${files.length} files…`, done / files.length);
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
  const entries = [...e.dataTransfer.items].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
  const files = entries.length ? (await Promise.all(entries.map(entryFiles))).flat() : [...e.dataTransfer.files];
  openFiles(files);
});

// The model loads while the user picks a file: the inputs work at once and a choice made before
// the model is ready waits in `queued`.
let modelReady = false;
let queued = null;
let loadFraction;
const loaded = new Map();
setStatus("loading", "Loading the model…");
asg.load(({ file, loaded: got, total }) => {
  loaded.set(file, { got, total });
  const sizes = [...loaded.values()];
  // A fraction only once every file's size is known (Content-Length), else "busy".
  loadFraction = sizes.every((s) => s.total > 0)
    ? sizes.reduce((n, s) => n + s.got, 0) / sizes.reduce((n, s) => n + s.total, 0)
    : undefined;
  if (status.dataset.state === "loading") setStatus("loading", status.textContent, loadFraction);
})
  .then((manifest) => {
    modelHasText = Boolean(manifest.text_model);
    modelReady = true;
    setStatus("ready", `Model ${manifest.name} ${manifest.version} loaded. Open a DICOM file.`);
    if (queued) {
      const files = queued;
      queued = null;
      openFiles(files);
    }
  })
  .catch((e) => {
    const lost = queued ? ` ${queued.length} chosen file(s) were not opened.` : "";
    queued = null;
    setStatus("error", `Could not load the model: ${e.message}.${lost}`);
  });
