//! End-to-end checks of the generator: determinism, boxes that hold their anatomy, reports that
//! the project's own parser reads as the generator meant them, files that read back.

use asg_phantom::set::{write_set, SetOptions};
use asg_phantom::{generate, Options, Side};
use std::collections::BTreeMap;
use std::path::Path;

fn options(size: u32) -> Options {
    Options {
        size,
        ..Options::default()
    }
}

fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn the_same_seed_writes_the_same_bytes_whatever_the_thread_count() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut o = SetOptions {
        n: 6,
        seed: 11,
        image: options(128),
        split: [8.0, 1.0, 1.0],
        errors: true,
        threads: 1,
    };
    write_set(a.path(), &o, &|| {}).unwrap();
    o.threads = 3;
    write_set(b.path(), &o, &|| {}).unwrap();
    let (fa, fb) = (files(a.path()), files(b.path()));
    assert!(fa.len() >= 6 * 4 + 3, "{} files", fa.len());
    assert_eq!(fa.keys().collect::<Vec<_>>(), fb.keys().collect::<Vec<_>>());
    for (name, bytes) in &fa {
        assert!(fb[name] == *bytes, "{name} differs between runs");
    }
    // A different seed gives different images.
    let other = generate(12, 0, &options(128));
    assert_ne!(
        other.rendered.pixels,
        generate(11, 0, &options(128)).rendered.pixels
    );
}

#[test]
fn every_box_lies_inside_the_image_and_holds_its_anatomy() {
    for i in 0..40 {
        let s = generate(5, i, &options(256));
        let (w, h) = (s.rendered.width as f64, s.rendered.height as f64);
        assert_eq!(s.regions.len(), 29);
        for r in &s.regions {
            let [x1, y1, x2, y2] = r.bbox;
            assert!(
                0.0 <= x1 && x1 < x2 && x2 <= w && 0.0 <= y1 && y1 < y2 && y2 <= h,
                "study {i}: {} {:?} outside {w}x{h}",
                r.name,
                r.bbox
            );
        }
        let b = |name: &str| s.regions.iter().find(|r| r.name == name).unwrap().bbox;
        let px = |p: (f64, f64)| (p.0 / s.rendered.spacing, p.1 / s.rendered.spacing);
        let inside = |bb: [f64; 4], p: (f64, f64)| {
            let (x, y) = px(p);
            bb[0] - 1.0 <= x && x <= bb[2] + 1.0 && bb[1] - 1.0 <= y && y <= bb[3] + 1.0
        };
        let a = &s.anatomy;
        for side in Side::BOTH {
            let lung = &a.lungs[side.index()];
            let n = side.name();
            // The whole outline of the lung lies in its box (where it is inside the image).
            for p in &lung.outline {
                let (x, y) = px(*p);
                if x >= 0.0 && y >= 0.0 && x < w && y < h {
                    assert!(inside(b(&format!("{n} lung")), *p), "study {i}: {n} lung");
                }
            }
            assert!(inside(b(&format!("{n} hilar structures")), lung.hilum));
            assert!(inside(b(&format!("{n} costophrenic angle")), lung.cp_angle));
            assert!(
                inside(b(&format!("{n} hemidiaphragm")), lung.dome),
                "study {i}: {n} dome {:?} box {:?} medial {:?} cp {:?}",
                px(lung.dome),
                b(&format!("{n} hemidiaphragm")),
                px(lung.medial_base),
                px(lung.cp_angle)
            );
            assert!(inside(b(&format!("{n} apical zone")), lung.apex));
            // The zones stack from the apex down and lie in the lung's box.
            let up = b(&format!("{n} upper lung zone"));
            let mid = b(&format!("{n} mid lung zone"));
            let low = b(&format!("{n} lower lung zone"));
            assert!(
                up[1] < mid[1] && mid[1] < low[1],
                "study {i}: zones out of order"
            );
            for c in a.clavicles[side.index()].iter() {
                let (x, y) = px(*c);
                if x >= 0.0 && y >= 0.0 && x < w && y < h {
                    assert!(inside(b(&format!("{n} clavicle")), *c));
                }
            }
        }
        assert!(inside(b("cardiac silhouette"), a.heart.center));
        assert!(inside(b("carina"), a.carina));
        assert!(inside(b("trachea"), a.carina));
        assert!(inside(b("aortic arch"), a.aortic_knob.center));
        assert!(inside(b("cavoatrial junction"), a.svc.1));
        // Lesions lie in the zone the report names.
        for l in s.findings.nodules.iter().chain(&s.findings.consolidation) {
            assert!(
                inside(b(&l.zone.region(l.side)), l.center),
                "study {i}: lesion zone"
            );
        }
        // The heart's width is what the ratio says.
        let ctr = a.cardiothoracic_ratio();
        assert_eq!(s.findings.cardiomegaly, ctr > 0.5, "study {i}: CTR {ctr}");
    }
}

#[test]
fn the_lungs_are_darker_than_the_heart_and_the_abdomen() {
    let s = generate(
        3,
        1,
        &Options {
            size: 256,
            normal_share: 1.0,
            vary_format: false,
        },
    );
    let r = &s.rendered;
    let mean = |b: [f64; 4]| {
        let (x0, y0) = (
            (b[0] + (b[2] - b[0]) * 0.3) as usize,
            (b[1] + (b[3] - b[1]) * 0.3) as usize,
        );
        let (x1, y1) = (
            (b[0] + (b[2] - b[0]) * 0.7) as usize,
            (b[1] + (b[3] - b[1]) * 0.7) as usize,
        );
        let mut sum = 0.0;
        let mut n = 0.0;
        for y in y0..y1 {
            for x in x0..x1 {
                sum += r.pixels[y * r.width + x] as f64;
                n += 1.0;
            }
        }
        sum / n
    };
    let b = |name: &str| s.regions.iter().find(|x| x.name == name).unwrap().bbox;
    let lung = mean(b("right mid lung zone"));
    assert!(lung < mean(b("cardiac silhouette")) * 0.85, "lung {lung}");
    assert!(lung < mean(b("abdomen")) * 0.85);
}

#[test]
fn the_report_parser_reads_the_reports_as_the_generator_wrote_them() {
    // Tag level: every finding the generator states, with its existence, should come back from
    // asg-report; a few misses are allowed (the parser is rule-based), a systematic one is not.
    let (mut agree, mut total) = (0, 0);
    let mut misses = Vec::new();
    for i in 0..200 {
        let s = generate(21, i, &options(64));
        let parsed = asg_report::parse(&s.report.text);
        for (tag, existence) in s.report.tags() {
            total += 1;
            let got = parsed
                .tags
                .get(&tag)
                .map(|e| format!("{e:?}").to_lowercase());
            if got.as_deref() == Some(existence.as_str()) {
                agree += 1;
            } else {
                misses.push(format!(
                    "{tag}: {existence} vs {got:?} in {:?}",
                    s.report.text
                ));
            }
        }
    }
    let rate = agree as f64 / total as f64;
    assert!(
        rate > 0.97,
        "{agree}/{total} agree; {:#?}",
        &misses[..misses.len().min(8)]
    );
}

#[test]
fn sentence_spans_point_into_the_report() {
    for i in 0..30 {
        let s = generate(2, i, &options(64));
        for sent in &s.report.sentences {
            assert_eq!(&s.report.text[sent.start..sent.end], sent.text);
        }
        assert!(s.report.text.contains("FINDINGS:") && s.report.text.contains("IMPRESSION:"));
    }
}

#[test]
fn written_sets_read_back_through_asg_dicom_and_the_scene_graphs_parse() {
    let dir = tempfile::tempdir().unwrap();
    let o = SetOptions {
        n: 8,
        seed: 4,
        image: options(160),
        split: [1.0, 1.0, 1.0],
        errors: true,
        threads: 2,
    };
    let summary = write_set(dir.path(), &o, &|| {}).unwrap();
    assert_eq!(summary.studies, 8);
    let split = std::fs::read_to_string(dir.path().join("mimic-cxr-2.0.0-split.csv")).unwrap();
    assert_eq!(split.lines().count(), 9);
    for line in split.lines().skip(1) {
        let cols: Vec<&str> = line.split(',').collect();
        let (image_id, study, subject) = (cols[0], cols[1], cols[2]);
        let dcm = dir.path().join(format!(
            "files/p{}/p{subject}/s{study}/{image_id}.dcm",
            &subject[..2]
        ));
        let img = asg_dicom::read_file(&dcm, &Default::default()).unwrap();
        let graph: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.path().join(format!(
                "silver_dataset/scene_graph/{image_id}_SceneGraph.json"
            )))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(graph["objects"].as_array().unwrap().len(), 29);
        let x2 = graph["objects"][0]["original_x2"].as_f64().unwrap();
        assert!(x2 <= img.width as f64);
        assert!(dcm.with_file_name("").exists());
    }
    let errors = std::fs::read_to_string(dir.path().join("report_errors.csv")).unwrap();
    assert!(errors.lines().count() > 1, "{errors}");
}

#[test]
fn an_injected_side_swap_moves_the_finding_to_the_other_side() {
    use asg_phantom::report::{inject, write_report_with, ErrorKind};
    use rand::SeedableRng;
    let mut found = false;
    for i in 0..200 {
        let s = generate(8, i, &options(64));
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i);
        let Some((changed, err)) =
            inject(&mut rng, &s.anatomy, &s.findings, ErrorKind::SideSwapped)
        else {
            continue;
        };
        let side = err.side.unwrap();
        let report = write_report_with(
            &mut rand_chacha::ChaCha8Rng::seed_from_u64(s.report_seed),
            &s.anatomy,
            &changed,
            &[],
        );
        // A consolidation may be worded as an opacity or a pneumonia.
        let related: &[&str] = if err.finding == "consolidation" {
            &["consolidation", "opacity", "pneumonia"]
        } else {
            &[err.finding.as_str()]
        };
        let on = |r: &asg_phantom::report::Report, side: Side| {
            r.sentences.iter().flat_map(|x| &x.triplets).any(|t| {
                related.contains(&t.finding.as_str())
                    && t.existence != "negative"
                    && t.region.starts_with(side.name())
            })
        };
        assert!(on(&s.report, side), "{}", s.report.text);
        assert!(on(&report, side.other()), "{}", report.text);
        found = true;
    }
    assert!(found);
}
