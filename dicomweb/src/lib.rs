//! A DICOMweb client for the workstation: QIDO-RS to find a study's radiographs, WADO-RS to
//! retrieve them, STOW-RS to store results back. Every response is capped before it is read,
//! every call has a timeout, and every failure is a [`DicomWebError`] naming the URL and the
//! cause. HTTP is `ureq` with rustls; the `multipart/related` bodies of WADO-RS and STOW-RS are
//! parsed and written here ([`multipart`]): no maintained blocking crate does `multipart/related`.

pub mod multipart;

use serde_json::Value;
use std::time::Duration;

/// Why a DICOMweb call failed. Each names the URL it was made to.
#[derive(Debug, thiserror::Error)]
pub enum DicomWebError {
    /// The base URL is not an http(s) URL.
    #[error("{url}: not an http:// or https:// URL")]
    BadUrl { url: String },
    /// A header given as `Name: value` is not one (its text is not repeated: it may be a
    /// secret).
    #[error("header number {index} is not 'Name: value' (its text is not shown: it may be a credential)")]
    BadHeader { index: usize },
    /// The server could not be reached (refused, unknown host, TLS failure) or the call ran
    /// past its timeout.
    #[error("{url}: the server could not be reached: {reason}")]
    Unreachable { url: String, reason: String },
    /// The server answered with an error status.
    #[error("{url}: HTTP {status}{}", if .detail.is_empty() { String::new() } else { format!(": {}", .detail) })]
    Status {
        url: String,
        status: u16,
        detail: String,
    },
    /// The response is larger than the cap for its kind.
    #[error("{url}: the response is larger than the {limit} bytes allowed")]
    TooLarge { url: String, limit: u64 },
    /// The response is not what DICOMweb says it must be (not JSON, not multipart, a part that
    /// is not a DICOM file...).
    #[error("{url}: {reason}")]
    BadResponse { url: String, reason: String },
    /// A UID (given, or in a response) that is not one: it would change the URL's meaning.
    #[error("{url}: {uid:?} is not a DICOM UID")]
    BadUid { url: String, uid: String },
    /// STOW-RS answered, but refused some or all of the instances.
    #[error("{url}: the server refused to store {refused} of {sent} instance(s): {reason}")]
    Refused {
        url: String,
        sent: usize,
        refused: usize,
        reason: String,
    },
}

/// Caps on what the client reads and how long it waits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest QIDO-RS (JSON) response read.
    pub max_json_bytes: u64,
    /// Largest WADO-RS response for one instance (the DICOM file and its multipart framing).
    pub max_instance_bytes: u64,
    /// Most instances taken from one study, and studies from one search.
    pub max_results: usize,
    /// Studies asked for per QIDO-RS page (`limit`, then `offset` for the next page).
    pub page_size: usize,
    /// Timeout of a whole call, connecting and reading included.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_json_bytes: 32 << 20,
            max_instance_bytes: 1 << 30,
            max_results: 10_000,
            page_size: 500,
            timeout: Duration::from_secs(120),
        }
    }
}

/// One instance found by QIDO-RS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRef {
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub sop_instance_uid: String,
    /// The series' modality (CR, DX...).
    pub modality: String,
}

/// What STOW-RS stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The SOP instance UIDs the server says it stored.
    pub sop_instance_uids: Vec<String>,
}

/// A DICOMweb service: its base URL (the part before `/studies`) and the headers sent with
/// every request (`Authorization: ...`).
pub struct Client {
    agent: ureq::Agent,
    base: String,
    headers: Vec<(String, String)>,
    limits: Limits,
}

/// A DICOM JSON attribute's first string value (`{"0020000D": {"vr": "UI", "Value": [...]}}`).
fn first_string(item: &Value, tag: &str) -> Option<String> {
    item.get(tag)?
        .get("Value")?
        .get(0)?
        .as_str()
        .map(str::to_string)
}

/// Characters that may stand in a UID: anything else would change the URL's meaning.
fn check_uid(url: &str, uid: &str) -> Result<(), DicomWebError> {
    if uid.is_empty() || uid.len() > 64 || !uid.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return Err(DicomWebError::BadUid {
            url: url.to_string(),
            uid: uid.to_string(),
        });
    }
    Ok(())
}

impl Client {
    /// A client for `base_url` (`http(s)://host:port/dicom-web`), sending `headers` (each
    /// `Name: value`) with every request.
    pub fn new(base_url: &str, headers: &[String], limits: Limits) -> Result<Self, DicomWebError> {
        let base = base_url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(DicomWebError::BadUrl { url: base });
        }
        let headers = headers
            .iter()
            .enumerate()
            .map(|(index, h)| match h.split_once(':') {
                Some((name, value))
                    if !name.trim().is_empty()
                        && name.trim().bytes().all(|b| b.is_ascii_graphic()) =>
                {
                    Ok((name.trim().to_string(), value.trim().to_string()))
                }
                _ => Err(DicomWebError::BadHeader { index: index + 1 }),
            })
            .collect::<Result<_, _>>()?;
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::PlatformVerifier)
            .build();
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(limits.timeout))
            .timeout_connect(Some(limits.timeout.min(Duration::from_secs(15))))
            .http_status_as_error(false)
            .tls_config(tls)
            .user_agent(concat!("asg/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Ok(Client {
            agent,
            base,
            headers,
            limits,
        })
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn unreachable(url: &str, e: ureq::Error) -> DicomWebError {
        match e {
            ureq::Error::BodyExceedsLimit(limit) => DicomWebError::TooLarge {
                url: url.to_string(),
                limit,
            },
            e => DicomWebError::Unreachable {
                url: url.to_string(),
                reason: e.to_string(),
            },
        }
    }

    /// Reads a response capped at `limit` bytes, turning error statuses into errors.
    fn read(
        url: &str,
        mut response: ureq::http::Response<ureq::Body>,
        limit: u64,
    ) -> Result<(String, Vec<u8>), DicomWebError> {
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let body = response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| Self::unreachable(url, e));
        if status >= 400 {
            let detail = body
                .ok()
                .map(|b| {
                    String::from_utf8_lossy(&b[..b.len().min(200)])
                        .trim()
                        .to_string()
                })
                .unwrap_or_default();
            return Err(DicomWebError::Status {
                url: url.to_string(),
                status,
                detail,
            });
        }
        Ok((content_type, body?))
    }

    fn get(&self, url: &str, accept: &str, limit: u64) -> Result<(String, Vec<u8>), DicomWebError> {
        let mut request = self.agent.get(url).header("Accept", accept);
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request.call().map_err(|e| Self::unreachable(url, e))?;
        Self::read(url, response, limit)
    }

    /// A QIDO-RS search: the DICOM JSON array it answers (204 and an empty body: none).
    fn search(&self, url: &str) -> Result<Vec<Value>, DicomWebError> {
        let (_, body) = self.get(url, "application/dicom+json", self.limits.max_json_bytes)?;
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Vec::new());
        }
        let value: Value =
            serde_json::from_slice(&body).map_err(|e| DicomWebError::BadResponse {
                url: url.to_string(),
                reason: format!("not DICOM JSON: {e}"),
            })?;
        match value {
            Value::Array(items) => Ok(items),
            _ => Err(DicomWebError::BadResponse {
                url: url.to_string(),
                reason: "not a DICOM JSON array".to_string(),
            }),
        }
    }

    /// The Study Instance UIDs of every study the service holds, page by page; more than
    /// `max_results` is an error (name the studies instead), not a silent cut.
    pub fn studies(&self) -> Result<Vec<String>, DicomWebError> {
        let page = self.limits.page_size.max(1);
        let mut out: Vec<String> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        loop {
            let url = format!(
                "{}/studies?includefield=0020000D&limit={page}&offset={}",
                self.base,
                out.len()
            );
            let items = self.search(&url)?;
            let mut new = 0;
            for item in &items {
                let uid = first_string(item, "0020000D").unwrap_or_default();
                check_uid(&url, &uid)?;
                if seen.insert(uid.clone()) {
                    out.push(uid);
                    new += 1;
                }
                if out.len() > self.limits.max_results {
                    return Err(DicomWebError::TooLarge {
                        url,
                        limit: self.limits.max_results as u64,
                    });
                }
            }
            // A short page is the last; a page of nothing new means the service ignores
            // `offset` (it would answer the same page for ever).
            if items.len() < page || new == 0 {
                return Ok(out);
            }
        }
    }

    /// The instances of `study` in series of one of `modalities` (CR, DX...), in the order the
    /// service lists them.
    pub fn instances(
        &self,
        study: &str,
        modalities: &[&str],
    ) -> Result<Vec<InstanceRef>, DicomWebError> {
        let url = format!("{}/studies/{study}/series?includefield=00080060", self.base);
        check_uid(&url, study)?;
        let series = self.search(&url)?;
        let mut out = Vec::new();
        for s in &series {
            let modality = first_string(s, "00080060").unwrap_or_default();
            if !modalities.iter().any(|m| m.eq_ignore_ascii_case(&modality)) {
                continue;
            }
            let series_uid = first_string(s, "0020000E").unwrap_or_default();
            check_uid(&url, &series_uid)?;
            let url = format!(
                "{}/studies/{study}/series/{series_uid}/instances?includefield=00080018",
                self.base
            );
            for i in self.search(&url)? {
                let sop = first_string(&i, "00080018").unwrap_or_default();
                check_uid(&url, &sop)?;
                if out.len() == self.limits.max_results {
                    return Err(DicomWebError::TooLarge {
                        url,
                        limit: self.limits.max_results as u64,
                    });
                }
                out.push(InstanceRef {
                    study_instance_uid: study.to_string(),
                    series_instance_uid: series_uid.clone(),
                    sop_instance_uid: sop,
                    modality: modality.clone(),
                });
            }
        }
        Ok(out)
    }

    /// The WADO-RS URL of an instance.
    pub fn instance_url(&self, i: &InstanceRef) -> String {
        format!(
            "{}/studies/{}/series/{}/instances/{}",
            self.base, i.study_instance_uid, i.series_instance_uid, i.sop_instance_uid
        )
    }

    /// Retrieves one instance as a DICOM Part 10 file, in whatever transfer syntax the server
    /// holds it (`transfer-syntax=*`).
    pub fn retrieve(&self, i: &InstanceRef) -> Result<Vec<u8>, DicomWebError> {
        let url = self.instance_url(i);
        let (content_type, body) = self.get(
            &url,
            "multipart/related; type=\"application/dicom\"; transfer-syntax=*",
            self.limits.max_instance_bytes,
        )?;
        let bad = |reason: String| DicomWebError::BadResponse {
            url: url.clone(),
            reason,
        };
        let parts = multipart::parse(&content_type, &body).map_err(bad)?;
        let mut dicom = parts.into_iter().filter(|p| {
            p.content_type
                .split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/dicom"))
        });
        let part = dicom
            .next()
            .ok_or_else(|| bad("the response holds no application/dicom part".to_string()))?;
        if part.body.len() < 132 || &part.body[128..132] != b"DICM" {
            return Err(bad(
                "the application/dicom part is not a DICOM Part 10 file (no DICM at byte 128)"
                    .to_string(),
            ));
        }
        Ok(part.body)
    }

    /// Stores DICOM Part 10 files in `study` with STOW-RS; every one must be accepted.
    pub fn store(&self, study: &str, files: &[Vec<u8>]) -> Result<Stored, DicomWebError> {
        let url = format!("{}/studies/{study}", self.base);
        check_uid(&url, study)?;
        let (content_type, body) = multipart::write(files, "application/dicom");
        let mut request = self
            .agent
            .post(&url)
            .header("Content-Type", content_type.as_str())
            .header("Accept", "application/dicom+json");
        for (name, value) in &self.headers {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request
            .send(&body[..])
            .map_err(|e| Self::unreachable(&url, e))?;
        let refused = |reason: String| DicomWebError::Refused {
            url: url.clone(),
            sent: files.len(),
            refused: files.len(),
            reason,
        };
        let (_, answer) = match Self::read(&url, response, self.limits.max_json_bytes) {
            Err(DicomWebError::Status { status, detail, .. }) => {
                return Err(refused(
                    format!("HTTP {status} {detail}").trim().to_string(),
                ))
            }
            r => r?,
        };
        let value: Value = serde_json::from_slice(&answer)
            .map_err(|e| refused(format!("the answer is not DICOM JSON: {e}")))?;
        let list = |tag: &str| -> Vec<Value> {
            value
                .get(tag)
                .and_then(|s| s.get("Value"))
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        // Failed SOP Sequence (0008,1198), Referenced SOP Sequence (0008,1199).
        let failed = list("00081198");
        if !failed.is_empty() {
            let reasons: Vec<String> = failed
                .iter()
                .map(|f| {
                    let uid = first_string(f, "00081155").unwrap_or_default();
                    let reason = f
                        .get("00081197")
                        .and_then(|r| r.get("Value"))
                        .and_then(|v| v.get(0))
                        .map(|v| v.to_string())
                        .unwrap_or_default();
                    format!("{uid} (failure reason {reason})")
                })
                .collect();
            return Err(DicomWebError::Refused {
                url: url.clone(),
                sent: files.len(),
                refused: failed.len(),
                reason: reasons.join("; "),
            });
        }
        let stored: Vec<String> = list("00081199")
            .iter()
            .filter_map(|r| first_string(r, "00081155"))
            .collect();
        if stored.len() < files.len() {
            return Err(DicomWebError::Refused {
                url: url.clone(),
                sent: files.len(),
                refused: files.len() - stored.len(),
                reason: "the answer lists fewer stored instances than were sent".to_string(),
            });
        }
        Ok(Stored {
            sop_instance_uids: stored,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_headers_are_checked() {
        assert!(matches!(
            Client::new("ftp://pacs/dicom-web", &[], Limits::default()),
            Err(DicomWebError::BadUrl { .. })
        ));
        let e = Client::new(
            "http://127.0.0.1:1/dicom-web/",
            &["Bearer secret".to_string()],
            Limits::default(),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(e.contains("header number 1 is not 'Name: value'"), "{e}");
        assert!(!e.contains("Bearer"), "the header's value is repeated: {e}");
        let c = Client::new(
            "http://127.0.0.1:1/dicom-web/",
            &["Authorization: Bearer x".to_string()],
            Limits::default(),
        )
        .ok();
        assert_eq!(
            c.as_ref().map(Client::base_url),
            Some("http://127.0.0.1:1/dicom-web")
        );
    }

    #[test]
    fn a_server_that_is_down_is_named() {
        // Port 1 on loopback: nothing listens there.
        let c = Client::new(
            "http://127.0.0.1:1/dicom-web",
            &[],
            Limits {
                timeout: Duration::from_secs(5),
                ..Limits::default()
            },
        )
        .map_err(|e| e.to_string());
        let e = c.and_then(|c| c.studies().map_err(|e| e.to_string()));
        let e = e.err().unwrap_or_default();
        assert!(
            e.starts_with("http://127.0.0.1:1/dicom-web/studies")
                && e.contains("could not be reached"),
            "{e}"
        );
    }

    #[test]
    fn uids_that_would_change_a_url_are_refused() {
        assert!(check_uid("u", "1.2.840.10008").is_ok());
        for bad in ["", "1.2/../3", "1.2?x=1", &"1".repeat(65)] {
            assert!(check_uid("u", bad).is_err(), "{bad}");
        }
    }
}

/// Against a deliberately broken server (what a real PACS does not do on demand).
#[cfg(test)]
mod broken_server {
    use super::*;

    /// Serves `answers` (status, content type, body) in turn on loopback.
    fn serve(answers: Vec<(u16, &'static str, Vec<u8>)>) -> String {
        let server = tiny_http::Server::http("127.0.0.1:0").expect("server");
        let url = format!("http://{}/dicom-web", server.server_addr());
        std::thread::spawn(move || {
            for (status, content_type, body) in answers {
                let Ok(request) = server.recv() else { return };
                let header =
                    tiny_http::Header::from_bytes("Content-Type", content_type).expect("header");
                let _ = request.respond(
                    tiny_http::Response::from_data(body)
                        .with_status_code(status)
                        .with_header(header),
                );
            }
        });
        url
    }

    fn instance() -> InstanceRef {
        InstanceRef {
            study_instance_uid: "1.2".into(),
            series_instance_uid: "1.3".into(),
            sop_instance_uid: "1.4".into(),
            modality: "DX".into(),
        }
    }

    #[test]
    fn a_service_that_ignores_offset_does_not_loop_for_ever() {
        let page = br#"[{"0020000D": {"vr": "UI", "Value": ["1.2.3"]}}]"#.to_vec();
        let url = serve(vec![
            (200, "application/dicom+json", page.clone()),
            (200, "application/dicom+json", page),
        ]);
        let limits = Limits {
            page_size: 1,
            ..Limits::default()
        };
        let c = Client::new(&url, &[], limits).expect("client");
        assert_eq!(c.studies().ok(), Some(vec!["1.2.3".to_string()]));
    }

    #[test]
    fn a_part_that_is_not_dicom_and_json_that_is_not_json() {
        let url = serve(vec![
            (
                200,
                "multipart/related; type=\"text/plain\"; boundary=b",
                b"--b\r\nContent-Type: text/plain\r\n\r\nhello\r\n--b--\r\n".to_vec(),
            ),
            (
                200,
                "multipart/related; type=\"application/dicom\"; boundary=b",
                b"--b\r\nContent-Type: application/dicom\r\n\r\nshort\r\n--b--\r\n".to_vec(),
            ),
            (200, "application/dicom+json", b"<html>".to_vec()),
            (500, "text/plain", b"database locked".to_vec()),
        ]);
        let c = Client::new(&url, &[], Limits::default()).expect("client");
        let e = c
            .retrieve(&instance())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            e.ends_with("instances/1.4: the response holds no application/dicom part"),
            "{e}"
        );
        let e = c
            .retrieve(&instance())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("not a DICOM Part 10 file"), "{e}");
        let e = c.studies().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("not DICOM JSON"), "{e}");
        match c.store("1.2", &[vec![0; 10]]) {
            Err(DicomWebError::Refused { reason, .. }) => {
                assert!(reason.contains("HTTP 500 database locked"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
}
