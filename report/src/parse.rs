//! Report text -> sentences -> <region, finding, existence> triplets, and the report's tags.
//!
//! Rule-based, in the NegEx / NegBio / CheXpert-labeler tradition: findings and places are found
//! by longest phrase match against the vocabulary tables; a finding's existence comes from the
//! nearest negation or uncertainty cue whose scope reaches it (cues before it reach forward up to
//! a scope end; cues after it reach back over a coordinated list); places attach to the nearest
//! finding. Hand-written: no Rust library does this.

use crate::lexicon::{lexicon, CueKind, Meaning, Place, SideWord};
use crate::text::{sentences, tokens, Token};
use crate::vocabulary::{region_index, Side, REGIONS};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Whether the report says a finding is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Existence {
    Negative,
    Uncertain,
    Positive,
}

/// The region of a triplet when the text implies none.
pub const UNSPECIFIED: &str = "unspecified";

/// A side of the patient as the text gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TextSide {
    Right,
    Left,
    Both,
}

/// One <region, finding, existence> statement, with the finding's byte span in the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Triplet {
    /// A Chest ImaGenome region name, or "unspecified".
    pub region: String,
    pub finding: String,
    pub existence: Existence,
    pub start: usize,
    pub end: usize,
    /// The patient's side the text gives for this mention: the region's side, or, where no
    /// region box fits ("left rib fracture", "right PICC line"), the side word itself. None
    /// when the text names no side (or a midline region).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub side: Option<TextSide>,
}

/// One sentence: its text, byte span, section and triplets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sentence {
    pub text: String,
    pub start: usize,
    pub end: usize,
    pub section: Option<String>,
    pub triplets: Vec<Triplet>,
}

/// A parsed report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParsedReport {
    pub sentences: Vec<Sentence>,
    /// Each finding the report's findings/impression speak of, with its strongest existence
    /// (positive over uncertain over negative). Indication and history sections do not count.
    pub tags: BTreeMap<String, Existence>,
}

/// Sections whose sentences describe the request, not the image.
const NON_FINDING_SECTIONS: &[&str] = &[
    "indication",
    "indications",
    "history",
    "clinical history",
    "clinical information",
    "reason for exam",
    "reason for examination",
    "comparison",
    "comparisons",
    "technique",
    "examination",
    "exam",
    "procedure",
];

/// Words that may stand between coordinated findings ("small effusion and mild edema").
const COORDINATION: &[&str] = &[
    ",",
    "and",
    "or",
    "nor",
    "/",
    "-",
    "the",
    "a",
    "an",
    "small",
    "large",
    "moderate",
    "mild",
    "severe",
    "trace",
    "minimal",
    "tiny",
    "new",
    "focal",
    "patchy",
    "bilateral",
    "definite",
    "acute",
    "significant",
    "any",
    "other",
    "of",
    "either",
    "both",
    "multifocal",
    "diffuse",
    "residual",
    "overt",
    "frank",
    "layering",
    "subsegmental",
    "interstitial",
    "pulmonary",
    "pleural",
];

/// A place as the text gives it: a side, a part or region, or both.
type PlaceRef = (Option<SideWord>, Option<Place>);

#[derive(Debug, Clone)]
enum Item {
    Finding {
        tag: usize,
        start: usize,
        end: usize,
    },
    Place {
        side: Option<SideWord>,
        place: Option<Place>,
        start: usize,
        end: usize,
    },
    Cue {
        kinds: Vec<CueKind>,
        start: usize,
        end: usize,
    },
    Word(String),
}

fn items(toks: &[Token]) -> Vec<Item> {
    let lex = lexicon();
    let norms: Vec<String> = toks.iter().map(|t| t.norm.clone()).collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        match lex.longest_match(&norms, i) {
            Some((len, meanings)) => {
                let (start, end) = (toks[i].start, toks[i + len - 1].end);
                // A phrase that is both a finding and something else reads as the finding.
                let m = meanings
                    .iter()
                    .find(|m| matches!(m, Meaning::Finding(_)))
                    .unwrap_or(&meanings[0]);
                out.push(match m {
                    Meaning::Cue(kinds) if kinds.contains(&CueKind::NotAFinding) => {
                        Item::Word(norms[i..i + len].join(" "))
                    }
                    Meaning::Finding(tag) => Item::Finding {
                        tag: *tag,
                        start,
                        end,
                    },
                    Meaning::Place { side, place } => Item::Place {
                        side: *side,
                        place: *place,
                        start,
                        end,
                    },
                    Meaning::Cue(kinds) => Item::Cue {
                        kinds: kinds.clone(),
                        start,
                        end,
                    },
                });
                i += len;
            }
            None => {
                out.push(Item::Word(norms[i].clone()));
                i += 1;
            }
        }
    }
    merge_places(out)
}

/// "right" + "lower lobe" -> one place; "left lung" + "base" -> the more specific part.
fn merge_places(items: Vec<Item>) -> Vec<Item> {
    let mut out: Vec<Item> = Vec::with_capacity(items.len());
    for it in items {
        // "right mid clavicle": drop the modifiers between a side and a part.
        if matches!(it, Item::Place { place: Some(_), .. }) {
            let mods = out
                .iter()
                .rev()
                .take_while(|x| matches!(x, Item::Word(w) if PLACE_MODIFIERS.contains(&w.as_str())))
                .count();
            let before = out.len().checked_sub(mods + 1).map(|i| &out[i]);
            if mods > 0
                && matches!(
                    before,
                    Some(Item::Place {
                        side: Some(_),
                        place: None,
                        ..
                    })
                )
            {
                out.truncate(out.len() - mods);
            }
        }
        if let (
            Some(Item::Place {
                side: s1,
                place: p1,
                start,
                ..
            }),
            Item::Place {
                side: s2,
                place: p2,
                end,
                ..
            },
        ) = (out.last(), &it)
        {
            let mergeable = matches!(
                (p1, p2),
                (None, _)
                    | (_, None)
                    | (Some(Place::Part("lung")), Some(Place::Part(_)))
                    | (Some(Place::Part(_)), Some(Place::Part("lung")))
            );
            if mergeable {
                let side = match (s1, s2) {
                    (Some(a), Some(SideWord::Both)) if *a != SideWord::Both => Some(*a),
                    (Some(a), _) => Some(*a),
                    (None, b) => *b,
                };
                let place = match (p1, p2) {
                    (Some(Place::Part("lung")), Some(p)) => Some(*p),
                    (Some(p), _) => Some(*p),
                    (None, p) => *p,
                };
                let start = *start;
                out.pop();
                out.push(Item::Place {
                    side,
                    place,
                    start,
                    end: *end,
                });
                continue;
            }
        }
        out.push(it);
    }
    out
}

fn is_scope_end(item: &Item) -> bool {
    matches!(item, Item::Cue { kinds, .. }
        if kinds.contains(&CueKind::ScopeEnd) || kinds.contains(&CueKind::ClauseVerb))
}

/// A scope end that also stops a place from reaching a finding: conjunctions and semicolons,
/// not the verbs of a clause ("nodules are noted within the right lung").
fn is_place_barrier(item: &Item) -> bool {
    matches!(item, Item::Cue { kinds, .. } if kinds.contains(&CueKind::ScopeEnd))
}

/// Words over which a finding takes its neighbour's place ("right effusion with adjacent
/// atelectasis", "left lower lobe atelectasis, infiltrate and effusion").
const PLACE_CARRY: &[&str] = &[
    "with",
    "adjacent",
    "associated",
    "underlying",
    "compressive",
    "some",
    "and/or",
];

/// Words that may stand between a side and a part ("right mid clavicle", "left-sided").
const PLACE_MODIFIERS: &[&str] = &[
    "mid",
    "distal",
    "proximal",
    "lateral",
    "medial",
    "posterior",
    "anterior",
    "inferior",
    "superior",
    "peripheral",
    "central",
    "-",
    "sided",
    "posterolateral",
    "anterolateral",
];

/// The side of a region name (None for midline regions and "unspecified").
fn region_side(name: &str) -> Option<TextSide> {
    match region_index(name).map(|i| REGIONS[i].side) {
        Some(Side::Right) => Some(TextSide::Right),
        Some(Side::Left) => Some(TextSide::Left),
        _ => None,
    }
}

fn text_side(side: Option<SideWord>) -> Option<TextSide> {
    side.map(|s| match s {
        SideWord::Right => TextSide::Right,
        SideWord::Left => TextSide::Left,
        SideWord::Both => TextSide::Both,
    })
}

fn has(item: &Item, kind: CueKind) -> bool {
    matches!(item, Item::Cue { kinds, .. } if kinds.contains(&kind))
}

/// The existence of the finding at `i`.
/// How many items away a negation or uncertainty cue still reaches a finding, either way: far
/// more than a sentence holds ("no pleural effusion, pneumothorax, ... or consolidation" lists a
/// dozen), and it keeps a sentence of thousands of coordinated findings (a text without full
/// stops) linear instead of quadratic.
const MAX_CUE_REACH: usize = 64;

fn existence(items: &[Item], i: usize) -> Existence {
    let mut negative = false;
    let mut uncertain = false;
    // Cues before it, back to a scope end, or to a comma that opens a new phrase with a side
    // ("no definite effusion seen, left hilar calcifications").
    for (j, it) in items[..i].iter().enumerate().rev().take(MAX_CUE_REACH) {
        if is_scope_end(it) {
            break;
        }
        let new_sided_phrase = matches!(it, Item::Word(w) if w == ",")
            && matches!(
                items.get(j + 1),
                Some(Item::Place {
                    side: Some(SideWord::Right | SideWord::Left),
                    ..
                })
            );
        if new_sided_phrase {
            break;
        }
        if has(it, CueKind::UncertainBefore) || has(it, CueKind::UncertainBoth) {
            uncertain = true;
            break;
        }
        if has(it, CueKind::NegationBefore) {
            negative = true;
            break;
        }
    }
    // Cues after it, over a coordinated list of findings, up to a scope end.
    let mut since_finding_plain = true;
    let mut passed_finding = false;
    for it in items[i + 1..].iter().take(MAX_CUE_REACH) {
        if is_scope_end(it) || has(it, CueKind::NegationBefore) || has(it, CueKind::UncertainBefore)
        {
            break;
        }
        // "A versus B" makes A uncertain only when A stands right before it.
        if has(it, CueKind::UncertainBoth) && passed_finding {
            break;
        }
        if has(it, CueKind::UncertainAfter) || has(it, CueKind::UncertainBoth) {
            uncertain = true;
            break;
        }
        if has(it, CueKind::NegationAfter) {
            negative = true;
            break;
        }
        match it {
            Item::Finding { .. } if !since_finding_plain => break,
            Item::Finding { .. } => {
                since_finding_plain = true;
                passed_finding = true;
            }
            Item::Word(w) if !COORDINATION.contains(&w.as_str()) => since_finding_plain = false,
            _ => {}
        }
    }
    if uncertain {
        Existence::Uncertain
    } else if negative {
        Existence::Negative
    } else {
        Existence::Positive
    }
}

fn region_names(
    side: Option<SideWord>,
    place: Option<Place>,
    finding_location: Option<Place>,
) -> Vec<String> {
    let place = place.or(finding_location);
    match place {
        Some(Place::Region(r)) => vec![REGIONS[r].name.to_string()],
        Some(Place::Part(part)) => match side {
            Some(SideWord::Right) => vec![format!("right {part}")],
            Some(SideWord::Left) => vec![format!("left {part}")],
            Some(SideWord::Both) => vec![format!("right {part}"), format!("left {part}")],
            None => vec![UNSPECIFIED.to_string()],
        },
        None => vec![UNSPECIFIED.to_string()],
    }
    .into_iter()
    .map(|n| {
        if n == UNSPECIFIED || region_index(&n).is_some() {
            n
        } else {
            UNSPECIFIED.to_string()
        }
    })
    .collect()
}

/// The finding that a statement of a place's state speaks of: its normality denies it ("heart
/// size is normal" -> no cardiomegaly, "lungs are clear" -> no opacity); its size asserts it
/// (heart and mediastinum only: "large lungs" are not an opacity).
fn structure_finding(place: Option<Place>, state: CueKind) -> Option<&'static str> {
    let implied = normal_denies(place)?;
    (state == CueKind::Normal || implied != "opacity").then_some(implied)
}

/// The finding that the normality of a place denies ("heart size is normal" -> cardiomegaly).
fn normal_denies(place: Option<Place>) -> Option<&'static str> {
    match place {
        Some(Place::Region(r)) => match REGIONS[r].name {
            "cardiac silhouette" | "right atrium" => Some("cardiomegaly"),
            "mediastinum" | "upper mediastinum" => Some("enlarged cardiomediastinum"),
            _ => None,
        },
        Some(Place::Part("lung"))
        | Some(Place::Part("upper lung zone"))
        | Some(Place::Part("mid lung zone"))
        | Some(Place::Part("lower lung zone")) => Some("opacity"),
        _ => None,
    }
}

/// A comma or a cue: between a place and a finding it starts a new phrase.
fn is_phrase_break(item: &Item) -> bool {
    matches!(item, Item::Cue { .. }) || matches!(item, Item::Word(w) if w == ",")
}

/// Attaches each place to the nearest finding within its scope (no scope end between them),
/// nearness counted in items with a comma or a cue in between counting 3 more (it starts a new
/// phrase); ties go to the finding after. Keyed by the finding's item index.
///
/// Linear in the items: the cost grows with the distance on each side, so only the nearest
/// finding before and the nearest after a place can win, and the scope ends and breaks between
/// are counted from prefix sums (a sentence of thousands of words, which a report without full
/// stops makes, took seconds when every pair was scanned).
fn attach_places(items: &[Item]) -> BTreeMap<usize, Vec<PlaceRef>> {
    // prefix[i]: how many of items[..i] are scope ends / breaks.
    let prefix = |pred: &dyn Fn(&Item) -> bool| {
        let mut v = Vec::with_capacity(items.len() + 1);
        v.push(0usize);
        for it in items {
            v.push(v[v.len() - 1] + pred(it) as usize);
        }
        v
    };
    let barriers = prefix(&is_place_barrier);
    let breaks = prefix(&is_phrase_break);
    let is_finding = |i: usize| matches!(items[i], Item::Finding { .. });
    let mut before: Vec<Option<usize>> = Vec::with_capacity(items.len());
    let mut last = None;
    for i in 0..items.len() {
        before.push(last);
        if is_finding(i) {
            last = Some(i);
        }
    }
    let mut after: Vec<Option<usize>> = vec![None; items.len()];
    let mut next = None;
    for i in (0..items.len()).rev() {
        after[i] = next;
        if is_finding(i) {
            next = Some(i);
        }
    }
    let mut places: BTreeMap<usize, Vec<PlaceRef>> = BTreeMap::new();
    for (p, it) in items.iter().enumerate() {
        let Item::Place { side, place, .. } = it else {
            continue;
        };
        // A finding is reachable with no scope end in items[a..b] (a, b the two in order).
        let span = |f: usize| if f < p { (f, p) } else { (p, f) };
        let reachable = |f: usize| {
            let (a, b) = span(f);
            barriers[b] == barriers[a]
        };
        let cost = |f: usize| {
            let (a, b) = span(f);
            (b - a) + 3 * (breaks[b] - breaks[a + 1])
        };
        let best = [before[p], after[p]]
            .into_iter()
            .flatten()
            .filter(|&f| reachable(f))
            .min_by_key(|&f| (cost(f), f < p));
        if let Some(f) = best {
            places.entry(f).or_default().push((*side, *place));
        }
    }
    places
}

fn parse_sentence(text: &str, start: usize, end: usize) -> Vec<Triplet> {
    let lex = lexicon();
    let toks = tokens(&text[start..end], start);
    let items = items(&toks);
    let findings: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, it)| matches!(it, Item::Finding { .. }))
        .map(|(i, _)| i)
        .collect();
    let places = attach_places(&items);
    let mut out = Vec::new();
    // Each finding's places once inherited, so that a place carries along a list.
    let mut resolved: Vec<Vec<PlaceRef>> = Vec::with_capacity(findings.len());
    for (k, &f) in findings.iter().enumerate() {
        let Item::Finding { tag, start, end } = items[f] else {
            resolved.push(Vec::new());
            continue;
        };
        let ex = existence(&items, f);
        let mut attached = places.get(&f).cloned().unwrap_or_default();
        if attached.is_empty() {
            // Inherit from a coordinated neighbour ("bilateral effusions and atelectasis").
            let coordinated = |a: usize, b: usize| {
                items[a + 1..b].iter().all(|it| {
                    matches!(it, Item::Word(w)
                        if COORDINATION.contains(&w.as_str()) || PLACE_CARRY.contains(&w.as_str()))
                        || matches!(it, Item::Place { .. })
                        || has(it, CueKind::UncertainBefore)
                        || has(it, CueKind::UncertainBoth)
                })
            };
            let previous = k
                .checked_sub(1)
                .filter(|&j| coordinated(findings[j], f))
                .map(|j| resolved[j].clone());
            let next = findings
                .get(k + 1)
                .filter(|&&n| coordinated(f, n))
                .and_then(|n| places.get(n).cloned());
            if let Some(p) = previous.filter(|p| !p.is_empty()).or(next) {
                attached = p;
            }
        }
        // Effusions in the plural with no side are on both sides.
        let plural = text[start..end].to_ascii_lowercase().ends_with("effusions");
        if attached.is_empty() && plural && lex.findings[tag].tag == "pleural effusion" {
            attached.push((Some(SideWord::Both), None));
        }
        resolved.push(attached.clone());
        let location = lex.findings[tag].location;
        let mut regions: Vec<(String, Option<TextSide>)> = if attached.is_empty() {
            region_names(None, None, location)
                .into_iter()
                .map(|r| (r, None))
                .collect()
        } else {
            attached
                .iter()
                .flat_map(|&(side, place)| {
                    region_names(side, place, location)
                        .into_iter()
                        .map(move |r| {
                            let s = if r == UNSPECIFIED {
                                text_side(side)
                            } else {
                                region_side(&r)
                            };
                            (r, s)
                        })
                })
                .collect()
        };
        regions.dedup();
        // A side-only "unspecified" beside a real region of that side says nothing more.
        let sided: Vec<(String, Option<TextSide>)> = regions.clone();
        regions.retain(|(r, s)| {
            r != UNSPECIFIED
                || s.is_none_or(|s| {
                    !sided
                        .iter()
                        .any(|(o, os)| o != UNSPECIFIED && *os == Some(s))
                })
        });
        for (region, side) in regions {
            out.push(Triplet {
                region,
                finding: lex.findings[tag].tag.to_string(),
                existence: ex,
                start,
                end,
                side,
            });
        }
    }
    // "Heart size is normal", "lungs are clear": the structure's normality denies a finding;
    // "the heart is large", "borderline heart size" assert it; "heart size at the upper limits
    // of normal" leaves it uncertain.
    for (c, it) in items.iter().enumerate() {
        let state = if has(it, CueKind::Normal) {
            CueKind::Normal
        } else if has(it, CueKind::Enlarged) {
            CueKind::Enlarged
        } else if has(it, CueKind::UpperNormal) {
            CueKind::UpperNormal
        } else {
            continue;
        };
        // A size word belongs to a finding named in its clause ("large effusion"), not to a
        // structure beyond it.
        let stop_at_finding = state != CueKind::Normal;
        let clause = |range: &mut dyn Iterator<Item = usize>| -> Option<usize> {
            for j in range {
                match &items[j] {
                    Item::Place { .. } => return Some(j),
                    Item::Finding { .. } if stop_at_finding => return None,
                    x if is_scope_end(x) => return None,
                    Item::Word(w) if w == "," => return None,
                    _ => {}
                }
            }
            None
        };
        let place_at = clause(&mut (0..c).rev()).or_else(|| clause(&mut (c + 1..items.len())));
        let Some(p) = place_at else { continue };
        let Item::Place {
            side,
            place,
            start,
            end,
        } = items[p]
        else {
            continue;
        };
        let Some(finding) = structure_finding(place, state) else {
            continue;
        };
        let existence_here = match state {
            CueKind::Normal => Existence::Negative,
            CueKind::UpperNormal => Existence::Uncertain,
            _ => existence(&items, c),
        };
        let (s, e) = match items[c] {
            Item::Cue {
                start: cs, end: ce, ..
            } => (start.min(cs), end.max(ce)),
            _ => (start, end),
        };
        let side = side.or(if matches!(place, Some(Place::Part(_))) {
            Some(SideWord::Both)
        } else {
            None
        });
        for region in region_names(side, place, None) {
            let t = Triplet {
                side: region_side(&region),
                region,
                finding: finding.to_string(),
                existence: existence_here,
                start: s,
                end: e,
            };
            if !out
                .iter()
                .any(|o: &Triplet| o.finding == t.finding && o.region == t.region)
            {
                out.push(t);
            }
        }
    }
    out
}

/// Whether a sentence counts for the report's tags and labels (not indication, history...).
pub(crate) fn counts_for_tags(s: &Sentence) -> bool {
    s.section
        .as_deref()
        .is_none_or(|sec| !NON_FINDING_SECTIONS.contains(&sec))
}

/// Parses a radiology report. Never fails: text that says nothing gives no triplets.
pub fn parse(text: &str) -> ParsedReport {
    let mut tags: BTreeMap<String, Existence> = BTreeMap::new();
    let sentences: Vec<Sentence> = sentences(text)
        .into_iter()
        .map(|s| {
            let triplets = parse_sentence(text, s.start, s.end);
            let counts = s
                .section
                .as_deref()
                .is_none_or(|sec| !NON_FINDING_SECTIONS.contains(&sec));
            if counts {
                for t in &triplets {
                    let e = tags.entry(t.finding.clone()).or_insert(t.existence);
                    *e = (*e).max(t.existence);
                }
            }
            Sentence {
                text: text[s.start..s.end].to_string(),
                start: s.start,
                end: s.end,
                section: s.section,
                triplets,
            }
        })
        .collect();
    ParsedReport { sentences, tags }
}

impl ParsedReport {
    /// The tag vector in the model's finding order: 1 for positive, `uncertain_as` for
    /// uncertain, 0 for negative or unmentioned.
    pub fn tag_vector(&self, uncertain_as: f32) -> Vec<f32> {
        crate::FINDINGS
            .iter()
            .map(|f| match self.tags.get(*f) {
                Some(Existence::Positive) => 1.0,
                Some(Existence::Uncertain) => uncertain_as,
                _ => 0.0,
            })
            .collect()
    }

    /// Findings per region (strongest existence), from the sentences that count for tags.
    pub fn region_findings(&self) -> BTreeMap<String, BTreeMap<String, Existence>> {
        let mut out: BTreeMap<String, BTreeMap<String, Existence>> = BTreeMap::new();
        for s in &self.sentences {
            if s.section
                .as_deref()
                .is_some_and(|sec| NON_FINDING_SECTIONS.contains(&sec))
            {
                continue;
            }
            for t in &s.triplets {
                let e = out
                    .entry(t.region.clone())
                    .or_default()
                    .entry(t.finding.clone())
                    .or_insert(t.existence);
                *e = (*e).max(t.existence);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every place against every finding, as the parser did before [`attach_places`].
    fn attach_places_by_every_pair(items: &[Item]) -> BTreeMap<usize, Vec<PlaceRef>> {
        let findings: Vec<usize> = (0..items.len())
            .filter(|&i| matches!(items[i], Item::Finding { .. }))
            .collect();
        let mut places: BTreeMap<usize, Vec<PlaceRef>> = BTreeMap::new();
        for (p, it) in items.iter().enumerate() {
            let Item::Place { side, place, .. } = it else {
                continue;
            };
            let span = |f: usize| if f < p { (f, p) } else { (p, f) };
            let reachable = |f: usize| {
                let (a, b) = span(f);
                !items[a..b].iter().any(is_place_barrier)
            };
            let cost = |f: usize| {
                let (a, b) = span(f);
                let breaks = items[a + 1..b]
                    .iter()
                    .filter(|it| is_phrase_break(it))
                    .count();
                (b - a) + 3 * breaks
            };
            let best = findings
                .iter()
                .copied()
                .filter(|&f| reachable(f))
                .min_by_key(|&f| (cost(f), f < p));
            if let Some(f) = best {
                places.entry(f).or_default().push((*side, *place));
            }
        }
        places
    }

    #[test]
    fn places_attach_as_when_every_pair_was_scanned() {
        let words = [
            "right",
            "left",
            "bilateral",
            "lower lobe",
            "upper lobe",
            "base",
            "apex",
            "hilar",
            "effusion",
            "pneumothorax",
            "opacity",
            "atelectasis",
            "nodule",
            "no",
            "without",
            "possible",
            "may represent",
            "but",
            "which",
            ",",
            "and",
            "with",
            "heart",
            "lungs",
            "clear",
            "is",
            "the",
            "of",
            "normal",
            "versus",
        ];
        // xorshift64: a fixed sequence of sentences of 1-60 words.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut compared = 0;
        for _ in 0..500 {
            let n = 1 + (next() % 60) as usize;
            let text: Vec<&str> = (0..n)
                .map(|_| words[(next() % words.len() as u64) as usize])
                .collect();
            let text = text.join(" ");
            let items = items(&tokens(&text, 0));
            let fast = attach_places(&items);
            assert_eq!(
                format!("{fast:?}"),
                format!("{:?}", attach_places_by_every_pair(&items)),
                "{text}"
            );
            compared += fast.values().map(Vec::len).sum::<usize>();
        }
        assert!(compared > 1000, "only {compared} places attached");
    }

    #[test]
    fn a_cue_reaches_a_long_list_but_not_past_its_reach() {
        // "no effusion, opacity, ..." negates every finding of the list within the reach.
        let list = vec!["effusion"; 40].join(" and ");
        let parsed = crate::parse(&format!("No {list}"));
        let existences: Vec<Existence> = parsed.sentences[0]
            .triplets
            .iter()
            .map(|t| t.existence)
            .collect();
        assert_eq!(existences.len(), 40);
        // Items: the cue, then finding, "and", finding ...: finding k is 2k + 1 items after it,
        // reached while 2k + 1 <= MAX_CUE_REACH.
        for (k, e) in existences.iter().enumerate() {
            let want = if 2 * k < MAX_CUE_REACH {
                Existence::Negative
            } else {
                Existence::Positive
            };
            assert_eq!(*e, want, "finding {k}");
        }
    }
}
