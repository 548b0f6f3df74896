//! GenLLaVA in the browser: the wasm-bindgen [`Engine`] a Web Worker of `www/` owns.
//!
//! The engine picks its device once (WebGPU through Burn's wgpu backend, or the
//! CPU backend when the browser has no WebGPU), loads a LLaVA checkpoint from
//! bytes the page fetched, and answers prompts with an asynchronous generation
//! loop: the same core pieces as the native CLI (`pipeline::prepare`,
//! `llama::Generator`, `StreamDecoder`), but the logits are read back with
//! `into_data_async`, because a browser cannot block on the GPU.

mod backend;
mod input;
mod js;
mod options;

pub use backend::Backend;
pub use input::{MAX_IMAGE_SIDE, check_image};
pub use options::ChatOptions;

use burn::tensor::Device;
use genllava::checkpoint::{self, MemorySource};
use genllava::image::{ImageProcessorConfig, RgbImage};
use genllava::llama::{Generator, logits_vec};
use genllava::llava::{LlavaCheckpoint, load_image_processor};
use genllava::pipeline::{Prompt, prepare};
use genllava::template::{self, ChatFormat, Turn};
use genllava::tokenizer::{StreamDecoder, TextTokenizer};
use js_sys::{Function, Promise, Uint8Array};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// A loaded model: checkpoint, tokenizer and image processor.
struct Loaded {
    ckpt: LlavaCheckpoint,
    tokenizer: TextTokenizer,
    processor: Option<ImageProcessorConfig>,
}

/// The browser engine: one device, at most one model, one chat at a time.
#[wasm_bindgen]
pub struct Engine {
    device: Device,
    backend: Backend,
    note: String,
    model: RefCell<Option<Rc<Loaded>>>,
    abort: Rc<Cell<bool>>,
    busy: Rc<Cell<bool>>,
}

#[wasm_bindgen]
impl Engine {
    /// Start the engine. With `prefer_webgpu`, ask for a WebGPU device; when the
    /// browser has none, fall back to the CPU and say why in [`Self::backend_note`].
    pub async fn create(prefer_webgpu: bool) -> Engine {
        backend::install_panic_hook();
        let (device, backend, note) = backend::pick(prefer_webgpu).await;
        Engine {
            device,
            backend,
            note,
            model: RefCell::new(None),
            abort: Rc::new(Cell::new(false)),
            busy: Rc::new(Cell::new(false)),
        }
    }

    /// `"webgpu"` or `"cpu"`.
    pub fn backend(&self) -> String {
        self.backend.id().into()
    }

    /// Why the CPU is in use when WebGPU was asked for (empty otherwise).
    pub fn backend_note(&self) -> String {
        self.note.clone()
    }

    /// Load a checkpoint from `files`, a `Map` or plain object of file name →
    /// `Uint8Array` (or `ArrayBuffer`): `config.json`, `model.safetensors` (or the
    /// shards and their index), `tokenizer.json` and the image processor config.
    /// `label` names the model in error messages. Returns a summary object.
    pub fn load_model(&self, files: JsValue, label: Option<String>) -> Result<JsValue, JsError> {
        if self.busy.get() {
            return Err(JsError::new("a chat is running: stop it before loading another model"));
        }
        let src = MemorySource { files: js::files(&files)?, label: label.unwrap_or_else(|| "model".into()) };
        let loaded = load(&src, &self.device).map_err(|e| JsError::new(&e.to_string()))?;
        let cfg = &loaded.ckpt.config;
        let info = serde_json::json!({
            "label": src.label,
            "vocab_size": cfg.text_config.vocab_size,
            "hidden_size": cfg.text_config.hidden_size,
            "layers": cfg.text_config.num_hidden_layers,
            "image_size": cfg.vision_config.image_size,
            "image_tokens": cfg.image_seq_len(),
            "has_image_processor": loaded.processor.is_some(),
            "unused_tensors": loaded.ckpt.unused,
        });
        *self.model.borrow_mut() = Some(Rc::new(loaded));
        js::json(&info)
    }

    /// Check PNG/JPEG `bytes` the way [`Self::chat`] will, from the header only:
    /// resolves to `{width, height}`, or throws a plain reason (not an image,
    /// broken header, a side over [`MAX_IMAGE_SIDE`] pixels).
    pub fn check_image(&self, bytes: &[u8]) -> Result<JsValue, JsError> {
        let (width, height) = check_image(bytes).map_err(|e| JsError::new(&e))?;
        js::json(&serde_json::json!({ "width": width, "height": height }))
    }

    /// The largest image side (pixels) [`Self::chat`] accepts.
    pub fn max_image_side() -> u32 {
        MAX_IMAGE_SIDE
    }

    /// Whether a model is loaded.
    pub fn has_model(&self) -> bool {
        self.model.borrow().is_some()
    }

    /// Render a conversation (`turns_json`: `[{"role": "user"|"assistant", "text": …}]`)
    /// in `format` (`vicuna` or `mistral_instruct`), ending with the assistant's cue,
    /// optionally after the paper's system prompt. Finished assistant turns are
    /// closed with the loaded tokenizer's end-of-sequence token.
    pub fn render_prompt(&self, turns_json: &str, format: &str, system: bool) -> Result<String, JsError> {
        let turns: Vec<Turn> =
            serde_json::from_str(turns_json).map_err(|e| JsError::new(&format!("conversation: {e}")))?;
        let format: ChatFormat = serde_json::from_value(serde_json::Value::String(format.into()))
            .map_err(|_| JsError::new(&format!("unknown chat format `{format}` (vicuna, mistral_instruct)")))?;
        let eos = self.model.borrow().as_ref().map(|m| eos_text(m)).unwrap_or_else(|| "</s>".into());
        Ok(template::render(format, system.then_some(template::SYSTEM), &turns, &eos))
    }

    /// Answer `prompt` (taken as written, template included; `<image>` marks the
    /// image) about `image` (PNG/JPEG bytes). `options`: `{max_new_tokens,
    /// temperature, top_p, top_k, repetition_penalty, seed}` (all optional).
    /// `on_token(text_delta, id)` is called for every generated token (the delta
    /// may be empty while a character is incomplete). Resolves to the answer text;
    /// [`Self::abort`] ends it early with the text so far.
    pub fn chat(&self, prompt: String, image: Option<Uint8Array>, options: JsValue, on_token: Function) -> Promise {
        let start = || -> Result<_, JsError> {
            let model = self.model.borrow().clone().ok_or_else(|| JsError::new("no model is loaded"))?;
            if self.busy.get() {
                return Err(JsError::new("a chat is already running"));
            }
            Ok((model, js::chat_options(&options)?))
        };
        let (model, opts) = match start() {
            Ok(v) => v,
            Err(e) => return Promise::reject(&e.into()),
        };
        self.abort.set(false);
        self.busy.set(true);
        let run = Chat {
            model,
            device: self.device.clone(),
            yield_each_token: self.backend == Backend::Cpu,
            abort: self.abort.clone(),
            busy: self.busy.clone(),
        };
        let image = image.map(|a| a.to_vec());
        future_to_promise(async move {
            let result = run.run(&prompt, image.as_deref(), &opts, &on_token).await;
            run.busy.set(false);
            result.map(JsValue::from).map_err(JsValue::from)
        })
    }

    /// Ask the running chat to stop after the current token.
    pub fn abort(&self) {
        self.abort.set(true);
    }
}

/// Load a LLaVA checkpoint, its tokenizer and its image processor from `src`.
fn load(src: &MemorySource, device: &Device) -> genllava::Result<Loaded> {
    let tokenizer = TextTokenizer::from_bytes(&checkpoint::read_required(src, "tokenizer.json")?)?;
    let processor = load_image_processor(src)?;
    let ckpt = LlavaCheckpoint::load(src, device)?;
    Ok(Loaded { ckpt, tokenizer, processor })
}

/// The text of the model's first end-of-sequence token (`</s>` for Llama/Mistral).
fn eos_text(m: &Loaded) -> String {
    m.ckpt
        .config
        .text_config
        .eos_token_ids()
        .first()
        .and_then(|&id| m.tokenizer.inner().id_to_token(id))
        .unwrap_or_else(|| "</s>".into())
}

/// One chat run, owning what it needs across `await`s.
struct Chat {
    model: Rc<Loaded>,
    device: Device,
    /// The CPU backend never waits on anything: give the worker's event loop a
    /// turn after each token so an abort message can arrive.
    yield_each_token: bool,
    abort: Rc<Cell<bool>>,
    busy: Rc<Cell<bool>>,
}

impl Chat {
    async fn run(
        &self,
        prompt: &str,
        image: Option<&[u8]>,
        opts: &ChatOptions,
        on_token: &Function,
    ) -> Result<String, JsError> {
        let err = |e: genllava::Error| JsError::new(&e.to_string());
        let m = &*self.model;
        if let Some(bytes) = image {
            check_image(bytes).map_err(|e| JsError::new(&format!("image: {e}")))?;
        }
        let image = image.map(RgbImage::decode).transpose().map_err(err)?;
        let Prompt { embeds, text_ids } =
            prepare(&m.ckpt, &m.tokenizer, m.processor.as_ref(), prompt, image.as_ref(), false, &self.device)
                .map_err(err)?;
        let lm = &m.ckpt.model.language_model;
        let mut cache = m.ckpt.model.new_cache(&m.ckpt.config, &self.device);
        let eos = m.ckpt.config.text_config.eos_token_ids();
        let sampling = opts.sampling();
        let mut generator = Generator::new(&text_ids, &eos, &sampling);
        let mut stream = StreamDecoder::default();
        let mut text = String::new();
        let mut logits = generator.prefill(lm, &mut cache, embeds).map_err(err)?;
        if sampling.max_new_tokens == 0 {
            return Ok(text);
        }
        loop {
            let data = logits
                .into_data_async()
                .await
                .map_err(|e| JsError::new(&format!("reading the logits back failed: {e:?}")))?;
            let id = generator.choose(&logits_vec(data).map_err(err)?).id;
            let delta = if eos.contains(&id) { None } else { stream.push(&m.tokenizer, id).map_err(err)? };
            let delta = delta.unwrap_or_default();
            text.push_str(&delta);
            on_token
                .call2(&JsValue::NULL, &JsValue::from_str(&delta), &JsValue::from(id))
                .map_err(|e| JsError::new(&format!("on_token failed: {}", js::describe(&e))))?;
            if generator.done() || self.abort.get() {
                return Ok(text);
            }
            if self.yield_each_token {
                js::yield_now().await;
                if self.abort.get() {
                    return Ok(text);
                }
            }
            logits = generator.step(lm, &mut cache, id).map_err(err)?;
        }
    }
}
