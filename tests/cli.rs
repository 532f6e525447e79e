//! `asg analyze` end to end: phantom DICOM + thin bundle -> JSON, and its errors.

use asg_e2e::{asg_binary, Fixture};
use std::process::Command;

fn analyze(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(asg_binary())
        .arg("analyze")
        .args(args)
        .output()
        .expect("run asg")
}

/// `asg analyze FOLDER --model BUNDLE --json OUT` (an archive's run), which must succeed: its
/// standard error and the output folder.
fn analyze_folder(
    folder: &std::path::Path,
    bundle: &std::path::Path,
) -> (String, tempfile::TempDir) {
    let out_dir = tempfile::tempdir().unwrap();
    let out = analyze(&[
        folder.as_os_str(),
        "--model".as_ref(),
        bundle.as_os_str(),
        "--json".as_ref(),
        out_dir.path().as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    (stderr, out_dir)
}

#[test]
fn analyze_prints_the_model_outputs_as_json() {
    let fx = Fixture::new(128, 1, 300);
    let out = analyze(&[
        fx.dicom(0).as_os_str(),
        "--model".as_ref(),
        fx.bundle().as_os_str(),
        "--raw-outputs".as_ref(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(json["schema_version"], 3);

    // Without --raw-outputs: the same analysis, no `outputs`.
    let plain = analyze(&[
        fx.dicom(0).as_os_str(),
        "--model".as_ref(),
        fx.bundle().as_os_str(),
    ]);
    assert!(plain.status.success());
    let mut plain: serde_json::Value = serde_json::from_slice(&plain.stdout).unwrap();
    assert!(
        plain.get("outputs").is_none(),
        "raw outputs without --raw-outputs"
    );
    let mut raw = json.clone();
    raw.as_object_mut().unwrap().remove("outputs");
    for v in [&mut raw, &mut plain] {
        v.as_object_mut().unwrap().remove("timings");
    }
    assert_eq!(raw, plain);
    assert_eq!(json["image"]["width"], 300);
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx.dicom(0).with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(json["image"]["view_position"], truth["view"]);
    assert_eq!(json["warnings"].as_array().unwrap().len(), 0);
    let findings = json["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 40);
    assert_eq!(findings[0]["name"], "pleural effusion");
    let outputs = json["outputs"].as_array().unwrap();
    assert_eq!(outputs[0]["name"], "embedding");
    let emb: Vec<f64> = outputs[0]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let norm: f64 = emb.iter().map(|v| v * v).sum::<f64>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4, "embedding norm {norm}");
    for stage in ["decode_ms", "preprocess_ms", "inference_ms", "total_ms"] {
        assert!(json["timings"][stage].as_f64().unwrap() >= 0.0, "{stage}");
    }

    // The CLI and the library agree exactly on the same file.
    let bundle = asg_plugin::ModelBundle::from_dir(&fx.bundle()).unwrap();
    let bytes = std::fs::read(fx.dicom(0)).unwrap();
    let lib = bundle
        .analyze_dicom(&bytes, "x", &Default::default())
        .unwrap();
    let cli_logits: Vec<f32> = outputs[1]["values"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(cli_logits, lib.outputs[1].values);
}

#[test]
fn no_patient_identity_in_output_or_logs() {
    let fx = Fixture::new(64, 1, 128);
    let out = analyze(&[
        fx.dicom(0).as_os_str(),
        "--model".as_ref(),
        fx.bundle().as_os_str(),
    ]);
    assert!(out.status.success());
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The phantom carries a patient name "PHANTOM^00000" and an ID "PH<seed>".
    assert!(!all.contains("PHANTOM^"), "patient name leaked");
    assert!(!all.contains("\"PH"), "patient id leaked");
}

#[test]
fn a_folder_with_a_bad_file_reports_it_by_name_and_still_analyses_the_rest() {
    let fx = Fixture::new(64, 2, 128);
    std::fs::write(fx.dicom_dir().join("broken.dcm"), b"definitely not DICOM").unwrap();
    let out = analyze(&[
        fx.dicom_dir().as_os_str(),
        "--model".as_ref(),
        fx.bundle().as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("broken.dcm: not a readable DICOM file"),
        "{stderr}"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
}

#[test]
fn a_tampered_model_file_is_refused_with_the_reason() {
    let fx = Fixture::new(64, 1, 128);
    let onnx = fx.bundle().join("image.onnx");
    let mut bytes = std::fs::read(&onnx).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(&onnx, bytes).unwrap();
    let out = analyze(&[
        fx.dicom(0).as_os_str(),
        "--model".as_ref(),
        fx.bundle().as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("image.onnx: SHA-256 is"), "{stderr}");
}

#[test]
fn a_manifest_that_disagrees_with_the_model_names_the_output() {
    let fx = Fixture::new(64, 1, 128);
    let path = fx.bundle().join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut manifest = asg_bundle::Manifest::from_json(&text).unwrap();
    manifest.outputs[0].shape = vec![1, 64];
    std::fs::write(&path, manifest.to_json()).unwrap();
    let e = asg_plugin::ModelBundle::from_dir(&fx.bundle())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("output \"embedding\" has shape [1, 128], the manifest says [1, 64]"),
        "{e}"
    );
}

#[test]
fn without_a_model_the_embedded_default_bundle_analyses_regions_and_checks_the_report() {
    let fx = Fixture::new(64, 0, 128);
    let set = fx.dicom_dir().join("set");
    let status = Command::new(asg_e2e::binary("asg-train"))
        .args(["synth", "--n", "2", "--seed", "8", "--size", "400", "--out"])
        .arg(&set)
        .status()
        .unwrap();
    assert!(status.success());
    let json_dir = fx.dicom_dir().join("json");
    let overlay_dir = fx.dicom_dir().join("overlay");
    let files = set.join("files");
    let out = analyze(&[
        files.as_os_str(),
        "--reports".as_ref(),
        files.as_os_str(),
        "--json".as_ref(),
        json_dir.as_os_str(),
        "--overlay".as_ref(),
        overlay_dir.as_os_str(),
        "--jobs".as_ref(),
        "2".as_ref(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("analysed 2 of 2 images in 2 studies"),
        "{stderr}"
    );
    let mut analyses = 0;
    for entry in std::fs::read_dir(&json_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap() == "summary.json" {
            let s: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            assert_eq!(s["studies"].as_array().unwrap().len(), 2);
            continue;
        }
        analyses += 1;
        let a: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(a["model"]["name"], "asg-default");
        // 29 regions with boxes inside the image.
        let (w, h) = (
            a["image"]["width"].as_f64().unwrap(),
            a["image"]["height"].as_f64().unwrap(),
        );
        assert!(w.max(h) == 400.0, "{w} x {h}");
        let regions = a["regions"].as_array().unwrap();
        assert_eq!(regions.len(), 29);
        for r in regions {
            let b: Vec<f64> = r["bbox"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert!(
                b[0] <= b[2] && b[1] <= b[3] && b[2] <= w && b[3] <= h,
                "{b:?}"
            );
        }
        // The anatomy head's structures are outlined, each outline's extent that of the box
        // read off the same mask (within a mask cell: the box comes from the logits upsampled
        // to the input, the outline from marching squares over the cells).
        let outlines = a["anatomy"].as_array().unwrap();
        let names: Vec<&str> = outlines
            .iter()
            .map(|o| o["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "right lung",
                "left lung",
                "cardiac silhouette",
                "right clavicle",
                "left clavicle",
                "mediastinum"
            ]
        );
        // A cell of a 40-cell mask (the default's masks have at least 40 a side).
        let cell = w.max(h) / 40.0;
        for name in ["right lung", "left lung", "cardiac silhouette"] {
            let o = outlines.iter().find(|o| o["name"] == name).unwrap();
            let points: Vec<(f64, f64)> = o["rings"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|r| r.as_array().unwrap().iter())
                .map(|p| (p[0].as_f64().unwrap(), p[1].as_f64().unwrap()))
                .collect();
            assert!(points.len() >= 8, "{name}: {points:?}");
            let extent = [
                points.iter().map(|p| p.0).fold(f64::MAX, f64::min),
                points.iter().map(|p| p.1).fold(f64::MAX, f64::min),
                points.iter().map(|p| p.0).fold(f64::MIN, f64::max),
                points.iter().map(|p| p.1).fold(f64::MIN, f64::max),
            ];
            let r = regions.iter().find(|r| r["name"] == name).unwrap();
            for (k, b) in r["bbox"].as_array().unwrap().iter().enumerate() {
                let b = b.as_f64().unwrap();
                assert!(
                    (extent[k] - b).abs() <= 1.5 * cell,
                    "{name}: outline extent {extent:?}, box {}",
                    r["bbox"]
                );
            }
        }
        // Each finding has a heatmap; the report was found beside the study and checked.
        assert!(
            a["findings"][0]["heatmap"]["values"]
                .as_array()
                .unwrap()
                .len()
                >= 4
        );
        assert!(a["report_file"].as_str().unwrap().ends_with(".txt"));
        let sentences = a["report_check"]["sentences"].as_array().unwrap();
        assert!(!sentences.is_empty());
        // The overlay is a PNG of the image's size.
        let png = image::open(a["overlay"].as_str().unwrap()).unwrap();
        assert_eq!((png.width() as f64, png.height() as f64), (w, h));
    }
    assert_eq!(analyses, 2);
}

#[test]
fn asg_demo_analyses_a_phantom_and_checks_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(asg_binary())
        .args(["demo", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("injected error"), "{stdout}");
    assert!(stdout.contains("report check"), "{stdout}");
    let a: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("analysis.json")).unwrap())
            .unwrap();
    assert!(a["report_check"]["sentences"].as_array().unwrap().len() > 2);
    assert!(std::path::Path::new(a["overlay"].as_str().unwrap()).is_file());
}

#[test]
fn asg_demo_real_analyses_the_built_in_real_film_with_its_attribution() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(asg_binary())
        .args(["demo", "--real", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("CC BY 3.0"), "{stdout}");
    assert!(stdout.contains("Hannover Medical School"), "{stdout}");
    let credit = std::fs::read_to_string(dir.path().join("study/ATTRIBUTION.txt")).unwrap();
    assert!(credit.contains("covid-19-image-repository"), "{credit}");
    // The film as committed (plugin/demo/README.md gives its SHA-256), read as a JPEG picture.
    let film = std::fs::read(dir.path().join("study/ieee8023-00cfd1c1.jpg")).unwrap();
    assert_eq!(film.len(), 188_479);
    assert!(stdout.contains("a JPEG picture, not DICOM"), "{stdout}");
    let a: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("analysis.json")).unwrap())
            .unwrap();
    assert_eq!(a["image"]["width"], 1024);
    assert_eq!(a["regions"].as_array().unwrap().len(), 29);
    assert!(a["report_check"]["sentences"].as_array().unwrap().len() >= 3);
    assert!(std::path::Path::new(a["overlay"].as_str().unwrap()).is_file());
}

#[test]
fn check_eval_prints_precision_and_recall_per_error_type() {
    let fx = Fixture::new(64, 0, 128);
    let set = fx.dicom_dir().join("set");
    let status = Command::new(asg_e2e::binary("asg-train"))
        .args([
            "synth", "--n", "8", "--seed", "9", "--size", "256", "--errors", "--out",
        ])
        .arg(&set)
        .status()
        .unwrap();
    assert!(status.success());
    let out = Command::new(asg_binary())
        .arg("check-eval")
        .arg(&set)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for kind in [
        "side_swapped",
        "finding_omitted",
        "negation_flipped",
        "finding_invented",
    ] {
        assert!(stdout.contains(&format!("| {kind} |")), "{stdout}");
    }
}

#[test]
fn dicom_info_and_pixels_for_outside_checks() {
    let fx = Fixture::new(64, 1, 96);
    let info = Command::new(asg_binary())
        .args(["dicom", "info"])
        .arg(fx.dicom(0))
        .output()
        .unwrap();
    assert!(info.status.success());
    let meta: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(meta["rows"], 96);
    assert_eq!(meta["bits_stored"], 12);
    assert!(
        !String::from_utf8_lossy(&info.stdout).contains("PHANTOM^"),
        "patient name in info"
    );

    let npy = fx.dir.path().join("px.npy");
    let out = Command::new(asg_binary())
        .args(["dicom", "pixels"])
        .arg(fx.dicom(0))
        .arg("--npy")
        .arg(&npy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (header, values) = read_npy_u16(&npy);
    assert!(
        header.contains("'descr': '<u2'") && header.contains("'shape': (96, 96)"),
        "{header}"
    );
    // The phantom's stored values, rendered again from the same seed.
    let truth: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fx.dicom(0).with_extension("json")).unwrap())
            .unwrap();
    let study = asg_phantom::generate(
        truth["seed"].as_u64().unwrap(),
        truth["index"].as_u64().unwrap(),
        &asg_phantom::Options {
            size: 96,
            normal_share: 0.3,
            vary_format: false,
        },
    );
    assert_eq!(values, study.rendered.pixels);
}

#[test]
fn a_synthetic_archive_is_analysed_whole_and_its_reports_and_indexes_are_passed_over() {
    let fx = Fixture::new(64, 0, 128);
    let set = fx.dicom_dir().join("set");
    let status = std::process::Command::new(asg_e2e::binary("asg-train"))
        .args([
            "synth", "--n", "3", "--seed", "5", "--size", "128", "--errors", "--out",
        ])
        .arg(&set)
        .status()
        .unwrap();
    assert!(status.success());
    let out = analyze(&[set.as_os_str(), "--model".as_ref(), fx.bundle().as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);
}

#[test]
fn dicom_index_groups_a_folder_into_studies() {
    let fx = Fixture::new(64, 3, 96);
    std::fs::write(fx.dicom_dir().join("junk.dcm"), b"not dicom").unwrap();
    let out = std::process::Command::new(asg_e2e::asg_binary())
        .args(["dicom", "index"])
        .arg(fx.dicom_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Each phantom is its own study with one series and one instance.
    assert_eq!(json["studies"].as_array().unwrap().len(), 3);
    assert_eq!(json["skipped"].as_array().unwrap().len(), 1);
    assert!(json["skipped"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("junk.dcm"));
    let all = String::from_utf8_lossy(&out.stdout);
    assert!(!all.contains("PHANTOM^"), "patient name in the index");
}

/// Privacy: the CLI opens no network socket. `asg demo` (model load, DICOM decode, analysis,
/// report check, overlay, JSON) and `asg analyze` run under strace, which records every
/// socket(2) and connect(2); any AF_INET / AF_INET6 socket fails the test. (strace is installed
/// by scripts/setup.sh.)
#[test]
fn the_cli_opens_no_network_socket() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("strace.log");
    let out = Command::new("strace")
        .args(["-f", "-q", "-e", "trace=socket,connect,sendto,bind", "-o"])
        .arg(&log)
        .arg(asg_binary())
        .args(["demo", "--out"])
        .arg(dir.path().join("demo"))
        .output()
        .expect("strace is needed for this test (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace = std::fs::read_to_string(&log).unwrap();
    // The trace really recorded the run (strace writes the exit line).
    assert!(trace.contains("+++ exited with 0 +++"), "{trace}");
    for line in trace.lines() {
        assert!(
            !line.contains("AF_INET") && !line.contains("AF_INET6"),
            "network socket opened: {line}"
        );
    }
}

#[test]
fn a_bundle_packed_in_one_tar_file_loads_and_a_damaged_one_is_refused() {
    let fx = Fixture::new(64, 1, 200);
    let models = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/default");
    let tar = fx.dicom_dir().join("bundle.tar");
    // Packed by GNU tar, not by us.
    let status = Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&models)
        .args(["manifest.json", "image.onnx", "text.onnx", "tokenizer.json"])
        .status()
        .expect("tar");
    assert!(status.success());
    let out = analyze(&[fx.dicom(0).as_os_str(), "--model".as_ref(), tar.as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["model"]["name"], "asg-default");
    assert_eq!(json["regions"].as_array().unwrap().len(), 29);
    // A byte flipped inside image.onnx's data: the digest check names the file.
    let mut bytes = std::fs::read(&tar).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x01;
    std::fs::write(&tar, bytes).unwrap();
    let out = analyze(&[fx.dicom(0).as_os_str(), "--model".as_ref(), tar.as_os_str()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("SHA-256"), "{stderr}");
}

fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn asg_serve_serves_the_viewer_and_the_embedded_model_on_localhost_only() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web");
    std::fs::create_dir_all(web.join("pkg")).unwrap();
    std::fs::write(
        web.join("index.html"),
        "<!doctype html><title>viewer</title>",
    )
    .unwrap();
    std::fs::write(dir.path().join("secret.txt"), "not for the browser").unwrap();
    let mut child = Command::new(asg_binary())
        .args(["serve", "--port", "0", "--web"])
        .arg(&web)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{addr}");
    let index = http_get(&addr, "/");
    let manifest = http_get(&addr, "/model/manifest.json");
    let escape = http_get(&addr, "/../secret.txt");
    let escape2 = http_get(&addr, "/%2e%2e/secret.txt");
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        index.starts_with("HTTP/1.1 200") || index.starts_with("HTTP/1.0 200"),
        "{index}"
    );
    assert!(index.contains("<title>viewer</title>"));
    assert!(
        index.contains("Content-Security-Policy: default-src 'self'"),
        "{index}"
    );
    assert!(manifest.contains("\"name\": \"asg-default\""), "{manifest}");
    for e in [escape, escape2] {
        assert!(!e.contains("not for the browser"), "{e}");
        assert!(e.contains(" 404 "), "{e}");
    }
}

/// The fixture's first phantom as an 8-bit picture: its display values through `grey`
/// (0..1 -> 0..255), rounded.
fn phantom_picture(fx: &Fixture, grey: impl Fn(f32) -> f32) -> image::GrayImage {
    let img = asg_dicom::read_file(&fx.dicom(0), &Default::default()).unwrap();
    let values: Vec<u8> = img
        .display()
        .iter()
        .map(|&v| grey(v).round() as u8)
        .collect();
    image::GrayImage::from_raw(img.width, img.height, values).unwrap()
}

#[test]
fn png_and_jpeg_pictures_are_analysed_with_a_warning_and_refused_for_sr() {
    let fx = Fixture::new(64, 1, 200);
    let pic = phantom_picture(&fx, |v| v * 255.0);
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("collection");
    std::fs::create_dir_all(&folder).unwrap();
    let png = folder.join("film.png");
    pic.save(&png).unwrap();
    let jpg = folder.join("film2.jpg");
    image::DynamicImage::ImageLuma8(pic).save(&jpg).unwrap();

    for file in [&png, &jpg] {
        let out = analyze(&[
            file.as_os_str(),
            "--model".as_ref(),
            fx.bundle().as_os_str(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["image"]["width"], 200);
        assert!(json["image"]["pixel_spacing_mm"].is_null());
        let warnings = json["warnings"].to_string();
        assert!(warnings.contains("picture, not DICOM"), "{warnings}");
        assert!(warnings.contains("pixel spacing unknown"), "{warnings}");
    }
    // Inside a folder pictures are passed over unless asked for.
    let out = analyze(&[
        folder.as_os_str(),
        "--model".as_ref(),
        fx.bundle().as_os_str(),
    ]);
    assert!(!out.status.success());
    let out = analyze(&[
        folder.as_os_str(),
        "--pictures".as_ref(),
        "--model".as_ref(),
        fx.bundle().as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    // A DICOM SR must reference a DICOM image.
    let out = analyze(&[
        png.as_os_str(),
        "--model".as_ref(),
        fx.bundle().as_os_str(),
        "--sr".as_ref(),
        dir.path().join("sr").as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("film.png") && stderr.contains("--sr and --fhir need a DICOM image"),
        "{stderr}"
    );
}

/// An 8-bit palette BMP of a grey picture.
fn grey_bmp(pic: &image::GrayImage) -> Vec<u8> {
    let (w, h) = pic.dimensions();
    let stride = (w as usize).div_ceil(4) * 4;
    let offset = 14 + 40 + 256 * 4;
    let size = offset + stride * h as usize;
    let mut b = Vec::with_capacity(size);
    b.extend_from_slice(b"BM");
    b.extend_from_slice(&(size as u32).to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&(offset as u32).to_le_bytes());
    b.extend_from_slice(&40u32.to_le_bytes());
    b.extend_from_slice(&(w as i32).to_le_bytes());
    b.extend_from_slice(&(h as i32).to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&8u16.to_le_bytes());
    b.extend_from_slice(&[0u8; 4]); // no compression
    b.extend_from_slice(&((stride * h as usize) as u32).to_le_bytes());
    b.extend_from_slice(&2835u32.to_le_bytes());
    b.extend_from_slice(&2835u32.to_le_bytes());
    b.extend_from_slice(&256u32.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    for v in 0..=255u8 {
        b.extend_from_slice(&[v, v, v, 0]);
    }
    for y in (0..h).rev() {
        let row = &pic.as_raw()[(y * w) as usize..((y + 1) * w) as usize];
        b.extend_from_slice(row);
        b.resize(b.len() + stride - w as usize, 0);
    }
    b
}

#[test]
fn a_picture_and_the_same_picture_put_into_dicom_by_img2dcm_are_analysed_alike() {
    // 8-bit data without a VOI window holds display values (the picture's), so the model sees
    // the same input either way; a percentile window would have stretched this dull film.
    let fx = Fixture::new(64, 1, 200);
    let pic = phantom_picture(&fx, |v| 60.0 + v * 120.0);
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("film.png");
    pic.save(&png).unwrap();
    // img2dcm reads BMP or JPEG; BMP keeps the values exact (the image crate here has no BMP
    // encoder, and the format is a header, a grey palette and bottom-up rows padded to 4 bytes).
    let bmp = dir.path().join("film.bmp");
    std::fs::write(&bmp, grey_bmp(&pic)).unwrap();
    let dcm = dir.path().join("film.dcm");
    let made = std::process::Command::new("img2dcm")
        .args(["-i", "BMP"])
        .arg(&bmp)
        .arg(&dcm)
        .output()
        .expect("img2dcm (dcmtk, installed by scripts/setup.sh) runs");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let run = |file: &std::path::Path| -> serde_json::Value {
        let out = analyze(&[
            file.as_os_str(),
            "--model".as_ref(),
            fx.bundle().as_os_str(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let (a, b) = (run(&png), run(&dcm));
    let probabilities = |j: &serde_json::Value| -> Vec<f64> {
        j["findings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["probability"].as_f64().unwrap())
            .collect()
    };
    let (pa, pb) = (probabilities(&a), probabilities(&b));
    assert_eq!(pa.len(), pb.len());
    for (x, y) in pa.iter().zip(&pb) {
        assert!((x - y).abs() < 1e-5, "{pa:?} vs {pb:?}");
    }
    assert_eq!(a["regions"][0]["bbox"], b["regions"][0]["bbox"]);
}

#[test]
fn the_default_model_says_nothing_on_a_picture_that_is_no_chest_film() {
    // The embedded default bundle carries an anatomy check: a blank picture and a checkerboard
    // (whose "lungs" it cannot find) get no findings, regions or outlines, and say why; a
    // phantom chest film passes it.
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank.png");
    image::GrayImage::from_pixel(512, 512, image::Luma([128u8]))
        .save(&blank)
        .unwrap();
    let checker = dir.path().join("checker.png");
    image::GrayImage::from_fn(512, 512, |x, y| {
        image::Luma([(((x / 64 + y / 64) % 2) * 255) as u8])
    })
    .save(&checker)
    .unwrap();
    for picture in [&blank, &checker] {
        let out = analyze(&[picture.as_os_str()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let a: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let warned = a["warnings"].as_array().unwrap().iter().any(|w| {
            w.as_str()
                .unwrap()
                .starts_with("the model did not find the lungs of an upright frontal chest film")
        });
        assert!(warned, "{picture:?}: {}", a["warnings"]);
        for f in a["findings"].as_array().unwrap() {
            assert_eq!(
                (&f["present"], &f["assessed"]),
                (&false.into(), &false.into()),
                "{f}"
            );
        }
        assert!(a["regions"].as_array().unwrap().is_empty());
    }
    let phantom = dir.path().join("phantom");
    let made = Command::new(asg_e2e::binary("asg-train"))
        .args(["synth", "--n", "1", "--seed", "5", "--size", "256", "--out"])
        .arg(&phantom)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let out = analyze(&[phantom.join("files").as_os_str()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("did not find the lungs"), "{text}");
}

#[test]
fn real_films_from_shared_realcxr_are_analysed_when_present() {
    // Every real film of ../shared/realcxr (JSRT, ieee8023, Brixia) through the embedded default
    // model: boxes for every region inside the film, and none stopped by the anatomy check
    // (whose thresholds were set below these films' range, by half a margin).
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/realcxr/images");
    if !root.is_dir() {
        eprintln!("skipped: ../shared/realcxr is not here (the real-film check needs it)");
        return;
    }
    let films = std::fs::read_dir(&root).unwrap().count();
    let out_dir = tempfile::tempdir().unwrap();
    let out = analyze(&[
        root.as_os_str(),
        "--pictures".as_ref(),
        "--jobs".as_ref(),
        "2".as_ref(),
        "--json".as_ref(),
        out_dir.path().as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut seen = 0;
    for entry in std::fs::read_dir(out_dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().is_some_and(|n| n == "summary.json") {
            continue;
        }
        seen += 1;
        let a: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert!(
            !a["warnings"]
                .as_array()
                .unwrap()
                .iter()
                .any(|w| w.as_str().unwrap().contains("did not find the lungs")),
            "{path:?}: {}",
            a["warnings"]
        );
        assert_eq!(a["regions"].as_array().unwrap().len(), 29, "{path:?}");
        let (w, h) = (
            a["image"]["width"].as_f64().unwrap(),
            a["image"]["height"].as_f64().unwrap(),
        );
        for r in a["regions"].as_array().unwrap() {
            let b: Vec<f64> = r["bbox"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert!(
                b[0] >= -0.5 && b[1] >= -0.5 && b[2] <= w + 0.5 && b[3] <= h + 0.5,
                "{path:?}: {b:?}"
            );
        }
    }
    assert_eq!(seen, films);
}

#[test]
fn findings_outside_the_bundles_assessed_list_are_never_present() {
    let fx = Fixture::new(64, 1, 128);
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    std::fs::create_dir_all(&bundle).unwrap();
    for e in std::fs::read_dir(fx.bundle()).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, bundle.join(p.file_name().unwrap())).unwrap();
    }
    let manifest_path = bundle.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    // Every threshold at 0 would make every finding present, were it assessed.
    for (_, v) in manifest["thresholds"].as_object_mut().unwrap().iter_mut() {
        *v = serde_json::json!(0.0);
    }
    manifest["assessed"] = serde_json::json!(["pleural effusion"]);
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let out = analyze(&[
        fx.dicom(0).as_os_str(),
        "--model".as_ref(),
        bundle.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for f in json["findings"].as_array().unwrap() {
        let effusion = f["name"] == "pleural effusion";
        assert_eq!(f["assessed"], effusion, "{f}");
        assert_eq!(f["present"], effusion, "{f}");
    }
    // An assessed name the bundle does not score is refused, naming it.
    manifest["assessed"] = serde_json::json!(["left elbow"]);
    std::fs::write(&manifest_path, manifest.to_string()).unwrap();
    let out = analyze(&[
        fx.dicom(0).as_os_str(),
        "--model".as_ref(),
        bundle.as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("left elbow"), "{stderr}");
}

#[test]
fn check_normals_scores_the_normal_films_of_a_realcxr_folder() {
    // A tiny folder in the realcxr layout: two normal films of test-split patient groups
    // (JSRT-like and ieee-like), one normal film of a training group, and one that is not
    // normal, all pictures made here.
    let fx = Fixture::new(64, 1, 160);
    let img = asg_dicom::read_file(&fx.dicom(0), &Default::default()).unwrap();
    let grey: Vec<u8> = img.display().iter().map(|v| (v * 255.0) as u8).collect();
    let pic = image::GrayImage::from_raw(img.width, img.height, grey).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("images")).unwrap();
    for id in ["a", "b", "c", "d"] {
        pic.save(dir.path().join(format!("images/{id}.png")))
            .unwrap();
    }
    // FNV-1a of the groups modulo 100: jsrt:a 85 and ieee8023:1 87 (test), jsrt:b 52 (train).
    let index = [
        r#"{"id": "a", "source": "jsrt", "finding": "normal", "image": "images/a.png", "patient_group": "jsrt:a"}"#,
        r#"{"id": "b", "source": "ieee8023", "finding": "No Finding", "image": "images/b.png", "patient_group": "ieee8023:1"}"#,
        r#"{"id": "c", "source": "ieee8023", "finding": "COVID-19", "image": "images/c.png", "patient_group": "ieee8023:1"}"#,
        r#"{"id": "d", "source": "jsrt", "finding": "normal", "image": "images/d.png", "patient_group": "jsrt:b"}"#,
    ];
    std::fs::write(dir.path().join("index.jsonl"), index.join("\n")).unwrap();
    let json = dir.path().join("normals.json");
    let out = Command::new(asg_binary())
        .arg("check-normals")
        .arg(dir.path())
        .arg("--model")
        .arg(fx.bundle())
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("(test split of its patient groups)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 normal films (ieee8023 1, jsrt 1)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("| a correct normal report left unaccused |"),
        "{stdout}"
    );
    let score: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(score["films"], 2);
    assert_eq!(score["failed"], 0);
    assert!(score["unaccused"].as_u64().unwrap() <= 2);
    // Every split: the training group's film too; a split that is not one is refused.
    let all = Command::new(asg_binary())
        .arg("check-normals")
        .arg(dir.path())
        .arg("--model")
        .arg(fx.bundle())
        .args(["--split", "all"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&all.stdout);
    assert!(
        stdout.contains("3 normal films (ieee8023 1, jsrt 2)"),
        "{stdout}"
    );
    let bad = Command::new(asg_binary())
        .arg("check-normals")
        .arg(dir.path())
        .args(["--split", "dev"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--split dev"));
    assert!(score["unaccused"].as_u64().unwrap() <= 2);
}

#[test]
fn pacs_flags_without_dicomweb_are_refused() {
    let fx = Fixture::new(64, 1, 128);
    for flag in [
        &["--study", "1.2.3"][..],
        &["--store-sr"],
        &["--header", "X: y"],
    ] {
        let dicom = fx.dicom(0);
        let mut args: Vec<&std::ffi::OsStr> = vec![dicom.as_os_str()];
        args.extend(flag.iter().map(|s| std::ffi::OsStr::new(*s)));
        let out = analyze(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{flag:?} accepted without --dicomweb"
        );
        assert!(
            stderr.contains(&format!("{} needs --dicomweb URL", flag[0])),
            "{stderr}"
        );
    }
}

/// `asg dicom pixels --stage stored` as a grey u16 array.
fn stored_u16(file: &std::path::Path, dir: &std::path::Path) -> Vec<u16> {
    let npy = dir.join(format!(
        "{}.npy",
        file.file_stem().unwrap().to_string_lossy()
    ));
    let out = Command::new(asg_binary())
        .args(["dicom", "pixels", "--stage", "stored"])
        .arg(file)
        .arg("--npy")
        .arg(&npy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let (header, values) = read_npy_u16(&npy);
    assert!(header.contains("'descr': '<u2'"), "{header}");
    values
}

/// A version-1 .npy file as its header text and its data read as little-endian u16 values.
fn read_npy_u16(path: &std::path::Path) -> (String, Vec<u16>) {
    let bytes = std::fs::read(path).unwrap();
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = String::from_utf8_lossy(&bytes[10..10 + hlen]).to_string();
    let values = bytes[10 + hlen..]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    (header, values)
}

#[test]
fn a_12_bit_lossy_jpeg_written_by_dcmtk_decodes_as_dcmtk_decodes_it() {
    // JPEG Extended (process 4, 12 bits) as older CR and CT archives store it: dcmtk encodes a
    // 12-bit film (dcmcjpeg +ee), and its own decoder (dcmdjpeg, IJG's 12-bit libjpeg) is the
    // reference; asg-dicom decodes it with libjpeg-turbo (asg-jpeg12).
    let dir = tempfile::tempdir().unwrap();
    let (rows, columns) = (96u32, 80u32);
    let pixels: Vec<u16> = (0..rows * columns)
        .map(|i| {
            let (y, x) = ((i / columns) as f32, (i % columns) as f32);
            (2048.0 + 1500.0 * (x / 9.0).sin() * (y / 13.0).cos()) as u16
        })
        .collect();
    let native = dir.path().join("native.dcm");
    asg_dicom::write_file(
        &native,
        &asg_dicom::NewImage {
            rows,
            columns,
            pixels: pixels.clone(),
            bits_stored: 12,
            photometric_interpretation: "MONOCHROME2".into(),
            rescale_slope: 1.0,
            rescale_intercept: 0.0,
            window: None,
            pixel_spacing_mm: None,
            view_position: Some("PA".into()),
            modality: "DX".into(),
            sop_class_uid: asg_dicom::SOP_CLASS_DX_PRESENTATION.into(),
            study_instance_uid: asg_dicom::uid_from_u128(11),
            series_instance_uid: asg_dicom::uid_from_u128(12),
            sop_instance_uid: asg_dicom::uid_from_u128(13),
            patient_name: "PHANTOM^TWELVE".into(),
            patient_id: "PH0012".into(),
            study_description: None,
            transfer_syntax: asg_dicom::TransferSyntax::ExplicitVrLittleEndian,
        },
    )
    .unwrap();
    let lossy = dir.path().join("jpeg12.dcm");
    let back = dir.path().join("back.dcm");
    for (tool, args, from, to) in [
        // +sr: keep the 12-bit range (dcmcjpeg's default, +sp, shifts the film's minimum to 0).
        ("dcmcjpeg", vec!["+ee", "+sr", "+q", "85"], &native, &lossy),
        ("dcmdjpeg", vec![], &lossy, &back),
    ] {
        let made = Command::new(tool)
            .args(args)
            .arg(from)
            .arg(to)
            .output()
            .unwrap_or_else(|e| panic!("{tool} (dcmtk, installed by scripts/setup.sh): {e}"));
        assert!(
            made.status.success(),
            "{tool}: {}",
            String::from_utf8_lossy(&made.stderr)
        );
    }
    let info = Command::new(asg_binary())
        .args(["dicom", "info"])
        .arg(&lossy)
        .output()
        .unwrap();
    let meta: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(meta["transfer_syntax_uid"], "1.2.840.10008.1.2.4.51");
    let ours = stored_u16(&lossy, dir.path());
    let dcmtk = stored_u16(&back, dir.path());
    assert_eq!(ours.len(), pixels.len());
    let worst = ours
        .iter()
        .zip(&dcmtk)
        .map(|(&a, &b)| (a as i32 - b as i32).abs())
        .max()
        .unwrap();
    // Two IJG-derived decoders with the same integer IDCT: equal, or within a unit of rounding.
    assert!(worst <= 1, "asg vs dcmdjpeg: worst difference {worst}");
    // Lossy, but the film: the mean error is a small share of the 12-bit range.
    let differs = ours.iter().zip(&pixels).any(|(&a, &b)| a != b);
    let mean_error = ours
        .iter()
        .zip(&pixels)
        .map(|(&a, &b)| (a as f64 - b as f64).abs())
        .sum::<f64>()
        / pixels.len() as f64;
    eprintln!("12-bit JPEG at quality 85: mean error {mean_error:.1} of 4095");
    assert!(differs && mean_error < 8.0, "mean error {mean_error}");
}

#[test]
fn radiographs_of_other_body_parts_are_skipped_and_unknown_ones_read_with_a_warning() {
    // Three copies of a phantom film: one kept CHEST, one relabelled HAND, one PORTABLE (a
    // value that names no part), as an archive's radiography series come.
    let fx = Fixture::new(64, 1, 128);
    let dir = tempfile::tempdir().unwrap();
    for (name, part) in [
        ("chest", None),
        ("hand", Some("HAND")),
        ("odd", Some("PORTABLE")),
    ] {
        let file = dir.path().join(format!("{name}.dcm"));
        std::fs::copy(fx.dicom(0), &file).unwrap();
        if let Some(part) = part {
            let made = Command::new("dcmodify")
                .args(["-nb", "-m", &format!("(0018,0015)={part}")])
                .arg(&file)
                .output()
                .unwrap_or_else(|e| panic!("dcmodify (dcmtk, installed by scripts/setup.sh): {e}"));
            assert!(
                made.status.success(),
                "{}",
                String::from_utf8_lossy(&made.stderr)
            );
        }
    }
    let (stderr, out_dir) = analyze_folder(dir.path(), &fx.bundle());
    assert!(stderr.contains("analysed 2 of 3 images"), "{stderr}");
    assert!(
        stderr.contains("hand.dcm: body part examined HAND is not the chest"),
        "{stderr}"
    );
    assert!(!out_dir.path().join("hand.json").exists());
    let warnings = |name: &str| -> Vec<String> {
        let a: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(out_dir.path().join(format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        a["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        warnings("odd").iter().any(|w| {
            w
            == "body part examined PORTABLE is not one known to be the chest: read as a chest film"
        }),
        "{:?}",
        warnings("odd")
    );
    assert!(!warnings("chest").iter().any(|w| w.contains("body part")));
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.path().join("summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["skipped"].as_array().unwrap().len(), 1, "{summary}");
    // Alone, the hand film is refused.
    let out = analyze(&[
        dir.path().join("hand.dcm").as_os_str(),
        "--model".as_ref(),
        fx.bundle().as_os_str(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("none of the 1 inputs is a chest radiograph"),
        "{stderr}"
    );
}

#[test]
fn images_of_other_modalities_are_skipped_with_the_reason_and_alone_refused() {
    // A phantom radiograph and an MR slice in one folder (an archive holds both).
    let fx = Fixture::new(64, 1, 128);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fx.dicom(0), dir.path().join("chest.dcm")).unwrap();
    let (rows, columns) = (64u32, 64u32);
    let mr = dir.path().join("brain.dcm");
    asg_dicom::write_file(
        &mr,
        &asg_dicom::NewImage {
            rows,
            columns,
            pixels: (0..rows * columns).map(|i| (i % 4096) as u16).collect(),
            bits_stored: 12,
            photometric_interpretation: "MONOCHROME2".into(),
            rescale_slope: 1.0,
            rescale_intercept: 0.0,
            window: None,
            pixel_spacing_mm: None,
            view_position: None,
            modality: "MR".into(),
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.4".into(),
            study_instance_uid: asg_dicom::uid_from_u128(21),
            series_instance_uid: asg_dicom::uid_from_u128(22),
            sop_instance_uid: asg_dicom::uid_from_u128(23),
            patient_name: "PHANTOM^MR".into(),
            patient_id: "PH0021".into(),
            study_description: None,
            transfer_syntax: asg_dicom::TransferSyntax::ExplicitVrLittleEndian,
        },
    )
    .unwrap();
    let (stderr, out_dir) = analyze_folder(dir.path(), &fx.bundle());
    assert!(stderr.contains("analysed 1 of 2 images"), "{stderr}");
    assert!(
        stderr.contains("brain.dcm: modality MR is not a projection radiograph"),
        "{stderr}"
    );
    assert!(out_dir.path().join("chest.json").is_file());
    assert!(!out_dir.path().join("brain.json").exists());
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.path().join("summary.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(summary["failed"].as_array().unwrap().len(), 0);
    let skipped = summary["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0]["file"].as_str().unwrap().ends_with("brain.dcm"));
    // Alone, it is an error with the reason, and nothing on standard output.
    let alone = Command::new(asg_binary())
        .arg("analyze")
        .arg(&mr)
        .arg("--model")
        .arg(fx.bundle())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&alone.stderr);
    assert!(!alone.status.success());
    assert!(stderr.contains("modality MR"), "{stderr}");
    assert!(
        stderr.contains("none of the 1 inputs is a chest radiograph"),
        "{stderr}"
    );
    assert!(alone.stdout.is_empty());
}

#[test]
fn a_lateral_view_gets_no_findings_regions_or_outlines_and_says_why() {
    // The embedded default model (it has region and anatomy outputs).
    let fx = Fixture::new(64, 1, 128);
    let dir = tempfile::tempdir().unwrap();
    let lateral = dir.path().join("lateral.dcm");
    std::fs::copy(fx.dicom(0), &lateral).unwrap();
    let made = Command::new("dcmodify")
        .args(["-nb", "-m", "(0018,5101)=LL"])
        .arg(&lateral)
        .output()
        .unwrap_or_else(|e| panic!("dcmodify (dcmtk, installed by scripts/setup.sh): {e}"));
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let report = dir.path().join("lateral.txt");
    std::fs::write(
        &report,
        "Large right pleural effusion. The heart is enlarged.",
    )
    .unwrap();
    for (file, lateral_view) in [(fx.dicom(0), false), (lateral, true)] {
        let out = Command::new(asg_binary())
            .arg("analyze")
            .arg(&file)
            .arg("--report")
            .arg(&report)
            .arg("--threshold")
            .arg("0")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let a: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let findings = a["findings"].as_array().unwrap();
        let present = findings.iter().filter(|f| f["present"] == true).count();
        let warned = a["warnings"].as_array().unwrap().iter().any(|w| {
            w.as_str()
                .unwrap()
                .contains("view position LL is not frontal")
        });
        if lateral_view {
            // Even at threshold 0 nothing is flagged, no box drawn, and the warning says why.
            assert_eq!(present, 0);
            assert!(findings.iter().all(|f| f["assessed"] == false));
            assert!(a["regions"].as_array().unwrap().is_empty());
            assert!(a
                .get("anatomy")
                .is_none_or(|o| o.as_array().unwrap().is_empty()));
            assert!(warned, "{:?}", a["warnings"]);
        } else {
            // The frontal film, at threshold 0, flags every assessed finding.
            assert!(present > 0);
            assert!(!a["regions"].as_array().unwrap().is_empty());
            assert!(!warned);
        }
        assert!(
            a["report_check"]["sentences"].as_array().unwrap().len() == 2,
            "the report is still checked"
        );
    }
}
