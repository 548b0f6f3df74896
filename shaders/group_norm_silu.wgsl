// Fused GroupNorm (+ optional SiLU), as Stable Diffusion's ResnetBlock2D runs
// `silu(group_norm(x))`: y = act((x - mean_g) / sqrt(var_g + eps) * gamma[c] + beta[c]),
// mean and (biased) variance over each (sample, group) slice of C/G channels x H x W.
//
// Bindings (group 0):
//   0 input  : array<f32>, only read   x, [N, C, H, W] contiguous (NCHW), f32
//   1 gamma  : array<f32>, only read   [C]
//   2 beta   : array<f32>, only read   [C]
//   3 output : array<f32>, written      y, [N, C, H, W] contiguous
//   4 params : array<u32>, only read   [groups G, channels per group C/G, H*W,
//                                       eps as f32 bits, apply SiLU (0 or 1)]
// Dispatch: N*G workgroups along x, 256 threads each; workgroup n*G + g owns
// the contiguous slice [ (n*G + g) * (C/G)*H*W, +(C/G)*H*W ).
// Every binding is declared read_write although only `output` is written:
// cubecl sub-allocates tensors from shared wgpu buffers, and one buffer bound
// both read-only and read-write in a dispatch is a validation error. So
// `params` is broadcast through workgroup memory with workgroupUniformLoad,
// which makes the loop bounds uniform for the barriers.
// Two passes over the slice (mean, then squared deviations) with f32
// workgroup tree reductions, then one normalising pass that writes y.

@group(0) @binding(0) var<storage, read_write> input: array<f32>;
@group(0) @binding(1) var<storage, read_write> gamma: array<f32>;
@group(0) @binding(2) var<storage, read_write> beta: array<f32>;
@group(0) @binding(3) var<storage, read_write> output: array<f32>;
@group(0) @binding(4) var<storage, read_write> params: array<u32>;

const WG: u32 = 256u;

var<workgroup> partial: array<f32, 256>;
var<workgroup> shared_params: array<u32, 5>;

// Sum of `value` over the workgroup; every invocation gets the total.
fn workgroup_sum(value: f32, lid: u32) -> f32 {
    partial[lid] = value;
    workgroupBarrier();
    var stride = WG / 2u;
    loop {
        if stride == 0u {
            break;
        }
        if lid < stride {
            partial[lid] = partial[lid] + partial[lid + stride];
        }
        workgroupBarrier();
        stride = stride / 2u;
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    if lid < 5u {
        shared_params[lid] = params[lid];
    }
    let p = workgroupUniformLoad(&shared_params);
    let groups = p[0];
    let cpg = p[1];
    let hw = p[2];
    let eps = bitcast<f32>(p[3]);
    let act = p[4];

    let len = cpg * hw;
    let base = wid.x * len;
    let channel0 = (wid.x % groups) * cpg;
    let count = f32(len);

    var s = 0.0;
    for (var i = lid; i < len; i = i + WG) {
        s = s + input[base + i];
    }
    let mean = workgroup_sum(s, lid) / count;

    var q = 0.0;
    for (var i = lid; i < len; i = i + WG) {
        let d = input[base + i] - mean;
        q = q + d * d;
    }
    let rstd = inverseSqrt(workgroup_sum(q, lid) / count + eps);

    for (var i = lid; i < len; i = i + WG) {
        let c = channel0 + i / hw;
        let y = (input[base + i] - mean) * rstd * gamma[c] + beta[c];
        if act != 0u {
            output[base + i] = y / (1.0 + exp(-y));
        } else {
            output[base + i] = y;
        }
    }
}
