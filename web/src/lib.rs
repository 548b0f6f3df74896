//! GenLLaVA in the browser: the wasm-bindgen [`Engine`] a Web Worker of `www/` owns.
//!
//! The engine picks its device once (WebGPU through Burn's wgpu backend, or the
//! CPU backend when the browser has no WebGPU), loads a LLaVA or GenLLaVA model
//! from bytes the page fetched, answers prompts with an asynchronous generation
//! loop and draws or edits images with an asynchronous denoising loop: the same
//! core pieces as the native CLI (`pipeline::prepare`, `llama::Generator`,
//! `StreamDecoder`, `GenLlava::start_generate` / `start_edit`), but every read
//! back goes through `into_data_async`, because a browser cannot block on the GPU.

mod backend;
mod decode;
mod imagine;
mod input;
mod js;
#[cfg(all(test, target_arch = "wasm32"))]
mod kernel_tests;
mod model;
mod options;
mod webload;

pub use backend::Backend;
pub use input::{MAX_IMAGE_SIDE, check_image};
pub use model::Model;
pub use options::{ChatOptions, ImageRequest};
pub use webload::WebLoad;

use burn::tensor::Device;
use genllava::checkpoint::MemorySource;
use genllava::image::RgbImage;
use genllava::pipeline::{Prompt, prepare};
use genllava::template::{ChatFormat, Turn};
use genllava::tokenizer::StreamDecoder;
use decode::{AsyncDecoder, read_logits};
use js::err;
use imagine::{Drawing, Task};
use js_sys::{Function, Promise, Uint8Array};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

/// The browser engine: one device, at most one model, one chat at a time.
#[wasm_bindgen]
pub struct Engine {
    device: Device,
    backend: Backend,
    note: String,
    model: RefCell<Option<Rc<Model>>>,
    /// An exported model arriving shard by shard ([`Engine::begin_web_model`]).
    web_load: RefCell<Option<WebLoad>>,
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
            web_load: RefCell::new(None),
            abort: Rc::new(Cell::new(false)),
            busy: Rc::new(Cell::new(false)),
        }
    }

    /// `"webgpu"` or `"cpu"`.
    pub fn backend(&self) -> String {
        self.backend.id().into()
    }

    /// The WebGPU adapter as the browser describes it (`adapter.info`'s vendor, architecture,
    /// device and description: `google swiftshader` in headless chromium here; empty on the CPU
    /// or where the browser says nothing) and the matrix product the diffusion model runs there
    /// (`genllava::kernels::MatmulChoice`: the WGSL kernel on SwiftShader).
    pub fn adapter(&self) -> String {
        match genllava::kernels::adapter_name(&self.device) {
            Some(name) => {
                let product = if genllava::kernels::wgsl_matmul_preferred(&self.device) {
                    "shaders/matmul.wgsl"
                } else {
                    "Burn's matmul"
                };
                format!("{name} (products: {product})")
            }
            None => String::new(),
        }
    }

    /// Why the CPU is in use when WebGPU was asked for (empty otherwise).
    pub fn backend_note(&self) -> String {
        self.note.clone()
    }

    /// Load a model from `files`, a `Map` or plain object of file name →
    /// `Uint8Array` (or `ArrayBuffer`): `config.json`, `model.safetensors` (or the
    /// shards and their index), `tokenizer.json` and the image processor config;
    /// a GenLLaVA model adds `genllava.json`, `gen_head/…` and `sd/…` (names with
    /// their folder). `label` names the model in error messages. Returns a
    /// summary object; `kind` is `genllava` (can draw) or `llava`.
    pub fn load_model(&self, files: JsValue, label: Option<String>) -> Result<JsValue, JsError> {
        if self.busy.get() {
            return Err(JsError::new("a chat or an image is running: stop it before loading another model"));
        }
        let src = MemorySource { files: js::files(&files)?, label: label.unwrap_or_else(|| "model".into()) };
        let loaded = Model::load(&src, &self.device).map_err(|e| JsError::new(&e.to_string()))?;
        let info = summary(&loaded, &src.label)?;
        *self.model.borrow_mut() = Some(Rc::new(loaded));
        js::json(&info)
    }

    /// Start loading an exported model (the web format of `train-native export-web`) from
    /// `manifest`, the bytes of its `manifest.json`; `label` (its folder or URL) names it in
    /// errors. `residency`: `quantized` keeps q8 / q4 linear weights block-quantized on the
    /// device (the default on WebGPU), `f32` dequantizes them as they arrive (the default on
    /// the CPU). Returns the plan `{quant, shards: [{file, bytes, component}], shard_bytes,
    /// files: [{path, bytes}], residency}`: push every shard with [`Self::push_shard`] (in
    /// order keeps memory lowest), then [`Self::finish_web_model`] with the copied files.
    /// The loaded model keeps answering until then.
    pub fn begin_web_model(
        &self,
        manifest: &[u8],
        label: Option<String>,
        residency: Option<String>,
    ) -> Result<JsValue, JsError> {
        if self.busy.get() {
            return Err(JsError::new("a chat or an image is running: stop it before loading another model"));
        }
        // A load left half done (a failed download) is dropped with its tensors.
        self.web_load.borrow_mut().take();
        let default = match self.backend {
            Backend::WebGpu => genllava::web::Residency::Quantized,
            Backend::Cpu => genllava::web::Residency::F32,
        };
        let residency = webload::parse_residency(residency.as_deref(), default).map_err(|e| JsError::new(&e))?;
        let label = label.unwrap_or_else(|| "model".into());
        let load =
            WebLoad::begin(&label, manifest, &self.device, residency).map_err(|e| JsError::new(&e.to_string()))?;
        let mut plan = load.plan();
        plan["residency"] = webload::residency_name(residency).into();
        *self.web_load.borrow_mut() = Some(load);
        js::json(&plan)
    }

    /// Verify one shard of the model begun with [`Self::begin_web_model`] (its size and
    /// sha256 against the manifest) and put its tensors on the device; the bytes are dropped
    /// before this returns. An error (a corrupt shard names its file) ends the load.
    pub fn push_shard(&self, file: String, bytes: Vec<u8>) -> Result<(), JsError> {
        let mut slot = self.web_load.borrow_mut();
        let load = slot.as_mut().ok_or_else(|| JsError::new("push_shard: no exported model is being loaded"))?;
        if let Err(e) = load.loader.push_shard(&file, bytes) {
            slot.take();
            return Err(JsError::new(&e.to_string()));
        }
        load.pushed += 1;
        Ok(())
    }

    /// Drop a model begun with [`Self::begin_web_model`] and not finished (a failed download),
    /// with the tensors already on the device; the loaded model stays.
    pub fn cancel_web_model(&self) {
        self.web_load.borrow_mut().take();
    }

    /// Finish the model begun with [`Self::begin_web_model`]: `files` are its copied files
    /// (a `Map` or object of path → bytes, each checked against the manifest's sha256). Makes
    /// it the loaded model and returns its summary, as [`Self::load_model`] does, plus
    /// `format: "web"`, `quant`, `shards`, `residency` (`quantized` or `f32`),
    /// `residency_note` (where the weights live), `scales` (the export's q8 / q4 block
    /// scales, `f32` or `f16`; `null` without blocks) and `device_scales` (those kept on
    /// the device: `f16` only where the adapter has `shader-f16`; `null` when none are kept).
    pub fn finish_web_model(&self, files: JsValue) -> Result<JsValue, JsError> {
        let load =
            self.web_load.borrow_mut().take().ok_or_else(|| JsError::new("no exported model is being loaded"))?;
        if self.busy.get() {
            return Err(JsError::new("a chat or an image is running: stop it before loading another model"));
        }
        let files = js::files(&files)?;
        let (label, residency, note, shards) = (load.label.clone(), load.residency, load.residency_note(), load.pushed);
        let quant = load.loader.manifest().quant.name().to_string();
        let scales = load.scales().map(|s| s.name());
        let device_scales = load.loader.device_scales().map(|s| s.name());
        let folder = load.finish(files).map_err(|e| JsError::new(&e.to_string()))?;
        let loaded = Model::load(&folder, &self.device).map_err(|e| JsError::new(&e.to_string()))?;
        let mut info = summary(&loaded, &label)?;
        info["format"] = "web".into();
        info["quant"] = quant.into();
        info["shards"] = shards.into();
        info["residency"] = webload::residency_name(residency).into();
        info["residency_note"] = note.into();
        info["scales"] = scales.into();
        info["device_scales"] = device_scales.into();
        *self.model.borrow_mut() = Some(Rc::new(loaded));
        js::json(&info)
    }

    /// The next-token logits after `prompt` (taken as written, template included; `<image>`
    /// marks `image`, PNG/JPEG bytes): the last position's row, one float per vocabulary
    /// entry. Resolves to a `Float32Array`; for comparing models (the web export's modes).
    pub fn logits(&self, prompt: String, image: Option<Uint8Array>) -> Promise {
        let model = match self.begin() {
            Ok(m) => m,
            Err(e) => return Promise::reject(&e.into()),
        };
        self.busy.set(true);
        let (busy, device) = (self.busy.clone(), self.device.clone());
        let image = image.map(|a| a.to_vec());
        future_to_promise(async move {
            let result = last_logits(&model, &prompt, image.as_deref(), &device).await;
            busy.set(false);
            result.map(|v| js_sys::Float32Array::from(&v[..]).into()).map_err(JsValue::from)
        })
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
    /// closed with the loaded tokenizer's end-of-sequence token. A GenLLaVA model
    /// renders with its own `genllava.json` template and system prompt, led by
    /// `[I2T]` (`format` and `system` are then unused).
    pub fn render_prompt(&self, turns_json: &str, format: &str, system: bool) -> Result<String, JsError> {
        let turns: Vec<Turn> =
            serde_json::from_str(turns_json).map_err(|e| JsError::new(&format!("conversation: {e}")))?;
        let format: ChatFormat = serde_json::from_value(serde_json::Value::String(format.into()))
            .map_err(|_| JsError::new(&format!("unknown chat format `{format}` (vicuna, mistral_instruct)")))?;
        match self.model.borrow().as_ref() {
            Some(m) => Ok(m.chat_prompt(&turns, format, system)),
            None => {
                Ok(genllava::template::render(format, system.then_some(genllava::template::SYSTEM), &turns, "</s>"))
            }
        }
    }

    /// Answer `prompt` (taken as written, template included; `<image>` marks the
    /// image) about `image` (PNG/JPEG bytes). `options`: `{max_new_tokens,
    /// temperature, top_p, top_k, repetition_penalty, seed}` (all optional).
    /// `on_token(text_delta, id)` is called for every generated token (the delta
    /// may be empty while a character is incomplete). Resolves to the answer text;
    /// [`Self::abort`] ends it early with the text so far.
    pub fn chat(&self, prompt: String, image: Option<Uint8Array>, options: JsValue, on_token: Function) -> Promise {
        let (model, opts) = match self.begin().and_then(|m| Ok((m, js::chat_options(&options)?))) {
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

    /// Draw `prompt` (a description) with a GenLLaVA model. `options`: `{steps,
    /// guidance, seed, scheduler}` (all optional; the model's `genllava.json`
    /// defaults). `on_step(done, total, rgba, width, height)` is called after
    /// every denoising step with a preview (the VAE decode of the current
    /// latents, RGBA bytes). Resolves to `{png, rgba, width, height, steps,
    /// steps_done, aborted}`; [`Self::abort`] ends it early with the image so far.
    pub fn generate(&self, prompt: String, options: JsValue, on_step: Function) -> Promise {
        self.draw(Task::Generate { prompt }, options, on_step)
    }

    /// Edit `image` (PNG/JPEG bytes) as `instruction` says, with a GenLLaVA
    /// model; as [`Self::generate`], and `options.strength` (img2img models, `(0, 1]`) or `options.imageGuidance` (InstructPix2Pix models).
    pub fn edit(&self, image: Uint8Array, instruction: String, options: JsValue, on_step: Function) -> Promise {
        self.draw(Task::Edit { image: image.to_vec(), instruction }, options, on_step)
    }

    /// The `[SOI]` id of a GenLLaVA model (none for LLaVA, or without a model):
    /// a chat answer that ends in it is the model's choice to draw (see [`Self::draw_reply`]).
    pub fn soi_token(&self) -> Option<u32> {
        self.model.borrow().as_ref().and_then(|m| m.genllava()).map(|g| g.config.task_tokens.soi)
    }

    /// Draw the picture a GenLLaVA model chose in chat: `ids`, the answer of
    /// [`Self::chat`] to `prompt` (about `image`), ended in [`Self::soi_token`].
    /// `options` and `on_step` as for [`Self::generate`].
    pub fn draw_reply(
        &self,
        prompt: String,
        ids: Vec<u32>,
        image: Option<Uint8Array>,
        options: JsValue,
        on_step: Function,
    ) -> Promise {
        self.draw(Task::Reply { prompt, ids, image: image.map(|a| a.to_vec()) }, options, on_step)
    }

    fn draw(&self, task: Task, options: JsValue, on_step: Function) -> Promise {
        let (model, req) = match self.begin().and_then(|m| Ok((m, js::image_options(&options)?))) {
            Ok(v) => v,
            Err(e) => return Promise::reject(&e.into()),
        };
        self.abort.set(false);
        self.busy.set(true);
        let busy = self.busy.clone();
        let run = Drawing { model, yield_each_step: self.backend == Backend::Cpu, abort: self.abort.clone() };
        future_to_promise(async move {
            let result = run.run(&task, &req, &on_step).await;
            busy.set(false);
            result.map_err(JsValue::from)
        })
    }

    /// The loaded model, when nothing else runs.
    fn begin(&self) -> Result<Rc<Model>, JsError> {
        let model = self.model.borrow().clone().ok_or_else(|| JsError::new("no model is loaded"))?;
        if self.busy.get() {
            return Err(JsError::new("a chat or an image is already running"));
        }
        Ok(model)
    }

    /// What the shapes-world evaluator sees in a PNG/JPEG image: `{scene}` (the
    /// caption of the parsed scene, or `null` with `error`), and with a
    /// `caption` of what should be there, `wanted` (that scene's caption), `match`
    /// (per-attribute counts) and `exact`, or `caption_error` when there is no such
    /// scene. With `edit_source` (the image that was edited), `caption` is the edit's
    /// instruction and the wanted scene is the source's with it applied. For images
    /// of the shipped shapes-world model.
    pub fn shapes_check(
        bytes: &[u8],
        caption: Option<String>,
        edit_source: Option<Vec<u8>>,
    ) -> Result<JsValue, JsError> {
        use genllava::shapes::{eval, text};
        let decode = |what: &str, bytes: &[u8]| {
            check_image(bytes).map_err(|e| JsError::new(&format!("{what}: {e}")))?;
            RgbImage::decode(bytes).map_err(|e| JsError::new(&format!("{what}: {e}")))
        };
        let image = decode("image", bytes)?;
        let want = match (caption, edit_source) {
            (None, _) => None,
            (Some(caption), None) => Some(text::parse_caption(&caption)),
            (Some(instruction), Some(source)) => {
                let source = decode("edit source", &source)?;
                Some(eval::edit_target_of_image(&source.data, source.width, source.height, &instruction))
            }
        };
        let mut out = serde_json::json!({});
        match eval::parse_image(&image.data, image.width, image.height) {
            Err(e) => {
                out["scene"] = serde_json::Value::Null;
                out["error"] = e.to_string().into();
            }
            Ok(scene) => {
                out["scene"] = text::caption(&scene).into();
                match want {
                    None => {}
                    Some(Err(e)) => out["caption_error"] = e.to_string().into(),
                    Some(Ok(want)) => {
                        let m = eval::SceneMatch::of(&scene, &want);
                        out["wanted"] = text::caption(&want).into();
                        out["exact"] = m.exact().into();
                        out["match"] = serde_json::to_value(m).map_err(|e| JsError::new(&e.to_string()))?;
                    }
                }
            }
        }
        js::json(&out)
    }

    /// Ask the running chat or image to stop after the current token or step.
    pub fn abort(&self) {
        self.abort.set(true);
    }
}

/// The summary of a loaded model the page shows (see [`Engine::load_model`]).
fn summary(loaded: &Model, label: &str) -> Result<serde_json::Value, JsError> {
    let cfg = &loaded.ckpt().config;
    let mut info = serde_json::json!({
        "label": label,
        "kind": if loaded.genllava().is_some() { "genllava" } else { "llava" },
        "vocab_size": cfg.text_config.vocab_size,
        "hidden_size": cfg.text_config.hidden_size,
        "layers": cfg.text_config.num_hidden_layers,
        "image_size": cfg.vision_config.image_size,
        "image_tokens": cfg.image_seq_len(),
        "has_image_processor": loaded.processor().is_some(),
        "unused_tensors": loaded.ckpt().unused,
    });
    if let Some(g) = loaded.genllava() {
        let side = g.sd.unet_config.sample_size.unwrap_or(8) * g.sd.vae_scale();
        info["output_size"] = side.into();
        info["diffusion"] = serde_json::to_value(&g.config.diffusion).map_err(|e| JsError::new(&e.to_string()))?;
    }
    Ok(info)
}

/// The last position's logits after `prompt` (about `image`), read back asynchronously.
async fn last_logits(m: &Model, prompt: &str, image: Option<&[u8]>, device: &Device) -> Result<Vec<f32>, JsError> {
    if let Some(bytes) = image {
        check_image(bytes).map_err(|e| JsError::new(&format!("image: {e}")))?;
    }
    let image = image.map(RgbImage::decode).transpose().map_err(err)?;
    let ckpt = m.ckpt();
    let Prompt { embeds, .. } =
        prepare(ckpt, m.tokenizer(), m.processor(), prompt, image.as_ref(), m.pad_to_square(), device).map_err(err)?;
    let lm = &ckpt.model.language_model;
    let mut cache = ckpt.model.new_cache(&ckpt.config, device);
    let hidden = lm.forward_embeds(embeds, &mut cache);
    read_logits(genllava::llama::last_logits_tensor(lm, hidden).map_err(err)?).await
}

/// One chat run, owning what it needs across `await`s.
struct Chat {
    model: Rc<Model>,
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
            let m = &*self.model;
        if let Some(bytes) = image {
            check_image(bytes).map_err(|e| JsError::new(&format!("image: {e}")))?;
        }
        let image = image.map(RgbImage::decode).transpose().map_err(err)?;
        let (ckpt, tokenizer) = (m.ckpt(), m.tokenizer());
        let prompt = prepare(ckpt, tokenizer, m.processor(), prompt, image.as_ref(), m.pad_to_square(), &self.device)
            .map_err(err)?;
        let eos = ckpt.config.text_config.eos_token_ids();
        // A GenLLaVA model's answer ends where it chooses to draw.
        let soi = m.genllava().map(|g| g.config.task_tokens.soi);
        let sampling = opts.sampling();
        let mut decoder = AsyncDecoder::start(ckpt, prompt, &sampling, &self.device)?;
        let mut stream = StreamDecoder::default();
        let mut text = String::new();
        if sampling.max_new_tokens == 0 {
            return Ok(text);
        }
        loop {
            let id = decoder.next().await?;
            let delta =
                if eos.contains(&id) || soi == Some(id) { None } else { stream.push(tokenizer, id).map_err(err)? };
            let delta = delta.unwrap_or_default();
            text.push_str(&delta);
            on_token
                .call2(&JsValue::NULL, &JsValue::from_str(&delta), &JsValue::from(id))
                .map_err(|e| JsError::new(&format!("on_token failed: {}", js::describe(&e))))?;
            if decoder.done() || self.abort.get() || soi == Some(id) {
                return Ok(text);
            }
            if self.yield_each_token {
                js::yield_now().await;
                if self.abort.get() {
                    return Ok(text);
                }
            }
            decoder.feed(id)?;
        }
    }
}
