"""Parity references for the Mistral/Llama decoder (core/src/llama).

Writes two fixtures with the real transformers classes and tiny random weights:

- tests/fixtures/llama-mistral/: MistralForCausalLM, GQA (4 heads, 2 kv heads),
  sliding_window = 4 so the window cuts into a 10-token prompt, eager attention.
- tests/fixtures/llama-llama/: LlamaForCausalLM, rope_theta 500000, an explicit
  head_dim (16, not hidden/heads = 12), tied input/output embeddings.

Each folder holds the `save_pretrained` output (config.json, model.safetensors)
and reference.safetensors with
- `ids` [2, 10]: two prompts (stored as f32), `logits` [2, 10, vocab]: full forward;
- `greedy` [8]: the greedy continuation of prompt 0 (`generate`, do_sample=False,
  no EOS so all 8 tokens come), `top_ids` / `top_logprobs` [8, 5]: the top-5 of
  log_softmax of the raw logits at each generated step (`output_logits`).

Run: /root/.cache/pyref/bin/python tests/reference/llama.py
"""

import os

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "fixtures")
VOCAB = 100
NEW_TOKENS = 8
TOP = 5


def check_sliding_window_matters(model, ids):
    """Show that HF really applies the window: without it the logits differ."""
    with torch.no_grad():
        windowed = model(ids).logits
        saved = model.config.sliding_window
        model.config.sliding_window = None
        full = model(ids).logits
        model.config.sliding_window = saved
    diff = (windowed - full).abs().max().item()
    assert diff > 1e-3, f"sliding window had no effect ({diff})"
    print(f"  sliding window changes logits by up to {diff:.3e}")


def write(name, model, ids):
    out = os.path.join(FIXTURES, name)
    model.eval()
    # HF stops at EOS; the reference run uses none so all NEW_TOKENS tokens come.
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    model.save_pretrained(out, safe_serialization=True)
    for extra in ("generation_config.json",):
        path = os.path.join(out, extra)
        if os.path.exists(path):
            os.remove(path)
    with torch.no_grad():
        logits = model(ids).logits
        gen = model.generate(
            ids[:1],
            do_sample=False,
            max_new_tokens=NEW_TOKENS,
            min_new_tokens=NEW_TOKENS,
            output_logits=True,
            return_dict_in_generate=True,
        )
    greedy = gen.sequences[0, ids.shape[1]:]
    assert greedy.shape[0] == NEW_TOKENS
    raw = torch.stack([step[0] for step in gen.logits])  # [NEW_TOKENS, vocab]
    logprobs = torch.log_softmax(raw.float(), dim=-1)
    top_lp, top_ids = logprobs.topk(TOP, dim=-1)
    save_file(
        {
            "ids": ids.float().contiguous(),
            "logits": logits.float().contiguous(),
            "greedy": greedy.float().contiguous(),
            "top_ids": top_ids.float().contiguous(),
            "top_logprobs": top_lp.contiguous(),
        },
        os.path.join(out, "reference.safetensors"),
    )
    print(f"{name}: greedy {greedy.tolist()}")


def main():
    torch.manual_seed(0)
    ids = torch.randint(3, VOCAB, (2, 10))

    mistral = MistralForCausalLM(
        MistralConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=64,
            sliding_window=4,
            rms_norm_eps=1e-5,
            bos_token_id=1,
            eos_token_id=2,
            attn_implementation="eager",
        )
    )
    mistral.config._attn_implementation = "eager"
    # Random init is small; scale up so that attention patterns are not uniform.
    with torch.no_grad():
        for p in mistral.parameters():
            if p.dim() > 1:
                p.mul_(8.0)
    check_sliding_window_matters(mistral, ids)
    write("llama-mistral", mistral, ids)

    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=VOCAB,
            hidden_size=48,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            head_dim=16,
            max_position_embeddings=64,
            rope_theta=500000.0,
            rms_norm_eps=1e-6,
            tie_word_embeddings=True,
            bos_token_id=1,
            eos_token_id=[2, 3],
            attn_implementation="eager",
        )
    )
    with torch.no_grad():
        for p in llama.parameters():
            if p.dim() > 1:
                p.mul_(8.0)
    write("llama-llama", llama, ids)


if __name__ == "__main__":
    main()
