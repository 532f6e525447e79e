//! The report check: each sentence and `<region, finding, existence>` triplet of a report set
//! against what the model sees, with its evidence; plus the findings the report never mentions.
//!
//! Rules (thresholds from the manifest; "the region's probability" is the largest of the region
//! and the regions inside it, so a claim about a lung is supported by a finding in one of its
//! zones). A verdict that accuses the report needs the model to be *confident* (a probability
//! above which 90% of validation cases were positive), one that doubts it needs the model to be
//! *doubtful* (below which only 10% of validation positives fell); in between it is uncertain:
//! - positive claim: supported when the region (or, without a region, the image) reaches the
//!   threshold; laterality mismatch when the mirrored region is confident; uncertain when the
//!   image shows the finding but not in that region; unsupported when doubtful; else uncertain;
//! - negative claim: contradicted when the region (or the image) is confident; uncertain above
//!   the threshold; else supported;
//! - hedged claim: uncertain;
//! - omissions: findings present at image level, confidently, that no sentence of the findings
//!   or impression mentions (a finding of the same CheXpert class counts: "pacemaker" mentions a
//!   device).
//!
//! Only the findings and impression sections are checked (an indication's "evaluate for
//! pneumonia" claims nothing).

use crate::analysis::Analysis;
use crate::runtime::ModelBundle;
use asg_report::{Existence, UNSPECIFIED};
use serde::{Deserialize, Serialize};

/// Version of the JSON layout of [`ReportCheck`].
pub const REPORT_CHECK_SCHEMA_VERSION: u32 = 1;

/// What the image says about a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// The image agrees.
    Supported,
    /// The statement is hedged, or the model sees the finding elsewhere than the region named.
    Uncertain,
    /// The report asserts what the image does not show there.
    Unsupported,
    /// The image shows it on the other side.
    LateralityMismatch,
    /// The report denies what the image shows.
    Contradicted,
    /// The model has no output for this finding, or the sentence is outside findings/impression.
    NotAssessed,
    /// The sentence states no finding.
    NoClaim,
}

impl Verdict {
    /// How much a reader should look at it (the sentence takes its triplets' worst).
    fn severity(self) -> u8 {
        match self {
            Verdict::Contradicted => 6,
            Verdict::LateralityMismatch => 5,
            Verdict::Unsupported => 4,
            Verdict::Uncertain => 3,
            Verdict::Supported => 2,
            Verdict::NotAssessed => 1,
            Verdict::NoClaim => 0,
        }
    }
}

/// Why a verdict was given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// The region looked at (the claimed one, or for a claim without region the finding's most
    /// probable region).
    pub region: Option<String>,
    /// Its box in the original image's pixels.
    pub bbox: Option<[f32; 4]>,
    /// The probability the verdict rests on, and its threshold.
    pub probability: f32,
    pub threshold: f32,
    /// The image-level probability of the finding.
    pub image_probability: f32,
    /// The mirrored region's probability, for lateral claims.
    pub other_side: Option<(String, f32)>,
    /// Cosine similarity of the sentence's embedding and the region's (text.onnx and
    /// image.onnx); None without a text model.
    pub similarity: Option<f32>,
}

/// One checked triplet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TripletCheck {
    pub region: String,
    pub finding: String,
    pub existence: Existence,
    /// Byte span of the finding's words in the report.
    pub start: usize,
    pub end: usize,
    pub verdict: Verdict,
    pub evidence: Option<Evidence>,
    /// The verdict in words.
    pub explanation: String,
}

/// One checked sentence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SentenceCheck {
    pub text: String,
    pub start: usize,
    pub end: usize,
    pub section: Option<String>,
    /// The worst of its triplets' verdicts.
    pub verdict: Verdict,
    pub triplets: Vec<TripletCheck>,
    /// The region most similar to the sentence (text and region embeddings), for hovering.
    pub best_region: Option<(String, f32)>,
}

/// A finding the image shows that the report never mentions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Omission {
    pub finding: String,
    pub probability: f32,
    pub threshold: f32,
    pub regions: Vec<String>,
    /// The most probable region's box in the original image's pixels.
    pub bbox: Option<[f32; 4]>,
}

/// The whole check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportCheck {
    pub schema_version: u32,
    pub sentences: Vec<SentenceCheck>,
    pub omissions: Vec<Omission>,
    /// How many triplets got each verdict, and the omissions.
    pub counts: std::collections::BTreeMap<String, usize>,
}

/// The report check's bars for one finding: confident >= the threshold >= doubtful (the plain
/// thresholds where the bundle has no check thresholds).
struct Bars {
    image_confident: f32,
    image_doubtful: f32,
    region_confident: f32,
    region_doubtful: f32,
}

impl Bars {
    fn of(m: &asg_bundle::Manifest, finding: &str) -> Self {
        let (ti, tr) = (m.threshold(finding), m.region_threshold(finding));
        let get = |map: Option<&std::collections::BTreeMap<String, f32>>, default: f32| {
            map.and_then(|x| x.get(finding)).copied().unwrap_or(default)
        };
        let c = m.check_thresholds.as_ref();
        Self {
            image_confident: get(c.map(|c| &c.image_confident), ti).max(ti),
            image_doubtful: get(c.map(|c| &c.image_doubtful), ti).min(ti),
            region_confident: get(c.map(|c| &c.region_confident), tr).max(tr),
            region_doubtful: get(c.map(|c| &c.region_doubtful), tr).min(tr),
        }
    }
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The region on the other side ("left lower lung zone" <-> "right lower lung zone").
fn mirrored(region: &str) -> Option<String> {
    let m = if let Some(rest) = region.strip_prefix("left ") {
        format!("right {rest}")
    } else if let Some(rest) = region.strip_prefix("right ") {
        format!("left {rest}")
    } else {
        return None;
    };
    asg_report::region_index(&m).map(|_| m)
}

/// The region and every region inside it (by the parent relation).
fn with_descendants(region: &str) -> Vec<&'static str> {
    asg_report::REGIONS
        .iter()
        .map(|r| r.name)
        .filter(|&name| {
            let mut cur = Some(name);
            while let Some(c) = cur {
                if c == region {
                    return true;
                }
                cur = asg_report::region_parent(c);
            }
            false
        })
        .collect()
}

impl ModelBundle {
    /// Checks `report` against `analysis` (made by this bundle). Region-sentence similarities
    /// need the bundle's text model; without one they are None.
    pub fn check_report(
        &self,
        analysis: &Analysis,
        report: &str,
    ) -> Result<ReportCheck, crate::PluginError> {
        check_report_with(
            &self.manifest,
            self.text_model.as_ref(),
            &self.source,
            analysis,
            report,
        )
    }
}

/// [`ModelBundle::check_report`] with the parts it needs: the manifest's names and thresholds,
/// and the text model if any (`source` names the bundle in errors).
pub fn check_report_with(
    m: &asg_bundle::Manifest,
    text_model: Option<&crate::runtime::TextModel>,
    source: &str,
    analysis: &Analysis,
    report: &str,
) -> Result<ReportCheck, crate::PluginError> {
    {
        let parsed = asg_report::parse(report);
        let region_emb = analysis
            .outputs
            .iter()
            .find(|o| o.name == "region_embeddings");
        // An analysis read back from JSON written without its raw outputs would be checked
        // without the image-text evidence, silently: refuse it instead.
        if text_model.is_some()
            && region_emb.is_none()
            && m.outputs.iter().any(|o| o.name == "region_embeddings")
        {
            return Err(crate::PluginError::NoRawOutputs {
                bundle: source.to_string(),
            });
        }
        let emb_dim = region_emb
            .map(|o| o.values.len() / m.regions.len().max(1))
            .unwrap_or(0);
        let region_vec = |r: usize| -> Option<&[f32]> {
            region_emb.and_then(|o| o.values.get(r * emb_dim..(r + 1) * emb_dim))
        };
        let checked_section = |s: &Option<String>| {
            s.as_deref()
                .is_none_or(|sec| matches!(sec, "findings" | "impression"))
        };
        // Sentence embeddings, for the checked sentences.
        let spans: Vec<(usize, usize)> =
            parsed.sentences.iter().map(|s| (s.start, s.end)).collect();
        let sentence_emb = match text_model {
            Some(t) if emb_dim > 0 => {
                Some(
                    t.embed(report, &spans)
                        .map_err(|e| crate::PluginError::Model {
                            bundle: source.to_string(),
                            reason: format!("text model failed: {e:#}"),
                        })?,
                )
            }
            _ => None,
        };
        let region_of = |name: &str| analysis.regions.iter().position(|r| r.name == name);
        let mut sentences = Vec::new();
        let mut mentioned = std::collections::BTreeSet::new();
        let mut mismatched = std::collections::BTreeSet::new();
        let mut counts = std::collections::BTreeMap::new();
        for (si, s) in parsed.sentences.iter().enumerate() {
            let semb = sentence_emb
                .as_ref()
                .and_then(|e| e.spans.get(si))
                .filter(|v| !v.is_empty());
            let similarity = |r: usize| -> Option<f32> { Some(dot(semb?, region_vec(r)?)) };
            let best_region = semb.and_then(|_| {
                (0..analysis.regions.len())
                    .filter_map(|r| similarity(r).map(|v| (r, v)))
                    .max_by(|a, b| a.1.total_cmp(&b.1))
                    .map(|(r, v)| (analysis.regions[r].name.clone(), v))
            });
            let assess = checked_section(&s.section);
            let mut triplets = Vec::new();
            for t in &s.triplets {
                if assess {
                    mentioned.insert(t.finding.clone());
                }
                let scored = m.findings.iter().position(|n| *n == t.finding);
                let f = scored.filter(|_| m.is_assessed(&t.finding));
                let (verdict, evidence, explanation) = match (assess, f) {
                    (false, _) => (
                        Verdict::NotAssessed,
                        None,
                        "outside the findings and impression".to_string(),
                    ),
                    (true, None) => (
                        Verdict::NotAssessed,
                        None,
                        if scored.is_some() {
                            format!("the model was not trained to assess {}", t.finding)
                        } else {
                            format!("the model does not score {}", t.finding)
                        },
                    ),
                    (true, Some(f)) => {
                        let image_p = analysis
                            .findings
                            .get(f)
                            .map(|x| x.probability)
                            .unwrap_or(0.0);
                        let image_t = m.threshold(&t.finding);
                        let region_t = m.region_threshold(&t.finding);
                        let bars = Bars::of(m, &t.finding);
                        let regional = t.region != UNSPECIFIED && !analysis.regions.is_empty();
                        let p_region = |name: &str| -> f32 {
                            with_descendants(name)
                                .iter()
                                .filter_map(|n| region_of(n))
                                .filter_map(|r| analysis.regions[r].probabilities.get(f).copied())
                                .fold(0.0, f32::max)
                        };
                        let (region, p, thr) = if regional {
                            (Some(t.region.clone()), p_region(&t.region), region_t)
                        } else {
                            let top = analysis
                                .findings
                                .get(f)
                                .and_then(|x| x.regions.first().cloned());
                            (top, image_p, image_t)
                        };
                        let other = if regional {
                            mirrored(&t.region).map(|o| {
                                let po = p_region(&o);
                                (o, po)
                            })
                        } else {
                            None
                        };
                        let ri = region.as_deref().and_then(region_of);
                        let evidence = Evidence {
                            region: region.clone(),
                            bbox: ri.map(|r| analysis.regions[r].bbox),
                            probability: p,
                            threshold: thr,
                            image_probability: image_p,
                            other_side: other.clone(),
                            similarity: ri.and_then(similarity),
                        };
                        let place = region.clone().unwrap_or_else(|| "the image".into());
                        // Accusing the report needs a confident model, doubting it a doubtful
                        // one; in between the verdict is "uncertain".
                        let (confident, doubtful) = if regional {
                            (bars.region_confident, bars.region_doubtful)
                        } else {
                            (bars.image_confident, bars.image_doubtful)
                        };
                        let (v, why) = match t.existence {
                            Existence::Uncertain => (
                                Verdict::Uncertain,
                                format!("hedged in the report; the model gives {p:.2} in {place}"),
                            ),
                            Existence::Positive if p >= thr => (
                                Verdict::Supported,
                                format!("{} in {place}: {p:.2} (threshold {thr:.2})", t.finding),
                            ),
                            Existence::Positive => match &other {
                                Some((o, po)) if *po >= bars.region_confident => (
                                    Verdict::LateralityMismatch,
                                    format!(
                                        "{} is seen in the {o} ({po:.2}), not the {place} ({p:.2})",
                                        t.finding
                                    ),
                                ),
                                _ if regional && image_p >= image_t => (
                                    Verdict::Uncertain,
                                    format!(
                                        "{} is seen in the image ({image_p:.2}) but not in the {place} ({p:.2})",
                                        t.finding
                                    ),
                                ),
                                _ if p < doubtful => (
                                    Verdict::Unsupported,
                                    format!(
                                        "the model does not see {} in {place} ({p:.2}, below {doubtful:.2})",
                                        t.finding
                                    ),
                                ),
                                _ => (
                                    Verdict::Uncertain,
                                    format!(
                                        "the model is unsure of {} in {place} ({p:.2}, threshold {thr:.2})",
                                        t.finding
                                    ),
                                ),
                            },
                            Existence::Negative if p >= confident => (
                                Verdict::Contradicted,
                                format!(
                                    "denied, but the model sees {} in {place} ({p:.2} >= {confident:.2})",
                                    t.finding
                                ),
                            ),
                            Existence::Negative if p >= thr => (
                                Verdict::Uncertain,
                                format!(
                                    "denied; the model leans to {} in {place} ({p:.2}) but is not confident",
                                    t.finding
                                ),
                            ),
                            Existence::Negative => (
                                Verdict::Supported,
                                format!("absent as stated ({p:.2} < {thr:.2})"),
                            ),
                        };
                        if v == Verdict::LateralityMismatch {
                            mismatched.insert(t.finding.clone());
                        }
                        (v, Some(evidence), why)
                    }
                };
                *counts
                    .entry(format!("{verdict:?}").to_lowercase())
                    .or_insert(0usize) += 1;
                triplets.push(TripletCheck {
                    region: t.region.clone(),
                    finding: t.finding.clone(),
                    existence: t.existence,
                    start: t.start,
                    end: t.end,
                    verdict,
                    evidence,
                    explanation,
                });
            }
            let verdict = triplets
                .iter()
                .map(|t| t.verdict)
                .max_by_key(|v| v.severity())
                .unwrap_or(if assess {
                    Verdict::NoClaim
                } else {
                    Verdict::NotAssessed
                });
            sentences.push(SentenceCheck {
                text: s.text.clone(),
                start: s.start,
                end: s.end,
                section: s.section.clone(),
                verdict,
                triplets,
                best_region,
            });
        }
        // A finding counts as mentioned when the report names it or another finding of the same
        // CheXpert class ("pacemaker" mentions a "device").
        let class_of = |name: &str| {
            asg_report::lexicon()
                .findings
                .iter()
                .find(|r| r.tag == name)
                .and_then(|r| r.chexpert)
        };
        let mentioned_classes: std::collections::BTreeSet<&str> =
            mentioned.iter().filter_map(|f| class_of(f)).collect();
        let omissions: Vec<Omission> = analysis
            .findings
            .iter()
            .filter(|f| {
                f.present
                    && m.is_assessed(&f.name)
                    && f.probability >= Bars::of(m, &f.name).image_confident
                    && !mentioned.contains(&f.name)
                    && !mismatched.contains(&f.name)
                    && !class_of(&f.name).is_some_and(|c| mentioned_classes.contains(c))
            })
            .map(|f| Omission {
                finding: f.name.clone(),
                probability: f.probability,
                threshold: m.threshold(&f.name),
                regions: f.regions.clone(),
                bbox: f
                    .regions
                    .first()
                    .and_then(|r| region_of(r))
                    .map(|r| analysis.regions[r].bbox),
            })
            .collect();
        counts.insert("omission".into(), omissions.len());
        Ok(ReportCheck {
            schema_version: REPORT_CHECK_SCHEMA_VERSION,
            sentences,
            omissions,
            counts,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::{FindingScore, ImageInfo, ModelInfo, RegionResult, Timings};

    fn manifest() -> asg_bundle::Manifest {
        let findings: Vec<String> = asg_report::FINDINGS.iter().map(|f| f.to_string()).collect();
        asg_bundle::Manifest {
            format: asg_bundle::FORMAT.into(),
            format_version: asg_bundle::FORMAT_VERSION,
            name: "t".into(),
            version: "0".into(),
            description: String::new(),
            input: asg_bundle::InputSpec {
                name: "image".into(),
                size: 64,
                letterbox: String::new(),
                mean: 0.5,
                std: 0.25,
            },
            image_model: "image.onnx".into(),
            outputs: vec![],
            thresholds: findings.iter().map(|f| (f.clone(), 0.5)).collect(),
            findings,
            files: Default::default(),
            training: asg_bundle::Training {
                data: String::new(),
                steps: 0,
                seed: 0,
                notes: String::new(),
                metrics: Default::default(),
            },
            regions: asg_report::REGIONS
                .iter()
                .map(|r| r.name.to_string())
                .collect(),
            grid: None,
            text_model: None,
            region_thresholds: Default::default(),
            check_thresholds: None,
            assessed: None,
            anatomy: None,
            crop_model: None,
            anatomy_check: None,
        }
    }

    /// An image with a right pleural effusion, a left pneumothorax and a consolidation; no
    /// cardiomegaly.
    fn analysis(m: &asg_bundle::Manifest) -> Analysis {
        let fi = |n: &str| m.findings.iter().position(|f| f == n).unwrap();
        let mut image_p = vec![0.05f32; m.findings.len()];
        image_p[fi("pleural effusion")] = 0.9;
        image_p[fi("pneumothorax")] = 0.8;
        image_p[fi("consolidation")] = 0.7;
        let regions = m
            .regions
            .iter()
            .map(|name| {
                let mut p = vec![0.05f32; m.findings.len()];
                if name.starts_with("right") {
                    p[fi("pleural effusion")] = 0.9;
                }
                if name.starts_with("left") {
                    p[fi("pneumothorax")] = 0.8;
                }
                RegionResult {
                    name: name.clone(),
                    bbox: [1.0, 2.0, 3.0, 4.0],
                    findings: m
                        .findings
                        .iter()
                        .zip(&p)
                        .filter(|(_, &v)| v >= 0.5)
                        .map(|(f, _)| f.clone())
                        .collect(),
                    probabilities: p,
                }
            })
            .collect();
        Analysis {
            schema_version: crate::ANALYSIS_SCHEMA_VERSION,
            model: ModelInfo {
                name: "t".into(),
                version: "0".into(),
                image_sha256: String::new(),
            },
            image: ImageInfo {
                width: 10,
                height: 10,
                sop_instance_uid: "1.2".into(),
                study_instance_uid: "1.3".into(),
                modality: None,
                view_position: Some("PA".into()),
                photometric_interpretation: "MONOCHROME2".into(),
                pixel_spacing_mm: None,
            },
            warnings: vec![],
            letterbox: asg_dicom::Letterbox::new(10, 10, 64),
            findings: m
                .findings
                .iter()
                .zip(&image_p)
                .map(|(n, &p)| FindingScore {
                    name: n.clone(),
                    logit: (p / (1.0 - p)).ln(),
                    probability: p,
                    present: p >= 0.5,
                    assessed: true,
                    regions: vec![],
                    heatmap: None,
                })
                .collect(),
            regions,
            anatomy: vec![],
            outputs: vec![],
            timings: Timings::default(),
        }
    }

    #[test]
    fn flagged_in_regions_too_lists_the_image_and_region_findings_once_each() {
        let m = manifest();
        let mut a = analysis(&m);
        assert_eq!(
            a.flagged_in_regions_too(),
            vec!["consolidation", "pleural effusion", "pneumothorax"]
        );
        // Nothing present on the image: the regions still flag effusion and pneumothorax.
        for f in &mut a.findings {
            f.present = false;
        }
        assert_eq!(
            a.flagged_in_regions_too(),
            vec!["pleural effusion", "pneumothorax"]
        );
        for r in &mut a.regions {
            r.findings.clear();
        }
        assert!(a.flagged_in_regions_too().is_empty());
    }

    fn verdict_of(check: &ReportCheck, finding: &str) -> Verdict {
        check
            .sentences
            .iter()
            .flat_map(|s| &s.triplets)
            .find(|t| t.finding == finding)
            .map(|t| t.verdict)
            .unwrap_or_else(|| panic!("no triplet for {finding}: {check:#?}"))
    }

    #[test]
    fn findings_the_model_was_not_trained_on_are_not_assessed() {
        let mut m = manifest();
        // Pneumothorax and consolidation had no positive training labels.
        m.assessed = Some(
            m.findings
                .iter()
                .filter(|f| *f != "pneumothorax" && *f != "consolidation")
                .cloned()
                .collect(),
        );
        let a = analysis(&m);
        let report = "FINDINGS: No pneumothorax. Small left pleural effusion.\n";
        let c = check_report_with(&m, None, "t", &a, report).unwrap();
        assert_eq!(verdict_of(&c, "pneumothorax"), Verdict::NotAssessed);
        let t = c.sentences[0].triplets.first().unwrap();
        assert!(
            t.explanation.contains("not trained to assess"),
            "{}",
            t.explanation
        );
        // Consolidation (shown by the network) is not assessed, so it is no omission.
        assert!(c.omissions.iter().all(|o| o.finding != "consolidation"));
        assert!(!m.is_assessed("consolidation") && m.is_assessed("pleural effusion"));
    }

    #[test]
    fn each_kind_of_report_error_gets_its_verdict() {
        let m = manifest();
        let a = analysis(&m);
        let report =
            "INDICATION: Evaluate for pneumonia.\n\nFINDINGS: Small left pleural effusion. \
                      No pneumothorax. The heart is enlarged.\n";
        let c = check_report_with(&m, None, "t", &a, report).unwrap();
        assert_eq!(
            verdict_of(&c, "pleural effusion"),
            Verdict::LateralityMismatch
        );
        assert_eq!(verdict_of(&c, "pneumothorax"), Verdict::Contradicted);
        assert_eq!(verdict_of(&c, "cardiomegaly"), Verdict::Unsupported);
        // The indication's "pneumonia" is not assessed.
        assert_eq!(c.sentences[0].verdict, Verdict::NotAssessed);
        // Consolidation is shown and never mentioned; the effusion is mismatched, not omitted.
        let omitted: Vec<&str> = c.omissions.iter().map(|o| o.finding.as_str()).collect();
        assert_eq!(omitted, ["consolidation"]);
        // Evidence carries the probability used and the mirrored side.
        let t = c.sentences[1]
            .triplets
            .iter()
            .find(|t| t.finding == "pleural effusion")
            .unwrap();
        let e = t.evidence.as_ref().unwrap();
        assert!(e.probability < 0.5);
        assert!(e
            .other_side
            .as_ref()
            .is_some_and(|(r, p)| r.starts_with("right") && *p > 0.5));
    }

    #[test]
    fn accusations_need_a_confident_model() {
        let mut m = manifest();
        let mut bars = asg_bundle::CheckThresholds::default();
        // The model must reach 0.85 to accuse; it gives pneumothorax 0.8, consolidation 0.7.
        for f in &m.findings {
            bars.image_confident.insert(f.clone(), 0.85);
            bars.region_confident.insert(f.clone(), 0.85);
            bars.image_doubtful.insert(f.clone(), 0.1);
            bars.region_doubtful.insert(f.clone(), 0.1);
        }
        m.check_thresholds = Some(bars);
        let a = analysis(&m);
        let report =
            "FINDINGS: Small left pleural effusion. No pneumothorax. The heart is enlarged.";
        let c = check_report_with(&m, None, "t", &a, report).unwrap();
        // Right-sided effusion at 0.9 is confident: still a laterality mismatch.
        assert_eq!(
            verdict_of(&c, "pleural effusion"),
            Verdict::LateralityMismatch
        );
        // Pneumothorax at 0.8 is above the threshold but not confident: uncertain.
        assert_eq!(verdict_of(&c, "pneumothorax"), Verdict::Uncertain);
        // Cardiomegaly at 0.05 is below the doubtful bar: unsupported.
        assert_eq!(verdict_of(&c, "cardiomegaly"), Verdict::Unsupported);
        // Consolidation at 0.7 is present but not confident: no omission.
        assert!(c.omissions.is_empty(), "{:?}", c.omissions);
    }

    #[test]
    fn a_matching_report_is_supported_throughout() {
        let m = manifest();
        let a = analysis(&m);
        let report = "FINDINGS: Right pleural effusion. Left pneumothorax. Focal consolidation. \
                      Heart size is normal.";
        let c = check_report_with(&m, None, "t", &a, report).unwrap();
        for s in &c.sentences {
            assert_eq!(s.verdict, Verdict::Supported, "{s:#?}");
        }
        assert!(c.omissions.is_empty(), "{:?}", c.omissions);
    }

    #[test]
    fn mirrored_regions_and_descendants() {
        assert_eq!(
            mirrored("left lower lung zone").as_deref(),
            Some("right lower lung zone")
        );
        assert_eq!(mirrored("cardiac silhouette"), None);
        let d = with_descendants("left lung");
        assert!(d.contains(&"left lung") && d.contains(&"left lower lung zone"));
        assert!(!d.contains(&"right lower lung zone"));
    }
}
