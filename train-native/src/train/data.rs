//! Data: the [`Dataset`] trait every source implements, the [`Sample`] it
//! yields, and the mixture sampler that picks the task and the sample of each
//! slot of a batch as a pure function of `(seed, position)`: resuming at a
//! position continues exactly the same order.

use super::config::Mixture;
use genllava::image::RgbImage;
use genllava::template::Turn;

/// The four tasks of the single-stage mixture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Text-only conversation.
    Text,
    /// Caption → image.
    Generation,
    /// (image, instruction) → image.
    Editing,
    /// (image, question) → text.
    Understanding,
}

impl Kind {
    /// Every kind, in mixture order.
    pub const ALL: [Kind; 4] = [Kind::Text, Kind::Generation, Kind::Editing, Kind::Understanding];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Text => "text",
            Kind::Generation => "generation",
            Kind::Editing => "editing",
            Kind::Understanding => "understanding",
        }
    }

    fn share(self, m: &Mixture) -> f64 {
        match self {
            Kind::Text => m.text,
            Kind::Generation => m.generation,
            Kind::Editing => m.editing,
            Kind::Understanding => m.understanding,
        }
    }
}

/// One training example.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub kind: Kind,
    /// The input image (understanding, editing), placed where the user text says `<image>`.
    pub image: Option<RgbImage>,
    /// The conversation, user and assistant turns alternating; the loss covers the
    /// assistant turns only.
    pub turns: Vec<Turn>,
    /// The image to produce (generation, editing).
    pub target_image: Option<RgbImage>,
    /// The target image's caption (the alignment loss' CLIP text input).
    pub target_caption: Option<String>,
    /// The edit instruction (editing): the alignment target instead of `target_caption`
    /// when the frozen decoder edits from instructions (`pretrain-sd --edit-text instruction`).
    pub instruction: Option<String>,
    /// The scene of the input image, when the data knows it (the edit evaluator needs it).
    pub source_scene: Option<genllava::shapes::Scene>,
    /// The question's category when the data knows it (the shapes world: "colour",
    /// "count", "caption", …), for per-category held-out scores.
    pub category: Option<String>,
}

/// A source of samples of one kind, indexable and deterministic: `get(i)` always
/// returns the same sample.
pub trait Dataset: Send + Sync {
    /// Which task its samples belong to.
    fn kind(&self) -> Kind;
    /// Number of samples.
    fn len(&self) -> usize;
    /// Whether there are none.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Sample `i` (`i < len()`).
    fn get(&self, i: usize) -> anyhow::Result<Sample>;
    /// Short description for logs and reports.
    fn describe(&self) -> String;
}

/// SplitMix64: the mixing function behind every random choice of the sampler.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A uniform number in [0, 1) from a hash.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Picks `(dataset, index)` for each position of the sample stream.
pub struct MixtureSampler {
    sets: Vec<Box<dyn Dataset>>,
    /// Cumulative normalised shares, parallel to `sets`.
    cumulative: Vec<f64>,
    seed: u64,
}

impl MixtureSampler {
    /// Shares are normalised over the kinds that have a data set; several sets of
    /// one kind split that kind's share by their sizes. Kinds with a share but no
    /// data are reported by [`Self::missing`].
    pub fn new(sets: Vec<Box<dyn Dataset>>, mixture: &Mixture, seed: u64) -> anyhow::Result<Self> {
        let sets: Vec<Box<dyn Dataset>> = sets.into_iter().filter(|s| !s.is_empty()).collect();
        let kind_total = |k: Kind| sets.iter().filter(|s| s.kind() == k).map(|s| s.len()).sum::<usize>() as f64;
        let weights: Vec<f64> =
            sets.iter().map(|s| s.kind().share(mixture) * s.len() as f64 / kind_total(s.kind())).collect();
        let total: f64 = weights.iter().sum();
        if total <= 0.0 {
            anyhow::bail!("no data: every data set is empty or has a mixture share of 0");
        }
        let mut acc = 0.0;
        let cumulative = weights
            .iter()
            .map(|w| {
                acc += w / total;
                acc
            })
            .collect();
        Ok(Self { sets, cumulative, seed })
    }

    /// Kinds the mixture asks for that no data set provides.
    pub fn missing(&self, mixture: &Mixture) -> Vec<Kind> {
        Kind::ALL.into_iter().filter(|k| k.share(mixture) > 0.0 && !self.sets.iter().any(|s| s.kind() == *k)).collect()
    }

    /// The effective share of each data set, for the report.
    pub fn shares(&self) -> Vec<(String, f64)> {
        let mut prev = 0.0;
        self.sets
            .iter()
            .zip(&self.cumulative)
            .map(|(s, c)| {
                let share = c - prev;
                prev = *c;
                (s.describe(), share)
            })
            .collect()
    }

    /// The sample at stream position `pos`.
    pub fn get(&self, pos: u64) -> anyhow::Result<Sample> {
        let h = splitmix64(self.seed ^ splitmix64(pos));
        let u = unit(h);
        let set = self.cumulative.iter().position(|&c| u < c).unwrap_or(self.sets.len() - 1);
        let index = (splitmix64(h) % self.sets[set].len() as u64) as usize;
        self.sets[set].get(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Count(Kind, usize);
    impl Dataset for Count {
        fn kind(&self) -> Kind {
            self.0
        }
        fn len(&self) -> usize {
            self.1
        }
        fn get(&self, i: usize) -> anyhow::Result<Sample> {
            Ok(Sample {
                kind: self.0,
                image: None,
                turns: vec![Turn::user(i.to_string())],
                target_image: None,
                target_caption: None,
                instruction: None,
                source_scene: None,
                category: None,
            })
        }
        fn describe(&self) -> String {
            format!("{} ×{}", self.0.name(), self.1)
        }
    }

    #[test]
    fn mixture_follows_shares_and_is_deterministic() {
        let sets: Vec<Box<dyn Dataset>> =
            vec![Box::new(Count(Kind::Text, 10)), Box::new(Count(Kind::Understanding, 100))];
        let mix = Mixture { text: 0.25, generation: 0.5, editing: 0.0, understanding: 0.75 };
        let s = MixtureSampler::new(sets, &mix, 3).expect("sampler");
        assert_eq!(s.missing(&mix), vec![Kind::Generation]);
        let n = 4000;
        let text = (0..n).filter(|&p| s.get(p).expect("get").kind == Kind::Text).count();
        let share = text as f64 / n as f64;
        assert!((share - 0.25).abs() < 0.03, "{share}");
        assert_eq!(s.get(17).expect("a"), s.get(17).expect("b"));
    }
}
