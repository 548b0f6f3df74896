//! Parity of the Stable Diffusion pipelines with diffusers' own
//! (tests/reference/sd_pipeline.py): CLIP tokens and prompt embeddings,
//! text-to-image latents and pixels for DDIM, PNDM and Euler, img2img, and
//! loading the weight file layouts diffusers writes.

use burn::tensor::Tensor;
use genllava::checkpoint::MemorySource;
use genllava::safetensors::RawTensor;
use genllava::scheduler::SchedulerKind;
use genllava::sd::pipeline::{Sampling, StableDiffusion};
use genllava::sd::pixels::{encode_png, tensor_to_rgb};
use genllava_tests::{assert_close, cpu, fixture, load, tensor};
use std::collections::BTreeMap;
use std::path::Path;

const EMBED_TOL: f32 = 1e-4;
const LATENT_TOL: f32 = 1e-4;
const PROMPT: &str = "A photo of an astronaut riding a horse on the moon!";

fn refs() -> BTreeMap<String, RawTensor> {
    load("sd-tiny/reference.safetensors")
}

/// Every file of the fixture folder, by relative path.
fn memory() -> MemorySource {
    fn walk(root: &Path, dir: &Path, src: &mut MemorySource) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                walk(root, &path, src);
            } else {
                let rel = path.strip_prefix(root).expect("prefix").to_string_lossy().replace('\\', "/");
                src.files.insert(rel, std::fs::read(&path).expect("read"));
            }
        }
    }
    let root = fixture("sd-tiny");
    let mut src = MemorySource { label: "sd-tiny".into(), ..Default::default() };
    walk(&root, &root, &mut src);
    src
}

fn pipeline() -> StableDiffusion {
    StableDiffusion::load(&memory(), &cpu()).expect("load sd-tiny")
}

#[test]
fn tokenizer_matches_clip_tokenizer_from_both_file_layouts() {
    let r = refs();
    let expected: Vec<u32> = r["input_ids"].to_i64().into_iter().map(|i| i as u32).collect();
    let sd = pipeline();
    assert_eq!(sd.tokenize(PROMPT).unwrap(), expected, "tokenizer.json");

    // SD v1.4 ships only vocab.json + merges.txt.
    let mut src = memory();
    src.files.remove("tokenizer/tokenizer.json");
    let sd = StableDiffusion::load(&src, &cpu()).unwrap();
    assert_eq!(sd.tokenize(PROMPT).unwrap(), expected, "vocab.json + merges.txt");
    let empty = sd.tokenize("").unwrap();
    let tok = sd.tokenizer.as_ref().unwrap();
    assert_eq!(empty.len(), 77);
    assert_eq!(&empty[..3], &[tok.bos, tok.eos, tok.pad]);

    // Over-long prompts are cut before the end token.
    let long = sd.tokenize(&"horse ".repeat(200)).unwrap();
    assert_eq!(long.len(), 77);
    assert_eq!(long[76], tok.eos);
}

#[test]
fn prompt_embeddings_match_diffusers_encode_prompt() {
    let r = refs();
    let sd = pipeline();
    assert_close("cond", sd.encode_prompt(PROMPT).unwrap(), &r["cond"], EMBED_TOL);
    assert_close("uncond", sd.null_embedding().unwrap(), &r["uncond"], EMBED_TOL);
}

#[test]
fn txt2img_latents_and_pixels_match_diffusers() {
    let r = refs();
    let sd = pipeline();
    let device = cpu();
    for (name, kind) in [("ddim", SchedulerKind::Ddim), ("pndm", SchedulerKind::Pndm), ("euler", SchedulerKind::Euler)]
    {
        let mut steps = 0;
        let latents = sd
            .txt2img(
                tensor(&r, "cond", &device),
                tensor(&r, "uncond", &device),
                tensor(&r, "noise", &device),
                Sampling::new(6, kind, 5.0),
                |_, _| steps += 1,
            )
            .unwrap();
        // PLMS visits its first timestep twice (diffusers' PNDM timesteps).
        assert_eq!(steps, if kind == SchedulerKind::Pndm { 7 } else { 6 }, "{name}: on_step calls");
        assert_close(&format!("{name} latents"), latents.clone(), &r[&format!("{name}_latents")], LATENT_TOL);
        let image = sd.decode_latents(latents).unwrap();
        assert_close(&format!("{name} image"), image.clone(), &r[&format!("{name}_image")], 1e-4);
        let rgb = tensor_to_rgb(image).unwrap();
        assert_eq!((rgb[0].width, rgb[0].height), (16, 16));
        assert!(encode_png(&rgb[0]).unwrap().starts_with(b"\x89PNG"));
    }
}

/// img2img of the reference case at strength 0.5: `steps` DDIM steps, guidance 5.
fn img2img_case(sd: &StableDiffusion, r: &BTreeMap<String, RawTensor>, steps: usize) -> Tensor<4> {
    let device = cpu();
    sd.img2img(
        tensor(r, "cond", &device),
        tensor(r, "uncond", &device),
        tensor(r, "i2i_init", &device),
        tensor(r, "i2i_noise", &device),
        0.5,
        Sampling::new(steps, SchedulerKind::Ddim, 5.0),
        |_, _| {},
    )
    .unwrap()
}

#[test]
fn img2img_matches_diffusers() {
    let r = refs();
    assert_close("img2img latents", img2img_case(&pipeline(), &r, 6), &r["i2i_latents"], LATENT_TOL);
}

/// An InstructPix2Pix UNet asked for text-to-image or img2img reads a zero
/// image: whatever weights its image half has, it draws what the plain UNet
/// draws (diffusers has no such pipeline; this is the image-unconditional branch).
#[test]
fn image_conditioned_unet_draws_with_a_zero_image() {
    let r = refs();
    let plain = pipeline();
    let device = cpu();
    let mut wide = plain.clone();
    let [o, c, k, _] = plain.unet.conv_in.weight.dims();
    let image_weight = Tensor::<4>::random([o, c, k, k], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    wide.unet = wide.unet.with_image_input(image_weight).unwrap();
    wide.unet_config.in_channels = 2 * c;
    assert!(wide.image_conditioned() && !plain.image_conditioned());
    let run = |sd: &StableDiffusion| {
        let txt = sd
            .txt2img(
                tensor(&r, "cond", &device),
                tensor(&r, "uncond", &device),
                tensor(&r, "noise", &device),
                Sampling::new(4, SchedulerKind::Ddim, 5.0),
                |_, _| {},
            )
            .unwrap();
        (txt, img2img_case(sd, &r, 4))
    };
    let (txt, i2i) = run(&wide);
    let (want_txt, want_i2i) = run(&plain);
    for (what, got, want) in [("txt2img", txt, want_txt), ("img2img", i2i, want_i2i)] {
        assert_eq!(got.dims(), want.dims(), "{what}: shape");
        let diff: f32 = got.sub(want).abs().max().into_scalar();
        assert!(diff < LATENT_TOL, "{what} with a zero image: max difference {diff}");
    }
    // A wrong-width image weight is refused.
    let bad = Tensor::<4>::zeros([o + 1, c, k, k], &device);
    let err = plain.unet.clone().with_image_input(bad).unwrap_err().to_string();
    assert!(err.contains("image_weight"), "{err}");
}

#[test]
fn loads_fp16_variant_and_sharded_weights() {
    let r = refs();
    let device = cpu();
    let mut src = memory();
    // diffusers' `variant="fp16"` names for the UNet, a two-file index for the VAE.
    let unet = src.files.remove("unet/diffusion_pytorch_model.safetensors").unwrap();
    src.files.insert("unet/diffusion_pytorch_model.fp16.safetensors".into(), unet);
    let vae = src.files.remove("vae/diffusion_pytorch_model.safetensors").unwrap();
    let names = genllava::safetensors::parse("vae", vae.clone()).unwrap();
    let map: serde_json::Map<String, serde_json::Value> =
        names.keys().map(|k| (k.clone(), "diffusion_pytorch_model-00001-of-00001.safetensors".into())).collect();
    src.files.insert("vae/diffusion_pytorch_model-00001-of-00001.safetensors".into(), vae);
    src.files.insert(
        "vae/diffusion_pytorch_model.safetensors.index.json".into(),
        serde_json::to_vec(&serde_json::json!({"metadata": {}, "weight_map": map})).unwrap(),
    );
    let sd = StableDiffusion::load(&src, &device).unwrap();
    let latents = sd
        .txt2img(
            tensor(&r, "cond", &device),
            tensor(&r, "uncond", &device),
            tensor(&r, "noise", &device),
            Sampling::new(6, SchedulerKind::Ddim, 5.0),
            |_, _| {},
        )
        .unwrap();
    assert_close("ddim latents", latents.clone(), &r["ddim_latents"], LATENT_TOL);
    assert_close("ddim image", sd.decode_latents(latents).unwrap(), &r["ddim_image"], 1e-4);
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let r = refs();
    let sd = pipeline();
    let device = cpu();
    let cond: Tensor<3> = tensor(&r, "cond", &device);
    let noise: Tensor<4> = tensor(&r, "noise", &device);
    let narrow = cond.clone().narrow(2, 0, 16);
    let err = sd.txt2img(narrow.clone(), narrow, noise.clone(), Sampling::new(2, SchedulerKind::Ddim, 5.0), |_, _| {});
    assert!(err.unwrap_err().to_string().contains("cond"));
    let wide = Tensor::cat(vec![noise.clone(), noise], 1);
    let err =
        sd.txt2img(cond.clone(), cond.clone(), wide.clone(), Sampling::new(2, SchedulerKind::Ddim, 5.0), |_, _| {});
    assert!(err.unwrap_err().to_string().contains("noise"));
    // This UNet has 4 input channels: no InstructPix2Pix.
    let image = Tensor::<4>::zeros([1, 3, 16, 16], &device);
    let err = sd.pix2pix(cond.clone(), cond, image, wide, Sampling::new(2, SchedulerKind::Ddim, 5.0), |_, _| {});
    assert!(err.unwrap_err().to_string().contains("InstructPix2Pix"));

    let mut src = memory();
    src.files.remove("unet/diffusion_pytorch_model.safetensors");
    let err = StableDiffusion::load(&src, &device).err().expect("no unet weights");
    assert!(err.to_string().contains("unet/diffusion_pytorch_model.safetensors"), "{err}");
}

#[test]
fn text_encoder_and_tokenizer_are_optional() {
    let mut src = memory();
    src.files.retain(|k, _| !k.starts_with("text_encoder/") && !k.starts_with("tokenizer/"));
    let sd = StableDiffusion::load(&src, &cpu()).unwrap();
    assert!(sd.text_encoder.is_none() && sd.tokenizer.is_none());
    assert!(sd.null_embedding().unwrap_err().to_string().contains("no tokenizer"));
}
