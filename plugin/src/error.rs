use asg_bundle::ManifestError;

/// Why an analysis or a bundle load failed; each names the file or bundle concerned.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The DICOM input could not be read or decoded.
    #[error(transparent)]
    Dicom(#[from] asg_dicom::DicomError),
    /// The bundle's manifest or files do not match.
    #[error("model bundle {bundle}: {source}")]
    Manifest {
        bundle: String,
        #[source]
        source: ManifestError,
    },
    /// The ONNX model could not be loaded, does not match the manifest, or failed to run.
    #[error("model bundle {bundle}: {reason}")]
    Model { bundle: String, reason: String },
    /// A bundle file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
