//! `asg serve`: the browser viewer from this machine only. Serves the viewer's files — built into
//! the binary when `web/` had been built before it (`scripts/build.sh` does so), else from a folder
//! (`--web DIR`, default `web/`) — and the model bundle under `/model/` — the
//! embedded default bundle unless `--model` names another — on 127.0.0.1 by default. GET and
//! HEAD only; paths are resolved inside the folder (no `..`, no absolute paths, no symlinks out);
//! every response carries the viewer's Content Security Policy.

use anyhow::Context;
use std::path::{Component, Path, PathBuf};

include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));

/// Where the viewer's files come from.
pub enum Assets {
    /// A built viewer folder on disk.
    Folder(PathBuf),
    /// The viewer built into this binary.
    Embedded,
}

impl Assets {
    /// `--web DIR` if given, else the embedded viewer if this build has one, else `web/`.
    pub fn choose(web: Option<PathBuf>) -> Self {
        match web {
            Some(dir) => Assets::Folder(dir),
            None if !WEB_ASSETS.is_empty() => Assets::Embedded,
            None => Assets::Folder(PathBuf::from("web")),
        }
    }

    fn get(&self, url: &str) -> Option<(Vec<u8>, String)> {
        match self {
            Assets::Folder(root) => {
                let p = resolve(root, url)?;
                let bytes = std::fs::read(&p).ok()?;
                Some((bytes, p.display().to_string()))
            }
            Assets::Embedded => {
                let path = url.split(['?', '#']).next().unwrap_or("");
                let path = if path.ends_with('/') {
                    format!("{path}index.html")
                } else {
                    path.to_string()
                };
                let name = path.trim_start_matches('/');
                WEB_ASSETS
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(n, b)| (b.to_vec(), n.to_string()))
            }
        }
    }
}

/// The Content Security Policy of `web/index.html`, sent as a header too.
const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self'; connect-src 'self'; img-src 'self' blob: data:; style-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'";

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "wasm" => "application/wasm",
        "png" => "image/png",
        "svg" => "image/svg+xml",
        _ => "application/octet-stream",
    }
}

/// The file under `root` that a URL path names, or None for anything that could leave it.
fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let path = url_path.split(['?', '#']).next().unwrap_or("");
    let path = if path.ends_with('/') {
        format!("{path}index.html")
    } else {
        path.to_string()
    };
    let relative = Path::new(path.trim_start_matches('/'));
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let full = root.join(relative);
    let canonical = full.canonicalize().ok()?;
    let root = root.canonicalize().ok()?;
    (canonical.starts_with(&root) && canonical.is_file()).then_some(canonical)
}

/// Serves until the process is stopped. `model_files` are served under `/model/`.
pub fn serve(
    assets: &Assets,
    host: &str,
    port: u16,
    model_files: Vec<(String, Vec<u8>)>,
) -> anyhow::Result<()> {
    if let Assets::Folder(web) = assets {
        anyhow::ensure!(
            web.join("index.html").is_file() && web.join("pkg").is_dir(),
            "{}: not a built viewer (run scripts/build-web.sh first, or pass --web DIR)",
            web.display()
        );
    }
    let server = tiny_http::Server::http((host, port))
        .map_err(|e| anyhow::anyhow!("listening on {host}:{port}: {e}"))?;
    let addr = server
        .server_addr()
        .to_ip()
        .context("the server has no IP address")?;
    eprintln!("serving the viewer on http://{addr}/ (Ctrl-C stops)");
    for request in server.incoming_requests() {
        let url = request.url().to_string();
        let method = request.method().clone();
        let header = |name: &str, value: &str| {
            tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).ok()
        };
        let respond = |status: u16, body: Vec<u8>, kind: &str| {
            let mut r = tiny_http::Response::from_data(body).with_status_code(status);
            for h in [
                header("Content-Type", kind),
                header("Content-Security-Policy", CSP),
                header("X-Content-Type-Options", "nosniff"),
                header("Cache-Control", "no-cache"),
            ]
            .into_iter()
            .flatten()
            {
                r.add_header(h);
            }
            r
        };
        let response = if !matches!(method, tiny_http::Method::Get | tiny_http::Method::Head) {
            respond(405, b"method not allowed".to_vec(), "text/plain")
        } else if let Some(name) = url
            .split(['?', '#'])
            .next()
            .and_then(|p| p.strip_prefix("/model/"))
        {
            match model_files.iter().find(|(n, _)| n == name) {
                Some((n, bytes)) => respond(200, bytes.clone(), content_type(n)),
                None => respond(404, b"not found".to_vec(), "text/plain"),
            }
        } else {
            match assets.get(&url) {
                Some((bytes, name)) => respond(200, bytes, content_type(&name)),
                None => respond(404, b"not found".to_vec(), "text/plain"),
            }
        };
        // A client that went away is not the server's problem.
        let _ = request.respond(response);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_cannot_leave_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("index.html"), "x").unwrap();
        std::fs::create_dir(dir.path().join("pkg")).unwrap();
        std::fs::write(dir.path().join("pkg/a.js"), "y").unwrap();
        assert!(resolve(dir.path(), "/").is_some());
        assert!(resolve(dir.path(), "/pkg/a.js?v=1").is_some());
        assert!(resolve(dir.path(), "/../etc/passwd").is_none());
        assert!(resolve(dir.path(), "/pkg/../../x").is_none());
        assert!(resolve(dir.path(), "//etc/passwd").is_none());
        assert!(resolve(dir.path(), "/missing.js").is_none());
        assert_eq!(content_type("a.wasm"), "application/wasm");
    }
}
