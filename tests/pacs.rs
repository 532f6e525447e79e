//! `asg analyze --dicomweb` against a real PACS: Debian's Orthanc with its DICOMweb plugin,
//! started here on loopback with a config of its own (no service, no root), loaded with
//! phantom studies over its REST API. Skips, saying so, where Orthanc is not installed
//! (`scripts/setup.sh` installs it).

use asg_dicomweb::{Client, DicomWebError, InstanceRef, Limits};
use asg_e2e::{asg_binary, Fixture};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ORTHANC: &str = "/usr/sbin/Orthanc";
const DICOMWEB_PLUGIN: &str = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so";

/// An Orthanc process serving a scratch folder on a loopback port; killed on drop.
struct Orthanc {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Orthanc {
    fn start() -> Option<Orthanc> {
        if !Path::new(ORTHANC).exists() || !Path::new(DICOMWEB_PLUGIN).exists() {
            eprintln!(
                "skipped: {ORTHANC} or {DICOMWEB_PLUGIN} is missing (scripts/setup.sh installs \
                 Debian's orthanc and orthanc-dicomweb)"
            );
            return None;
        }
        let dir = tempfile::tempdir().expect("scratch folder");
        // A free port: bound, read, released (Orthanc binds it a moment later).
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let db = dir.path().join("db");
        let config = serde_json::json!({
            "Name": "asg-test",
            "StorageDirectory": db,
            "IndexDirectory": db,
            "HttpPort": port,
            "DicomServerEnabled": false,
            "RemoteAccessAllowed": false,
            "AuthenticationEnabled": false,
            "Plugins": [DICOMWEB_PLUGIN],
            "DicomWeb": {"Enable": true, "Root": "/dicom-web/"}
        });
        let config_path = dir.path().join("orthanc.json");
        std::fs::write(&config_path, config.to_string()).expect("config");
        let log = std::fs::File::create(dir.path().join("orthanc.log")).expect("log");
        let child = Command::new(ORTHANC)
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start Orthanc");
        let orthanc = Orthanc {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while ureq::get(&format!("{}/system", orthanc.rest()))
            .call()
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "Orthanc did not answer within 60 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(orthanc)
    }

    fn rest(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn dicomweb(&self) -> String {
        format!("{}/dicom-web", self.rest())
    }

    /// Uploads a DICOM file over the REST API.
    fn upload(&self, file: &Path) {
        let bytes = std::fs::read(file).expect("read phantom");
        let r = ureq::post(&format!("{}/instances", self.rest()))
            .header("Content-Type", "application/dicom")
            .send(&bytes[..])
            .expect("upload");
        assert_eq!(r.status().as_u16(), 200, "uploading {}", file.display());
    }
}

impl Drop for Orthanc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("read JSON")).expect("JSON")
}

/// An analysis without what differs between runs or inputs: timings, its file name.
fn comparable(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(m) = v.as_object_mut() {
        for key in ["timings", "file", "stored_sr", "overlay"] {
            m.remove(key);
        }
    }
    v
}

#[test]
fn analyze_over_dicomweb_matches_files_and_stores_the_sr_back() {
    let Some(pacs) = Orthanc::start() else { return };
    let fx = Fixture::new(64, 3, 256);
    for i in 0..3 {
        pacs.upload(&fx.dicom(i));
    }
    let client = Client::new(&pacs.dicomweb(), &[], Limits::default()).expect("client");
    let studies = client.studies().expect("QIDO studies");
    assert_eq!(studies.len(), 3, "{studies:?}");
    // Page by page (2 a page: two pages), the same studies; over the cap, an error.
    let paged = Client::new(
        &pacs.dicomweb(),
        &[],
        Limits {
            page_size: 2,
            ..Limits::default()
        },
    )
    .expect("client");
    assert_eq!(paged.studies().expect("paged QIDO"), studies);
    let capped = Client::new(
        &pacs.dicomweb(),
        &[],
        Limits {
            page_size: 2,
            max_results: 2,
            ..Limits::default()
        },
    )
    .expect("client");
    assert!(matches!(
        capped.studies(),
        Err(DicomWebError::TooLarge { limit: 2, .. })
    ));
    let wanted = &studies[..2];

    // The same files analysed from disk, for comparison.
    let local = fx.dir.path().join("local");
    let out = Command::new(asg_binary())
        .args(["analyze".as_ref(), fx.dicom_dir().as_os_str()])
        .args(["--model".as_ref(), fx.bundle().as_os_str()])
        .args(["--json".as_ref(), local.as_os_str()])
        .output()
        .expect("run asg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_sop = |dir: &Path| -> std::collections::BTreeMap<String, serde_json::Value> {
        std::fs::read_dir(dir)
            .expect("results")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().is_some_and(|n| n != "summary.json"))
            .map(|p| {
                let v = json(&p);
                (
                    v["image"]["sop_instance_uid"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    v,
                )
            })
            .collect()
    };
    let from_files = by_sop(&local);

    // Two studies by UID and one that is not in the PACS: the two are analysed, the third is
    // named as failed, and the exit code says so.
    let results = fx.dir.path().join("pacs");
    let mut cmd = Command::new(asg_binary());
    cmd.args(["analyze", "--dicomweb", &pacs.dicomweb()])
        .args(["--model".as_ref(), fx.bundle().as_os_str()])
        .args(["--json".as_ref(), results.as_os_str()])
        .args(["--store-sr", "--header", "X-Test: yes"]);
    for s in wanted {
        cmd.args(["--study", s]);
    }
    cmd.args(["--study", "1.2.3.999"]);
    let out = cmd.output().expect("run asg");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a missing study must fail the run: {stderr}"
    );
    assert!(stderr.contains("analysed 2 of 3 images"), "{stderr}");
    assert!(stderr.contains("stored 2 DICOM SR in the PACS"), "{stderr}");
    assert!(
        stderr.contains(
            "studies/1.2.3.999: the study holds no radiographs (no series of modality CR, DX, DR, RG)"
        ),
        "{stderr}"
    );
    let from_pacs = by_sop(&results);
    assert_eq!(from_pacs.len(), 2);
    for (sop, v) in &from_pacs {
        assert_eq!(
            comparable(v.clone()),
            comparable(from_files[sop].clone()),
            "{sop}: the PACS's copy analysed differently from the file"
        );
        let file = v["file"].as_str().unwrap_or("");
        assert!(
            file.starts_with(&pacs.dicomweb()) && file.ends_with(sop.as_str()),
            "{file}"
        );
        assert!(v["stored_sr"].is_string(), "no stored SR named: {v}");
    }
    let summary = json(&results.join("summary.json"));
    assert_eq!(
        summary["failed"].as_array().map(Vec::len),
        Some(1),
        "{summary}"
    );

    // Each analysed study now holds our SR: an Enhanced SR series, retrievable, referencing
    // the analysed image.
    for (sop, v) in &from_pacs {
        let study = v["image"]["study_instance_uid"].as_str().unwrap_or("");
        let srs = client.instances(study, &["SR"]).expect("QIDO SR");
        assert_eq!(srs.len(), 1, "{study}: {srs:?}");
        assert_eq!(
            Some(srs[0].sop_instance_uid.as_str()),
            v["stored_sr"].as_str()
        );
        let sr = client.retrieve(&srs[0]).expect("WADO SR");
        let sr = String::from_utf8_lossy(&sr);
        assert!(
            sr.contains("1.2.840.10008.5.1.4.1.1.88.22"),
            "not an Enhanced SR"
        );
        assert!(
            sr.contains(sop.as_str()),
            "the SR does not reference the image"
        );
    }
    // The study not asked for was left alone.
    assert_eq!(
        client.instances(&studies[2], &["SR"]).map(|v| v.len()).ok(),
        Some(0)
    );
    assert_eq!(
        client
            .instances(&studies[2], &["CR", "DX"])
            .map(|v| v.len())
            .ok(),
        Some(1)
    );
}

#[test]
fn dicomweb_errors_are_named() {
    let Some(pacs) = Orthanc::start() else { return };
    let fx = Fixture::new(64, 1, 128);
    pacs.upload(&fx.dicom(0));
    let client = Client::new(&pacs.dicomweb(), &[], Limits::default()).expect("client");
    let study = client.studies().expect("QIDO")[0].clone();
    let instance = client.instances(&study, &["CR", "DX"]).expect("QIDO")[0].clone();

    // A 404: an instance the PACS does not hold.
    let missing = InstanceRef {
        sop_instance_uid: "1.2.3.4.5".into(),
        ..instance.clone()
    };
    match client.retrieve(&missing) {
        Err(DicomWebError::Status {
            status: 404, url, ..
        }) => assert!(url.ends_with("1.2.3.4.5")),
        other => panic!("expected a 404, got {other:?}"),
    }
    // A response over the cap is refused before it is read whole.
    let small = Client::new(
        &pacs.dicomweb(),
        &[],
        Limits {
            max_instance_bytes: 1000,
            ..Limits::default()
        },
    )
    .expect("client");
    assert!(
        matches!(
            small.retrieve(&instance),
            Err(DicomWebError::TooLarge { limit: 1000, .. })
        ),
        "an instance over the cap was read"
    );
    // STOW-RS of something that is not DICOM is refused, and said so.
    match client.store(&study, &[b"not a DICOM file".to_vec()]) {
        Err(DicomWebError::Refused { sent: 1, .. }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    // An instance of another study (the fixture's second phantom), stored into this one, is
    // refused too.
    let other = Fixture::new(64, 2, 128);
    let foreign = std::fs::read(other.dicom(1)).expect("phantom");
    match client.store(&study, &[foreign]) {
        Err(DicomWebError::Refused { sent: 1, .. }) => {}
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A server that is down: a named error from the CLI, not a panic.
    let down = Command::new(asg_binary())
        .args([
            "analyze",
            "--dicomweb",
            "http://127.0.0.1:1/dicom-web",
            "--timeout",
            "5",
        ])
        .args(["--model".as_ref(), fx.bundle().as_os_str()])
        .output()
        .expect("run asg");
    let stderr = String::from_utf8_lossy(&down.stderr);
    assert!(!down.status.success());
    assert!(
        stderr.contains("http://127.0.0.1:1/dicom-web/studies")
            && stderr.contains("could not be reached"),
        "{stderr}"
    );
}
