"""Writes tiny random LLaVA checkpoints with the real transformers classes and
records their outputs, for the Rust parity tests (tests/tests/llava.rs).

    /root/.cache/pyref/bin/python tests/reference/llava.py [NAME ...]   # all, or the named ones

Fixtures (tests/fixtures/):
  llava-tiny/         current key layout (model.language_model.*), Mistral text
                      model with GQA and a sliding window, SigLIP tower, one file.
  llava-tiny-legacy/  legacy key layout (language_model.model.*), Llama text model,
                      "default" feature selection, sharded with an index.
  llava-tiny-layers/  as llava-tiny, reading two vision layers (vision_feature_layer
                      [-4, -2]: patch embeddings and layer 2, concatenated per token).
Each holds config.json, tokenizer.json, preprocessor_config.json, weights and
reference.safetensors (input ids, pixel values, logits, greedy ids, log-probs).
"""
import json
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers, processors
from transformers import (
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    MistralConfig,
    PreTrainedTokenizerFast,
    SiglipImageProcessor,
    SiglipVisionConfig,
)

HERE = os.path.dirname(os.path.abspath(__file__))
FIX = os.path.join(HERE, "..", "fixtures")
CORPUS = [
    "USER: What colour is the circle? ASSISTANT: red",
    "USER: How many shapes are there? ASSISTANT: three",
    "a large blue square at the top left and a small green triangle in the center",
    "Describe the image. There is a purple circle at the bottom right.",
    "yes no one two three left right top bottom center yellow orange",
] * 4
SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]


def make_tokenizer():
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=160, special_tokens=SPECIALS, show_progress=False)
    tok.train_from_iterator(CORPUS, trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)])
    return tok


def image():
    """A deterministic 32x32 RGB test picture: a gradient with a red square."""
    y, x = np.mgrid[0:32, 0:32]
    a = np.stack([x * 8, y * 8, (x + y) * 4], -1).astype(np.uint8)
    a[8:20, 10:22] = [220, 30, 40]
    return Image.fromarray(a)


def build(name, text_cfg, strategy, layer, legacy):
    torch.manual_seed(0)
    out = os.path.join(FIX, name)
    shutil.rmtree(out, ignore_errors=True)
    tok = make_tokenizer()
    vocab = tok.get_vocab_size()
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                num_attention_heads=4, image_size=32, patch_size=8)
    text_cfg.vocab_size = vocab
    text_cfg.bos_token_id = tok.token_to_id("<s>")
    text_cfg.eos_token_id = tok.token_to_id("</s>")
    cfg = LlavaConfig(vision_config=vision, text_config=text_cfg, image_token_index=tok.token_to_id("<image>"),
                      vision_feature_select_strategy=strategy, vision_feature_layer=layer,
                      image_seq_length=16 if strategy == "full" else 15)
    model = LlavaForConditionalGeneration(cfg).eval()
    with torch.no_grad():  # make the random model less flat so greedy decoding is decisive
        for p in model.parameters():
            p.mul_(3.0)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>")
    fast.add_special_tokens({"additional_special_tokens": ["<image>"]})
    proc = LlavaProcessor(image_processor=SiglipImageProcessor(size={"height": 32, "width": 32}),
                          tokenizer=fast, patch_size=8, vision_feature_select_strategy=strategy,
                          image_token="<image>", num_additional_image_tokens=0)
    model.save_pretrained(out, max_shard_size="150KB" if legacy else "50MB")
    proc.save_pretrained(out)
    tok.save(os.path.join(out, "tokenizer.json"))
    image().save(os.path.join(out, "image.png"))
    relayout(out, "legacy" if legacy else "current")
    reloaded = LlavaForConditionalGeneration.from_pretrained(out).eval()
    for (k, a), b in zip(model.state_dict().items(), reloaded.state_dict().values()):
        assert torch.equal(a, b), f"{k} did not survive the relayout"
    model = reloaded

    prompt = "USER: <image>\nWhat colour is the circle? ASSISTANT:"
    enc = proc(text=prompt, images=image(), return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
        gen = model.generate(**enc, max_new_tokens=8, do_sample=False, output_logits=True,
                             return_dict_in_generate=True)
    new = gen.sequences[0, enc["input_ids"].shape[1]:]
    lp = torch.stack([torch.log_softmax(l[0].float(), -1) for l in gen.logits])
    top = lp.topk(5, -1)
    save_file({
        "input_ids": enc["input_ids"].to(torch.int64).contiguous(),
        "pixel_values": enc["pixel_values"].float().contiguous(),
        "logits": logits.float().contiguous(),
        "greedy_ids": new.to(torch.int64).contiguous(),
        "greedy_logprobs": lp.gather(1, new[:, None])[:, 0].contiguous(),
        "top5_ids": top.indices.to(torch.int64).contiguous(),
        "top5_logprobs": top.values.contiguous(),
    }, os.path.join(out, "reference.safetensors"))
    with open(os.path.join(out, "prompt.txt"), "w") as f:
        f.write(prompt)
    print(name, "ids", enc["input_ids"].shape, "greedy", new.tolist())


# transformers 5 writes `language_model.model.*`, `language_model.lm_head.*`,
# `vision_tower.*` (no `vision_model.`), `multi_modal_projector.*`. Checkpoints in the
# wild come in two layouts; rewrite into the one asked for. Both load back into
# transformers (the reference outputs are computed from the reloaded model).
LAYOUTS = {
    "current": [("language_model.model.", "model.language_model."), ("language_model.lm_head.", "lm_head."),
                ("vision_tower.", "model.vision_tower.vision_model."),
                ("multi_modal_projector.", "model.multi_modal_projector.")],
    "legacy": [("vision_tower.", "vision_tower.vision_model.")],
}


def relayout(out, layout):
    def rename(k):
        for a, b in LAYOUTS[layout]:
            if k.startswith(a):
                return b + k[len(a):]
        return k

    idx_path = os.path.join(out, "model.safetensors.index.json")
    if os.path.exists(idx_path):
        with open(idx_path) as f:
            idx = json.load(f)
        shards = sorted(set(idx["weight_map"].values()))
    else:
        idx, shards = None, ["model.safetensors"]
    for shard in shards:
        p = os.path.join(out, shard)
        save_file({rename(k): v for k, v in load_file(p).items()}, p, metadata={"format": "pt"})
    if idx:
        idx["weight_map"] = {rename(k): v for k, v in idx["weight_map"].items()}
        with open(idx_path, "w") as f:
            json.dump(idx, f, indent=2)


if __name__ == "__main__":
    # Build every fixture, or only those named on the command line.
    wanted = set(sys.argv[1:])
    mistral = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                   num_key_value_heads=2, sliding_window=12, max_position_embeddings=128, rope_theta=10000.0)
    fixtures = {
        "llava-tiny": lambda: build("llava-tiny", MistralConfig(**mistral), "full", -2, legacy=False),
        "llava-tiny-legacy": lambda: build(
            "llava-tiny-legacy",
            LlamaConfig(hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                        num_key_value_heads=4, max_position_embeddings=128, rope_theta=500000.0),
            "default", -2, legacy=True),
        # Several vision layers side by side (the patch embeddings and the second layer's
        # states, concatenated per token before the projector), as the main job reads them.
        "llava-tiny-layers": lambda: build("llava-tiny-layers", MistralConfig(**mistral), "full", [-4, -2],
                                           legacy=False),
    }
    unknown = wanted - set(fixtures)
    if unknown:
        sys.exit(f"unknown fixture(s): {sorted(unknown)}; known: {sorted(fixtures)}")
    for name, make in fixtures.items():
        if not wanted or name in wanted:
            make()
