//! `multipart/related` bodies (RFC 2387), as WADO-RS answers and STOW-RS takes them: parts
//! separated by `--boundary` lines, each with its own headers. Written by hand: the multipart
//! crates parse `multipart/form-data` for servers, or need an async runtime.

/// One part: its Content-Type and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub content_type: String,
    pub body: Vec<u8>,
}

/// The `boundary` parameter of a Content-Type (quoted or not).
pub fn boundary(content_type: &str) -> Option<String> {
    content_type.split(';').skip(1).find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| value.trim().trim_matches('"').to_string())
            .filter(|b| !b.is_empty() && b.len() <= 200)
    })
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    (from..=haystack.len() - needle.len()).find(|&i| &haystack[i..i + needle.len()] == needle)
}

/// Splits a `multipart/related` body into its parts. `content_type` is the response's header
/// (it names the boundary). Errors say what is wrong, for the caller to name the URL.
pub fn parse(content_type: &str, body: &[u8]) -> Result<Vec<Part>, String> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    if !media.eq_ignore_ascii_case("multipart/related") {
        return Err(format!(
            "expected a multipart/related response, got {:?}",
            if media.is_empty() {
                "no Content-Type"
            } else {
                media
            }
        ));
    }
    let b = boundary(content_type).ok_or("the multipart/related response names no boundary")?;
    let delimiter = format!("--{b}").into_bytes();
    let mut at = find(body, &delimiter, 0).ok_or("the body holds no multipart boundary")?;
    let mut parts = Vec::new();
    loop {
        let after = at + delimiter.len();
        if body[after..].starts_with(b"--") {
            return Ok(parts); // the closing delimiter
        }
        // The rest of the delimiter line, then the part's headers up to a blank line.
        let line_end = find(body, b"\r\n", after).ok_or("a boundary line does not end")?;
        let headers_end = find(body, b"\r\n\r\n", line_end).ok_or("a part's headers do not end")?;
        // No headers at all: the blank line follows the delimiter line at once.
        let headers = String::from_utf8_lossy(body.get(line_end + 2..headers_end).unwrap_or(&[]));
        let content_type = headers
            .split("\r\n")
            .find_map(|h| {
                let (name, value) = h.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("content-type")
                    .then(|| value.trim().to_string())
            })
            .unwrap_or_default();
        let start = headers_end + 4;
        let mut closing = b"\r\n".to_vec();
        closing.extend_from_slice(&delimiter);
        let end = find(body, &closing, start).ok_or("a part is not closed by a boundary")?;
        parts.push(Part {
            content_type,
            body: body[start..end].to_vec(),
        });
        at = end + 2;
    }
}

/// A `multipart/related` body of `files`, each of `part_type`; returns the Content-Type to
/// send (with its boundary) and the body. The boundary is one no file contains.
pub fn write(files: &[Vec<u8>], part_type: &str) -> (String, Vec<u8>) {
    let mut n: u64 = 0x9e37_79b9_7f4a_7c15;
    let boundary = loop {
        let b = format!("asg-boundary-{n:016x}");
        let needle = format!("--{b}").into_bytes();
        if files.iter().all(|f| find(f, &needle, 0).is_none()) {
            break b;
        }
        n = n.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    };
    let mut body = Vec::with_capacity(files.iter().map(|f| f.len() + 128).sum());
    for f in files {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Type: {part_type}\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(f);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (
        format!("multipart/related; type=\"{part_type}\"; boundary={boundary}"),
        body,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_parses_back() {
        let files = vec![
            b"first\r\n--not a boundary".to_vec(),
            vec![0u8, 1, 2, 255],
            vec![],
        ];
        let (ct, body) = write(&files, "application/dicom");
        let parts = parse(&ct, &body).unwrap();
        assert_eq!(parts.len(), 3);
        for (p, f) in parts.iter().zip(&files) {
            assert_eq!(&p.body, f);
            assert_eq!(p.content_type, "application/dicom");
        }
    }

    #[test]
    fn a_hand_written_response_with_quoted_boundary_and_preamble() {
        let body = b"preamble\r\n--abc\r\nContent-Type: application/dicom\r\nContent-Length: 3\r\n\r\nXYZ\r\n--abc--\r\n";
        let parts = parse(
            "multipart/related; type=\"application/dicom\"; boundary=\"abc\"",
            body,
        )
        .unwrap();
        assert_eq!(
            parts,
            vec![Part {
                content_type: "application/dicom".into(),
                body: b"XYZ".to_vec()
            }]
        );
    }

    #[test]
    fn any_truncation_or_byte_flip_is_an_error_or_parts_never_a_panic() {
        let (ct, body) = write(
            &[b"DICM payload".to_vec(), vec![13, 10, 45, 45]],
            "application/dicom",
        );
        for cut in 0..body.len() {
            let _ = parse(&ct, &body[..cut]);
        }
        let mut x: u32 = 1;
        for _ in 0..5000 {
            let mut b = body.clone();
            for _ in 0..3 {
                x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                let at = x as usize % b.len();
                b[at] = [b'\r', b'\n', b'-', b'a', 0][(x >> 24) as usize % 5];
            }
            let _ = parse(&ct, &b);
        }
    }

    #[test]
    fn broken_bodies_are_named() {
        assert!(parse("application/json", b"{}")
            .unwrap_err()
            .contains("application/json"));
        assert!(parse("multipart/related", b"")
            .unwrap_err()
            .contains("no boundary"));
        let ct = "multipart/related; boundary=abc";
        assert!(parse(ct, b"nothing here")
            .unwrap_err()
            .contains("no multipart boundary"));
        assert!(parse(ct, b"--abc\r\nContent-Type: x")
            .unwrap_err()
            .contains("headers do not end"));
        assert!(parse(ct, b"--abc\r\n\r\ndata without end")
            .unwrap_err()
            .contains("not closed"));
        assert_eq!(boundary("multipart/related; boundary=\"\""), None);
    }
}
