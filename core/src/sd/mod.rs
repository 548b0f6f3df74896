//! Stable Diffusion v1.x components in diffusers' layout: the UNet, the VAE,
//! the CLIP tokenizer, and the pipelines that tie them to the text encoder.

pub mod attention;
pub mod clip_tokenizer;
pub mod pipeline;
pub mod pixels;
pub mod unet;
pub mod unet_blocks;
pub mod vae;
