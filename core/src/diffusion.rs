//! The denoising loops of diffusers' Stable Diffusion pipelines, generic over
//! the noise predictor (a UNet, or anything with its signature), so the CLI
//! and the browser share them.

use crate::error::{Error, Result};
use crate::scheduler::Scheduler;
use burn::tensor::Tensor;

/// Initial latents for text-to-image: standard-normal `noise` scaled by the
/// scheduler's `init_noise_sigma` (diffusers `prepare_latents`).
pub fn initial_latents(scheduler: &dyn Scheduler, noise: Tensor<4>) -> Tensor<4> {
    noise.mul_scalar(scheduler.init_noise_sigma())
}

/// `StableDiffusionPipeline`'s loop over all of `scheduler.timesteps()`.
///
/// - `latents`: `[b, c, h, w]`, already scaled by `init_noise_sigma`.
/// - `guidance`: classifier-free guidance scale; at most 1 turns CFG off.
/// - `predict(x, t)`: noise prediction for `x` at timestep `t`. With CFG, `x`
///   is `[2b, c, h, w]` = `[uncond; cond]` (the caller pairs it with
///   `[uncond_embeds; cond_embeds]`) and it must return `[2b, c, h, w]`;
///   without, `[b, c, h, w]`.
/// - `on_step(i, latents)`: called after step `i` with the new latents.
///
/// Returns the final latents `[b, c, h, w]`.
pub fn denoise(
    scheduler: &mut dyn Scheduler,
    latents: Tensor<4>,
    guidance: f32,
    predict: impl FnMut(Tensor<4>, f64) -> Result<Tensor<4>>,
    on_step: impl FnMut(usize, &Tensor<4>),
) -> Result<Tensor<4>> {
    let timesteps = scheduler.timesteps().to_vec();
    denoise_over(scheduler, &timesteps, latents, guidance, predict, on_step)
}

/// [`denoise`] over the given `timesteps` (img2img passes the truncated ones
/// from [`crate::scheduler::img2img_timesteps`]).
pub fn denoise_over(
    scheduler: &mut dyn Scheduler,
    timesteps: &[f64],
    mut latents: Tensor<4>,
    guidance: f32,
    mut predict: impl FnMut(Tensor<4>, f64) -> Result<Tensor<4>>,
    mut on_step: impl FnMut(usize, &Tensor<4>),
) -> Result<Tensor<4>> {
    for (i, &t) in timesteps.iter().enumerate() {
        latents = guided_step(scheduler, t, latents, guidance, &mut predict)?;
        on_step(i, &latents);
    }
    Ok(latents)
}

/// One step of [`denoise_over`] at timestep `t`: the model input (doubled
/// under CFG), the prediction, guidance and the scheduler's step. Returns the
/// new latents. Callers that step on their own (the browser, which reads a
/// preview back between steps) share the loops' arithmetic through this.
pub fn guided_step(
    scheduler: &mut dyn Scheduler,
    t: f64,
    latents: Tensor<4>,
    guidance: f32,
    predict: &mut impl FnMut(Tensor<4>, f64) -> Result<Tensor<4>>,
) -> Result<Tensor<4>> {
    let cfg = guidance > 1.0;
    let b = latents.dims()[0];
    let input = if cfg { Tensor::cat(vec![latents.clone(), latents.clone()], 0) } else { latents.clone() };
    let input = scheduler.scale_model_input(input, t)?;
    let pred = predict(input, t)?;
    check_batch("predict", &pred, if cfg { 2 * b } else { b })?;
    scheduler.step_guided(pred, cfg.then_some(guidance), t, latents)
}

/// `StableDiffusionInstructPix2PixPipeline`'s loop with text and image guidance.
///
/// - `latents`: `[b, c, h, w]`, already scaled by `init_noise_sigma`.
/// - `image_latents`: `[b, c_img, h, w]`, the VAE mode of the input image
///   (unscaled, as the pipeline uses it), concatenated on channels after the
///   scaled model input.
/// - Guidance is on when `text_guidance > 1` and `image_guidance >= 1`. Then
///   `predict` gets `[3b, c + c_img, h, w]` = `[latents ⧺ image; latents ⧺
///   image; latents ⧺ 0]` and the caller pairs it with text embeddings
///   `[cond; uncond; uncond]`; it returns `[3b, c, h, w]` =
///   `[text, image, uncond]` and the guided noise is
///   `uncond + text_g (text - image) + image_g (image - uncond)`.
///   Otherwise `predict` gets `[b, c + c_img, h, w]` with the conditional text.
pub fn denoise_pix2pix(
    scheduler: &mut dyn Scheduler,
    mut latents: Tensor<4>,
    image_latents: Tensor<4>,
    text_guidance: f32,
    image_guidance: f32,
    mut predict: impl FnMut(Tensor<4>, f64) -> Result<Tensor<4>>,
    mut on_step: impl FnMut(usize, &Tensor<4>),
) -> Result<Tensor<4>> {
    let image = pix2pix_image(&latents, image_latents, text_guidance, image_guidance)?;
    let timesteps = scheduler.timesteps().to_vec();
    for (i, &t) in timesteps.iter().enumerate() {
        latents = pix2pix_step(scheduler, t, latents, &image, text_guidance, image_guidance, &mut predict)?;
        on_step(i, &latents);
    }
    Ok(latents)
}

/// Whether [`denoise_pix2pix`] runs with (3-way) guidance.
fn pix2pix_cfg(text_guidance: f32, image_guidance: f32) -> bool {
    text_guidance > 1.0 && image_guidance >= 1.0
}

/// The image half of every InstructPix2Pix model input: `image_latents`
/// checked against `latents`, tripled as `[image; image; 0]` under guidance.
pub fn pix2pix_image(
    latents: &Tensor<4>,
    image_latents: Tensor<4>,
    text_guidance: f32,
    image_guidance: f32,
) -> Result<Tensor<4>> {
    let [b, _, h, w] = latents.dims();
    let [bi, _, hi, wi] = image_latents.dims();
    if (bi, hi, wi) != (b, h, w) {
        return Err(Error::input(
            "image_latents",
            format!("{:?} does not match latents {:?}", image_latents.dims(), latents.dims()),
        ));
    }
    Ok(if pix2pix_cfg(text_guidance, image_guidance) {
        Tensor::cat(vec![image_latents.clone(), image_latents.clone(), image_latents.zeros_like()], 0)
    } else {
        image_latents
    })
}

/// One step of [`denoise_pix2pix`] at timestep `t`; `image` comes from
/// [`pix2pix_image`]. Returns the new latents.
pub fn pix2pix_step(
    scheduler: &mut dyn Scheduler,
    t: f64,
    latents: Tensor<4>,
    image: &Tensor<4>,
    text_guidance: f32,
    image_guidance: f32,
    predict: &mut impl FnMut(Tensor<4>, f64) -> Result<Tensor<4>>,
) -> Result<Tensor<4>> {
    let cfg = pix2pix_cfg(text_guidance, image_guidance);
    let b = latents.dims()[0];
    let input = if cfg { Tensor::cat(vec![latents.clone(); 3], 0) } else { latents.clone() };
    let input = scheduler.scale_model_input(input, t)?;
    let pred = predict(Tensor::cat(vec![input, image.clone()], 1), t)?;
    check_batch("predict", &pred, if cfg { 3 * b } else { b })?;
    let eps = if cfg {
        let parts = pred.chunk(3, 0);
        let [text, img, uncond]: [Tensor<4>; 3] =
            parts.try_into().map_err(|_| Error::input("predict", "cannot split the 3-way guidance batch"))?;
        let text_term = text.sub(img.clone()).mul_scalar(text_guidance);
        let image_term = img.sub(uncond.clone()).mul_scalar(image_guidance);
        uncond.add(text_term).add(image_term)
    } else {
        pred
    };
    scheduler.step(eps, t, latents)
}

fn check_batch(what: &str, x: &Tensor<4>, batch: usize) -> Result<()> {
    if x.dims()[0] == batch {
        Ok(())
    } else {
        Err(Error::input(what, format!("returned batch {} where {batch} was expected", x.dims()[0])))
    }
}
