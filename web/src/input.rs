//! Checks on an image before anything decodes it: the format from its first
//! bytes and the size from its header, so a huge picture is refused with a
//! plain message instead of exhausting the tab's memory.

use image::{ImageFormat, ImageReader};
use std::io::Cursor;

/// The largest width or height of an image the engine accepts. The vision tower
/// sees a few hundred pixels a side; 4096 leaves room for photos while keeping
/// the decoded RGB buffer under 50 MiB inside the wasm memory.
pub const MAX_IMAGE_SIDE: u32 = 4096;

/// Width and height of PNG or JPEG `bytes`, or why the engine will not take them.
pub fn check_image(bytes: &[u8]) -> Result<(u32, u32), String> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("cannot read the image: {e}"))?;
    match reader.format() {
        Some(ImageFormat::Png | ImageFormat::Jpeg) => {}
        Some(other) => return Err(format!("{other:?} images are not supported (PNG or JPEG only)")),
        None => return Err("not a PNG or JPEG image".into()),
    }
    let (w, h) = reader.into_dimensions().map_err(|e| format!("broken image header: {e}"))?;
    if w == 0 || h == 0 {
        return Err(format!("the image is {w}×{h} pixels: it is empty"));
    }
    if w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE {
        return Err(format!("the image is {w}×{h} pixels; the largest side allowed is {MAX_IMAGE_SIDE} pixels"));
    }
    Ok((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageEncoder, codecs::png::PngEncoder};

    /// An all-black RGB PNG of `w`×`h` (compresses to a few KiB even when huge).
    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut out = Vec::new();
        let pixels = vec![0u8; (w * h * 3) as usize];
        PngEncoder::new(&mut out).write_image(&pixels, w, h, image::ExtendedColorType::Rgb8).unwrap();
        out
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn accepts_ordinary_and_edge_sizes() {
        assert_eq!(check_image(&png(7, 5)), Ok((7, 5)));
        assert_eq!(check_image(&png(MAX_IMAGE_SIDE, 1)), Ok((MAX_IMAGE_SIDE, 1)));
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn refuses_oversized_images_from_the_header() {
        let e = check_image(&png(6000, 6000)).unwrap_err();
        assert!(e.contains("6000×6000") && e.contains("4096"), "{e}");
        let e = check_image(&png(1, MAX_IMAGE_SIDE + 1)).unwrap_err();
        assert!(e.contains("largest side"), "{e}");
    }

    #[cfg_attr(not(target_arch = "wasm32"), test)]
    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    fn refuses_non_images_and_broken_headers() {
        assert_eq!(check_image(b"not an image").unwrap_err(), "not a PNG or JPEG image");
        let mut truncated = png(8, 8);
        truncated.truncate(20);
        assert!(check_image(&truncated).unwrap_err().starts_with("broken image header"));
        let gif = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;";
        assert!(check_image(gif).unwrap_err().contains("not supported"));
    }
}
