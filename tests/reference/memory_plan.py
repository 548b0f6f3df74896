"""Memory plan of the full-size GenLLaVA in the browser: bytes per part and per export mode.

Builds each part with its real Hugging Face / diffusers class on PyTorch's `meta`
device (shapes only, no weights, nothing downloaded), from the published configs of
SigLIP-L/16-384, Mistral-7B-v0.1 and Stable Diffusion v1.4, plus the generation head
of `train-native/configs/full.json`, and counts parameters the way `export-web`
stores them: 2-D matmul weights quantized per block of 32 inputs with one f32 scale
per block (q8: 1 + 4/32 bytes per weight, q4: 0.5 + 4/32), or one f16 scale with
`--scales f16` (q8: 1 + 2/32, q4: 0.5 + 2/32), everything else (embeddings of
positions, norms, biases, convolutions) in f16.

Run: /root/.cache/pyref/bin/python tests/reference/memory_plan.py
Prints the markdown tables of the README's memory plan.
"""

import json
import pathlib
import sys

import torch
from torch import nn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from head import GenHead  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[2]
MB = 1e6


def parts():
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import MistralConfig, MistralForCausalLM, SiglipVisionConfig, SiglipVisionModel

    with torch.device("meta"):
        siglip = SiglipVisionModel(
            SiglipVisionConfig(
                hidden_size=1024,
                intermediate_size=4096,
                # LLaVA reads the penultimate layer: the last of the 24 never runs.
                num_hidden_layers=23,
                num_attention_heads=16,
                image_size=384,
                patch_size=16,
                vision_use_head=False,
            )
        )
        projector = nn.Sequential(nn.Linear(1024, 4096), nn.GELU(), nn.Linear(4096, 4096))
        mistral = MistralForCausalLM(MistralConfig())  # the defaults are Mistral-7B-v0.1
        full = json.loads((ROOT / "train-native/configs/full.json").read_text())["model"]["head"]
        head = GenHead(dict(d_llm=4096, num_queries=77, out_dim=768, num_img_tokens=16, **full))
        unet = UNet2DConditionModel(
            sample_size=64,
            cross_attention_dim=768,
            attention_head_dim=8,
            block_out_channels=(320, 640, 1280, 1280),
        )
        vae = AutoencoderKL(
            block_out_channels=(128, 256, 512, 512),
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            layers_per_block=2,
            latent_channels=4,
            sample_size=512,
        )
    return [
        ("SigLIP-L/16-384 (23 of 24 layers)", siglip),
        ("projector (2-layer MLP)", projector),
        ("Mistral-7B", mistral),
        ("generation head", head),
        ("SD-1.4 UNet", unet),
        ("SD-1.4 VAE encoder", (vae.encoder, vae.quant_conv)),
        ("SD-1.4 VAE decoder", (vae.decoder, vae.post_quant_conv)),
    ]


def counts(module):
    """(parameters in 2-D matmul weights, all other parameters)."""
    mods = module if isinstance(module, tuple) else (module,)
    mat = other = 0
    for m in mods:
        for name, p in m.named_parameters():
            if p.dim() == 2 and "position" not in name and "queries" not in name:
                mat += p.numel()
            else:
                other += p.numel()
    return mat, other


def size(mat, other, mode):
    per = {
        "f32": 4.0,
        "f16": 2.0,
        "q8": 1.0 + 4 / 32,
        "q4": 0.5 + 4 / 32,
        "q8h": 1.0 + 2 / 32,
        "q4h": 0.5 + 2 / 32,
    }[mode]
    rest = 4.0 if mode == "f32" else 2.0
    return mat * per + other * rest


def main():
    rows = []
    for name, m in parts():
        mat, other = counts(m)
        rows.append((name, mat, other))
    modes = ("f16", "q8", "q4", "q8h", "q4h")
    print("| part | parameters | of which matmul | f16 MB | q8 MB | q4 MB | q8, f16 scales | q4, f16 scales |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    total = {k: 0.0 for k in modes}
    for name, mat, other in rows:
        s = {k: size(mat, other, k) for k in total}
        for k in total:
            total[k] += s[k]
        mbs = " | ".join(f"{s[k] / MB:.0f}" for k in modes)
        print(f"| {name} | {(mat + other) / 1e6:.1f} M | {mat / 1e6:.1f} M | {mbs} |")
    n = sum(m + o for _, m, o in rows)
    print(f"| all | {n / 1e6:.1f} M | | " + " | ".join(f"{total[k] / MB:.0f}" for k in modes) + " |")

    # Transient buffers, f32, the largest live at once per task.
    kv_per_token = 32 * 2 * 8 * 128 * 4  # layers × (k, v) × kv heads × head dim × f32
    print()
    print(f"KV cache: {kv_per_token / 1e3:.0f} kB per token (f32); 2048 tokens: {2048 * kv_per_token / MB:.0f} MB")
    prefill = 576 + 200
    mlp = prefill * 14336 * 4 * 2
    scores = 32 * prefill * prefill * 4
    print(f"prefill of {prefill} tokens: MLP gate+up {mlp / MB:.0f} MB, attention scores {scores / MB:.0f} MB")
    for side in (32, 64):
        tokens = side * side
        full_scores = 2 * 8 * tokens * tokens * 4  # CFG batch 2 × 8 heads
        print(f"UNet {side}×{side} latents: self-attention scores materialised {full_scores / MB:.0f} MB; tiled: 0")
    vae_act = 128 * 512 * 512 * 4
    print(f"VAE decoder at 512 px: one 128-channel activation {vae_act / MB:.0f} MB")


if __name__ == "__main__":
    main()
