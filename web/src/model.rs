//! What the engine holds once a model is loaded: a plain LLaVA checkpoint
//! (understanding only) or a whole GenLLaVA (understanding, generation, editing).

use burn::tensor::Device;
use genllava::checkpoint::{self, FileSource};
use genllava::image::ImageProcessorConfig;
use genllava::llava::{LlavaCheckpoint, load_image_processor};
use genllava::pipeline::GenLlava;
use genllava::template::{self, ChatFormat, Turn};
use genllava::tokenizer::{I2T, TextTokenizer};

/// A loaded model. (Built once and held behind an `Rc`: the variants' sizes do not matter.)
#[allow(clippy::large_enum_variant)]
pub enum Model {
    /// A LLaVA folder: checkpoint, tokenizer and image processor.
    Llava { ckpt: LlavaCheckpoint, tokenizer: TextTokenizer, processor: Option<ImageProcessorConfig> },
    /// A GenLLaVA folder (`genllava.json`, `gen_head/`, `sd/` besides the LLaVA files).
    GenLlava(GenLlava),
}

impl Model {
    /// Load the model in `src` (files the page fetched, or an exported web folder): a
    /// GenLLaVA when it has `genllava.json`, else a LLaVA.
    pub fn load(src: &dyn FileSource, device: &Device) -> genllava::Result<Self> {
        if src.read("genllava.json")?.is_some() {
            return Ok(Model::GenLlava(GenLlava::load(src, device)?));
        }
        let tokenizer = TextTokenizer::from_bytes(&checkpoint::read_required(src, "tokenizer.json")?)?;
        let processor = load_image_processor(src)?;
        let ckpt = LlavaCheckpoint::load(src, device)?;
        Ok(Model::Llava { ckpt, tokenizer, processor })
    }

    pub fn ckpt(&self) -> &LlavaCheckpoint {
        match self {
            Model::Llava { ckpt, .. } => ckpt,
            Model::GenLlava(g) => &g.llava,
        }
    }

    pub fn tokenizer(&self) -> &TextTokenizer {
        match self {
            Model::Llava { tokenizer, .. } => tokenizer,
            Model::GenLlava(g) => &g.tokenizer,
        }
    }

    pub fn processor(&self) -> Option<&ImageProcessorConfig> {
        match self {
            Model::Llava { processor, .. } => processor.as_ref(),
            Model::GenLlava(g) => g.processor.as_ref(),
        }
    }

    /// The GenLLaVA model, if this is one.
    pub fn genllava(&self) -> Option<&GenLlava> {
        match self {
            Model::Llava { .. } => None,
            Model::GenLlava(g) => Some(g),
        }
    }

    /// Whether images are padded to squares before preprocessing (GenLLaVA's config says).
    pub fn pad_to_square(&self) -> bool {
        self.genllava().is_some_and(|g| g.config.pad_to_square)
    }

    /// The text of the model's first end-of-sequence token (`</s>` for Llama/Mistral).
    pub fn eos_text(&self) -> String {
        self.ckpt()
            .config
            .text_config
            .eos_token_ids()
            .first()
            .and_then(|&id| self.tokenizer().inner().id_to_token(id))
            .unwrap_or_else(|| "</s>".into())
    }

    /// The understanding prompt of `turns`. A GenLLaVA model uses the template
    /// and system prompt of its `genllava.json`, led by `[I2T]`, as it was tuned;
    /// a LLaVA model uses `format` and the paper's system prompt when `system`.
    pub fn chat_prompt(&self, turns: &[Turn], format: ChatFormat, system: bool) -> String {
        match self.genllava() {
            Some(g) => g.prompt(I2T, turns),
            None => template::render(format, system.then_some(template::SYSTEM), turns, &self.eos_text()),
        }
    }
}
