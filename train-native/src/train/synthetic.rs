//! A built-in understanding set that needs no files: images of one solid colour
//! (lightly shaded per sample) and questions about that colour. Small enough to
//! learn in seconds, real enough that a model that has not learned answers wrong.

use super::data::{Dataset, Kind, Sample, splitmix64};
use genllava::image::RgbImage;
use genllava::template::Turn;

/// The colours and their names.
pub const COLOURS: [(&str, [u8; 3]); 8] = [
    ("red", [220, 30, 30]),
    ("green", [30, 180, 40]),
    ("blue", [30, 60, 220]),
    ("yellow", [235, 220, 40]),
    ("white", [245, 245, 245]),
    ("black", [15, 15, 15]),
    ("orange", [245, 140, 20]),
    ("purple", [130, 40, 170]),
];

/// The ways the question is asked.
pub const QUESTIONS: [&str; 3] =
    ["What colour is the image?", "Which colour do you see?", "Name the colour of this picture."];

/// The answer to every question about a `name` image.
pub fn answer(name: &str) -> String {
    format!("The colour is {name}.")
}

/// `len` samples of side `size`; `seed` varies the shading.
pub struct Colours {
    pub len: usize,
    pub size: usize,
    pub seed: u64,
}

impl Colours {
    /// The image of colour `c` with shading from hash `h`.
    pub fn image(&self, c: usize, h: u64) -> RgbImage {
        let shade = (h % 41) as i16 - 20;
        let rgb = COLOURS[c].1.map(|v| (v as i16 + shade).clamp(0, 255) as u8);
        RgbImage::filled(self.size, self.size, rgb)
    }
}

impl Dataset for Colours {
    fn kind(&self) -> Kind {
        Kind::Understanding
    }
    fn len(&self) -> usize {
        self.len
    }
    fn get(&self, i: usize) -> anyhow::Result<Sample> {
        let c = i % COLOURS.len();
        let q = (i / COLOURS.len()) % QUESTIONS.len();
        let h = splitmix64(self.seed ^ i as u64);
        Ok(Sample {
            kind: Kind::Understanding,
            image: Some(self.image(c, h)),
            turns: vec![Turn::user(format!("<image>\n{}", QUESTIONS[q])), Turn::assistant(answer(COLOURS[c].0))],
            target_image: None,
            target_caption: None,
            instruction: None,
            source_scene: None,
            category: None,
        })
    }
    fn describe(&self) -> String {
        format!("colours (built-in, {} samples)", self.len)
    }
}
