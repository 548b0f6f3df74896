"""The understanding-only run replicated in PyTorch, to tell the recipe from the Rust code.

    train-native data --out /tmp/world20 --n 20000
    /root/.cache/pyref/bin/python tests/reference/diagnostics/replica_understanding.py /tmp/world20 TOWER [STEPS [LR]]
    WHITEN=1 ... (the tower's features PCA-whitened before the projector)   LN=1 ... (layer-normed)
    WHITEN_INIT=1 ... (the whitening folded into the projector's first layer at initialisation)

transformers' LlavaForConditionalGeneration with the run's sizes: the frozen pre-trained SigLIP
tower TOWER (a SiglipVisionModel folder, e.g. train-native/assets/siglip-shapes), a fresh GELU
projector and a fresh 128-wide 4-layer Mistral decoder over the shipped word-level tokenizer;
the world's understanding records in the Vicuna template (`USER: <image>\nQ ASSISTANT: A</s>`,
cross-entropy on the answer tokens), AdamW (weight decay 0.1), 3 % warmup + cosine, clip 1.0,
32 samples a step. Prints held-out (test split) teacher-forced exact match per question category
at steps 0, 500 and the last. Not part of the tests.
"""
import collections, json, math, os, random, sys

import torch
from probe_tower import pixels
from tokenizers import Tokenizer
from transformers import LlavaConfig, LlavaForConditionalGeneration, MistralConfig, SiglipVisionModel, logging
logging.set_verbosity_error()
torch.manual_seed(0); random.seed(0)
world, tower = sys.argv[1], sys.argv[2]
steps = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
lr = float(sys.argv[4]) if len(sys.argv) > 4 else 1e-3
torch.set_num_threads(2)
tok = Tokenizer.from_file(os.path.join(os.path.dirname(__file__), "../../../train-native/assets/genllava-shapes/tokenizer.json"))
vis = SiglipVisionModel.from_pretrained(tower)
vc = vis.config
npatch = (vc.image_size // vc.patch_size) ** 2
tc = MistralConfig(vocab_size=tok.get_vocab_size(), hidden_size=128, intermediate_size=256, num_attention_heads=4,
                   num_key_value_heads=2, num_hidden_layers=4, head_dim=32, max_position_embeddings=512,
                   rms_norm_eps=1e-6, rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, pad_token_id=3)
cfg = LlavaConfig(vision_config=vc, text_config=tc, image_token_index=4, vision_feature_layer=-2,
                  vision_feature_select_strategy="full", projector_hidden_act="gelu", multimodal_projector_bias=True)
model = LlavaForConditionalGeneration(cfg)
model.model.vision_tower.load_state_dict(vis.state_dict())
for p in model.model.vision_tower.parameters(): p.requires_grad = False
def load(split):
    recs = json.load(open(f"{world}/understanding_{split}.json"))
    out = []
    for r in recs:
        q = r["conversations"][0]["value"].replace("<image>\n", "")
        a = r["conversations"][1]["value"]
        px = pixels(f"{world}/images/{r['image']}", vc.image_size)
        prompt = tok.encode("USER: <image>\n" + q + " ASSISTANT:").ids
        ans = tok.encode(" " + a, add_special_tokens=False).ids + [2]
        prompt = [i for t in prompt for i in ([4] * npatch if t == 4 else [t])]
        cat = category(q)
        out.append((px, prompt, ans, cat))
    return out
def category(q):
    for k, v in [("What colour", "colour"), ("What shape", "shape"), ("Where", "position"), ("What size", "size"),
                 ("How many", "count"), ("Is there", "existence"), ("Is the", "relation")]:
        if q.startswith(k): return v
    return "caption"
train, test = load("train"), load("test")
print(len(train), "train", len(test), "test", "patches", npatch, flush=True)
def batch(items):
    L = max(len(p) + len(a) for _, p, a, _ in items)
    ids = torch.full((len(items), L), 3); lab = torch.full((len(items), L), -100); att = torch.zeros((len(items), L), dtype=torch.long)
    for i, (_, p, a, _) in enumerate(items):
        s = p + a; ids[i, :len(s)] = torch.tensor(s); att[i, :len(s)] = 1
        lab[i, len(p) - 1:len(s) - 1] = torch.tensor(a)   # logits at t predict t+1
    return torch.stack([x for x, _, _, _ in items]), ids, att, lab
if os.environ.get("LN"):
    proj = model.model.multi_modal_projector
    model.model.multi_modal_projector = torch.nn.Sequential(torch.nn.LayerNorm(vc.hidden_size, elementwise_affine=False), proj)
if os.environ.get("WHITEN") or os.environ.get("WHITEN_INIT"):
    with torch.no_grad():
        px = torch.stack([x for x, _, _, _ in train[:2000]])
        f = vis(pixel_values=px, output_hidden_states=True).hidden_states[-2].reshape(-1, vc.hidden_size)
        mu = f.mean(0); cov = torch.cov((f - mu).T)
        e, V = torch.linalg.eigh(cov); Wh = V @ torch.diag((e + 1e-4).rsqrt()) @ V.T
        print("eigenvalues", e.numpy().round(3)[::8], flush=True)
    class Whiten(torch.nn.Module):
        def forward(self, x): return (x - mu) @ Wh
    proj = model.model.multi_modal_projector
    if os.environ.get("WHITEN"):
        model.model.multi_modal_projector = torch.nn.Sequential(Whiten(), proj)
    else:
        # The same whitening folded into the projector's first layer at initialisation only:
        # an HF projector, trained in the tower's own coordinates.
        with torch.no_grad():
            a = proj.linear_1.weight.clone()
            proj.linear_1.weight.copy_(a @ Wh)
            proj.linear_1.bias.sub_(mu @ Wh @ a.T)
params = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.1)
warm = max(1, int(0.03 * steps))
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, steps - warm))))
def evaluate():
    model.eval(); right = collections.Counter(); n = collections.Counter()
    with torch.no_grad():
        for k in range(0, len(test), 64):
            items = test[k:k + 64]; px, ids, att, lab = batch(items)
            logits = model(pixel_values=px, input_ids=ids, attention_mask=att).logits
            pred = logits.argmax(-1)
            for i, it in enumerate(items):
                m = lab[i] != -100
                ok = bool((pred[i][m] == lab[i][m]).all()); right[it[3]] += ok; n[it[3]] += 1
    model.train()
    tot = sum(right.values()) / sum(n.values())
    return f"all {100*tot:.1f} % " + " ".join(f"{c} {100*right[c]/n[c]:.0f}" for c in sorted(n))
model.train()
for step in range(steps):
    px, ids, att, lab = batch(random.sample(train, 32))
    out = model(pixel_values=px, input_ids=ids, attention_mask=att)
    logits = out.logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), lab.reshape(-1), ignore_index=-100)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step(); sched.step()
    if step % 100 == 0 or step == steps - 1:
        print(step, f"loss {loss.item():.3f}", evaluate() if step % 500 == 0 or step == steps - 1 else "", flush=True)
