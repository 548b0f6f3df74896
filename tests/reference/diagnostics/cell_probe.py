"""What the image tokens of a trained GenLLaVA (or LLaVA) folder carry about each shape, and
what the first decoder layer's attention values keep of it: linear probes (softmax regression,
trained on four fifths of the shape tokens, scored on the rest) for the shape's cell and colour,
read through transformers' LlavaForConditionalGeneration.

    train-native data --out /tmp/world --n 2000
    /root/.cache/pyref/bin/python tests/reference/diagnostics/cell_probe.py /tmp/world MODEL_FOLDER

Inputs: the train generation records' images and captions (every shape's colour and cell), the
image token of each shape's cell (the tower must give one token per grid cell, 9). Prints the
probe accuracies of the projected image token and of each KV head's layer-0 value of it: what a
layer-0 head that looks a shape up (`attention_lookup.py --from-noun`) can copy.
"""
import json, re, sys, numpy as np, torch
from PIL import Image
from transformers import LlavaForConditionalGeneration, logging
logging.set_verbosity_error()
CELLS = ["top left", "top center", "top right", "center left", "center", "center right",
         "bottom left", "bottom center", "bottom right"]
SHAPE = re.compile(r"a (small|large) (\w+) (circle|square|triangle) (?:at the |in the )(.+?)(?= and a |, a |$)")
if len(sys.argv) != 3:
    sys.exit(__doc__)
world, folder = sys.argv[1], sys.argv[2]
model = LlavaForConditionalGeneration.from_pretrained(folder, attn_implementation="eager").eval()
side = model.config.vision_config.image_size
if (side // model.config.vision_config.patch_size) ** 2 != len(CELLS):
    sys.exit(f"{folder}: this probe needs one image token per grid cell (9)")
recs = json.load(open(f"{world}/generation_train.json"))[:1500]
X, cell, col = [], [], []
for r in recs:
    shapes = [(m.group(2), m.group(3), m.group(4)) for m in SHAPE.finditer(r["conversations"][1]["value"])]
    img = Image.open(f"{world}/images/{r['image']}").convert("RGB").resize((side, side), Image.BICUBIC)
    px = torch.tensor(((np.asarray(img, dtype=np.float32) / 255 - 0.5) / 0.5).transpose(2, 0, 1)[None])
    with torch.no_grad():
        f = model.get_image_features(pixel_values=px, vision_feature_layer=model.config.vision_feature_layer,
                                     vision_feature_select_strategy=model.config.vision_feature_select_strategy)
    if hasattr(f, "pooler_output"):
        f = f.pooler_output
    f = f[0] if isinstance(f, (list, tuple)) else f
    f = f.reshape(-1, f.shape[-1])
    for colour, kind, c in shapes:
        X.append(f[CELLS.index(c)].numpy()); cell.append(CELLS.index(c)); col.append(colour)
X = torch.tensor(np.array(X)); cell = torch.tensor(cell)
cols = sorted(set(col)); colt = torch.tensor([cols.index(c) for c in col])
lm = model.model.language_model if hasattr(model.model, "language_model") else model.language_model.model
layer0 = lm.layers[0]
with torch.no_grad():
    h = layer0.input_layernorm(X)
    v = layer0.self_attn.v_proj(h)  # (n, kv*hd)
hd = model.config.text_config.head_dim
def probe(feat, y, k):
    n = len(y); tr = slice(0, n * 4 // 5); te = slice(n * 4 // 5, n)
    W = torch.zeros(feat.shape[1], k, requires_grad=True); b = torch.zeros(k, requires_grad=True)
    mu, sd = feat[tr].mean(0), feat[tr].std(0) + 1e-6
    z = (feat - mu) / sd
    opt = torch.optim.Adam([W, b], lr=0.05)
    for _ in range(400):
        opt.zero_grad(); loss = torch.nn.functional.cross_entropy(z[tr] @ W + b, y[tr]); loss.backward(); opt.step()
    return ((z[te] @ W + b).argmax(1) == y[te]).float().mean().item()
print(f"{folder}: {len(cell)} shape tokens")
print(f"  projected image token -> cell {probe(X, cell, 9):.3f}, colour {probe(X, colt, len(cols)):.3f}")
for g in range(v.shape[1] // hd):
    vg = v[:, g * hd:(g + 1) * hd]
    print(f"  layer-0 value of KV head {g} -> cell {probe(vg, cell, 9):.3f}, colour {probe(vg, colt, len(cols)):.3f}")
