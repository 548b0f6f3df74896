"""Linear probes of a frozen vision tower: can each grid cell's shape kind and colour be
read from the tower's patch features, the ones the LLaVA run's projector sees?

    train-native data --out /tmp/world --n 3000
    /root/.cache/pyref/bin/python tests/reference/diagnostics/probe_tower.py /tmp/world \
        train-native/assets/siglip-shapes [more SiglipVisionModel folders]

For every tower (loaded with transformers' SiglipVisionModel, preprocessed as the run's
SiglipImageProcessor does: bicubic resize to the tower's side, mean 0.5, std 0.5) and for
hidden_states[-2] (the run's vision_feature_layer) and [-1], one logistic regression per
cell and attribute is fitted on the flattened features of the world's train-split
generation images and scored on its test split. Labels come from the captions:
the cell's kind (circle, square, triangle or none) and its colour (or none).
Prints one line per tower, layer and attribute: held-out accuracy over all cells (mean, and
the lowest cell) and over the occupied cells only (chance: a third for kinds, a sixth for colours).

Those probes weigh every token separately, which a decoder's attention cannot: it reads every
image token through the same value projection. So a second probe is shared by all cells: one
logistic regression reads the kind from the single token that overlaps the cell most. Last, the
eigenvalues of the tokens' feature covariance show how anisotropic the features are.
"""
import json
import re
import sys

import numpy as np
import torch
from PIL import Image
from sklearn.linear_model import LogisticRegression
from transformers import SiglipVisionModel, logging

ROWS = ["top", "center", "bottom"]
COLS = ["left", "center", "right"]
CELLS = {f"{r} {c}": (i, j) for i, r in enumerate(ROWS) for j, c in enumerate(COLS)}
CELLS["center"] = (1, 1)
SHAPE = re.compile(r"^(?:a|an) (small|large) (\w+) (circle|square|triangle) (?:at|in) the (.+)$")


def parse(caption):
    """{(row, col): (kind, colour)} of a world caption, or None if it does not parse."""
    cells = {}
    for part in re.split(r", | and ", caption):
        m = SHAPE.match(part.strip())
        if not m or m.group(4) not in CELLS:
            return None
        cells[CELLS[m.group(4)]] = (m.group(3), m.group(2))
    return cells


def load(world, split):
    records = json.load(open(f"{world}/generation_{split}.json"))
    files, labels = [], []
    for r in records:
        cells = parse(r["conversations"][1]["value"])
        if cells is not None:
            files.append(f"{world}/images/{r['image']}")
            labels.append(cells)
    return files, labels


def pixels(path, side):
    """An image file as the run's SiglipImageProcessor feeds it: bicubic to `side`, mean 0.5, std 0.5, [3, side, side]."""
    rgb = np.asarray(Image.open(path).convert("RGB").resize((side, side), Image.BICUBIC), np.float32)
    return torch.tensor((rgb / 255 - 0.5) / 0.5).permute(2, 0, 1)


def features(model, files, flatten=True):
    side = model.config.image_size
    out = {-2: [], -1: []}
    with torch.no_grad():
        for k in range(0, len(files), 64):
            px = torch.stack([pixels(f, side) for f in files[k : k + 64]])
            states = model(pixel_values=px, output_hidden_states=True)
            for layer in out:
                h = states.hidden_states[layer]
                out[layer].append((h.flatten(1) if flatten else h).numpy())
    return {layer: np.concatenate(v) for layer, v in out.items()}


def main():
    logging.set_verbosity_error()
    world, towers = sys.argv[1], sys.argv[2:]
    train_files, train_labels = load(world, "train")
    test_files, test_labels = load(world, "test")
    print(f"{len(train_files)} train and {len(test_files)} test images")
    for tower in towers:
        model = SiglipVisionModel.from_pretrained(tower).eval()
        train, test = features(model, train_files), features(model, test_files)
        for layer in (-2, -1):
            for name, field in (("kind", 0), ("colour", 1)):
                right = asked = 0
                scores = []
                for cell in sorted(set(CELLS.values())):
                    label = lambda ys: [y[cell][field] if cell in y else "none" for y in ys]
                    probe = LogisticRegression(max_iter=2000).fit(train[layer], label(train_labels))
                    scores.append(probe.score(test[layer], label(test_labels)))
                    # Occupied cells only (an empty cell is "none" most of the time).
                    held = [k for k, y in enumerate(test_labels) if cell in y]
                    if held:
                        guess = probe.predict(test[layer][held])
                        right += sum(g == test_labels[k][cell][field] for g, k in zip(guess, held))
                        asked += len(held)
                print(
                    f"{tower} hidden_states[{layer}] {name}: held-out accuracy {100 * np.mean(scores):.1f} % "
                    f"(lowest cell {100 * min(scores):.1f} %), on the {asked} occupied cells {100 * right / asked:.1f} %"
                )

        shared_probe(model, train_files, train_labels, test_files, test_labels)


def covering_token(side, patch, cell):
    """The index of the patch token that overlaps `cell` of the 3×3 grid most."""
    g = side // patch
    r, c = cell
    def overlap(i, lo):
        return max(0.0, min((i + 1) * patch, (lo + 1) * side / 3) - max(i * patch, lo * side / 3))
    return max(((i, j) for i in range(g) for j in range(g)), key=lambda ij: overlap(ij[0], r) * overlap(ij[1], c))


def shared_probe(model, train_files, train_labels, test_files, test_labels):
    side, patch = model.config.image_size, model.config.patch_size
    g = side // patch
    train, test = features(model, train_files, False), features(model, test_files, False)
    for layer in (-2, -1):
        def rows(feats, labels):
            x, y = [], []
            for f, cells in zip(feats[layer], labels):
                for cell, (kind, _) in cells.items():
                    i, j = covering_token(side, patch, cell)
                    x.append(f[i * g + j])
                    y.append(kind)
            return np.array(x), y
        (xt, yt), (xh, yh) = rows(train, train_labels), rows(test, test_labels)
        probe = LogisticRegression(max_iter=3000).fit(xt, yt)
        tokens = train[layer].reshape(-1, train[layer].shape[-1])
        eig = np.linalg.eigvalsh(np.cov(tokens.T))[::-1]
        print(
            f"  hidden_states[{layer}]: one probe shared by all cells, reading the covering token: kind "
            f"{100 * probe.score(xh, yh):.1f} % of {len(yh)} occupied held-out cells; feature covariance "
            f"eigenvalues: largest {eig[0]:.3g}, median {np.median(eig):.3g}, smallest {eig[-1]:.3g}"
        )


if __name__ == "__main__":
    main()
