//! Images in, model pixels out: decoding (PNG, JPEG) to 8-bit RGB and the
//! preprocessing of Hugging Face's CLIP/SigLIP image processors, including
//! LLaVA's pad-to-square. Bytes in, no file system.

mod processor;
mod resample;

pub use processor::{CropSize, ImageProcessorConfig, ImageSize, Pixels};
pub use resample::Resample;

use crate::error::{Error, Result};

/// An 8-bit RGB image, rows top to bottom, pixels interleaved `RGBRGB…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RgbImage {
    pub width: usize,
    pub height: usize,
    /// `height * width * 3` bytes.
    pub data: Vec<u8>,
}

impl RgbImage {
    /// Wrap interleaved RGB bytes; errors when the length does not fit.
    pub fn new(width: usize, height: usize, data: Vec<u8>) -> Result<Self> {
        if width == 0 || height == 0 || data.len() != width * height * 3 {
            return Err(Error::Image(format!(
                "{} bytes are not a {width}x{height} RGB image",
                data.len()
            )));
        }
        Ok(Self {
            width,
            height,
            data,
        })
    }

    /// A `width`×`height` image of one colour.
    pub fn filled(width: usize, height: usize, colour: [u8; 3]) -> Self {
        Self {
            width,
            height,
            data: colour.repeat(width * height),
        }
    }

    /// Decode PNG or JPEG bytes. Transparency is composited onto white, as
    /// transformers' `convert_to_rgb` does; grey images become RGB.
    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let img = image::load_from_memory(bytes)
            .map_err(|e| Error::Image(format!("cannot decode: {e}")))?;
        let (w, h) = (img.width() as usize, img.height() as usize);
        let data = if img.color().has_alpha() {
            img.to_rgba8()
                .pixels()
                .flat_map(|p| composite_on_white(p.0))
                .collect()
        } else {
            img.to_rgb8().into_raw()
        };
        Self::new(w, h, data)
    }

    /// The pixel at `(x, y)`.
    pub fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.data[i], self.data[i + 1], self.data[i + 2]]
    }

    /// LLaVA's `expand2square`: centre the image on a square canvas of
    /// `background` (offset `(long - short) / 2`, rounded down).
    pub fn expand_to_square(&self, background: [u8; 3]) -> Self {
        let side = self.width.max(self.height);
        if self.width == self.height {
            return self.clone();
        }
        let mut out = Self::filled(side, side, background);
        let (ox, oy) = ((side - self.width) / 2, (side - self.height) / 2);
        for y in 0..self.height {
            let src = &self.data[y * self.width * 3..(y + 1) * self.width * 3];
            let start = ((y + oy) * side + ox) * 3;
            out.data[start..start + src.len()].copy_from_slice(src);
        }
        out
    }

    /// Resize with a Pillow filter, matching `PIL.Image.resize` exactly.
    pub fn resize(&self, width: usize, height: usize, filter: Resample) -> Result<Self> {
        let data =
            resample::resize_rgb8(&self.data, self.width, self.height, width, height, filter)?;
        Self::new(width, height, data)
    }

    /// transformers' `center_crop`: top-left corner at `((W - w) / 2, (H - h) / 2)`
    /// rounded down. A crop larger than the image is an error.
    pub fn center_crop(&self, width: usize, height: usize) -> Result<Self> {
        if width > self.width || height > self.height || width == 0 || height == 0 {
            return Err(Error::Image(format!(
                "cannot crop {width}x{height} from {}x{}",
                self.width, self.height
            )));
        }
        let (left, top) = ((self.width - width) / 2, (self.height - height) / 2);
        let mut data = Vec::with_capacity(width * height * 3);
        for y in top..top + height {
            let row = (y * self.width + left) * 3;
            data.extend_from_slice(&self.data[row..row + width * 3]);
        }
        Self::new(width, height, data)
    }
}

/// Pillow's `alpha_composite` of an RGBA pixel over opaque white, in its
/// integer arithmetic (7-bit precision, exact division by 255).
fn composite_on_white([r, g, b, a]: [u8; 4]) -> [u8; 3] {
    let a = u32::from(a);
    let blend = |c: u8| {
        let tmp = (u32::from(c) * a + 255 * (255 - a)) * 128 + (0x80 << 7);
        let div255 = ((tmp >> 8) + tmp) >> 8;
        (div255 >> 7) as u8
    };
    [blend(r), blend(g), blend(b)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_crop_and_errors() {
        let img = RgbImage::new(3, 1, vec![1, 1, 1, 2, 2, 2, 3, 3, 3]).unwrap();
        let sq = img.expand_to_square([9, 9, 9]);
        assert_eq!((sq.width, sq.height), (3, 3));
        assert_eq!(sq.pixel(1, 1), [2, 2, 2]);
        assert_eq!(sq.pixel(1, 0), [9, 9, 9]);
        assert_eq!(img.center_crop(1, 1).unwrap().data, vec![2, 2, 2]);
        assert!(img.center_crop(4, 1).is_err());
        assert!(RgbImage::new(2, 2, vec![0; 5]).is_err());
        assert!(matches!(
            RgbImage::decode(&[0x89, b'P', b'N', b'G']),
            Err(Error::Image(_))
        ));
    }

    #[test]
    fn alpha_composites_onto_white() {
        assert_eq!(composite_on_white([10, 20, 30, 255]), [10, 20, 30]);
        assert_eq!(composite_on_white([10, 20, 30, 0]), [255, 255, 255]);
        assert_eq!(composite_on_white([0, 0, 0, 128]), [127, 127, 127]);
    }
}
