// The module worker that owns the wasm engine. Protocol (page → worker):
//   {type: 'init', prefer_webgpu}
//   {type: 'load', id, label, path, files: [names]}      fetch files from this origin
//   {type: 'load', id, label, buffers: {name: ArrayBuffer}} files the user picked
//   {type: 'load', id, label, manifest: URL, manifest_bytes?: ArrayBuffer, residency?}
//        an exported model (train-native export-web): the manifest, then its shards one by one
//        (each verified and put on the device before the next is fetched), then its copied
//        files; residency 'quantized' (default on WebGPU) or 'f32' (default on the CPU)
//   {type: 'logits', id, prompt, image}                    the last position's logits of a prompt
//   {type: 'chat', id, turns, format, system, image: ArrayBuffer|null, options}
//   {type: 'chat', id, prompt, image, options}            a prompt taken as written
//        (+ image_options: a GenLLaVA answer that starts with [SOI] is drawn with them)
//   {type: 'check-image', id, image: ArrayBuffer}         format and size, from the header
//   {type: 'generate', id, prompt, options}               draw (GenLLaVA models): options
//                                                          {steps, guidance, seed, scheduler}
//   {type: 'edit', id, image: ArrayBuffer, instruction, options}   edit (adds options.strength or options.imageGuidance)
//   {type: 'shapes-check', id, image: ArrayBuffer, caption, source?: ArrayBuffer}
//        the shapes-world evaluator on an image (with source: caption is an edit's instruction)
//   {type: 'abort'}                                        stops a chat, a drawing or an edit
// worker → page:
//   {type: 'progress', stage: 'ready', backend, note}
//   {type: 'progress', stage: 'download', id, file, loaded, total}
//   {type: 'progress', stage: 'shard', id, file, index, count, bytes_done, bytes_total}
//        an exported model's shard is on the device (index of count; bytes of all shards)
//   {type: 'progress', stage: 'loading', id}
//   {type: 'token', id, text, token}
//   {type: 'step', id, step, total, rgba: ArrayBuffer, width, height}   a preview per denoising step
//   {type: 'done', id, kind: 'load', info} | {type: 'done', id, kind: 'logits', logits: ArrayBuffer} | {type: 'done', id, kind: 'chat', text, ids, prompt,
//                                            first_token_ms, total_ms, aborted, picture}
//        picture: null, or (the model answered [SOI]) what a drawing's 'done' carries, below
//                                          | {type: 'done', id, kind: 'check-image', width, height}
//                                          | {type: 'done', id, kind: 'generate'|'edit', png: ArrayBuffer,
//                                             rgba: ArrayBuffer, width, height, steps, steps_done,
//                                             previews, total_ms, first_step_ms, aborted, description}
//        description: what a model that describes its edits said it would draw (else null)
//                                          | {type: 'done', id, kind: 'shapes-check', scene, error,
//                                             wanted, match, exact, caption_error}
//   {type: 'error', id, message}
import init, { Engine } from './pkg/genllava_web.js';

let engine = null;
let starting = null;
let aborted = false;

const post = (m, transfer = []) => self.postMessage(m, transfer);

function start(preferWebgpu) {
  starting ??= (async () => {
    await init();
    engine = await Engine.create(preferWebgpu);
    post({ type: 'progress', stage: 'ready', backend: engine.backend(), note: engine.backend_note(), adapter: engine.adapter() });
  })();
  return starting;
}

async function fetchFile(id, url, file) {
  let res;
  try {
    res = await fetch(url);
  } catch (err) {
    throw new Error(`${file}: cannot download it (offline, or the server is unreachable: ${err.message})`);
  }
  if (!res.ok) throw new Error(`${file}: HTTP ${res.status} ${res.statusText}`);
  const total = Number(res.headers.get('content-length')) || 0;
  const reader = res.body.getReader();
  const chunks = [];
  let loaded = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    loaded += value.length;
    post({ type: 'progress', stage: 'download', id, file, loaded, total });
  }
  const bytes = new Uint8Array(loaded);
  let at = 0;
  for (const c of chunks) {
    bytes.set(c, at);
    at += c.length;
  }
  return bytes;
}

async function load(msg) {
  const files = new Map();
  if (msg.buffers) {
    for (const [name, buf] of Object.entries(msg.buffers)) files.set(name, new Uint8Array(buf));
  } else {
    for (const name of msg.files) files.set(name, await fetchFile(msg.id, new URL(msg.path + name, self.location.href), name));
  }
  post({ type: 'progress', stage: 'loading', id: msg.id });
  const info = engine.load_model(files, msg.label);
  post({ type: 'done', id: msg.id, kind: 'load', info });
}

/** An exported model: manifest, then shard after shard into the engine, then the copied files. */
async function loadWeb(msg) {
  const base = new URL(msg.manifest, self.location.href);
  const label = msg.label ?? base.href.replace(/\/[^/]*$/, '');
  const manifest = msg.manifest_bytes ? new Uint8Array(msg.manifest_bytes) : await fetchFile(msg.id, base, 'manifest.json');
  const plan = engine.begin_web_model(manifest, label, msg.residency ?? undefined);
  const files = new Map();
  try {
    let done = 0;
    for (const [i, s] of plan.shards.entries()) {
      // One shard in flight: fetched, copied into the engine, verified, uploaded, dropped.
      engine.push_shard(s.file, await fetchFile(msg.id, new URL(s.file, base), s.file));
      done += s.bytes;
      post({ type: 'progress', stage: 'shard', id: msg.id, file: s.file, index: i + 1, count: plan.shards.length,
        bytes_done: done, bytes_total: plan.shard_bytes });
    }
    for (const f of plan.files) files.set(f.path, await fetchFile(msg.id, new URL(f.path, base), f.path));
  } catch (err) {
    // A failed download: free what is on the device already; the loaded model stays.
    engine.cancel_web_model();
    throw err;
  }
  post({ type: 'progress', stage: 'loading', id: msg.id });
  const info = engine.finish_web_model(files);
  post({ type: 'done', id: msg.id, kind: 'load', info });
}

async function logits(msg) {
  const out = await engine.logits(msg.prompt, msg.image ? new Uint8Array(msg.image) : undefined);
  post({ type: 'done', id: msg.id, kind: 'logits', logits: out.buffer }, [out.buffer]);
}

async function chat(msg) {
  const prompt = msg.prompt ?? engine.render_prompt(JSON.stringify(msg.turns), msg.format ?? 'vicuna', !!msg.system);
  const image = msg.image ? new Uint8Array(msg.image) : undefined;
  const ids = [];
  const t0 = performance.now();
  let first = null;
  aborted = false;
  const text = await engine.chat(prompt, image, msg.options ?? {}, (delta, token) => {
    if (first === null) first = performance.now() - t0;
    ids.push(token);
    post({ type: 'token', id: msg.id, text: delta, token });
  });
  const total = performance.now() - t0;
  // A GenLLaVA model that answers with [SOI] chose to draw: the head and the decoder follow.
  let picture = null;
  if (!aborted && ids.length && ids.at(-1) === engine.soi_token()) {
    picture = await drawing(msg.id, (onStep) =>
      engine.draw_reply(prompt, Uint32Array.from(ids), image, msg.image_options ?? {}, onStep));
  }
  post({
    type: 'done', id: msg.id, kind: 'chat', text, ids, prompt,
    first_token_ms: first, total_ms: total, aborted: aborted || !!picture?.aborted, picture,
  }, picture ? [picture.png, picture.rgba] : []);
}

/** Run `start(onStep)` (a drawing of the engine), posting a preview per step; the result's buffers. */
async function drawing(id, start) {
  const t0 = performance.now();
  let first = null;
  let previews = 0;
  const out = await start((step, total, rgba, width, height) => {
    if (first === null) first = performance.now() - t0;
    previews += 1;
    const buf = rgba.buffer;
    post({ type: 'step', id, step, total, rgba: buf, width, height }, [buf]);
  });
  return {
    png: out.png.buffer, rgba: out.rgba.buffer, width: out.width, height: out.height, steps: out.steps,
    steps_done: out.steps_done, previews, aborted: out.aborted, first_step_ms: first, total_ms: performance.now() - t0,
    description: out.description ?? null,
  };
}

async function draw(msg) {
  const options = msg.options ?? {};
  const out = await drawing(msg.id, (onStep) => (msg.type === 'edit'
    ? engine.edit(new Uint8Array(msg.image), msg.instruction, options, onStep)
    : engine.generate(msg.prompt, options, onStep)));
  post({ type: 'done', id: msg.id, kind: msg.type, ...out }, [out.png, out.rgba]);
}

self.onmessage = async (e) => {
  const msg = e.data;
  try {
    if (msg.type === 'abort') {
      aborted = true;
      engine?.abort();
      return;
    }
    await start(msg.prefer_webgpu ?? true);
    if (msg.type === 'load' && msg.manifest) await loadWeb(msg);
    else if (msg.type === 'load') await load(msg);
    else if (msg.type === 'logits') await logits(msg);
    else if (msg.type === 'chat') await chat(msg);
    else if (msg.type === 'generate' || msg.type === 'edit') await draw(msg);
    else if (msg.type === 'shapes-check') {
      const source = msg.source ? new Uint8Array(msg.source) : undefined;
      const report = Engine.shapes_check(new Uint8Array(msg.image), msg.caption ?? undefined, source);
      post({ type: 'done', id: msg.id, kind: 'shapes-check', ...report });
    }
    else if (msg.type === 'check-image') {
      const { width, height } = engine.check_image(new Uint8Array(msg.image));
      post({ type: 'done', id: msg.id, kind: 'check-image', width, height });
    }
    else if (msg.type !== 'init') throw new Error(`unknown message type ${msg.type}`);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    post({ type: 'error', id: msg.id, kind: msg.type, message });
  }
};
