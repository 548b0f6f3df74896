//! Progress on stderr, one JSON line per step in `metrics.jsonl`, and the
//! end-of-run report (`report.md` with a loss-curve `loss.png`).

use anyhow::Context;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

/// One optimizer step's numbers.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StepMetrics {
    pub step: usize,
    /// Weighted total loss.
    pub loss: f64,
    /// Cross-entropy per target token.
    pub ce: f64,
    /// Denoising MSE per image sample (GenLLaVA).
    #[serde(default)]
    pub diffusion: f64,
    /// Alignment MSE per image sample (GenLLaVA).
    #[serde(default)]
    pub align: f64,
    /// Image samples (generation, editing) in the step.
    #[serde(default)]
    pub images: usize,
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    pub samples: usize,
    pub targets: usize,
    pub samples_per_s: f64,
    pub tokens_per_s: f64,
}

/// Appends to `metrics.jsonl`.
pub struct MetricsLog {
    file: std::fs::File,
}

impl MetricsLog {
    /// Open `path`, keeping only the lines of steps `<= keep_upto` (a resumed run
    /// drops what the killed run logged after its last checkpoint).
    pub fn open(path: &Path, keep_upto: usize) -> anyhow::Result<Self> {
        let kept: Vec<String> = match std::fs::read_to_string(path) {
            Ok(text) => text
                .lines()
                .filter(|l| {
                    serde_json::from_str::<serde_json::Value>(l)
                        .ok()
                        .and_then(|v| v["step"].as_u64())
                        .is_some_and(|s| s as usize <= keep_upto)
                })
                .map(str::to_string)
                .collect(),
            Err(_) => Vec::new(),
        };
        let mut body = kept.join("\n");
        if !body.is_empty() {
            body.push('\n');
        }
        std::fs::write(path, body).with_context(|| path.display().to_string())?;
        let file = std::fs::OpenOptions::new().append(true).open(path).with_context(|| path.display().to_string())?;
        Ok(Self { file })
    }

    pub fn write(&mut self, value: &impl serde::Serialize) -> anyhow::Result<()> {
        writeln!(self.file, "{}", serde_json::to_string(value)?)?;
        Ok(())
    }
}

/// A one-line progress display on stderr (`\r`-updated).
pub struct Progress {
    start: Instant,
    first_step: usize,
    total: usize,
}

impl Progress {
    pub fn new(first_step: usize, total: usize) -> Self {
        Self { start: Instant::now(), first_step, total }
    }

    /// Redraw after step `m.step` (1-based count of completed steps).
    pub fn update(&self, m: &StepMetrics) {
        let done = m.step - self.first_step;
        let elapsed = self.start.elapsed().as_secs_f64();
        let eta = if done > 0 { elapsed / done as f64 * (self.total - m.step) as f64 } else { 0.0 };
        eprint!(
            "\rstep {}/{} loss {:.4} lr {:.2e} |g| {:.3} {:.1} samples/s {:.0} tok/s ETA {}   ",
            m.step,
            self.total,
            m.loss,
            m.lr,
            m.grad_norm,
            m.samples_per_s,
            m.tokens_per_s,
            clock(eta)
        );
    }

    pub fn finish(&self) {
        eprintln!();
    }
}

/// `h:mm:ss`.
pub fn clock(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// Read every step line of `metrics.jsonl`.
pub fn read_metrics(path: &Path) -> Vec<StepMetrics> {
    std::fs::read_to_string(path)
        .map(|t| t.lines().filter_map(|l| serde_json::from_str(l).ok()).collect())
        .unwrap_or_default()
}

/// Draw `values` (one per step) as a line plot on a white canvas, with axes.
pub fn plot_png(values: &[f64], path: &Path) -> anyhow::Result<()> {
    let (w, h, margin) = (640u32, 360u32, 40u32);
    let mut img = image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    let axis = image::Rgb([0, 0, 0]);
    for x in margin..w - margin / 2 {
        img.put_pixel(x, h - margin, axis);
    }
    for y in margin / 2..h - margin {
        img.put_pixel(margin, y, axis);
    }
    let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if finite.len() >= 2 {
        let lo = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let span = (hi - lo).max(1e-12);
        let (pw, ph) = ((w - margin - margin / 2) as f64, (h - margin - margin / 2) as f64);
        let point = |i: usize, v: f64| {
            let x = margin as f64 + pw * i as f64 / (values.len() - 1) as f64;
            let y = (h - margin) as f64 - ph * (v - lo) / span;
            (x, y)
        };
        let line = image::Rgb([200, 40, 40]);
        for i in 1..values.len() {
            if !(values[i - 1].is_finite() && values[i].is_finite()) {
                continue;
            }
            let (x0, y0) = point(i - 1, values[i - 1]);
            let (x1, y1) = point(i, values[i]);
            let n = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
            for k in 0..=n {
                let t = k as f64 / n as f64;
                let (x, y) = ((x0 + t * (x1 - x0)).round() as u32, (y0 + t * (y1 - y0)).round() as u32);
                if x < w && y < h {
                    img.put_pixel(x, y, line);
                }
            }
        }
    }
    img.save(path).with_context(|| path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_formats() {
        assert_eq!(clock(3725.0), "1:02:05");
    }

    #[test]
    fn metrics_log_truncates_after_resume_point() {
        let dir = std::env::temp_dir().join(format!("genllava-metrics-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("metrics.jsonl");
        std::fs::write(&path, "{\"step\":1}\n{\"step\":2}\n{\"step\":3}\n").expect("write");
        let mut log = MetricsLog::open(&path, 2).expect("open");
        log.write(&serde_json::json!({"step": 3, "x": 1})).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text, "{\"step\":1}\n{\"step\":2}\n{\"step\":3,\"x\":1}\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
