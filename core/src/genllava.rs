//! GenLLaVA = LLaVA + task tokens + N `[IMG]` tokens + the generation head +
//! a (frozen) Stable Diffusion decoder.
//!
//! A GenLLaVA folder is a LLaVA folder (`config.json`, `model*.safetensors`,
//! `tokenizer.json` with the task tokens, the image processor config) plus
//! `genllava.json` ([`GenLlavaConfig`]), `gen_head/` (`config.json`,
//! `model.safetensors`) and `sd/`, a diffusers Stable Diffusion folder.

use crate::error::{Error, Result};
use crate::head::{GenHead, GenHeadConfig};
use crate::llama::Rope;
use crate::llava::{Llava, LlavaConfig};
use crate::template::{self, ChatFormat, Turn};
use crate::tokenizer::TaskTokens;
use burn::tensor::{Int, Tensor, TensorData};

/// Which way an edit reaches the UNet.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EditMode {
    /// img2img from the source latents with this strength (a 4-channel UNet).
    #[serde(rename = "img2img")]
    Img2Img { strength: f32 },
    /// InstructPix2Pix dual guidance (an 8-channel UNet).
    #[serde(rename = "pix2pix")]
    Pix2Pix { image_guidance: f32 },
}

impl EditMode {
    /// This mode with its own setting replaced where given: img2img's `strength`,
    /// InstructPix2Pix's `image_guidance`. The other mode's setting is an error that
    /// names it and this mode's, as the caller spells them (`names`: strength, image guidance).
    pub fn with_setting(self, strength: Option<f32>, image_guidance: Option<f32>, names: (&str, &str)) -> Result<Self> {
        let (mode, own, other, other_mode) = match self {
            EditMode::Img2Img { .. } => ("img2img", names.0, names.1, "InstructPix2Pix"),
            EditMode::Pix2Pix { .. } => ("InstructPix2Pix", names.1, names.0, "img2img"),
        };
        Ok(match (self, strength, image_guidance) {
            (EditMode::Img2Img { .. }, Some(strength), None) => EditMode::Img2Img { strength },
            (EditMode::Pix2Pix { .. }, None, Some(image_guidance)) => EditMode::Pix2Pix { image_guidance },
            (mode, None, None) => mode,
            _ => {
                return Err(Error::input(
                    "edit",
                    format!("{other} is for {other_mode} models; this one edits by {mode} ({own})"),
                ));
            }
        })
    }
}

/// Defaults of the diffusion decoder.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DiffusionDefaults {
    /// Denoising steps.
    pub steps: usize,
    /// Classifier-free guidance scale.
    pub guidance: f32,
    /// `ddim`, `pndm`, `euler` or `euler_ancestral`.
    pub scheduler: String,
    /// How edits are decoded.
    pub edit: EditMode,
}

impl Default for DiffusionDefaults {
    fn default() -> Self {
        Self { steps: 50, guidance: 7.5, scheduler: "pndm".into(), edit: EditMode::Img2Img { strength: 0.75 } }
    }
}

/// `genllava.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GenLlavaConfig {
    /// Ids of `[I2T] [T2I] [SOI] [EOI]` and the `[IMG]` tokens in the tokenizer.
    pub task_tokens: TaskTokens,
    /// The chat template the model was tuned with.
    #[serde(default)]
    pub chat_format: ChatFormat,
    /// The system prompt (the paper's Figure A1 by default).
    #[serde(default = "default_system")]
    pub system: Option<String>,
    /// Pad images to squares with the mean colour before preprocessing.
    #[serde(default)]
    pub pad_to_square: bool,
    /// The diffusion decoder's defaults.
    #[serde(default)]
    pub diffusion: DiffusionDefaults,
    /// An edit's answer describes the edited image in words before drawing it,
    /// `<description>[SOI][IMG…][EOI]` (MGIE's expressive instruction): the `[IMG]`
    /// states then read the scene to draw from the model's own text.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub describe_edits: bool,
}

fn default_system() -> Option<String> {
    Some(template::SYSTEM.to_string())
}

impl GenLlavaConfig {
    /// Parse `genllava.json`; `file` names it in errors.
    pub fn from_json(file: &str, json: &[u8]) -> Result<Self> {
        let cfg: Self = serde_json::from_slice(json).map_err(|e| Error::config(file, e.to_string()))?;
        if cfg.task_tokens.img.is_empty() {
            return Err(Error::config(file, "task_tokens.img is empty: GenLLaVA needs [IMG] tokens"));
        }
        Ok(cfg)
    }

    /// The prompt of a conversation (the last turn the user's), led by the task token.
    pub fn prompt(&self, task_token: &str, turns: &[Turn], eos: &str) -> String {
        format!("{task_token}{}", template::render(self.chat_format, self.system.as_deref(), turns, eos))
    }

    /// The assistant's image answer: `[SOI][IMG0]…[IMG{N-1}][EOI]` as ids.
    pub fn image_answer(&self) -> Vec<u32> {
        let t = &self.task_tokens;
        std::iter::once(t.soi).chain(t.img.iter().copied()).chain(std::iter::once(t.eoi)).collect()
    }
}

/// Text states `[b, n, d]` fitted to the head's `l` query rows: cut, or the last row
/// repeated. Guidance's null condition and the alignment target are fitted this way.
pub fn fit_rows(x: Tensor<3>, l: usize) -> Tensor<3> {
    let n = x.dims()[1];
    if n >= l {
        x.narrow(1, 0, l)
    } else {
        let last = x.clone().narrow(1, n - 1, 1).repeat_dim(1, l - n);
        Tensor::cat(vec![x, last], 1)
    }
}

/// The head's input from a decoder pass: `e[IMG] + h[IMG]`, the input
/// embeddings plus the last hidden states at the `[IMG]` positions.
///
/// `embeds`, `hidden`: `[b, s, d]`; `positions`: `[b, N]` indices into `s`.
/// Returns `[b, N, d]`.
pub fn head_input(embeds: Tensor<3>, hidden: Tensor<3>, positions: Tensor<2, Int>) -> Tensor<3> {
    let [b, n] = positions.dims();
    let d = embeds.dims()[2];
    let idx = positions.reshape([b, n, 1]).repeat_dim(2, d);
    embeds.gather(1, idx.clone()) + hidden.gather(1, idx)
}

/// Positions of the `[IMG]` tokens in each row of `ids` (every row must hold all N, in order).
pub fn img_positions(ids: &[Vec<u32>], img: &[u32], device: &burn::tensor::Device) -> Result<Tensor<2, Int>> {
    let mut flat = Vec::with_capacity(ids.len() * img.len());
    for (row, seq) in ids.iter().enumerate() {
        for &tok in img {
            let p = seq
                .iter()
                .position(|&t| t == tok)
                .ok_or_else(|| Error::input("ids", format!("row {row} lacks the [IMG] token id {tok}")))?;
            flat.push(p as i64);
        }
    }
    Ok(Tensor::from_data(TensorData::new(flat, [ids.len(), img.len()]), device))
}

/// The image conditioning `U` `[1, L, out_dim]` for a prompt whose ids end in
/// `[SOI][IMG…]` (the model is teacher-forced through its image answer).
pub fn condition(
    llava: &Llava,
    cfg: &LlavaConfig,
    head: &GenHead,
    embeds: Tensor<3>,
    ids: &[u32],
    img: &[u32],
) -> Result<Tensor<3>> {
    let device = embeds.device();
    let lm = &llava.language_model;
    let hidden = lm.forward(embeds.clone(), &mut Rope::for_config(&cfg.text_config, &device));
    let pos = img_positions(&[ids.to_vec()], img, &device)?;
    Ok(head.forward(head_input(embeds, hidden, pos)))
}

/// Check that a head fits the language model it reads from.
pub fn check_head(head: &GenHeadConfig, d_llm: usize, n_img: usize) -> Result<()> {
    if head.d_llm != d_llm {
        return Err(Error::config(
            "gen_head/config.json",
            format!("d_llm is {} but the language model's hidden size is {d_llm}", head.d_llm),
        ));
    }
    if head.num_img_tokens != n_img {
        return Err(Error::config(
            "gen_head/config.json",
            format!("num_img_tokens is {} but genllava.json lists {n_img} [IMG] tokens", head.num_img_tokens),
        ));
    }
    Ok(())
}
