//! Reports in the style of real chest radiograph reports (sections, varied phrasing, grades,
//! pertinent negatives, uncertainty, comparisons, line wrapping), with the triplets each sentence
//! states, written from the findings (not parsed back), and reports with injected errors.

use crate::anatomy::{Anatomy, Side, View};
use crate::findings::{Blob, Findings, Grade, Zone};
use rand::seq::IndexedRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// `<region, finding, existence>`; region and finding in asg-report's vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Triplet {
    pub region: String,
    pub finding: String,
    /// "positive", "negative" or "uncertain".
    pub existence: String,
}

/// A sentence of the report with its byte span in the text and what it states.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sentence {
    pub text: String,
    pub start: usize,
    pub end: usize,
    /// "findings" or "impression".
    pub section: String,
    pub triplets: Vec<Triplet>,
}

/// A report and its sentences.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub text: String,
    pub sentences: Vec<Sentence>,
}

impl Report {
    /// The report-level existence of each finding named (positive beats uncertain beats negative),
    /// from the FINDINGS and IMPRESSION sentences.
    pub fn tags(&self) -> std::collections::BTreeMap<String, String> {
        let rank = |e: &str| match e {
            "positive" => 3,
            "uncertain" => 2,
            _ => 1,
        };
        let mut out = std::collections::BTreeMap::<String, String>::new();
        for t in self.sentences.iter().flat_map(|s| &s.triplets) {
            let e = out
                .entry(t.finding.clone())
                .or_insert_with(|| t.existence.clone());
            if rank(&t.existence) > rank(e) {
                *e = t.existence.clone();
            }
        }
        out
    }
}

struct S {
    text: String,
    triplets: Vec<Triplet>,
}

fn t(region: impl Into<String>, finding: &str, existence: &str) -> Triplet {
    Triplet {
        region: region.into(),
        finding: finding.into(),
        existence: existence.into(),
    }
}

fn cap(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn pick<'a>(rng: &mut ChaCha8Rng, xs: &[&'a str]) -> &'a str {
    xs.choose(rng).copied().unwrap_or("")
}

fn grade_word(rng: &mut ChaCha8Rng, g: Grade) -> &'static str {
    match g {
        Grade::Small => pick(rng, &["small", "small", "trace", "minimal"]),
        Grade::Moderate => pick(rng, &["moderate", "moderate-sized", "moderate"]),
        Grade::Large => pick(rng, &["large", "large", "sizable"]),
    }
}

/// Words for a zone, and the region they name.
fn place(rng: &mut ChaCha8Rng, side: Side, zone: Zone) -> String {
    let s = side.name();
    let abbr = |z: char| format!("{}{}L", if side == Side::Right { 'R' } else { 'L' }, z);
    match zone {
        Zone::Upper => pick(rng, &["upper lobe", "upper lung", "abbr"])
            .replace("abbr", &abbr('U'))
            .pipe(|w| if w.len() == 3 { w } else { format!("{s} {w}") }),
        Zone::Mid => {
            if side == Side::Right {
                pick(rng, &["right middle lobe", "right mid lung", "RML"]).to_string()
            } else {
                pick(rng, &["lingula", "left mid lung"]).to_string()
            }
        }
        Zone::Lower => {
            let mut options = vec!["lower lobe", "base", "lung base", "abbr"];
            if side == Side::Left {
                options.push("retrocardiac region");
            }
            let w = pick(rng, &options);
            match w {
                "abbr" => abbr('L'),
                "retrocardiac region" => "retrocardiac region".into(),
                other => format!("{s} {other}"),
            }
        }
    }
}

trait Pipe: Sized {
    fn pipe<T>(self, f: impl FnOnce(Self) -> T) -> T {
        f(self)
    }
}
impl<T> Pipe for T {}

fn the_place(p: &str) -> String {
    format!("the {p}")
}

fn comparison(rng: &mut ChaCha8Rng, has_prior: bool) -> &'static str {
    if !has_prior || rng.random_bool(0.6) {
        ""
    } else {
        pick(
            rng,
            &[
                ", unchanged from the prior study",
                ", new since the prior radiograph",
                ", slightly increased compared to the prior exam",
                ", similar to prior",
            ],
        )
    }
}

fn effusion_sentences(rng: &mut ChaCha8Rng, f: &Findings, prior: bool) -> Vec<S> {
    let sides: Vec<(Side, f64)> = Side::BOTH
        .into_iter()
        .filter_map(|s| f.effusion[s.index()].map(|v| (s, v)))
        .collect();
    let tri = |s: Side| {
        t(
            format!("{} costophrenic angle", s.name()),
            "pleural effusion",
            "positive",
        )
    };
    match sides.as_slice() {
        [] => vec![],
        [(side, frac)] => {
            let g = grade_word(rng, Findings::effusion_grade(*frac));
            let s = side.name();
            let c = comparison(rng, prior);
            let text = match rng.random_range(0..4) {
                0 => format!("There is a {g} {s} pleural effusion{c}."),
                1 => format!("{} {s} pleural effusion{c}.", cap(g)),
                2 => format!("A {g} {s} effusion is present{c}."),
                _ => {
                    let text = format!(
                        "{} {s} pleural effusion with blunting of the {s} costophrenic angle.",
                        cap(g)
                    );
                    return vec![S {
                        text,
                        triplets: vec![
                            tri(*side),
                            t(format!("{s} costophrenic angle"), "blunt", "positive"),
                        ],
                    }];
                }
            };
            vec![S {
                text,
                triplets: vec![tri(*side)],
            }]
        }
        _ => {
            let g = grade_word(
                rng,
                Findings::effusion_grade((sides[0].1 + sides[1].1) / 2.0),
            );
            let text = match rng.random_range(0..3) {
                0 => format!("{} bilateral pleural effusions.", cap(g)),
                1 => format!("There are {g} bilateral pleural effusions."),
                _ => {
                    let (big, small) = if sides[0].1 >= sides[1].1 {
                        ("right", "left")
                    } else {
                        ("left", "right")
                    };
                    format!(
                        "{} bilateral pleural effusions, {big} greater than {small}.",
                        cap(g)
                    )
                }
            };
            vec![S {
                text,
                triplets: vec![tri(Side::Right), tri(Side::Left)],
            }]
        }
    }
}

fn consolidation_sentence(rng: &mut ChaCha8Rng, b: &Blob, prior: bool) -> S {
    let p = place(rng, b.side, b.zone);
    let region = b.zone.region(b.side);
    let c = comparison(rng, prior);
    match rng.random_range(0..5) {
        0 => S {
            text: format!("Focal consolidation in {}{c}.", the_place(&p)),
            triplets: vec![t(&region, "consolidation", "positive")],
        },
        1 => S {
            text: format!(
                "There is an opacity in {}, concerning for pneumonia.",
                the_place(&p)
            ),
            triplets: vec![
                t(&region, "opacity", "positive"),
                t(&region, "pneumonia", "uncertain"),
            ],
        },
        2 => S {
            text: format!("{} consolidation{c}.", cap(&p)),
            triplets: vec![t(&region, "consolidation", "positive")],
        },
        3 => S {
            text: format!(
                "Airspace consolidation in {}, compatible with pneumonia.",
                the_place(&p)
            ),
            triplets: vec![
                t(&region, "consolidation", "positive"),
                t(&region, "pneumonia", "positive"),
            ],
        },
        _ => S {
            text: format!(
                "Patchy opacity at {} may represent atelectasis or pneumonia.",
                the_place(&p)
            ),
            triplets: vec![
                t(&region, "opacity", "positive"),
                t(&region, "atelectasis", "uncertain"),
                t(&region, "pneumonia", "uncertain"),
            ],
        },
    }
}

fn atelectasis_sentence(rng: &mut ChaCha8Rng, b: &Blob) -> S {
    let p = place(rng, b.side, b.zone);
    let region = b.zone.region(b.side);
    let text = match rng.random_range(0..4) {
        0 => format!("Plate-like atelectasis at {}.", the_place(&p)),
        1 => format!("{} linear atelectasis.", cap(&p)),
        2 => format!("Minimal atelectasis in {}.", the_place(&p)),
        _ => format!("Subsegmental atelectasis at {}.", the_place(&p)),
    };
    S {
        text,
        triplets: vec![t(region, "atelectasis", "positive")],
    }
}

fn lesion_sentence(rng: &mut ChaCha8Rng, b: &Blob, mass: bool) -> S {
    let p = place(rng, b.side, b.zone);
    let region = b.zone.region(b.side);
    if mass {
        let cm = (b.radius * 2.0 / 10.0 * 10.0).round() / 10.0;
        S {
            text: format!(
                "{cm:.1} cm mass in {}, concerning for malignancy; recommend chest CT.",
                the_place(&p)
            ),
            triplets: vec![t(region, "mass", "positive")],
        }
    } else {
        let mm = (b.radius * 2.0).round() as u32;
        let text = match rng.random_range(0..3) {
            0 => format!("{mm} mm nodule in {}.", the_place(&p)),
            1 => format!("A {mm} mm nodular opacity projects over {}.", the_place(&p)),
            _ => format!("There is a {mm} mm pulmonary nodule in {}.", the_place(&p)),
        };
        S {
            text,
            triplets: vec![t(region, "nodule", "positive")],
        }
    }
}

fn ordinal(n: usize) -> &'static str {
    [
        "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth",
        "tenth", "eleventh",
    ]
    .get(n.saturating_sub(1))
    .copied()
    .unwrap_or("lower")
}

/// The FINDINGS sentences for what is there, then the pertinent negatives.
fn findings_sentences(
    rng: &mut ChaCha8Rng,
    a: &Anatomy,
    f: &Findings,
    prior: bool,
    silent: &[&str],
) -> Vec<S> {
    let mut out = Vec::new();
    // Support devices first, as reports usually list them.
    if f.endotracheal_tube {
        let cm = rng.random_range(3..7);
        out.push(S {
            text: pick(
                rng,
                &[
                    "Endotracheal tube terminates {cm} cm above the carina.",
                    "The endotracheal tube tip is {cm} cm above the carina.",
                    "ET tube in standard position, {cm} cm above the carina.",
                ],
            )
            .replace("{cm}", &cm.to_string()),
            triplets: vec![t("trachea", "tube", "positive")],
        });
    }
    if f.enteric_tube {
        out.push(S {
            text: pick(
                rng,
                &[
                    "Enteric tube courses below the diaphragm with the tip in the stomach.",
                    "A nasogastric tube extends into the stomach.",
                    "Feeding tube terminates in the stomach.",
                ],
            )
            .into(),
            triplets: vec![t("abdomen", "tube", "positive")],
        });
    }
    if let Some(side) = f.central_line {
        let s = side.name();
        let vein = pick(rng, &["internal jugular", "subclavian"]);
        let tip = pick(
            rng,
            &["the mid SVC", "the cavoatrial junction", "the lower SVC"],
        );
        out.push(S {
            text: format!(
                "{} {vein} central venous catheter terminates in {tip}.",
                cap(s)
            ),
            triplets: vec![t("svc", "line", "positive")],
        });
    }
    if let Some(side) = f.chest_tube {
        out.push(S {
            text: format!(
                "{} chest tube in place{}.",
                cap(&format!("{}-sided", side.name())),
                if rng.random_bool(0.5) {
                    " with the tip at the apex"
                } else {
                    ""
                }
            ),
            triplets: vec![t(format!("{} lung", side.name()), "tube", "positive")],
        });
    }
    if let Some(side) = f.pacemaker {
        out.push(S {
            text: format!(
                "{}-sided pacemaker with leads terminating in the right atrium and right ventricle.",
                cap(side.name())
            ),
            triplets: vec![
                t("cardiac silhouette", "pacemaker", "positive"),
                t("cardiac silhouette", "wire", "positive"),
            ],
        });
    }
    // The heart.
    if f.cardiomegaly {
        let ctr = a.cardiothoracic_ratio();
        let g = if ctr < 0.57 {
            "mild"
        } else if ctr < 0.62 {
            "moderate"
        } else {
            "severe"
        };
        let text = match rng.random_range(0..3) {
            0 => format!("{} cardiomegaly{}.", cap(g), comparison(rng, prior)),
            1 => format!("There is {g} enlargement of the cardiac silhouette."),
            _ => format!("The heart is {g}ly enlarged.").replace("severely", "markedly"),
        };
        out.push(S {
            text,
            triplets: vec![t("cardiac silhouette", "cardiomegaly", "positive")],
        });
    } else if !silent.contains(&"cardiomegaly") {
        out.push(S {
            text: pick(
                rng,
                &[
                    "Heart size is normal.",
                    "The heart size is within normal limits.",
                    "Normal heart size.",
                    "The cardiac silhouette is normal in size.",
                ],
            )
            .into(),
            triplets: vec![t("cardiac silhouette", "cardiomegaly", "negative")],
        });
    }
    if let Some(e) = f.edema {
        let g = if e < 0.55 { "mild" } else { "moderate" };
        let text = match rng.random_range(0..3) {
            0 => format!("{} pulmonary edema.", cap(g)),
            1 => format!("There is {g} interstitial edema with perihilar haziness."),
            _ => format!("Pulmonary vascular congestion with {g} interstitial edema."),
        };
        out.push(S {
            text,
            triplets: vec![
                t("right lung", "edema", "positive"),
                t("left lung", "edema", "positive"),
            ],
        });
    }
    for c in &f.consolidation {
        out.push(consolidation_sentence(rng, c, prior));
    }
    for b in &f.atelectasis {
        out.push(atelectasis_sentence(rng, b));
    }
    out.extend(effusion_sentences(rng, f, prior));
    if let Some((side, frac)) = f.pneumothorax {
        let g = grade_word(rng, Findings::pneumothorax_grade(frac));
        let s = side.name();
        let (text, region) = if rng.random_bool(0.5) {
            (
                format!("{} {s} apical pneumothorax.", cap(g)),
                format!("{s} apical zone"),
            )
        } else {
            (
                format!("There is a {g} {s} pneumothorax{}.", comparison(rng, prior)),
                format!("{s} lung"),
            )
        };
        out.push(S {
            text,
            triplets: vec![t(region, "pneumothorax", "positive")],
        });
    }
    for n in &f.nodules {
        out.push(lesion_sentence(rng, n, false));
    }
    for m in &f.masses {
        out.push(lesion_sentence(rng, m, true));
    }
    if let Some(side) = f.elevated_hemidiaphragm {
        out.push(S {
            text: format!("Elevation of the {} hemidiaphragm.", side.name()),
            triplets: vec![],
        });
    }
    if let Some((side, n, _)) = f.rib_fracture {
        out.push(S {
            text: format!(
                "Acute fracture of the {} {} posterior rib.",
                side.name(),
                ordinal(n)
            ),
            triplets: vec![t(format!("{} lung", side.name()), "fracture", "positive")],
        });
    }

    // Pertinent negatives for what is not there.
    let lungs_clear = f.consolidation.is_empty()
        && f.atelectasis.is_empty()
        && f.edema.is_none()
        && f.nodules.is_empty()
        && f.masses.is_empty();
    if lungs_clear && rng.random_bool(0.6) {
        out.push(S {
            text: pick(
                rng,
                &[
                    "The lungs are clear.",
                    "Lungs are clear.",
                    "The lungs are well expanded and clear.",
                ],
            )
            .into(),
            triplets: vec![
                t("right lung", "opacity", "negative"),
                t("left lung", "opacity", "negative"),
            ],
        });
    }
    let mut negated: Vec<&str> = Vec::new();
    if f.consolidation.is_empty() {
        negated.push("consolidation");
    }
    if f.effusion == [None, None] {
        negated.push("pleural effusion");
    }
    if f.pneumothorax.is_none() {
        negated.push("pneumothorax");
    }
    if f.edema.is_none() && rng.random_bool(0.4) {
        negated.push("edema");
    }
    negated.retain(|n| !silent.contains(n));
    if !negated.is_empty() {
        let word = |tag: &'static str| -> &'static str {
            match tag {
                "consolidation" => "focal consolidation",
                "edema" => "pulmonary edema",
                other => other,
            }
        };
        let words: Vec<&str> = negated.iter().map(|n| word(n)).collect();
        let list = match words.len() {
            1 => words[0].to_string(),
            2 => format!("{} or {}", words[0], words[1]),
            _ => format!(
                "{}, or {}",
                words[..words.len() - 1].join(", "),
                words[words.len() - 1]
            ),
        };
        let text = match rng.random_range(0..3) {
            0 => format!("No {list}."),
            1 => format!("There is no {list}."),
            _ => format!("No evidence of {list}."),
        };
        out.push(S {
            text,
            triplets: negated
                .iter()
                .map(|n| t("unspecified", n, "negative"))
                .collect(),
        });
    }
    if f.rib_fracture.is_none() && rng.random_bool(0.4) {
        out.push(match rng.random_range(0..3) {
            0 => S {
                text: "No displaced rib fracture.".into(),
                triplets: vec![t("unspecified", "fracture", "negative")],
            },
            1 => S {
                text: "No acute osseous abnormality.".into(),
                triplets: vec![],
            },
            _ => S {
                text: "The osseous structures are intact.".into(),
                triplets: vec![],
            },
        });
    }
    out
}

/// A short IMPRESSION: the important positives, or a normal statement.
fn impression(rng: &mut ChaCha8Rng, findings: &[S], f: &Findings) -> Vec<S> {
    let acute = !f.consolidation.is_empty()
        || f.effusion != [None, None]
        || f.pneumothorax.is_some()
        || f.edema.is_some()
        || f.cardiomegaly
        || !f.masses.is_empty()
        || !f.nodules.is_empty()
        || !f.atelectasis.is_empty();
    if !acute {
        let text = pick(
            rng,
            &[
                "No acute cardiopulmonary process.",
                "No acute intrathoracic abnormality.",
                "No acute cardiopulmonary abnormality.",
            ],
        );
        let mut out = vec![S {
            text: text.into(),
            triplets: vec![],
        }];
        if f.has_devices() {
            out.push(S {
                text: "Support devices as described.".into(),
                triplets: vec![],
            });
        }
        return out;
    }
    // Repeat the positive sentences that carry a finding other than devices.
    findings
        .iter()
        .filter(|s| {
            s.triplets.iter().any(|t| {
                t.existence != "negative"
                    && !matches!(
                        t.finding.as_str(),
                        "tube" | "line" | "pacemaker" | "wire" | "fracture"
                    )
            })
        })
        .take(3)
        .map(|s| S {
            text: s.text.clone(),
            triplets: s.triplets.clone(),
        })
        .collect()
}

/// Writes the report for an image: header sections, FINDINGS, IMPRESSION; wrapped at ~72 columns.
pub fn write_report(rng: &mut ChaCha8Rng, a: &Anatomy, f: &Findings) -> Report {
    write_report_with(rng, a, f, &[])
}

/// As [`write_report`], with no pertinent negative written for the findings in `silent`.
pub fn write_report_with(
    rng: &mut ChaCha8Rng,
    a: &Anatomy,
    f: &Findings,
    silent: &[&str],
) -> Report {
    let prior = rng.random_bool(0.5);
    let exam = match a.view {
        View::Pa => "CHEST (PA AND LAT)",
        View::Ap => "CHEST (PORTABLE AP)",
    };
    let indication = pick(
        rng,
        &[
            "___ year old with shortness of breath.",
            "Cough and fever, evaluate for pneumonia.",
            "Chest pain.",
            "Evaluate for interval change.",
            "Line placement.",
            "Preoperative evaluation.",
        ],
    );
    let comparison = if prior {
        "Chest radiograph from ___."
    } else {
        "None."
    };
    let found = findings_sentences(rng, a, f, prior, silent);
    let imp = impression(rng, &found, f);
    let mut text = format!(
        "                                 FINAL REPORT\n EXAMINATION:  {exam}\n\n INDICATION:  {indication}\n\n COMPARISON:  {comparison}\n\n FINDINGS:\n\n "
    );
    let mut sentences = Vec::new();
    let mut push_section = |text: &mut String, items: &[S], section: &str| {
        let begin = text.len();
        for (k, s) in items.iter().enumerate() {
            if k > 0 {
                text.push_str("  ");
            }
            let start = text.len();
            text.push_str(&s.text);
            sentences.push((start, text.len(), section.to_string(), s.triplets.clone()));
        }
        // Wrap: spaces become line breaks (same byte length, so spans stay valid).
        let mut col = 0;
        let mut bytes: Vec<u8> = text.as_bytes()[begin..].to_vec();
        let mut last_space = None;
        for i in 0..bytes.len() {
            col += 1;
            if bytes[i] == b' ' {
                last_space = Some(i);
            }
            if col > 72 {
                if let Some(sp) = last_space.take() {
                    bytes[sp] = b'\n';
                    col = i - sp;
                }
            }
        }
        text.truncate(begin);
        text.push_str(&String::from_utf8_lossy(&bytes));
    };
    push_section(&mut text, &found, "findings");
    text.push_str("\n\n IMPRESSION:\n\n ");
    push_section(&mut text, &imp, "impression");
    text.push('\n');
    let sentences = sentences
        .into_iter()
        .map(|(start, end, section, triplets)| Sentence {
            text: text[start..end].to_string(),
            start,
            end,
            section,
            triplets,
        })
        .collect();
    Report { text, sentences }
}

/// The kinds of error injected into a report, to measure the report check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// A finding reported on the wrong side.
    SideSwapped,
    /// A finding that is there, left out.
    FindingOmitted,
    /// A finding that is there, reported as absent.
    NegationFlipped,
    /// A finding that is not there, reported.
    FindingInvented,
}

/// What was changed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InjectedError {
    pub kind: ErrorKind,
    pub finding: String,
    pub side: Option<Side>,
}

/// Changes the findings the way a reporting slip would, or None when this study offers no
/// finding for that kind of slip.
pub fn inject(
    rng: &mut ChaCha8Rng,
    a: &Anatomy,
    f: &Findings,
    kind: ErrorKind,
) -> Option<(Findings, InjectedError)> {
    let mut g = f.clone();
    let err = |finding: &str, side: Option<Side>| InjectedError {
        kind,
        finding: finding.into(),
        side,
    };
    match kind {
        ErrorKind::SideSwapped => {
            let mut options: Vec<(&str, Side)> = Vec::new();
            for s in Side::BOTH {
                if f.effusion[s.index()].is_some() && f.effusion[s.other().index()].is_none() {
                    options.push(("pleural effusion", s));
                }
            }
            for c in &f.consolidation {
                options.push(("consolidation", c.side));
            }
            if let Some((s, _)) = f.pneumothorax {
                options.push(("pneumothorax", s));
            }
            for n in &f.nodules {
                options.push(("nodule", n.side));
            }
            let (finding, side) = *options.choose(rng)?;
            let mirror = |b: &mut Blob| {
                b.side = b.side.other();
                b.center.0 = 2.0 * a.mid - b.center.0;
            };
            match finding {
                "pleural effusion" => {
                    g.effusion[side.other().index()] = g.effusion[side.index()].take();
                }
                "consolidation" => g
                    .consolidation
                    .iter_mut()
                    .filter(|c| c.side == side)
                    .for_each(mirror),
                "pneumothorax" => g.pneumothorax = f.pneumothorax.map(|(s, v)| (s.other(), v)),
                _ => g
                    .nodules
                    .iter_mut()
                    .filter(|c| c.side == side)
                    .for_each(mirror),
            }
            Some((g, err(finding, Some(side))))
        }
        ErrorKind::FindingOmitted | ErrorKind::NegationFlipped => {
            // Negation can only be written for findings the report negates when absent.
            let mut options: Vec<&str> = vec![];
            if f.effusion != [None, None] {
                options.push("pleural effusion");
            }
            if !f.consolidation.is_empty() {
                options.push("consolidation");
            }
            if f.pneumothorax.is_some() {
                options.push("pneumothorax");
            }
            if f.cardiomegaly {
                options.push("cardiomegaly");
            }
            if kind == ErrorKind::FindingOmitted {
                if !f.nodules.is_empty() {
                    options.push("nodule");
                }
                if !f.atelectasis.is_empty() {
                    options.push("atelectasis");
                }
            }
            let finding = *options.choose(rng)?;
            match finding {
                "pleural effusion" => g.effusion = [None, None],
                "consolidation" => g.consolidation.clear(),
                "pneumothorax" => g.pneumothorax = None,
                "cardiomegaly" => g.cardiomegaly = false,
                "nodule" => g.nodules.clear(),
                _ => g.atelectasis.clear(),
            }
            Some((g, err(finding, None)))
        }
        ErrorKind::FindingInvented => {
            let mut options: Vec<&str> = vec![];
            if f.effusion == [None, None] {
                options.push("pleural effusion");
            }
            if f.pneumothorax.is_none() {
                options.push("pneumothorax");
            }
            if f.consolidation.is_empty() {
                options.push("consolidation");
            }
            let finding = *options.choose(rng)?;
            let side = if rng.random_bool(0.5) {
                Side::Right
            } else {
                Side::Left
            };
            match finding {
                "pleural effusion" => g.effusion[side.index()] = Some(0.15),
                "pneumothorax" => g.pneumothorax = Some((side, 0.15)),
                _ => {
                    let l = &a.lungs[side.index()];
                    g.consolidation.push(Blob {
                        side,
                        zone: Zone::Lower,
                        center: ((l.hilum.0 + l.cp_angle.0) / 2.0, l.dome.1 - 30.0),
                        radius: 30.0,
                    })
                }
            }
            Some((g, err(finding, Some(side))))
        }
    }
}
