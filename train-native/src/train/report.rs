//! The end-of-run report: `report.md` (a markdown table of the run) and
//! `loss.png` (the per-step loss over the whole run, resumes included).

use super::eval::EvalResult;
use super::metrics::{self, clock};
use super::trainer::Trainer;
use std::fmt::Write;
use std::path::PathBuf;

/// The header cells after the first column of a table with one row per evaluation,
/// and its separator line ([`score_cells`] fills the rows).
pub const SCORE_COLUMNS: &str = "understanding | generation | editing | ce |\n|---|---|---|---|---|";

/// One evaluation's row cells after the first column: understanding, generation and
/// editing rates ("–" where not scored) and the held-out cross-entropy.
pub fn score_cells(e: &EvalResult) -> String {
    let pct = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{:.1} %", v * 100.0));
    let u = pct((e.samples > 0).then_some(e.accuracy));
    format!("{u} | {} | {} | {:.4} |", pct(e.generation), pct(e.editing), e.ce)
}

/// The held-out sets, the understanding questions by category and a few answers of
/// one evaluation, as markdown tables (`report.md`'s tail; `train-native eval`);
/// `which` labels the first two tables' headers ("last evaluation").
pub fn eval_tables(e: &EvalResult, which: &str) -> anyhow::Result<String> {
    let mut md = String::new();
    writeln!(md, "\n| held-out set ({which}) | correct | of | score |\n|---|---|---|---|")?;
    for s in &e.sets {
        writeln!(md, "| {} | {} | {} | {:.1} % |", s.set, s.correct, s.total, s.rate() * 100.0)?;
    }
    if !e.categories.is_empty() {
        writeln!(md, "\n| understanding by question ({which}) | correct | of | score |\n|---|---|---|---|")?;
        for (c, ok, n) in &e.categories {
            writeln!(md, "| {c} | {ok} | {n} | {:.1} % |", 100.0 * *ok as f64 / (*n).max(1) as f64)?;
        }
    }
    writeln!(md, "\n| expected | answered |\n|---|---|")?;
    for (want, got) in &e.examples {
        writeln!(md, "| {want} | {got} |")?;
    }
    Ok(md)
}

/// Write `report.md` and `loss.png` into the run's folder; returns the report's path.
pub fn write(t: &Trainer) -> anyhow::Result<PathBuf> {
    let out = &t.cfg.out_dir;
    let steps = metrics::read_metrics(&out.join("metrics.jsonl"));
    let losses: Vec<f64> = steps.iter().map(|m| m.loss).collect();
    metrics::plot_png(&losses, &out.join("loss.png"))?;
    let (trainable, total) = super::model::count_params(&t.bundle.model);
    let head = |n: usize| losses.iter().take(n).sum::<f64>() / n.min(losses.len()).max(1) as f64;
    let tail = |n: usize| losses.iter().rev().take(n).sum::<f64>() / n.min(losses.len()).max(1) as f64;
    let s = &t.state;
    let mut md = String::new();
    writeln!(md, "# Training report\n")?;
    writeln!(md, "| | |\n|---|---|")?;
    writeln!(md, "| steps | {} |", s.step)?;
    writeln!(md, "| samples / step | {} ({} × {}) |", t.cfg.global_batch, t.cfg.accumulation(), t.cfg.micro_batch)?;
    writeln!(md, "| peak lr | {:e} (warmup {} %, cosine) |", t.cfg.lr, t.cfg.warmup_ratio * 100.0)?;
    writeln!(md, "| parameters | {total} ({trainable} trainable) |")?;
    writeln!(md, "| samples seen | {} |", s.samples_seen)?;
    writeln!(md, "| target tokens seen | {} |", s.tokens_seen)?;
    writeln!(md, "| samples skipped: no assistant token | {} |", s.skipped_no_target)?;
    writeln!(md, "| samples truncated | {} |", s.truncated)?;
    writeln!(md, "| loss, first 10 steps | {:.4} |", head(10))?;
    writeln!(md, "| loss, last 10 steps | {:.4} |", tail(10))?;
    writeln!(md, "| training time | {} |", clock(s.elapsed_s))?;
    for (name, share) in t.sampler.shares() {
        writeln!(md, "| data: {name} | {:.1} % |", share * 100.0)?;
    }
    if !t.evals.is_empty() {
        writeln!(md, "\n## Held-out evaluation\n\n| step | {SCORE_COLUMNS}")?;
        for e in &t.evals {
            writeln!(md, "| {} | {}", e.step, score_cells(e))?;
        }
        if let Some(e) = t.evals.last() {
            md += &eval_tables(e, "last evaluation")?;
        }
    }
    writeln!(md, "\n![loss](loss.png)")?;
    let path = out.join("report.md");
    std::fs::write(&path, md)?;
    Ok(path)
}
