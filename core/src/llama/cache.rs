//! Running state of the decoder, kept outside the module: rotary tables and
//! the per-layer key/value cache.

use super::config::LlamaConfig;
use burn::tensor::{Device, Tensor, TensorData};

/// Rotary position tables (`cos`, `sin`), computed the way transformers does
/// (`inv_freq` and angles in f32) and grown on demand.
#[derive(Debug, Clone)]
pub struct Rope {
    inv_freq: Vec<f32>,
    head_dim: usize,
    /// `[len, head_dim]` each, HF layout: the half-width frequencies repeated twice.
    cos: Tensor<2>,
    sin: Tensor<2>,
    len: usize,
    device: Device,
}

impl Rope {
    /// Tables for `head_dim` and base `theta`, with room for `initial_len` positions.
    pub fn new(head_dim: usize, theta: f64, initial_len: usize, device: &Device) -> Self {
        let half = head_dim / 2;
        let theta = theta as f32;
        let inv_freq = (0..half).map(|i| 1.0 / theta.powf((2 * i) as f32 / head_dim as f32)).collect();
        let empty = Tensor::zeros([0, head_dim], device);
        let mut rope = Self { inv_freq, head_dim, cos: empty.clone(), sin: empty, len: 0, device: device.clone() };
        rope.ensure(initial_len);
        rope
    }

    /// Tables for a decoder config.
    pub fn for_config(cfg: &LlamaConfig, device: &Device) -> Self {
        Self::new(cfg.head_dim(), cfg.rope_theta(), cfg.max_position_embeddings.min(4096), device)
    }

    /// Make sure positions `0..len` are covered (doubling, so growth is rare).
    fn ensure(&mut self, len: usize) {
        if len <= self.len {
            return;
        }
        let new_len = len.max(self.len * 2).max(16);
        let mut cos = Vec::with_capacity(new_len * self.head_dim);
        let mut sin = Vec::with_capacity(new_len * self.head_dim);
        for pos in 0..new_len {
            let angles: Vec<f32> = self.inv_freq.iter().map(|f| pos as f32 * f).collect();
            for _ in 0..2 {
                cos.extend(angles.iter().map(|a| a.cos()));
                sin.extend(angles.iter().map(|a| a.sin()));
            }
        }
        self.cos = Tensor::from_data(TensorData::new(cos, [new_len, self.head_dim]), &self.device);
        self.sin = Tensor::from_data(TensorData::new(sin, [new_len, self.head_dim]), &self.device);
        self.len = new_len;
    }

    /// `cos`, `sin` for positions `start..start + len`, each `[1, 1, len, head_dim]`.
    pub fn tables(&mut self, start: usize, len: usize) -> (Tensor<4>, Tensor<4>) {
        self.ensure(start + len);
        let cut = |t: &Tensor<2>| t.clone().narrow(0, start, len).unsqueeze::<4>();
        (cut(&self.cos), cut(&self.sin))
    }

    /// Rotate `x` `[batch, heads, seq, head_dim]` by tables from [`Rope::tables`]:
    /// `x * cos + rotate_half(x) * sin`, with `rotate_half(x) = cat(-x2, x1)`.
    pub fn apply(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
        let d = x.dims()[3];
        let x1 = x.clone().narrow(3, 0, d / 2);
        let x2 = x.clone().narrow(3, d / 2, d / 2);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x.mul(cos.clone()).add(rotated.mul(sin.clone()))
    }
}

/// Keys and values of every layer seen so far, plus the rotary tables.
/// One cache belongs to one sequence batch; [`KvCache::reset`] starts over.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// Per layer: keys and values `[batch, kv_heads, len, head_dim]` (before head repetition).
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
    /// Number of positions cached.
    len: usize,
    /// Rotary tables shared by all layers.
    pub rope: Rope,
}

impl KvCache {
    /// An empty cache for a decoder config.
    pub fn new(cfg: &LlamaConfig, device: &Device) -> Self {
        Self { layers: vec![None; cfg.num_hidden_layers], len: 0, rope: Rope::for_config(cfg, device) }
    }

    /// Positions cached so far (the position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Drop every cached key and value (the rotary tables stay).
    pub fn reset(&mut self) {
        self.layers.iter_mut().for_each(|l| *l = None);
        self.len = 0;
    }

    /// Append `k`, `v` `[batch, kv_heads, seq, head_dim]` to layer `layer` and
    /// return all keys and values of that layer so far.
    pub(crate) fn append(&mut self, layer: usize, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        if self.layers.len() <= layer {
            self.layers.resize(layer + 1, None);
        }
        let (k, v) = match self.layers[layer].take() {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
            None => (k, v),
        };
        self.layers[layer] = Some((k.clone(), v.clone()));
        (k, v)
    }

    /// Record that `n` more positions went through every layer.
    pub(crate) fn advance(&mut self, n: usize) {
        self.len += n;
    }
}
