"""Reference outputs for the vision tower and image preprocessing parity tests.

Writes tests/fixtures/siglip/:
  siglip/             tiny random SiglipVisionModel (save_pretrained)
  clip/               tiny random CLIPVisionModel (LLaVA-1.5's tower family)
  test.png            a deterministic 40x30 RGB picture (gradients and shapes)
  siglip_preprocessor_config.json, clip_preprocessor_config.json
  reference.safetensors
    pixels                          [2,3,32,32] random input of the towers
    siglip.hidden_states.{0..3}     HF hidden_states (embeddings, after each layer)
    siglip.last_hidden_state        post-layernormed output
    clip.hidden_states.{0..3}, clip.last_hidden_state (not post-normed in CLIP)
    pre.siglip                      SiglipImageProcessorPil on test.png
    pre.clip_pad                    LLaVA expand2square(mean colour) + CLIPImageProcessorPil
    pre.clip                        CLIPImageProcessorPil without padding
    pre.bilinear_up                 SiglipImageProcessorPil, bilinear, upscaling to 48x56
    pre.nearest                     nearest, downscaling to 17x23
    pre.lanczos                     lanczos, widening to 30x52 (one axis only: see resample.rs on
                                    Pillow 13 choosing the pass order when the height shrinks)

Run: /root/.cache/pyref/bin/python tests/reference/siglip.py
"""

import json
import os

import numpy as np
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file
from transformers import CLIPVisionConfig, CLIPVisionModel, SiglipVisionConfig, SiglipVisionModel
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

OUT = os.path.join(os.path.dirname(__file__), "..", "fixtures", "siglip")
os.makedirs(OUT, exist_ok=True)
torch.manual_seed(0)

common = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_channels=3,
    image_size=32,
    patch_size=8,
)
siglip = SiglipVisionModel(SiglipVisionConfig(**common, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6)).eval()
clip = CLIPVisionModel(CLIPVisionConfig(**common, projection_dim=16, hidden_act="quick_gelu", layer_norm_eps=1e-5)).eval()
# Non-trivial norms so that a missing or misplaced layer norm shows.
with torch.no_grad():
    for model in (siglip, clip):
        for name, p in model.named_parameters():
            if "norm" in name or "layrnorm" in name:
                p.add_(0.3 * torch.randn_like(p))
siglip.save_pretrained(os.path.join(OUT, "siglip"), safe_serialization=True)
clip.save_pretrained(os.path.join(OUT, "clip"), safe_serialization=True)

refs = {}
pixels = torch.randn(2, 3, 32, 32)
refs["pixels"] = pixels
with torch.no_grad():
    for name, model in (("siglip", siglip), ("clip", clip)):
        out = model(pixel_values=pixels, output_hidden_states=True)
        for i, h in enumerate(out.hidden_states):
            refs[f"{name}.hidden_states.{i}"] = h
        refs[f"{name}.last_hidden_state"] = out.last_hidden_state

# A deterministic test picture: colour gradients plus a few shapes.
w, h = 40, 30
xs, ys = np.meshgrid(np.arange(w), np.arange(h))
arr = np.stack([xs * 255 // (w - 1), ys * 255 // (h - 1), (xs * 7 + ys * 13) % 256], axis=-1).astype(np.uint8)
img = Image.fromarray(arr, "RGB")
draw = ImageDraw.Draw(img)
draw.rectangle([4, 5, 14, 12], fill=(250, 10, 10))
draw.ellipse([20, 8, 34, 24], fill=(10, 200, 40))
draw.line([0, 29, 39, 0], fill=(255, 255, 255), width=2)
img.save(os.path.join(OUT, "test.png"))
img = Image.open(os.path.join(OUT, "test.png")).convert("RGB")


def expand2square(pil_img, background_color):
    """LLaVA's padding (llava/mm_utils.py)."""
    width, height = pil_img.size
    if width == height:
        return pil_img
    if width > height:
        result = Image.new(pil_img.mode, (width, width), background_color)
        result.paste(pil_img, (0, (width - height) // 2))
        return result
    result = Image.new(pil_img.mode, (height, height), background_color)
    result.paste(pil_img, ((height - width) // 2, 0))
    return result


sig_proc = SiglipImageProcessorPil(size={"height": 32, "width": 32})
clip_proc = CLIPImageProcessorPil(size={"shortest_edge": 24}, crop_size={"height": 20, "width": 22})
up_proc = SiglipImageProcessorPil(size={"height": 48, "width": 56}, resample=2)
near_proc = SiglipImageProcessorPil(size={"height": 17, "width": 23}, resample=0)
lanczos_proc = SiglipImageProcessorPil(size={"height": 30, "width": 52}, resample=1)
sig_proc.save_pretrained(OUT)
os.replace(os.path.join(OUT, "preprocessor_config.json"), os.path.join(OUT, "siglip_preprocessor_config.json"))
clip_proc.save_pretrained(OUT)
os.replace(os.path.join(OUT, "preprocessor_config.json"), os.path.join(OUT, "clip_preprocessor_config.json"))
up_proc.save_pretrained(OUT)
os.replace(os.path.join(OUT, "preprocessor_config.json"), os.path.join(OUT, "bilinear_preprocessor_config.json"))
for name, proc in (("nearest", near_proc), ("lanczos", lanczos_proc)):
    proc.save_pretrained(OUT)
    os.replace(os.path.join(OUT, "preprocessor_config.json"), os.path.join(OUT, f"{name}_preprocessor_config.json"))


def run(proc, image):
    return torch.from_numpy(np.asarray(proc(images=image, return_tensors="np")["pixel_values"])).float()


bg = tuple(int(x * 255) for x in clip_proc.image_mean)
refs["pre.siglip"] = run(sig_proc, img)
refs["pre.clip_pad"] = run(clip_proc, expand2square(img, bg))
refs["pre.clip"] = run(clip_proc, img)
refs["pre.bilinear_up"] = run(up_proc, img)
refs["pre.nearest"] = run(near_proc, img)
refs["pre.lanczos"] = run(lanczos_proc, img)

save_file({k: v.float().clone().contiguous() for k, v in refs.items()}, os.path.join(OUT, "reference.safetensors"))
print(json.dumps({k: list(v.shape) for k, v in refs.items()}))
