//! `asg analyze --dicomweb URL` (binary only): the radiographs (CR, DX, DR, RG) of the studies a user
//! names, found with QIDO-RS and retrieved with WADO-RS from a PACS, analysed as files are, and
//! with `--store-sr` the DICOM SR of each stored back into its study with STOW-RS. A study that
//! cannot be listed, an instance that cannot be retrieved or an SR that is refused is a named
//! failure; the batch goes on. Only the PACS the user names is contacted.

use crate::workstation::{analyze_bytes, Outcome, Outputs, Reports};
use asg_dicomweb::{Client, InstanceRef, Limits};
use asg_plugin::ModelBundle;
use std::path::PathBuf;

/// The series modalities fetched: computed and digital radiography (DX, and the retired DR
/// some older modalities still write) and radiographic imaging (RG, digitised film). Files of
/// modality OT are analysed too ([`asg_plugin::RADIOGRAPH_MODALITIES`]), but a PACS's OT series
/// are mostly screenshots and reports, so they are not fetched from one.
pub const RADIOGRAPHY: [&str; 4] = ["CR", "DX", "DR", "RG"];

/// What to fetch and what to send back.
pub struct PacsJob<'a> {
    pub url: &'a str,
    /// Study Instance UIDs; empty: every study the service lists.
    pub studies: &'a [String],
    /// `Name: value` headers for every request (`Authorization: Bearer ...`).
    pub headers: &'a [String],
    pub store_sr: bool,
    pub timeout_s: u64,
}

/// One input's result: its name (the instance's WADO-RS URL, or the study's when it could not
/// be listed) and the outcome.
pub type PacsResult = (PathBuf, anyhow::Result<Outcome>);

/// What the progress display is told.
pub enum Progress {
    /// A study was listed with this many instances to analyse.
    Found(u64),
    /// One instance was analysed (or failed).
    Done,
}

/// Lists, retrieves and analyses, telling `progress` as it goes. Errors only for a job that
/// cannot start (a bad URL or header, or a service that cannot list its studies); everything
/// after is per study and per instance.
pub fn analyze_dicomweb(
    bundle: &ModelBundle,
    job: &PacsJob<'_>,
    reports: &Reports,
    out: &Outputs,
    progress: &dyn Fn(Progress),
) -> anyhow::Result<Vec<PacsResult>> {
    let limits = Limits {
        max_instance_bytes: out.read.max_file_bytes.saturating_add(1 << 20),
        timeout: std::time::Duration::from_secs(job.timeout_s.max(1)),
        ..Limits::default()
    };
    let client = Client::new(job.url, job.headers, limits)?;
    let studies = if job.studies.is_empty() {
        client.studies()?
    } else {
        job.studies.to_vec()
    };
    let mut results = Vec::new();
    for study in &studies {
        let study_url = PathBuf::from(format!("{}/studies/{study}", client.base_url()));
        let instances = match client.instances(study, &RADIOGRAPHY) {
            Ok(list) if list.is_empty() => {
                results.push((
                    study_url,
                    Err(anyhow::anyhow!(
                        "the study holds no radiographs (no series of modality {})",
                        RADIOGRAPHY.join(", ")
                    )),
                ));
                continue;
            }
            Ok(list) => list,
            Err(e) => {
                results.push((study_url, Err(e.into())));
                continue;
            }
        };
        progress(Progress::Found(instances.len() as u64));
        for instance in &instances {
            let url = PathBuf::from(client.instance_url(instance));
            let r = analyze_instance(&client, bundle, instance, reports, out, job.store_sr);
            results.push((url, r));
            progress(Progress::Done);
        }
    }
    Ok(results)
}

fn analyze_instance(
    client: &Client,
    bundle: &ModelBundle,
    instance: &InstanceRef,
    reports: &Reports,
    out: &Outputs,
    store_sr: bool,
) -> anyhow::Result<Outcome> {
    let bytes = client.retrieve(instance)?;
    // Named `<study>/<instance>.dcm` for the report look-up (`<instance>.txt`, or the study's
    // `<study>.txt`) and the output files; the outcome is named by its URL.
    let local = PathBuf::from(&instance.study_instance_uid)
        .join(format!("{}.dcm", instance.sop_instance_uid));
    let mut outcome = analyze_bytes(bundle, &local, &bytes, reports, out)?;
    outcome.file = PathBuf::from(client.instance_url(instance));
    if store_sr {
        let name = outcome.file.display().to_string();
        let source = asg_dicom::sr::source_image(&bytes, &name)?;
        let (date, time, _) = crate::workstation::now();
        let report =
            asg_plugin::results::measurement_report(&outcome.analysis, source, (date, time));
        let sr = asg_dicom::sr::sr_bytes(&report)?;
        let stored = client.store(&instance.study_instance_uid, &[sr])?;
        outcome.stored_sr = stored.sop_instance_uids.into_iter().next();
    }
    Ok(outcome)
}
