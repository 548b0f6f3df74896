//! Text side of training: a word-level tokenizer trained on the data's text
//! (for models initialised from scratch) and the encoding of a conversation
//! into token ids plus the loss mask that covers the assistant's tokens only.

use super::data::Sample;
use anyhow::Context;
use genllava::llava::expand_image_tokens;
use genllava::template::{self, ChatFormat, Turn};
use genllava::tokenizer::{TaskTokens, TextTokenizer};
use tokenizers::models::TrainerWrapper;
use tokenizers::models::wordlevel::WordLevelTrainer;
use tokenizers::{Model, Tokenizer};

/// The special tokens of a trained tokenizer, ids 0… in this order.
pub const SPECIALS: [&str; 5] = ["<unk>", "<s>", "</s>", "<pad>", "<image>"];
/// The end-of-turn token appended to every assistant answer.
pub const EOS: &str = "</s>";

/// Train a word-level tokenizer (Metaspace words, punctuation split off, `<s>`
/// prepended) on `texts`. Deterministic: the trainer orders words by count, then
/// alphabetically.
pub fn train_tokenizer<I: Iterator<Item = String> + Send>(texts: I) -> anyhow::Result<TextTokenizer> {
    // Count the words with the trainer, then lay the vocabulary out ourselves:
    // the special tokens at 0…4 and the words after them in the trainer's order
    // (by count, then alphabetically), with no gaps.
    let mut tok = Tokenizer::from_bytes(
        definition(&SPECIALS.iter().map(|s| s.to_string()).collect::<Vec<_>>()).to_string().as_bytes(),
    )
    .map_err(|e| anyhow::anyhow!("tokenizer template: {e}"))?;
    let trainer = WordLevelTrainer::builder().show_progress(false).build().context("word-level trainer")?;
    let mut trainer = TrainerWrapper::WordLevelTrainer(trainer);
    tok.train(&mut trainer, texts).map_err(|e| anyhow::anyhow!("training the tokenizer: {e}"))?;
    let mut words: Vec<(String, u32)> =
        tok.get_model().get_vocab().into_iter().filter(|(w, _)| !SPECIALS.contains(&w.as_str())).collect();
    words.sort_by_key(|(_, id)| *id);
    let vocab: Vec<String> = SPECIALS.iter().map(|s| s.to_string()).chain(words.into_iter().map(|(w, _)| w)).collect();
    let tok = Tokenizer::from_bytes(definition(&vocab).to_string().as_bytes())
        .map_err(|e| anyhow::anyhow!("tokenizer: {e}"))?;
    Ok(TextTokenizer::from_tokenizer(tok))
}

/// `tokenizer.json` of a word-level tokenizer with `vocab` (ids in order; the
/// first five are [`SPECIALS`]).
fn definition(vocab: &[String]) -> serde_json::Value {
    let added: Vec<serde_json::Value> = SPECIALS
        .iter()
        .enumerate()
        .map(|(id, t)| {
            serde_json::json!({"id": id, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": true})
        })
        .collect();
    let vocab: serde_json::Map<String, serde_json::Value> =
        vocab.iter().enumerate().map(|(i, t)| (t.clone(), i.into())).collect();
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
            {"type": "Punctuation", "behavior": "Isolated"}
        ]},
        "post_processor": {"type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
        "decoder": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": true},
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    })
}

/// One more than the largest token id: the rows the embedding needs. (The
/// word-level trainer can leave gaps in the ids, so this may exceed the number
/// of tokens.)
pub fn id_space(tok: &TextTokenizer) -> usize {
    tok.inner().get_vocab(true).values().max().map_or(0, |&m| m as usize + 1).max(tok.vocab_size())
}

/// A conversation as the model sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// Token ids, `<image>` expanded to the tower's feature count.
    pub ids: Vec<u32>,
    /// `mask[t]`: token `t` belongs to an assistant answer (its end token included)
    /// and is a prediction target.
    pub mask: Vec<bool>,
    /// Whether the text holds image tokens.
    pub has_image: bool,
    /// Whether the sequence was cut at `max_len`.
    pub truncated: bool,
}

impl Encoded {
    /// Number of target tokens (position 0 cannot be predicted).
    pub fn targets(&self) -> usize {
        self.mask.iter().skip(1).filter(|&&m| m).count()
    }
}

/// The full text of a sample's conversation and the byte ranges of its assistant turns.
pub fn render_with_spans(format: ChatFormat, turns: &[Turn]) -> (String, Vec<std::ops::Range<usize>>) {
    let mut spans = Vec::new();
    let mut prev = 0;
    for (i, t) in turns.iter().enumerate() {
        let upto = template::render(format, None, &turns[..=i], EOS);
        if t.role == "assistant" {
            spans.push(prev..upto.len());
        }
        prev = upto.len();
    }
    (template::render(format, None, turns, EOS), spans)
}

/// The task token that leads a sample's text in a GenLLaVA model: `[T2I]` when
/// the answer is an image, `[I2T]` otherwise.
pub fn task_token(sample: &Sample) -> &'static str {
    if sample.target_image.is_some() { genllava::tokenizer::T2I } else { genllava::tokenizer::I2T }
}

/// Tokenize `sample` and mark the assistant tokens: a token is a target when its
/// text starts inside an assistant span (so the answer's leading-space word and
/// the closing `</s>` count, the `ASSISTANT:` cue does not).
///
/// With `task` (a GenLLaVA model) the text is led by the sample's task token, and
/// a sample with a target image answers, in place of its last assistant turn,
/// with that turn's words, if any (a described edit), then
/// `[SOI][IMG0]…[IMG{N-1}][EOI]</s>` as ids (all targets): exactly the ids the
/// generation pipeline appends to the prompt at inference.
pub fn encode(
    tok: &TextTokenizer,
    format: ChatFormat,
    sample: &Sample,
    image_token: u32,
    image_len: usize,
    max_len: usize,
    task: Option<&TaskTokens>,
) -> anyhow::Result<Encoded> {
    let image_answer = task.is_some() && sample.target_image.is_some();
    let turns = match (image_answer, sample.turns.last()) {
        (true, Some(last)) if last.role == "assistant" => &sample.turns[..sample.turns.len() - 1],
        (true, _) => anyhow::bail!("a sample with a target image must end with an assistant turn"),
        (false, _) => &sample.turns[..],
    };
    let (mut text, mut spans) = render_with_spans(format, turns);
    if image_answer {
        // The prompt as the pipeline renders it: ending in the assistant cue,
        // then the answer's words before the image, if it has any (a described edit).
        text = template::render(format, None, turns, EOS);
        let words = sample.turns.last().map(|t| t.text.trim()).unwrap_or_default();
        if !words.is_empty() {
            let start = text.len();
            text.push(' ');
            text.push_str(words);
            spans.push(start..text.len());
        }
    }
    if task.is_some() {
        let lead = task_token(sample);
        text.insert_str(0, lead);
        spans = spans.into_iter().map(|s| s.start + lead.len()..s.end + lead.len()).collect();
    }
    let enc = tok.inner().encode(text.as_str(), true).map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?;
    let mut ids = Vec::new();
    let mut mask = Vec::new();
    for (&id, &(start, end)) in enc.get_ids().iter().zip(enc.get_offsets()) {
        let target = end > start && spans.iter().any(|s| s.contains(&start));
        if id == image_token {
            let n = expand_image_tokens(&[id], image_token, image_len).len();
            ids.extend(std::iter::repeat_n(id, n));
            mask.extend(std::iter::repeat_n(false, n));
        } else {
            ids.push(id);
            mask.push(target);
        }
    }
    if let (true, Some(t)) = (image_answer, task) {
        let eos = tok.token_id(EOS).context("the tokenizer has no </s>")?;
        let answer: Vec<u32> = std::iter::once(t.soi).chain(t.img.iter().copied()).chain([t.eoi, eos]).collect();
        mask.extend(std::iter::repeat_n(true, answer.len()));
        ids.extend(answer);
    }
    let has_image = ids.contains(&image_token);
    let truncated = ids.len() > max_len;
    if truncated {
        // Never cut through the image: a partial image cannot be embedded.
        let mut cut = max_len;
        while cut > 0 && cut < ids.len() && ids[cut] == image_token && ids[cut - 1] == image_token {
            cut -= 1;
        }
        ids.truncate(cut);
        mask.truncate(cut);
    }
    Ok(Encoded { ids, mask, has_image, truncated })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::data::Kind;

    fn sample() -> Sample {
        Sample {
            kind: Kind::Understanding,
            image: None,
            turns: vec![Turn::user("<image>\nWhat colour is it?"), Turn::assistant("The colour is red.")],
            target_image: None,
            target_caption: None,
            instruction: None,
            source_scene: None,
            category: None,
        }
    }

    #[test]
    fn tokenizer_and_mask_cover_the_answer_only() {
        let texts = ["USER: <image>\nWhat colour is it? ASSISTANT: The colour is red.</s>".to_string()];
        let tok = train_tokenizer(texts.into_iter()).expect("tokenizer");
        assert_eq!(tok.token_id("<image>"), Some(4));
        assert_eq!(tok.token_id("</s>"), Some(2));
        // Saved and loaded, the ids stay.
        let back = TextTokenizer::from_bytes(tok.to_json().expect("json").as_bytes()).expect("load");
        assert_eq!(back.token_id("<image>"), Some(4));
        assert_eq!(
            back.encode("a <image> b", false).expect("encode"),
            tok.encode("a <image> b", false).expect("encode")
        );
        assert_eq!(id_space(&tok), tok.vocab_size());
        let enc = encode(&tok, ChatFormat::Vicuna, &sample(), 4, 3, 100, None).expect("encode");
        assert_eq!(enc.ids[0], 1, "BOS first");
        let first = enc.ids.iter().position(|&i| i == 4).expect("image token");
        assert_eq!(&enc.ids[first..first + 4], &[4, 4, 4, tok.token_id("▁\nWhat").expect("word")], "image expanded");
        assert!(enc.ids.iter().all(|&i| (i as usize) < id_space(&tok)), "{:?} vs {}", enc.ids, id_space(&tok));
        let answer: Vec<u32> = enc.ids.iter().zip(&enc.mask).filter(|(_, m)| **m).map(|(i, _)| *i).collect();
        assert_eq!(tok.decode(&answer, false).expect("decode").replace(' ', ""), "Thecolourisred.</s>");
        assert_eq!(tok.decode(&answer, true).expect("decode"), "The colour is red.");
        assert_eq!(enc.targets(), answer.len());
        // Cut before the answer: no target left.
        let cut = encode(&tok, ChatFormat::Vicuna, &sample(), 4, 3, 8, None).expect("encode");
        assert!(cut.truncated);
        assert_eq!(cut.targets(), 0);
    }

    #[test]
    fn image_answers_end_in_the_ids_the_pipeline_appends() {
        let texts = ["USER: Generate an image with the following description. a red circle ASSISTANT:".to_string()];
        let mut tok = train_tokenizer(texts.into_iter()).expect("tokenizer");
        let task = tok.add_task_tokens(3);
        let s = Sample {
            kind: Kind::Generation,
            image: None,
            turns: vec![Turn::user(template::generation("a red circle")), Turn::assistant("")],
            target_image: Some(genllava::image::RgbImage::filled(4, 4, [255, 0, 0])),
            target_caption: Some("a red circle".into()),
            instruction: None,
            source_scene: None,
            category: None,
        };
        let enc = encode(&tok, ChatFormat::Vicuna, &s, 4, 3, 100, Some(&task)).expect("encode");
        // The pipeline's ids: the rendered prompt led by [T2I], then [SOI][IMG…].
        let prompt = format!("[T2I]{}", template::render(ChatFormat::Vicuna, None, &s.turns[..1], EOS));
        let mut want = tok.encode(&prompt, true).expect("encode");
        let n = want.len();
        assert_eq!(want[1], task.t2i, "the task token follows BOS");
        want.push(task.soi);
        want.extend(&task.img);
        want.extend([task.eoi, 2]);
        assert_eq!(enc.ids, want);
        assert!(enc.mask[..n].iter().all(|m| !m) && enc.mask[n..].iter().all(|&m| m));
        // A described edit: its words, then the image answer, all targets; the
        // prompt's ids are the same, so the pipeline's greedy words follow them.
        let mut d = s.clone();
        d.turns[1] = Turn::assistant("a red circle");
        let enc = encode(&tok, ChatFormat::Vicuna, &d, 4, 3, 100, Some(&task)).expect("encode");
        assert_eq!(enc.ids[..n], want[..n]);
        let words = &enc.ids[n..enc.ids.len() - (task.img.len() + 3)];
        assert_eq!(tok.decode(words, true).expect("decode"), "a red circle");
        assert_eq!(enc.ids[n + words.len()..], want[n..]);
        assert!(enc.mask[..n].iter().all(|m| !m) && enc.mask[n..].iter().all(|&m| m));
        // Understanding samples are led by [I2T] and keep their text answer.
        let u = super::tests::sample();
        let e = encode(&tok, ChatFormat::Vicuna, &u, 4, 3, 100, Some(&task)).expect("encode");
        assert_eq!(e.ids[1], task.i2t);
        assert!(e.targets() > 0);
    }
}
