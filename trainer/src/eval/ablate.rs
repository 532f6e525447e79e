//! `asg-train ablate`: the paper's ablation (IRA; + ARSA; + tag decoder; + soft labels) and our
//! viewer heads, each a training run with loss terms switched off, evaluated on the same split,
//! printed in the paper's layout with our metrics.

use crate::config::Config;
use crate::eval::evaluate::{evaluate, EvalOptions, EvalReport};
use crate::eval::models::CandleModel;
use crate::train::{fit, RunOptions, StepReport};
use serde::Serialize;
use std::path::Path;

/// One row of the ablation: which loss terms are on.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Variant {
    pub name: &'static str,
    pub ira: bool,
    pub arsa: bool,
    pub tag: bool,
    pub soft: bool,
    /// Our anatomy box and region-finding heads.
    pub heads: bool,
}

/// The rows, in the paper's order, then ours.
pub const VARIANTS: [Variant; 5] = [
    Variant {
        name: "ira",
        ira: true,
        arsa: false,
        tag: false,
        soft: false,
        heads: false,
    },
    Variant {
        name: "ira_arsa",
        ira: true,
        arsa: true,
        tag: false,
        soft: false,
        heads: false,
    },
    Variant {
        name: "ira_arsa_tag",
        ira: true,
        arsa: true,
        tag: true,
        soft: false,
        heads: false,
    },
    Variant {
        name: "asg",
        ira: true,
        arsa: true,
        tag: true,
        soft: true,
        heads: false,
    },
    Variant {
        name: "asg_heads",
        ira: true,
        arsa: true,
        tag: true,
        soft: true,
        heads: true,
    },
];

impl Variant {
    /// `base` with the switched-off terms' weights set to 0.
    pub fn config(&self, base: &Config) -> Config {
        let mut c = base.clone();
        let off = |on: bool, w: f64| if on { w } else { 0.0 };
        c.loss.ira = off(self.ira, c.loss.ira);
        c.loss.arsa = off(self.arsa, c.loss.arsa);
        c.loss.tag = off(self.tag, c.loss.tag);
        c.loss.soft = off(self.soft, c.loss.soft);
        c.loss.box_l1 = off(self.heads, c.loss.box_l1);
        c.loss.box_giou = off(self.heads, c.loss.box_giou);
        c.loss.region = off(self.heads, c.loss.region);
        c
    }
}

/// A row's result.
#[derive(Debug, Clone, Serialize)]
pub struct AblationRow {
    pub variant: Variant,
    pub report: EvalReport,
}

/// Trains and evaluates every variant into `out/<name>`.
pub fn ablate(
    base: &Config,
    data: &Path,
    out: &Path,
    eval: &EvalOptions,
    progress: &dyn Fn(&str),
) -> anyhow::Result<Vec<AblationRow>> {
    let mut rows = Vec::new();
    for v in VARIANTS {
        let dir = out.join(v.name);
        progress(&format!("training {} ({} steps)", v.name, base.train.steps));
        let mut quiet = |_: &StepReport| {};
        fit(
            &v.config(base),
            RunOptions {
                data: &[crate::data::Source::new(data)],
                out: &dir,
                resume: false,
                device: candle_core::Device::Cpu,
                stop_at: None,
                on_step: &mut quiet,
            },
        )?;
        progress(&format!("evaluating {}", v.name));
        let model = CandleModel::load(&dir)?;
        let report = evaluate(&model, data, eval, progress)?;
        rows.push(AblationRow { variant: v, report });
    }
    Ok(rows)
}

/// The ablation table (Markdown), the paper's layout: component marks, then metrics. A metric
/// of a head that was not trained is shown as "—".
pub fn table(rows: &[AblationRow]) -> String {
    let mark = |b: bool| if b { "✓" } else { "" };
    let f = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_else(|| "—".into());
    let mut s = String::from(
        "| IRA | ARSA | tag decoder | soft labels | boxes + regions (ours) | LP 1% | LP 10% | LP 100% | zero-shot AUROC | R@1 image→report | R@10 image→report | image AUROC | region AUROC | box IoU | pointing game |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        let v = r.variant;
        let e = &r.report;
        let lp = |i: usize| {
            e.linear_probe
                .get(i)
                .map(|p| {
                    if p.per_seed.len() > 1 {
                        format!("{:.3} ± {:.3}", p.mean, p.std)
                    } else {
                        format!("{:.3}", p.mean)
                    }
                })
                .unwrap_or_else(|| "—".into())
        };
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            mark(v.ira),
            mark(v.arsa),
            mark(v.tag),
            mark(v.soft),
            mark(v.heads),
            lp(0),
            lp(1),
            lp(2),
            f(e.zero_shot_auroc.mean),
            f(e.retrieval_image_to_report.get("R@1").copied()),
            f(e.retrieval_image_to_report.get("R@10").copied()),
            f(if v.tag { e.image_auroc.mean } else { None }),
            f(if v.heads { e.region_auroc.mean } else { None }),
            f(if v.heads { e.box_iou.mean } else { None }),
            f(if v.tag { e.pointing_game.mean } else { None }),
        );
    }
    s
}
