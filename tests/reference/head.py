"""Reference of the generation head (MGIE / GILL mapper), tiny sizes.

Writes tests/fixtures/head-tiny/{config.json, model.safetensors, reference.safetensors}.
The module is what the Rust `GenHead` loads: Linear(d_llm -> d_model), a
norm-first nn.Transformer fed with the projected [IMG] states as source and
L learnable queries as target (no masks, no positional encodings), then
Linear(d_model -> out_dim).
"""

import json
import pathlib

import torch
from safetensors.torch import save_file
from torch import nn

OUT = pathlib.Path(__file__).resolve().parent.parent / "fixtures" / "head-tiny"
CFG = dict(d_llm=32, d_model=32, heads=4, enc_layers=2, dec_layers=2, ffn=64, num_queries=7, out_dim=16, num_img_tokens=5)


class GenHead(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.in_proj = nn.Linear(c["d_llm"], c["d_model"])
        self.queries = nn.Parameter(torch.randn(1, c["num_queries"], c["d_model"]))
        self.transformer = nn.Transformer(
            d_model=c["d_model"],
            nhead=c["heads"],
            num_encoder_layers=c["enc_layers"],
            num_decoder_layers=c["dec_layers"],
            dim_feedforward=c["ffn"],
            dropout=0.0,
            activation="relu",
            batch_first=True,
            norm_first=True,
        )
        self.out_proj = nn.Linear(c["d_model"], c["out_dim"])

    def forward(self, x):
        src = self.in_proj(x)
        tgt = self.queries.repeat(x.shape[0], 1, 1)
        return self.out_proj(self.transformer(src, tgt))


def main():
    torch.manual_seed(0)
    model = GenHead(CFG).eval()
    # Non-trivial LayerNorm affine parameters so their loading is tested.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(2, CFG["num_img_tokens"], CFG["d_llm"])
    with torch.no_grad():
        y = model(x)

    OUT.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, OUT / "model.safetensors")
    (OUT / "config.json").write_text(json.dumps(CFG, indent=2) + "\n")
    save_file({"input": x.contiguous(), "output": y.contiguous()}, OUT / "reference.safetensors")
    print("keys:", list(model.state_dict().keys())[:12], "...", len(model.state_dict()))
    print("output", tuple(y.shape))


if __name__ == "__main__":
    main()
