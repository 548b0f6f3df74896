//! Parity of the schedulers and denoising loops with diffusers
//! (tests/reference/schedulers.py).

use burn::tensor::Tensor;
use genllava::diffusion::{denoise, denoise_over, denoise_pix2pix, initial_latents};
use genllava::safetensors::RawTensor;
use genllava::scheduler::{
    NoiseSource, Scheduler, SchedulerConfig, SchedulerKind, img2img_timesteps,
};
use genllava_tests::{assert_close, cpu, load, rel_err, tensor};
use std::collections::BTreeMap;

const TOL: f32 = 1e-4;
const KINDS: [(&str, SchedulerKind); 4] = [
    ("pndm", SchedulerKind::Pndm),
    ("ddim", SchedulerKind::Ddim),
    ("euler", SchedulerKind::Euler),
    ("euler_a", SchedulerKind::EulerAncestral),
];

type Refs = BTreeMap<String, RawTensor>;

fn refs() -> Refs {
    load("schedulers/reference.safetensors")
}

fn config() -> SchedulerConfig {
    let json = std::fs::read_to_string(genllava_tests::fixture("schedulers/scheduler_config.json"))
        .expect("config");
    SchedulerConfig::from_json(&json).expect("parse")
}

/// The stored ancestral noise, handed out in order like the patched `randn_tensor`.
fn noise_source(refs: &Refs) -> NoiseSource {
    let all: Tensor<5> = tensor(refs, "anc_noise", &cpu());
    let mut k = 0;
    Box::new(move |shape, _device| {
        let z = all.clone().narrow(0, k, 1).reshape(shape);
        k += 1;
        z
    })
}

fn build(refs: &Refs, kind: SchedulerKind, steps: usize) -> Box<dyn Scheduler> {
    kind.build(&config(), steps, Some(noise_source(refs)))
        .expect("build")
}

/// The fixed "model" of the reference: `base (i + 1) 0.1 + 0.2 scale(x, t)`.
fn run(s: &mut dyn Scheduler, refs: &Refs, timesteps: &[f64], mut x: Tensor<4>) -> Vec<f32> {
    let base: Tensor<4> = tensor(refs, "base", &cpu());
    let mut out = Vec::new();
    for (i, &t) in timesteps.iter().enumerate() {
        let scaled = s.scale_model_input(x.clone(), t).expect("scale");
        let mo = base
            .clone()
            .mul_scalar((i + 1) as f32 * 0.1)
            .add(scaled.mul_scalar(0.2));
        x = s.step(mo, t, x).expect("step");
        out.extend(
            x.clone()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32"),
        );
    }
    out
}

fn assert_timesteps(what: &str, actual: &[f64], expected: &RawTensor) {
    let e: Vec<f64> = expected.to_f32().into_iter().map(f64::from).collect();
    assert_eq!(actual.len(), e.len(), "{what}: count {actual:?} vs {e:?}");
    for (a, b) in actual.iter().zip(&e) {
        assert!((a - b).abs() < 1e-3, "{what}: {actual:?} vs {e:?}");
    }
}

#[test]
fn timesteps_and_steps_match_diffusers() {
    let refs = refs();
    for (name, kind) in KINDS {
        for n in [6, 10] {
            let key = format!("{name}.n{n}");
            let mut s = build(&refs, kind, n);
            assert_timesteps(&key, s.timesteps(), &refs[&format!("{key}.timesteps")]);
            let sigma = refs[&format!("{key}.init_noise_sigma")].to_f32()[0];
            assert!(
                (s.init_noise_sigma() - sigma).abs() <= 1e-5 * sigma,
                "{key}: init_noise_sigma"
            );
            let ts = s.timesteps().to_vec();
            let got = run(s.as_mut(), &refs, &ts, tensor(&refs, "sample", &cpu()));
            let err = rel_err(&got, &refs[&format!("{key}.steps")].to_f32());
            assert!(err <= TOL, "{key}: step outputs relative error {err:e}");
        }
    }
}

#[test]
fn img2img_truncates_and_noises_like_diffusers() {
    let refs = refs();
    for (name, kind) in KINDS {
        let mut s = build(&refs, kind, 10);
        let ts = img2img_timesteps(s.as_mut(), 10, 0.6).expect("strength");
        assert_timesteps(name, &ts, &refs[&format!("{name}.img2img.timesteps")]);
        let x = s
            .add_noise(
                tensor(&refs, "init", &cpu()),
                tensor(&refs, "noise", &cpu()),
                ts[0],
            )
            .expect("add_noise");
        assert_close(
            &format!("{name} noised"),
            x.clone(),
            &refs[&format!("{name}.img2img.noised")],
            TOL,
        );
        let got = run(s.as_mut(), &refs, &ts, x);
        let err = rel_err(&got, &refs[&format!("{name}.img2img.steps")].to_f32());
        assert!(err <= TOL, "{name} img2img: relative error {err:e}");
    }
}

/// The reference's fake predictor: `0.1 x[k] + t / 1000 offset[k]`, the
/// conditional offset alone without CFG.
fn fake_eps(offset: &Tensor<4>, x: Tensor<4>, t: f64) -> Tensor<4> {
    let off = if x.dims()[0] == 2 {
        offset.clone()
    } else {
        offset.clone().narrow(0, 1, 1)
    };
    x.mul_scalar(0.1).add(off.mul_scalar((t / 1000.0) as f32))
}

#[test]
fn cfg_loop_matches_stable_diffusion_pipeline() {
    let refs = refs();
    let offset: Tensor<4> = tensor(&refs, "offset", &cpu());
    let cases = KINDS
        .iter()
        .map(|&(n, k)| (n, k, 5.0, format!("cfg.{n}.g5")))
        .chain([("pndm", SchedulerKind::Pndm, 1.0, "cfg.pndm.g1".to_string())]);
    for (name, kind, guidance, key) in cases {
        let mut s = build(&refs, kind, 10);
        let latents = initial_latents(s.as_ref(), tensor(&refs, "noise", &cpu()));
        let mut seen = 0;
        let out = denoise(
            s.as_mut(),
            latents,
            guidance,
            |x, t| {
                assert_eq!(
                    x.dims()[0],
                    if guidance > 1.0 { 2 } else { 1 },
                    "{name}: CFG batch"
                );
                Ok(fake_eps(&offset, x, t))
            },
            |i, _| seen = i + 1,
        )
        .expect("denoise");
        assert_eq!(seen, s.timesteps().len(), "{key}: on_step calls");
        assert_close(&key, out, &refs[&key], TOL);
    }
}

#[test]
fn pix2pix_loop_matches_instruct_pix2pix_pipeline() {
    let refs = refs();
    let offset3: Tensor<4> = tensor(&refs, "offset3", &cpu());
    for (name, kind) in [
        ("euler", SchedulerKind::Euler),
        ("euler_a", SchedulerKind::EulerAncestral),
    ] {
        let mut s = build(&refs, kind, 6);
        let latents = initial_latents(s.as_ref(), tensor(&refs, "noise", &cpu()));
        let out = denoise_pix2pix(
            s.as_mut(),
            latents,
            tensor(&refs, "image_latents", &cpu()),
            7.5,
            1.5,
            |x, t| {
                let k = x.dims()[0];
                let eps = x
                    .clone()
                    .narrow(1, 0, 4)
                    .mul_scalar(0.1)
                    .add(x.narrow(1, 4, 4).mul_scalar(0.05));
                Ok(eps.add(
                    offset3
                        .clone()
                        .narrow(0, 0, k)
                        .mul_scalar((t / 1000.0) as f32),
                ))
            },
            |_, _| {},
        )
        .expect("pix2pix");
        assert_close(
            &format!("pix2pix.{name}"),
            out,
            &refs[&format!("pix2pix.{name}")],
            TOL,
        );
    }
}

#[test]
fn denoise_over_rejects_wrong_batch() {
    let refs = refs();
    let mut s = build(&refs, SchedulerKind::Ddim, 6);
    let ts = s.timesteps().to_vec();
    let x: Tensor<4> = tensor(&refs, "noise", &cpu());
    let r = denoise_over(
        s.as_mut(),
        &ts,
        x,
        5.0,
        |x, _| Ok(x.narrow(0, 0, 1)),
        |_, _| {},
    );
    assert!(r.is_err());
}
