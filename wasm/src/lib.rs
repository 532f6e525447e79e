//! asg-wasm: the browser face of asg-plugin (wasm-bindgen). Everything runs inside the page's
//! WebAssembly instance: no pixel and no report leaves the machine.
//!
//! ```js
//! import init, { Analyzer, displayImage } from "./pkg/asg_wasm.js";
//! await init();
//! const analyzer = new Analyzer(manifestText, new Uint8Array(onnxBytes));
//! const analysis = JSON.parse(analyzer.analyze(dicomBytes, "file.dcm"));
//! ```

#![forbid(unsafe_code)]

use asg_plugin::{asg_dicom as dicom, ModelBundle};
use wasm_bindgen::prelude::*;

/// A loaded model bundle.
#[wasm_bindgen]
pub struct Analyzer {
    bundle: ModelBundle,
}

#[wasm_bindgen]
impl Analyzer {
    /// Loads a bundle from its `manifest.json` text and `image.onnx` bytes; throws if the hash,
    /// the names or the shapes do not match.
    #[wasm_bindgen(constructor)]
    pub fn new(manifest_json: &str, image_onnx: &[u8]) -> Result<Analyzer, JsError> {
        let bundle = ModelBundle::from_parts("bundle", manifest_json, image_onnx)
            .map_err(|e| JsError::new(&e.to_string()))?;
        Ok(Analyzer { bundle })
    }

    /// Analyses one DICOM file's bytes; returns the analysis as JSON text (the same layout as
    /// `asg analyze --raw-outputs`: the raw outputs stay, `checkReport` reads them). `name`
    /// names the file in error messages.
    pub fn analyze(&self, dicom_bytes: &[u8], name: &str) -> Result<String, JsError> {
        let analysis = self
            .bundle
            .analyze_dicom(dicom_bytes, name, &dicom::ReadOptions::browser())
            .map_err(|e| JsError::new(&e.to_string()))?;
        serde_json::to_string(&analysis).map_err(|e| JsError::new(&e.to_string()))
    }

    /// Analyses one DICOM file's bytes and renders it for display, decoding it once: returns the
    /// analysis JSON and the display image together.
    #[wasm_bindgen(js_name = analyzeWithDisplay)]
    pub fn analyze_with_display(
        &self,
        dicom_bytes: &[u8],
        name: &str,
    ) -> Result<AnalyzedImage, JsError> {
        let (analysis, image) = self
            .bundle
            .analyze_dicom_image(dicom_bytes, name, &dicom::ReadOptions::browser())
            .map_err(|e| JsError::new(&e.to_string()))?;
        let json = serde_json::to_string(&analysis).map_err(|e| JsError::new(&e.to_string()))?;
        Ok(AnalyzedImage {
            json,
            display: Some(render(&image)),
        })
    }

    /// Runs the image model alone on a normalised, letterboxed input (`size * size` values, as the
    /// manifest's input says) and returns the finding logits: for benchmarks against other ONNX
    /// runtimes on the same tensor.
    pub fn infer(&self, input: &[f32]) -> Result<Vec<f32>, JsError> {
        let outputs = self
            .bundle
            .image_model
            .run(input.to_vec())
            .map_err(|e| JsError::new(&format!("inference failed: {e:#}")))?;
        let at = self
            .bundle
            .image_model
            .output_names()
            .iter()
            .position(|n| n == "finding_logits")
            .unwrap_or(0);
        outputs
            .into_iter()
            .nth(at)
            .ok_or_else(|| JsError::new("the image model has no outputs"))
    }

    /// The analysis as a DICOM Structured Report (TID 1500, Part 10 bytes) and a FHIR R4
    /// DiagnosticReport (JSON text), as `asg analyze --sr --fhir` writes them; `iso_now` is the
    /// creation instant (`new Date().toISOString()`).
    #[wasm_bindgen(js_name = exportResults)]
    pub fn export_results(
        &self,
        dicom_bytes: &[u8],
        name: &str,
        analysis_json: &str,
        iso_now: &str,
    ) -> Result<ExportedResults, JsError> {
        let analysis: asg_plugin::Analysis = serde_json::from_str(analysis_json)
            .map_err(|e| JsError::new(&format!("the analysis is not valid JSON: {e}")))?;
        let (sr, fhir) = asg_plugin::results::export_results(dicom_bytes, name, &analysis, iso_now)
            .map_err(|e| JsError::new(&e.to_string()))?;
        Ok(ExportedResults { sr, fhir })
    }

    /// The bundle's manifest as JSON text.
    pub fn manifest(&self) -> String {
        self.bundle.manifest.to_json()
    }

    /// Adds the bundle's text model (`text.onnx` bytes and `tokenizer.json` bytes, as the
    /// manifest's `text_model` names them); throws if they do not match the manifest.
    #[wasm_bindgen(js_name = loadText)]
    pub fn load_text(&mut self, text_onnx: &[u8], tokenizer_json: &[u8]) -> Result<(), JsError> {
        self.bundle = self
            .bundle
            .clone()
            .with_text(text_onnx, tokenizer_json)
            .map_err(|e| JsError::new(&e.to_string()))?;
        Ok(())
    }

    /// Adds the bundle's lung-crop model (the bytes of the file the manifest's `crop_model`
    /// names); throws if they do not match the manifest. Without it, a bundle that has one
    /// scores its finding with the image model alone.
    #[wasm_bindgen(js_name = loadCropModel)]
    pub fn load_crop_model(&mut self, onnx: &[u8]) -> Result<(), JsError> {
        self.bundle = self
            .bundle
            .clone()
            .with_crop_model(onnx)
            .map_err(|e| JsError::new(&e.to_string()))?;
        Ok(())
    }

    /// Checks a report against an analysis (the JSON text `analyze` returned); returns the
    /// report check as JSON text (the `report_check` layout of `asg analyze --report`).
    #[wasm_bindgen(js_name = checkReport)]
    pub fn check_report(&self, analysis_json: &str, report: &str) -> Result<String, JsError> {
        let analysis: asg_plugin::Analysis = serde_json::from_str(analysis_json)
            .map_err(|e| JsError::new(&format!("the analysis is not valid JSON: {e}")))?;
        let check = self
            .bundle
            .check_report(&analysis, report)
            .map_err(|e| JsError::new(&e.to_string()))?;
        serde_json::to_string(&check).map_err(|e| JsError::new(&e.to_string()))
    }
}

/// A DICOM SR and a FHIR report of one analysis.
#[wasm_bindgen]
pub struct ExportedResults {
    sr: Vec<u8>,
    fhir: String,
}

#[wasm_bindgen]
impl ExportedResults {
    /// The DICOM SR file's bytes.
    #[wasm_bindgen(getter)]
    pub fn sr(&self) -> Vec<u8> {
        self.sr.clone()
    }

    /// The FHIR DiagnosticReport as JSON text.
    #[wasm_bindgen(getter)]
    pub fn fhir(&self) -> String {
        self.fhir.clone()
    }
}

/// An 8-bit RGBA rendering of a DICOM image for a canvas, with what window/level needs: the
/// modality values (rescale or Modality LUT applied), the starting window and the photometric
/// sense.
#[wasm_bindgen]
pub struct DisplayImage {
    width: u32,
    height: u32,
    rgba: Vec<u8>,
    modality: Vec<f32>,
    window_center: f64,
    window_width: f64,
    monochrome1: bool,
}

#[wasm_bindgen]
impl DisplayImage {
    #[wasm_bindgen(getter)]
    pub fn width(&self) -> u32 {
        self.width
    }

    #[wasm_bindgen(getter)]
    pub fn height(&self) -> u32 {
        self.height
    }

    /// RGBA bytes, row-major, `width * height * 4` of them (for `new ImageData(...)`).
    #[wasm_bindgen(getter)]
    pub fn rgba(&self) -> Vec<u8> {
        self.rgba.clone()
    }

    /// Modality values, row-major (for re-windowing in the page).
    #[wasm_bindgen(getter)]
    pub fn modality(&self) -> Vec<f32> {
        self.modality.clone()
    }

    /// The starting window centre and width, in modality units.
    #[wasm_bindgen(getter, js_name = windowCenter)]
    pub fn window_center(&self) -> f64 {
        self.window_center
    }

    #[wasm_bindgen(getter, js_name = windowWidth)]
    pub fn window_width(&self) -> f64 {
        self.window_width
    }

    /// MONOCHROME1: low values are white.
    #[wasm_bindgen(getter)]
    pub fn monochrome1(&self) -> bool {
        self.monochrome1
    }
}

/// An analysis (JSON text) with the image it was made from, rendered for display.
#[wasm_bindgen]
pub struct AnalyzedImage {
    json: String,
    display: Option<DisplayImage>,
}

#[wasm_bindgen]
impl AnalyzedImage {
    /// The analysis as JSON text (the same layout as `asg analyze`).
    #[wasm_bindgen(getter)]
    pub fn json(&self) -> String {
        self.json.clone()
    }

    /// Takes the display image out (once; later calls return undefined).
    #[wasm_bindgen(js_name = takeDisplay)]
    pub fn take_display(&mut self) -> Option<DisplayImage> {
        self.display.take()
    }
}

/// The image metadata of a DICOM file (study, series and instance UIDs, size, modality, view; no
/// patient identity) as JSON text, from the header alone; throws for files that are not images.
#[wasm_bindgen(js_name = readMeta)]
pub fn read_meta(dicom_bytes: &[u8], name: &str) -> Result<String, JsError> {
    let meta = dicom::read_meta_bytes(dicom_bytes, name, &dicom::ReadOptions::browser())
        .map_err(|e| JsError::new(&e.to_string()))?;
    serde_json::to_string(&meta).map_err(|e| JsError::new(&e.to_string()))
}

/// A small rendering (the longer side `size` pixels, area-averaged) for a study list.
#[wasm_bindgen]
pub fn thumbnail(dicom_bytes: &[u8], name: &str, size: u32) -> Result<DisplayImage, JsError> {
    let image = dicom::read_bytes(dicom_bytes, name, &dicom::ReadOptions::browser())
        .map_err(|e| JsError::new(&e.to_string()))?;
    let size = size.clamp(8, 512);
    let scale = size as f64 / image.width.max(image.height).max(1) as f64;
    let (w, h) = (
        ((image.width as f64 * scale).round() as u32).max(1),
        ((image.height as f64 * scale).round() as u32).max(1),
    );
    let small = dicom::area_resize(&image.display(), image.width, image.height, w, h);
    let rgba = small
        .iter()
        .flat_map(|&v| {
            let g = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            [g, g, g, 255]
        })
        .collect();
    Ok(DisplayImage {
        width: w,
        height: h,
        rgba,
        modality: Vec::new(),
        window_center: 0.0,
        window_width: 1.0,
        monochrome1: false,
    })
}

/// Decodes a DICOM file and renders it with its VOI window (MONOCHROME1 inverted) for display.
#[wasm_bindgen(js_name = displayImage)]
pub fn display_image(dicom_bytes: &[u8], name: &str) -> Result<DisplayImage, JsError> {
    let image = dicom::read_bytes(dicom_bytes, name, &dicom::ReadOptions::browser())
        .map_err(|e| JsError::new(&e.to_string()))?;
    Ok(render(&image))
}

fn render(image: &dicom::Image) -> DisplayImage {
    let rgba = image
        .display()
        .iter()
        .flat_map(|&v| {
            let g = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            [g, g, g, 255]
        })
        .collect();
    let window = image.default_window();
    DisplayImage {
        width: image.width,
        height: image.height,
        rgba,
        modality: image.pixels.clone(),
        window_center: window.center,
        window_width: window.width,
        monochrome1: image.meta.photometric_interpretation == "MONOCHROME1",
    }
}

// A panic aborts a WebAssembly instance (an `unreachable` trap) and its message would be lost;
// the hook hands it to `globalThis.asgPanic(message)` first, where the page (web/worker.js)
// defines it, so the user is told what failed. Nothing leaves the machine.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(catch, js_namespace = globalThis, js_name = asgPanic)]
    fn report_panic(message: &str) -> Result<(), JsValue>;
}

/// Installs the panic hook when the module is instantiated.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!(" (at {}:{})", short_source_path(l.file()), l.line()))
            .unwrap_or_default();
        let what = info.payload_as_str().unwrap_or("a panic without a message");
        // Nothing more can be done from inside a panic when the page has no `asgPanic`.
        let _ = report_panic(&format!("{what}{at}"));
    }));
}

/// A source path without the build machine's folders: from the crate's folder on
/// (`/root/.cargo/registry/src/index.../tract-onnx-0.23.9/src/model.rs` ->
/// `tract-onnx-0.23.9/src/model.rs`).
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn short_source_path(file: &str) -> &str {
    match file.rfind("/src/") {
        Some(src) => match file[..src].rfind('/') {
            Some(crate_start) => &file[crate_start + 1..],
            None => file,
        },
        None => file,
    }
}

/// Panics on purpose: the viewer's crash-recovery test calls it (through the worker's
/// `crash-for-testing` message) to prove that a crashed analyzer is restarted and says why.
#[wasm_bindgen(js_name = panicForTesting)]
pub fn panic_for_testing() {
    panic!("asg-wasm: a panic asked for by panicForTesting");
}

#[cfg(test)]
mod tests {
    use super::short_source_path;

    #[test]
    fn source_paths_lose_the_build_machines_folders() {
        assert_eq!(
            short_source_path(
                "/root/.cargo/registry/src/index.crates.io-1949cf8c6b5b557f/tract-onnx-0.23.9/src/model.rs"
            ),
            "tract-onnx-0.23.9/src/model.rs"
        );
        assert_eq!(
            short_source_path("plugin/src/runtime.rs"),
            "plugin/src/runtime.rs"
        );
        assert_eq!(short_source_path("src/lib.rs"), "src/lib.rs");
        assert_eq!(short_source_path("lib.rs"), "lib.rs");
    }
}
