//! The vocabulary of the shapes world and the [`Scene`] struct.

use serde::{Deserialize, Serialize};

use super::SplitMix64;

/// Shape kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Circle,
    Square,
    Triangle,
}

impl Kind {
    /// Every kind, in canonical order.
    pub const ALL: [Kind; 3] = [Kind::Circle, Kind::Square, Kind::Triangle];

    /// The English noun.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Circle => "circle",
            Kind::Square => "square",
            Kind::Triangle => "triangle",
        }
    }

    /// Parses a noun (singular or plural).
    pub fn from_name(word: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| word == k.name() || word.strip_suffix('s') == Some(k.name()))
    }
}

/// Shape colours: six well separated, saturated RGB values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Colour {
    Red,
    Green,
    Blue,
    Yellow,
    Purple,
    Orange,
}

impl Colour {
    /// Every colour, in canonical order.
    pub const ALL: [Colour; 6] =
        [Colour::Red, Colour::Green, Colour::Blue, Colour::Yellow, Colour::Purple, Colour::Orange];

    /// The English adjective.
    pub fn name(self) -> &'static str {
        match self {
            Colour::Red => "red",
            Colour::Green => "green",
            Colour::Blue => "blue",
            Colour::Yellow => "yellow",
            Colour::Purple => "purple",
            Colour::Orange => "orange",
        }
    }

    /// Parses an adjective.
    pub fn from_name(word: &str) -> Option<Colour> {
        Colour::ALL.into_iter().find(|c| word == c.name())
    }

    /// The palette value.
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Colour::Red => [220, 30, 40],
            Colour::Green => [30, 160, 60],
            Colour::Blue => [30, 70, 220],
            Colour::Yellow => [245, 215, 20],
            Colour::Purple => [130, 40, 170],
            Colour::Orange => [245, 120, 10],
        }
    }
}

/// Two sizes; the half-extent of a shape as a fraction of a grid cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    Small,
    Large,
}

impl Size {
    /// Both sizes.
    pub const ALL: [Size; 2] = [Size::Small, Size::Large];

    /// The English adjective.
    pub fn name(self) -> &'static str {
        match self {
            Size::Small => "small",
            Size::Large => "large",
        }
    }

    /// Parses an adjective ("big" is accepted for large).
    pub fn from_name(word: &str) -> Option<Size> {
        match word {
            "small" => Some(Size::Small),
            "large" | "big" => Some(Size::Large),
            _ => None,
        }
    }

    /// Half-extent (circle radius) in units of the cell side.
    pub fn radius(self) -> f32 {
        match self {
            Size::Small => 0.25,
            Size::Large => 0.40,
        }
    }
}

/// A cell of the 3×3 grid: `row` 0 is the top, `col` 0 the left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Cell {
    /// 0 (top) ..= 2 (bottom).
    pub row: u8,
    /// 0 (left) ..= 2 (right).
    pub col: u8,
}

const CELL_NAMES: [&str; 9] = [
    "top left",
    "top center",
    "top right",
    "center left",
    "center",
    "center right",
    "bottom left",
    "bottom center",
    "bottom right",
];

impl Cell {
    /// The nine cells in reading order.
    pub fn all() -> impl Iterator<Item = Cell> {
        (0..9u8).map(Cell::from_index)
    }

    /// Cell from its reading-order index `0..9` (wraps modulo 9).
    pub fn from_index(i: u8) -> Cell {
        let i = i % 9;
        Cell { row: i / 3, col: i % 3 }
    }

    /// Reading-order index `0..9`.
    pub fn index(self) -> usize {
        self.row as usize * 3 + self.col as usize
    }

    /// The English name ("top left", "center", ...).
    pub fn name(self) -> &'static str {
        CELL_NAMES[self.index().min(8)]
    }

    /// Parses a name; accepts "middle" for "center" and "centre".
    pub fn from_name(text: &str) -> Option<Cell> {
        let t = text.replace("middle", "center").replace("centre", "center");
        let t = t.trim();
        let alias = match t {
            "top" => "top center",
            "bottom" => "bottom center",
            "left" => "center left",
            "right" => "center right",
            "left center" => "center left",
            "right center" => "center right",
            "center center" => "center",
            other => other,
        };
        CELL_NAMES.iter().position(|n| *n == alias).map(|i| Cell::from_index(i as u8))
    }

    /// The phrase used in sentences: "in the center", "at the top left".
    pub fn phrase(self) -> String {
        if self.index() == 4 { "in the center".to_string() } else { format!("at the {}", self.name()) }
    }
}

/// One shape in one grid cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Shape {
    /// Which cell holds it (field first so sorting is reading order).
    pub cell: Cell,
    /// Circle, square or triangle.
    pub kind: Kind,
    /// Fill colour.
    pub colour: Colour,
    /// Small or large.
    pub size: Size,
}

impl Shape {
    /// "large red circle".
    pub fn noun_phrase(&self) -> String {
        format!("{} {} {}", self.size.name(), self.colour.name(), self.kind.name())
    }
}

/// A scene: up to nine shapes, at most one per cell, kept sorted in reading order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Scene {
    /// Shapes in reading order of their cells.
    pub shapes: Vec<Shape>,
}

impl Scene {
    /// A scene from shapes in any order; later shapes replace earlier ones in the same cell.
    pub fn new(shapes: impl IntoIterator<Item = Shape>) -> Scene {
        let mut s = Scene::default();
        for shape in shapes {
            s.put(shape);
        }
        s
    }

    /// Puts `shape` into its cell (replacing what was there), keeping reading order.
    pub fn put(&mut self, shape: Shape) {
        self.shapes.retain(|s| s.cell != shape.cell);
        self.shapes.push(shape);
        self.shapes.sort();
    }

    /// The shape in `cell`, if any.
    pub fn at(&self, cell: Cell) -> Option<&Shape> {
        self.shapes.iter().find(|s| s.cell == cell)
    }

    /// Cells holding no shape, in reading order.
    pub fn free_cells(&self) -> Vec<Cell> {
        Cell::all().filter(|c| self.at(*c).is_none()).collect()
    }

    /// A uniformly random scene of `1..=max_shapes` shapes (`max_shapes` clamped to 1..=9).
    pub fn random(rng: &mut SplitMix64, max_shapes: usize) -> Scene {
        Scene::random_weighted(rng, max_shapes, &[1; 9])
    }

    /// A random scene whose number of shapes `n` in `1..=max_shapes` is drawn with relative
    /// weight `weights[n - 1]` (entries past `max_shapes` are ignored; all zero counts as all
    /// one). Drawn by [`SplitMix64::weighted`], so equal weights draw exactly as
    /// [`Scene::random`] does.
    pub fn random_weighted(rng: &mut SplitMix64, max_shapes: usize, weights: &[u32; 9]) -> Scene {
        let max = max_shapes.clamp(1, 9);
        let used = &weights[..max];
        let n = 1 + if used.iter().all(|&w| w == 0) { rng.below(max) } else { rng.weighted(used) };
        let mut cells: Vec<Cell> = Cell::all().collect();
        rng.shuffle(&mut cells);
        Scene::new(cells.into_iter().take(n).map(|cell| Shape::random_in(rng, cell)))
    }

    /// A stable 64-bit fingerprint of the scene (independent of platform and Rust version).
    pub fn fingerprint(&self) -> u64 {
        let mut h = SplitMix64::new(0x5EED).next_u64();
        for s in &self.shapes {
            let code = s.cell.index() as u64 * 64 + s.kind as u64 * 16 + s.colour as u64 * 2 + s.size as u64;
            h = SplitMix64::new(h ^ code).next_u64();
        }
        h
    }
}

impl Shape {
    /// A random shape in `cell`.
    pub fn random_in(rng: &mut SplitMix64, cell: Cell) -> Shape {
        Shape {
            cell,
            kind: Kind::ALL[rng.below(Kind::ALL.len())],
            colour: Colour::ALL[rng.below(Colour::ALL.len())],
            size: Size::ALL[rng.below(Size::ALL.len())],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_names_round_trip() {
        for c in Cell::all() {
            assert_eq!(Cell::from_name(c.name()), Some(c));
        }
        assert_eq!(Cell::from_name("middle"), Some(Cell { row: 1, col: 1 }));
        assert_eq!(Cell::from_name("top"), Some(Cell { row: 0, col: 1 }));
    }

    #[test]
    fn scene_is_sorted_and_one_per_cell() {
        let mut rng = SplitMix64::new(7);
        for _ in 0..200 {
            let s = Scene::random(&mut rng, 3);
            assert!((1..=3).contains(&s.shapes.len()));
            assert!(s.shapes.windows(2).all(|w| w[0].cell < w[1].cell));
        }
    }

    #[test]
    fn palette_is_well_separated() {
        for a in Colour::ALL {
            for b in Colour::ALL {
                if a != b {
                    let d: i32 = (0..3).map(|i| (a.rgb()[i] as i32 - b.rgb()[i] as i32).pow(2)).sum();
                    assert!(d > 90 * 90, "{a:?} {b:?} too close");
                }
            }
        }
    }
}
