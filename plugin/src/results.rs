//! Results other systems read: a DICOM Enhanced SR measurement report (TID 1500) and a FHIR R4
//! DiagnosticReport with one Observation per grounded finding.
//!
//! Codes: SNOMED CT where we are confident of the concept (listed below); everything else in our
//! private scheme `99ASG` with the finding or region name as the meaning, documented in
//! `docs/results.md`.

use crate::analysis::Analysis;
use asg_dicom::sr::{Code, FindingGroup, MeasurementReport, SourceImage};

/// SNOMED CT codes of findings.
const SCT_FINDINGS: &[(&str, &str, &str)] = &[
    ("pleural effusion", "60046008", "Pleural effusion"),
    ("pneumothorax", "36118008", "Pneumothorax"),
    ("cardiomegaly", "8186001", "Cardiomegaly"),
    ("atelectasis", "46621007", "Atelectasis"),
    ("edema", "19242006", "Pulmonary edema"),
    ("pneumonia", "233604007", "Pneumonia"),
    ("fracture", "125605004", "Fracture of bone"),
    ("emphysema", "87433001", "Pulmonary emphysema"),
];

/// SNOMED CT codes of anatomical regions.
const SCT_REGIONS: &[(&str, &str, &str)] = &[
    ("right lung", "3341006", "Right lung structure"),
    ("left lung", "44029006", "Left lung structure"),
    ("cardiac silhouette", "80891009", "Heart structure"),
    ("mediastinum", "72410000", "Mediastinal structure"),
    ("trachea", "44567001", "Tracheal structure"),
    ("spine", "421060004", "Vertebral column structure"),
    ("abdomen", "113345001", "Abdominal structure"),
    ("aortic arch", "57034009", "Aortic arch structure"),
    ("svc", "48345005", "Superior vena cava structure"),
    ("right atrium", "73829009", "Right atrial structure"),
];

/// Our private coding scheme for concepts without a code above.
pub const PRIVATE_SCHEME: &str = "99ASG";

fn private_code(prefix: &str, name: &str) -> Code {
    // Code values are at most 16 characters: a prefix and the name's position in our vocabulary.
    let index = if prefix == "F" {
        asg_report::finding_index(name)
    } else {
        asg_report::region_index(name)
    };
    let value = match index {
        Some(i) => format!("{prefix}{i:03}"),
        None => format!("{prefix}999"),
    };
    Code::new(&value, PRIVATE_SCHEME, name)
}

/// DICOM DA and TM from an ISO 8601 instant ("2026-11-30T06:27:00.000Z" -> "20261130", "062700").
pub fn dicom_date_time(iso: &str) -> (String, String) {
    let digits = |s: &str| s.chars().filter(|c| c.is_ascii_digit()).collect::<String>();
    let (date, time) = iso.split_once('T').unwrap_or((iso, ""));
    let time: String = digits(time.split(['.', 'Z', '+']).next().unwrap_or(""));
    (digits(date), time)
}

/// The SR (Part 10 bytes) and the FHIR DiagnosticReport (JSON text) of an analysis of the DICOM
/// file in `bytes`, made at `iso_now` (an ISO 8601 instant): what the viewer exports.
pub fn export_results(
    bytes: &[u8],
    name: &str,
    analysis: &Analysis,
    iso_now: &str,
) -> Result<(Vec<u8>, String), asg_dicom::DicomError> {
    let source = asg_dicom::sr::source_image(bytes, name)?;
    let patient = source.patient_id.clone();
    let sr = asg_dicom::sr::sr_bytes(&measurement_report(
        analysis,
        source,
        dicom_date_time(iso_now),
    ))?;
    let fhir =
        serde_json::to_string_pretty(&fhir_report(analysis, &patient, iso_now)).unwrap_or_default();
    Ok((sr, fhir))
}

/// The coded concept of a finding name.
pub fn finding_code(name: &str) -> Code {
    SCT_FINDINGS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, v, m)| Code::new(v, "SCT", m))
        .unwrap_or_else(|| private_code("F", name))
}

/// The coded concept of a region name.
pub fn region_code(name: &str) -> Code {
    SCT_REGIONS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, v, m)| Code::new(v, "SCT", m))
        .unwrap_or_else(|| private_code("R", name))
}

/// A grounded finding: a present finding with the region that carries it most (or, without one,
/// the region under its heatmap's peak).
pub struct Grounded<'a> {
    pub finding: &'a str,
    pub probability: f32,
    pub region: &'a str,
    pub bbox: [f32; 4],
}

/// The present findings of an analysis with a region each (findings with no region are left out).
pub fn grounded(analysis: &Analysis) -> Vec<Grounded<'_>> {
    analysis
        .findings
        .iter()
        .filter(|f| f.present)
        .filter_map(|f| {
            let region = f
                .regions
                .first()
                .map(String::as_str)
                .or_else(|| f.heatmap.as_ref().and_then(|h| h.peak_region.as_deref()))?;
            let r = analysis.regions.iter().find(|r| r.name == region)?;
            Some(Grounded {
                finding: &f.name,
                probability: f.probability,
                region: &r.name,
                bbox: r.bbox,
            })
        })
        .collect()
}

/// A new UID under 2.25 from random-looking bits of the inputs and the time (no randomness
/// source is needed for uniqueness in practice: the SOP instance UID and nanoseconds differ).
pub fn new_uid(salt: &str) -> String {
    // web_time: std's clock panics in the browser.
    let nanos = web_time::SystemTime::now()
        .duration_since(web_time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let digest = asg_bundle::sha256_hex(format!("{salt}/{nanos}").as_bytes());
    let n = u128::from_str_radix(&digest[..32], 16).unwrap_or(nanos);
    asg_dicom::uid_from_u128(n)
}

/// The Tracking Identifier under which OHIF (cornerstone-dicom-sr) and Cornerstone3D's SR
/// adapters draw a measurement group's closed POLYLINE as a rectangle.
pub const OHIF_RECTANGLE_ROI: &str = "Cornerstone3DTools@^0.1.0:RectangleROI";

/// The SR of an analysis of `source`.
pub fn measurement_report(
    analysis: &Analysis,
    source: SourceImage,
    now: (String, String),
) -> MeasurementReport {
    let salt = &analysis.image.sop_instance_uid;
    let groups = grounded(analysis)
        .iter()
        .enumerate()
        .map(|(i, g)| FindingGroup {
            // The convention OHIF and Cornerstone3D hydrate a box from (their RectangleROI
            // tool); the finding and its site are the group's coded items.
            tracking_identifier: OHIF_RECTANGLE_ROI.to_string(),
            tracking_uid: new_uid(&format!("{salt}/track/{i}")),
            finding: finding_code(g.finding),
            site: region_code(g.region),
            bbox: g.bbox,
            probability: g.probability,
        })
        .collect();
    MeasurementReport {
        source,
        series_instance_uid: new_uid(&format!("{salt}/series")),
        sop_instance_uid: new_uid(&format!("{salt}/instance")),
        device_observer_uid: new_uid(&format!(
            "{}/{}",
            analysis.model.name, analysis.model.image_sha256
        )),
        algorithm_name: analysis.model.name.clone(),
        algorithm_version: analysis.model.version.clone(),
        content_date: now.0,
        content_time: now.1,
        groups,
    }
}

fn codeable(c: &Code) -> serde_json::Value {
    let system = match c.scheme.as_str() {
        "SCT" => "http://snomed.info/sct".to_string(),
        other => format!("urn:asg:{}", other.to_lowercase()),
    };
    serde_json::json!({
        "coding": [{ "system": system, "code": c.value, "display": c.meaning }],
        "text": c.meaning,
    })
}

/// A FHIR R4 DiagnosticReport (JSON) with one contained Observation per grounded finding: code
/// the finding, bodySite the region, value the probability, derivedFrom the ImagingStudy (by its
/// Study Instance UID).
pub fn fhir_report(analysis: &Analysis, patient_id: &str, issued: &str) -> serde_json::Value {
    let study = serde_json::json!({
        "type": "ImagingStudy",
        "identifier": { "system": "urn:dicom:uid", "value": format!("urn:oid:{}", analysis.image.study_instance_uid) },
    });
    let observations: Vec<serde_json::Value> = grounded(analysis)
        .iter()
        .enumerate()
        .map(|(i, g)| {
            serde_json::json!({
                "resourceType": "Observation",
                "id": format!("finding-{}", i + 1),
                "status": "preliminary",
                "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "imaging", "display": "Imaging" }] }],
                "code": codeable(&finding_code(g.finding)),
                "bodySite": codeable(&region_code(g.region)),
                "valueQuantity": { "value": (g.probability as f64 * 1e4).round() / 1e4, "unit": "probability", "system": "http://unitsofmeasure.org", "code": "1" },
                "derivedFrom": [study.clone()],
                "device": { "display": format!("{} {}", analysis.model.name, analysis.model.version) },
                "note": [{ "text": format!("Box x1,y1,x2,y2 in image pixels: {:.1}, {:.1}, {:.1}, {:.1}", g.bbox[0], g.bbox[1], g.bbox[2], g.bbox[3]) }],
            })
        })
        .collect();
    let results: Vec<serde_json::Value> = (1..=observations.len())
        .map(|i| serde_json::json!({ "reference": format!("#finding-{i}") }))
        .collect();
    let summary: Vec<String> = grounded(analysis)
        .iter()
        .map(|g| format!("{} in {} ({:.2})", g.finding, g.region, g.probability))
        .collect();
    let mut report = serde_json::json!({
        "resourceType": "DiagnosticReport",
        "id": "asg-analysis",
        "contained": observations,
        "status": "preliminary",
        "category": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "RAD", "display": "Radiology" }] }],
        "code": { "coding": [{ "system": "http://loinc.org", "code": "18748-4", "display": "Diagnostic imaging study" }], "text": "Chest radiograph, automated analysis" },
        "issued": issued,
        "imagingStudy": [study],
        "conclusion": if summary.is_empty() { "No finding above threshold.".to_string() } else { summary.join("; ") },
    });
    if !patient_id.is_empty() {
        report["subject"] = serde_json::json!({ "identifier": { "value": patient_id } });
    }
    if !results.is_empty() {
        report["result"] = serde_json::Value::Array(results);
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_instants_become_dicom_date_and_time() {
        assert_eq!(
            dicom_date_time("2026-11-30T06:27:05.123Z"),
            ("20261130".to_string(), "062705".to_string())
        );
    }

    #[test]
    fn codes_are_snomed_where_listed_and_private_otherwise() {
        assert_eq!(finding_code("pleural effusion").scheme, "SCT");
        let p = finding_code("opacity");
        assert_eq!(
            (p.scheme.as_str(), p.meaning.as_str()),
            (PRIVATE_SCHEME, "opacity")
        );
        assert!(p.value.starts_with('F') && p.value.len() <= 16);
        assert_eq!(region_code("left lung").value, "44029006");
        assert!(region_code("left lower lung zone").value.starts_with('R'));
        // Every region and finding gets a code of at most 16 characters.
        for r in asg_report::REGIONS {
            assert!(region_code(r.name).value.len() <= 16);
        }
    }
}
