//! Generation and editing in the browser: the core's step-wise denoising
//! (`GenLlava::start_generate` / `start_edit`, then `Denoising::step`), with a
//! preview read back asynchronously after every step — the browser cannot block
//! on the GPU, and the awaits are also where an abort gets in.
//!
//! The preview of a step is the VAE decode of the current latents: exactly the
//! picture the run would end on if it stopped there (noisy early on). At the
//! shipped model's 32×32 pixels it costs a fraction of a UNet step.

use crate::input::check_image;
use crate::js::{self, err};
use crate::model::Model;
use crate::options::ImageRequest;
use burn::tensor::Tensor;
use genllava::image::RgbImage;
use crate::decode::AsyncDecoder;
use genllava::pipeline::{GenLlava, prepare};
use genllava::sd::pixels::{encode_png, rgb_bytes, rgb_from_data};
use js_sys::{Function, Uint8Array};
use std::cell::Cell;
use std::rc::Rc;
use wasm_bindgen::{JsError, JsValue};

/// What to draw.
pub enum Task {
    /// Text-to-image from a description.
    Generate { prompt: String },
    /// An edit of `image` (PNG/JPEG bytes) as `instruction` says.
    Edit { image: Vec<u8>, instruction: String },
    /// The picture of a chat answer `ids` that ended in `[SOI]` after `prompt`
    /// (about `image`, PNG/JPEG bytes, when the prompt has `<image>`).
    Reply { prompt: String, ids: Vec<u32>, image: Option<Vec<u8>> },
}

/// One drawing run, owning what it needs across `await`s.
pub struct Drawing {
    pub model: Rc<Model>,
    /// The CPU backend never waits on anything: give the worker's event loop a
    /// turn after each step so an abort message can arrive.
    pub yield_each_step: bool,
    pub abort: Rc<Cell<bool>>,
}

impl Drawing {
    /// Run `task`; `on_step(done, total, rgba, width, height)` after every
    /// denoising step with that step's preview. Resolves to `{png, rgba, width,
    /// height, steps, steps_done, aborted}`; after an abort the image is the
    /// decode of the latents where it stopped.
    pub async fn run(&self, task: &Task, req: &ImageRequest, on_step: &Function) -> Result<JsValue, JsError> {
        let g = self.model.genllava().ok_or_else(|| {
            JsError::new("the loaded model cannot draw: it is a LLaVA model (no genllava.json, gen_head/ and sd/)")
        })?;
        let options = req.resolve(&g.config.diffusion).map_err(|e| JsError::new(&e))?;
        let bytes = match task {
            Task::Generate { .. } => None,
            Task::Edit { image, .. } => Some(image),
            Task::Reply { image, .. } => image.as_ref(),
        };
        let source = match bytes {
            None => None,
            Some(bytes) => {
                check_image(bytes).map_err(|e| JsError::new(&format!("image: {e}")))?;
                Some(RgbImage::decode(bytes).map_err(err)?)
            }
        };
        // A model that describes its edits says in words what it will draw.
        let mut description = None;
        let mut run = match (task, &source) {
            (Task::Generate { prompt }, _) => g.start_generate(prompt, &options),
            (Task::Edit { instruction, .. }, Some(image)) => {
                let prompt = g.edit_prompt(instruction);
                let answer = edit_answer(g, &prompt, image).await?;
                if g.config.describe_edits {
                    description = Some(g.answer_text(&answer).map_err(err)?);
                }
                g.start_edit_answer(&prompt, &answer, image, &options)
            }
            (Task::Edit { .. }, None) => return Err(JsError::new("an edit needs an image")),
            (Task::Reply { prompt, ids, .. }, image) => g.start_reply_drawing(prompt, ids, image.as_ref(), &options),
        }
        .map_err(err)?;
        let total = run.steps();
        let mut aborted = false;
        while !run.is_done() {
            run.step().map_err(err)?;
            let preview = read_image(g, run.latents().clone()).await?;
            let args = js_sys::Array::of5(
                &JsValue::from(run.steps_done() as u32),
                &JsValue::from(total as u32),
                &Uint8Array::from(&rgba(&preview)[..]),
                &JsValue::from(preview.width as u32),
                &JsValue::from(preview.height as u32),
            );
            on_step
                .apply(&JsValue::NULL, &args)
                .map_err(|e| JsError::new(&format!("on_step failed: {}", js::describe(&e))))?;
            if self.yield_each_step {
                js::yield_now().await;
            }
            if self.abort.get() && !run.is_done() {
                aborted = true;
                break;
            }
        }
        let steps_done = run.steps_done();
        let image = read_image(g, run.finish()).await?;
        js::object(&[
            ("png", Uint8Array::from(&encode_png(&image).map_err(err)?[..]).into()),
            ("rgba", Uint8Array::from(&rgba(&image)[..]).into()),
            ("width", JsValue::from(image.width as u32)),
            ("height", JsValue::from(image.height as u32)),
            ("steps", JsValue::from(total as u32)),
            ("steps_done", JsValue::from(steps_done as u32)),
            ("aborted", JsValue::from(aborted)),
            ("description", description.map_or(JsValue::NULL, |d| JsValue::from_str(&d))),
        ])
    }
}

/// The answer to an edit's `prompt` up to `[SOI]`, as `GenLlava::edit_answer`
/// gives it (greedy words first for a model that describes its edits), with every
/// step's logits read back without blocking.
async fn edit_answer(g: &GenLlava, prompt: &str, image: &RgbImage) -> Result<Vec<u32>, JsError> {
    let soi = g.config.task_tokens.soi;
    let Some(sampling) = g.description_sampling() else {
        return Ok(vec![soi]);
    };
    let prompt =
        prepare(&g.llava, &g.tokenizer, g.processor.as_ref(), prompt, Some(image), g.config.pad_to_square, &g.device)
            .map_err(err)?;
    let mut decoder = AsyncDecoder::start(&g.llava, prompt, &sampling, &g.device)?;
    let mut ids = Vec::new();
    loop {
        let id = decoder.next().await?;
        ids.push(id);
        if decoder.done() || id == soi {
            return Ok(g.close_description(ids));
        }
        decoder.feed(id)?;
    }
}

/// Decode `latents` and read the picture back without blocking.
async fn read_image(g: &GenLlava, latents: Tensor<4>) -> Result<RgbImage, JsError> {
    let bytes = rgb_bytes(g.decode(latents).map_err(err)?).map_err(err)?;
    let dims = bytes.dims();
    let data =
        bytes.into_data_async().await.map_err(|e| JsError::new(&format!("reading the image back failed: {e:?}")))?;
    rgb_from_data(data, dims)
        .map_err(err)?
        .into_iter()
        .next()
        .ok_or_else(|| JsError::new("the decoder returned no image"))
}

/// RGBA bytes (opaque) of an RGB image, as `ImageData` wants them.
pub fn rgba(image: &RgbImage) -> Vec<u8> {
    image.data.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect()
}
