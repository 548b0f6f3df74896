//! Held-out evaluation through the inference pipelines themselves: greedy
//! answers scored by exact match (after the shapes world's short-answer
//! normalisation), generated images scored by the shapes-world evaluator (does
//! the scene satisfy the caption), edits likewise (is the asked change there and
//! the rest kept), plus the held-out cross-entropy.

use super::config::TrainConfig;
use super::data::{Dataset, Kind, Sample};
use super::loss::{self, LossContext, MicroBatch};
use super::model::Bundle;
use super::tokenize;
use crate::files::DirSource;
use genllava::llava::LlavaCheckpoint;
use genllava::pipeline::{GenLlava, ImageOptions, UnderstandRequest, understand};
use genllava::sampling::SamplingConfig;
use genllava::scheduler::SchedulerKind;
use genllava::sd::pipeline::StableDiffusion;
use genllava::shapes::{caption, parse_caption, score_answer, score_edit, score_generation};
use genllava::template::{self, ChatFormat};

/// The score of one held-out set.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SetScore {
    /// The set (task, split).
    pub set: String,
    pub kind: Kind,
    pub correct: usize,
    pub total: usize,
}

impl SetScore {
    pub fn rate(&self) -> f64 {
        if self.total > 0 { self.correct as f64 / self.total as f64 } else { 0.0 }
    }
}

/// Scores of one evaluation.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalResult {
    pub step: usize,
    /// Exact-match accuracy of greedy answers over every held-out question (understanding).
    pub accuracy: f64,
    /// Share of generated images that satisfy their caption (GenLLaVA only).
    pub generation: Option<f64>,
    /// Share of edits with the asked change and the rest kept (GenLLaVA only).
    pub editing: Option<f64>,
    /// Held-out cross-entropy per target token (understanding and text).
    pub ce: f64,
    /// Questions asked.
    pub samples: usize,
    /// Per held-out set.
    pub sets: Vec<SetScore>,
    /// A few (expected, answered) pairs for the report.
    pub examples: Vec<(String, String)>,
    /// Understanding questions per category (when the data names them), pooled over
    /// the held-out sets: (category, correct, asked), in name order.
    pub categories: Vec<(String, usize, usize)>,
    /// The same questions split by how many shapes their scene holds (when the data
    /// knows the scene): (category, shapes, correct, asked), by category, then shapes.
    /// A question about one shape among several needs the model to find the shape the
    /// question describes; with one shape in the picture it does not.
    pub by_shapes: Vec<(String, usize, usize, usize)>,
    /// Pictures by how many shapes their scene holds: "generation" by the shapes its
    /// caption names, edits by kind of edit ("recolour", "move", …, when the data names it)
    /// and the shapes of the source scene: (row, shapes, correct, made). Every edit but
    /// "add" needs the model to find the shape the instruction names, as a question about
    /// one does; every picture must draw each shape of its scene right.
    pub pictures_by_shapes: Vec<(String, usize, usize, usize)>,
    /// A model that describes its edits: is the description the edited scene's caption,
    /// by kind of edit and the shapes of the source scene (rows as `pictures_by_shapes`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub descriptions: Vec<(String, usize, usize, usize)>,
    /// Every understanding and text question with its answer, when asked for
    /// (`evaluate(.., keep_answers = true)`; `train-native eval --answers`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<Answered>,
}

/// Count one scored item under `key`: (right, asked).
fn tally<K: Ord>(counts: &mut std::collections::BTreeMap<K, (usize, usize)>, key: K, ok: bool) {
    let entry = counts.entry(key).or_default();
    entry.0 += usize::from(ok);
    entry.1 += 1;
}

/// One held-out question and the model's greedy answer.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Answered {
    pub set: String,
    /// The question's category, when the data names it.
    pub category: Option<String>,
    /// Shapes in the question's scene, when the data knows the scene.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shapes: Option<usize>,
    pub question: String,
    pub expected: String,
    pub answered: String,
    pub correct: bool,
}

impl EvalResult {
    /// One line for the log.
    pub fn summary(&self) -> String {
        let mut s = format!("eval at step {}: understanding {:.3}", self.step, self.accuracy);
        if let Some(g) = self.generation {
            s += &format!(", generation {g:.3}");
        }
        if let Some(e) = self.editing {
            s += &format!(", editing {e:.3}");
        }
        s + &format!(", ce {:.4} ({} questions)", self.ce, self.samples)
    }
}

fn pooled(sets: &[SetScore], kinds: &[Kind]) -> Option<f64> {
    let (c, t) = sets.iter().filter(|s| kinds.contains(&s.kind)).fold((0, 0), |(c, t), s| (c + s.correct, t + s.total));
    (t > 0).then(|| c as f64 / t as f64)
}

/// The instruction inside the editing template's user text.
fn edit_instruction(user: &str) -> &str {
    let marker = "Edit the image according to the description. ";
    user.rsplit_once(marker).map_or(user, |(_, i)| i)
}

/// The most tokens a greedy answer may take: twice the expected answer's tokens plus
/// the end of sequence, at least 24.
fn answer_cap(tokenizer: &genllava::tokenizer::TextTokenizer, expected: &str) -> anyhow::Result<usize> {
    Ok((2 * tokenizer.encode(expected, false)?.len() + 1).max(24))
}

/// Evaluate `bundle` (any device; the model is put in inference mode here) on
/// held-out `sets`: `cfg.eval_samples` questions per understanding / text set and
/// `cfg.eval_images` images per generation / editing set. `sd` is the frozen diffusion
/// decoder when the caller already holds it (on the model's device); otherwise it is
/// loaded from the bundle's `sd/` folder. With `keep_answers`, the result lists every
/// question asked with its answer.
pub fn evaluate(
    bundle: &Bundle,
    sets: &[Box<dyn Dataset>],
    cfg: &TrainConfig,
    step: usize,
    sd: Option<&StableDiffusion>,
    keep_answers: bool,
) -> anyhow::Result<EvalResult> {
    // Validation mode, LoRA adapters (if any) folded in once rather than at every forward.
    let model = burn::module::Module::materialize(burn::module::Module::valid(&bundle.model));
    let device = model.llava.language_model.embed_tokens.weight.device();
    let lcfg = &bundle.config;
    let task = bundle.generation.as_ref().map(|g| &g.config.task_tokens);
    let pad_id = bundle.tokenizer.token_id("<pad>").unwrap_or(0);
    let ctx = LossContext { config: lcfg, processor: &bundle.processor, pad_id, device: &device };
    let ckpt = LlavaCheckpoint { config: lcfg.clone(), model: model.llava.clone(), unused: Vec::new() };
    let pipeline = match (&bundle.generation, &model.head) {
        (Some(g), Some(head)) => Some(GenLlava {
            llava: LlavaCheckpoint { config: lcfg.clone(), model: model.llava.clone(), unused: Vec::new() },
            head: head.clone(),
            head_config: g.head_config.clone(),
            config: g.config.clone(),
            sd: match sd {
                Some(sd) => sd.clone(),
                None => StableDiffusion::load(&DirSource::open(&g.sd_dir)?, &device)?,
            },
            tokenizer: bundle.tokenizer.clone(),
            processor: Some(bundle.processor.clone()),
            device: device.clone(),
        }),
        _ => None,
    };
    let greedy = SamplingConfig {
        temperature: 0.0,
        top_k: 0,
        top_p: 1.0,
        repetition_penalty: 1.0,
        seed: 0,
        max_new_tokens: 0,
        logprobs: 0,
    };
    let (mut nll, mut count) = (0.0, 0usize);
    let mut scores = Vec::new();
    let mut examples = Vec::new();
    let mut answers = Vec::new();
    let mut categories = std::collections::BTreeMap::<String, (usize, usize)>::new();
    let mut by_shapes = std::collections::BTreeMap::<(String, usize), (usize, usize)>::new();
    let mut pictures_by_shapes = std::collections::BTreeMap::<(String, usize), (usize, usize)>::new();
    let mut descriptions = std::collections::BTreeMap::<(String, usize), (usize, usize)>::new();
    for set in sets {
        let kind = set.kind();
        let n = match kind {
            Kind::Understanding => cfg.eval_samples,
            Kind::Text => cfg.eval_samples / 4,
            Kind::Generation | Kind::Editing => cfg.eval_images,
        }
        .min(set.len());
        let mut score = SetScore { set: set.describe(), kind, correct: 0, total: 0 };
        for i in 0..n {
            let s: Sample = set.get(i)?;
            let ok = match kind {
                Kind::Understanding | Kind::Text => {
                    let e = tokenize::encode(
                        &bundle.tokenizer,
                        ChatFormat::Vicuna,
                        &s,
                        lcfg.image_token_index,
                        lcfg.image_seq_len(),
                        cfg.max_seq_len,
                        task,
                    )?;
                    if e.targets() > 0 {
                        let mb = MicroBatch { samples: vec![&s], encoded: vec![&e] };
                        let (sum, c) = loss::cross_entropy(&model.llava, &ctx, &mb)?;
                        nll += f64::from(sum.into_scalar::<f32>());
                        count += c;
                    }
                    let Some(last) = s.turns.iter().rposition(|t| t.role == "assistant") else { continue };
                    let mut prompt = template::render(ChatFormat::Vicuna, None, &s.turns[..last], tokenize::EOS);
                    if task.is_some() {
                        prompt.insert_str(0, tokenize::task_token(&s));
                    }
                    let expected = s.turns[last].text.trim().to_string();
                    // Room for the whole expected answer and as much again (greedy decoding
                    // stops at the end of sequence): a cap below it would score a right
                    // answer wrong by cutting it short.
                    let sampling =
                        SamplingConfig { max_new_tokens: answer_cap(&bundle.tokenizer, &expected)?, ..greedy.clone() };
                    let req = UnderstandRequest {
                        prompt: &prompt,
                        image: s.image.as_ref(),
                        pad_to_square: false,
                        sampling: &sampling,
                        stop: &[],
                        stop_ids: &[],
                    };
                    let answer =
                        understand(&ckpt, &bundle.tokenizer, Some(&bundle.processor), &req, &device, &mut |_| true)?;
                    let got = answer.text.trim().to_string();
                    let ok = score_answer(&got, &expected);
                    let shapes = s.source_scene.as_ref().map(|scene| scene.shapes.len());
                    if let (Kind::Understanding, Some(c)) = (kind, &s.category) {
                        tally(&mut categories, c.clone(), ok);
                        if let Some(n) = shapes {
                            tally(&mut by_shapes, (c.clone(), n), ok);
                        }
                    }
                    let question = s.turns[last - 1].text.replace('\n', " ");
                    if keep_answers {
                        answers.push(Answered {
                            set: set.describe(),
                            category: s.category.clone(),
                            shapes,
                            question: question.clone(),
                            expected: expected.clone(),
                            answered: got.clone(),
                            correct: ok,
                        });
                    }
                    if examples.len() < 6 && kind == Kind::Understanding {
                        examples.push((format!("{question} → {expected}"), got));
                    }
                    ok
                }
                Kind::Generation | Kind::Editing => {
                    let Some(p) = &pipeline else { continue };
                    let d = &p.config.diffusion;
                    let options = ImageOptions {
                        steps: d.steps,
                        guidance: d.guidance,
                        scheduler: SchedulerKind::from_name(&d.scheduler)?,
                        seed: i as u64,
                        edit: None,
                    };
                    let user = s.turns.first().map_or("", |t| t.text.as_str());
                    if kind == Kind::Generation {
                        let caption = s.target_caption.as_deref().unwrap_or_default();
                        let img = p.generate(caption, &options, &mut |_, _| {})?;
                        let ok = score_generation(&img.data, img.width, img.height, caption);
                        if let Ok(scene) = parse_caption(caption) {
                            tally(&mut pictures_by_shapes, ("generation".into(), scene.shapes.len()), ok);
                        }
                        ok
                    } else {
                        let (Some(source), Some(scene)) = (&s.image, &s.source_scene) else { continue };
                        let instruction = edit_instruction(user);
                        let prompt = p.edit_prompt(instruction);
                        let answer = p.edit_answer(&prompt, source)?;
                        if p.config.describe_edits {
                            // Is the model's description the edited scene's caption?
                            let said = p.answer_text(&answer)?;
                            let right = super::shapes::described_scene(&said).map(|d| caption(&d)).as_deref()
                                == s.target_caption.as_deref();
                            let kind = s.category.as_deref().unwrap_or("edit");
                            tally(&mut descriptions, (format!("described: {kind}"), scene.shapes.len()), right);
                            if keep_answers {
                                let expected = s.turns.get(1).map_or("", |t| t.text.as_str());
                                answers.push(Answered {
                                    set: set.describe(),
                                    category: s.category.clone(),
                                    shapes: Some(scene.shapes.len()),
                                    question: instruction.to_string(),
                                    expected: expected.to_string(),
                                    answered: said.clone(),
                                    correct: right,
                                });
                            }
                        }
                        let img =
                            p.finish_drawing(p.start_edit_answer(&prompt, &answer, source, &options)?, &mut |_, _| {})?;
                        let ok = score_edit(scene, instruction, &img.data, img.width, img.height);
                        if let Some(c) = &s.category {
                            tally(&mut pictures_by_shapes, (format!("edit: {c}"), scene.shapes.len()), ok);
                        }
                        ok
                    }
                }
            };
            score.correct += usize::from(ok);
            score.total += 1;
        }
        if score.total > 0 {
            scores.push(score);
        }
    }
    let asked = scores.iter().filter(|s| s.kind == Kind::Understanding).map(|s| s.total).sum();
    Ok(EvalResult {
        step,
        accuracy: pooled(&scores, &[Kind::Understanding]).unwrap_or(0.0),
        generation: pooled(&scores, &[Kind::Generation]),
        editing: pooled(&scores, &[Kind::Editing]),
        ce: if count > 0 { nll / count as f64 } else { 0.0 },
        samples: asked,
        sets: scores,
        examples,
        categories: categories.into_iter().map(|(c, (ok, n))| (c, ok, n)).collect(),
        by_shapes: by_shapes.into_iter().map(|((c, k), (ok, n))| (c, k, ok, n)).collect(),
        pictures_by_shapes: pictures_by_shapes.into_iter().map(|((c, k), (ok, n))| (c, k, ok, n)).collect(),
        descriptions: descriptions.into_iter().map(|((c, k), (ok, n))| (c, k, ok, n)).collect(),
        answers,
    })
}
