//! `eval-sd`: generate the images of held-out captions with a diffusers folder (DDIM,
//! classifier-free guidance, core's denoising loop) and score them with the exact
//! evaluator: a generation counts only when every shape has the right kind, colour,
//! size and cell and nothing else is there. Per-attribute agreement is reported too.

use super::diffusion::ids_tensor;
use super::folder::{LoadedSd, load};
use super::{EvalArgs, EvalSplit, Images, normal};
use burn::tensor::{Device, Tensor};
use genllava::diffusion::{denoise, denoise_pix2pix, initial_latents};
use genllava::scheduler::SchedulerKind;
use genllava::shapes::dataset::{self, DatasetConfig, Split};
use genllava::shapes::{SceneMatch, SplitMix64, parse_caption, parse_image};
use std::time::Instant;

/// Captions generated per batch.
const BATCH: usize = 16;

/// What drawing and editing share: the captions' text states, the empty caption's
/// (`None` without guidance), a DDIM scheduler of `steps` and the initial latents.
struct Start {
    cond: Tensor<3>,
    uncond: Option<Tensor<3>>,
    scheduler: Box<dyn genllava::scheduler::Scheduler>,
    latents: Tensor<4>,
}

fn start(
    sd: &LoadedSd,
    captions: &[String],
    steps: usize,
    guided: bool,
    rng: &mut SplitMix64,
    device: &Device,
) -> anyhow::Result<Start> {
    let b = captions.len();
    let cond = sd.text.forward(ids_tensor(&sd.tok, captions, device)?)?;
    let uncond = match guided {
        true => Some(sd.text.forward(ids_tensor(&sd.tok, &vec![String::new(); b], device)?)?),
        false => None,
    };
    let c = &sd.vae_config;
    let side = c.sample_size >> (c.block_out_channels.len() - 1);
    let scheduler = SchedulerKind::Ddim.build(&sd.scheduler, steps, None)?;
    let latents = initial_latents(scheduler.as_ref(), normal(rng, [b, c.latent_channels, side, side], device));
    Ok(Start { cond, uncond, scheduler, latents })
}

/// Final latents (scaled as the UNet sees them) → images.
fn decode(sd: &LoadedSd, latents: Tensor<4>) -> anyhow::Result<Images> {
    Ok(Images::from_tensor(sd.vae.decode(latents.div_scalar(sd.vae_config.scaling_factor))?))
}

/// Images for `captions` (`[b]` RGB byte rows of `side`²·3).
pub fn generate(
    sd: &LoadedSd,
    captions: &[String],
    steps: usize,
    guidance: f32,
    rng: &mut SplitMix64,
    device: &Device,
) -> anyhow::Result<Images> {
    let Start { cond, uncond, mut scheduler, latents } = start(sd, captions, steps, guidance > 1.0, rng, device)?;
    let context = match uncond {
        Some(uncond) => Tensor::cat(vec![uncond, cond], 0),
        None => cond,
    };
    // An InstructPix2Pix UNet draws from a caption alone with a zero source image.
    let blank = sd.unet.in_channels == 2 * sd.vae_config.latent_channels;
    let predict = |x: Tensor<4>, t: f64| {
        let x = if blank { Tensor::cat(vec![x.clone(), x.zeros_like()], 1) } else { x };
        sd.unet.forward_at(x, t as f32, context.clone())
    };
    decode(sd, denoise(scheduler.as_mut(), latents, guidance, predict, |_, _| {})?)
}

/// Edits of `sources` toward `captions` with an InstructPix2Pix UNet (text guidance
/// `guidance`, image guidance `image_guidance`), as [`generate`] draws.
pub fn edit(
    sd: &LoadedSd,
    captions: &[String],
    sources: &Images,
    (steps, guidance, image_guidance): (usize, f32, f32),
    rng: &mut SplitMix64,
    device: &Device,
) -> anyhow::Result<Images> {
    let c = &sd.vae_config;
    anyhow::ensure!(
        sd.unet.in_channels == 2 * c.latent_channels,
        "edits need an InstructPix2Pix UNet ({} input channels); this one has {}",
        2 * c.latent_channels,
        sd.unet.in_channels
    );
    let guided = guidance > 1.0 && image_guidance >= 1.0;
    let Start { cond, uncond, mut scheduler, latents } = start(sd, captions, steps, guided, rng, device)?;
    let context = match uncond {
        Some(uncond) => Tensor::cat(vec![cond, uncond.clone(), uncond], 0),
        None => cond,
    };
    let image_latents = sd.vae.encode(sources.tensor(device))?.mode();
    let predict = |x: Tensor<4>, t: f64| sd.unet.forward_at(x, t as f32, context.clone());
    let latents =
        denoise_pix2pix(scheduler.as_mut(), latents, image_latents, guidance, image_guidance, predict, |_, _| {})?;
    decode(sd, latents)
}

/// `eval-sd --edits`: exact edits of held-out editing triples, by kind of edit and
/// by shapes in the source scene.
fn run_edits(
    args: &EvalArgs,
    sd: &LoadedSd,
    world: &DatasetConfig,
    split: Split,
    device: &Device,
) -> anyhow::Result<()> {
    let samples: Vec<_> = (0..args.n).map(|i| dataset::editing(world, split, i)).collect();
    let side = sd.vae_config.sample_size;
    let mut rng = SplitMix64::derive(args.seed, &[0xED17]);
    let start = Instant::now();
    let (mut exact, mut misses) = (0usize, 0usize);
    let mut by = std::collections::BTreeMap::<String, (usize, usize)>::new();
    for (chunk_index, chunk) in samples.chunks(BATCH).enumerate() {
        let captions: Vec<String> = chunk
            .iter()
            .map(|s| {
                let instruction = s.record["edit_prompt"].as_str().unwrap_or_default();
                sd.edit_text.text(instruction, &genllava::shapes::caption(&s.images[1].scene))
            })
            .collect();
        let sources = Images { rgb: chunk.iter().map(|s| s.images[0].rgb.clone()).collect(), side };
        let images = edit(sd, &captions, &sources, (args.steps, args.guidance, args.image_guidance), &mut rng, device)?;
        for (j, (s, rgb)) in chunk.iter().zip(&images.rgb).enumerate() {
            let instruction = s.record["edit_prompt"].as_str().unwrap_or_default();
            let ok = genllava::shapes::score_edit(&s.images[0].scene, instruction, rgb, side, side);
            exact += usize::from(ok);
            if !ok && misses < 5 {
                misses += 1;
                let got = parse_image(rgb, side, side).map(|g| genllava::shapes::caption(&g)).unwrap_or_default();
                let want = genllava::shapes::caption(&s.images[1].scene);
                eprintln!("miss: \"{instruction}\" wants \"{want}\", drew \"{got}\"");
            }
            for key in [s.category.clone(), format!("{} shapes", s.images[0].scene.shapes.len())] {
                let e = by.entry(key).or_default();
                e.0 += usize::from(ok);
                e.1 += 1;
            }
            if let Some(dir) = &args.images {
                let img = dataset::ImageOut {
                    file: String::new(),
                    scene: s.images[1].scene.clone(),
                    rgb: rgb.clone(),
                    size: side,
                };
                std::fs::write(dir.join(format!("{:04}.png", chunk_index * BATCH + j)), super::data::png(&img)?)?;
            }
        }
    }
    let n = samples.len().max(1);
    println!(
        "{} {:?} edits, {} DDIM steps, guidance {} / image {}: exact {:.1} % ({exact}/{n}); {:.1} s",
        n,
        args.split,
        args.steps,
        args.guidance,
        args.image_guidance,
        100.0 * exact as f64 / n as f64,
        start.elapsed().as_secs_f64()
    );
    let rows: Vec<String> = by
        .iter()
        .map(|(k, (ok, n))| format!("{k}: {:.1} % ({ok}/{n})", 100.0 * *ok as f64 / (*n).max(1) as f64))
        .collect();
    println!("exact by kind and by shapes in the source: {}", rows.join(", "));
    Ok(())
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let device = Device::flex();
    let sd = load(&args.sd, &device)?;
    let side = sd.vae_config.sample_size;
    let world = DatasetConfig { seed: args.seed, image_size: side, textured: false, ..DatasetConfig::default() };
    let split = match args.split {
        EvalSplit::Test => Split::Test,
        EvalSplit::Novel => Split::Novel,
    };
    if let Some(dir) = &args.images {
        std::fs::create_dir_all(dir)?;
    }
    if args.edits {
        return run_edits(&args, &sd, &world, split, &device);
    }
    let captions: Vec<String> =
        (0..args.n).map(|i| super::text::caption_of(&dataset::generation(&world, split, i))).collect();
    let mut rng = SplitMix64::derive(args.seed, &[0xE7A1]);
    let start = Instant::now();
    let (mut exact, mut total) = (0usize, SceneMatch::default());
    // Exact pictures and captions by how many shapes the caption names.
    let mut by_shapes = std::collections::BTreeMap::<usize, (usize, usize)>::new();
    for (chunk_index, chunk) in captions.chunks(BATCH).enumerate() {
        let images = generate(&sd, chunk, args.steps, args.guidance, &mut rng, &device)?;
        for (j, (caption, rgb)) in chunk.iter().zip(&images.rgb).enumerate() {
            let want = parse_caption(caption)?;
            let got = parse_image(rgb, side, side).unwrap_or_default();
            let m = SceneMatch::of(&got, &want);
            let ok = genllava::shapes::score_generation(rgb, side, side, caption);
            exact += usize::from(ok);
            let entry = by_shapes.entry(want.shapes.len()).or_default();
            entry.0 += usize::from(ok);
            entry.1 += 1;
            total.wanted += m.wanted;
            total.placed += m.placed;
            total.kinds += m.kinds;
            total.colours += m.colours;
            total.sizes += m.sizes;
            total.extra += m.extra;
            if let Some(dir) = &args.images {
                let img = dataset::ImageOut { file: String::new(), scene: want, rgb: rgb.clone(), size: side };
                let name = format!("{:04}.png", chunk_index * BATCH + j);
                std::fs::write(dir.join(name), super::data::png(&img)?)?;
            }
        }
    }
    let n = captions.len().max(1);
    let pct = |k: usize| 100.0 * k as f64 / total.wanted.max(1) as f64;
    println!(
        "{} {:?} captions, {} DDIM steps, guidance {}: exact {:.1} % ({exact}/{n}); of {} wanted shapes: placed {:.1} %, kind {:.1} %, colour {:.1} %, size {:.1} %; {} extra shapes; {:.1} s",
        n,
        args.split,
        args.steps,
        args.guidance,
        100.0 * exact as f64 / n as f64,
        total.wanted,
        pct(total.placed),
        pct(total.kinds),
        pct(total.colours),
        pct(total.sizes),
        total.extra,
        start.elapsed().as_secs_f64()
    );
    let rows: Vec<String> = by_shapes
        .iter()
        .map(|(k, (ok, n))| format!("{k}: {:.1} % ({ok}/{n})", 100.0 * *ok as f64 / (*n).max(1) as f64))
        .collect();
    println!("exact by shapes in the caption: {}", rows.join(", "));
    Ok(())
}
