//! Stable Diffusion: the VAE, the UNet and their schedulers.

pub mod vae;
