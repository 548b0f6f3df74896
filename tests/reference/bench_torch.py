"""PyTorch side of `train-native bench --torch`: times the same models the Rust
side times, with the real transformers / diffusers classes, and prints JSON.

    /root/.cache/pyref/bin/python tests/reference/bench_torch.py SPEC.json

SPEC.json is written by `train-native bench` (train-native/src/bench.rs):
  {"device", "threads", "runs", "prefill": [64, 256], "decode_steps", "unet_batch",
   "context_len", "cases": [{"name", "kind": "llm"|"unet"|"vae", "config",
   "fixture": folder or null, "latent"}]}
Fixture cases load the same weights as the Rust side; the others are randomly
initialised here with their own seed (the weights differ, shapes and FLOPs do not).
Each measurement: one warm-up run, then the median of `runs` timed runs, each
ending with `.item()` so the device has finished.

Output on stdout: {"torch": version, "device", "threads",
  "results": [{"model", "measurement", "seconds"}]}
with the measurement keys of the Rust side (prefill-N, decode-N, unet-step, vae-decode).
"""
import json
import os
import sys
import time

import torch
from safetensors.torch import load_file


def median_of(runs, run):
    """One warm-up, then the median of `runs` calls; `run` returns its own seconds."""
    run()
    times = sorted(run() for _ in range(max(runs, 1)))
    return times[len(times) // 2]


def token_ids(n, vocab):
    """The same deterministic ids as the Rust side."""
    return [(i * 7919 + 13) % vocab for i in range(n)]


def load_llm(case, dev):
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = dict(case["config"])
    model_type = cfg.pop("model_type", "llama")
    config = AutoConfig.for_model(model_type, **cfg)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    if case["fixture"]:
        # The text model of a LLaVA checkpoint (current key layout).
        state = load_file(os.path.join(case["fixture"], "model.safetensors"))
        prefix = "model.language_model."
        text = {("model." + k[len(prefix):]): v for k, v in state.items() if k.startswith(prefix)}
        text.update({k: v for k, v in state.items() if k.startswith("lm_head.")})
        model.load_state_dict(text, strict=True)
    return model.eval().to(dev), config.vocab_size


def bench_llm(case, spec, dev):
    model, vocab = load_llm(case, dev)
    runs = spec["runs"]
    rows = []

    def greedy(logits):
        return logits[:, -1].argmax(-1).item()

    for n in spec["prefill"]:
        ids = torch.tensor([token_ids(n, vocab)], device=dev)

        def prefill():
            t = time.perf_counter()
            out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
            greedy(out.logits)
            return time.perf_counter() - t

        rows.append((f"prefill-{n}", median_of(runs, prefill)))

    prompt = torch.tensor([token_ids(spec["prefill"][0], vocab)], device=dev)
    steps = spec["decode_steps"]

    def decode():
        out = model(input_ids=prompt, use_cache=True, logits_to_keep=1)
        cache, nxt = out.past_key_values, greedy(out.logits)
        t = time.perf_counter()
        for _ in range(steps):
            out = model(input_ids=torch.tensor([[nxt]], device=dev), past_key_values=cache, use_cache=True)
            cache, nxt = out.past_key_values, greedy(out.logits)
        return time.perf_counter() - t

    rows.append((f"decode-{steps}", median_of(runs, decode)))
    return rows


def bench_unet(case, spec, dev):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    if case["fixture"]:
        unet = UNet2DConditionModel.from_pretrained(case["fixture"])
    else:
        unet = UNet2DConditionModel.from_config(case["config"])
    unet = unet.eval().to(dev)
    b, l = spec["unet_batch"], case["latent"]
    sample = torch.randn(b, unet.config.in_channels, l, l, device=dev)
    context = torch.randn(b, spec["context_len"], unet.config.cross_attention_dim, device=dev)

    def step():
        t = time.perf_counter()
        unet(sample, 500, encoder_hidden_states=context).sample.sum().item()
        return time.perf_counter() - t

    return [("unet-step", median_of(spec["runs"], step))]


def bench_vae(case, spec, dev):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    if case["fixture"]:
        vae = AutoencoderKL.from_pretrained(case["fixture"])
    else:
        vae = AutoencoderKL.from_config(case["config"])
    vae = vae.eval().to(dev)
    l = case["latent"]
    z = torch.randn(1, vae.config.latent_channels, l, l, device=dev)

    def decode():
        t = time.perf_counter()
        vae.decode(z).sample.sum().item()
        return time.perf_counter() - t

    return [("vae-decode", median_of(spec["runs"], decode))]


def main():
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    torch.set_num_threads(spec["threads"])
    gpu = spec["device"] in ("cuda", "wgpu") and torch.cuda.is_available()
    dev = torch.device("cuda" if gpu else "cpu")
    kinds = {"llm": bench_llm, "unet": bench_unet, "vae": bench_vae}
    results = []
    with torch.inference_mode():
        for case in spec["cases"]:
            print(f"bench_torch: {case['name']} …", file=sys.stderr, flush=True)
            for key, seconds in kinds[case["kind"]](case, spec, dev):
                results.append({"model": case["name"], "measurement": key, "seconds": seconds})
    out = {"torch": torch.__version__, "device": dev.type, "threads": torch.get_num_threads(), "results": results}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
