//! The trainer's layout (trainer/README.md): wings that use each other one way only, and no file
//! that imports one that imports it back. Reads `src/` and resolves every `crate::` path in code
//! (comments excluded) to the file that defines it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Wings from the bottom up: a file may use its own wing and the wings of a lower rank only.
const WINGS: [(&str, u32); 7] = [
    ("vocab", 0),
    ("config", 0),
    ("model", 1),
    ("data", 1),
    ("train", 2),
    ("export", 3),
    ("eval", 4),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file under `src/` (`model/asg.rs` -> ["model", "asg"]; `lib.rs` -> []).
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The file defining the longest prefix of `path` that is a module.
fn resolve(path: &[String], modules: &BTreeMap<Vec<String>, String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .find_map(|n| modules.get(&path[..n]).cloned())
}

/// `crate::a::b::{c, d::e}` and `crate::a::b` in `code` -> the paths named (braces expanded one
/// level, which is all the trainer writes).
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let preceded = rest[..i]
            .chars()
            .last()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        let tail = &rest[i + "crate::".len()..];
        rest = tail;
        if preceded {
            continue;
        }
        let head: String = tail
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let base: Vec<String> = head
            .split("::")
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let after = &tail[head.len()..];
        if after.starts_with('{') {
            let inner = &after[1..after.find('}').unwrap_or(after.len())];
            for item in inner.split(',') {
                let mut p = base.clone();
                p.extend(
                    item.split(" as ")
                        .next()
                        .unwrap_or("")
                        .trim()
                        .split("::")
                        .filter(|s| !s.is_empty() && *s != "self")
                        .map(String::from),
                );
                out.push(p);
            }
        } else {
            out.push(base);
        }
    }
    out
}

#[test]
fn wings_use_each_other_one_way_and_no_file_imports_one_that_imports_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.retain(|f| !f.ends_with("main.rs"));
    let mut modules = BTreeMap::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap();
        modules.insert(module_of(rel), rel.display().to_string());
    }
    let rank = |file: &str| -> Option<(&str, u32)> {
        let wing = file.split('/').next()?.trim_end_matches(".rs");
        WINGS.iter().find(|(w, _)| *w == wing).copied()
    };

    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut wrong_way = Vec::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap().display().to_string();
        let text = std::fs::read_to_string(f).unwrap();
        let own = module_of(Path::new(&rel));
        let mut targets = BTreeSet::new();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            for p in crate_paths(code) {
                if let Some(t) = resolve(&p, &modules) {
                    targets.insert(t);
                }
            }
            // A wing's mod.rs uses its children through `pub use child::...`.
            let t = code.trim_start();
            if let Some(child) = t.strip_prefix("pub use ").filter(|_| !own.is_empty()) {
                let first = child.split("::").next().unwrap_or("").trim();
                let mut p = own.clone();
                p.push(first.to_string());
                if let Some(t) = modules.get(&p) {
                    targets.insert(t.clone());
                }
            }
        }
        targets.remove(&rel);
        for t in &targets {
            if let (Some((fw, fr)), Some((tw, tr))) = (rank(&rel), rank(t)) {
                if fw != tw && tr >= fr {
                    wrong_way.push(format!("{rel} ({fw}) uses {t} ({tw})"));
                }
            }
        }
        edges.insert(rel, targets);
    }
    assert!(
        wrong_way.is_empty(),
        "imports that run back up:\n{}",
        wrong_way.join("\n")
    );

    // No cycle among files: depth-first search with colours.
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(1) => {
                let at = stack.iter().position(|s| s == n).unwrap_or(0);
                let mut cycle = stack[at..].to_vec();
                cycle.push(n.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for t in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(t, edges, state, stack) {
                return Some(c);
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in edges.keys() {
        if let Some(cycle) = visit(n, &edges, &mut state, &mut Vec::new()) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
    // The check sees the imports it should: the model uses its layers, export the model.
    assert!(edges["model/asg.rs"].contains("model/layers.rs"));
    assert!(edges["export/asg.rs"].contains("model/asg.rs"));
}

#[test]
fn the_path_reader_expands_braces_and_skips_other_crates() {
    let p = crate_paths(
        "use crate::model::{layers::Bn, asg as a, self}; x = crate::vocab::REGIONS; asg_crate::y",
    );
    let want: Vec<Vec<&str>> = vec![
        vec!["model", "layers", "Bn"],
        vec!["model", "asg"],
        vec!["model"],
        vec!["vocab", "REGIONS"],
    ];
    let got: Vec<Vec<&str>> = p
        .iter()
        .map(|v| v.iter().map(String::as_str).collect())
        .collect();
    assert_eq!(got, want);
}
