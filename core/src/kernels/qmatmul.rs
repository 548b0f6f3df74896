//! Products with block-quantized matmul weights (`genllava::quant`'s q8 / q4):
//! `shaders/matmul_q8.wgsl` and `shaders/matmul_q4.wgsl` on wgpu, and the
//! plain-Burn reference (unpack, scale, matmul) everywhere else.

use crate::error::{Error, Result};
use crate::quant::{self, BLOCK, Quant, Scales};
use burn::tensor::{Device, Int, Tensor, TensorData};

/// A `[n, k]` (PyTorch `[out, in]`) weight in q8 or q4 blocks on a device: the
/// values packed in 32-bit words exactly as the web format stores them (q8: four
/// per word, q4: eight), and one f32 scale per block of 32 along `k` (an
/// encoding's f16 scales are widened, exactly).
#[derive(Debug, Clone)]
pub struct QuantMatrix {
    pub quant: Quant,
    /// Output features (rows of the weight).
    pub n: usize,
    /// Input features, a multiple of 32.
    pub k: usize,
    /// `[n, k / 4]` (q8) or `[n, k / 8]` (q4) words, as i32 bit patterns.
    pub packed: Tensor<2, Int>,
    /// `[n, k / 32]`.
    pub scales: Tensor<2>,
}

impl QuantMatrix {
    /// Values per 32-bit word.
    fn per_word(quant: Quant) -> usize {
        if quant == Quant::Q4 { 8 } else { 4 }
    }

    /// From a tensor's web-format encoding (values, then `scales`); `name` names it in errors.
    pub fn from_encoded(
        name: &str,
        bytes: &[u8],
        shape: [usize; 2],
        quant: Quant,
        scales: Scales,
        device: &Device,
    ) -> Result<Self> {
        let [n, k] = shape;
        if !quant.is_block() || !quant::blockable(&shape) {
            return Err(Error::input(
                name,
                format!("{} of shape {shape:?} is not a q8 / q4 block matrix", quant.name()),
            ));
        }
        let (values, scales) = quant::split_blocks(bytes, n * k, quant, scales, name)?;
        let words: Vec<i32> = values.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        let per_word = Self::per_word(quant);
        Ok(Self {
            quant,
            n,
            k,
            packed: Tensor::from_data(TensorData::new(words, [n, k / per_word]), device),
            scales: Tensor::from_data(TensorData::new(scales, [n, k / BLOCK]), device),
        })
    }

    /// Quantize a row-major `[n, k]` f32 weight (`k` a multiple of 32).
    pub fn quantize(name: &str, values: &[f32], shape: [usize; 2], quant: Quant, device: &Device) -> Result<Self> {
        if values.len() != shape[0] * shape[1] {
            return Err(Error::input(name, format!("{} values for shape {shape:?}", values.len())));
        }
        let bytes = quant::encode(values, shape[1], quant, Scales::F32, name)?;
        Self::from_encoded(name, &bytes, shape, quant, Scales::F32, device)
    }

    /// The f32 weight `[n, k]`, unpacked with Burn's integer ops on the weight's device.
    pub fn dequantize(&self) -> Tensor<2> {
        let (n, k, per_word) = (self.n, self.k, Self::per_word(self.quant));
        let bits = 32 / per_word;
        let mask = (1i64 << bits) - 1;
        // Field j of each word, as an unsigned integer (arithmetic shifts of a sign-carrying
        // word are fine: the mask keeps only the field's own bits).
        let fields: Vec<Tensor<2, Int>> = (0..per_word)
            .map(|j| self.packed.clone().bitwise_right_shift_scalar((j * bits) as i64).bitwise_and_scalar(mask))
            .collect();
        let fields = Tensor::stack::<3>(fields, 2).reshape([n, k]).float();
        let q = match self.quant {
            // Two's complement bytes: 128..=255 are negative.
            Quant::Q8 => fields.clone() - fields.greater_equal_elem(128.0).float().mul_scalar(256.0),
            _ => fields.sub_scalar(8.0),
        };
        (q.reshape([n, k / BLOCK, BLOCK]) * self.scales.clone().reshape([n, k / BLOCK, 1])).reshape([n, k])
    }
}

/// `x · Wᵀ` for `x` `[m, k]`: `shaders/matmul_q8.wgsl` / `matmul_q4.wgsl` on wgpu,
/// [`quant_matmul_reference`] elsewhere. Returns `[m, n]`.
pub fn quant_matmul(x: Tensor<2>, w: &QuantMatrix) -> Result<Tensor<2>> {
    check(&x, w)?;
    #[cfg(feature = "wgpu-kernels")]
    if super::wgsl_active(&x.device())
        && x.dtype() == burn::tensor::DType::F32
        && w.scales.dtype() == burn::tensor::DType::F32
        && matches!(w.packed.dtype(), burn::tensor::DType::I32 | burn::tensor::DType::U32)
        && w.n.div_ceil(64) <= super::wgpu::MAX_WORKGROUPS
        && x.dims()[0].div_ceil(4) <= super::wgpu::MAX_WORKGROUPS
    {
        return Ok(super::wgpu::quant_matmul(x, w));
    }
    quant_matmul_reference(x, w)
}

/// The plain-Burn product: dequantize (Burn integer ops), then `matmul`.
pub fn quant_matmul_reference(x: Tensor<2>, w: &QuantMatrix) -> Result<Tensor<2>> {
    check(&x, w)?;
    Ok(x.matmul(w.dequantize().transpose()))
}

fn check(x: &Tensor<2>, w: &QuantMatrix) -> Result<()> {
    let [m, k] = x.dims();
    if k != w.k || m == 0 {
        return Err(Error::input(
            "x",
            format!("shape {:?} cannot multiply a {} weight of shape [{}, {}]", x.dims(), w.quant.name(), w.n, w.k),
        ));
    }
    Ok(())
}
