//! `preprocessor_config.json` of `CLIPImageProcessor` / `SiglipImageProcessor`
//! and the pipeline they run: (LLaVA pad) → resize → centre crop → rescale →
//! normalise, giving `[1, 3, H, W]` float pixels.

use super::{Resample, RgbImage};
use crate::error::{Error, Result};
use burn::tensor::{Device, Tensor, TensorData};
use serde::Deserialize;
use serde_json::Value;

const FILE: &str = "preprocessor_config.json";
/// `OPENAI_CLIP_MEAN` / `OPENAI_CLIP_STD` of transformers.
const CLIP_MEAN: [f64; 3] = [0.48145466, 0.4578275, 0.40821073];
const CLIP_STD: [f64; 3] = [0.26862954, 0.26130258, 0.27577711];

/// The `size` field: an exact size, or the shortest edge with the aspect kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSize {
    /// `{"height": h, "width": w}`.
    Exact { height: usize, width: usize },
    /// `{"shortest_edge": s}`: the short side becomes `s`, the long one
    /// `floor(s * long / short)`.
    ShortestEdge(usize),
}

/// The `crop_size` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct CropSize {
    pub height: usize,
    pub width: usize,
}

/// The fields of `preprocessor_config.json` that change pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessorConfig {
    /// Resize first (`do_resize`).
    pub do_resize: bool,
    /// Target of the resize (`size`).
    pub size: ImageSize,
    /// Pillow filter of the resize (`resample`, 3 = bicubic).
    pub resample: Resample,
    /// Centre-crop after resizing (`do_center_crop`).
    pub do_center_crop: bool,
    /// Size of the centre crop (`crop_size`).
    pub crop_size: Option<CropSize>,
    /// Multiply by `rescale_factor` (`do_rescale`).
    pub do_rescale: bool,
    /// Usually `1/255`.
    pub rescale_factor: f64,
    /// Subtract `image_mean`, divide by `image_std` (`do_normalize`).
    pub do_normalize: bool,
    /// Per-channel mean; also LLaVA's pad colour (`int(m * 255)`).
    pub image_mean: [f64; 3],
    /// Per-channel standard deviation.
    pub image_std: [f64; 3],
}

/// The raw JSON, before the type-dependent defaults are applied.
#[derive(Deserialize)]
struct Raw {
    image_processor_type: Option<String>,
    do_resize: Option<bool>,
    size: Option<Value>,
    resample: Option<Resample>,
    do_center_crop: Option<bool>,
    crop_size: Option<Value>,
    do_rescale: Option<bool>,
    rescale_factor: Option<f64>,
    do_normalize: Option<bool>,
    image_mean: Option<Value>,
    image_std: Option<Value>,
}

impl ImageProcessorConfig {
    /// Parse `preprocessor_config.json`. Absent fields take the defaults of the
    /// processor class `image_processor_type` names (SigLIP: 224×224, mean/std
    /// 0.5, no crop; otherwise CLIP: shortest edge 224, crop 224, OpenAI mean/std).
    /// A bare integer `size` means a square for SigLIP and a shortest edge for CLIP,
    /// as transformers reads legacy configs.
    pub fn from_json(json: &str) -> Result<Self> {
        let raw: Raw =
            serde_json::from_str(json).map_err(|e| Error::config(FILE, e.to_string()))?;
        let siglip = raw
            .image_processor_type
            .as_deref()
            .is_some_and(|t| t.contains("Siglip"));
        let size = match raw.size {
            None if siglip => ImageSize::Exact {
                height: 224,
                width: 224,
            },
            None => ImageSize::ShortestEdge(224),
            Some(v) => parse_size(&v, siglip)?,
        };
        let crop_size = match raw.crop_size {
            None if siglip => None,
            None => Some(CropSize {
                height: 224,
                width: 224,
            }),
            Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_u64().map(|s| CropSize {
                height: s as usize,
                width: s as usize,
            }),
            Some(v) => Some(
                CropSize::deserialize(v)
                    .map_err(|e| Error::config(FILE, format!("crop_size: {e}")))?,
            ),
        };
        let (mean, std) = if siglip {
            ([0.5; 3], [0.5; 3])
        } else {
            (CLIP_MEAN, CLIP_STD)
        };
        let cfg = Self {
            do_resize: raw.do_resize.unwrap_or(true),
            size,
            resample: raw.resample.unwrap_or(Resample::Bicubic),
            do_center_crop: raw.do_center_crop.unwrap_or(!siglip),
            crop_size,
            do_rescale: raw.do_rescale.unwrap_or(true),
            rescale_factor: raw.rescale_factor.unwrap_or(1.0 / 255.0),
            do_normalize: raw.do_normalize.unwrap_or(true),
            image_mean: raw
                .image_mean
                .map_or(Ok(mean), |v| per_channel(&v, "image_mean"))?,
            image_std: raw
                .image_std
                .map_or(Ok(std), |v| per_channel(&v, "image_std"))?,
        };
        if cfg.do_center_crop && cfg.crop_size.is_none() {
            return Err(Error::config(
                FILE,
                "do_center_crop is set but crop_size is missing",
            ));
        }
        if cfg.image_std.contains(&0.0) {
            return Err(Error::config(FILE, "image_std contains 0"));
        }
        Ok(cfg)
    }

    /// LLaVA's pad colour: `tuple(int(x * 255) for x in image_mean)`.
    pub fn pad_colour(&self) -> [u8; 3] {
        self.image_mean.map(|m| (m * 255.0).clamp(0.0, 255.0) as u8)
    }

    /// The size an image of `width`×`height` is resized to, `(width, height)`.
    pub fn resized(&self, width: usize, height: usize) -> (usize, usize) {
        match self.size {
            ImageSize::Exact { height, width } => (width, height),
            ImageSize::ShortestEdge(s) => {
                let (short, long) = (width.min(height), width.max(height));
                let new_long = (s as f64 * long as f64 / short as f64) as usize;
                if width <= height {
                    (s, new_long)
                } else {
                    (new_long, s)
                }
            }
        }
    }

    /// Run the processor on one image. `pad_to_square` applies LLaVA's
    /// `expand2square` with [`Self::pad_colour`] first (`image_aspect_ratio = "pad"`).
    pub fn preprocess(&self, image: &RgbImage, pad_to_square: bool) -> Result<Pixels> {
        let mut img = if pad_to_square {
            image.expand_to_square(self.pad_colour())
        } else {
            image.clone()
        };
        if self.do_resize {
            let (w, h) = self.resized(img.width, img.height);
            img = img.resize(w, h, self.resample)?;
        }
        if self.do_center_crop
            && let Some(c) = self.crop_size
        {
            img = img.center_crop(c.width, c.height)?;
        }
        let (w, h) = (img.width, img.height);
        let mut data = vec![0f32; 3 * h * w];
        for (i, px) in img.data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                // transformers rescales in f64, casts to f32, then normalises in f32.
                let mut v = if self.do_rescale {
                    (f64::from(px[c]) * self.rescale_factor) as f32
                } else {
                    f32::from(px[c])
                };
                if self.do_normalize {
                    v = (v - self.image_mean[c] as f32) / self.image_std[c] as f32;
                }
                data[c * h * w + i] = v;
            }
        }
        Ok(Pixels {
            data,
            shape: [1, 3, h, w],
        })
    }
}

fn parse_size(v: &Value, siglip: bool) -> Result<ImageSize> {
    let get = |k: &str| v.get(k).and_then(Value::as_u64).map(|x| x as usize);
    if let Some(s) = v.as_u64() {
        let s = s as usize;
        return Ok(if siglip {
            ImageSize::Exact {
                height: s,
                width: s,
            }
        } else {
            ImageSize::ShortestEdge(s)
        });
    }
    match (
        get("height"),
        get("width"),
        get("shortest_edge"),
        get("longest_edge"),
    ) {
        (Some(height), Some(width), _, _) => Ok(ImageSize::Exact { height, width }),
        (_, _, Some(s), None) => Ok(ImageSize::ShortestEdge(s)),
        _ => Err(Error::config(
            FILE,
            format!("size {v}: expected {{height, width}} or {{shortest_edge}}"),
        )),
    }
}

fn per_channel(v: &Value, name: &str) -> Result<[f64; 3]> {
    let bad = || {
        Error::config(
            FILE,
            format!("{name}: expected a number or 3 numbers, found {v}"),
        )
    };
    if let Some(x) = v.as_f64() {
        return Ok([x; 3]);
    }
    let xs: Vec<f64> = v
        .as_array()
        .ok_or_else(bad)?
        .iter()
        .map(Value::as_f64)
        .collect::<Option<_>>()
        .ok_or_else(bad)?;
    xs.try_into().map_err(|_| bad())
}

/// Preprocessed pixels, `[batch, channels, height, width]` row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Pixels {
    pub data: Vec<f32>,
    pub shape: [usize; 4],
}

impl Pixels {
    /// As a Burn tensor on `device`.
    pub fn to_tensor(&self, device: &Device) -> Tensor<4> {
        Tensor::from_data(TensorData::new(self.data.clone(), self.shape), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_clip_config() {
        let cfg = ImageProcessorConfig::from_json(
            r#"{"crop_size":336,"do_center_crop":true,"feature_extractor_type":"CLIPFeatureExtractor","size":336}"#,
        )
        .unwrap();
        assert_eq!(cfg.size, ImageSize::ShortestEdge(336));
        assert_eq!(
            cfg.crop_size,
            Some(CropSize {
                height: 336,
                width: 336
            })
        );
        assert_eq!(cfg.pad_colour(), [122, 116, 104]);
        assert_eq!(cfg.resized(400, 300), (448, 336));
    }

    #[test]
    fn bad_configs_are_errors() {
        assert!(ImageProcessorConfig::from_json(r#"{"resample":9}"#).is_err());
        assert!(ImageProcessorConfig::from_json(r#"{"image_mean":[1,2]}"#).is_err());
        assert!(ImageProcessorConfig::from_json(r#"{"size":{"longest_edge":3}}"#).is_err());
        let sig = ImageProcessorConfig::from_json(
            r#"{"image_processor_type":"SiglipImageProcessor","size":384}"#,
        )
        .unwrap();
        assert_eq!(
            sig.size,
            ImageSize::Exact {
                height: 384,
                width: 384
            }
        );
        assert!(!sig.do_center_crop);
    }
}
