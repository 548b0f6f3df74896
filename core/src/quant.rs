//! Block quantization of matmul weights for the web format (see [`crate::web`]).
//!
//! A weight of PyTorch shape `[out, in]` is cut into blocks of [`BLOCK`] values
//! along the input dimension (each row's `in` values, 32 at a time; `in` must be a
//! multiple of 32). Each block stores one scale `s` ([`Scales`]: f32, or f16 to
//! halve their bytes) and 32 small integers `q`, and decodes as `w = s · q`:
//!
//! - **q8**: symmetric int8, `q ∈ [-127, 127]`, `s = max|w| / 127`. One byte per
//!   value (two's complement).
//! - **q4**: symmetric 4-bit, `q ∈ [-7, 7]`, `s = max|w| / 7` (the range of Burn's
//!   `Q4S`). Two values per byte: element `2i` in the low nibble, `2i + 1` in the
//!   high nibble, each stored as `q + 8` (so `1..=15`).
//!
//! The encoded tensor is the values (row-major, `out · in` bytes for q8,
//! `out · in / 2` for q4) followed directly by the scales (row-major `[out, in / 32]`,
//! little-endian f32 or f16; f16 scales are zero-padded to a multiple of 4 bytes).
//! Both lengths are multiples of 4, so a GPU can view the values as `u32` words and
//! the scales as `f32` (or pairs of f16 in `u32` words). With f16 scales the
//! integers are rounded against the f16 scale, so `w = s · q` holds for the stored
//! `s` exactly as with f32 scales.

use crate::error::{Error, Result};

/// Values per block, along the input dimension.
pub const BLOCK: usize = 32;

/// How a matmul weight is stored in the web format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quant {
    /// Symmetric int8 per block of 32, f32 scales.
    Q8,
    /// Symmetric 4-bit per block of 32 (two per byte), f32 scales.
    Q4,
    /// IEEE half precision (no scales).
    F16,
    /// Plain f32.
    F32,
}

impl Quant {
    /// Parse `q4`, `q8`, `f16` or `f32`.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "q8" => Quant::Q8,
            "q4" => Quant::Q4,
            "f16" => Quant::F16,
            "f32" => Quant::F32,
            _ => return None,
        })
    }

    /// The name used in manifests and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Quant::Q8 => "q8",
            Quant::Q4 => "q4",
            Quant::F16 => "f16",
            Quant::F32 => "f32",
        }
    }

    /// Whether this is a block format with scales.
    pub fn is_block(self) -> bool {
        matches!(self, Quant::Q8 | Quant::Q4)
    }

    /// Bytes of the encoded values of `n` elements (scales excluded).
    pub fn value_bytes(self, n: usize) -> usize {
        match self {
            Quant::Q8 => n,
            Quant::Q4 => n / 2,
            Quant::F16 => 2 * n,
            Quant::F32 => 4 * n,
        }
    }

    /// Total encoded bytes of `n` elements (values, then scales for block formats).
    pub fn encoded_bytes(self, n: usize, scales: Scales) -> usize {
        self.value_bytes(n) + if self.is_block() { scales.bytes(n / BLOCK) } else { 0 }
    }

    /// The largest |q| of a block format.
    fn q_max(self) -> f32 {
        match self {
            Quant::Q4 => 7.0,
            _ => 127.0,
        }
    }
}

/// The dtype of a block format's scales.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scales {
    /// Little-endian f32, 4 bytes per block.
    #[default]
    F32,
    /// Little-endian IEEE half, 2 bytes per block (the run zero-padded to a multiple of 4).
    F16,
}

impl Scales {
    /// Parse `f32` or `f16`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "f32" => Some(Scales::F32),
            "f16" => Some(Scales::F16),
            _ => None,
        }
    }

    /// The name used in manifests and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Scales::F32 => "f32",
            Scales::F16 => "f16",
        }
    }

    /// Bytes of `count` scales.
    pub fn bytes(self, count: usize) -> usize {
        match self {
            Scales::F32 => 4 * count,
            Scales::F16 => (2 * count).next_multiple_of(4),
        }
    }
}

/// Whether a `[rows, cols]` matrix can be stored in block format: whole blocks per row.
pub fn blockable(shape: &[usize]) -> bool {
    shape.len() == 2 && shape[1] > 0 && shape[1].is_multiple_of(BLOCK)
}

/// Encode row-major `values` of a `[rows, cols]` matrix (`cols` a multiple of
/// [`BLOCK`] for block formats) as `quant`, block scales as `scales`; `what` names
/// the tensor in errors (a scale f16 cannot hold).
pub fn encode(values: &[f32], cols: usize, quant: Quant, scales: Scales, what: &str) -> Result<Vec<u8>> {
    Ok(match quant {
        Quant::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Quant::F16 => values.iter().flat_map(|v| half::f16::from_f32(*v).to_le_bytes()).collect(),
        Quant::Q8 | Quant::Q4 => {
            debug_assert!(cols.is_multiple_of(BLOCK) && values.len().is_multiple_of(cols));
            let q_max = quant.q_max();
            let mut q = Vec::with_capacity(values.len());
            let mut stored = Vec::with_capacity(values.len() / BLOCK);
            for (b, block) in values.chunks_exact(BLOCK).enumerate() {
                let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
                if block.iter().any(|v| !v.is_finite()) {
                    return Err(Error::input(what, format!("block {b} holds a value that is not finite")));
                }
                let mut scale = amax / q_max;
                if scales == Scales::F16 {
                    let h = half::f16::from_f32(scale);
                    if !h.is_finite() {
                        return Err(Error::input(
                            what,
                            format!(
                                "block {b}: scale {scale:e} (max |w| {amax:e}) is beyond f16; export with f32 scales"
                            ),
                        ));
                    }
                    scale = h.to_f32();
                }
                let inv = if scale > 0.0 { 1.0 / scale } else { 0.0 };
                stored.push(scale);
                q.extend(block.iter().map(|v| (v * inv).round().clamp(-q_max, q_max) as i8));
            }
            let mut out = match quant {
                Quant::Q8 => q.iter().map(|&v| v as u8).collect::<Vec<u8>>(),
                _ => q.chunks_exact(2).map(|p| ((p[0] + 8) as u8) | (((p[1] + 8) as u8) << 4)).collect(),
            };
            match scales {
                Scales::F32 => out.extend(stored.iter().flat_map(|s| s.to_le_bytes())),
                Scales::F16 => {
                    out.extend(stored.iter().flat_map(|s| half::f16::from_f32(*s).to_le_bytes()));
                    out.resize(quant.encoded_bytes(values.len(), scales), 0);
                }
            }
            out
        }
    })
}

/// Split encoded block-format bytes of `n` elements into values and scales
/// (widened to f32, exactly); `what` names the tensor in errors.
pub fn split_blocks<'a>(
    bytes: &'a [u8],
    n: usize,
    quant: Quant,
    scales: Scales,
    what: &str,
) -> Result<(&'a [u8], Vec<f32>)> {
    let want = quant.encoded_bytes(n, scales);
    if bytes.len() != want || (quant.is_block() && !n.is_multiple_of(BLOCK)) {
        let of = if quant.is_block() {
            format!("{} data with {} scales", quant.name(), scales.name())
        } else {
            format!("{} data", quant.name())
        };
        return Err(Error::input(what, format!("{} bytes of {of} for {n} values (expected {want})", bytes.len())));
    }
    let (values, rest) = bytes.split_at(quant.value_bytes(n));
    let count = if quant.is_block() { n / BLOCK } else { 0 };
    let scales = match scales {
        Scales::F32 => rest.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Scales::F16 => {
            rest.chunks_exact(2).take(count).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect()
        }
    };
    Ok((values, scales))
}

/// The signed integers of block-format values (one per element).
pub fn unpack(values: &[u8], quant: Quant) -> Vec<i8> {
    match quant {
        Quant::Q4 => values.iter().flat_map(|b| [(b & 0x0f) as i8 - 8, (b >> 4) as i8 - 8]).collect(),
        _ => values.iter().map(|&b| b as i8).collect(),
    }
}

/// Decode `n` values encoded as `quant` (block scales as `scales`) back to f32;
/// `what` names the tensor in errors.
pub fn decode(bytes: &[u8], n: usize, quant: Quant, scales: Scales, what: &str) -> Result<Vec<f32>> {
    match quant {
        Quant::F32 | Quant::F16 => {
            let (values, _) = split_blocks(bytes, n, quant, scales, what)?;
            Ok(match quant {
                Quant::F32 => values.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
                _ => values.chunks_exact(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            })
        }
        Quant::Q8 | Quant::Q4 => {
            let (values, scales) = split_blocks(bytes, n, quant, scales, what)?;
            let q = unpack(values, quant);
            Ok(q.chunks_exact(BLOCK).zip(&scales).flat_map(|(b, &s)| b.iter().map(move |&v| v as f32 * s)).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(n: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919) % 101) as f32 / 13.0 - 3.7).collect()
    }

    fn enc(w: &[f32], cols: usize, quant: Quant, scales: Scales) -> Vec<u8> {
        encode(w, cols, quant, scales, "w").unwrap()
    }

    #[test]
    fn round_trip_error_is_within_half_a_step() {
        let (rows, cols) = (3, 64);
        let w = ramp(rows * cols);
        for scales in [Scales::F32, Scales::F16] {
            for (quant, q_max) in [(Quant::Q8, 127.0), (Quant::Q4, 7.0)] {
                let bytes = enc(&w, cols, quant, scales);
                assert_eq!(bytes.len(), quant.encoded_bytes(w.len(), scales));
                let back = decode(&bytes, w.len(), quant, scales, "w").unwrap();
                for (bw, bb) in w.chunks(BLOCK).zip(back.chunks(BLOCK)) {
                    // An f16 scale is within 2⁻¹¹ of the f32 one: the step grows by at most that.
                    let step = bw.iter().fold(0f32, |m, v| m.max(v.abs())) / q_max * (1.0 + 1.0 / 2048.0);
                    for (a, b) in bw.iter().zip(bb) {
                        assert!((a - b).abs() <= step * 0.5 + 1e-6, "{quant:?} {scales:?}: {a} vs {b} (step {step})");
                    }
                }
            }
        }
        assert_eq!(decode(&enc(&w, cols, Quant::F32, Scales::F32), w.len(), Quant::F32, Scales::F32, "w").unwrap(), w);
        let h = decode(&enc(&w, cols, Quant::F16, Scales::F32), w.len(), Quant::F16, Scales::F32, "w").unwrap();
        assert!(w.iter().zip(&h).all(|(a, b)| (a - b).abs() <= 4e-3));
    }

    #[test]
    fn f16_scales_are_stored_exactly_and_padded_to_words() {
        // Three blocks: 6 bytes of f16 scales, padded to 8.
        let w = ramp(3 * BLOCK);
        let bytes = enc(&w, BLOCK, Quant::Q8, Scales::F16);
        assert_eq!(bytes.len(), 3 * BLOCK + 8);
        assert_eq!(Quant::Q4.encoded_bytes(3 * BLOCK, Scales::F16), 3 * BLOCK / 2 + 8);
        assert_eq!(&bytes[3 * BLOCK + 6..], &[0, 0]);
        let (_, scales) = split_blocks(&bytes, w.len(), Quant::Q8, Scales::F16, "w").unwrap();
        assert_eq!(scales.len(), 3);
        for (block, s) in w.chunks(BLOCK).zip(&scales) {
            // The stored scale is the f16 nearest max|w| / 127, and the block's largest |q| is 127.
            let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert_eq!(*s, half::f16::from_f32(amax / 127.0).to_f32());
        }
        let q = unpack(&bytes[..3 * BLOCK], Quant::Q8);
        assert!(q.chunks(BLOCK).all(|b| b.iter().any(|v| v.abs() == 127)));
        // f16 cannot hold a scale of 1e6 / 7.
        let mut big = vec![0f32; BLOCK];
        big[3] = 1e6;
        let e = encode(&big, BLOCK, Quant::Q4, Scales::F16, "unet.conv.weight").unwrap_err().to_string();
        assert!(e.contains("unet.conv.weight") && e.contains("beyond f16"), "{e}");
        assert!(encode(&big, BLOCK, Quant::Q4, Scales::F32, "w").is_ok());
        big[3] = f32::NAN;
        let e = encode(&big, BLOCK, Quant::Q8, Scales::F32, "lm_head.weight").unwrap_err().to_string();
        assert!(e.contains("lm_head.weight") && e.contains("not finite"), "{e}");
    }

    #[test]
    fn q4_packs_two_per_byte_low_nibble_first() {
        // Block max 7 → scale 1: q = value; element 0 → low nibble.
        let mut w = vec![0f32; BLOCK];
        w[0] = -7.0;
        w[1] = 7.0;
        w[2] = 1.0;
        let bytes = enc(&w, BLOCK, Quant::Q4, Scales::F32);
        assert_eq!(bytes[0], 0x01 | (0x0f << 4));
        assert_eq!(bytes[1], 0x09 | (0x08 << 4));
        assert_eq!(f32::from_le_bytes(bytes[16..20].try_into().unwrap()), 1.0);
        assert_eq!(&enc(&w, BLOCK, Quant::Q4, Scales::F16)[16..], &[0x00, 0x3c, 0, 0]);
        // An all-zero block has scale 0 and decodes to zeros.
        let z = enc(&[0.0; BLOCK], BLOCK, Quant::Q8, Scales::F32);
        assert!(decode(&z, BLOCK, Quant::Q8, Scales::F32, "z").unwrap().iter().all(|v| *v == 0.0));
    }

    #[test]
    fn wrong_length_names_the_tensor() {
        let e = decode(&[0u8; 10], 32, Quant::Q8, Scales::F32, "layers.0.q_proj.weight").unwrap_err().to_string();
        assert!(e.contains("layers.0.q_proj.weight") && e.contains("expected 36"), "{e}");
        // One f16 scale takes 2 bytes, padded to 4: 36 again, and 34 is short.
        let e = decode(&[0u8; 34], 32, Quant::Q8, Scales::F16, "x.weight").unwrap_err().to_string();
        assert!(e.contains("x.weight") && e.contains("f16 scales") && e.contains("expected 36"), "{e}");
    }
}
