//! Any bytes as a model bundle: as a tar archive (entries, size claims, manifest, digests), as a
//! manifest's JSON, and as an ONNX image model handed to tract. Must return an error or a model,
//! never panic or allocate without bound (a tar header may claim a gigabyte).
//!
//! tract itself panics on some malformed graphs; the plugin turns those panics into errors
//! (`plugin/src/runtime.rs`, `guarded`), so a panic raised inside tract's own source is let
//! unwind to that guard here. Any other panic aborts, as libFuzzer's hook would.
#![no_main]

use libfuzzer_sys::fuzz_target;

fn only_tract_may_unwind() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            let in_tract = info
                .location()
                .is_some_and(|l| l.file().contains("/tract-"));
            if !in_tract {
                eprintln!("{info}");
                std::process::abort();
            }
        }));
    });
}

fuzz_target!(|data: &[u8]| {
    only_tract_may_unwind();
    let _ = asg_plugin::ModelBundle::from_archive_reader("fuzz.tar", data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(manifest) = asg_bundle::Manifest::from_json(text) {
            let _ = manifest.to_json();
            let _ = manifest.threshold("effusion");
        }
    }
    let _ = asg_plugin::OnnxModel::from_bytes(data, &[1, 1, 32, 32]);
});
