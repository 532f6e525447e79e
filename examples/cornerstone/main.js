// Cornerstone3D with asg: the DICOM file is shown in a stack viewport (read by
// @cornerstonejs/dicom-image-loader), analysed on this machine by asg.js (the page's own
// /asg.js, the viewer's embedding module), and its anatomy regions and present findings are
// added as RectangleROI annotations labelled with what asg says. Bundled by build.sh (esbuild).
import * as core from "@cornerstonejs/core";
import * as tools from "@cornerstonejs/tools";
import * as dicomLoader from "@cornerstonejs/dicom-image-loader";
import { AsgAnalyzer } from "/asg.js";

const status = document.getElementById("status");
const setStatus = (state, text) => {
  status.dataset.state = state;
  status.textContent = text;
};

// Regions always outlined, for orientation (as the viewer and the PNG overlay do).
const ORIENTATION = ["right lung", "left lung", "cardiac silhouette", "mediastinum"];

await core.init();
tools.init();
dicomLoader.init({ maxWebWorkers: 1 });
tools.addTool(tools.RectangleROITool);
const group = tools.ToolGroupManager.createToolGroup("asg");
// The annotation's label is its text: asg's region, finding and probability.
group.addTool(tools.RectangleROITool.toolName, { getTextLines: (data) => [data.label] });
group.setToolEnabled(tools.RectangleROITool.toolName);

const element = document.getElementById("viewport");
const engine = new core.RenderingEngine("asg-engine");
engine.enableElement({ viewportId: "cxr", type: core.Enums.ViewportType.STACK, element });
group.addViewport("cxr", "asg-engine");
const viewport = engine.getViewport("cxr");

const asg = new AsgAnalyzer();
const manifest = await asg.load();
setStatus("ready", `Model ${manifest.name} ${manifest.version} loaded.`);

// `?threshold=P` replaces the model's thresholds (as the viewer's slider does).
const threshold = Number(new URLSearchParams(location.search).get("threshold")) || null;

// The regions that carry a present finding, most probable first.
function regionsOf(analysis, f, fi) {
  if (f.assessed === false) return [];
  if (threshold === null) {
    return f.present ? f.regions.map((name) => analysis.regions.find((r) => r.name === name)).filter(Boolean) : [];
  }
  if (f.probability < threshold) return [];
  return analysis.regions
    .filter((r) => r.probabilities[fi] >= threshold)
    .sort((a, b) => b.probabilities[fi] - a.probabilities[fi]);
}

// One RectangleROI per box, from image pixels to world coordinates.
function addBox(imageId, bbox, label) {
  const [x1, y1, x2, y2] = bbox;
  const world = (x, y) => core.utilities.imageToWorldCoords(imageId, [x, y]);
  const camera = viewport.getCamera();
  return tools.annotation.state.addAnnotation(
    {
      highlighted: false,
      invalidated: true,
      isLocked: true,
      isVisible: true,
      metadata: {
        toolName: tools.RectangleROITool.toolName,
        referencedImageId: imageId,
        FrameOfReferenceUID: viewport.getFrameOfReferenceUID(),
        viewPlaneNormal: camera.viewPlaneNormal,
        viewUp: camera.viewUp,
      },
      data: {
        label,
        handles: {
          points: [world(x1, y1), world(x2, y1), world(x1, y2), world(x2, y2)],
          activeHandleIndex: null,
          textBox: { hasMoved: false },
        },
        cachedStats: {},
      },
    },
    element,
  );
}

document.getElementById("file").addEventListener("change", async (e) => {
  const file = e.target.files[0];
  if (!file) return;
  setStatus("busy", `Analysing ${file.name}…`);
  try {
    tools.annotation.state.removeAllAnnotations();
    const imageId = dicomLoader.wadouri.fileManager.add(file);
    await viewport.setStack([imageId]);
    viewport.render();
    const { analysis, image } = await asg.analyze(await file.arrayBuffer(), file.name);
    // The file's display window as asg read it (VOI LUT and SIGMOID included), in modality units.
    const { windowCenter: c, windowWidth: w } = image;
    viewport.setProperties({ voiRange: { lower: c - w / 2, upper: c + w / 2 }, invert: image.monochrome1 });
    const labels = [];
    for (const r of analysis.regions.filter((r) => ORIENTATION.includes(r.name))) {
      addBox(imageId, r.bbox, r.name);
      labels.push(r.name);
    }
    analysis.findings.forEach((f, fi) => {
      for (const r of regionsOf(analysis, f, fi).slice(0, 3)) {
        const label = `${r.name}: ${f.name} ${r.probabilities[fi].toFixed(2)}`;
        addBox(imageId, r.bbox, label);
        labels.push(label);
      }
    });
    viewport.render();
    // For tests and integrators: what was added.
    window.asgExample = { analysis, labels };
    const present = analysis.findings.filter((f, fi) => regionsOf(analysis, f, fi).length).length;
    setStatus("done", `${file.name}: ${labels.length} boxes (${present} findings in their regions).`);
  } catch (err) {
    setStatus("error", `Could not analyse ${file.name}: ${err.message}`);
  }
});
