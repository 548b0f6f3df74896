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
use genllava::shapes::{Cell, Colour, Edit, Kind as ShapeKind, Scene, Shape, Size, caption, parse_caption};
use genllava::template::{self, Turn};

/// One task of the shapes world over one split.
pub struct ShapesSet {
    pub kind: Kind,
    pub split: Split,
    pub world: DatasetConfig,
    pub len: usize,
    /// How editing answers describe the edit before the image.
    pub describe: Describe,
}

/// The words an edit's answer writes before `[SOI]` ([`DataConfig::describe_edits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Describe {
    /// None: the answer is the image alone.
    Nothing,
    /// The edited scene's caption.
    Edited,
    /// `<source caption> becomes <edited caption>` ([`DataConfig::describe_source`]).
    SourceThenEdited,
    /// Cell by cell ([`DataConfig::describe_grid`]): the source's [`grid`], the instruction
    /// with its shape named by cell ([`resolved`]), then the edited scene's grid, joined by
    /// [`GRID_STEP`].
    Grid,
    /// [`Describe::Grid`] without the source's cells ([`DataConfig::describe_unwritten_source`]):
    /// the instruction resolved by cell, then the edited scene's grid.
    ResolvedGrid,
}

impl Describe {
    /// The description `data` asks for.
    pub fn of(data: &DataConfig) -> Describe {
        match (data.describe_edits, data.describe_source, data.describe_grid) {
            (false, ..) => Describe::Nothing,
            (true, _, true) if data.describe_unwritten_source => Describe::ResolvedGrid,
            (true, _, true) => Describe::Grid,
            (true, true, false) => Describe::SourceThenEdited,
            (true, false, false) => Describe::Edited,
        }
    }

    /// The answer's words for the edit of `source` into `target` by `instruction`.
    pub fn words(self, source: &Scene, instruction: &str, target: &Scene) -> anyhow::Result<String> {
        Ok(match self {
            Describe::Nothing => String::new(),
            Describe::Edited => caption(target),
            Describe::SourceThenEdited => format!("{}{BECOMES}{}", caption(source), caption(target)),
            Describe::Grid => {
                let edit = Edit::parse(source, instruction)?;
                format!("{}{GRID_STEP}{}{GRID_STEP}{}", grid(source), resolved(&edit), grid(target))
            }
            Describe::ResolvedGrid => {
                let edit = Edit::parse(source, instruction)?;
                format!("{}{GRID_STEP}{}", resolved(&edit), grid(target))
            }
        })
    }
}

/// Between the source's caption and the edited scene's in a description that has both.
pub const BECOMES: &str = " becomes ";

/// Between the steps of a [`Describe::Grid`] description.
pub const GRID_STEP: &str = "; ";

/// The edited scene's caption in a described edit's words (after [`BECOMES`], if there).
pub fn edited_caption(description: &str) -> &str {
    description.rsplit_once(BECOMES).map_or(description, |(_, edited)| edited).trim()
}

/// The edited scene a description of any [`Describe`] form names, if its words parse.
pub fn described_scene(description: &str) -> Option<Scene> {
    match description.rsplit_once(GRID_STEP.trim_end()) {
        Some((_, last)) => parse_grid(last.trim()),
        None => parse_caption(edited_caption(description)).ok(),
    }
}

/// The scene cell by cell in reading order: "top left empty, top center small blue
/// circle, …, bottom right empty" (always nine entries, so the k-th names cell k).
pub fn grid(scene: &Scene) -> String {
    Cell::all()
        .map(|cell| match scene.at(cell) {
            Some(s) => format!("{} {}", cell.name(), s.noun_phrase()),
            None => format!("{} empty", cell.name()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Parses [`grid`]'s words back into a scene (None unless all nine cells are named in order).
pub fn parse_grid(text: &str) -> Option<Scene> {
    let entries: Vec<&str> = text.split(',').map(str::trim).collect();
    if entries.len() != 9 {
        return None;
    }
    let mut scene = Scene::default();
    for (cell, entry) in Cell::all().zip(entries) {
        let rest = entry.strip_prefix(cell.name())?.trim();
        if rest == "empty" {
            continue;
        }
        let words: Vec<&str> = rest.split(' ').collect();
        let [size, colour, kind] = words[..] else { return None };
        let shape = Shape {
            cell,
            size: Size::from_name(size)?,
            colour: Colour::from_name(colour)?,
            kind: ShapeKind::from_name(kind)?,
        };
        scene.put(shape);
    }
    Some(scene)
}

/// The edit with its shape named by the cell it occupies: "make top center blue",
/// "make top center large", "remove top center", "add bottom right small green
/// triangle", "move top center to bottom right".
pub fn resolved(edit: &Edit) -> String {
    match *edit {
        Edit::Recolour { cell, colour } => format!("make {} {}", cell.name(), colour.name()),
        Edit::Resize { cell, size } => format!("make {} {}", cell.name(), size.name()),
        Edit::Remove { cell } => format!("remove {}", cell.name()),
        Edit::Add { shape } => format!("add {} {}", shape.cell.name(), shape.noun_phrase()),
        Edit::Move { cell, to } => format!("move {} to {}", cell.name(), to.name()),
    }
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
            ShapesSet { kind: Kind::Text, split, world, len, describe: Describe::Nothing },
            ShapesSet { kind: Kind::Generation, split, world: plain, len, describe: Describe::Nothing },
            ShapesSet { kind: Kind::Editing, split, world: plain, len, describe: Describe::of(data) },
            ShapesSet { kind: Kind::Understanding, split, world: asked, len, describe: Describe::Nothing },
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
                    instruction: None,
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
                    instruction: None,
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
                    instruction: None,
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
                        Turn::assistant(self.describe.words(&s.images[0].scene, instruction, target)?),
                    ],
                    target_image: Some(rgb(&s.images[1])?),
                    target_caption: Some(caption(target)),
                    instruction: Some(instruction.to_string()),
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
    fn grid_descriptions_name_every_cell_then_the_resolved_edit_then_the_result() {
        let data = DataConfig { describe_edits: true, describe_grid: true, ..DataConfig::default() };
        let set = &ShapesSet::all(Split::Train, 3, 32, 200, &data, 1)[2];
        let mut kinds = std::collections::BTreeSet::new();
        for i in 0..200 {
            let s = set.get(i).expect("sample");
            let source = s.source_scene.as_ref().expect("source scene");
            let steps: Vec<&str> = s.turns[1].text.split(GRID_STEP).collect();
            assert_eq!(steps.len(), 3, "{}", s.turns[1].text);
            assert_eq!(parse_grid(steps[0]).as_ref(), Some(source));
            let edited = described_scene(&s.turns[1].text).expect("edited grid parses");
            assert_eq!(Some(caption(&edited)), s.target_caption);
            // The resolved step names the edit's cell, not its words.
            let edit = Edit::parse(source, s.turns[0].text.rsplit_once(". ").expect("instruction").1).expect("edit");
            assert_eq!(steps[1], resolved(&edit));
            kinds.insert(steps[1].split(' ').next().expect("verb").to_string());
        }
        assert_eq!(kinds.into_iter().collect::<Vec<_>>(), ["add", "make", "move", "remove"]);
    }

    #[test]
    fn unwritten_source_descriptions_resolve_then_draw_the_edited_cells() {
        let grid_data = DataConfig { describe_edits: true, describe_grid: true, ..DataConfig::default() };
        let data = DataConfig { describe_unwritten_source: true, ..grid_data.clone() };
        let full = &ShapesSet::all(Split::Train, 3, 32, 50, &grid_data, 1)[2];
        let short = &ShapesSet::all(Split::Train, 3, 32, 50, &data, 1)[2];
        for i in 0..50 {
            let (f, s) = (full.get(i).expect("sample"), short.get(i).expect("sample"));
            // The same edit, its description without the source's cells.
            let steps: Vec<&str> = f.turns[1].text.split(GRID_STEP).collect();
            assert_eq!(s.turns[1].text, format!("{}{GRID_STEP}{}", steps[1], steps[2]));
            let edited = described_scene(&s.turns[1].text).expect("edited grid parses");
            assert_eq!(Some(caption(&edited)), s.target_caption);
        }
    }

    #[test]
    fn grids_round_trip_and_refuse_what_is_not_one() {
        let scene = parse_caption("a small blue circle at the top center and a large red square in the center")
            .expect("caption");
        let g = grid(&scene);
        assert_eq!(
            g,
            "top left empty, top center small blue circle, top right empty, center left empty, \
             center large red square, center right empty, bottom left empty, bottom center empty, bottom right empty"
        );
        assert_eq!(parse_grid(&g), Some(scene.clone()));
        assert_eq!(described_scene(&format!("x; remove center; {g}")), Some(scene.clone()));
        // Old forms still read: the edited caption after "becomes", or the caption alone.
        assert_eq!(described_scene(&format!("an empty image becomes {}", caption(&scene))), Some(scene));
        for bad in [
            "top left empty",
            &g.replacen("top left", "top right", 1),
            &g.replacen("small blue circle", "small blue", 1),
        ] {
            assert_eq!(parse_grid(bad), None, "{bad}");
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
