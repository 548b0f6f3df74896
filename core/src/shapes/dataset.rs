//! Training and evaluation records of the shapes world, built in memory one sample at a
//! time (sample `i` depends only on the seed, split, task and `i`).
//!
//! Layouts (the writer in train-native stores `images` under their `file` names):
//! - understanding: LLaVA conversation `{"id", "image", "conversations": [human "<image>\n{q}",
//!   gpt "{short answer}", ...]}`;
//! - generation: LLaVA-Pretrain layout `{"id", "image", "conversations": [human
//!   "<image>\n{prompt}", gpt "{caption}"]}`, used inverted (caption → image) as in the paper;
//! - editing: InstructPix2Pix layout `{"id", "input_image", "edit_prompt", "edited_image"}`;
//! - text-only: ShareGPT layout `{"id", "conversations": [...]}`.
//!
//! Splits: [`Split::Train`] never contains a (colour, kind) pair of [`HELD_OUT_PAIRS`] (not in
//! images, captions, questions or edit targets) and never a scene of the test bucket;
//! [`Split::Test`] holds ordinary scenes that never occur in train (the scene fingerprint
//! decides the bucket); [`Split::Novel`] holds scenes with at least one held-out pair.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::edit::Edit;
use super::render::{Background, RenderOptions, render};
use super::scene::{Colour, Kind, Scene, Shape};
use super::{SplitMix64, questions};

/// (colour, kind) combinations that never appear in the train split.
pub const HELD_OUT_PAIRS: [(Colour, Kind); 3] =
    [(Colour::Blue, Kind::Triangle), (Colour::Yellow, Kind::Circle), (Colour::Purple, Kind::Square)];

/// One scene in `TEST_BUCKETS` belongs to the test split.
const TEST_BUCKETS: u64 = 10;

/// Whether `shape` shows a held-out (colour, kind) pair.
pub fn is_held_out(shape: &Shape) -> bool {
    HELD_OUT_PAIRS.contains(&(shape.colour, shape.kind))
}

/// Which part of the world a sample comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training scenes: no held-out pair, not in the test bucket.
    Train,
    /// Ordinary held-out scenes: no held-out pair, in the test bucket.
    Test,
    /// Compositional held-out scenes: at least one held-out pair.
    Novel,
}

impl Split {
    /// "train", "test" or "novel".
    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
            Split::Novel => "novel",
        }
    }

    /// Whether `scene` belongs to this split.
    pub fn admits(self, scene: &Scene) -> bool {
        let novel = scene.shapes.iter().any(is_held_out);
        let test_bucket = scene.fingerprint().is_multiple_of(TEST_BUCKETS);
        match self {
            Split::Train => !novel && !test_bucket,
            Split::Test => !novel && test_bucket,
            Split::Novel => novel,
        }
    }

    /// Whether a single shape may be mentioned in this split (train excludes held-out pairs).
    pub fn allows(self, shape: &Shape) -> bool {
        self != Split::Train || !is_held_out(shape)
    }
}

/// Generation settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatasetConfig {
    /// Master seed: the same seed gives the same bytes.
    pub seed: u64,
    /// Image side in pixels (64 by default; 32 for tiny diffusion models).
    pub image_size: usize,
    /// At most this many shapes per scene (1..=9; the world uses 3).
    pub max_shapes: usize,
    /// Question/answer turns per understanding record (1 gives one question per image).
    pub turns: usize,
    /// Random light backgrounds (grey levels, texture) instead of plain white.
    pub textured: bool,
    /// Where an understanding record's `<image>` goes: before its first question
    /// (`<image>\n{q}`, LLaVA's usual order) or after it (`{q}\n<image>`; LLaVA-Instruct
    /// has both). After it, the image tokens can read what is asked.
    pub image_last: bool,
    /// Relative weights of the question categories of train understanding records,
    /// in the order of [`questions::CATEGORIES`] (held-out records always draw them
    /// uniformly, so scores stay comparable).
    #[serde(default = "uniform")]
    pub question_weights: questions::Weights,
    /// Relative weights of scenes of 1, 2, … 9 shapes behind train understanding records
    /// (entries past `max_shapes` ignored; held-out records and the other tasks always draw
    /// the number of shapes uniformly).
    #[serde(default = "even_scenes")]
    pub scene_weights: [u32; 9],
}

fn even_scenes() -> [u32; 9] {
    [1; 9]
}

fn uniform() -> questions::Weights {
    questions::UNIFORM
}

impl Default for DatasetConfig {
    fn default() -> Self {
        DatasetConfig {
            seed: 0,
            image_size: 64,
            max_shapes: 3,
            turns: 1,
            textured: true,
            image_last: false,
            question_weights: questions::UNIFORM,
            scene_weights: even_scenes(),
        }
    }
}

/// A rendered image of a sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageOut {
    /// File name the record refers to (".png"; the writer encodes).
    pub file: String,
    /// The scene shown.
    pub scene: Scene,
    /// Row-major RGB bytes, `3 * size * size`.
    pub rgb: Vec<u8>,
    /// Side in pixels.
    pub size: usize,
}

/// One record plus the images it refers to and metadata for evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The JSON record (layout depends on the task, see the module docs).
    pub record: Value,
    /// Images referenced by the record.
    pub images: Vec<ImageOut>,
    /// Question category of the first turn ("colour", "count", "caption", "edit", ...).
    pub category: String,
}

/// The tasks, used to derive independent random streams.
#[derive(Debug, Clone, Copy)]
enum Task {
    Understanding = 1,
    Generation = 2,
    Editing = 3,
    Text = 4,
}

fn rng_for(cfg: &DatasetConfig, split: Split, task: Task, index: usize) -> SplitMix64 {
    SplitMix64::derive(cfg.seed, &[split as u64, task as u64, index as u64])
}

fn stem(split: Split, task: &str, index: usize) -> String {
    format!("shapes_{}_{}_{:06}", split.name(), task, index)
}

/// A random scene of `split` (rejection sampling; novel scenes get one held-out shape).
pub fn random_scene(rng: &mut SplitMix64, split: Split, max_shapes: usize) -> Scene {
    random_scene_weighted(rng, split, max_shapes, &even_scenes())
}

/// [`random_scene`] with the number of shapes drawn by `weights` (see
/// [`Scene::random_weighted`]).
pub fn random_scene_weighted(rng: &mut SplitMix64, split: Split, max_shapes: usize, weights: &[u32; 9]) -> Scene {
    loop {
        let mut scene = Scene::random_weighted(rng, max_shapes, weights);
        if split == Split::Novel {
            let (colour, kind) = HELD_OUT_PAIRS[rng.below(HELD_OUT_PAIRS.len())];
            let i = rng.below(scene.shapes.len());
            let shape = Shape { colour, kind, ..scene.shapes[i] };
            scene.put(shape);
        }
        if split.admits(&scene) {
            return scene;
        }
    }
}

/// How the world renders a sample's image: its side and, when `cfg.textured`, a random
/// lightly textured background drawn from `rng` (else white).
pub fn render_options(cfg: &DatasetConfig, rng: &mut SplitMix64) -> RenderOptions {
    let background = if cfg.textured { Background::random(rng) } else { Background::WHITE };
    RenderOptions { size: cfg.image_size, background }
}

fn image(file: String, scene: &Scene, opts: &RenderOptions) -> ImageOut {
    ImageOut { file, scene: scene.clone(), rgb: render(scene, opts), size: opts.size }
}

/// Understanding sample `index`: an image and `cfg.turns` questions with short answers.
pub fn understanding(cfg: &DatasetConfig, split: Split, index: usize) -> Sample {
    let mut rng = rng_for(cfg, split, Task::Understanding, index);
    let sizes = if split == Split::Train { &cfg.scene_weights } else { &even_scenes() };
    let scene = random_scene_weighted(&mut rng, split, cfg.max_shapes, sizes);
    let opts = render_options(cfg, &mut rng);
    let id = stem(split, "understanding", index);
    let file = format!("{id}.png");
    let mut conversations = Vec::new();
    let mut category = String::new();
    let weights = if split == Split::Train { &cfg.question_weights } else { &questions::UNIFORM };
    for turn in 0..cfg.turns.max(1) {
        let qa = questions::ask(&mut rng, &scene, split, weights);
        let value = match turn {
            0 if cfg.image_last => format!("{}\n<image>", qa.question),
            0 => format!("<image>\n{}", qa.question),
            _ => qa.question.clone(),
        };
        conversations.push(json!({"from": "human", "value": value}));
        conversations.push(json!({"from": "gpt", "value": qa.answer}));
        if turn == 0 {
            category = qa.category.to_string();
        }
    }
    Sample {
        record: json!({"id": id, "image": file, "conversations": conversations}),
        images: vec![image(file, &scene, &opts)],
        category,
    }
}

const CAPTION_PROMPTS: [&str; 4] = [
    "Describe the image briefly.",
    "Give a short caption of the picture.",
    "What does this image show?",
    "Write a caption for this image.",
];

/// Generation sample `index`: an image and its canonical caption (LLaVA-Pretrain layout).
pub fn generation(cfg: &DatasetConfig, split: Split, index: usize) -> Sample {
    let mut rng = rng_for(cfg, split, Task::Generation, index);
    let scene = random_scene(&mut rng, split, cfg.max_shapes);
    let opts = render_options(cfg, &mut rng);
    let id = stem(split, "generation", index);
    let file = format!("{id}.png");
    let prompt = CAPTION_PROMPTS[rng.below(CAPTION_PROMPTS.len())];
    let record = json!({"id": id, "image": file, "conversations": [
        {"from": "human", "value": format!("<image>\n{prompt}")},
        {"from": "gpt", "value": super::text::caption(&scene)},
    ]});
    Sample { record, images: vec![image(file, &scene, &opts)], category: "caption".into() }
}

/// Editing sample `index`: source image, instruction, edited image (InstructPix2Pix layout).
/// In train both scenes belong to train; in test neither shows a held-out pair.
pub fn editing(cfg: &DatasetConfig, split: Split, index: usize) -> Sample {
    let mut rng = rng_for(cfg, split, Task::Editing, index);
    let (source, edit) = loop {
        let source = random_scene(&mut rng, split, cfg.max_shapes);
        // Train targets stay in train; test targets avoid held-out pairs; novel: anything.
        let allowed = |after: &Scene| match split {
            Split::Train => Split::Train.admits(after),
            Split::Test => !after.shapes.iter().any(is_held_out),
            Split::Novel => true,
        };
        if let Some(edit) = Edit::random(&mut rng, &source, cfg.max_shapes, allowed) {
            break (source, edit);
        }
    };
    // Both scenes exist, so neither `apply` nor `instruction` can fail here.
    let target = edit.apply(&source).unwrap_or_else(|_| source.clone());
    let instruction = edit.instruction(&source).unwrap_or_default();
    let opts = render_options(cfg, &mut rng);
    let id = stem(split, "editing", index);
    let (src, dst) = (format!("{id}_input.png"), format!("{id}_edited.png"));
    let category = match edit {
        Edit::Recolour { .. } => "recolour",
        Edit::Resize { .. } => "resize",
        Edit::Remove { .. } => "remove",
        Edit::Add { .. } => "add",
        Edit::Move { .. } => "move",
    };
    Sample {
        record: json!({"id": id, "input_image": src, "edit_prompt": instruction, "edited_image": dst}),
        images: vec![image(src, &source, &opts), image(dst, &target, &opts)],
        category: category.into(),
    }
}

/// Text-only sample `index` (ShareGPT layout): vocabulary, definitions, counting, arithmetic.
pub fn text_only(cfg: &DatasetConfig, split: Split, index: usize) -> Sample {
    let mut rng = rng_for(cfg, split, Task::Text, index);
    let qa = questions::text_only(&mut rng, split);
    let record = json!({"id": stem(split, "text", index), "conversations": [
        {"from": "human", "value": qa.question},
        {"from": "gpt", "value": qa.answer},
    ]});
    Sample { record, images: Vec::new(), category: qa.category.into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shapes::eval::{parse_image, score_edit, score_generation};
    use crate::shapes::text::parse_caption;

    const SPLITS: [Split; 3] = [Split::Train, Split::Test, Split::Novel];

    fn mentions_held_out(text: &str) -> bool {
        let t = text.to_lowercase();
        HELD_OUT_PAIRS.iter().any(|(c, k)| t.contains(&format!("{} {}", c.name(), k.name())))
    }

    #[test]
    fn same_seed_same_bytes() {
        let cfg = DatasetConfig { seed: 42, ..Default::default() };
        for split in SPLITS {
            for i in 0..20 {
                assert_eq!(understanding(&cfg, split, i), understanding(&cfg, split, i));
                assert_eq!(generation(&cfg, split, i), generation(&cfg, split, i));
                assert_eq!(editing(&cfg, split, i), editing(&cfg, split, i));
                assert_eq!(text_only(&cfg, split, i), text_only(&cfg, split, i));
            }
        }
        let other = DatasetConfig { seed: 43, ..cfg };
        assert_ne!(generation(&cfg, Split::Train, 0).images, generation(&other, Split::Train, 0).images);
    }

    #[test]
    fn train_never_shows_held_out_pairs_or_test_scenes() {
        let cfg = DatasetConfig { image_size: 32, turns: 3, ..Default::default() };
        for i in 0..400 {
            for s in [
                understanding(&cfg, Split::Train, i),
                generation(&cfg, Split::Train, i),
                editing(&cfg, Split::Train, i),
                text_only(&cfg, Split::Train, i),
            ] {
                assert!(!mentions_held_out(&s.record.to_string()), "{}", s.record);
                for img in &s.images {
                    assert!(!img.scene.shapes.iter().any(is_held_out));
                    assert!(Split::Train.admits(&img.scene));
                }
            }
        }
        for i in 0..100 {
            let t = generation(&cfg, Split::Test, i);
            assert!(Split::Test.admits(&t.images[0].scene) && !Split::Train.admits(&t.images[0].scene));
            let n = generation(&cfg, Split::Novel, i);
            assert!(n.images[0].scene.shapes.iter().any(is_held_out));
        }
    }

    #[test]
    fn records_are_consistent_with_images() {
        let cfg = DatasetConfig::default();
        for split in SPLITS {
            for i in 0..60 {
                let g = generation(&cfg, split, i);
                let img = &g.images[0];
                assert_eq!(g.record["image"], img.file.as_str());
                let cap = g.record["conversations"][1]["value"].as_str().unwrap();
                assert_eq!(parse_caption(cap).unwrap(), img.scene);
                assert!(score_generation(&img.rgb, img.size, img.size, cap));

                let e = editing(&cfg, split, i);
                let (src, dst) = (&e.images[0], &e.images[1]);
                assert_eq!(e.record["input_image"], src.file.as_str());
                assert_eq!(e.record["edited_image"], dst.file.as_str());
                let prompt = e.record["edit_prompt"].as_str().unwrap();
                assert!(score_edit(&src.scene, prompt, &dst.rgb, dst.size, dst.size), "{prompt}");
                assert!(!score_edit(&src.scene, prompt, &src.rgb, src.size, src.size), "{prompt}");

                let u = understanding(&cfg, split, i);
                let conv = u.record["conversations"].as_array().unwrap();
                assert!(conv[0]["value"].as_str().unwrap().starts_with("<image>\n"));
                assert_eq!(conv[0]["from"], "human");
                assert_eq!(conv[1]["from"], "gpt");
                let img = &u.images[0];
                assert_eq!(parse_image(&img.rgb, img.size, img.size).unwrap(), img.scene);

                let t = text_only(&cfg, split, i);
                assert!(t.images.is_empty() && t.record["conversations"].as_array().unwrap().len() == 2);
            }
        }
    }

    #[test]
    fn image_last_puts_the_image_after_the_first_question_only() {
        let first = DatasetConfig { turns: 3, ..DatasetConfig::default() };
        let last = DatasetConfig { image_last: true, ..first };
        for i in 0..20 {
            let (a, b) = (understanding(&first, Split::Train, i), understanding(&last, Split::Train, i));
            let (ca, cb) =
                (a.record["conversations"].as_array().unwrap(), b.record["conversations"].as_array().unwrap());
            let q = ca[0]["value"].as_str().unwrap().strip_prefix("<image>\n").unwrap();
            assert_eq!(cb[0]["value"].as_str().unwrap(), format!("{q}\n<image>"));
            // Same scene, same questions and answers otherwise.
            assert_eq!(a.images[0].rgb, b.images[0].rgb);
            assert_eq!(ca[1..], cb[1..]);
            assert!(cb[1..].iter().all(|m| !m["value"].as_str().unwrap().contains("<image>")));
        }
    }

    #[test]
    fn every_question_category_occurs() {
        let cfg = DatasetConfig::default();
        let mut seen: Vec<String> = (0..400).map(|i| understanding(&cfg, Split::Train, i).category).collect();
        seen.sort();
        seen.dedup();
        for c in ["caption", "colour", "count", "existence", "position", "relation", "shape", "size"] {
            assert!(seen.iter().any(|s| s == c), "{c} missing from {seen:?}");
        }
    }

    #[test]
    fn question_weights_shape_train_records_only() {
        let count = |cfg: &DatasetConfig, split: Split, c: &str| {
            (0..400).filter(|&i| understanding(cfg, split, i).category == c).count()
        };
        // Only positions: every answerable one is a position question; an ambiguous
        // description falls back to a shape question, a one-shape scene never does.
        let mut only = [0; 9];
        only[questions::CATEGORIES.iter().position(|&c| c == "position").unwrap()] = 1;
        let positions = DatasetConfig { question_weights: only, ..DatasetConfig::default() };
        let p = count(&positions, Split::Train, "position");
        assert!(p > 300 && p + count(&positions, Split::Train, "shape") == 400, "{p}");
        // Heavier relations: more of them than uniform, none lost to other categories.
        let mut heavy = questions::UNIFORM;
        heavy[questions::CATEGORIES.iter().position(|&c| c == "relation").unwrap()] = 8;
        let relations = DatasetConfig { question_weights: heavy, ..DatasetConfig::default() };
        let uniform = DatasetConfig::default();
        assert!(count(&relations, Split::Train, "relation") > 3 * count(&uniform, Split::Train, "relation"));
        // Referring expressions: the answer is the caption phrase of the shape described.
        let mut describe = questions::UNIFORM;
        describe[8] = 8;
        let cfg = DatasetConfig { question_weights: describe, ..DatasetConfig::default() };
        let mut described = 0;
        for i in 0..200 {
            let s = understanding(&cfg, Split::Train, i);
            if s.category != "describe" {
                continue;
            }
            described += 1;
            let conv = s.record["conversations"].as_array().unwrap();
            let q = conv[0]["value"].as_str().unwrap();
            assert!(q.starts_with("<image>\nTell me about the ") && q.ends_with('.'), "{q}");
            let one = super::super::parse_caption(conv[1]["value"].as_str().unwrap()).unwrap();
            assert_eq!(one.shapes.len(), 1);
            assert!(s.images[0].scene.shapes.contains(&one.shapes[0]), "{q} {}", conv[1]["value"]);
        }
        assert!(described > 60, "{described}");
        // Held-out records are asked evenly whatever the weights.
        for i in 0..50 {
            assert_eq!(understanding(&relations, Split::Test, i), understanding(&uniform, Split::Test, i));
        }
    }

    #[test]
    fn scene_weights_shape_train_understanding_only() {
        let sizes = |cfg: &DatasetConfig, split: Split| {
            let mut n = [0usize; 3];
            for i in 0..600 {
                n[understanding(cfg, split, i).images[0].scene.shapes.len() - 1] += 1;
            }
            n
        };
        let uniform = DatasetConfig::default();
        // Equal weights draw the same scenes as before the weights existed.
        let mut rng = SplitMix64::new(9);
        let mut again = SplitMix64::new(9);
        for _ in 0..100 {
            assert_eq!(Scene::random(&mut rng, 3), Scene::random_weighted(&mut again, 3, &[1; 9]));
        }
        let mut w = [1; 9];
        w[..3].copy_from_slice(&[0, 1, 3]);
        let skewed = DatasetConfig { scene_weights: w, ..uniform };
        let n = sizes(&skewed, Split::Train);
        assert_eq!(n[0], 0, "{n:?}");
        assert!(n[2] > 2 * n[1], "{n:?}");
        // Even weights: three shapes more often hold a held-out pair, so train has fewer.
        let even = sizes(&uniform, Split::Train);
        assert!(even.iter().all(|&c| c > 100) && even[0] > even[2], "{even:?}");
        // Held-out records and the other tasks keep the uniform draw.
        for i in 0..50 {
            assert_eq!(understanding(&skewed, Split::Test, i), understanding(&uniform, Split::Test, i));
            assert_eq!(generation(&skewed, Split::Train, i), generation(&uniform, Split::Train, i));
        }
    }
}
