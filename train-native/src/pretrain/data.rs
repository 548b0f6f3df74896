//! `train-native data`: write the shapes world to disk in the layouts the public
//! data sets use, so the training code reads our world exactly as it would read theirs.
//!
//! ```text
//! DIR/images/*.png                      every image a record names
//! DIR/understanding_{split}.json        LLaVA conversations (LLaVA-Instruct layout)
//! DIR/generation_{split}.json           caption ↔ image (LLaVA-Pretrain layout)
//! DIR/editing_{split}.json              InstructPix2Pix triples
//! DIR/text_{split}.json                 ShareGPT conversations
//! DIR/meta.json                         generator settings and record counts
//! ```
//! Splits are `train` (`--n` records per task), `test` and `novel` (a tenth each, at
//! least one). The same arguments give the same bytes.

use anyhow::Context;
use genllava::shapes::dataset::{self, DatasetConfig, ImageOut, Sample, Split};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct DataArgs {
    /// Output folder (created; existing files of the same names are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Master seed of the world.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Train records per task (test and novel get a tenth each).
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// Image side in pixels.
    #[arg(long, default_value_t = 64, value_parser = parse_size)]
    pub size: usize,
}

/// `32` or `64`.
pub fn parse_size(s: &str) -> Result<usize, String> {
    match s {
        "32" => Ok(32),
        "64" => Ok(64),
        _ => Err(format!("`{s}`: the shapes world renders 32 or 64 pixel images")),
    }
}

/// A task's record generator.
type Generator = fn(&DatasetConfig, Split, usize) -> Sample;

/// The four tasks with their generator functions.
const TASKS: [(&str, Generator); 4] = [
    ("understanding", dataset::understanding),
    ("generation", dataset::generation),
    ("editing", dataset::editing),
    ("text", dataset::text_only),
];

/// PNG bytes of a rendered image.
pub fn png(img: &ImageOut) -> anyhow::Result<Vec<u8>> {
    let side = u32::try_from(img.size).context("image size")?;
    let buf = image::RgbImage::from_raw(side, side, img.rgb.clone()).context("image buffer size")?;
    let mut out = std::io::Cursor::new(Vec::new());
    buf.write_to(&mut out, image::ImageFormat::Png).context("PNG encoding")?;
    Ok(out.into_inner())
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| path.display().to_string())
}

/// Records per split for `n` train records.
pub fn split_sizes(n: usize) -> [(Split, usize); 3] {
    let held = (n / 10).max(1);
    [(Split::Train, n), (Split::Test, held), (Split::Novel, held)]
}

pub fn run(args: DataArgs) -> anyhow::Result<()> {
    let cfg = DatasetConfig { seed: args.seed, image_size: args.size, ..DatasetConfig::default() };
    let images = args.out.join("images");
    std::fs::create_dir_all(&images).with_context(|| images.display().to_string())?;
    let mut counts = serde_json::Map::new();
    for (split, n) in split_sizes(args.n) {
        for (task, make) in TASKS {
            let mut records: Vec<Value> = Vec::with_capacity(n);
            for i in 0..n {
                let sample = make(&cfg, split, i);
                for img in &sample.images {
                    write(&images.join(&img.file), &png(img)?)?;
                }
                records.push(sample.record);
            }
            let file = format!("{task}_{}.json", split.name());
            let bytes = serde_json::to_vec_pretty(&records)?;
            crate::files::write_atomic(&args.out.join(&file), &bytes)?;
            counts.insert(file, json!(n));
        }
    }
    let meta = json!({
        "generator": "genllava shapes world",
        "seed": cfg.seed,
        "image_size": cfg.image_size,
        "max_shapes": cfg.max_shapes,
        "turns": cfg.turns,
        "textured": cfg.textured,
        "held_out_pairs": dataset::HELD_OUT_PAIRS.iter().map(|(c, k)| format!("{} {}", c.name(), k.name())).collect::<Vec<_>>(),
        "records": counts,
    });
    crate::files::write_atomic(&args.out.join("meta.json"), &serde_json::to_vec_pretty(&meta)?)?;
    println!("wrote the shapes world ({} train records per task) to {}", args.n, args.out.display());
    Ok(())
}
