"""Does the decoder look up the shape a question names? Attention of a trained GenLLaVA (or
LLaVA) folder, read through transformers' LlavaForConditionalGeneration, from the last prompt
token to the image tokens, for questions about one shape of a two-shape scene.

    train-native data --out /tmp/world --n 2000
    /root/.cache/pyref/bin/python tests/reference/diagnostics/attention_lookup.py /tmp/world \
        train-native/assets/genllava-shapes [more model folders]

For every two-shape test-split generation image whose two shapes have different kinds, and for
each of its shapes ("the circle"), the prompt of `train-native chat` is built three ways:
"What colour is the circle?", "Where is the circle?" and "Tell me about the circle." (the
`describe` training questions, `data.questions.describe`). Per layer and head it prints the
mean over the prompts of attention(named shape's token) - attention(other shape's token), and
the attention mass on all image tokens. A head that looks the shape up scores near 1; one
that reads the image without regard to the question, near 0. The model folder needs the
tower's `processor_config.json` (mean 0.5, std 0.5, bicubic) and a word-level tokenizer with
`<image>` as in the world's models. `--image-last` puts the image after the question
(`{question}\n<image>`), for models trained with `data.image_after_question`. `--from-noun`
measures the attention from the question's shape word ("circle") instead of the last prompt
token: a lookup can happen there and reach the answer through that token's state.
"""
import json
import re
import sys

import numpy as np
import torch
from PIL import Image
from tokenizers import Tokenizer
from transformers import LlavaForConditionalGeneration, logging

CELLS = ["top left", "top center", "top right", "center left", "center", "center right",
         "bottom left", "bottom center", "bottom right"]
SHAPE = re.compile(r"a (small|large) (\w+) (circle|square|triangle) (?:at the |in the )(.+?)(?= and a |, a |$)")
QUESTIONS = [
    ("colour", "What colour is the {}?"),
    ("position", "Where is the {}?"),
    ("describe", "Tell me about the {}."),
]


def prompt_ids(tok, question, image_index, tokens, image_last):
    """`[I2T]USER: <image>\\n{question} ASSISTANT:` (or the image after the question) with
    `<image>` repeated per image token."""
    user = f"{question}\n<image>" if image_last else f"<image>\n{question}"
    ids = tok.encode(f"[I2T]USER: {user} ASSISTANT:").ids
    at = ids.index(image_index)
    return ids[:at] + [image_index] * tokens + ids[at + 1:], at


def pixels(path, side):
    img = Image.open(path).convert("RGB").resize((side, side), Image.BICUBIC)
    arr = (np.asarray(img, dtype=np.float32) / 255.0 - 0.5) / 0.5
    return torch.tensor(arr.transpose(2, 0, 1)[None])


def main(world, folders, image_last, from_noun):
    logging.set_verbosity_error()
    records = json.load(open(f"{world}/generation_test.json"))
    scenes = []
    for r in records:
        shapes = [(m.group(3), m.group(4)) for m in SHAPE.finditer(r["conversations"][1]["value"])]
        if len(shapes) == 2 and shapes[0][0] != shapes[1][0]:
            scenes.append((f"{world}/images/{r['image']}", shapes))
    for folder in folders:
        model = LlavaForConditionalGeneration.from_pretrained(folder, attn_implementation="eager").eval()
        tok = Tokenizer.from_file(f"{folder}/tokenizer.json")
        vision = model.config.vision_config
        side, tokens = vision.image_size, (vision.image_size // vision.patch_size) ** 2
        if tokens != len(CELLS):
            sys.exit(f"{folder}: {tokens} image tokens; this probe needs one per grid cell (9)")
        diff, mass = {}, {}
        for path, shapes in scenes[:120]:
            px = pixels(path, side)
            for (kind, cell), (_, other) in [(shapes[0], shapes[1]), (shapes[1], shapes[0])]:
                for name, template in QUESTIONS:
                    ids, at = prompt_ids(tok, template.format(kind), model.config.image_token_index, tokens, image_last)
                    query = -1
                    if from_noun:
                        noun = tok.token_to_id("\u2581" + kind) or tok.token_to_id(kind)
                        if noun is None:
                            sys.exit(f"{folder}: the tokenizer has no token `{kind}` (--from-noun needs word-level tokens)")
                        query = max(i for i, t in enumerate(ids) if t == noun)
                    with torch.no_grad():
                        out = model(input_ids=torch.tensor([ids]), pixel_values=px, output_attentions=True)
                    for layer, att in enumerate(out.attentions):
                        row = att[0, :, query, at:at + tokens]
                        d = (row[:, CELLS.index(cell)] - row[:, CELLS.index(other)]).numpy()
                        diff.setdefault((name, layer), []).append(d)
                        mass.setdefault((name, layer), []).append(row.sum(-1).numpy())
        print(f"{folder} ({len(scenes[:120])} scenes)")
        for key in sorted(diff):
            d, m = np.mean(diff[key], 0), np.mean(mass[key], 0)
            print(f"  {key[0]:9} layer {key[1]}: named - other per head {np.round(d, 2)}, on image {np.round(m, 2)}")


if __name__ == "__main__":
    flags = {"--image-last", "--from-noun"}
    args = [a for a in sys.argv[1:] if a not in flags]
    if len(args) < 2:
        sys.exit(__doc__)
    main(args[0], args[1:], "--image-last" in sys.argv, "--from-noun" in sys.argv)
