//! `vae/config.json` of a diffusers `AutoencoderKL`.

use crate::error::{Error, Result};
use crate::nn::Activation;

/// `vae/config.json` of a diffusers `AutoencoderKL`. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
pub struct AutoencoderKLConfig {
    /// Image channels in (3 for RGB).
    #[serde(default = "defaults::three")]
    pub in_channels: usize,
    /// Image channels out (3 for RGB).
    #[serde(default = "defaults::three")]
    pub out_channels: usize,
    /// Encoder block kinds; only `DownEncoderBlock2D` exists for this VAE.
    #[serde(default = "defaults::down_blocks")]
    pub down_block_types: Vec<String>,
    /// Decoder block kinds; only `UpDecoderBlock2D` exists for this VAE.
    #[serde(default = "defaults::up_blocks")]
    pub up_block_types: Vec<String>,
    /// Channels of each encoder block (the decoder uses them reversed).
    #[serde(default = "defaults::block_out_channels")]
    pub block_out_channels: Vec<usize>,
    /// Resnets per encoder block; decoder blocks have one more.
    #[serde(default = "defaults::one")]
    pub layers_per_block: usize,
    /// Activation inside the resnets (the conv-out activation is always SiLU).
    #[serde(default = "defaults::silu")]
    pub act_fn: Activation,
    /// Channels of the latent `z`.
    #[serde(default = "defaults::four")]
    pub latent_channels: usize,
    /// Groups of every group norm.
    #[serde(default = "defaults::thirty_two")]
    pub norm_num_groups: usize,
    /// Image size the VAE was trained at (informational).
    #[serde(default = "defaults::thirty_two")]
    pub sample_size: usize,
    /// Multiply `z` by this before the UNet and divide by it before [`super::AutoencoderKL::decode`]
    /// (0.18215 for SD 1.x/2.x). Not applied by this module.
    #[serde(default = "defaults::scaling_factor")]
    pub scaling_factor: f64,
    /// Subtracted from `z` before scaling (SD3/Flux VAEs); `None` for SD 1.x. Not applied here.
    #[serde(default)]
    pub shift_factor: Option<f64>,
    /// Whether the 1×1 `quant_conv` follows the encoder.
    #[serde(default = "defaults::yes")]
    pub use_quant_conv: bool,
    /// Whether the 1×1 `post_quant_conv` precedes the decoder.
    #[serde(default = "defaults::yes")]
    pub use_post_quant_conv: bool,
    /// Whether the mid blocks hold a self-attention layer.
    #[serde(default = "defaults::yes")]
    pub mid_block_add_attention: bool,
}

mod defaults {
    use crate::nn::Activation;
    pub fn one() -> usize {
        1
    }
    pub fn three() -> usize {
        3
    }
    pub fn four() -> usize {
        4
    }
    pub fn thirty_two() -> usize {
        32
    }
    pub fn yes() -> bool {
        true
    }
    pub fn silu() -> Activation {
        Activation::Silu
    }
    pub fn scaling_factor() -> f64 {
        0.18215
    }
    pub fn block_out_channels() -> Vec<usize> {
        vec![64]
    }
    pub fn down_blocks() -> Vec<String> {
        vec!["DownEncoderBlock2D".into()]
    }
    pub fn up_blocks() -> Vec<String> {
        vec!["UpDecoderBlock2D".into()]
    }
}

impl AutoencoderKLConfig {
    /// Parse and check `vae/config.json`.
    pub fn from_json(json: &str) -> Result<Self> {
        let cfg: Self = serde_json::from_str(json).map_err(|e| Error::config("vae/config.json", e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Check the fields this implementation relies on.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::config("vae/config.json", why));
        let n = self.block_out_channels.len();
        if n == 0 {
            return bad("block_out_channels is empty".into());
        }
        if self.down_block_types.len() != n || self.up_block_types.len() != n {
            return bad(format!(
                "{} down and {} up block types for {n} block_out_channels",
                self.down_block_types.len(),
                self.up_block_types.len()
            ));
        }
        if let Some(t) = self.down_block_types.iter().find(|t| *t != "DownEncoderBlock2D") {
            return bad(format!("unsupported down block type `{t}` (only DownEncoderBlock2D)"));
        }
        if let Some(t) = self.up_block_types.iter().find(|t| *t != "UpDecoderBlock2D") {
            return bad(format!("unsupported up block type `{t}` (only UpDecoderBlock2D)"));
        }
        let g = self.norm_num_groups;
        if g == 0 || self.block_out_channels.iter().any(|c| *c == 0 || c % g != 0) {
            return bad(format!(
                "block_out_channels {:?} not divisible by norm_num_groups {g}",
                self.block_out_channels
            ));
        }
        if self.layers_per_block == 0 || self.latent_channels == 0 || self.in_channels == 0 || self.out_channels == 0 {
            return bad("layers_per_block, latent_channels, in_channels and out_channels must be positive".into());
        }
        Ok(())
    }
}
