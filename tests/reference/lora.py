"""Writes a PEFT LoRA adapter for the llava-tiny fixture with the real `peft`
classes and records the adapted model's logits, for the Rust parity test
(tests/tests/lora.rs).

    /root/.cache/pyref/bin/pip install peft
    /root/.cache/pyref/bin/python tests/reference/lora.py

Fixture (tests/fixtures/llava-tiny-lora/): adapter_config.json and
adapter_model.safetensors as `PeftModel.save_pretrained` writes them (rank 4,
alpha 8, on every projection of the language model's layers, both factors
random so that every one of them matters), and reference.safetensors: the
logits of the adapted model on llava-tiny's own test input, and those of the
merged model (`merge_and_unload`), which must agree.
"""
import json
import os
import shutil

import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import LlavaForConditionalGeneration

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures")


def main():
    torch.manual_seed(0)
    base_dir = os.path.join(FIX, "llava-tiny")
    out = os.path.join(FIX, "llava-tiny-lora")
    shutil.rmtree(out, ignore_errors=True)
    model = LlavaForConditionalGeneration.from_pretrained(base_dir).eval()
    cfg = LoraConfig(
        r=4,
        lora_alpha=8,
        lora_dropout=0.0,
        bias="none",
        # LLaVA's recipe: the language model only, never the vision tower's own q/k/v.
        target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)",
    )
    peft_model = get_peft_model(model, cfg).eval()
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn_like(p) * 0.1)
    peft_model.save_pretrained(out)
    os.remove(os.path.join(out, "README.md"))  # PEFT's model-card template
    with open(os.path.join(out, "adapter_config.json")) as f:
        adapter = json.load(f)
    adapter["base_model_name_or_path"] = "../llava-tiny"
    with open(os.path.join(out, "adapter_config.json"), "w") as f:
        json.dump(adapter, f, indent=2, sort_keys=True)

    refs = load_file(os.path.join(base_dir, "reference.safetensors"))
    ids = refs["input_ids"]
    pixels = refs["pixel_values"]
    with torch.no_grad():
        adapted = peft_model(input_ids=ids, pixel_values=pixels).logits
        merged_model = peft_model.merge_and_unload().eval()
        merged = merged_model(input_ids=ids, pixel_values=pixels).logits
    assert torch.allclose(adapted, merged, atol=1e-4), (adapted - merged).abs().max()
    plain = refs["logits"]
    assert (adapted - plain).abs().max() > 0.1, "the adapter should change the logits"
    save_file({"input_ids": ids.contiguous(), "pixel_values": pixels.contiguous(),
               "logits": adapted.float().contiguous(), "merged_logits": merged.float().contiguous()},
              os.path.join(out, "reference.safetensors"))
    keys = sorted(load_file(os.path.join(out, "adapter_model.safetensors")))
    print(len(keys), "adapter tensors, e.g.", keys[:2], "max change", (adapted - plain).abs().max().item())


if __name__ == "__main__":
    main()
