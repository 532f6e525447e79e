//! Writing a DICOM Enhanced SR measurement report (TID 1500) of planar regions (TID 1410), the
//! way AI results reach PACS and viewers (IHE AI Results): an image library entry for the source
//! image, one measurement group per finding with its tracking identifier and UID, the finding and
//! its site as coded concepts, the region as an SCOORD POLYLINE selected from the image, the
//! probability as a NUM, and the algorithm's name and version (TID 4019). Patient and study
//! identity are copied from the source image; the SR gets new series and instance UIDs.
//!
//! Written by hand on dicom-rs's object model: no library writes TID 1500 in Rust. Checked in the
//! tests with pydicom, highdicom and dcmtk's dsrdump.

use crate::error::{DicomError, DicomErrorKind};
use dicom_core::value::{DataSetSequence, PrimitiveValue};
use dicom_core::{DataElement, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use std::path::Path;

/// Enhanced SR Storage.
pub const SOP_CLASS_ENHANCED_SR: &str = "1.2.840.10008.5.1.4.1.1.88.22";

/// A coded concept: (value, scheme, meaning).
#[derive(Debug, Clone, PartialEq)]
pub struct Code {
    pub value: String,
    pub scheme: String,
    pub meaning: String,
}

impl Code {
    pub fn new(value: &str, scheme: &str, meaning: &str) -> Self {
        Self {
            value: value.into(),
            scheme: scheme.into(),
            meaning: meaning.into(),
        }
    }
}

/// Who the source image belongs to and where it sits, copied into the SR. Empty strings for
/// elements the source lacks (they are type 2 in the SR).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SourceImage {
    pub patient_name: String,
    pub patient_id: String,
    pub patient_birth_date: String,
    pub patient_sex: String,
    pub study_instance_uid: String,
    pub study_date: String,
    pub study_time: String,
    pub study_id: String,
    pub accession_number: String,
    pub referring_physician_name: String,
    pub series_instance_uid: String,
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
}

/// One measurement group: a finding in a region.
#[derive(Debug, Clone, PartialEq)]
pub struct FindingGroup {
    pub tracking_identifier: String,
    pub tracking_uid: String,
    pub finding: Code,
    pub site: Code,
    /// The region's box x1, y1, x2, y2 in image pixels (column, row).
    pub bbox: [f32; 4],
    pub probability: f32,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasurementReport {
    pub source: SourceImage,
    pub series_instance_uid: String,
    pub sop_instance_uid: String,
    pub device_observer_uid: String,
    pub algorithm_name: String,
    pub algorithm_version: String,
    /// YYYYMMDD and HHMMSS of the content.
    pub content_date: String,
    pub content_time: String,
    pub groups: Vec<FindingGroup>,
}

fn put(obj: &mut InMemDicomObject, tag: Tag, vr: VR, value: &str) {
    obj.put(DataElement::new(tag, vr, PrimitiveValue::from(value)));
}

fn seq(obj: &mut InMemDicomObject, tag: Tag, items: Vec<InMemDicomObject>) {
    obj.put(DataElement::new(tag, VR::SQ, DataSetSequence::from(items)));
}

fn code_item(c: &Code) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    put(&mut o, tags::CODE_VALUE, VR::SH, &c.value);
    put(&mut o, tags::CODING_SCHEME_DESIGNATOR, VR::SH, &c.scheme);
    put(&mut o, tags::CODE_MEANING, VR::LO, &c.meaning);
    o
}

/// A content item with its relationship, value type and concept name.
fn item(relationship: &str, value_type: &str, name: &Code) -> InMemDicomObject {
    let mut o = InMemDicomObject::new_empty();
    put(&mut o, tags::RELATIONSHIP_TYPE, VR::CS, relationship);
    put(&mut o, tags::VALUE_TYPE, VR::CS, value_type);
    seq(
        &mut o,
        tags::CONCEPT_NAME_CODE_SEQUENCE,
        vec![code_item(name)],
    );
    o
}

fn code(relationship: &str, name: &Code, value: &Code) -> InMemDicomObject {
    let mut o = item(relationship, "CODE", name);
    seq(&mut o, tags::CONCEPT_CODE_SEQUENCE, vec![code_item(value)]);
    o
}

fn text(relationship: &str, name: &Code, value: &str) -> InMemDicomObject {
    let mut o = item(relationship, "TEXT", name);
    put(&mut o, tags::TEXT_VALUE, VR::UT, value);
    o
}

fn uidref(relationship: &str, name: &Code, value: &str) -> InMemDicomObject {
    let mut o = item(relationship, "UIDREF", name);
    put(&mut o, tags::UID, VR::UI, value);
    o
}

fn container(
    relationship: &str,
    name: &Code,
    template: Option<&str>,
    children: Vec<InMemDicomObject>,
) -> InMemDicomObject {
    let mut o = item(relationship, "CONTAINER", name);
    put(&mut o, tags::CONTINUITY_OF_CONTENT, VR::CS, "CONTINUOUS");
    if let Some(t) = template {
        let mut tpl = InMemDicomObject::new_empty();
        put(&mut tpl, tags::MAPPING_RESOURCE, VR::CS, "DCMR");
        put(&mut tpl, tags::TEMPLATE_IDENTIFIER, VR::CS, t);
        seq(&mut o, tags::CONTENT_TEMPLATE_SEQUENCE, vec![tpl]);
    }
    seq(&mut o, tags::CONTENT_SEQUENCE, children);
    o
}

fn referenced_sop(class_uid: &str, instance_uid: &str) -> InMemDicomObject {
    let mut r = InMemDicomObject::new_empty();
    put(&mut r, tags::REFERENCED_SOP_CLASS_UID, VR::UI, class_uid);
    put(
        &mut r,
        tags::REFERENCED_SOP_INSTANCE_UID,
        VR::UI,
        instance_uid,
    );
    r
}

fn dcm(value: &str, meaning: &str) -> Code {
    Code::new(value, "DCM", meaning)
}

/// Decimal strings are at most 16 characters.
fn ds(v: f64) -> String {
    let s = format!("{v}");
    if s.len() <= 16 {
        s
    } else {
        format!("{v:.10}").chars().take(16).collect()
    }
}

impl MeasurementReport {
    fn algorithm(&self) -> [InMemDicomObject; 2] {
        [
            text(
                "HAS CONCEPT MOD",
                &dcm("111001", "Algorithm Name"),
                &self.algorithm_name,
            ),
            text(
                "HAS CONCEPT MOD",
                &dcm("111003", "Algorithm Version"),
                &self.algorithm_version,
            ),
        ]
    }

    fn group(&self, g: &FindingGroup) -> InMemDicomObject {
        let [x1, y1, x2, y2] = g.bbox;
        let mut region = item("CONTAINS", "SCOORD", &dcm("111030", "Image Region"));
        put(&mut region, tags::GRAPHIC_TYPE, VR::CS, "POLYLINE");
        // A closed polyline: the box's corners, first point repeated.
        let points = [x1, y1, x2, y1, x2, y2, x1, y2, x1, y1];
        region.put(DataElement::new(
            tags::GRAPHIC_DATA,
            VR::FL,
            PrimitiveValue::F32(points.to_vec().into()),
        ));
        let mut selected = InMemDicomObject::new_empty();
        put(
            &mut selected,
            tags::RELATIONSHIP_TYPE,
            VR::CS,
            "SELECTED FROM",
        );
        put(&mut selected, tags::VALUE_TYPE, VR::CS, "IMAGE");
        seq(
            &mut selected,
            tags::REFERENCED_SOP_SEQUENCE,
            vec![referenced_sop(
                &self.source.sop_class_uid,
                &self.source.sop_instance_uid,
            )],
        );
        seq(&mut region, tags::CONTENT_SEQUENCE, vec![selected]);

        let mut num = item(
            "CONTAINS",
            "NUM",
            &Code::new("ASG0001", "99ASG", "Probability of finding"),
        );
        let mut measured = InMemDicomObject::new_empty();
        seq(
            &mut measured,
            tags::MEASUREMENT_UNITS_CODE_SEQUENCE,
            vec![code_item(&Code::new("1", "UCUM", "no units"))],
        );
        put(
            &mut measured,
            tags::NUMERIC_VALUE,
            VR::DS,
            &ds(g.probability as f64),
        );
        measured.put(DataElement::new(
            tags::FLOATING_POINT_VALUE,
            VR::FD,
            PrimitiveValue::F64([g.probability as f64].to_vec().into()),
        ));
        seq(&mut num, tags::MEASURED_VALUE_SEQUENCE, vec![measured]);
        // The region again, as what the measurement is inferred from (TID 300): OHIF's and
        // Cornerstone3D's SR adapters take a group's box from its first NUM's SCOORD.
        let mut inferred = region.clone();
        put(
            &mut inferred,
            tags::RELATIONSHIP_TYPE,
            VR::CS,
            "INFERRED FROM",
        );
        let mut num_content = vec![inferred];
        num_content.extend(self.algorithm());
        seq(&mut num, tags::CONTENT_SEQUENCE, num_content);

        let [name, version] = self.algorithm();
        container(
            "CONTAINS",
            &dcm("125007", "Measurement Group"),
            Some("1410"),
            vec![
                text(
                    "HAS OBS CONTEXT",
                    &dcm("112039", "Tracking Identifier"),
                    &g.tracking_identifier,
                ),
                uidref(
                    "HAS OBS CONTEXT",
                    &dcm("112040", "Tracking Unique Identifier"),
                    &g.tracking_uid,
                ),
                region,
                code("CONTAINS", &dcm("121071", "Finding"), &g.finding),
                code(
                    "HAS CONCEPT MOD",
                    &Code::new("363698007", "SCT", "Finding Site"),
                    &g.site,
                ),
                name,
                version,
                num,
            ],
        )
    }

    fn to_object(&self) -> InMemDicomObject {
        let s = &self.source;
        let mut obj = InMemDicomObject::new_empty();
        // UTF-8 only when some text needs it (the default repertoire is ASCII).
        let texts = [
            &s.patient_name,
            &s.patient_id,
            &s.study_id,
            &s.accession_number,
            &s.referring_physician_name,
            &self.algorithm_name,
            &self.algorithm_version,
        ];
        let non_ascii = texts.iter().any(|t| !t.is_ascii())
            || self.groups.iter().any(|g| {
                !(g.tracking_identifier.is_ascii()
                    && g.finding.meaning.is_ascii()
                    && g.site.meaning.is_ascii())
            });
        if non_ascii {
            put(&mut obj, tags::SPECIFIC_CHARACTER_SET, VR::CS, "ISO_IR 192");
        }
        put(&mut obj, tags::SOP_CLASS_UID, VR::UI, SOP_CLASS_ENHANCED_SR);
        put(
            &mut obj,
            tags::SOP_INSTANCE_UID,
            VR::UI,
            &self.sop_instance_uid,
        );
        put(&mut obj, tags::STUDY_DATE, VR::DA, &s.study_date);
        put(&mut obj, tags::STUDY_TIME, VR::TM, &s.study_time);
        put(&mut obj, tags::CONTENT_DATE, VR::DA, &self.content_date);
        put(&mut obj, tags::CONTENT_TIME, VR::TM, &self.content_time);
        put(
            &mut obj,
            tags::ACCESSION_NUMBER,
            VR::SH,
            &s.accession_number,
        );
        put(&mut obj, tags::MODALITY, VR::CS, "SR");
        put(&mut obj, tags::MANUFACTURER, VR::LO, "asg");
        put(
            &mut obj,
            tags::REFERRING_PHYSICIAN_NAME,
            VR::PN,
            &s.referring_physician_name,
        );
        seq(
            &mut obj,
            tags::REFERENCED_PERFORMED_PROCEDURE_STEP_SEQUENCE,
            vec![],
        );
        put(&mut obj, tags::PATIENT_NAME, VR::PN, &s.patient_name);
        put(&mut obj, tags::PATIENT_ID, VR::LO, &s.patient_id);
        put(
            &mut obj,
            tags::PATIENT_BIRTH_DATE,
            VR::DA,
            &s.patient_birth_date,
        );
        put(&mut obj, tags::PATIENT_SEX, VR::CS, &s.patient_sex);
        put(
            &mut obj,
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            &s.study_instance_uid,
        );
        put(
            &mut obj,
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            &self.series_instance_uid,
        );
        put(&mut obj, tags::STUDY_ID, VR::SH, &s.study_id);
        put(&mut obj, tags::SERIES_NUMBER, VR::IS, "901");
        put(&mut obj, tags::INSTANCE_NUMBER, VR::IS, "1");
        put(&mut obj, tags::VALUE_TYPE, VR::CS, "CONTAINER");
        seq(
            &mut obj,
            tags::CONCEPT_NAME_CODE_SEQUENCE,
            vec![code_item(&dcm("126000", "Imaging Measurement Report"))],
        );
        put(&mut obj, tags::CONTINUITY_OF_CONTENT, VR::CS, "CONTINUOUS");
        seq(&mut obj, tags::PERFORMED_PROCEDURE_CODE_SEQUENCE, vec![]);
        // The evidence: the source image.
        let mut series = InMemDicomObject::new_empty();
        seq(
            &mut series,
            tags::REFERENCED_SOP_SEQUENCE,
            vec![referenced_sop(&s.sop_class_uid, &s.sop_instance_uid)],
        );
        put(
            &mut series,
            tags::SERIES_INSTANCE_UID,
            VR::UI,
            &s.series_instance_uid,
        );
        let mut evidence = InMemDicomObject::new_empty();
        seq(
            &mut evidence,
            tags::REFERENCED_SERIES_SEQUENCE,
            vec![series],
        );
        put(
            &mut evidence,
            tags::STUDY_INSTANCE_UID,
            VR::UI,
            &s.study_instance_uid,
        );
        seq(
            &mut obj,
            tags::CURRENT_REQUESTED_PROCEDURE_EVIDENCE_SEQUENCE,
            vec![evidence],
        );
        put(&mut obj, tags::COMPLETION_FLAG, VR::CS, "PARTIAL");
        put(&mut obj, tags::VERIFICATION_FLAG, VR::CS, "UNVERIFIED");
        put(&mut obj, tags::PRELIMINARY_FLAG, VR::CS, "PRELIMINARY");
        let mut tpl = InMemDicomObject::new_empty();
        put(&mut tpl, tags::MAPPING_RESOURCE, VR::CS, "DCMR");
        put(&mut tpl, tags::TEMPLATE_IDENTIFIER, VR::CS, "1500");
        seq(&mut obj, tags::CONTENT_TEMPLATE_SEQUENCE, vec![tpl]);

        // The image library: the source image.
        let mut image = InMemDicomObject::new_empty();
        put(&mut image, tags::RELATIONSHIP_TYPE, VR::CS, "CONTAINS");
        put(&mut image, tags::VALUE_TYPE, VR::CS, "IMAGE");
        seq(
            &mut image,
            tags::REFERENCED_SOP_SEQUENCE,
            vec![referenced_sop(&s.sop_class_uid, &s.sop_instance_uid)],
        );
        let library = container(
            "CONTAINS",
            &dcm("111028", "Image Library"),
            None,
            vec![container(
                "CONTAINS",
                &dcm("126200", "Image Library Group"),
                None,
                vec![image],
            )],
        );
        let measurements = container(
            "CONTAINS",
            &dcm("126010", "Imaging Measurements"),
            None,
            self.groups.iter().map(|g| self.group(g)).collect(),
        );
        seq(
            &mut obj,
            tags::CONTENT_SEQUENCE,
            vec![
                code(
                    "HAS CONCEPT MOD",
                    &dcm("121049", "Language of Content Item and Descendants"),
                    &Code::new("en-US", "RFC5646", "English (United States)"),
                ),
                code(
                    "HAS OBS CONTEXT",
                    &dcm("121005", "Observer Type"),
                    &dcm("121007", "Device"),
                ),
                uidref(
                    "HAS OBS CONTEXT",
                    &dcm("121012", "Device Observer UID"),
                    &self.device_observer_uid,
                ),
                text(
                    "HAS OBS CONTEXT",
                    &dcm("121013", "Device Observer Name"),
                    &self.algorithm_name,
                ),
                code(
                    "HAS CONCEPT MOD",
                    &dcm("121058", "Procedure reported"),
                    &Code::new("399208008", "SCT", "Plain chest X-ray"),
                ),
                library,
                measurements,
            ],
        );
        obj
    }
}

fn file_object(
    report: &MeasurementReport,
    name: &str,
) -> Result<dicom_object::FileDicomObject<InMemDicomObject>, DicomError> {
    let err = |kind| DicomError::new(name, kind);
    if report.source.sop_instance_uid.is_empty() || report.source.study_instance_uid.is_empty() {
        return Err(err(DicomErrorKind::InvalidImage(
            "the source image has no SOP or study instance UID to reference".into(),
        )));
    }
    report
        .to_object()
        .with_meta(
            FileMetaTableBuilder::new()
                .transfer_syntax("1.2.840.10008.1.2.1")
                .implementation_class_uid(crate::write::IMPLEMENTATION_CLASS_UID)
                .implementation_version_name("ASG_0_1"),
        )
        .map_err(|e| err(DicomErrorKind::InvalidImage(e.to_string())))
}

/// The report as DICOM Part 10 bytes (preamble, meta header, explicit VR little endian), e.g.
/// for a browser download.
pub fn sr_bytes(report: &MeasurementReport) -> Result<Vec<u8>, DicomError> {
    let file = file_object(report, "sr.dcm")?;
    let mut out = Vec::new();
    file.write_all(&mut out).map_err(|e| {
        DicomError::new(
            "sr.dcm",
            DicomErrorKind::Io(std::io::Error::other(e.to_string())),
        )
    })?;
    Ok(out)
}

/// Writes `report` as a DICOM Part 10 file (explicit VR little endian); the file appears under
/// `path` only once complete.
pub fn write_sr(path: &Path, report: &MeasurementReport) -> Result<(), DicomError> {
    let file = file_object(report, &path.display().to_string())?;
    crate::write::write_atomically(path, &file)
}

/// The identity and place of a source image, for the SR, read from its bytes (header only).
pub fn source_image(bytes: &[u8], name: &str) -> Result<SourceImage, DicomError> {
    let obj = crate::read::parse_object(bytes, name, &crate::ReadOptions::default())?;
    let get = |tag: Tag| -> String {
        obj.element(tag)
            .ok()
            .and_then(|e| e.to_str().ok())
            .map(|s| s.trim_end_matches(['\0', ' ']).to_string())
            .unwrap_or_default()
    };
    Ok(SourceImage {
        patient_name: get(tags::PATIENT_NAME),
        patient_id: get(tags::PATIENT_ID),
        patient_birth_date: get(tags::PATIENT_BIRTH_DATE),
        patient_sex: get(tags::PATIENT_SEX),
        study_instance_uid: get(tags::STUDY_INSTANCE_UID),
        study_date: get(tags::STUDY_DATE),
        study_time: get(tags::STUDY_TIME),
        study_id: get(tags::STUDY_ID),
        accession_number: get(tags::ACCESSION_NUMBER),
        referring_physician_name: get(tags::REFERRING_PHYSICIAN_NAME),
        series_instance_uid: get(tags::SERIES_INSTANCE_UID),
        sop_class_uid: get(tags::SOP_CLASS_UID),
        sop_instance_uid: get(tags::SOP_INSTANCE_UID),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> MeasurementReport {
        MeasurementReport {
            source: SourceImage {
                study_instance_uid: "1.2.3".into(),
                series_instance_uid: "1.2.3.4".into(),
                sop_class_uid: crate::SOP_CLASS_DX_PRESENTATION.into(),
                sop_instance_uid: "1.2.3.4.5".into(),
                ..Default::default()
            },
            series_instance_uid: "2.25.1".into(),
            sop_instance_uid: "2.25.2".into(),
            device_observer_uid: "2.25.3".into(),
            algorithm_name: "asg-test".into(),
            algorithm_version: "0".into(),
            content_date: "20261130".into(),
            content_time: "120000".into(),
            groups: vec![FindingGroup {
                tracking_identifier: "effusion".into(),
                tracking_uid: "2.25.4".into(),
                finding: Code::new("60046008", "SCT", "Pleural effusion"),
                site: Code::new("3341006", "SCT", "Right lung structure"),
                bbox: [1.0, 2.0, 30.5, 40.25],
                probability: 0.875,
            }],
        }
    }

    #[test]
    fn decimal_strings_fit_sixteen_characters() {
        assert_eq!(ds(0.875), "0.875");
        assert!(ds(0.123_456_789_012_345_67).len() <= 16);
    }

    #[test]
    fn a_report_round_trips_through_dicom_rs_and_refuses_a_source_without_uids() {
        let bytes = sr_bytes(&report()).unwrap();
        assert_eq!(&bytes[128..132], b"DICM");
        let obj = dicom_object::from_reader(&bytes[128..]).unwrap();
        let get = |t| {
            obj.element(t)
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end_matches('\0')
                .to_string()
        };
        assert_eq!(get(tags::SOP_CLASS_UID), SOP_CLASS_ENHANCED_SR);
        assert_eq!(get(tags::STUDY_INSTANCE_UID), "1.2.3");
        // ASCII text only: no Specific Character Set.
        assert!(obj.element(tags::SPECIFIC_CHARACTER_SET).is_err());
        let mut bad = report();
        bad.source.sop_instance_uid.clear();
        assert!(sr_bytes(&bad).is_err());
        let mut accented = report();
        accented.source.patient_name = "Müller^Jürgen".into();
        let bytes = sr_bytes(&accented).unwrap();
        let obj = dicom_object::from_reader(&bytes[128..]).unwrap();
        assert_eq!(
            obj.element(tags::SPECIFIC_CHARACTER_SET)
                .unwrap()
                .to_str()
                .unwrap()
                .trim(),
            "ISO_IR 192"
        );
        assert_eq!(
            obj.element(tags::PATIENT_NAME)
                .unwrap()
                .to_str()
                .unwrap()
                .trim(),
            "Müller^Jürgen"
        );
    }
}
