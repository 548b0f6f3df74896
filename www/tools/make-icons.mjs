// Draws the PWA icons (www/icons/icon-{192,512}.png): a shapes-world scene — a circle,
// a triangle and a square on a dark rounded tile — rasterised with 4×4 supersampling.
// Run `node www/tools/make-icons.mjs`; the PNGs are committed.
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { encodePng } from './png.mjs';

const OUT = fileURLToPath(new URL('../icons/', import.meta.url));

// Shapes in unit coordinates (0..1), painted in order: a later shape covers earlier ones.
const TILE = [0x1f, 0x29, 0x37];
const shapes = [
  { colour: TILE, inside: (x, y) => roundedSquare(x, y, 0.5, 0.5, 0.5, 0.18) },
  { colour: [0x3b, 0x82, 0xf6], inside: (x, y) => roundedSquare(x, y, 0.69, 0.66, 0.17, 0.02) },
  { colour: [0xfa, 0xcc, 0x15], inside: (x, y) => triangle(x, y, [0.5, 0.16], [0.8, 0.62], [0.2, 0.62]) },
  { colour: [0xef, 0x44, 0x44], inside: (x, y) => (x - 0.32) ** 2 + (y - 0.68) ** 2 <= 0.17 ** 2 },
];

function roundedSquare(x, y, cx, cy, half, radius) {
  const dx = Math.max(Math.abs(x - cx) - (half - radius), 0);
  const dy = Math.max(Math.abs(y - cy) - (half - radius), 0);
  return dx * dx + dy * dy <= radius * radius;
}

function triangle(x, y, a, b, c) {
  const side = (p, q) => (q[0] - p[0]) * (y - p[1]) - (q[1] - p[1]) * (x - p[0]);
  const s1 = side(a, b);
  const s2 = side(b, c);
  const s3 = side(c, a);
  return (s1 >= 0 && s2 >= 0 && s3 >= 0) || (s1 <= 0 && s2 <= 0 && s3 <= 0);
}

function render(size) {
  const SS = 4;
  return encodePng(size, size, 4, (py) => {
    const row = new Uint8Array(size * 4);
    for (let px = 0; px < size; px++) {
      const acc = [0, 0, 0, 0];
      for (let sy = 0; sy < SS; sy++) {
        for (let sx = 0; sx < SS; sx++) {
          const x = (px + (sx + 0.5) / SS) / size;
          const y = (py + (sy + 0.5) / SS) / size;
          const hit = shapes.findLast((s) => s.inside(x, y));
          if (!hit) continue;
          for (let c = 0; c < 3; c++) acc[c] += hit.colour[c];
          acc[3] += 255;
        }
      }
      const n = SS * SS;
      const alpha = acc[3] / n;
      for (let c = 0; c < 3; c++) row[px * 4 + c] = alpha ? Math.round((acc[c] / n) * (255 / alpha)) : 0;
      row[px * 4 + 3] = Math.round(alpha);
    }
    return row;
  });
}

mkdirSync(OUT, { recursive: true });
for (const size of [192, 512]) {
  const png = render(size);
  writeFileSync(`${OUT}icon-${size}.png`, png);
  console.log(`icons/icon-${size}.png: ${png.length} bytes`);
}
