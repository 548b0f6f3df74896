//! Questions about a scene with short canonical answers (so exact match is meaningful),
//! and text-only questions about the world's vocabulary, counting and arithmetic.

use super::SplitMix64;
use super::dataset::Split;
use super::scene::{Cell, Colour, Kind, Scene, Shape, Size};
use super::text::{Reference, caption};

/// One question with its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qa {
    /// "colour", "shape", "size", "count", "position", "existence", "relation", "caption",
    /// or for text-only: "vocabulary", "definition", "arithmetic", "counting", "relation".
    pub category: &'static str,
    /// The question.
    pub question: String,
    /// The short canonical answer.
    pub answer: String,
}

fn qa(category: &'static str, question: String, answer: impl Into<String>) -> Qa {
    Qa { category, question, answer: answer.into() }
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// "circle" when the kind is unique, else "circle at the top left" (never names the colour).
fn without_colour(scene: &Scene, s: &Shape) -> String {
    let same_kind = scene.shapes.iter().filter(|x| x.kind == s.kind).count();
    if same_kind == 1 { s.kind.name().to_string() } else { format!("{} {}", s.kind.name(), s.cell.phrase()) }
}

/// A description without the cell, when one is unambiguous ("circle", "red circle").
fn without_cell(scene: &Scene, s: &Shape) -> Option<String> {
    let d = Reference::describe(scene, s);
    (!d.contains(" the ")).then_some(d)
}

/// The question categories [`ask`] draws from, in the order of its weights. The last,
/// "describe" ("Tell me about the red circle." → "a large red circle at the top left", a
/// referring expression answered with the shape's caption phrase), is training data only:
/// the held-out splits never ask it.
pub const CATEGORIES: [&str; 9] =
    ["colour", "shape", "position", "size", "count", "existence", "relation", "caption", "describe"];

/// How often [`ask`] draws each of [`CATEGORIES`] (relative weights).
pub type Weights = [u32; 9];

/// The world's default and what the held-out splits always use: the first eight
/// categories evenly, no "describe".
pub const UNIFORM: Weights = [1, 1, 1, 1, 1, 1, 1, 1, 0];

/// A random question about `scene`, its category drawn by `weights` (see [`CATEGORIES`]);
/// one that does not fit the scene (e.g. a relation with one shape) falls back to another.
pub fn ask(rng: &mut SplitMix64, scene: &Scene, split: Split, weights: &Weights) -> Qa {
    let Some(&s) = rng.pick(&scene.shapes) else {
        return qa("count", "How many shapes are there?".into(), "0");
    };
    // [`UNIFORM`] draws exactly as `below(8)` does (see `SplitMix64::weighted`).
    let pick = rng.weighted(weights);
    match pick {
        0 => qa("colour", format!("What colour is the {}?", without_colour(scene, &s)), s.colour.name()),
        1 => {
            if rng.chance(0.2)
                && let Some(&cell) = rng.pick(&scene.free_cells())
            {
                let q = format!("What shape is {}?", cell.phrase());
                return qa("shape", q, "nothing");
            }
            qa("shape", format!("What shape is {}?", s.cell.phrase()), s.kind.name())
        }
        2 => match without_cell(scene, &s) {
            Some(d) => qa("position", format!("Where is the {d}?"), s.cell.name()),
            None => qa("shape", format!("What shape is {}?", s.cell.phrase()), s.kind.name()),
        },
        3 => qa("size", format!("What size is the {}?", Reference::describe(scene, &s)), s.size.name()),
        4 => match rng.below(3) {
            0 => qa("count", "How many shapes are there?".into(), scene.shapes.len().to_string()),
            1 => {
                let c = Colour::ALL[rng.below(Colour::ALL.len())];
                let n = scene.shapes.iter().filter(|x| x.colour == c).count();
                qa("count", format!("How many {} shapes are there?", c.name()), n.to_string())
            }
            _ => {
                let k = Kind::ALL[rng.below(Kind::ALL.len())];
                let n = scene.shapes.iter().filter(|x| x.kind == k).count();
                qa("count", format!("How many {}s are there?", k.name()), n.to_string())
            }
        },
        5 => {
            // Half present, half absent; train never mentions a held-out pair.
            let (colour, kind, present) = if rng.chance(0.5) {
                (s.colour, s.kind, true)
            } else {
                loop {
                    let c = Colour::ALL[rng.below(Colour::ALL.len())];
                    let k = Kind::ALL[rng.below(Kind::ALL.len())];
                    let probe = Shape { colour: c, kind: k, ..s };
                    let present = scene.shapes.iter().any(|x| x.colour == c && x.kind == k);
                    if split.allows(&probe) {
                        break (c, k, present);
                    }
                }
            };
            let q = format!("Is there a {} {}?", colour.name(), kind.name());
            qa("existence", q, yes_no(present))
        }
        6 if scene.shapes.len() >= 2 => {
            let others: Vec<Shape> = scene.shapes.iter().copied().filter(|x| *x != s).collect();
            let o = others[rng.below(others.len())];
            let (a, b) = (Reference::describe(scene, &s), Reference::describe(scene, &o));
            let (rel, holds) = match rng.below(4) {
                0 => ("to the left of", s.cell.col < o.cell.col),
                1 => ("to the right of", s.cell.col > o.cell.col),
                2 => ("above", s.cell.row < o.cell.row),
                _ => ("below", s.cell.row > o.cell.row),
            };
            qa("relation", format!("Is the {a} {rel} the {b}?"), yes_no(holds))
        }
        8 => match without_cell(scene, &s) {
            Some(d) => {
                let phrase = format!("a {} {}", s.noun_phrase(), s.cell.phrase());
                qa("describe", format!("Tell me about the {d}."), phrase)
            }
            None => qa("shape", format!("What shape is {}?", s.cell.phrase()), s.kind.name()),
        },
        _ => {
            let q = ["Describe the image.", "What is in the image?"][rng.below(2)];
            qa("caption", q.into(), caption(scene))
        }
    }
}

fn list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} and {}", init.join(", "), last),
    }
}

/// A random text-only question (no image).
pub fn text_only(rng: &mut SplitMix64, split: Split) -> Qa {
    let colours: Vec<&str> = Colour::ALL.iter().map(|c| c.name()).collect();
    let kinds: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
    let num = |n: usize| n.to_string();
    match rng.below(6) {
        0 => match rng.below(5) {
            0 => qa("vocabulary", "What colours can shapes have?".into(), list(&colours)),
            1 => qa("vocabulary", "What kinds of shapes are there?".into(), list(&kinds)),
            2 => qa("vocabulary", "What sizes can a shape have?".into(), "small and large"),
            3 => {
                let cells: Vec<&str> = Cell::all().map(|c| c.name()).collect();
                qa("vocabulary", "Where can a shape be?".into(), list(&cells))
            }
            _ => qa("vocabulary", "How many places are there for shapes?".into(), "9"),
        },
        1 => {
            let k = Kind::ALL[rng.below(3)];
            let sides = match k {
                Kind::Circle => 0,
                Kind::Square => 4,
                Kind::Triangle => 3,
            };
            if rng.chance(0.5) {
                qa("definition", format!("How many sides does a {} have?", k.name()), num(sides))
            } else {
                qa("definition", format!("How many corners does a {} have?", k.name()), num(sides))
            }
        }
        2 => {
            let (a, b) = (rng.below(10), rng.below(10));
            if rng.chance(0.5) {
                qa("arithmetic", format!("What is {a} plus {b}?"), num(a + b))
            } else {
                let (hi, lo) = (a.max(b), a.min(b));
                qa("arithmetic", format!("What is {hi} minus {lo}?"), num(hi - lo))
            }
        }
        3 => {
            // Count the shapes named in a sentence (only allowed pairs in train).
            let n = 1 + rng.below(4);
            let mut named = Vec::new();
            while named.len() < n {
                let s = Shape::random_in(rng, Cell::from_index(0));
                if split.allows(&s) {
                    named.push(format!("a {} {}", s.colour.name(), s.kind.name()));
                }
            }
            let refs: Vec<&str> = named.iter().map(|s| s.as_str()).collect();
            let q = format!("If a picture shows {}, how many shapes does it show?", list(&refs));
            qa("counting", q, num(n))
        }
        4 => {
            let k = Kind::ALL[rng.below(3)];
            let size = Size::ALL[rng.below(2)];
            let other = if size == Size::Small { Size::Large } else { Size::Small };
            let q = format!("What is the opposite of a {} {}?", size.name(), k.name());
            qa("definition", q, format!("a {} {}", other.name(), k.name()))
        }
        _ => {
            let (a, b) = (rng.below(3), rng.below(3));
            let q = format!(
                "A shape is {} and another is {}. Is the first one to the left of the second?",
                Cell::from_index(3 + a as u8).phrase(),
                Cell::from_index(6 + b as u8).phrase()
            );
            qa("relation", q, yes_no(a < b))
        }
    }
}
