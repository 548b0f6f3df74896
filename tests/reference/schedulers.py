"""Reference outputs of diffusers' schedulers and SD denoising loops.

Writes tests/fixtures/schedulers/reference.safetensors. Schedulers are built
as a pipeline does: PNDM from SD v1.4's scheduler_config.json, the others via
`from_config(pndm.config)`. The "model" is a fixed function both languages
compute: step i of a scheduler run returns
    base * (i + 1) * 0.1 + 0.2 * scale_model_input(sample, t).
The CFG loops use a fake linear predictor:
    eps[k] = 0.1 * x[k] + (t / 1000) * offset[k]     (k = batch entry)
and for InstructPix2Pix 0.1 * x[k, :4] + 0.05 * x[k, 4:] + (t / 1000) * offset3[k].
Euler-ancestral noise is taken from the stored `anc_noise` tensors in order.
"""

import json
import pathlib

import torch
from diffusers import (
    DDIMScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
)
from diffusers.schedulers import scheduling_euler_ancestral_discrete as anc_mod
from safetensors.torch import save_file

OUT = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "schedulers"
torch.manual_seed(0)
SHAPE = (1, 4, 8, 8)
sample0 = torch.randn(SHAPE)
base = torch.randn(SHAPE)
init = torch.randn(SHAPE)  # img2img clean latents
noise = torch.randn(SHAPE)
offset = torch.randn(2, 4, 8, 8)
offset3 = torch.randn(3, 4, 8, 8)
image_latents = torch.randn(SHAPE)
anc_noise = torch.randn(16, *SHAPE)

refs = {
    "sample": sample0,
    "base": base,
    "init": init,
    "noise": noise,
    "offset": offset,
    "offset3": offset3,
    "image_latents": image_latents,
    "anc_noise": anc_noise,
}

noise_calls = [0]


def fake_randn(shape, generator=None, device=None, dtype=None, layout=None):
    k = noise_calls[0]
    noise_calls[0] += 1
    return anc_noise[k].reshape(shape).to(dtype or torch.float32)


anc_mod.randn_tensor = fake_randn

cfg = json.loads((OUT / "scheduler_config.json").read_text())
pndm_cfg = PNDMScheduler.from_config(cfg).config
CLASSES = {
    "pndm": PNDMScheduler,
    "ddim": DDIMScheduler,
    "euler": EulerDiscreteScheduler,
    "euler_a": EulerAncestralDiscreteScheduler,
}


def make(name, n):
    s = CLASSES[name].from_config(pndm_cfg)
    s.set_timesteps(n)
    noise_calls[0] = 0
    return s


def model(i, x, s, t):
    return base * (i + 1) * 0.1 + 0.2 * s.scale_model_input(x, t)


def run(s, timesteps, x):
    outs = []
    for i, t in enumerate(timesteps):
        x = s.step(model(i, x, s, t), t, x).prev_sample
        outs.append(x)
    return torch.stack(outs)


for name in CLASSES:
    for n in (6, 10):
        s = make(name, n)
        key = f"{name}.n{n}"
        refs[f"{key}.timesteps"] = s.timesteps.to(torch.float64)
        refs[f"{key}.init_noise_sigma"] = torch.tensor([float(s.init_noise_sigma)])
        refs[f"{key}.steps"] = run(s, s.timesteps, sample0.clone())

    # img2img as StableDiffusionImg2ImgPipeline.get_timesteps, strength 0.6, 10 steps.
    s = make(name, 10)
    init_t = min(int(10 * 0.6), 10)
    t_start = max(10 - init_t, 0)
    ts = s.timesteps[t_start * s.order :]
    if hasattr(s, "set_begin_index"):
        s.set_begin_index(t_start * s.order)
    x = s.add_noise(init, noise, ts[:1])
    refs[f"{name}.img2img.timesteps"] = ts.to(torch.float64)
    refs[f"{name}.img2img.noised"] = x
    refs[f"{name}.img2img.steps"] = run(s, ts, x)


def fake_eps(x, t):
    """Batch [uncond; cond] with CFG, the conditional entry alone without."""
    off = offset if x.shape[0] == 2 else offset[1:2]
    return 0.1 * x + (float(t) / 1000.0) * off


def sd_loop(s, guidance):
    """StableDiffusionPipeline.__call__'s denoising loop."""
    latents = noise * s.init_noise_sigma
    do_cfg = guidance > 1
    for t in s.timesteps:
        latent_model_input = torch.cat([latents] * 2) if do_cfg else latents
        latent_model_input = s.scale_model_input(latent_model_input, t)
        noise_pred = fake_eps(latent_model_input, t)
        if do_cfg:
            noise_pred_uncond, noise_pred_text = noise_pred.chunk(2)
            noise_pred = noise_pred_uncond + guidance * (noise_pred_text - noise_pred_uncond)
        latents = s.step(noise_pred, t, latents).prev_sample
    return latents


for name in CLASSES:
    refs[f"cfg.{name}.g5"] = sd_loop(make(name, 10), 5.0)
refs["cfg.pndm.g1"] = sd_loop(make("pndm", 10), 1.0)


def pix2pix_loop(s, text_g, image_g):
    """StableDiffusionInstructPix2PixPipeline.__call__'s denoising loop."""
    latents = noise * s.init_noise_sigma
    do_cfg = text_g > 1.0 and image_g >= 1.0
    img = torch.cat([image_latents, image_latents, torch.zeros_like(image_latents)]) if do_cfg else image_latents
    for t in s.timesteps:
        latent_model_input = torch.cat([latents] * 3) if do_cfg else latents
        scaled = s.scale_model_input(latent_model_input, t)
        scaled = torch.cat([scaled, img], dim=1)
        k = scaled.shape[0]
        noise_pred = 0.1 * scaled[:, :4] + 0.05 * scaled[:, 4:] + (float(t) / 1000.0) * offset3[:k]
        if do_cfg:
            text, image, uncond = noise_pred.chunk(3)
            noise_pred = uncond + text_g * (text - image) + image_g * (image - uncond)
        latents = s.step(noise_pred, t, latents).prev_sample
    return latents


refs["pix2pix.euler"] = pix2pix_loop(make("euler", 6), 7.5, 1.5)
refs["pix2pix.euler_a"] = pix2pix_loop(make("euler_a", 6), 7.5, 1.5)

refs = {k: v.contiguous() for k, v in refs.items()}
save_file({k: (v if v.dtype == torch.float64 else v.float()) for k, v in refs.items()}, OUT / "reference.safetensors")
print("wrote", OUT / "reference.safetensors", sum(v.numel() for v in refs.values()), "values")
