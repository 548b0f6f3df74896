"""Write the UNet2DConditionModel parity fixtures.

Two tiny random diffusers UNets (the SD v1.x block layout):
  unet-tiny       channels (32, 64), in_channels 4, conv proj_in/proj_out, layers_per_block 1,
                  groups 8, 8 heads
  unet-tiny-ip2p  channels (16, 32), in_channels 8 (InstructPix2Pix), linear projections,
                  layers_per_block 2, groups 8, per-block head counts (2, 4), 2 transformer
                  layers in the first block, flip_sin_to_cos false, freq_shift 1
Weights are stored as f16 to keep the fixtures small.
Each folder gets the `save_pretrained` output (config.json, diffusion_pytorch_model.safetensors)
and `reference.safetensors` with the inputs and the noise prediction.

Run: /root/.cache/pyref/bin/python tests/reference/unet.py
"""

from pathlib import Path

import torch
from diffusers import UNet2DConditionModel
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent / "fixtures"

COMMON = dict(
    out_channels=4,
    block_out_channels=(32, 64),
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    mid_block_type="UNetMidBlock2DCrossAttn",
    cross_attention_dim=32,
    sample_size=8,
    act_fn="silu",
    flip_sin_to_cos=True,
    freq_shift=0,
)

CASES = {
    "unet-tiny": dict(
        in_channels=4, layers_per_block=1, norm_num_groups=8, attention_head_dim=8,
        use_linear_projection=False,
    ),
    "unet-tiny-ip2p": dict(
        in_channels=8, layers_per_block=2, norm_num_groups=8, attention_head_dim=(2, 4),
        block_out_channels=(16, 32),
        use_linear_projection=True, transformer_layers_per_block=(2, 1), freq_shift=1,
        flip_sin_to_cos=False,
    ),
}


def main():
    for i, (name, cfg) in enumerate(CASES.items()):
        torch.manual_seed(1234 + i)
        unet = UNet2DConditionModel(**{**COMMON, **cfg}).eval()
        # Random init leaves conv_out/proj_out etc. at their defaults; perturb every
        # parameter so that no path (zero-initialised or not) goes untested.
        with torch.no_grad():
            for p in unet.parameters():
                p.add_(0.05 * torch.randn_like(p))
        # Stored as f16 to keep the fixture small (and to test f16 loading); the
        # reference runs in f32 on exactly the f16-rounded weights.
        unet = unet.half()
        out = ROOT / name
        unet.save_pretrained(out, safe_serialization=True)
        unet = unet.float()

        c = unet.config.in_channels
        sample = torch.randn(2, c, 8, 8)
        states = torch.randn(2, 5, 32)
        timesteps = torch.tensor([10.0, 981.0])
        with torch.no_grad():
            noise = unet(sample, timesteps, encoder_hidden_states=states).sample
            noise_scalar = unet(sample, 500, encoder_hidden_states=states).sample
            # An odd latent size exercises the size-following upsampler.
            sample_odd = torch.randn(1, c, 7, 5)
            noise_odd = unet(sample_odd, 250, encoder_hidden_states=states[:1]).sample
        save_file(
            {
                "sample": sample.contiguous(),
                "timesteps": timesteps.contiguous(),
                "encoder_hidden_states": states.contiguous(),
                "noise": noise.contiguous(),
                "noise_t500": noise_scalar.contiguous(),
                "sample_odd": sample_odd.contiguous(),
                "noise_odd_t250": noise_odd.contiguous(),
            },
            str(out / "reference.safetensors"),
        )
        print(name, noise.shape, noise.abs().max().item())


if __name__ == "__main__":
    main()
