//! Embeds the built browser viewer (`web/`, made by `scripts/build-web.sh`) into `asg` for `asg
//! serve`, when it has been built; otherwise `asg serve` reads the folder from disk. The viewer's
//! own files are listed here; `web/model/` is not embedded (the binary serves its embedded bundle).

use std::path::{Path, PathBuf};

const FILES: [&str; 8] = [
    "index.html",
    "app.js",
    "worker.js",
    "asg.js",
    "asg.d.ts",
    "style.css",
    "pkg/asg_wasm.js",
    "pkg/asg_wasm_bg.wasm",
];

fn main() {
    let web = Path::new(env!("CARGO_MANIFEST_DIR")).join("../web");
    for f in FILES {
        println!("cargo:rerun-if-changed={}", web.join(f).display());
    }
    let built = FILES.iter().all(|f| web.join(f).is_file());
    let mut code = String::from("/// The built viewer's files (empty when web/ was not built).\n");
    code.push_str("pub const WEB_ASSETS: &[(&str, &[u8])] = &[\n");
    if built && std::env::var("CARGO_FEATURE_CLI").is_ok() {
        for f in FILES {
            let path = web.join(f).canonicalize().unwrap_or_else(|_| web.join(f));
            code.push_str(&format!(
                "    ({f:?}, include_bytes!({:?})),\n",
                path.display().to_string()
            ));
        }
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_else(|_| ".".into()))
        .join("web_assets.rs");
    // Written only when it changes, so that an unchanged viewer does not rebuild the crate.
    if std::fs::read_to_string(&out).ok().as_deref() != Some(code.as_str()) {
        if let Err(e) = std::fs::write(&out, code) {
            println!("cargo:warning=could not write {}: {e}", out.display());
        }
    }
}
