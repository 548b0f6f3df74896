//! Between image tensors in `[0, 1]` and 8-bit RGB pictures, and PNG bytes.

use crate::error::{Error, Result};
use crate::image::RgbImage;
use burn::tensor::{Device, Tensor, TensorData};

/// `[b, 3, H, W]` in `[0, 1]` → `b` RGB images, rounding `x * 255` as
/// diffusers' `numpy_to_pil` does (values outside `[0, 1]` are clamped).
pub fn tensor_to_rgb(images: Tensor<4>) -> Result<Vec<RgbImage>> {
    let bytes = rgb_bytes(images)?;
    let dims = bytes.dims();
    rgb_from_data(bytes.into_data(), dims)
}

/// The device half of [`tensor_to_rgb`]: `[b, 3, H, W]` in `[0, 1]` → `[b, H, W, 3]`
/// in `[0, 255]`, still on the device (the browser reads it back asynchronously
/// and hands the data to [`rgb_from_data`]).
pub fn rgb_bytes(images: Tensor<4>) -> Result<Tensor<4>> {
    let c = images.dims()[1];
    if c != 3 {
        return Err(Error::input("image", format!("{c} channels; expected 3 (RGB)")));
    }
    Ok(images.clamp(0.0, 1.0).mul_scalar(255.0).permute([0, 2, 3, 1]))
}

/// The host half of [`tensor_to_rgb`]: read-back data of [`rgb_bytes`] (`dims`
/// `[b, H, W, 3]`) → `b` RGB images.
pub fn rgb_from_data(data: TensorData, dims: [usize; 4]) -> Result<Vec<RgbImage>> {
    let [b, h, w, _] = dims;
    let data: Vec<f32> = data.convert::<f32>().try_into_vec::<f32>().map_err(|e| Error::Readback(format!("{e:?}")))?;
    let plane = h * w * 3;
    if data.len() != b * plane {
        return Err(Error::Readback(format!("{} values read back for images {dims:?}", data.len())));
    }
    (0..b)
        .map(|i| {
            let bytes = data[i * plane..(i + 1) * plane].iter().map(|v| v.round() as u8).collect();
            RgbImage::new(w, h, bytes)
        })
        .collect()
}

/// RGB images of one size → `[b, 3, H, W]` in `[0, 1]`.
pub fn rgb_to_tensor(images: &[RgbImage], device: &Device) -> Result<Tensor<4>> {
    let first = images.first().ok_or_else(|| Error::input("image", "no images"))?;
    let (w, h) = (first.width, first.height);
    if let Some(other) = images.iter().find(|i| (i.width, i.height) != (w, h)) {
        return Err(Error::input(
            "image",
            format!("images differ in size: {w}x{h} and {}x{}", other.width, other.height),
        ));
    }
    let data: Vec<f32> = images.iter().flat_map(|i| i.data.iter().map(|&v| f32::from(v) / 255.0)).collect();
    let x: Tensor<4> = Tensor::from_data(TensorData::new(data, [images.len(), h, w, 3]), device);
    Ok(x.permute([0, 3, 1, 2]))
}

/// PNG bytes of an RGB image.
pub fn encode_png(image: &RgbImage) -> Result<Vec<u8>> {
    use image::ImageEncoder;
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(&image.data, image.width as u32, image.height as u32, image::ExtendedColorType::Rgb8)
        .map_err(|e| Error::Image(format!("cannot encode PNG: {e}")))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trip_through_tensors() {
        let device = Device::flex();
        let img = RgbImage::new(2, 1, vec![0, 128, 255, 10, 20, 30]).unwrap();
        let t = rgb_to_tensor(std::slice::from_ref(&img), &device).unwrap();
        assert_eq!(t.dims(), [1, 3, 1, 2]);
        let back = tensor_to_rgb(t).unwrap();
        assert_eq!(back, vec![img.clone()]);
        let decoded = RgbImage::decode(&encode_png(&img).unwrap()).unwrap();
        assert_eq!(decoded, img);
    }
}
