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
    md += &by_shapes_table(&e.by_shapes, &format!("by shapes in the scene ({which})"))?;
    md += &by_shapes_table(&e.pictures_by_shapes, &format!("pictures by shapes in the scene ({which})"))?;
    md += &by_shapes_table(&e.descriptions, &format!("edit descriptions right, by shapes in the source ({which})"))?;
    writeln!(md, "\n| expected | answered |\n|---|---|")?;
    for (want, got) in &e.examples {
        writeln!(md, "| {want} | {got} |")?;
    }
    Ok(md)
}

/// Scores by category and number of shapes in the scene (`rows`: the understanding
/// questions' or the pictures' (category, shapes, correct, asked)): one row per category,
/// one column per scene size, each cell "score (asked)", headed `title`; empty when the
/// data knows no scenes.
fn by_shapes_table(rows: &[(String, usize, usize, usize)], title: &str) -> anyhow::Result<String> {
    let mut md = String::new();
    let sizes: std::collections::BTreeSet<usize> = rows.iter().map(|r| r.1).collect();
    if sizes.is_empty() {
        return Ok(md);
    }
    let cols: Vec<String> = sizes.iter().map(|k| format!("{k} shape{}", if *k == 1 { "" } else { "s" })).collect();
    writeln!(md, "\n| {title} | {} |", cols.join(" | "))?;
    writeln!(md, "|---|{}", "---|".repeat(cols.len()))?;
    let mut categories: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    categories.dedup();
    let mut all = vec![(0usize, 0usize); sizes.len()];
    for c in categories {
        let mut row = format!("| {c} |");
        for (j, k) in sizes.iter().enumerate() {
            match rows.iter().find(|r| r.0 == c && r.1 == *k) {
                Some((_, _, ok, n)) => {
                    write!(row, " {:.1} % ({n}) |", 100.0 * *ok as f64 / (*n).max(1) as f64)?;
                    all[j].0 += ok;
                    all[j].1 += n;
                }
                None => row.push_str(" – |"),
            }
        }
        writeln!(md, "{row}")?;
    }
    let cells: Vec<String> =
        all.iter().map(|(ok, n)| format!("{:.1} % ({n})", 100.0 * *ok as f64 / (*n).max(1) as f64)).collect();
    writeln!(md, "| all | {} |", cells.join(" | "))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn result(
        by_shapes: Vec<(String, usize, usize, usize)>,
        pictures: Vec<(String, usize, usize, usize)>,
    ) -> EvalResult {
        EvalResult {
            step: 1,
            accuracy: 0.0,
            generation: None,
            editing: None,
            ce: 0.0,
            samples: 0,
            sets: Vec::new(),
            examples: Vec::new(),
            categories: Vec::new(),
            by_shapes,
            pictures_by_shapes: pictures,
            descriptions: Vec::new(),
            answers: Vec::new(),
        }
    }

    #[test]
    fn the_by_shapes_table_has_a_column_per_scene_size_and_a_total_row() {
        let rows = vec![
            ("colour".to_string(), 1, 4, 4),
            ("colour".to_string(), 3, 1, 4),
            ("position".to_string(), 1, 2, 2),
            ("position".to_string(), 2, 1, 2),
            ("position".to_string(), 3, 0, 2),
        ];
        let md = by_shapes_table(&rows, "by shapes in the scene (x)").expect("table");
        let lines: Vec<&str> = md.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines[0], "| by shapes in the scene (x) | 1 shape | 2 shapes | 3 shapes |");
        assert_eq!(lines[1], "|---|---|---|---|");
        assert_eq!(lines[2], "| colour | 100.0 % (4) | – | 25.0 % (4) |");
        assert_eq!(lines[3], "| position | 100.0 % (2) | 50.0 % (2) | 0.0 % (2) |");
        assert_eq!(lines[4], "| all | 100.0 % (6) | 50.0 % (2) | 16.7 % (6) |");
        assert!(by_shapes_table(&[], "x").expect("empty").is_empty());
    }

    #[test]
    fn the_report_splits_pictures_by_task_and_scene() {
        let questions = vec![("colour".to_string(), 2, 1, 2)];
        let pictures = vec![
            ("edit: move".to_string(), 1, 3, 4),
            ("edit: recolour".to_string(), 2, 0, 4),
            ("generation".to_string(), 2, 1, 2),
        ];
        let md = eval_tables(&result(questions, pictures), "last").expect("tables");
        let at = md.find("| pictures by shapes in the scene (last) | 1 shape | 2 shapes |").expect(&md);
        let lines: Vec<&str> = md[at..].lines().collect();
        assert_eq!(lines[2], "| edit: move | 75.0 % (4) | – |");
        assert_eq!(lines[3], "| edit: recolour | – | 0.0 % (4) |");
        assert_eq!(lines[4], "| generation | – | 50.0 % (2) |");
        assert_eq!(lines[5], "| all | 75.0 % (4) | 16.7 % (6) |");
        assert!(md.contains("| by shapes in the scene (last) | 2 shapes |"), "{md}");
        // No pictures scored: no table.
        assert!(!eval_tables(&result(Vec::new(), Vec::new()), "last").expect("tables").contains("pictures by"));
    }
}
