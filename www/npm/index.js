// genllava-chat: GenLLaVA in the browser as an ES module.
//   - `init` and `Engine`: the wasm engine itself (wasm-bindgen glue), for use in your own worker;
//   - `GenllavaClient`: the engine in a dedicated module worker, driven by promises;
//   - `<genllava-chat>`: a chat widget (Shadow DOM) over a GenllavaClient.
// Nothing is fetched but this package's own files and the model files it is given.
export { default as init, Engine } from './pkg/genllava_web.js';

const WORKER_URL = new URL('./worker.js', import.meta.url);

/** The default file names fetched from a model folder (`files` overrides them). */
export const DEFAULT_MODEL_FILES = ['config.json', 'tokenizer.json', 'model.safetensors', 'processor_config.json'];

/** The engine in its own worker. Events (`EventTarget`): `ready`, `progress`, `token`, `step`. */
export class GenllavaClient extends EventTarget {
  #worker;
  #pending = new Map();
  #nextId = 1;
  #chatId = null;

  /** Start the worker; `preferWebgpu: false` runs on the CPU on purpose. */
  constructor({ preferWebgpu = true } = {}) {
    super();
    this.backend = null;
    this.backendNote = '';
    this.adapter = '';
    this.#worker = new Worker(WORKER_URL, { type: 'module' });
    this.#worker.onmessage = (e) => this.#onMessage(e.data);
    this.#worker.onerror = (e) => this.#failAll(new Error(`the engine worker failed: ${e.message ?? 'unknown error'}`));
    this.ready = new Promise((ok) => this.addEventListener('ready', ok, { once: true }));
    this.#worker.postMessage({ type: 'init', prefer_webgpu: preferWebgpu });
  }

  #onMessage(m) {
    if (m.type === 'progress') {
      if (m.stage === 'ready') {
        this.backend = m.backend;
        this.backendNote = m.note;
        this.adapter = m.adapter ?? '';
        this.dispatchEvent(new CustomEvent('ready', { detail: { backend: m.backend, note: m.note, adapter: this.adapter } }));
      }
      this.dispatchEvent(new CustomEvent('progress', { detail: m }));
      return;
    }
    const p = this.#pending.get(m.id);
    if (m.type === 'token') {
      p?.onToken?.(m.text, m.token);
      this.dispatchEvent(new CustomEvent('token', { detail: m }));
      return;
    }
    if (m.type === 'step') {
      p?.onStep?.({ step: m.step, total: m.total, width: m.width, height: m.height, rgba: new Uint8ClampedArray(m.rgba) });
      this.dispatchEvent(new CustomEvent('step', { detail: m }));
      return;
    }
    if (!p) return;
    this.#pending.delete(m.id);
    if (m.type === 'done') p.resolve(m);
    else p.reject(new Error(m.message));
  }

  #failAll(err) {
    for (const p of this.#pending.values()) p.reject(err);
    this.#pending.clear();
  }

  #request(msg, transfer = [], onToken = null, onStep = null) {
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject, onToken, onStep });
      this.#worker.postMessage({ ...msg, id }, transfer);
    });
  }

  /**
   * Load a model: `{url, files}` fetches `files` (default DEFAULT_MODEL_FILES) from the folder
   * `url`; `{buffers}` takes `{name: ArrayBuffer}` as given; `{manifest}` loads an exported model
   * (train-native export-web) from its manifest.json URL, shard by shard (`progress` events with
   * `stage: 'shard'`), `residency` `'quantized'` or `'f32'` (default: quantized on WebGPU).
   * Resolves to the model's summary.
   */
  async load({ url, files = DEFAULT_MODEL_FILES, buffers, label, manifest, residency } = {}) {
    if (manifest) {
      const href = new URL(manifest, document.baseURI).href;
      return (await this.#request({ type: 'load', label, manifest: href, residency })).info;
    }
    if (buffers) {
      const done = await this.#request({ type: 'load', label: label ?? 'model', buffers }, Object.values(buffers));
      return done.info;
    }
    if (!url) throw new Error('load: give `url` (a model folder) or `buffers`');
    const path = new URL(url.endsWith('/') ? url : `${url}/`, document.baseURI).href;
    return (await this.#request({ type: 'load', label: label ?? url, path, files })).info;
  }

  /** Format and size of an image (header only): `{width, height}`, or rejects with the reason. */
  async checkImage(bytes) {
    const done = await this.#request({ type: 'check-image', image: bytes.slice(0) });
    return { width: done.width, height: done.height };
  }

  /**
   * Answer a conversation. `turns`: `[{role, text}]`, the first user text starting with
   * `<image>\n` when `image` (PNG/JPEG bytes) is given. `onToken(delta, id)` streams.
   * Resolves to `{text, ids, prompt, first_token_ms, total_ms, aborted, picture}`: a GenLLaVA model
   * may choose to draw (its answer ends in [SOI]); `picture` is then drawn with `imageOptions`,
   * previews going to `onStep`, and looks like `generate`'s result (else null).
   */
  async chat({
    turns, prompt, image = null, format = 'vicuna', system = false, options = {}, onToken = null,
    imageOptions = {}, onStep = null,
  }) {
    const img = image ? image.slice(0) : null;
    const done = await this.#request(
      { type: 'chat', turns, prompt, image: img, format, system, options, image_options: imageOptions },
      img ? [img] : [],
      onToken,
      onStep,
    );
    return { ...done, picture: done.picture ? imageResult(done.picture) : null };
  }

  /**
   * Draw `prompt` with a GenLLaVA model. `options`: `{steps, guidance, seed, scheduler}` (the
   * model's defaults for those left out). `onStep({step, total, width, height, rgba})` gets a
   * preview after every denoising step: the VAE decode of the current latents as RGBA
   * (`new ImageData(rgba, width, height)` shows it). Resolves to `{png: Blob, rgba, width,
   * height, steps, steps_done, previews, first_step_ms, total_ms, aborted}`.
   */
  async generate({ prompt, options = {}, onStep = null }) {
    return imageResult(await this.#request({ type: 'generate', prompt, options }, [], null, onStep));
  }

  /**
   * Edit `image` (PNG/JPEG bytes, copied) as `instruction` says; as `generate`, plus
   * `options.strength` (img2img models) or `options.imageGuidance` (InstructPix2Pix models). The
   * result's `description` is what a model that describes its edits said it would draw (else null).
   */
  async edit({ image, instruction, options = {}, onStep = null }) {
    const img = image.slice(0);
    return imageResult(await this.#request({ type: 'edit', image: img, instruction, options }, [img], null, onStep));
  }

  /** Stop the running answer or drawing after its current token or step. */
  abort() {
    this.#worker.postMessage({ type: 'abort' });
  }

  /** End the worker (and the engine's memory). */
  terminate() {
    this.#failAll(new Error('the client was terminated'));
    this.#worker.terminate();
  }
}

function imageResult(m) {
  const { type, id, kind, png, rgba, ...rest } = m;
  return { ...rest, png: new Blob([png], { type: 'image/png' }), rgba: new Uint8ClampedArray(rgba) };
}

const STYLE = `
:host { display: block; font: 14px/1.4 system-ui, sans-serif; color: #1c1c1c; border: 1px solid #ccc;
  border-radius: 8px; background: #fff; max-width: 640px; }
header { display: flex; gap: 8px; align-items: center; padding: 6px 10px; border-bottom: 1px solid #ddd; font-size: 12px; }
header b { font-size: 14px; }
.status { color: #555; margin-left: auto; }
.error { margin: 6px 10px 0; padding: 6px 8px; background: #fde8e8; color: #8a1111; border-radius: 4px; white-space: pre-wrap; }
.messages { min-height: 120px; max-height: 360px; overflow-y: auto; padding: 8px 10px; }
.msg { margin: 0 0 8px; padding: 6px 8px; border-radius: 6px; white-space: pre-wrap; word-break: break-word; }
.user { background: #e6eef7; } .assistant { background: #f1f1ec; } .note { color: #777; font-size: 12px; }
form { display: grid; grid-template-columns: 1fr auto; gap: 6px; padding: 8px 10px; border-top: 1px solid #ddd; }
textarea { font: inherit; resize: vertical; grid-column: 1 / -1; }
.row { display: flex; gap: 6px; align-items: center; }
img { max-height: 48px; image-rendering: pixelated; }
img.picture { display: block; max-height: none; width: 128px; height: 128px; }
`;

/**
 * `<genllava-chat model="folder/">`: a chat about an image, answered locally. Attributes:
 * `model` (a model folder URL, required), `files` (space-separated names, default
 * DEFAULT_MODEL_FILES), `backend="cpu"` (skip WebGPU), `max-tokens`, `temperature`,
 * `format` (`vicuna` or `mistral_instruct`). Reflects `state` = loading | ready | answering | error.
 * Events: `genllava-ready` (detail: model summary), `genllava-answer` (detail: the answer).
 */
export class GenllavaChat extends HTMLElement {
  #client = null;
  #image = null;
  #turns = [];
  #els = {};

  connectedCallback() {
    if (this.#client) return;
    const root = this.attachShadow({ mode: 'open' });
    root.innerHTML = `<style>${STYLE}</style>
      <header><b>GenLLaVA</b><span part="backend" class="backend">starting…</span><span class="status" part="status"></span></header>
      <div class="error" part="error" role="alert" hidden></div>
      <div class="messages" part="messages" aria-live="polite"></div>
      <form>
        <textarea rows="2" aria-label="question" placeholder="Ask about the image… (Enter sends)"></textarea>
        <div class="row">
          <label>Image <input type="file" accept="image/png,image/jpeg" aria-label="image"></label>
          <img alt="" hidden>
        </div>
        <div class="row"><button type="submit" class="send" disabled>Send</button><button type="button" class="stop" disabled>Stop</button></div>
      </form>`;
    const q = (s) => root.querySelector(s);
    this.#els = {
      backend: q('.backend'), status: q('.status'), error: q('.error'), messages: q('.messages'),
      question: q('textarea'), file: q('input[type=file]'), preview: q('img'), send: q('.send'), stop: q('.stop'),
    };
    q('form').addEventListener('submit', (e) => {
      e.preventDefault();
      this.ask();
    });
    this.#els.question.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey) {
        e.preventDefault();
        this.ask();
      }
    });
    this.#els.stop.addEventListener('click', () => this.#client.abort());
    this.#els.file.addEventListener('change', () => {
      const f = this.#els.file.files[0];
      this.#els.file.value = '';
      if (f) this.setImage(f);
    });
    this.#start();
  }

  disconnectedCallback() {
    this.#client?.terminate();
    this.#client = null;
  }

  #setState(state, status) {
    this.setAttribute('state', state);
    this.#els.status.textContent = status;
    this.#els.send.disabled = state !== 'ready';
    this.#els.stop.disabled = state !== 'answering';
  }

  #error(message) {
    this.#els.error.textContent = message;
    this.#els.error.hidden = !message;
  }

  #note(cls, text) {
    const el = document.createElement('div');
    el.className = `msg ${cls}`;
    el.textContent = text;
    this.#els.messages.append(el);
    el.scrollIntoView({ block: 'nearest' });
    return el;
  }

  async #start() {
    const model = this.getAttribute('model');
    this.#client = new GenllavaClient({ preferWebgpu: this.getAttribute('backend') !== 'cpu' });
    this.#client.addEventListener('ready', (e) => {
      this.#els.backend.textContent = e.detail.backend === 'webgpu' ? 'WebGPU' : 'CPU (no WebGPU)';
      this.#els.backend.title = e.detail.note;
      this.dataset.backend = e.detail.backend;
    });
    this.#client.addEventListener('progress', (e) => {
      if (e.detail.stage === 'download') this.#els.status.textContent = `downloading ${e.detail.file}…`;
    });
    if (!model) {
      this.#setState('error', '');
      this.#error('<genllava-chat> needs a model="…" attribute: the URL of a model folder.');
      return;
    }
    this.#setState('loading', 'loading the model…');
    try {
      const files = this.getAttribute('files')?.split(/\s+/).filter(Boolean);
      const info = await this.#client.load({ url: model, files: files?.length ? files : undefined });
      this.#setState('ready', `${info.layers} layers · ${info.image_tokens} image tokens`);
      this.dispatchEvent(new CustomEvent('genllava-ready', { detail: info }));
    } catch (err) {
      this.#setState('error', 'no model');
      this.#error(`Could not load the model at ${model}: ${err.message}`);
    }
  }

  /** Use `blob` (PNG/JPEG) as the conversation's image; a refused image keeps the old one. */
  async setImage(blob) {
    this.#error('');
    const bytes = await blob.arrayBuffer();
    try {
      await this.#client.checkImage(bytes);
    } catch (err) {
      this.#error(`"${blob.name ?? 'image'}": ${err.message}; the image was not changed.`);
      return;
    }
    if (this.#image) URL.revokeObjectURL(this.#image.url);
    this.#image = { bytes, url: URL.createObjectURL(blob) };
    this.#els.preview.src = this.#image.url;
    this.#els.preview.hidden = false;
    this.#turns = [];
    this.#els.messages.replaceChildren();
  }

  /** Ask `question` (default: the text box); resolves to the answer, or null when refused. */
  async ask(question = this.#els.question.value.trim()) {
    if (!question || this.getAttribute('state') !== 'ready') return null;
    this.#error('');
    const first = this.#turns.length === 0;
    const turns = [...this.#turns, { role: 'user', text: first && this.#image ? `<image>\n${question}` : question }];
    this.#els.question.value = '';
    this.#note('user', question);
    const el = this.#note('assistant', '');
    this.#setState('answering', 'answering…');
    const num = (name) => (this.hasAttribute(name) ? Number(this.getAttribute(name)) : undefined);
    try {
      let text = '';
      const done = await this.#client.chat({
        turns,
        image: first && this.#image ? this.#image.bytes : null,
        format: this.getAttribute('format') ?? 'vicuna',
        options: { max_new_tokens: num('max-tokens'), temperature: num('temperature') },
        onToken: (delta) => {
          text += delta;
          el.textContent = text;
        },
      });
      el.textContent = done.text;
      if (done.picture) {
        // A GenLLaVA model chose to draw: its picture is the answer.
        const img = document.createElement('img');
        img.className = 'picture';
        img.alt = `drawn: ${question}`;
        img.src = URL.createObjectURL(done.picture.png);
        el.append(img);
      }
      el.dataset.ids = JSON.stringify(done.ids);
      el.dataset.prompt = done.prompt;
      el.dataset.state = done.aborted ? 'aborted' : 'done';
      this.#turns = [...turns, { role: 'assistant', text: done.text }];
      this.#setState('ready', `${done.ids.length} tokens${done.aborted ? ' · stopped' : ''}`);
      this.dispatchEvent(new CustomEvent('genllava-answer', { detail: done }));
      return done;
    } catch (err) {
      el.remove();
      this.#els.question.value = question;
      this.#error(`No answer: ${err.message}`);
      this.#setState('ready', '');
      return null;
    }
  }
}

if (!customElements.get('genllava-chat')) customElements.define('genllava-chat', GenllavaChat);
