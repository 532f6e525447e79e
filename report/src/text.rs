//! Report text: sections, sentences and tokens, with byte offsets into the original text.
//! Hand-written (no Rust library splits clinical text this way); linear in the text's length.

/// A token: a run of letters/digits, or one of the punctuation marks that matter to parsing.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// Lower-case form.
    pub norm: String,
    /// Byte offsets in the text.
    pub start: usize,
    pub end: usize,
}

const PUNCT: &[char] = &[',', ';', '?', ':', '/', '-', '(', ')'];

/// Tokens of `text`, offsets shifted by `base`.
pub fn tokens(text: &str, base: usize) -> Vec<Token> {
    let mut out = Vec::new();
    let mut word_start: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if c.is_alphanumeric() {
            word_start.get_or_insert(i);
            continue;
        }
        if let Some(s) = word_start.take() {
            out.push(Token {
                norm: text[s..i].to_lowercase(),
                start: base + s,
                end: base + i,
            });
        }
        if PUNCT.contains(&c) {
            out.push(Token {
                norm: c.to_string(),
                start: base + i,
                end: base + i + c.len_utf8(),
            });
        }
    }
    if let Some(s) = word_start {
        out.push(Token {
            norm: text[s..].to_lowercase(),
            start: base + s,
            end: base + text.len(),
        });
    }
    out
}

/// A sentence's place in the text and the section it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct SentenceSpan {
    pub start: usize,
    pub end: usize,
    /// Lower-case section name ("findings", "impression", ...), if a header preceded it.
    pub section: Option<String>,
}

/// Section headers we recognise (followed by a colon).
const SECTIONS: &[&str] = &[
    "findings",
    "impression",
    "indication",
    "indications",
    "history",
    "clinical history",
    "clinical information",
    "comparison",
    "comparisons",
    "technique",
    "examination",
    "exam",
    "reason for exam",
    "reason for examination",
    "conclusion",
    "conclusions",
    "recommendation",
    "recommendations",
    "notification",
    "wet read",
    "final report",
    "procedure",
];

/// Words after which a period does not end a sentence.
const ABBREVIATIONS: &[&str] = &[
    "dr", "mr", "mrs", "ms", "approx", "apprx", "vs", "e.g", "i.e", "fig", "cf", "pt", "st",
    "incl", "no",
];

/// A section header at `at` (a line start): its lower-case name and the byte after its colon.
fn header_at(text: &str, at: usize) -> Option<(String, usize)> {
    let rest = &text[at..];
    let colon = rest.find(':')?;
    if colon > 40 || rest[..colon].contains('\n') {
        return None;
    }
    let name = rest[..colon].trim().to_lowercase();
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
    SECTIONS
        .contains(&name.as_str())
        .then(|| (name, at + colon + 1))
}

/// A list marker ("1.", "2)", "(3)") at `at`, followed by white space: the byte after it.
fn list_marker_at(bytes: &[u8], at: usize) -> Option<usize> {
    let mut i = at;
    if bytes.get(i) == Some(&b'(') {
        i += 1;
    }
    let digits = bytes[i.min(bytes.len())..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || digits > 2 {
        return None;
    }
    i += digits;
    match bytes.get(i) {
        Some(b'.') | Some(b')') => {}
        _ => return None,
    }
    i += 1;
    match bytes.get(i) {
        None => Some(i),
        Some(b) if b.is_ascii_whitespace() => Some(i),
        _ => None,
    }
}

fn word_before(text: &str, end: usize) -> &str {
    let start = text[..end]
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_alphanumeric() || *c == '.')
        .last()
        .map_or(end, |(i, _)| i);
    &text[start..end]
}

/// Splits `text` into sentences. Boundaries: '.', '!' or '?' followed by white space (not after
/// an abbreviation, not inside a decimal), a blank line, a line that starts a list item or a
/// section. Single line breaks inside a sentence are line wrapping. List markers and section
/// headers are not part of sentences.
pub fn sentences(text: &str) -> Vec<SentenceSpan> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut section: Option<String> = None;
    let mut start: Option<usize> = None;
    let mut i = 0;
    let mut line_start = true;
    let close = |out: &mut Vec<SentenceSpan>,
                 start: &mut Option<usize>,
                 end: usize,
                 section: &Option<String>| {
        if let Some(s) = start.take() {
            let slice = &text[s..end];
            let trimmed = slice.trim_end();
            if trimmed.chars().any(char::is_alphanumeric) {
                out.push(SentenceSpan {
                    start: s,
                    end: s + trimmed.len(),
                    section: section.clone(),
                });
            }
        }
    };
    while i < bytes.len() {
        let c = text[i..].chars().next().unwrap_or(' ');
        let len = c.len_utf8();
        if line_start {
            // Skip indentation, then look for a header or a list marker.
            let indent = text[i..].len() - text[i..].trim_start_matches([' ', '\t']).len();
            let at = i + indent;
            if let Some((name, after)) = header_at(text, at) {
                close(&mut out, &mut start, i, &section);
                section = Some(name);
                i = after;
                line_start = false;
                continue;
            }
            if let Some(after) = list_marker_at(bytes, at) {
                close(&mut out, &mut start, i, &section);
                i = after;
                line_start = false;
                continue;
            }
            line_start = false;
        }
        if c == '\n' {
            // A blank line ends the sentence.
            let rest = &text[i + 1..];
            let next_line_end = rest.find('\n').unwrap_or(rest.len());
            if rest[..next_line_end].trim().is_empty() {
                close(&mut out, &mut start, i, &section);
            }
            line_start = true;
            i += 1;
            continue;
        }
        if start.is_none() {
            if c.is_whitespace() || c.is_control() {
                i += len;
                continue;
            }
            // A list marker right after a sentence ("... cardiomegaly. 2. Clear lungs").
            if let Some(after) = list_marker_at(bytes, i) {
                i = after;
                continue;
            }
            start = Some(i);
        }
        if matches!(c, '.' | '!' | '?') {
            let next = text[i + len..].chars().next();
            let ends = next.is_none_or(|n| n.is_whitespace());
            let abbreviation =
                c == '.' && ABBREVIATIONS.contains(&word_before(text, i).to_lowercase().as_str());
            if ends && !abbreviation {
                close(&mut out, &mut start, i + len, &section);
            }
        }
        i += len;
    }
    close(&mut out, &mut start, text.len(), &section);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(t: &str) -> Vec<&str> {
        sentences(t).iter().map(|s| &t[s.start..s.end]).collect()
    }

    #[test]
    fn numbered_lists_and_blank_lines() {
        let t = "1. Left pleural effusion with adjacent atelectasis. Right effusion is also present.\n\n2. Cardiomegaly without overt edema.";
        assert_eq!(
            texts(t),
            [
                "Left pleural effusion with adjacent atelectasis.",
                "Right effusion is also present.",
                "Cardiomegaly without overt edema."
            ]
        );
        assert_eq!(
            texts("1. Stable mild cardiomegaly. 2. Hyperexpanded but clear lungs."),
            [
                "Stable mild cardiomegaly.",
                "Hyperexpanded but clear lungs."
            ]
        );
    }

    #[test]
    fn abbreviations_decimals_and_wrapping() {
        let t = "Nodule measures approx. 1.5 cm, per Dr. ___.\nThe tube tip is 4.2 cm above\nthe carina. No pneumothorax.";
        assert_eq!(
            texts(t),
            [
                "Nodule measures approx. 1.5 cm, per Dr. ___.",
                "The tube tip is 4.2 cm above\nthe carina.",
                "No pneumothorax."
            ]
        );
    }

    #[test]
    fn sections() {
        let t = "INDICATION: ___-year-old with cough.\nFINDINGS:\nNO PNEUMOTHORAX. HEART SIZE NORMAL.\n\nIMPRESSION: No acute process.";
        let s = sentences(t);
        let got: Vec<(&str, Option<&str>)> = s
            .iter()
            .map(|x| (&t[x.start..x.end], x.section.as_deref()))
            .collect();
        assert_eq!(
            got,
            [
                ("___-year-old with cough.", Some("indication")),
                ("NO PNEUMOTHORAX.", Some("findings")),
                ("HEART SIZE NORMAL.", Some("findings")),
                ("No acute process.", Some("impression")),
            ]
        );
    }

    #[test]
    fn tokens_have_offsets_and_lower_case() {
        let t = tokens("Left PTX, r/o", 10);
        let norms: Vec<&str> = t.iter().map(|t| t.norm.as_str()).collect();
        assert_eq!(norms, ["left", "ptx", ",", "r", "/", "o"]);
        assert_eq!((t[1].start, t[1].end), (15, 18));
    }

    #[test]
    fn odd_text_does_not_panic() {
        for t in [
            "",
            " ",
            "\n\n\n",
            ".",
            "1.",
            "(",
            "?!",
            "Épanchement pleural gauche. 肺炎。",
            "😀 effusion 😀.",
            "\u{0}\u{1}\u{7f}no\u{0}effusion",
            "x:y:z:",
        ] {
            let _ = sentences(t);
            let _ = tokens(t, 0);
        }
    }
}
