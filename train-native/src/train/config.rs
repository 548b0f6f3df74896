//! The training configuration: a JSON file, `--set key=value` overrides, saved
//! next to every checkpoint so a run can always be reproduced and resumed.

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The embedded default run (`train` without `--config`, and the main job): the
/// single stage on the shapes world with a GenLLaVA small enough for a CPU
/// (`train-native/configs/shapes.json`). Unset fields take [`TrainConfig::default`].
pub const SHAPES: &str = include_str!("../../configs/shapes.json");

/// Everything a `train` run needs to know. Defaults are the paper's (Table A1)
/// except where the tiny built-in model needs otherwise (noted per field).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Peak learning rate (2e-5 at full size).
    pub lr: f64,
    /// The generation head's learning rate as a multiple of `lr` (same schedule; 1: one rate
    /// for everything, as the paper). The head is the one part trained from scratch on image
    /// rows only, a third of each batch.
    pub head_lr_scale: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// AdamW β₁.
    pub beta1: f64,
    /// AdamW β₂.
    pub beta2: f64,
    /// AdamW ε.
    pub eps: f64,
    /// Fraction of the steps spent warming the learning rate up linearly from 0.
    pub warmup_ratio: f64,
    /// Global gradient-norm clip (PyTorch `clip_grad_norm_` semantics); 0 disables.
    pub clip_norm: f64,
    /// Samples per optimizer step.
    pub global_batch: usize,
    /// Samples per forward/backward pass, on average: a step's samples are sorted by
    /// length and cut into `global_batch / micro_batch` passes (accumulated) where the
    /// passes' padded sizes balance, so a pass of short samples holds more of them.
    pub micro_batch: usize,
    /// How many micro-batches of a step run at once on each device, each on its own
    /// thread (their gradients are summed in order, so the result does not depend on it;
    /// 1: one after another). Pays where one pass leaves cores idle, as a small model on
    /// the CPU does.
    pub parallel_micro_batches: usize,
    /// Optimizer steps of the whole run (the schedule's length).
    pub steps: usize,
    /// Seed of the initial weights and of the data order.
    pub seed: u64,
    /// Longest token sequence (image tokens included); longer samples are cut at the end.
    pub max_seq_len: usize,
    /// Share of each task in the mixture (normalised over the tasks that have data).
    pub mixture: Mixture,
    /// Weights of the loss terms.
    pub loss: LossWeights,
    /// Which parts of the model learn.
    pub trainable: Trainable,
    /// Where the model comes from.
    pub model: ModelSource,
    /// The data sets.
    pub data: DataConfig,
    /// Write a checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: usize,
    /// How many step checkpoints to keep (older ones are deleted; at least 1).
    pub keep_checkpoints: usize,
    /// Evaluate every this many steps (0: only at the end).
    pub eval_every: usize,
    /// Number of held-out questions scored per evaluation.
    pub eval_samples: usize,
    /// Number of held-out generations and of edits scored per evaluation (GenLLaVA).
    pub eval_images: usize,
    /// Output folder: checkpoints, `latest`, `metrics.jsonl`, report.
    pub out_dir: PathBuf,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            lr: 2e-5,
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            warmup_ratio: 0.03,
            clip_norm: 1.0,
            head_lr_scale: 1.0,
            global_batch: 128,
            micro_batch: 16,
            parallel_micro_batches: 2,
            steps: 1000,
            seed: 7,
            max_seq_len: 2048,
            mixture: Mixture::default(),
            loss: LossWeights::default(),
            trainable: Trainable::default(),
            model: ModelSource::default(),
            data: DataConfig::default(),
            checkpoint_every: 500,
            keep_checkpoints: 2,
            eval_every: 0,
            eval_samples: 64,
            eval_images: 32,
            out_dir: PathBuf::from("runs/train"),
        }
    }
}

/// The task mixture of the paper (text 1.93 %, generation 26.88 %, editing 9.63 %,
/// understanding 61.56 %).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Mixture {
    pub text: f64,
    pub generation: f64,
    pub editing: f64,
    pub understanding: f64,
}

impl Default for Mixture {
    fn default() -> Self {
        Self { text: 0.0193, generation: 0.2688, editing: 0.0963, understanding: 0.6156 }
    }
}

/// Loss weights: next-token cross-entropy, the diffusion (noise-prediction) loss
/// and the alignment MSE to the CLIP text states; and how much of the generation
/// terms' gradient reaches the language model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossWeights {
    pub ce: f64,
    pub diffusion: f64,
    pub align: f64,
    /// Share of the generation terms' gradient (diffusion and alignment) that flows
    /// from the head back into the LLM's `[IMG]` hidden states, and through them into
    /// the LLM and the projector (the direct path of the `[IMG]` embeddings into the
    /// head is not scaled): 1 (the paper) back-propagates all of it, 0 trains the head
    /// alone on them (the LLM then learns from the cross-entropy only). The head
    /// always gets the whole gradient.
    pub gen_to_llm: f64,
}

impl Default for LossWeights {
    fn default() -> Self {
        Self { ce: 1.0, diffusion: 0.5, align: 1.0, gen_to_llm: 1.0 }
    }
}

/// How the language model trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LlmMode {
    /// Every weight of the LLM learns.
    #[default]
    Full,
    /// Low-rank adapters (`trainable.lora`) on the decoder layers' projections; the
    /// base weights stay frozen. Checkpoints carry the adapter in PEFT's layout; the
    /// final model has it merged.
    Lora,
    /// The LLM is frozen (gradients still flow through it to the projector).
    Frozen,
}

/// The trainable parts; the UNet and VAE always stay frozen, the vision encoder too
/// unless `vision` asks otherwise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Trainable {
    /// The vision tower (frozen in the paper, and by default).
    pub vision: bool,
    pub projector: bool,
    pub llm: LlmMode,
    /// With `llm = "lora"`: the token embeddings and output layer, where the task and
    /// `[IMG]` tokens live, train in full (PEFT's `modules_to_save`). (With `full` they
    /// train anyway; with `frozen` they do not.)
    pub img_embeddings: bool,
    /// The generation head.
    pub head: bool,
    /// The adapters of `llm = "lora"`.
    pub lora: LoraSettings,
}

impl Default for Trainable {
    fn default() -> Self {
        Self {
            vision: false,
            projector: true,
            llm: LlmMode::Full,
            img_embeddings: true,
            head: true,
            lora: LoraSettings::default(),
        }
    }
}

/// LoRA adapters: rank, alpha and the projections of each decoder layer they sit on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraSettings {
    /// Rank `r` of each adapter.
    pub rank: usize,
    /// The update is scaled by `alpha / rank` (`alpha / √rank` with `rslora`).
    pub alpha: f64,
    /// rsLoRA's scaling.
    pub rslora: bool,
    /// Any of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj.
    pub targets: Vec<String>,
}

impl Default for LoraSettings {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            rslora: false,
            targets: genllava::lora::TARGETS.iter().map(|t| t.to_string()).collect(),
        }
    }
}

impl LoraSettings {
    /// The PEFT `adapter_config.json` of these settings.
    pub fn adapter_config(&self) -> genllava::lora::AdapterConfig {
        let mut cfg = genllava::lora::AdapterConfig::new(self.rank, self.alpha, &self.targets);
        cfg.use_rslora = self.rslora;
        cfg
    }
}

/// Where the initial weights come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSource {
    /// An HF LLaVA folder to start from (config.json, model*.safetensors, tokenizer.json,
    /// processor config). When empty the model is initialised from `init`.
    pub from: Option<PathBuf>,
    /// Fresh random weights with this `config.json` (a LLaVA config object); `null`
    /// takes the built-in tiny preset. `text_config.vocab_size` and the special token
    /// ids are set from the tokenizer trained on the data.
    pub init: Option<serde_json::Value>,
    /// Standard deviation of the fresh weights.
    pub init_std: f64,
    /// A pretrained vision tower (a transformers `SiglipVisionModel` folder, as
    /// `pretrain-vision` writes) that replaces the fresh one of `init`; its
    /// `config.json` becomes `vision_config`. A relative path that does not exist from
    /// the working directory is looked up in the train-native crate (`assets/…`).
    pub vision: Option<PathBuf>,
    /// A pretrained language model (a `LlamaForCausalLM` / `MistralForCausalLM` folder,
    /// such as `pretrain-llm` writes) that replaces the fresh decoder of `init`, its
    /// tokenizer with it; its `config.json` becomes `text_config`. Looked up like `vision`.
    pub llm: Option<PathBuf>,
    /// Build a GenLLaVA (task tokens, `[IMG]` tokens, generation head, frozen
    /// diffusion decoder); `null`: when the data has generation or editing samples.
    pub generation: Option<bool>,
    /// The frozen Stable Diffusion folder (`null`: the shipped `assets/sd-shapes`); looked
    /// up like `vision` (the shipped configs name `assets/sd-p2p-shapes`).
    pub sd: Option<PathBuf>,
    /// Number N of `[IMG]` tokens.
    pub n_img: usize,
    /// Generation head sizes (a partial `gen_head/config.json`: `d_model`, `heads`,
    /// `enc_layers`, `dec_layers`, `ffn`); the rest follows the LLM and the UNet.
    pub head: Option<serde_json::Value>,
}

impl Default for ModelSource {
    fn default() -> Self {
        Self {
            from: None,
            init: None,
            init_std: 0.02,
            vision: None,
            llm: None,
            generation: None,
            sd: None,
            n_img: 16,
            head: None,
        }
    }
}

/// The data sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// `shapes`: the built-in shapes world (understanding, generation, editing and
    /// text; held out: its test and novel splits); `colours`: a solid-colour
    /// question set (understanding only).
    pub source: String,
    /// Number of distinct samples per task the built-in source offers.
    pub size: usize,
    /// Lightly textured backgrounds behind the understanding images (shapes).
    pub textured: bool,
    /// Questions per training understanding image (shapes), as a multi-turn
    /// conversation like LLaVA-Finetune's; every answer is a target. Held-out
    /// images get one question each.
    pub turns: usize,
    /// Put an understanding record's image after its first question (`{q}\n<image>`)
    /// instead of before it (shapes; held-out records too). Prompts for such a model
    /// should put the image after the question as well.
    pub image_after_question: bool,
    /// How often each kind of question is asked about a training image (shapes;
    /// relative weights, 1 each by default; held-out images are always asked evenly).
    pub questions: QuestionWeights,
    /// How often a training understanding image shows one, two or three shapes
    /// (shapes; relative weights, `[1, 1, 1]` by default; held-out images and the
    /// generation and editing data always draw the number of shapes evenly). Questions
    /// about a lone shape need no lookup of the shape they name; heavier weights on
    /// two and three shapes ask for it more often.
    pub scenes: [u32; 3],
    /// An edit's answer describes the edited scene in words (its caption) before
    /// `[SOI][IMG…][EOI]`, MGIE's expressive instruction (shapes): the words are
    /// targets of the cross-entropy like any answer, and the model's `genllava.json`
    /// says so, so its edits describe before they draw.
    pub describe_edits: bool,
    /// With `describe_edits`, the description first captions the source image, then
    /// the edited scene: `<source caption> becomes <edited caption>`, so the edit is
    /// applied to words the model has just written (a chain of thought).
    pub describe_source: bool,
    /// With `describe_edits`, the description goes cell by cell: the source's nine cells
    /// in reading order ("top left empty, top center small blue circle, …"), the
    /// instruction with its shape named by its cell ("remove top center"), then the
    /// edited scene's nine cells, joined by "; ". Each step is a lookup: the k-th entry
    /// names cell k, as the vision tower's k-th patch sees it.
    pub describe_grid: bool,
    /// With `describe_grid`, leave out the source's cells: the instruction resolved by
    /// cell, then the edited scene's cells, each read from the picture (the vision tower's
    /// patch of that cell) rather than copied from written words.
    pub describe_unwritten_source: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        Self {
            source: "shapes".into(),
            size: 100_000,
            textured: true,
            turns: 1,
            image_after_question: false,
            questions: QuestionWeights::default(),
            scenes: [1, 1, 1],
            describe_edits: false,
            describe_source: false,
            describe_grid: false,
            describe_unwritten_source: false,
        }
    }
}

/// Relative weights of the shapes world's question categories in training
/// (`describe`, a referring expression answered with the shape's caption phrase, is
/// training data only and off by default; held-out images are asked the other eight evenly).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuestionWeights {
    pub colour: u32,
    pub shape: u32,
    pub position: u32,
    pub size: u32,
    pub count: u32,
    pub existence: u32,
    pub relation: u32,
    pub caption: u32,
    pub describe: u32,
}

impl Default for QuestionWeights {
    fn default() -> Self {
        Self { colour: 1, shape: 1, position: 1, size: 1, count: 1, existence: 1, relation: 1, caption: 1, describe: 0 }
    }
}

impl QuestionWeights {
    /// In the order of `genllava::shapes::questions::CATEGORIES`.
    pub fn to_array(&self) -> genllava::shapes::questions::Weights {
        [
            self.colour,
            self.shape,
            self.position,
            self.size,
            self.count,
            self.existence,
            self.relation,
            self.caption,
            self.describe,
        ]
    }
}

impl TrainConfig {
    /// Read a JSON config file (`None`: defaults) and apply `key=value` overrides.
    pub fn load(file: Option<&Path>, overrides: &[String]) -> anyhow::Result<Self> {
        let mut value = match file {
            Some(path) => {
                let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
                serde_json::from_slice(&bytes).with_context(|| format!("{}: invalid JSON", path.display()))?
            }
            None => serde_json::from_str(SHAPES)?,
        };
        // Fill the fields the file left out, so overrides of nested keys find their parent.
        let cfg: TrainConfig = serde_json::from_value(value).context("config")?;
        value = serde_json::to_value(cfg)?;
        for o in overrides {
            apply_override(&mut value, o)?;
        }
        let cfg: TrainConfig = serde_json::from_value(value).context("config after --set overrides")?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Relations serde cannot check.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.micro_batch == 0 || self.global_batch == 0 || !self.global_batch.is_multiple_of(self.micro_batch) {
            bail!(
                "global_batch ({}) must be a positive multiple of micro_batch ({})",
                self.global_batch,
                self.micro_batch
            );
        }
        if self.parallel_micro_batches == 0 {
            bail!("parallel_micro_batches must be at least 1 (1: micro-batches one after another)");
        }
        if self.steps == 0 {
            bail!("steps must be positive");
        }
        if !(self.head_lr_scale > 0.0 && self.head_lr_scale.is_finite()) {
            bail!("head_lr_scale must be positive and finite (1: the head learns at lr)");
        }
        if self.data.turns == 0 {
            bail!("data.turns must be at least 1");
        }
        if self.data.questions.to_array().iter().all(|&w| w == 0) {
            bail!("data.questions: at least one question weight must be positive");
        }
        if self.data.scenes.iter().all(|&w| w == 0) {
            bail!("data.scenes: at least one of the weights of one, two and three shapes must be positive");
        }
        if self.data.describe_source && !self.data.describe_edits {
            bail!("data.describe_source is part of an edit's description: set data.describe_edits too");
        }
        if self.data.describe_grid && !self.data.describe_edits {
            bail!("data.describe_grid is a form of an edit's description: set data.describe_edits too");
        }
        if self.data.describe_unwritten_source && !self.data.describe_grid {
            bail!("data.describe_unwritten_source shortens the cell-by-cell description: set data.describe_grid too");
        }
        if self.data.describe_grid && self.data.describe_source {
            bail!("data.describe_grid and data.describe_source are two forms of the description: set one");
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            bail!("warmup_ratio must be in [0, 1)");
        }
        let m = &self.mixture;
        if [m.text, m.generation, m.editing, m.understanding].iter().any(|s| *s < 0.0 || !s.is_finite()) {
            bail!("mixture shares must be finite and non-negative");
        }
        if !(0.0..=1.0).contains(&self.loss.gen_to_llm) {
            bail!("loss.gen_to_llm must be in [0, 1] (the share of the generation gradient the LLM gets)");
        }
        let lora = &self.trainable.lora;
        if lora.rank == 0 || !lora.alpha.is_finite() || lora.alpha <= 0.0 {
            bail!("trainable.lora: rank must be at least 1 and alpha positive");
        }
        if lora.targets.is_empty() {
            bail!("trainable.lora.targets is empty");
        }
        if let Some(t) = lora.targets.iter().find(|t| !genllava::lora::TARGETS.contains(&t.as_str())) {
            bail!("trainable.lora.targets: `{t}` is not one of {:?}", genllava::lora::TARGETS);
        }
        if self.max_seq_len < 2 {
            bail!("max_seq_len must be at least 2");
        }
        Ok(())
    }

    /// Gradient-accumulation passes per step.
    pub fn accumulation(&self) -> usize {
        self.global_batch / self.micro_batch
    }
}

/// Set `a.b.c=value` in a JSON object. The value is parsed as JSON when it can
/// be (numbers, booleans, objects), otherwise taken as a string. The key must exist.
pub fn apply_override(root: &mut serde_json::Value, assignment: &str) -> anyhow::Result<()> {
    let (key, raw) = assignment.split_once('=').with_context(|| format!("--set `{assignment}`: expected key=value"))?;
    let value = serde_json::from_str(raw).unwrap_or_else(|_| serde_json::Value::String(raw.to_string()));
    let mut node = root;
    let parts: Vec<&str> = key.trim().split('.').collect();
    for (i, part) in parts.iter().enumerate() {
        let obj = node
            .as_object_mut()
            .with_context(|| format!("--set {key}: `{}` is not an object", parts[..i].join(".")))?;
        if i + 1 == parts.len() {
            if !obj.contains_key(*part) {
                bail!(
                    "--set {key}: unknown key `{part}` (known: {})",
                    obj.keys().cloned().collect::<Vec<_>>().join(", ")
                );
            }
            obj.insert(part.to_string(), value);
            return Ok(());
        }
        node = obj.get_mut(*part).with_context(|| format!("--set {key}: unknown key `{part}`"))?;
        if node.is_null() {
            *node = serde_json::Value::Object(Default::default());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_parse_and_check_keys() {
        let cfg = TrainConfig::load(
            None,
            &["lr=1e-3".into(), "steps=200".into(), "mixture.text=0.5".into(), "trainable.llm=frozen".into()],
        )
        .expect("config");
        assert_eq!(cfg.lr, 1e-3);
        assert_eq!(cfg.steps, 200);
        assert_eq!(cfg.mixture.text, 0.5);
        assert_eq!(cfg.trainable.llm, LlmMode::Frozen);
        assert!(TrainConfig::load(None, &["nope=1".into()]).is_err());
        assert!(TrainConfig::load(None, &["global_batch=10".into(), "micro_batch=3".into()]).is_err());
        assert_eq!(TrainConfig::load(None, &["loss.gen_to_llm=0.25".into()]).expect("cfg").loss.gen_to_llm, 0.25);
        let err = TrainConfig::load(None, &["loss.gen_to_llm=1.5".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("loss.gen_to_llm"), "{err:#}");
        assert_eq!(TrainConfig::load(None, &["head_lr_scale=0.5".into()]).expect("cfg").head_lr_scale, 0.5);
        let err = TrainConfig::load(None, &["head_lr_scale=0".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("head_lr_scale"), "{err:#}");
        assert_eq!(TrainConfig::load(None, &["out_dir=/tmp/x".into()]).expect("cfg").out_dir, PathBuf::from("/tmp/x"));
        // The description's forms: one at a time, and only for described edits.
        let grid = |o: &[&str]| TrainConfig::load(None, &o.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert!(grid(&["data.describe_grid=true", "data.describe_source=false"]).expect("cfg").data.describe_grid);
        let err = grid(&["data.describe_grid=true", "data.describe_source=true"]).unwrap_err();
        assert!(format!("{err:#}").contains("set one"), "{err:#}");
        let err =
            grid(&["data.describe_grid=true", "data.describe_source=false", "data.describe_edits=false"]).unwrap_err();
        assert!(format!("{err:#}").contains("data.describe_edits"), "{err:#}");
        assert!(grid(&["data.describe_unwritten_source=true"]).expect("cfg").data.describe_unwritten_source);
        let err = grid(&["data.describe_grid=false", "data.describe_unwritten_source=true"]).unwrap_err();
        assert!(format!("{err:#}").contains("data.describe_grid"), "{err:#}");
    }

    #[test]
    fn question_weights_follow_the_world_categories() {
        use genllava::shapes::questions::{CATEGORIES, UNIFORM};
        assert_eq!(TrainConfig::load(None, &[]).expect("cfg").data.questions.to_array(), UNIFORM);
        let cfg = TrainConfig::load(None, &["data.questions.describe=2".into(), "data.questions.position=3".into()])
            .expect("cfg");
        let w = cfg.data.questions.to_array();
        assert_eq!((w[CATEGORIES.iter().position(|&c| c == "describe").unwrap()], w[2]), (2, 3));
        assert_eq!(CATEGORIES[2], "position");
        let zero: Vec<String> = CATEGORIES.iter().map(|c| format!("data.questions.{c}=0")).collect();
        let err = TrainConfig::load(None, &zero).unwrap_err();
        assert!(format!("{err:#}").contains("data.questions"), "{err:#}");
        assert!(TrainConfig::load(None, &["data.questions.shapes=1".into()]).is_err());
        let cfg = TrainConfig::load(None, &["data.scenes=[1,2,3]".into()]).expect("scenes");
        assert_eq!(cfg.data.scenes, [1, 2, 3]);
        let err = TrainConfig::load(None, &["data.scenes=[0,0,0]".into()]).unwrap_err();
        assert!(format!("{err:#}").contains("data.scenes"), "{err:#}");
        assert!(TrainConfig::load(None, &["data.scenes=[1,2]".into()]).is_err());
    }

    #[test]
    fn embedded_configs_parse() {
        let shapes: TrainConfig = serde_json::from_str(SHAPES).expect("shapes.json");
        shapes.validate().expect("valid");
        assert_eq!(shapes.data.source, "shapes");
        assert_eq!(TrainConfig::load(None, &[]).expect("default"), shapes);
        let full: TrainConfig = serde_json::from_str(include_str!("../../configs/full.json")).expect("full.json");
        full.validate().expect("valid");
        assert_eq!((full.lr, full.global_batch), (2e-5, 128));
    }

    #[test]
    fn round_trips_through_json() {
        let cfg = TrainConfig::default();
        let back: TrainConfig = serde_json::from_str(&serde_json::to_string(&cfg).expect("json")).expect("parse");
        assert_eq!(cfg, back);
    }
}
