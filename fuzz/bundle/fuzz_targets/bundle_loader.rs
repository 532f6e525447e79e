//! Any bytes as a model bundle: as a tar archive (entries, size claims, manifest, digests), as a
//! manifest's JSON, and as an ONNX image model handed to tract. Must return an error or a model,
//! never panic or allocate without bound (a tar header may claim a gigabyte).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = asg_plugin::ModelBundle::from_archive_reader("fuzz.tar", data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(manifest) = asg_bundle::Manifest::from_json(text) {
            let _ = manifest.to_json();
            let _ = manifest.threshold("effusion");
        }
    }
    let _ = asg_plugin::OnnxModel::from_bytes(data, &[1, 1, 32, 32]);
});
