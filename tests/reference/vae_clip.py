"""Reference outputs for the Stable Diffusion VAE (AutoencoderKL) and the CLIP
text encoder, from tiny random models of the real diffusers/transformers classes.

Writes tests/fixtures/vae-tiny/ and tests/fixtures/clip-text-tiny/ (the
save_pretrained folders plus reference.safetensors of inputs and outputs).
Run: /root/.cache/pyref/bin/python tests/reference/vae_clip.py
"""

from pathlib import Path

import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


def randomize(module, std=0.1):
    """Random weights everywhere, norms included, so every tensor matters."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("weight") and p.ndim == 1:
                p.copy_(1.0 + std * torch.randn_like(p))
            else:
                p.copy_(std * torch.randn_like(p))


def vae():
    torch.manual_seed(0)
    model = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
    ).eval()
    randomize(model)
    out = FIXTURES / "vae-tiny"
    model.save_pretrained(out, safe_serialization=True)

    image = torch.rand(2, 3, 16, 16) * 2 - 1
    latent = torch.randn(1, 4, 8, 8)
    noise = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        dist = model.encode(image).latent_dist
        sample = dist.mean + dist.std * noise
        decoded = model.decode(latent).sample
    save_file(
        {
            "image": image,
            "mean": dist.mean.contiguous(),
            "logvar": dist.logvar.contiguous(),
            "noise": noise,
            "sample": sample.contiguous(),
            "latent": latent,
            "decoded": decoded.contiguous(),
        },
        out / "reference.safetensors",
    )


def clip_text():
    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=1000,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        bos_token_id=998,
        eos_token_id=999,
        pad_token_id=999,
    )
    model = CLIPTextModel(config).eval()
    randomize(model, std=0.2)
    out = FIXTURES / "clip-text-tiny"
    model.save_pretrained(out, safe_serialization=True)

    # Row 0: a prompt padded with eos (SD 1.x pads with eos); row 1: the empty prompt.
    length = 12
    prompt = [998, 17, 402, 33, 765, 999] + [999] * (length - 6)
    empty = [998, 999] + [999] * (length - 2)
    ids = torch.tensor([prompt, empty], dtype=torch.int64)
    with torch.no_grad():
        hidden = model(input_ids=ids).last_hidden_state
    save_file(
        {"input_ids": ids, "last_hidden_state": hidden.contiguous()},
        out / "reference.safetensors",
    )


if __name__ == "__main__":
    vae()
    clip_text()
