//! The shapes world as training data: one [`Dataset`] per task over the
//! records of `genllava::shapes::dataset`, in the conversation shapes of the
//! paper's Figure A1 (generation and editing answer with the image tokens).
//!
//! Every sample is rendered on demand from `(seed, split, index)`, so the sets
//! are as large as asked for and cost no memory.

use super::config::DataConfig;
use super::data::{Dataset, Kind, Sample};
use genllava::image::RgbImage;
use genllava::shapes::dataset::{self, DatasetConfig, Split};
use genllava::shapes::{Scene, caption};
use genllava::template::{self, Turn};

/// One task of the shapes world over one split.
pub struct ShapesSet {
    pub kind: Kind,
    pub split: Split,
    pub world: DatasetConfig,
    pub len: usize,
    /// Editing answers describe the edited scene before the image
    /// ([`DataConfig::describe_edits`]).
    pub describe: bool,
    /// Described edits caption the source first ([`DataConfig::describe_source`]).
    pub describe_source: bool,
}

/// Between the source's caption and the edited scene's in a description that has both.
pub const BECOMES: &str = " becomes ";

/// The edited scene's caption in a described edit's words (after [`BECOMES`], if there).
pub fn edited_caption(description: &str) -> &str {
    description.rsplit_once(BECOMES).map_or(description, |(_, edited)| edited).trim()
}

impl ShapesSet {
    /// The four sets of `split`, `len` samples each (`textured` backgrounds for the
    /// understanding images; generated and edited images are on white, as the
    /// diffusion decoder was pre-trained), with `turns` questions per understanding
    /// image (the first one the same whatever `turns` is).
    pub fn all(
        split: Split,
        seed: u64,
        image_size: usize,
        len: usize,
        data: &DataConfig,
        turns: usize,
    ) -> Vec<ShapesSet> {
        let textured = data.textured;
        let world = DatasetConfig { seed, image_size, textured, ..DatasetConfig::default() };
        let plain = DatasetConfig { textured: false, ..world };
        let asked = DatasetConfig {
            turns: turns.max(1),
            image_last: data.image_after_question,
            question_weights: data.questions.to_array(),
            scene_weights: {
                let mut w = [0; 9];
                w[..3].copy_from_slice(&data.scenes);
                w
            },
            ..world
        };
        vec![
            ShapesSet { kind: Kind::Text, split, world, len, describe: false, describe_source: false },
            ShapesSet { kind: Kind::Generation, split, world: plain, len, describe: false, describe_source: false },
            ShapesSet {
                kind: Kind::Editing,
                split,
                world: plain,
                len,
                describe: data.describe_edits,
                describe_source: data.describe_source,
            },
            ShapesSet { kind: Kind::Understanding, split, world: asked, len, describe: false, describe_source: false },
        ]
    }
}

fn rgb(img: &dataset::ImageOut) -> anyhow::Result<RgbImage> {
    Ok(RgbImage::new(img.size, img.size, img.rgb.clone())?)
}

/// LLaVA / ShareGPT `conversations` as turns (`human` → user, `gpt` → assistant).
fn turns(record: &serde_json::Value) -> anyhow::Result<Vec<Turn>> {
    let conv = record["conversations"].as_array().ok_or_else(|| anyhow::anyhow!("record has no conversations"))?;
    conv.iter()
        .map(|m| {
            let text = m["value"].as_str().unwrap_or_default();
            match m["from"].as_str() {
                Some("human") => Ok(Turn::user(text)),
                Some("gpt") => Ok(Turn::assistant(text)),
                other => anyhow::bail!("conversation turn from {other:?}"),
            }
        })
        .collect()
}

impl Dataset for ShapesSet {
    fn kind(&self) -> Kind {
        self.kind
    }
    fn len(&self) -> usize {
        self.len
    }
    fn get(&self, i: usize) -> anyhow::Result<Sample> {
        let (w, split) = (&self.world, self.split);
        Ok(match self.kind {
            Kind::Understanding => {
                let s = dataset::understanding(w, split, i);
                Sample {
                    kind: self.kind,
                    image: Some(rgb(&s.images[0])?),
                    turns: turns(&s.record)?,
                    target_image: None,
                    target_caption: None,
                    source_scene: Some(s.images[0].scene.clone()),
                    category: Some(s.category.clone()),
                }
            }
            Kind::Text => {
                let s = dataset::text_only(w, split, i);
                Sample {
                    kind: self.kind,
                    image: None,
                    turns: turns(&s.record)?,
                    target_image: None,
                    target_caption: None,
                    source_scene: None,
                    category: Some(s.category.clone()),
                }
            }
            Kind::Generation => {
                let s = dataset::generation(w, split, i);
                let cap = caption(&s.images[0].scene);
                Sample {
                    kind: self.kind,
                    image: None,
                    turns: vec![Turn::user(template::generation(&cap)), Turn::assistant("")],
                    target_image: Some(rgb(&s.images[0])?),
                    target_caption: Some(cap),
                    source_scene: None,
                    category: Some(s.category.clone()),
                }
            }
            Kind::Editing => {
                let s = dataset::editing(w, split, i);
                let instruction = s.record["edit_prompt"].as_str().unwrap_or_default();
                let target: &Scene = &s.images[1].scene;
                Sample {
                    kind: self.kind,
                    image: Some(rgb(&s.images[0])?),
                    turns: vec![
                        Turn::user(template::editing(instruction)),
                        Turn::assistant(match (self.describe, self.describe_source) {
                            (false, _) => String::new(),
                            (true, false) => caption(target),
                            (true, true) => format!("{}{BECOMES}{}", caption(&s.images[0].scene), caption(target)),
                        }),
                    ],
                    target_image: Some(rgb(&s.images[1])?),
                    target_caption: Some(caption(target)),
                    source_scene: Some(s.images[0].scene.clone()),
                    category: Some(s.category.clone()),
                }
            }
        })
    }
    fn describe(&self) -> String {
        format!("shapes {} ({}, {} samples)", self.kind.name(), self.split.name(), self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_follow_the_figure_a1_shapes() {
        for set in ShapesSet::all(Split::Train, 3, 32, 50, &DataConfig::default(), 1) {
            for i in 0..10 {
                let s = set.get(i).expect("sample");
                assert_eq!(s.kind, set.kind);
                assert_eq!(s, set.get(i).expect("again"), "deterministic");
                match s.kind {
                    Kind::Understanding => {
                        assert!(s.turns[0].text.starts_with("<image>\n") && s.image.is_some());
                        assert!(!s.turns[1].text.is_empty());
                    }
                    Kind::Text => assert!(s.image.is_none() && !s.turns[0].text.contains("<image>")),
                    Kind::Generation => {
                        assert!(s.turns[0].text.starts_with("Generate an image with the following description."));
                        assert_eq!(s.target_image.as_ref().map(|i| i.width), Some(32));
                        let cap = s.target_caption.as_deref().expect("caption");
                        assert!(s.turns[0].text.ends_with(cap));
                    }
                    Kind::Editing => {
                        assert!(s.turns[0].text.contains("<image>\nEdit the image according to the description."));
                        assert!(s.image.is_some() && s.target_image.is_some() && s.source_scene.is_some());
                        assert_ne!(s.image, s.target_image);
                    }
                }
            }
        }
    }

    #[test]
    fn described_edits_answer_with_the_edited_scene_caption() {
        let data = DataConfig { describe_edits: true, ..DataConfig::default() };
        let plain = &ShapesSet::all(Split::Train, 3, 32, 50, &DataConfig::default(), 1)[2];
        let described = &ShapesSet::all(Split::Train, 3, 32, 50, &data, 1)[2];
        for i in 0..10 {
            let (a, b) = (plain.get(i).expect("sample"), described.get(i).expect("sample"));
            assert_eq!(a.turns[1].text, "");
            assert_eq!(Some(&b.turns[1].text), b.target_caption.as_ref());
            assert_eq!((&a.turns[0], &a.image, &a.target_image), (&b.turns[0], &b.image, &b.target_image));
        }
        // With the source first: its caption, then the edited scene's.
        let data = DataConfig { describe_edits: true, describe_source: true, ..DataConfig::default() };
        let both = &ShapesSet::all(Split::Train, 3, 32, 50, &data, 1)[2];
        for i in 0..10 {
            let s = both.get(i).expect("sample");
            let scene = s.source_scene.as_ref().expect("source scene");
            let (source, edited) = s.turns[1].text.split_once(BECOMES).expect("two captions");
            assert_eq!(source, caption(scene));
            assert_eq!(Some(edited), s.target_caption.as_deref());
            assert_eq!(edited_caption(&s.turns[1].text), edited);
        }
    }

    #[test]
    fn more_turns_ask_more_about_the_same_image() {
        let one = &ShapesSet::all(Split::Train, 3, 32, 50, &DataConfig::default(), 1)[3];
        let four = &ShapesSet::all(Split::Train, 3, 32, 50, &DataConfig::default(), 4)[3];
        for i in 0..10 {
            let (a, b) = (one.get(i).expect("sample"), four.get(i).expect("sample"));
            assert_eq!((a.turns.len(), b.turns.len()), (2, 8));
            assert_eq!(a.image, b.image);
            assert_eq!(a.turns[..], b.turns[..2], "the first question does not depend on turns");
            assert!(b.turns.iter().skip(2).all(|t| !t.text.contains("<image>") && !t.text.is_empty()));
        }
    }
}
