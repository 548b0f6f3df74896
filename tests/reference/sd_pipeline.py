"""Write the Stable Diffusion pipeline parity fixture tests/fixtures/sd-tiny/.

A tiny random diffusers `StableDiffusionPipeline` in SD v1.x layout, saved with
`save_pretrained`:
  unet/          UNet2DConditionModel, channels (16, 32), cross_attention_dim 32 (stored f16)
  vae/           AutoencoderKL, channels (16, 32), 4 latent channels (stored bf16)
  text_encoder/  CLIPTextModel, hidden 32, 2 layers (stored f32)
  tokenizer/     CLIPTokenizer: a byte-level BPE trained here on a few prompts
                 (vocab.json + merges.txt as SD v1.4 ships them, plus tokenizer.json)
  scheduler/     SD v1.4's PNDMScheduler config
The weights are rounded to their storage dtype before the reference runs, so
the f32 reference uses exactly the stored values.

reference.safetensors holds the prompt's input ids, the CLIP embeddings of the
prompt and of "", the noise, and diffusers' own pipeline outputs for DDIM, PNDM
and Euler (6 steps, guidance 5): final latents and decoded images, plus the
img2img run (DDIM, strength 0.5) with its init latents and noise.

Run: /root/.cache/pyref/bin/python tests/reference/sd_pipeline.py
"""

import json
import shutil
from collections import Counter
from pathlib import Path

import diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_img2img as img2img_mod
import torch
from diffusers import (
    AutoencoderKL,
    DDIMScheduler,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

OUT = Path(__file__).resolve().parent.parent / "fixtures" / "sd-tiny"
PROMPT = "A photo of an astronaut riding a horse on the moon!"
CORPUS = [
    "a photo of an astronaut riding a horse on mars",
    "a painting of a cat on the moon",
    "an oil painting of a horse in a field of flowers",
    "photo of a dog riding a bike",
]
N_MERGES = 60
SD_V14_SCHEDULER = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    set_alpha_to_one=False,
    skip_prk_steps=True,
    steps_offset=1,
    clip_sample=False,
)


def bytes_to_unicode():
    """GPT-2/CLIP's reversible byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def train_bpe():
    """CLIP's vocabulary layout (bytes, bytes + </w>, merges, specials) with
    merges learnt greedily from CORPUS."""
    base = list(bytes_to_unicode().values())
    vocab = base + [b + "</w>" for b in base]
    words = Counter(w for line in CORPUS for w in line.split())
    seqs = {w: list(w[:-1]) + [w[-1] + "</w>"] for w in words}
    merges = []
    for _ in range(N_MERGES):
        pairs = Counter()
        for w, s in seqs.items():
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += words[w]
        if not pairs:
            break
        (a, b), _ = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        merges.append((a, b))
        for w, s in seqs.items():
            out, i = [], 0
            while i < len(s):
                if i + 1 < len(s) and (s[i], s[i + 1]) == (a, b):
                    out.append(a + b)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            seqs[w] = out
    vocab += [a + b for a, b in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(vocab)}, merges


def randomize(module, std):
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("weight") and p.ndim == 1:
                p.copy_(1.0 + std * torch.randn_like(p))
            else:
                p.copy_(std * torch.randn_like(p))


def build():
    vocab, merges = train_bpe()
    tmp = OUT.parent / "sd-tiny-tok"
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (tmp / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    tokenizer = CLIPTokenizer(vocab=str(tmp / "vocab.json"), merges=str(tmp / "merges.txt"), model_max_length=77)
    shutil.rmtree(tmp)

    torch.manual_seed(0)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(vocab),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            bos_token_id=vocab["<|startoftext|>"],
            eos_token_id=vocab["<|endoftext|>"],
            pad_token_id=vocab["<|endoftext|>"],
        )
    ).eval()
    randomize(text_encoder, 0.2)

    unet = UNet2DConditionModel(
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=4,
        cross_attention_dim=32,
        sample_size=8,
    ).eval()
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
    unet = unet.half().float()

    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=16,
    ).eval()
    randomize(vae, 0.1)
    vae = vae.to(torch.bfloat16).float()

    scheduler = PNDMScheduler.from_config(SD_V14_SCHEDULER)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe, vocab, merges


def main():
    pipe, vocab, merges = build()
    ids = pipe.tokenizer(PROMPT, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        cond, uncond = pipe.encode_prompt(PROMPT, "cpu", 1, True, negative_prompt="")
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(7))

    refs = {
        "input_ids": ids.to(torch.int64),
        "cond": cond.contiguous(),
        "uncond": uncond.contiguous(),
        "noise": noise,
    }
    schedulers = {"ddim": DDIMScheduler, "pndm": PNDMScheduler, "euler": EulerDiscreteScheduler}
    with torch.no_grad():
        for name, cls in schedulers.items():
            # From SD v1.4's file, which leaves timestep_spacing to each class
            # (Euler: linspace); save_pretrained would write PNDM's "leading".
            pipe.scheduler = cls.from_config(SD_V14_SCHEDULER)
            def run(output_type):
                return pipe(
                    prompt_embeds=cond.clone(),
                    negative_prompt_embeds=uncond.clone(),
                    latents=noise.clone(),
                    num_inference_steps=6,
                    guidance_scale=5.0,
                    output_type=output_type,
                ).images

            refs[f"{name}_latents"] = run("latent").clone().contiguous()
            refs[f"{name}_image"] = torch.from_numpy(run("np")).permute(0, 3, 1, 2).contiguous()

        # img2img: init latents handed in directly (4 channels are taken as
        # latents) and the noise fixed by patching the pipeline's randn_tensor.
        init = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(8))
        i2i_noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(9))
        img2img_mod.randn_tensor = lambda shape, **kw: i2i_noise.clone()
        i2i = StableDiffusionImg2ImgPipeline(**pipe.components, requires_safety_checker=False)
        i2i.set_progress_bar_config(disable=True)
        i2i.scheduler = DDIMScheduler.from_config(SD_V14_SCHEDULER)
        refs["i2i_init"] = init
        refs["i2i_noise"] = i2i_noise
        refs["i2i_latents"] = i2i(
            prompt_embeds=cond,
            negative_prompt_embeds=uncond,
            image=init,
            strength=0.5,
            num_inference_steps=6,
            guidance_scale=5.0,
            output_type="latent",
        ).images.contiguous()

    pipe.scheduler = PNDMScheduler.from_config(SD_V14_SCHEDULER)
    pipe.unet.half()
    pipe.vae.to(torch.bfloat16)
    if OUT.exists():
        shutil.rmtree(OUT)
    pipe.save_pretrained(OUT, safe_serialization=True)
    tok = OUT / "tokenizer"
    # SD v1.4 ships vocab.json + merges.txt; keep both beside tokenizer.json.
    (tok / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (tok / "merges.txt").write_text("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    # SD v1.4's scheduler_config.json as shipped (no timestep_spacing).
    sched = {"_class_name": "PNDMScheduler", "_diffusers_version": "0.7.0.dev0", **SD_V14_SCHEDULER, "trained_betas": None}
    (OUT / "scheduler" / "scheduler_config.json").write_text(json.dumps(sched, indent=2) + "\n")
    save_file(refs, str(OUT / "reference.safetensors"))
    for k, v in refs.items():
        print(k, tuple(v.shape), float(v.float().abs().max()))


if __name__ == "__main__":
    main()
