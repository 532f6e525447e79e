//! The default model bundle (`models/default`), built into the library (feature `embedded`): the
//! CLI and the Python package run it when no bundle is named.

use crate::{ModelBundle, PluginError};

/// The default bundle's files, as `(name, bytes)`, embedded at build time.
pub const EMBEDDED_BUNDLE: [(&str, &[u8]); 4] = [
    (
        "manifest.json",
        include_bytes!("../../models/default/manifest.json"),
    ),
    (
        "image.onnx",
        include_bytes!("../../models/default/image.onnx"),
    ),
    (
        "text.onnx",
        include_bytes!("../../models/default/text.onnx"),
    ),
    (
        "tokenizer.json",
        include_bytes!("../../models/default/tokenizer.json"),
    ),
];

/// The name the embedded bundle goes by in messages.
pub const EMBEDDED_SOURCE: &str = "embedded default bundle";

impl ModelBundle {
    /// Loads the embedded default bundle (checked like any other).
    pub fn embedded() -> Result<Self, PluginError> {
        Self::from_files(EMBEDDED_SOURCE, &EMBEDDED_BUNDLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_bundle_loads_with_its_text_model() {
        let bundle = ModelBundle::embedded().unwrap();
        assert_eq!(bundle.source, EMBEDDED_SOURCE);
        assert!(bundle.text_model.is_some());
        assert!(!bundle.manifest.findings.is_empty());
    }
}
