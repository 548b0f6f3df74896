"""A tiny GenLLaVA folder built from real transformers / torch modules, and the
conditioning U it gives for a generation and an editing prompt.

Writes tests/fixtures/genllava-tiny/: a LLaVA folder (Mistral + SigLIP) whose
tokenizer and embeddings carry the task tokens [I2T] [T2I] [SOI] [EOI] and
4 [IMG] tokens, genllava.json, gen_head/ (the head of head.py, out_dim = the
cross-attention width of tests/fixtures/sd-tiny), and reference.safetensors.
The tests add tests/fixtures/sd-tiny as the folder's sd/ (not duplicated here).

U = head(e[IMG] + h[IMG]): the input embeddings plus the last hidden states
(after the final norm) at the [IMG] positions of the teacher-forced prompt.
"""
import json
import os
import shutil
import sys

import torch
from PIL import Image
from safetensors.torch import save_file
from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor, MistralConfig
from transformers import PreTrainedTokenizerFast, SiglipImageProcessor, SiglipVisionConfig

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from head import GenHead  # noqa: E402
from llava import FIX, image, make_tokenizer, relayout  # noqa: E402

N_IMG = 4
TASK = ["[I2T]", "[T2I]", "[SOI]", "[EOI]"] + [f"[IMG{i}]" for i in range(N_IMG)]
SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
          "The assistant gives helpful, detailed, and polite answers to the user's questions.")


def main():
    torch.manual_seed(0)
    out = os.path.join(FIX, "genllava-tiny")
    shutil.rmtree(out, ignore_errors=True)
    tok = make_tokenizer()
    tok.add_special_tokens(TASK)
    ids = {t: tok.token_to_id(t) for t in TASK}
    vision = SiglipVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=4, image_size=32, patch_size=8)
    text = MistralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, max_position_embeddings=256, vocab_size=tok.get_vocab_size(),
                         bos_token_id=tok.token_to_id("<s>"), eos_token_id=tok.token_to_id("</s>"))
    cfg = LlavaConfig(vision_config=vision, text_config=text, image_token_index=tok.token_to_id("<image>"),
                      vision_feature_select_strategy="full", vision_feature_layer=-2, image_seq_length=16)
    model = LlavaForConditionalGeneration(cfg).eval()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    proc = LlavaProcessor(image_processor=SiglipImageProcessor(size={"height": 32, "width": 32}), tokenizer=fast,
                          patch_size=8, vision_feature_select_strategy="full", image_token="<image>",
                          num_additional_image_tokens=0)
    model.save_pretrained(out)
    proc.save_pretrained(out)
    tok.save(os.path.join(out, "tokenizer.json"))
    relayout(out, "current")

    head_cfg = dict(d_llm=32, d_model=32, heads=4, enc_layers=2, dec_layers=2, ffn=64, num_queries=7,
                    out_dim=32, num_img_tokens=N_IMG)
    head = GenHead(head_cfg).eval()
    os.makedirs(os.path.join(out, "gen_head"))
    save_file({k: v.contiguous() for k, v in head.state_dict().items()}, os.path.join(out, "gen_head", "model.safetensors"))
    with open(os.path.join(out, "gen_head", "config.json"), "w") as f:
        json.dump(head_cfg, f, indent=2)
    task_tokens = {"i2t": ids["[I2T]"], "t2i": ids["[T2I]"], "soi": ids["[SOI]"], "eoi": ids["[EOI]"],
                   "img": [ids[f"[IMG{i}]"] for i in range(N_IMG)]}
    gen_cfg = {"task_tokens": task_tokens, "chat_format": "vicuna", "system": SYSTEM, "pad_to_square": False,
               "diffusion": {"steps": 4, "guidance": 3.0, "scheduler": "ddim", "edit": {"img2img": {"strength": 0.6}}}}
    with open(os.path.join(out, "genllava.json"), "w") as f:
        json.dump(gen_cfg, f, indent=2)
    image().save(os.path.join(out, "image.png"))

    def condition(prompt, with_image):
        soi_img = [ids["[SOI]"]] + task_tokens["img"]
        if with_image:
            enc = proc(text=prompt, images=image(), return_tensors="pt")
        else:
            enc = {"input_ids": torch.tensor([tok.encode(prompt).ids])}
        input_ids = torch.cat([enc["input_ids"], torch.tensor([soi_img])], 1)
        with torch.no_grad():
            embeds = model.get_input_embeddings()(input_ids)
            if with_image:
                feats = model.model.get_image_features(pixel_values=enc["pixel_values"],
                                                       vision_feature_layer=-2,
                                                       vision_feature_select_strategy="full").pooler_output
                feats = torch.cat(list(feats), 0) if isinstance(feats, (list, tuple)) else feats
                mask = (input_ids == cfg.image_token_index)[..., None].expand_as(embeds)
                embeds = embeds.masked_scatter(mask, feats.reshape(-1))
            hidden = model.model.language_model(inputs_embeds=embeds).last_hidden_state
            pos = torch.tensor([[input_ids[0].tolist().index(t) for t in task_tokens["img"]]])
            x = embeds[0, pos[0]][None] + hidden[0, pos[0]][None]
            return input_ids, head(x)

    gen_prompt = ("[T2I]" + SYSTEM + " USER: Generate an image with the following description. "
                  "a large red circle ASSISTANT:")
    edit_prompt = ("[T2I]" + SYSTEM + " USER: Based on the image, please follow the instruction. <image>\n"
                   "Edit the image according to the description. make the circle blue ASSISTANT:")
    gen_ids, gen_u = condition(gen_prompt, False)
    edit_ids, edit_u = condition(edit_prompt, True)
    save_file({"gen_ids": gen_ids.to(torch.int64).contiguous(), "gen_u": gen_u.contiguous(),
               "edit_ids": edit_ids.to(torch.int64).contiguous(), "edit_u": edit_u.contiguous()},
              os.path.join(out, "reference.safetensors"))
    print("genllava-tiny", gen_ids.shape, edit_ids.shape, gen_u.shape)


if __name__ == "__main__":
    main()
