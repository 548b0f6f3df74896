//! `pretrain-llm`: the small language model of the shapes world, standing in for
//! the paper's pretrained Mistral-7B. The run's decoder (`model.init.text_config`)
//! learns next-token prediction on the world's text: every conversation of the
//! run's training data, rendered in the chat template with the image placeholder
//! taken out (questions, answers, captions, edit instructions, text chats). It
//! writes a transformers `MistralForCausalLM` folder (`config.json`,
//! `model.safetensors` under `model.` and `lm_head.`, `tokenizer.json`) that a LLaVA
//! run starts its language model from through `model.llm`.

use super::vae::scalar;
use super::{Progress, lr_at};
use crate::files::write_atomic;
use crate::train::config::TrainConfig;
use crate::train::data::{Dataset, Kind};
use crate::train::tokenize;
use anyhow::Context;
use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use genllava::llama::{Llama, LlamaConfig, Rope};
use genllava::shapes::SplitMix64;
use genllava::tokenizer::TextTokenizer;
use genllava::weights::VarBuilder;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Args)]
pub struct LlmArgs {
    /// Output folder (a transformers `MistralForCausalLM`: config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    pub out: PathBuf,
    /// The run config whose `model.init.text_config` sets the decoder's shape and whose
    /// data (and seed) the text comes from (default: the embedded config of the main job).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Training steps.
    #[arg(long, default_value_t = 1000)]
    pub steps: usize,
    /// Conversations per step.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Peak learning rate (AdamW, 5 % warm-up then cosine to a tenth).
    #[arg(long, default_value_t = 3e-3)]
    pub lr: f64,
    /// Longest sequence in tokens (longer conversations are cut).
    #[arg(long, default_value_t = 96)]
    pub max_len: usize,
    /// Held-out conversations (test split) for the perplexity printed at the end.
    #[arg(long, default_value_t = 256)]
    pub eval: usize,
    /// Put the picture's caption where the image placeholder was (instead of taking the
    /// placeholder out), so that the questions about it can be answered from the text: the
    /// reading-comprehension text a pretrained LLM has seen, which teaches it to look up the
    /// phrase a question names and copy what the phrase says.
    #[arg(long)]
    pub scene_text: bool,
}

/// A conversation as language-model text (the chat template, the image placeholder
/// taken out or, with `scene_text`, replaced by the caption of the scene it shows) and
/// the byte ranges of its assistant turns.
fn conversation(
    set: &dyn Dataset,
    i: usize,
    scene_text: bool,
) -> anyhow::Result<(String, Vec<std::ops::Range<usize>>)> {
    let mut sample = set.get(i)?;
    let picture = match (&sample.source_scene, scene_text) {
        (Some(scene), true) => format!("{}\n", genllava::shapes::caption(scene)),
        _ => String::new(),
    };
    for turn in &mut sample.turns {
        turn.text = turn.text.replace("<image>\n", &picture).replace("<image>", picture.trim_end());
    }
    Ok(tokenize::render_with_spans(genllava::template::ChatFormat::Vicuna, &sample.turns))
}

fn text_of(set: &dyn Dataset, i: usize, scene_text: bool) -> anyhow::Result<String> {
    Ok(conversation(set, i, scene_text)?.0)
}

/// Answers (assistant turns) of `text` whose every token is the model's most likely
/// next token given the conversation so far (teacher-forced), and the number of answers.
fn answers_right(
    model: &Llama,
    cfg: &LlamaConfig,
    tok: &TextTokenizer,
    text: &str,
    spans: &[std::ops::Range<usize>],
    device: &Device,
) -> anyhow::Result<(usize, usize)> {
    let enc = tok.inner().encode(text, true).map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?;
    let ids: Vec<i64> = enc.get_ids().iter().map(|&id| i64::from(id)).collect();
    if ids.len() < 2 {
        return Ok((0, 0));
    }
    let input = Tensor::<2, Int>::from_data(TensorData::new(ids[..ids.len() - 1].to_vec(), [1, ids.len() - 1]), device);
    let mut rope = Rope::for_config(cfg, device);
    let best = model.logits(model.forward(model.embed_tokens(input), &mut rope)).argmax(2);
    let best: Vec<i64> =
        best.into_data().convert::<i64>().try_into_vec::<i64>().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut right = 0;
    for span in spans {
        let mut all = true;
        for (k, &(start, end)) in enc.get_offsets().iter().enumerate().skip(1) {
            if end > start && span.contains(&start) {
                all &= best[k - 1] == ids[k];
            }
        }
        right += usize::from(all);
    }
    Ok((right, spans.len()))
}

/// Token rows `[n, len]` (`<s>` … `</s>`, right-padded) and the mask of positions
/// whose next token is scored.
fn batch(
    tok: &TextTokenizer,
    texts: &[String],
    max_len: usize,
    pad: u32,
    eos: u32,
    device: &Device,
) -> anyhow::Result<(Tensor<2, Int>, Tensor<2, Int>, Tensor<2>)> {
    let rows: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| {
            let mut ids = tok.encode(t, true)?;
            ids.push(eos);
            ids.truncate(max_len + 1);
            Ok(ids)
        })
        .collect::<anyhow::Result<_>>()?;
    let len = rows.iter().map(|r| r.len()).max().unwrap_or(2).max(2) - 1;
    let n = rows.len();
    let (mut input, mut target, mut mask) = (Vec::new(), Vec::new(), Vec::new());
    for r in &rows {
        for k in 0..len {
            input.push(i64::from(r.get(k).copied().unwrap_or(pad)));
            target.push(i64::from(r.get(k + 1).copied().unwrap_or(pad)));
            mask.push(if k + 1 < r.len() { 1f32 } else { 0.0 });
        }
    }
    Ok((
        Tensor::from_data(TensorData::new(input, [n, len]), device),
        Tensor::from_data(TensorData::new(target, [n, len]), device),
        Tensor::from_data(TensorData::new(mask, [n, len]), device),
    ))
}

/// Summed next-token negative log-likelihood and the number of scored tokens.
fn nll(model: &Llama, cfg: &LlamaConfig, rows: (Tensor<2, Int>, Tensor<2, Int>, Tensor<2>)) -> (Tensor<1>, f32) {
    let (input, target, mask) = rows;
    let [n, len] = input.dims();
    let device = input.device();
    let mut rope = Rope::for_config(cfg, &device);
    let logits = model.logits(model.forward(model.embed_tokens(input), &mut rope));
    let logp = log_softmax(logits, 2);
    let picked = logp.gather(2, target.reshape([n, len, 1])).reshape([n, len]);
    let count = scalar(mask.clone().sum());
    (picked.mul(mask).sum().neg(), count)
}

/// The decoder's `config.json`: the run's `model.init.text_config` sized for `tok`.
fn text_config(cfg: &TrainConfig, tok: &TextTokenizer) -> anyhow::Result<Value> {
    let init = cfg.model.init.as_ref().context("the run config has no model.init to take text_config from")?;
    let mut json = init.get("text_config").cloned().context("model.init has no text_config")?;
    let id = |t: &str| tok.token_id(t).with_context(|| format!("the tokenizer has no `{t}` token"));
    json["vocab_size"] = tokenize::id_space(tok).into();
    json["bos_token_id"] = id("<s>")?.into();
    json["eos_token_id"] = id("</s>")?.into();
    json["pad_token_id"] = id("<pad>")?.into();
    json["architectures"] = serde_json::json!(["MistralForCausalLM"]);
    json["model_type"] = json.get("model_type").cloned().unwrap_or_else(|| "mistral".into());
    Ok(json)
}

pub fn run(args: LlmArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.batch >= 1 && args.max_len >= 2, "--batch must be at least 1 and --max-len at least 2");
    let start = Instant::now();
    let cfg = TrainConfig::load(args.config.as_deref(), &[])?;
    let device = Device::flex();
    device.seed(cfg.seed);
    let ad = device.clone().autodiff();
    let image_size =
        cfg.model.init.as_ref().and_then(|v| v["vision_config"]["image_size"].as_u64()).unwrap_or(32) as usize;
    let (sets, held) = crate::train::data_sets(&cfg, image_size)?;
    // The tokenizer a fresh run of this config trains: the same text, the same vocabulary.
    let tok = tokenize::train_tokenizer(crate::train::tokenizer_corpus(&sets)?.into_iter())?;
    let json = text_config(&cfg, &tok)?;
    let lcfg = LlamaConfig::from_json(&json.to_string())?;
    let (pad, eos) = (tok.token_id("<pad>").context("no <pad>")?, tok.token_id("</s>").context("no </s>")?);

    let vb = VarBuilder::init(cfg.model.init_std, &ad);
    let mut model = Llama::load(&lcfg, &vb.pp("model"), &vb.pp("lm_head"))?;
    let mut optim = AdamWConfig::new().with_weight_decay(0.01).init();
    let mut rng = SplitMix64::derive(cfg.seed, &[0x11A4]);
    let mut progress = Progress::new("llm", args.steps);
    for step in 0..args.steps {
        let texts = (0..args.batch)
            .map(|_| {
                let set = &sets[rng.below(sets.len())];
                text_of(set.as_ref(), rng.below(set.len()), args.scene_text)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (sum, count) = nll(&model, &lcfg, batch(&tok, &texts, args.max_len, pad, eos, &ad)?);
        let loss = sum.div_scalar(count.max(1.0));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(lr_at(args.lr, step, args.steps), model, grads);
        progress.step(step, || format!("loss {:.4}", scalar(loss.clone())));
    }
    let model = model.valid();

    // Held-out perplexity over the test split's conversations, all kinds alike.
    let (mut total, mut tokens) = (0f64, 0f64);
    let test: Vec<&Box<dyn Dataset>> = held.iter().take(sets.len()).collect();
    for chunk in (0..args.eval).collect::<Vec<_>>().chunks(32) {
        let texts = chunk
            .iter()
            .map(|&i| {
                let set = test[i % test.len()];
                text_of(set.as_ref(), (i / test.len()) % set.len().max(1), args.scene_text)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let (sum, count) = nll(&model, &lcfg, batch(&tok, &texts, args.max_len, pad, eos, &device)?);
        total += f64::from(scalar(sum));
        tokens += f64::from(count);
    }
    let ppl = (total / tokens.max(1.0)).exp();
    // Held-out understanding answers, teacher-forced: with `--scene-text` the question can
    // be answered from the caption before it, without it only guessed.
    let (mut right, mut asked) = (0, 0);
    for set in test.iter().filter(|s| s.kind() == Kind::Understanding) {
        for i in 0..args.eval.min(set.len()) {
            let (text, spans) = conversation(set.as_ref(), i, args.scene_text)?;
            let (r, n) = answers_right(&model, &lcfg, &tok, &text, &spans, &device)?;
            right += r;
            asked += n;
        }
    }

    write_atomic(&args.out.join("config.json"), &serde_json::to_vec_pretty(&json)?)?;
    let mut tensors = genllava::export::named_tensors(&model, "model.");
    for t in &mut tensors {
        if let Some(rest) = t.name.strip_prefix("model.lm_head.") {
            t.name = format!("lm_head.{rest}");
        }
    }
    write_atomic(&args.out.join("model.safetensors"), &genllava::export::safetensors_bytes(&tensors, false))?;
    write_atomic(&args.out.join("tokenizer.json"), tok.to_json()?.as_bytes())?;
    println!(
        "wrote {} ({} steps of {} conversations at {:.0} ms; {:.0} s in all); held-out perplexity over {} conversations ({:.0} tokens): {:.3}; held-out answers right (teacher-forced, every token): {}/{} ({:.1} %)",
        args.out.display(),
        args.steps,
        args.batch,
        progress.ms_per_step(args.steps),
        start.elapsed().as_secs_f64(),
        args.eval,
        tokens,
        ppl,
        right,
        asked,
        100.0 * right as f64 / asked.max(1) as f64
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_score_every_real_next_token_and_no_padding() {
        let tok = tokenize::train_tokenizer(["USER: what ASSISTANT: red".to_string()].into_iter()).expect("tok");
        let device = Device::flex();
        let pad = tok.token_id("<pad>").expect("pad");
        let eos = tok.token_id("</s>").expect("eos");
        let texts = ["what red".to_string(), "red".to_string()];
        let (input, target, mask) = batch(&tok, &texts, 16, pad, eos, &device).expect("batch");
        // `<s> what red </s>` → 3 scored positions; `<s> red </s>` → 2.
        assert_eq!(input.dims(), [2, 3]);
        let mask: Vec<f32> = mask.into_data().try_to_vec::<f32>().expect("mask");
        assert_eq!(mask, vec![1.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
        let target: Vec<i64> = target.into_data().convert::<i64>().try_to_vec::<i64>().expect("target");
        assert_eq!(target[2], i64::from(eos));
        assert_eq!(target[5], i64::from(pad));
    }

    #[test]
    fn scene_text_puts_the_caption_where_the_image_was() {
        use crate::train::shapes::ShapesSet;
        use genllava::shapes::Split;
        let sets = ShapesSet::all(Split::Train, 3, 32, 20, &Default::default(), 2);
        let understanding = sets.iter().find(|s| s.kind() == Kind::Understanding).expect("set");
        for i in 0..5 {
            let sample = understanding.get(i).expect("sample");
            let caption = genllava::shapes::caption(sample.source_scene.as_ref().expect("scene"));
            let (bare, seen) =
                (text_of(understanding, i, false).expect("text"), text_of(understanding, i, true).expect("text"));
            assert!(!bare.contains("<image>") && !seen.contains("<image>"));
            assert!(!bare.contains(&caption) || sample.turns.iter().any(|t| t.text.contains(&caption)));
            assert!(seen.contains(&format!("{caption}\n")), "{seen}");
            assert_eq!(seen.replacen(&format!("{caption}\n"), "", 1), bare);
        }
    }
}
