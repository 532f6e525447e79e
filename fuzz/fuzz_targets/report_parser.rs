//! Any text -> report parser (sentences, sections, findings with existence and regions) and the
//! default bundle's tokenizer: must never panic, and what it returns must be consistent (sentence
//! spans inside the text, on character boundaries; encodings no longer than asked).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn tokenizer() -> &'static asg_report::TextTokenizer {
    static TOKENIZER: OnceLock<asg_report::TextTokenizer> = OnceLock::new();
    TOKENIZER.get_or_init(|| {
        asg_report::TextTokenizer::from_json(include_str!("../../models/default/tokenizer.json"))
            .unwrap_or_else(|e| panic!("the default bundle's tokenizer does not load: {e}"))
    })
}

fuzz_target!(|data: &[u8]| {
    // Reports arrive as bytes from files; the CLI reads them as lossy UTF-8.
    let text = String::from_utf8_lossy(data);
    let parsed = asg_report::parse(&text);
    for s in &parsed.sentences {
        assert!(s.start <= s.end && s.end <= text.len(), "span {}..{}", s.start, s.end);
        assert!(text.is_char_boundary(s.start) && text.is_char_boundary(s.end));
    }
    let v = parsed.tag_vector(0.5);
    assert!(v.iter().all(|x| x.is_finite()));
    let _ = parsed.region_findings();
    let encoding = tokenizer().encode(&text, 64);
    assert!(encoding.ids.len() <= 64);
});
