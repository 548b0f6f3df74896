//! Edits of a scene, their canonical instructions, the instruction parser and semantics.
//!
//! Instructions: "make the circle blue", "make the red square small", "remove the square",
//! "add a small green triangle at the bottom right", "move the circle to the top right".

use serde::{Deserialize, Serialize};

use super::SplitMix64;
use super::scene::{Cell, Colour, Scene, Shape, Size};
use super::text::{Reference, normalize};
use crate::{Error, Result};

/// One edit. Targets are named by the cell they occupy in the source scene.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Edit {
    /// Change the colour of the shape in `cell`.
    Recolour { cell: Cell, colour: Colour },
    /// Change the size of the shape in `cell`.
    Resize { cell: Cell, size: Size },
    /// Remove the shape in `cell`.
    Remove { cell: Cell },
    /// Add `shape` (its cell must be free).
    Add { shape: Shape },
    /// Move the shape in `cell` to the free cell `to`.
    Move { cell: Cell, to: Cell },
}

impl Edit {
    /// The edited scene; errors when the edit does not fit `scene`.
    pub fn apply(&self, scene: &Scene) -> Result<Scene> {
        let mut out = scene.clone();
        let target = |cell: Cell| {
            scene.at(cell).copied().ok_or_else(|| Error::input("edit", format!("no shape in the {}", cell.name())))
        };
        match *self {
            Edit::Recolour { cell, colour } => out.put(Shape { colour, ..target(cell)? }),
            Edit::Resize { cell, size } => out.put(Shape { size, ..target(cell)? }),
            Edit::Remove { cell } => {
                target(cell)?;
                out.shapes.retain(|s| s.cell != cell);
            }
            Edit::Add { shape } => {
                if scene.at(shape.cell).is_some() {
                    return Err(Error::input("edit", format!("the {} is taken", shape.cell.name())));
                }
                out.put(shape);
            }
            Edit::Move { cell, to } => {
                let s = target(cell)?;
                if scene.at(to).is_some() {
                    return Err(Error::input("edit", format!("the {} is taken", to.name())));
                }
                out.shapes.retain(|x| x.cell != cell);
                out.put(Shape { cell: to, ..s });
            }
        }
        Ok(out)
    }

    /// The canonical instruction for this edit on `scene` (targets described uniquely).
    pub fn instruction(&self, scene: &Scene) -> Result<String> {
        let describe = |cell: Cell| -> Result<String> {
            let s = scene.at(cell).ok_or_else(|| Error::input("edit", format!("no shape in the {}", cell.name())))?;
            Ok(Reference::describe(scene, s))
        };
        Ok(match *self {
            Edit::Recolour { cell, colour } => {
                format!("make the {} {}", describe(cell)?, colour.name())
            }
            Edit::Resize { cell, size } => format!("make the {} {}", describe(cell)?, size.name()),
            Edit::Remove { cell } => format!("remove the {}", describe(cell)?),
            Edit::Add { shape } => format!("add a {} {}", shape.noun_phrase(), shape.cell.phrase()),
            Edit::Move { cell, to } => format!("move the {} to the {}", describe(cell)?, to.name()),
        })
    }

    /// Parses an instruction about `scene` (the scene resolves "the circle").
    pub fn parse(scene: &Scene, instruction: &str) -> Result<Edit> {
        let t = normalize(instruction, false);
        let bad = || Error::input("instruction", format!("cannot parse '{t}'"));
        let cell_of = |phrase: &str| -> Result<Cell> { Ok(Reference::parse(phrase)?.resolve(scene)?.cell) };
        if let Some(rest) = t.strip_prefix("make ") {
            let (phrase, last) = rest.rsplit_once(' ').ok_or_else(bad)?;
            let cell = cell_of(phrase)?;
            if let Some(colour) = Colour::from_name(last) {
                return Ok(Edit::Recolour { cell, colour });
            }
            if let Some(size) = Size::from_name(last) {
                return Ok(Edit::Resize { cell, size });
            }
            return Err(bad());
        }
        if let Some(rest) = t.strip_prefix("remove ").or_else(|| t.strip_prefix("delete ")) {
            return Ok(Edit::Remove { cell: cell_of(rest)? });
        }
        if let Some(rest) = t.strip_prefix("add ") {
            let r = Reference::parse(rest)?;
            return match (r.kind, r.colour, r.size, r.cell) {
                (Some(kind), Some(colour), Some(size), Some(cell)) => {
                    Ok(Edit::Add { shape: Shape { cell, kind, colour, size } })
                }
                _ => Err(bad()),
            };
        }
        if let Some(rest) = t.strip_prefix("move ") {
            let (phrase, dest) = rest.rsplit_once(" to ").ok_or_else(bad)?;
            let dest = dest.strip_prefix("the ").unwrap_or(dest);
            let to = Cell::from_name(dest).ok_or_else(bad)?;
            return Ok(Edit::Move { cell: cell_of(phrase)?, to });
        }
        Err(bad())
    }

    /// A random edit that fits `scene`, keeping at least one and at most `max_shapes` shapes.
    /// `allowed` filters the edited scene (used to keep held-out scenes out of training).
    pub fn random(
        rng: &mut SplitMix64,
        scene: &Scene,
        max_shapes: usize,
        allowed: impl Fn(&Scene) -> bool,
    ) -> Option<Edit> {
        let free = scene.free_cells();
        for _ in 0..32 {
            let target = *rng.pick(&scene.shapes)?;
            let edit = match rng.below(5) {
                0 => {
                    let colour = Colour::ALL[rng.below(Colour::ALL.len())];
                    (colour != target.colour).then_some(Edit::Recolour { cell: target.cell, colour })
                }
                1 => Some(Edit::Resize {
                    cell: target.cell,
                    size: if target.size == Size::Small { Size::Large } else { Size::Small },
                }),
                2 => (scene.shapes.len() > 1).then_some(Edit::Remove { cell: target.cell }),
                3 if scene.shapes.len() < max_shapes => {
                    rng.pick(&free).map(|&cell| Edit::Add { shape: Shape::random_in(rng, cell) })
                }
                _ => rng.pick(&free).map(|&to| Edit::Move { cell: target.cell, to }),
            };
            if let Some(e) = edit
                && e.apply(scene).is_ok_and(|after| allowed(&after))
            {
                return Some(e);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shapes::scene::Kind;
    use crate::shapes::text::parse_caption;

    #[test]
    fn edit_semantics() {
        let s = parse_caption("a large red circle at the top left and a small blue square in the center").unwrap();
        let after = |i: &str| Edit::parse(&s, i).unwrap().apply(&s).unwrap();
        assert_eq!(
            after("make the circle blue"),
            parse_caption("a large blue circle at the top left and a small blue square in the center").unwrap()
        );
        assert_eq!(after("remove the square"), parse_caption("a large red circle at the top left").unwrap());
        assert_eq!(
            after("move the circle to the top right"),
            parse_caption("a small blue square in the center and a large red circle at the top right").unwrap()
        );
        let added = after("add a small green triangle at the bottom right");
        assert_eq!(added.shapes.len(), 3);
        assert_eq!(added.shapes[2].kind, Kind::Triangle);
        assert_eq!(after("make the square large").shapes[1].size, Size::Large);
        assert!(Edit::parse(&s, "remove the triangle").is_err());
        assert!(Edit::parse(&s, "move the circle to the center").unwrap().apply(&s).is_err());
    }

    #[test]
    fn random_edits_round_trip_through_text() {
        let mut rng = SplitMix64::new(9);
        for _ in 0..1000 {
            let s = Scene::random(&mut rng, 3);
            let Some(e) = Edit::random(&mut rng, &s, 3, |_| true) else {
                continue;
            };
            let text = e.instruction(&s).unwrap();
            assert_eq!(Edit::parse(&s, &text).unwrap(), e, "{text}");
            let t = e.apply(&s).unwrap();
            assert_ne!(t, s);
            assert!((1..=3).contains(&t.shapes.len()));
        }
    }
}
