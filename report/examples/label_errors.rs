//! For developing the parser: every disagreement of the ChestX-ray14 projection with the gold of a
//! labelled JSONL set (`../shared/iu-reports/reports.jsonl` layout), with the sentences that
//! mention the label's tags and what we read in them.
//! `cargo run -p asg-report --example label_errors -- FILE.jsonl LABEL [fp|fn]`, or `sides` for
//! LABEL: the MeSH sided codes whose side the parser missed.

use asg_report::label_eval::{present, read_jsonl};
use asg_report::{label_rules, parse, Mention, Scheme};

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let [_, file, label, rest @ ..] = &args[..] else {
        return Err("usage: label_errors FILE.jsonl LABEL [fp|fn]".into());
    };
    let only = rest.first().map(String::as_str);
    let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    if label == "sides" {
        return sides(&text);
    }
    let rule = label_rules()
        .iter()
        .find(|r| r.scheme == Scheme::ChestXray14 && r.label == label)
        .ok_or_else(|| format!("no ChestX-ray14 label {label:?}"))?;
    for rep in read_jsonl(&text)? {
        let parsed = parse(&rep.text);
        let ours = parsed
            .labels(Scheme::ChestXray14)
            .get(label)
            .unwrap_or(Mention::NotMentioned);
        let gold = rep.gold.get(label.as_str()).copied().unwrap_or(false);
        let kind = match (gold, present(ours)) {
            (true, false) => "fn",
            (false, true) => "fp",
            _ => continue,
        };
        if only.is_some_and(|o| o != kind) {
            continue;
        }
        println!("== {} {kind} (ours {ours:?}) mesh {:?}", rep.uid, rep.mesh);
        for s in &parsed.sentences {
            let mine: Vec<String> = s
                .triplets
                .iter()
                .filter(|t| rule.counts.iter().any(|(tag, _)| *tag == t.finding))
                .map(|t| format!("{}@{}={:?}", t.finding, t.region, t.existence))
                .collect();
            println!(
                "   {} {}",
                if mine.is_empty() { " " } else { "*" },
                s.text.trim()
            );
            if !mine.is_empty() {
                println!("       -> {}", mine.join(", "));
            }
        }
    }
    Ok(())
}

fn sides(text: &str) -> Result<(), String> {
    use asg_report::label_eval::{parser_has_side, sided};
    for rep in read_jsonl(text)? {
        let parsed = parse(&rep.text);
        for code in &rep.mesh {
            let Some((tags, sides)) = sided(code) else {
                continue;
            };
            if sides.iter().all(|&s| parser_has_side(&parsed, tags, s)) {
                continue;
            }
            println!("== {} {code}", rep.uid);
            for s in &parsed.sentences {
                let mine: Vec<String> = s
                    .triplets
                    .iter()
                    .filter(|t| tags.contains(&t.finding.as_str()))
                    .map(|t| format!("{}@{}={:?}", t.finding, t.region, t.existence))
                    .collect();
                if !mine.is_empty() {
                    println!("   {}\n       -> {}", s.text.trim(), mine.join(", "));
                }
            }
        }
    }
    Ok(())
}
