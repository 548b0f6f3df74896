//! Pillow's `Image.resize` for 8-bit RGB, reproduced bit for bit: the
//! separable convolution of `libImaging/Resample.c` (filter support scaled up
//! when downscaling, i.e. antialiasing; 22-bit fixed-point coefficients; the
//! horizontal pass first, rounded to 8 bits, then the vertical pass) and the
//! affine nearest-neighbour path of `_imaging.c`. Hugging Face's image
//! processors resize through Pillow, so matching it is what makes our pixels
//! equal theirs.
//!
//! Pass order: Pillow up to 12 (and its `main` as of mid-2026) always runs the
//! horizontal pass first, and so do we. Pillow 13.0 sometimes runs the vertical
//! pass first when the height shrinks (by a rule not in the sources we could
//! read); only then,
//! and only when *both* axes change, can a pixel differ (by up to ~20/255 with
//! Lanczos in our probes). Resizes that change one axis, or square images
//! (LLaVA's padded inputs) scaled to a square, are bit-exact with every version.

use crate::error::{Error, Result};
use serde::{Deserialize, Deserializer};

/// Pillow's resampling filters, numbered as `PIL.Image.Resampling` (and as the
/// `resample` field of `preprocessor_config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    Nearest = 0,
    Lanczos = 1,
    Bilinear = 2,
    Bicubic = 3,
    Box = 4,
    Hamming = 5,
}

impl TryFrom<u64> for Resample {
    type Error = Error;
    fn try_from(v: u64) -> Result<Self> {
        Ok(match v {
            0 => Resample::Nearest,
            1 => Resample::Lanczos,
            2 => Resample::Bilinear,
            3 => Resample::Bicubic,
            4 => Resample::Box,
            5 => Resample::Hamming,
            _ => {
                return Err(Error::config(
                    "preprocessor_config.json",
                    format!("resample {v} is not a PIL filter (0-5)"),
                ));
            }
        })
    }
}

impl<'de> Deserialize<'de> for Resample {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Resample::try_from(u64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl Resample {
    /// Half-width of the filter kernel at scale 1.
    fn support(self) -> f64 {
        match self {
            Resample::Nearest | Resample::Box => 0.5,
            Resample::Bilinear | Resample::Hamming => 1.0,
            Resample::Bicubic => 2.0,
            Resample::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        use std::f64::consts::PI;
        let sinc = |x: f64| {
            if x == 0.0 {
                1.0
            } else {
                (x * PI).sin() / (x * PI)
            }
        };
        match self {
            Resample::Nearest | Resample::Box => f64::from(u8::from(x > -0.5 && x <= 0.5)),
            Resample::Bilinear => (1.0 - x.abs()).max(0.0),
            Resample::Hamming => {
                let x = x.abs();
                if x == 0.0 {
                    1.0
                } else if x >= 1.0 {
                    0.0
                } else {
                    (x * PI).sin() / (x * PI) * (0.54 + 0.46 * (x * PI).cos())
                }
            }
            Resample::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Resample::Lanczos => {
                if (-3.0..3.0).contains(&x) {
                    sinc(x) * sinc(x / 3.0)
                } else {
                    0.0
                }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: first input index and fixed-point weights (`precompute_coeffs`
/// followed by `normalize_coeffs_8bpc`).
fn coefficients(in_size: usize, out_size: usize, filter: Resample) -> Vec<(usize, Vec<i64>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            let ss = 1.0 / filterscale;
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64) as usize;
            let w: Vec<f64> = (xmin..xmax.max(xmin))
                .map(|x| filter.weight((x as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = w.iter().sum();
            let fixed = w
                .iter()
                .map(|&k| {
                    let k = if total != 0.0 { k / total } else { k };
                    let v = k * f64::from(1u32 << PRECISION_BITS);
                    (if v < 0.0 { v - 0.5 } else { v + 0.5 }) as i32 as i64
                })
                .collect();
            (xmin, fixed)
        })
        .collect()
}

fn clip8(v: i64) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Convolve along one axis of an interleaved RGB buffer.
/// `horizontal`: along x (rows stay), else along y.
fn pass(
    src: &[u8],
    w: usize,
    h: usize,
    out_len: usize,
    horizontal: bool,
    filter: Resample,
) -> Vec<u8> {
    let (ow, oh) = if horizontal {
        (out_len, h)
    } else {
        (w, out_len)
    };
    let coeffs = coefficients(if horizontal { w } else { h }, out_len, filter);
    let mut out = vec![0u8; ow * oh * 3];
    for y in 0..oh {
        for x in 0..ow {
            let (start, k) = if horizontal { &coeffs[x] } else { &coeffs[y] };
            for c in 0..3 {
                let mut ss: i64 = 1 << (PRECISION_BITS - 1);
                for (i, &kk) in k.iter().enumerate() {
                    let (sx, sy) = if horizontal {
                        (start + i, y)
                    } else {
                        (x, start + i)
                    };
                    ss += i64::from(src[(sy * w + sx) * 3 + c]) * kk;
                }
                out[(y * ow + x) * 3 + c] = clip8(ss);
            }
        }
    }
    out
}

/// Pillow's nearest neighbour: an affine map sampled at pixel centres, with the
/// source coordinate accumulated step by step as `ImagingScaleAffine` does.
fn nearest(src: &[u8], w: usize, h: usize, ow: usize, oh: usize) -> Vec<u8> {
    let table = |n_in: usize, n_out: usize| {
        let step = n_in as f64 / n_out as f64;
        let mut pos = step * 0.5;
        (0..n_out)
            .map(|_| {
                let i = (pos.max(0.0) as usize).min(n_in - 1);
                pos += step;
                i
            })
            .collect::<Vec<_>>()
    };
    let (xs, ys) = (table(w, ow), table(h, oh));
    let mut out = Vec::with_capacity(ow * oh * 3);
    for &sy in &ys {
        for &sx in &xs {
            out.extend_from_slice(&src[(sy * w + sx) * 3..(sy * w + sx) * 3 + 3]);
        }
    }
    out
}

/// Resize interleaved 8-bit RGB `w`×`h` to `ow`×`oh` as Pillow does.
pub(crate) fn resize_rgb8(
    src: &[u8],
    w: usize,
    h: usize,
    ow: usize,
    oh: usize,
    filter: Resample,
) -> Result<Vec<u8>> {
    if w == 0 || h == 0 || ow == 0 || oh == 0 {
        return Err(Error::Image(format!("cannot resize {w}x{h} to {ow}x{oh}")));
    }
    if (w, h) == (ow, oh) {
        return Ok(src.to_vec());
    }
    if filter == Resample::Nearest {
        return Ok(nearest(src, w, h, ow, oh));
    }
    let mut buf = src.to_vec();
    let mut cur_w = w;
    if ow != w {
        buf = pass(&buf, w, h, ow, true, filter);
        cur_w = ow;
    }
    if oh != h {
        buf = pass(&buf, cur_w, h, oh, false, filter);
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_in_fixed_point() {
        for filter in [
            Resample::Bilinear,
            Resample::Bicubic,
            Resample::Lanczos,
            Resample::Box,
            Resample::Hamming,
        ] {
            for (i, o) in [(40, 32), (30, 48), (7, 3)] {
                for (_, k) in coefficients(i, o, filter) {
                    let s: i64 = k.iter().sum();
                    assert!(
                        (s - (1 << PRECISION_BITS)).abs() <= k.len() as i64,
                        "{filter:?} {i}->{o}"
                    );
                }
            }
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = vec![77u8; 9 * 5 * 3];
        for filter in [
            Resample::Nearest,
            Resample::Bilinear,
            Resample::Bicubic,
            Resample::Lanczos,
        ] {
            assert!(
                resize_rgb8(&src, 9, 5, 4, 11, filter)
                    .unwrap()
                    .iter()
                    .all(|&v| v == 77)
            );
        }
    }
}
