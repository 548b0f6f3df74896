//! Stable Diffusion v1.x components in diffusers' layout: the UNet, the VAE.

pub mod attention;
pub mod unet;
pub mod unet_blocks;
pub mod vae;
