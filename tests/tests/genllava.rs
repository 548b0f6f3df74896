//! GenLLaVA's conditioning path against a torch composition of the same parts
//! (tests/reference/genllava.py): prompt ids with task and [IMG] tokens, and
//! U = head(e[IMG] + h[IMG]) for a generation and an editing prompt; then the
//! whole generate / edit / chat path on the tiny SD decoder.

use genllava::checkpoint::MemorySource;
use genllava::image::RgbImage;
use genllava::pipeline::{GenLlava, ImageOptions};
use genllava::sampling::SamplingConfig;
use genllava::scheduler::SchedulerKind;
use genllava::template::{self, Turn};
use genllava::tokenizer::T2I;
use genllava_tests::{assert_close, cpu, load, memory_source};

/// genllava-tiny with sd-tiny as its `sd/` folder.
pub fn source() -> MemorySource {
    let mut src = memory_source("genllava-tiny");
    for (name, bytes) in memory_source("sd-tiny").files {
        src.files.insert(format!("sd/{name}"), bytes);
    }
    src
}

fn ids(refs: &std::collections::BTreeMap<String, genllava::safetensors::RawTensor>, name: &str) -> Vec<u32> {
    refs[name].to_i64().into_iter().map(|v| v as u32).collect()
}

fn options() -> ImageOptions {
    ImageOptions { steps: 3, guidance: 3.0, scheduler: SchedulerKind::Ddim, seed: 5, edit: None }
}

#[test]
fn conditioning_matches_torch() {
    let src = source();
    let model = GenLlava::load(&src, &cpu()).expect("load");
    let refs = load("genllava-tiny/reference.safetensors");

    let prompt = model.prompt(T2I, &[Turn::user(template::generation("a large red circle"))]);
    let mut gen_ids = model.prompt_ids(&prompt).expect("ids");
    gen_ids.extend(model.image_answer());
    assert_eq!(gen_ids, ids(&refs, "gen_ids"));
    assert_close("generation U", model.condition(&gen_ids, None).expect("U"), &refs["gen_u"], 1e-4);

    let prompt = model.prompt(T2I, &[Turn::user(template::editing("make the circle blue"))]);
    let mut edit_ids = model.prompt_ids(&prompt).expect("ids");
    edit_ids.extend(model.image_answer());
    assert_eq!(edit_ids, ids(&refs, "edit_ids"));
    let image = RgbImage::decode(&src.files["image.png"]).expect("png");
    let feats = model.features(&image).expect("features");
    assert_close("editing U", model.condition(&edit_ids, Some(feats)).expect("U"), &refs["edit_u"], 1e-4);
}

#[test]
fn generate_edit_and_chat_run_end_to_end() {
    let model = GenLlava::load(&source(), &cpu()).expect("load");
    let side = model.sd.unet_config.sample_size.expect("sample_size") * model.sd.vae_scale();
    let mut steps = Vec::new();
    let a = model.generate("a large red circle", &options(), &mut |i, n| steps.push((i, n))).expect("generate");
    assert_eq!((a.width, a.height), (side, side));
    assert_eq!(steps, vec![(1, 3), (2, 3), (3, 3)]);
    let b = model.generate("a large red circle", &options(), &mut |_, _| {}).expect("generate");
    assert_eq!(a.data, b.data, "same seed, same image");
    let c = model.generate("a large red circle", &ImageOptions { seed: 6, ..options() }, &mut |_, _| {}).expect("gen");
    assert_ne!(a.data, c.data, "another seed, another image");

    let source = RgbImage::decode(&memory_source("genllava-tiny").files["image.png"]).expect("png");
    let edited = model.edit(&source, "make the circle blue", &options(), &mut |_, _| {}).expect("edit");
    assert_eq!((edited.width, edited.height), (side, side));

    let sampling = SamplingConfig { max_new_tokens: 4, ..SamplingConfig::default() };
    let reply = model
        .chat(
            &[Turn::user("<image>\nWhat colour is the circle?")],
            Some(&source),
            &sampling,
            &options(),
            &mut |_| true,
            &mut |_, _| {},
        )
        .expect("chat");
    let soi = model.config.task_tokens.soi;
    assert_eq!(reply.image.is_some(), reply.answer.ids().last() == Some(&soi));
}

#[test]
fn a_described_edit_writes_words_up_to_soi_then_draws_from_them() {
    let mut model = GenLlava::load(&source(), &cpu()).expect("load");
    let image = RgbImage::decode(&memory_source("genllava-tiny").files["image.png"]).expect("png");
    let soi = model.config.task_tokens.soi;
    let prompt = model.edit_prompt("make the circle blue");
    // Without descriptions the answer is [SOI] alone, and the edit is the plain one.
    assert_eq!(model.edit_answer(&prompt, &image).expect("answer"), vec![soi]);
    assert_eq!(model.answer_text(&[soi]).expect("text"), "");
    let plain = model.edit(&image, "make the circle blue", &options(), &mut |_, _| {}).expect("edit");

    model.config.describe_edits = true;
    let answer = model.edit_answer(&prompt, &image).expect("answer");
    assert_eq!(answer.last(), Some(&soi));
    assert!(answer.len() > 1 && answer.len() <= GenLlava::DESCRIPTION_TOKENS + 1, "{answer:?}");
    assert!(answer[..answer.len() - 1].iter().all(|&id| id != soi));
    // The same words every time (greedy), and the edit drawn from them is the edit's.
    assert_eq!(model.edit_answer(&prompt, &image).expect("again"), answer);
    let run = model.start_edit_answer(&prompt, &answer, &image, &options()).expect("start");
    let described = model.finish_drawing(run, &mut |_, _| {}).expect("draw");
    let whole = model.edit(&image, "make the circle blue", &options(), &mut |_, _| {}).expect("edit");
    assert_eq!(described.data, whole.data);
    assert_ne!(described.data, plain.data, "the words reach the [IMG] states");
    // An answer that stopped at its end of sequence is closed with [SOI] in its place.
    let eos = model.llava.config.text_config.eos_token_ids()[0];
    assert_eq!(model.close_description(vec![7, eos]), vec![7, soi]);
    assert_eq!(model.close_description(vec![7]), vec![7, soi]);
    let err = model.start_edit_answer(&prompt, &[7], &image, &options()).err().expect("no [SOI]").to_string();
    assert!(err.contains("[SOI]"), "{err}");
}

#[test]
fn head_that_does_not_fit_is_refused() {
    let mut src = source();
    let cfg = String::from_utf8(src.files["gen_head/config.json"].clone())
        .expect("utf8")
        .replace("\"d_llm\": 32", "\"d_llm\": 48");
    src.files.insert("gen_head/config.json".into(), cfg.into_bytes());
    let err = GenLlava::load(&src, &cpu()).err().expect("must fail").to_string();
    assert!(err.contains("d_llm is 48"), "{err}");
}
