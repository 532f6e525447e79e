//! The text encoder's tokenizer: a word-level vocabulary trained on the report corpus (the most
//! frequent words, numbers folded into one token, everything else unknown), saved with the model as
//! JSON. The same code encodes at training time (asg-trainer) and at inference (asg-plugin, also in
//! wasm32). Words come from [`crate::text::tokens`], so token spans are byte offsets into the
//! report and a sentence's tokens are those inside its span.

use std::collections::HashMap;

/// Padding, unknown word, start of text, end of text.
pub const PAD: u32 = 0;
pub const UNK: u32 = 1;
pub const CLS: u32 = 2;
pub const SEP: u32 = 3;
const SPECIAL: [&str; 4] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"];
const NUMBER: &str = "[NUM]";

/// Errors reading a saved tokenizer.
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("tokenizer file is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("tokenizer: {0}")]
    Invalid(String),
}

/// A word-level tokenizer.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokenizer {
    vocab: Vec<String>,
    index: HashMap<String, u32>,
}

/// Token ids with the byte span of each token in the text (`[CLS]` and `[SEP]` get empty spans at
/// the start and end).
#[derive(Debug, Clone, PartialEq)]
pub struct Encoding {
    pub ids: Vec<u32>,
    pub spans: Vec<(usize, usize)>,
}

impl Encoding {
    /// Positions of the tokens that lie inside the byte range [start, end).
    pub fn tokens_in(&self, start: usize, end: usize) -> Vec<usize> {
        self.spans
            .iter()
            .enumerate()
            .filter(|(i, (s, e))| *i > 0 && s < e && *s >= start && *e <= end)
            .map(|(i, _)| i)
            .collect()
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    format: String,
    version: u32,
    vocab: Vec<String>,
}

fn word(norm: &str) -> &str {
    if norm.chars().all(|c| c.is_ascii_digit()) {
        NUMBER
    } else {
        norm
    }
}

impl Tokenizer {
    /// Learns the `max_size` most frequent words (ties broken alphabetically, so the result does
    /// not depend on the corpus order) that occur at least `min_count` times.
    pub fn train<'a>(
        corpus: impl IntoIterator<Item = &'a str>,
        max_size: usize,
        min_count: usize,
    ) -> Self {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for text in corpus {
            for t in crate::text::tokens(text, 0) {
                *counts.entry(word(&t.norm).to_string()).or_default() += 1;
            }
        }
        let mut words: Vec<(String, usize)> = counts
            .into_iter()
            .filter(|(w, c)| *c >= min_count.max(1) && !SPECIAL.contains(&w.as_str()))
            .collect();
        words.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut vocab: Vec<String> = SPECIAL.iter().map(|s| s.to_string()).collect();
        if !words.iter().any(|(w, _)| w == NUMBER) {
            vocab.push(NUMBER.into());
        }
        vocab.extend(
            words
                .into_iter()
                .map(|(w, _)| w)
                .take(max_size.saturating_sub(vocab.len())),
        );
        Self::from_vocab(vocab)
    }

    fn from_vocab(vocab: Vec<String>) -> Self {
        let index = vocab
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32))
            .collect();
        Self { vocab, index }
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// The word of an id.
    pub fn word(&self, id: u32) -> Option<&str> {
        self.vocab.get(id as usize).map(String::as_str)
    }

    /// `[CLS] words... [SEP]`, at most `max_len` tokens (words past the limit are dropped).
    pub fn encode(&self, text: &str, max_len: usize) -> Encoding {
        let max_len = max_len.max(2);
        let mut ids = vec![CLS];
        let mut spans = vec![(0, 0)];
        for t in crate::text::tokens(text, 0) {
            if ids.len() + 1 >= max_len {
                break;
            }
            ids.push(self.index.get(word(&t.norm)).copied().unwrap_or(UNK));
            spans.push((t.start, t.end));
        }
        ids.push(SEP);
        spans.push((text.len(), text.len()));
        Encoding { ids, spans }
    }

    /// The tokenizer as JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&Saved {
            format: "asg-tokenizer".into(),
            version: 1,
            vocab: self.vocab.clone(),
        })
        .unwrap_or_default()
    }

    /// Reads a tokenizer written by [`Tokenizer::to_json`].
    pub fn from_json(text: &str) -> Result<Self, TokenizerError> {
        let saved: Saved = serde_json::from_str(text)?;
        if saved.format != "asg-tokenizer" || saved.version != 1 {
            return Err(TokenizerError::Invalid(format!(
                "format {:?} version {}, want \"asg-tokenizer\" 1",
                saved.format, saved.version
            )));
        }
        if saved.vocab.len() < SPECIAL.len()
            || saved.vocab[..SPECIAL.len()] != SPECIAL.map(String::from)
        {
            return Err(TokenizerError::Invalid(
                "the vocabulary does not start with [PAD] [UNK] [CLS] [SEP]".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = saved.vocab.iter().find(|w| !seen.insert(w.as_str())) {
            return Err(TokenizerError::Invalid(format!(
                "word {dup:?} appears twice"
            )));
        }
        Ok(Self::from_vocab(saved.vocab))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_keeps_the_frequent_words_and_numbers_fold() {
        let t = Tokenizer::train(
            [
                "No effusion. Small effusion.",
                "Effusion, 3 cm nodule.",
                "rare",
            ],
            8,
            2,
        );
        assert_eq!(t.word(0), Some("[PAD]"));
        assert_eq!(t.word(4), Some("[NUM]"));
        assert_eq!(t.word(5), Some("effusion"));
        let e = t.encode("Effusion 12 rare", 16);
        assert_eq!(e.ids, vec![CLS, 5, 4, UNK, SEP]);
        assert_eq!(e.spans[1], (0, 8));
        assert_eq!(e.tokens_in(0, 11), vec![1, 2]);
    }

    #[test]
    fn encoding_respects_the_length_limit() {
        let t = Tokenizer::train(["a b c d e f"], 100, 1);
        let e = t.encode("a b c d e f", 4);
        assert_eq!(e.ids.len(), 4);
        assert_eq!(*e.ids.last().unwrap(), SEP);
    }

    #[test]
    fn json_round_trip_and_bad_files() {
        let t = Tokenizer::train(["left lower lobe opacity"], 100, 1);
        assert_eq!(Tokenizer::from_json(&t.to_json()).unwrap(), t);
        assert!(Tokenizer::from_json("{").is_err());
        assert!(
            Tokenizer::from_json(r#"{"format":"asg-tokenizer","version":1,"vocab":["a"]}"#)
                .is_err()
        );
        assert!(Tokenizer::from_json(
            r#"{"format":"asg-tokenizer","version":1,"vocab":["[PAD]","[UNK]","[CLS]","[SEP]","x","x"]}"#
        )
        .is_err());
    }
}

/// Either tokenizer the text encoder may use: ours (a word vocabulary trained on the corpus) or
/// a pretrained BERT's WordPiece.
#[derive(Debug, Clone, PartialEq)]
pub enum TextTokenizer {
    Word(Tokenizer),
    WordPiece(crate::wordpiece::WordPiece),
}

impl TextTokenizer {
    pub fn encode(&self, text: &str, max_len: usize) -> Encoding {
        match self {
            Self::Word(t) => t.encode(text, max_len),
            Self::WordPiece(t) => t.encode(text, max_len),
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Word(t) => t.vocab_size(),
            Self::WordPiece(t) => t.vocab_size(),
        }
    }

    /// The padding id.
    pub fn pad_id(&self) -> u32 {
        match self {
            Self::Word(_) => PAD,
            Self::WordPiece(t) => t.pad_id(),
        }
    }

    pub fn to_json(&self) -> String {
        match self {
            Self::Word(t) => t.to_json(),
            Self::WordPiece(t) => t.to_json(),
        }
    }

    /// Reads either saved form (told apart by its `format`).
    pub fn from_json(text: &str) -> Result<Self, TokenizerError> {
        let v: serde_json::Value = serde_json::from_str(text)?;
        match v["format"].as_str() {
            Some("asg-wordpiece") => Ok(Self::WordPiece(crate::wordpiece::WordPiece::from_json(
                text,
            )?)),
            _ => Ok(Self::Word(Tokenizer::from_json(text)?)),
        }
    }
}
