//! Scene → RGB bytes. Lightly anti-aliased (4×4 supersampling), fully deterministic.

use serde::{Deserialize, Serialize};

use super::SplitMix64;
use super::scene::{Kind, Scene, Shape};

/// Samples per pixel side used for anti-aliasing.
const SUPERSAMPLE: usize = 4;

/// The background: a grey level plus optional low-amplitude grey texture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Background {
    /// Grey level (255 is white; keep it light, ≥ 200).
    pub grey: u8,
    /// Texture amplitude: each pixel gets a value in `-noise..=noise` added (0 is plain).
    pub noise: u8,
    /// Seed of the texture.
    pub seed: u64,
}

impl Background {
    /// Plain white.
    pub const WHITE: Background = Background { grey: 255, noise: 0, seed: 0 };

    /// A random light background: white or light grey, plain or lightly textured.
    pub fn random(rng: &mut SplitMix64) -> Background {
        let grey = [255u8, 245, 235, 225][rng.below(4)];
        let noise = if rng.chance(0.5) { 0 } else { 4 + rng.below(5) as u8 };
        Background { grey, noise, seed: rng.next_u64() }
    }

    fn level(&self, x: usize, y: usize) -> f32 {
        if self.noise == 0 {
            return self.grey as f32;
        }
        let mut r = SplitMix64::derive(self.seed, &[x as u64, y as u64]);
        let span = 2 * self.noise as usize + 1;
        (self.grey as f32 + r.below(span) as f32 - self.noise as f32).clamp(0.0, 255.0)
    }
}

impl Default for Background {
    fn default() -> Self {
        Background::WHITE
    }
}

/// How to render: image side and background.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenderOptions {
    /// Width and height in pixels (images are square; 32 and 64 are the usual sizes).
    pub size: usize,
    /// Background.
    pub background: Background,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions { size: 64, background: Background::WHITE }
    }
}

impl RenderOptions {
    /// White background at `size`×`size`.
    pub fn plain(size: usize) -> Self {
        RenderOptions { size, background: Background::WHITE }
    }

    /// The evaluator-friendly small size (32×32, white), the size tiny diffusion models emit.
    pub fn small() -> Self {
        RenderOptions::plain(32)
    }
}

/// Geometry of a shape placed in an image of side `image`: centre and radius in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// Centre x in pixels (pixel `i` spans `[i, i+1)`).
    pub cx: f32,
    /// Centre y in pixels.
    pub cy: f32,
    /// Radius (half-extent) in pixels.
    pub r: f32,
}

impl Placement {
    /// Where `shape` sits in an image of side `image` pixels.
    pub fn of(shape: &Shape, image: usize) -> Placement {
        let cell = image as f32 / 3.0;
        Placement {
            cx: (shape.cell.col as f32 + 0.5) * cell,
            cy: (shape.cell.row as f32 + 0.5) * cell,
            r: shape.size.radius() * cell,
        }
    }
}

/// Offset of a kind's area centroid below its placement centre, in radii
/// (the triangle's centroid sits a third of the radius lower).
pub fn centroid_offset(kind: Kind) -> f32 {
    match kind {
        Kind::Triangle => 1.0 / 3.0,
        Kind::Circle | Kind::Square => 0.0,
    }
}

/// Whether point `(x, y)` lies inside `kind` placed at `p`.
pub fn inside(kind: Kind, p: &Placement, x: f32, y: f32) -> bool {
    let (dx, dy) = (x - p.cx, y - p.cy);
    match kind {
        Kind::Circle => dx * dx + dy * dy <= p.r * p.r,
        Kind::Square => {
            let h = 0.85 * p.r;
            dx.abs() <= h && dy.abs() <= h
        }
        // Apex at the top, base at the bottom, base width equal to the height.
        Kind::Triangle => dy >= -p.r && dy <= p.r && dx.abs() <= (dy + p.r) / 2.0,
    }
}

/// Fraction of pixel `(px, py)` covered by `kind` placed at `p` (4×4 supersampling).
pub fn coverage(kind: Kind, p: &Placement, px: usize, py: usize) -> f32 {
    let (x0, y0) = (px as f32, py as f32);
    // Cheap reject: the pixel is far from the shape's bounding box.
    if x0 + 1.0 < p.cx - p.r || x0 > p.cx + p.r || y0 + 1.0 < p.cy - p.r || y0 > p.cy + p.r {
        return 0.0;
    }
    let step = 1.0 / SUPERSAMPLE as f32;
    let mut hits = 0;
    for sy in 0..SUPERSAMPLE {
        for sx in 0..SUPERSAMPLE {
            let x = x0 + (sx as f32 + 0.5) * step;
            let y = y0 + (sy as f32 + 0.5) * step;
            if inside(kind, p, x, y) {
                hits += 1;
            }
        }
    }
    hits as f32 / (SUPERSAMPLE * SUPERSAMPLE) as f32
}

/// Renders `scene`: row-major RGB bytes, `3 * size * size` long.
pub fn render(scene: &Scene, opts: &RenderOptions) -> Vec<u8> {
    let n = opts.size;
    let placed: Vec<(Shape, Placement)> = scene.shapes.iter().map(|s| (*s, Placement::of(s, n))).collect();
    let mut out = Vec::with_capacity(3 * n * n);
    for y in 0..n {
        for x in 0..n {
            let bg = opts.background.level(x, y);
            let mut px = [bg; 3];
            for (shape, p) in &placed {
                let c = coverage(shape.kind, p, x, y);
                if c > 0.0 {
                    let rgb = shape.colour.rgb();
                    for (v, s) in px.iter_mut().zip(rgb) {
                        *v = *v * (1.0 - c) + s as f32 * c;
                    }
                }
            }
            out.extend(px.iter().map(|v| v.round().clamp(0.0, 255.0) as u8));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shapes::scene::{Cell, Colour, Size};

    #[test]
    fn render_is_deterministic_and_sized() {
        let mut rng = SplitMix64::new(3);
        let scene = Scene::random(&mut rng, 3);
        let opts = RenderOptions { size: 64, background: Background::random(&mut rng) };
        let a = render(&scene, &opts);
        assert_eq!(a.len(), 64 * 64 * 3);
        assert_eq!(a, render(&scene, &opts));
    }

    #[test]
    fn shape_centre_has_its_colour() {
        let shape =
            Shape { cell: Cell { row: 2, col: 0 }, kind: Kind::Circle, colour: Colour::Blue, size: Size::Large };
        let img = render(&Scene::new([shape]), &RenderOptions::small());
        let p = Placement::of(&shape, 32);
        let i = 3 * (p.cy as usize * 32 + p.cx as usize);
        assert_eq!(&img[i..i + 3], &Colour::Blue.rgb());
        assert_eq!(&img[0..3], &[255, 255, 255]);
    }
}
