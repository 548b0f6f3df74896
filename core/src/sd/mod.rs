//! Stable Diffusion v1.x components in diffusers' layout.

pub mod attention;
pub mod unet;
pub mod unet_blocks;
