//! Canonical captions, their parser, noun-phrase references, and answer normalisation.
//!
//! Caption grammar (canonical form, what [`caption`] writes):
//! `a {size} {colour} {kind} {at the CELL | in the center}`, phrases joined as
//! "p1", "p1 and p2", "p1, p2 and p3". The parser also accepts "an", "big", "middle",
//! "centre", a trailing full stop and any letter case.

use super::scene::{Cell, Colour, Kind, Scene, Shape, Size};
use crate::{Error, Result};

/// The canonical caption of `scene` ("an empty image" for no shapes).
pub fn caption(scene: &Scene) -> String {
    let phrases: Vec<String> =
        scene.shapes.iter().map(|s| format!("a {} {}", s.noun_phrase(), s.cell.phrase())).collect();
    match phrases.as_slice() {
        [] => "an empty image".to_string(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {}", init.join(", "), last),
    }
}

/// Lower-cases, maps punctuation to spaces (keeping commas when `keep_commas`) and
/// collapses whitespace.
pub fn normalize(text: &str, keep_commas: bool) -> String {
    let cleaned: String = text
        .to_lowercase()
        .chars()
        .map(|c| if c.is_alphanumeric() || (keep_commas && c == ',') { c } else { ' ' })
        .collect();
    cleaned.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses a caption back into a scene. Every phrase must name size, colour, kind and cell.
pub fn parse_caption(text: &str) -> Result<Scene> {
    let t = normalize(text, true);
    if t == "an empty image" || t == "nothing" || t.is_empty() {
        return Ok(Scene::default());
    }
    let mut scene = Scene::default();
    for phrase in t.replace(" and ", ",").split(',') {
        let phrase = phrase.trim();
        if phrase.is_empty() {
            continue;
        }
        let r = Reference::parse(phrase)?;
        let shape = match (r.kind, r.colour, r.size, r.cell) {
            (Some(kind), Some(colour), Some(size), Some(cell)) => Shape { cell, kind, colour, size },
            _ => {
                return Err(Error::input("caption", format!("phrase '{phrase}' lacks size, colour, kind or position")));
            }
        };
        if scene.at(shape.cell).is_some() {
            return Err(Error::input("caption", format!("two shapes in the {}", shape.cell.name())));
        }
        scene.put(shape);
    }
    Ok(scene)
}

/// A noun phrase naming shapes: "the red circle", "a small square at the top left".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reference {
    /// Required kind, if named.
    pub kind: Option<Kind>,
    /// Required colour, if named.
    pub colour: Option<Colour>,
    /// Required size, if named.
    pub size: Option<Size>,
    /// Required cell, if named.
    pub cell: Option<Cell>,
}

impl Reference {
    /// Parses `[a|an|the] [size] [colour] kind [at|in the CELL]` (normalised text).
    pub fn parse(phrase: &str) -> Result<Reference> {
        let t = normalize(phrase, false);
        let words: Vec<&str> = t.split(' ').collect();
        let mut r = Reference::default();
        let mut i = 0;
        while i < words.len() {
            let w = words[i];
            if r.kind.is_none() {
                if let Some(k) = Kind::from_name(w) {
                    r.kind = Some(k);
                } else if let Some(c) = Colour::from_name(w) {
                    r.colour = Some(c);
                } else if let Some(s) = Size::from_name(w) {
                    r.size = Some(s);
                } else if !matches!(w, "a" | "an" | "the" | "one" | "shape") {
                    return Err(Error::input("phrase", format!("unknown word '{w}' in '{t}'")));
                }
                i += 1;
            } else {
                // After the noun: "at the CELL" / "in the CELL" / "on the CELL".
                let rest = words[i..]
                    .iter()
                    .copied()
                    .skip_while(|w| matches!(*w, "at" | "in" | "on" | "the"))
                    .collect::<Vec<_>>()
                    .join(" ");
                r.cell = Some(
                    Cell::from_name(&rest)
                        .ok_or_else(|| Error::input("phrase", format!("unknown position '{rest}' in '{t}'")))?,
                );
                break;
            }
        }
        if r.kind.is_none() {
            return Err(Error::input("phrase", format!("no shape named in '{t}'")));
        }
        Ok(r)
    }

    /// Whether `shape` fits every named attribute.
    pub fn matches(&self, shape: &Shape) -> bool {
        self.kind.is_none_or(|k| k == shape.kind)
            && self.colour.is_none_or(|c| c == shape.colour)
            && self.size.is_none_or(|s| s == shape.size)
            && self.cell.is_none_or(|c| c == shape.cell)
    }

    /// The reference in words: "a small red circle at the top left" (the named parts only).
    pub fn phrase(&self) -> String {
        let mut words = vec!["a"];
        words.extend(self.size.map(|s| s.name()));
        words.extend(self.colour.map(|c| c.name()));
        words.push(self.kind.map_or("shape", |k| k.name()));
        let mut out = words.join(" ");
        if let Some(cell) = self.cell {
            let at = if cell.name() == "center" { "in" } else { "at" };
            out += &format!(" {at} the {}", cell.name());
        }
        out
    }

    /// The one shape of `scene` this refers to (error when none or several).
    pub fn resolve(&self, scene: &Scene) -> Result<Shape> {
        let found: Vec<&Shape> = scene.shapes.iter().filter(|s| self.matches(s)).collect();
        match found.as_slice() {
            [one] => Ok(**one),
            [] => Err(Error::input("reference", format!("no shape in the scene is {}", self.phrase()))),
            _ => Err(Error::input("reference", format!("several shapes in the scene are {}", self.phrase()))),
        }
    }

    /// The shortest unambiguous description of `shape` within `scene`, without article:
    /// "circle", "red circle", or "circle at the top left".
    pub fn describe(scene: &Scene, shape: &Shape) -> String {
        let count = |r: Reference| scene.shapes.iter().filter(|s| r.matches(s)).count();
        let by_kind = Reference { kind: Some(shape.kind), ..Default::default() };
        if count(by_kind) == 1 {
            return shape.kind.name().to_string();
        }
        if count(Reference { colour: Some(shape.colour), ..by_kind }) == 1 {
            return format!("{} {}", shape.colour.name(), shape.kind.name());
        }
        format!("{} {}", shape.kind.name(), shape.cell.phrase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shapes::SplitMix64;

    #[test]
    fn caption_round_trips() {
        let mut rng = SplitMix64::new(11);
        for _ in 0..2000 {
            let s = Scene::random(&mut rng, 4);
            let c = caption(&s);
            assert_eq!(parse_caption(&c).unwrap(), s, "{c}");
        }
        assert_eq!(parse_caption("an empty image").unwrap(), Scene::default());
    }

    #[test]
    fn caption_example_and_variants() {
        let s = parse_caption("a large red circle at the top left and a small blue square in the center").unwrap();
        assert_eq!(s.shapes.len(), 2);
        assert_eq!(s.shapes[0].kind, Kind::Circle);
        assert_eq!(s.shapes[1].cell, Cell { row: 1, col: 1 });
        let v = parse_caption("A big Red circle at the top-left, and a small blue square in the middle.").unwrap();
        assert_eq!(v, s);
        assert!(parse_caption("a red circle at the top left").is_err()); // no size
        assert!(parse_caption("a large red blob at the top left").is_err());
    }

    #[test]
    fn references_describe_uniquely() {
        let mut rng = SplitMix64::new(5);
        for _ in 0..500 {
            let s = Scene::random(&mut rng, 3);
            for shape in &s.shapes {
                let d = Reference::describe(&s, shape);
                assert_eq!(Reference::parse(&d).unwrap().resolve(&s).unwrap(), *shape, "{d}");
            }
        }
    }
}
