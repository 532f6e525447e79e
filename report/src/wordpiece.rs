//! BERT's WordPiece tokenizer (as for Bio_ClinicalBERT), read from a Hugging Face `tokenizer.json`
//! or a `vocab.txt`: basic tokenization (whitespace, punctuation split off, optional lower-casing),
//! then greedy longest-match sub-words with the `##` prefix. Written here (no network, no C, wasm32)
//! rather than with the `tokenizers` crate; it keeps each token's byte span in the text, which the
//! sentence features need. Covers the `BertNormalizer` + `BertPreTokenizer` + `WordPiece`
//! pipeline only (no accent stripping, no Chinese-character splitting).

use crate::tokenizer::{Encoding, TokenizerError};
use std::collections::HashMap;

/// A WordPiece tokenizer.
#[derive(Debug, Clone, PartialEq)]
pub struct WordPiece {
    vocab: Vec<String>,
    index: HashMap<String, u32>,
    lowercase: bool,
    unk: u32,
    cls: u32,
    sep: u32,
    pad: u32,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    format: String,
    version: u32,
    lowercase: bool,
    vocab: Vec<String>,
}

impl WordPiece {
    /// From the vocabulary in id order.
    pub fn from_vocab(vocab: Vec<String>, lowercase: bool) -> Result<Self, TokenizerError> {
        let index: HashMap<String, u32> = vocab
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32))
            .collect();
        let id = |t: &str| {
            index
                .get(t)
                .copied()
                .ok_or_else(|| TokenizerError::Invalid(format!("the vocabulary has no {t}")))
        };
        Ok(Self {
            unk: id("[UNK]")?,
            cls: id("[CLS]")?,
            sep: id("[SEP]")?,
            pad: id("[PAD]")?,
            vocab,
            index,
            lowercase,
        })
    }

    /// From a `vocab.txt` (one token per line, id = line number).
    pub fn from_vocab_txt(text: &str, lowercase: bool) -> Result<Self, TokenizerError> {
        Self::from_vocab(text.lines().map(str::to_string).collect(), lowercase)
    }

    /// From a Hugging Face `tokenizer.json` whose model is WordPiece.
    pub fn from_tokenizer_json(text: &str) -> Result<Self, TokenizerError> {
        let v: serde_json::Value = serde_json::from_str(text)?;
        if v["model"]["type"] != "WordPiece" {
            return Err(TokenizerError::Invalid(format!(
                "model type {}, want WordPiece",
                v["model"]["type"]
            )));
        }
        let map = v["model"]["vocab"]
            .as_object()
            .ok_or_else(|| TokenizerError::Invalid("no model.vocab object".into()))?;
        let mut vocab = vec![String::new(); map.len()];
        for (token, id) in map {
            let i = id
                .as_u64()
                .filter(|i| (*i as usize) < map.len())
                .ok_or_else(|| TokenizerError::Invalid(format!("token {token:?}: id {id}")))?;
            vocab[i as usize] = token.clone();
        }
        let lowercase = v["normalizer"]["lowercase"].as_bool().unwrap_or(true);
        Self::from_vocab(vocab, lowercase)
    }

    /// Our saved form (in a run folder or a model bundle).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&Saved {
            format: "asg-wordpiece".into(),
            version: 1,
            lowercase: self.lowercase,
            vocab: self.vocab.clone(),
        })
        .unwrap_or_default()
    }

    /// Reads [`WordPiece::to_json`].
    pub fn from_json(text: &str) -> Result<Self, TokenizerError> {
        let s: Saved = serde_json::from_str(text)?;
        if s.format != "asg-wordpiece" || s.version != 1 {
            return Err(TokenizerError::Invalid(format!(
                "format {:?} version {}, want \"asg-wordpiece\" 1",
                s.format, s.version
            )));
        }
        Self::from_vocab(s.vocab, s.lowercase)
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    pub fn pad_id(&self) -> u32 {
        self.pad
    }

    /// `[CLS] pieces... [SEP]`, at most `max_len` tokens.
    pub fn encode(&self, text: &str, max_len: usize) -> Encoding {
        let max_len = max_len.max(2);
        let mut ids = vec![self.cls];
        let mut spans = vec![(0, 0)];
        'words: for (start, word) in basic_words(text) {
            let w = if self.lowercase {
                word.to_lowercase()
            } else {
                word.to_string()
            };
            // Greedy longest match over characters; byte spans are mapped back to the original
            // word (lower-casing keeps the character count for the scripts reports use).
            let chars: Vec<(usize, char)> = w.char_indices().collect();
            let orig: Vec<usize> = word.char_indices().map(|(i, _)| i).collect();
            let byte_at = |ci: usize| {
                if ci < orig.len() && orig.len() == chars.len() {
                    start + orig[ci]
                } else if ci >= chars.len() {
                    start + word.len()
                } else {
                    start
                }
            };
            let mut pieces = Vec::new();
            let mut i = 0;
            if chars.len() > 100 {
                pieces.push((self.unk, start, start + word.len()));
            } else {
                while i < chars.len() {
                    let mut j = chars.len();
                    let mut found = None;
                    while j > i {
                        let from = chars[i].0;
                        let to = if j < chars.len() { chars[j].0 } else { w.len() };
                        let sub = &w[from..to];
                        let key = if i > 0 {
                            format!("##{sub}")
                        } else {
                            sub.to_string()
                        };
                        if let Some(&id) = self.index.get(&key) {
                            found = Some((id, j));
                            break;
                        }
                        j -= 1;
                    }
                    match found {
                        Some((id, j)) => {
                            pieces.push((id, byte_at(i), byte_at(j)));
                            i = j;
                        }
                        None => {
                            pieces = vec![(self.unk, start, start + word.len())];
                            break;
                        }
                    }
                }
            }
            for (id, s, e) in pieces {
                if ids.len() + 1 >= max_len {
                    break 'words;
                }
                ids.push(id);
                spans.push((s, e));
            }
        }
        ids.push(self.sep);
        spans.push((text.len(), text.len()));
        Encoding { ids, spans }
    }
}

/// Whitespace-separated words with punctuation split off, and their byte offsets.
fn basic_words(text: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() || c.is_control() {
            if let Some(s) = start.take() {
                out.push((s, &text[s..i]));
            }
        } else if c.is_ascii_punctuation() || (!c.is_alphanumeric() && !c.is_whitespace()) {
            if let Some(s) = start.take() {
                out.push((s, &text[s..i]));
            }
            out.push((i, &text[i..i + c.len_utf8()]));
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push((s, &text[s..]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wp() -> WordPiece {
        let vocab = "[PAD]\n[UNK]\n[CLS]\n[SEP]\nsmall\nright\npleural\neff\n##usion\n.\nno\n##s";
        WordPiece::from_vocab_txt(vocab, true).unwrap()
    }

    #[test]
    fn greedy_longest_match_with_spans() {
        let t = wp();
        let text = "Small right pleural effusions. Zebra";
        let e = t.encode(text, 32);
        // [CLS] small right pleural eff ##usion ##s . [UNK] [SEP]
        assert_eq!(e.ids, vec![2, 4, 5, 6, 7, 8, 11, 9, 1, 3]);
        assert_eq!(&text[e.spans[4].0..e.spans[4].1], "eff");
        assert_eq!(&text[e.spans[5].0..e.spans[5].1], "usion");
        assert_eq!(&text[e.spans[6].0..e.spans[6].1], "s");
        assert_eq!(&text[e.spans[8].0..e.spans[8].1], "Zebra");
        assert_eq!(e.tokens_in(0, 30), vec![1, 2, 3, 4, 5, 6, 7]);
    }

    #[test]
    fn tokenizer_json_and_our_json_round_trip() {
        let json = r#"{"normalizer": {"type": "BertNormalizer", "lowercase": true},
            "model": {"type": "WordPiece", "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "no": 4}}}"#;
        let t = WordPiece::from_tokenizer_json(json).unwrap();
        assert_eq!(t.encode("No", 8).ids, vec![2, 4, 3]);
        assert_eq!(WordPiece::from_json(&t.to_json()).unwrap(), t);
        assert!(WordPiece::from_tokenizer_json(r#"{"model": {"type": "BPE"}}"#).is_err());
        assert!(WordPiece::from_vocab_txt("a\nb", true).is_err());
    }

    #[test]
    fn any_text_encodes_within_the_limit() {
        let t = wp();
        for text in [
            "",
            "  ",
            "🙂🙂 effusion",
            "\u{0}\u{1}",
            &"pleural ".repeat(1000),
        ] {
            let e = t.encode(text, 16);
            assert!(e.ids.len() <= 16 && e.ids.len() >= 2);
            assert_eq!(e.ids.len(), e.spans.len());
        }
    }
}
