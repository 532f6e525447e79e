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
    /// The report check was given an analysis without the raw outputs it needs
    /// (`region_embeddings`), e.g. one read back from JSON written without them.
    #[error(
        "model bundle {bundle}: the analysis holds no raw outputs (region_embeddings), which the \
         report check needs: check the report in the same run as the analysis, or keep the raw \
         outputs (asg analyze --raw-outputs, raw_outputs=True in Python)"
    )]
    NoRawOutputs { bundle: String },
    /// The DICOM image is of a modality the chest X-ray model does not read (CT, MR,
    /// ultrasound...): analysing it would give findings that mean nothing.
    #[error(
        "{source_name}: modality {modality} is not a projection radiograph; the model reads chest \
         X-rays (modality {}, or none recorded): not analysed",
        crate::RADIOGRAPH_MODALITIES.join(", ")
    )]
    NotARadiograph {
        source_name: String,
        modality: String,
    },
    /// A radiograph whose Body Part Examined (0018,0015) names a part that is not the chest (a
    /// hand, a knee, an abdomen...): the chest model's findings on it would mean nothing.
    #[error(
        "{source_name}: body part examined {body_part} is not the chest; the model reads chest \
         X-rays: not analysed"
    )]
    NotAChest {
        source_name: String,
        body_part: String,
    },
    /// A bundle file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}
