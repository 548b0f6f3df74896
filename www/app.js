// The page: model picker, image pick/drop/paste, streamed chat, drawing and editing with a
// preview per denoising step (GenLLaVA models), settings, backend badge.
// All inference runs in worker.js; this file only talks to it by messages. Models kept offline
// on request: keep.js.
import { formatBytes, keepModel, keptState, removeKeptModel } from './keep.js';

const $ = (id) => document.getElementById(id);
const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });

const state = {
  models: [],
  loaded: null,      // label of the loaded model
  info: null,        // its summary (kind: 'genllava' draws and edits)
  image: null,       // {bytes: ArrayBuffer, name, url}
  turns: [],         // conversation so far: [{role, text}]
  pending: new Map(),
  nextId: 1,
  chatting: null,    // {id, el, text}
  drawing: null,     // {id, ctx, caption, previews}
  drawn: 0,          // images drawn so far (names the downloads)
};

// ---- errors -------------------------------------------------------------------------------
function showError(message) {
  $('error-text').textContent = message;
  $('error').hidden = false;
}
function clearError() {
  $('error').hidden = true;
  $('error-text').textContent = '';
}
$('error-close').addEventListener('click', clearError);

// ---- worker requests ----------------------------------------------------------------------
function request(msg, transfer = []) {
  const id = state.nextId++;
  return new Promise((resolve, reject) => {
    state.pending.set(id, { resolve, reject });
    worker.postMessage({ ...msg, id }, transfer);
  });
}

worker.onmessage = (e) => {
  const m = e.data;
  if (m.type === 'progress') return onProgress(m);
  if (m.type === 'token') return onToken(m);
  if (m.type === 'step') return onStep(m);
  const p = state.pending.get(m.id);
  if (m.type === 'error' && !p) return showError(m.message);
  if (!p) return;
  state.pending.delete(m.id);
  if (m.type === 'done') p.resolve(m);
  else p.reject(new Error(m.message));
};
worker.onerror = (e) => showError(`The worker failed: ${e.message ?? 'unknown error'}. Reload the page.`);

function onProgress(m) {
  if (m.stage === 'ready') {
    const badge = $('backend');
    badge.classList.remove('pending');
    badge.classList.add(m.backend);
    badge.dataset.backend = m.backend;
    badge.textContent = m.backend === 'webgpu' ? 'WebGPU' : 'CPU (no WebGPU)';
    badge.title = m.backend === 'webgpu' ? `running on the GPU through WebGPU${m.adapter ? `: ${m.adapter}` : ''}` : m.note;
    if (m.backend !== 'webgpu') console.warn(`WebGPU unavailable: ${m.note}`);
  } else if (m.stage === 'download') {
    const bar = $('progress');
    bar.hidden = false;
    bar.max = m.total || 1;
    bar.value = m.total ? m.loaded : 0;
    $('model-status').textContent = `downloading ${m.file}: ${(m.loaded / 1024).toFixed(0)} KiB`;
  } else if (m.stage === 'shard') {
    // An exported model (web format): shard after shard onto the device.
    const bar = $('progress');
    bar.hidden = false;
    bar.max = m.bytes_total || 1;
    bar.value = m.bytes_done;
    $('model-status').textContent = `shard ${m.index}/${m.count} on the device (${m.file})`;
    $('model-status').dataset.shards = m.index;
  } else if (m.stage === 'loading') {
    $('model-status').textContent = 'building the model…';
  }
}

// ---- models -------------------------------------------------------------------------------
async function listModels() {
  try {
    const res = await fetch('models/index.json');
    if (!res.ok) throw new Error(`HTTP ${res.status}`);
    state.models = await res.json();
  } catch (err) {
    showError(`No bundled models (models/index.json: ${err.message}). Pick local model files instead.`);
  }
  const select = $('model');
  select.replaceChildren(...state.models.map((m) => new Option(m.label, m.id)));
}

function setBusy(busy, chatting = false) {
  $('send').disabled = busy || !state.loaded;
  $('example').disabled = busy;
  $('stop').disabled = !(busy && chatting);
  $('load').disabled = busy;
  $('load-url').disabled = busy;
  $('model-files').disabled = busy;
}

async function loadModel(msg, label) {
  clearError();
  setBusy(true);
  $('send').disabled = true;
  $('model-status').textContent = `loading ${label}…`;
  try {
    const done = await request(msg, msg.buffers ? Object.values(msg.buffers) : []);
    state.loaded = label;
    const i = done.info;
    state.info = i;
    $('model-status').textContent =
      `${label}: ${i.layers} layers, hidden ${i.hidden_size}, vocab ${i.vocab_size}, ${i.image_tokens} image tokens` +
      (i.kind === 'genllava' ? `; draws ${i.output_size}×${i.output_size} images` : '') +
      (i.format === 'web' ? `; web format ${i.quant} in ${i.shards} shards, weights ${i.residency} on the device` : '');
    $('model-status').title = i.residency_note ?? '';
    $('model-status').dataset.residency = i.residency ?? '';
    $('model-status').dataset.kind = i.kind;
    modelKind(i);
    $('model-status').dataset.loaded = label;
    newChat();
  } catch (err) {
    $('model-status').textContent = state.loaded ? `still using ${state.loaded}` : 'no model loaded';
    showError(`Could not load ${label}: ${err.message}`);
  } finally {
    $('progress').hidden = true;
    setBusy(false);
  }
}

$('load').addEventListener('click', () => {
  const m = state.models.find((x) => x.id === $('model').value);
  // An exported model (web format) is listed by its manifest; a plain folder by its files.
  if (m?.manifest) loadModel({ type: 'load', manifest: m.path + m.manifest }, m.id);
  else if (m) loadModel({ type: 'load', label: m.label, path: m.path, files: m.files }, m.id);
});

/** Load an exported model (train-native export-web) from the URL of its manifest.json. */
function loadManifest(url) {
  if (!url) return;
  const manifest = new URL(url, location.href);
  if (!manifest.pathname.endsWith('.json')) manifest.pathname = manifest.pathname.replace(/\/?$/, '/manifest.json');
  loadModel({ type: 'load', manifest: manifest.href }, manifest.href);
}
$('load-url').addEventListener('click', () => loadManifest($('manifest-url').value.trim()));

$('model-files').addEventListener('change', async (e) => {
  const files = [...e.target.files];
  if (!files.length) return;
  const buffers = {};
  for (const f of files) buffers[f.name] = await f.arrayBuffer();
  e.target.value = '';
  loadModel({ type: 'load', label: 'local files', buffers }, 'local files');
});

/** A GenLLaVA model brings its own chat template and drawing defaults; a LLaVA model cannot draw. */
function modelKind(info) {
  const gen = info.kind === 'genllava';
  for (const id of ['format', 'system']) {
    $(id).disabled = gen;
    $(id).title = gen ? 'a GenLLaVA model uses the template of its genllava.json' : '';
  }
  for (const id of ['steps', 'guidance', 'strength']) $(id).disabled = !gen;
  for (const o of $('mode').options) o.disabled = !gen && o.value !== 'ask';
  if (!gen) $('mode').value = 'ask';
  if (gen) {
    const d = info.diffusion;
    $('steps').placeholder = d.steps;
    $('guidance').placeholder = d.guidance;
    // The edit field is the setting of the model's way of editing: img2img's strength or
    // InstructPix2Pix's image guidance.
    const p2p = d.edit?.pix2pix;
    state.editOption = p2p ? 'imageGuidance' : 'strength';
    $('strength-label').textContent = p2p ? 'Image guidance' : 'Edit strength';
    Object.assign($('strength'), p2p ? { min: 0, max: 100, step: 0.1 } : { min: 0.05, max: 1, step: 0.05 });
    $('strength').placeholder = p2p ? p2p.image_guidance : d.edit?.img2img?.strength ?? '';
  }
}

// ---- image --------------------------------------------------------------------------------
function imageKind(bytes) {
  const b = new Uint8Array(bytes.slice(0, 8));
  if (b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return 'image/png';
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'image/jpeg';
  return null;
}

/** Make `blob` the current image; `keepChat`: it came from the conversation (a drawing), so the
 *  thread stays on screen, but the model's text context starts over with it. */
async function setImage(blob, name, keepChat = false) {
  clearError();
  const bytes = await blob.arrayBuffer();
  const kind = imageKind(bytes);
  if (!kind) {
    showError(`"${name}" is not a PNG or JPEG image; the image was not changed.`);
    return;
  }
  try {
    // The engine's own check, from the header only: refuses e.g. a 6000×6000 picture before
    // anything decodes it.
    await request({ type: 'check-image', image: bytes.slice(0) });
  } catch (err) {
    showError(`"${name}": ${err.message}; the image was not changed.`);
    return;
  }
  const url = URL.createObjectURL(new Blob([bytes], { type: kind }));
  try {
    // Decode off-screen first: the preview keeps the current image unless this one is good.
    const probe = new Image();
    probe.src = url;
    await probe.decode();
  } catch {
    URL.revokeObjectURL(url);
    showError(`"${name}" looks like an image but is broken (the browser cannot decode it); the image was not changed.`);
    return;
  }
  if (state.image) URL.revokeObjectURL(state.image.url);
  state.image = { bytes, name, url };
  $('preview').src = url;
  $('preview').hidden = false;
  $('preview').alt = name;
  $('drop-hint').hidden = true;
  if (keepChat) state.turns = [];
  else if (state.turns.length) newChat('new image: new conversation');
}

function clearImage() {
  if (state.image) URL.revokeObjectURL(state.image.url);
  state.image = null;
  $('preview').hidden = true;
  $('preview').removeAttribute('src');
  $('drop-hint').hidden = false;
  if (state.turns.length) newChat('image removed: new conversation');
}

$('image-file').addEventListener('change', (e) => {
  const f = e.target.files[0];
  if (f) setImage(f, f.name);
  e.target.value = '';
});
$('clear-image').addEventListener('click', clearImage);
$('example').addEventListener('click', async () => {
  const m = state.models.find((x) => x.id === $('model').value) ?? state.models[0];
  if (!m?.example) return showError('This model has no example image.');
  const res = await fetch(m.path + m.example.image);
  await setImage(await res.blob(), m.example.image);
  if (!$('question').value) $('question').value = m.example.question;
});
const drop = $('drop');
drop.addEventListener('dragover', (e) => {
  e.preventDefault();
  drop.classList.add('over');
});
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', (e) => {
  e.preventDefault();
  drop.classList.remove('over');
  const f = e.dataTransfer.files[0];
  if (f) setImage(f, f.name);
});
drop.addEventListener('click', () => $('image-file').click());
document.addEventListener('paste', (e) => {
  const item = [...(e.clipboardData?.items ?? [])].find((i) => i.kind === 'file');
  if (!item) return;
  e.preventDefault();
  const f = item.getAsFile();
  setImage(f, f.name || 'pasted image');
});

// ---- chat ---------------------------------------------------------------------------------
function addMessage(cls, text) {
  const el = document.createElement('div');
  el.className = `msg ${cls}`;
  el.textContent = text;
  $('messages').append(el);
  el.scrollIntoView({ block: 'end' });
  return el;
}

function newChat(note) {
  state.turns = [];
  $('messages').replaceChildren();
  if (note) addMessage('note', note);
}
$('new-chat').addEventListener('click', () => newChat());

function num(id, dflt) {
  const v = Number($(id).value);
  return $(id).value === '' || Number.isNaN(v) ? dflt : v;
}

function options() {
  return {
    temperature: num('temperature', 0),
    top_p: num('top-p', 1),
    seed: num('seed', 0),
    max_new_tokens: num('max-tokens', 64),
  };
}

function onToken(m) {
  const c = state.chatting;
  if (!c || c.id !== m.id) return;
  c.text += m.text;
  c.el.textContent = c.text;
  c.el.scrollIntoView({ block: 'end' });
}

/** What the message asks for: a `/imagine` or `/edit` prefix, else the mode picker. */
function parseMessage(raw) {
  const m = raw.match(/^\/(imagine|edit)\b\s*([\s\S]*)$/i);
  if (m) return { mode: m[1].toLowerCase(), text: m[2].trim() };
  return { mode: $('mode').value, text: raw };
}

function send() {
  const raw = $('question').value.trim();
  if (!raw || !state.loaded || state.chatting || state.drawing) return;
  const { mode, text } = parseMessage(raw);
  if (mode === 'ask') return ask(text);
  if (!text) return showError(`/${mode} needs ${mode === 'edit' ? 'an instruction' : 'a description'}.`);
  return draw(mode, text, raw);
}

function imageOptions(mode) {
  const o = { seed: num('seed', 0) };
  for (const id of ['steps', 'guidance']) {
    if ($(id).value !== '') o[id] = num(id);
  }
  if (mode === 'edit' && $('strength').value !== '') o[state.editOption ?? 'strength'] = num('strength');
  return o;
}

function onStep(m) {
  // A chat answer that starts with [SOI] is drawn: its message gets a picture area.
  if (!state.drawing && state.chatting?.id === m.id) state.drawing = pictureArea(state.chatting.el, m.id, 'drawing', 'chat');
  const d = state.drawing;
  if (!d || d.id !== m.id) return;
  d.previews += 1;
  d.canvas.width = m.width;
  d.canvas.height = m.height;
  d.canvas.getContext('2d').putImageData(new ImageData(new Uint8ClampedArray(m.rgba), m.width, m.height), 0, 0);
  d.caption.textContent = `${d.verb}… step ${m.step}/${m.total}`;
  d.el.dataset.previews = d.previews;
}

/** A caption and a preview canvas in the message `el`, filled by onStep. */
function pictureArea(el, id, verb, kind) {
  el.classList.add('picture');
  el.dataset.kind = kind;
  const caption = document.createElement('div');
  caption.className = 'caption';
  caption.textContent = `${verb}…`;
  const canvas = document.createElement('canvas');
  canvas.setAttribute('aria-label', 'step preview');
  el.append(caption, canvas);
  return { id, el, canvas, caption, verb, previews: 0 };
}

/**
 * Show the finished picture `done` (a drawing's result) in its area `d` instead of the preview,
 * with a download link and the evaluator's reading; it becomes the current image.
 */
async function showPicture(d, done, text, wanted) {
  const { el, canvas, caption } = d;
  state.drawn += 1;
  const name = `genllava-${state.drawn}-${el.dataset.kind}.png`;
  const blob = new Blob([done.png], { type: 'image/png' });
  const url = URL.createObjectURL(blob);
  const img = new Image();
  img.src = url;
  img.alt = `${el.dataset.kind === 'edit' ? 'edited' : 'drawn'}: ${text}`;
  await img.decode();
  const link = document.createElement('a');
  link.href = url;
  link.download = name;
  link.textContent = `Download ${name}`;
  const row = document.createElement('div');
  row.className = 'row';
  row.append(link);
  canvas.replaceWith(img);
  el.append(row);
  caption.textContent = `${done.aborted ? 'stopped at' : 'done:'} step ${done.steps_done}/${done.steps} · ` +
    `${done.width}×${done.height} · ${(done.total_ms / 1000).toFixed(2)} s`;
  if (done.description !== null && done.description !== undefined) {
    const said = document.createElement('div');
    said.className = 'caption description';
    said.textContent = `the model describes the edit: "${done.description}"`;
    el.dataset.description = done.description;
    caption.after(said);
  }
  Object.assign(el.dataset, {
    state: done.aborted ? 'aborted' : 'done', previews: d.previews, steps: done.steps, stepsDone: done.steps_done,
    pictureMs: done.total_ms.toFixed(0), firstStepMs: done.first_step_ms?.toFixed(0) ?? '', name,
  });
  $('stats').textContent = `${done.steps_done} steps · ${(done.total_ms / 1000).toFixed(2)} s/image · ` +
    `${(done.total_ms / Math.max(done.steps_done, 1)).toFixed(0)} ms/step (preview included)${done.aborted ? ' · stopped' : ''}`;
  await evaluate(el, caption, done.png, wanted);
  await setImage(blob, name, true);
  addMessage('note', `${name} is now the current image: ask about it, or /edit it`);
}

/** Draw (`imagine`) or edit the current image; the result becomes the current image. */
async function draw(mode, text, raw) {
  if (state.info?.kind !== 'genllava') return showError(`${state.loaded} cannot draw: load a GenLLaVA model.`);
  if (mode === 'edit' && !state.image) return showError('There is no image to edit: draw one, or pick, drop or paste one.');
  clearError();
  addMessage('user', mode === 'edit' ? `Edit: ${text}` : `Imagine: ${text}`);
  const el = addMessage('assistant streaming', '');
  const id = state.nextId;
  const d = pictureArea(el, id, mode === 'edit' ? 'editing' : 'drawing', mode === 'edit' ? 'edit' : 'generate');
  state.drawing = d;
  $('question').value = '';
  setBusy(true, true);
  try {
    const msg = mode === 'edit'
      ? { type: 'edit', image: state.image.bytes.slice(0), instruction: text, options: imageOptions('edit') }
      : { type: 'generate', prompt: text, options: imageOptions('imagine') };
    // An edit is judged against its source with the instruction applied.
    const wanted = mode === 'edit' ? { caption: text, source: state.image.bytes.slice(0) } : { caption: text };
    const done = await request(msg, msg.image ? [msg.image] : []);
    el.dataset.totalMs = done.total_ms.toFixed(0);
    await showPicture(d, done, text, wanted);
  } catch (err) {
    el.remove();
    showError(`No image: ${err.message}`);
    $('question').value = raw;
  } finally {
    el.classList.remove('streaming');
    state.drawing = null;
    setBusy(false);
  }
}

/** Models of the shapes world: say what the world's exact evaluator reads in a drawn image. */
async function evaluate(el, caption, png, wanted) {
  const model = state.models.find((m) => m.id === state.loaded);
  if (!model?.shapes_world) return;
  try {
    const r = await request({ type: 'shapes-check', image: png.slice(0), caption: wanted?.caption, source: wanted?.source });
    const verdict = r.exact === undefined ? '' : r.exact ? ` — as asked ("${r.wanted}")` : ` — not what was asked ("${r.wanted}")`;
    const line = document.createElement('div');
    line.className = 'caption evaluator';
    line.textContent = r.scene === null ? `evaluator: no scene (${r.error})` : `evaluator reads: "${r.scene || 'nothing'}"${verdict}`;
    caption.after(line);
    el.dataset.evaluatorScene = r.scene ?? '';
    if (r.exact !== undefined) Object.assign(el.dataset, { evaluatorExact: r.exact, evaluatorWanted: r.wanted });
  } catch (err) {
    console.warn(`shapes evaluator: ${err.message}`);
  }
}

async function ask(question) {
  clearError();
  const first = state.turns.length === 0;
  if (first && !state.image) addMessage('note', 'no image: asking about text only');
  const text = first && state.image ? `<image>\n${question}` : question;
  const turns = [...state.turns, { role: 'user', text }];
  addMessage('user', question);
  const el = addMessage('assistant streaming', '');
  const id = state.nextId;
  state.chatting = { id, el, text: '' };
  const raw = $('question').value;
  $('question').value = '';
  setBusy(true, true);
  const t0 = performance.now();
  try {
    const image = state.image && turns.some((t) => t.text.includes('<image>')) ? state.image.bytes.slice(0) : null;
    const done = await request(
      { type: 'chat', turns, format: $('format').value, system: $('system').checked, image, options: options(),
        image_options: imageOptions('imagine') },
      image ? [image] : [],
    );
    if (!done.picture) el.textContent = done.text;
    el.dataset.ids = JSON.stringify(done.ids);
    el.dataset.prompt = done.prompt;
    el.dataset.totalMs = done.total_ms.toFixed(0);
    el.dataset.firstTokenMs = done.first_token_ms?.toFixed(0) ?? '';
    state.turns = [...turns, { role: 'assistant', text: done.text }];
    const secs = done.total_ms / 1000;
    $('stats').textContent = `${done.ids.length} tokens · first token ${done.first_token_ms?.toFixed(0) ?? '–'} ms · ` +
      `${(done.ids.length / secs).toFixed(1)} tokens/s${done.aborted ? ' · stopped' : ''}`;
    $('stats').dataset.firstTokenMs = done.first_token_ms ?? '';
    if (done.picture) {
      // The model answered [SOI]: the picture it drew (state.drawing exists after the first step).
      await showPicture(state.drawing ?? pictureArea(el, id, 'drawing', 'chat'), done.picture, question, null);
    }
    el.dataset.state = done.aborted ? 'aborted' : 'done';
  } catch (err) {
    el.remove();
    showError(`No answer: ${err.message}`);
    $('question').value = raw;
    console.debug(`chat failed after ${(performance.now() - t0).toFixed(0)} ms`);
  } finally {
    el.classList.remove('streaming');
    state.chatting = null;
    state.drawing = null;
    setBusy(false);
  }
}

$('ask').addEventListener('submit', (e) => {
  e.preventDefault();
  send();
});
$('question').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) {
    e.preventDefault();
    send();
  }
});
// Alt+1/2/3 pick the mode from anywhere on the page.
document.addEventListener('keydown', (e) => {
  const mode = e.altKey && !e.ctrlKey && !e.metaKey && { 1: 'ask', 2: 'imagine', 3: 'edit' }[e.key];
  if (!mode || [...$('mode').options].find((o) => o.value === mode)?.disabled) return;
  e.preventDefault();
  $('mode').value = mode;
  $('question').focus();
});
$('stop').addEventListener('click', () => worker.postMessage({ type: 'abort' }));

// ---- offline (service worker) -------------------------------------------------------------
function offlineBadge(cls, text, title) {
  const badge = $('offline');
  badge.className = `badge ${cls}`;
  badge.dataset.state = cls;
  badge.textContent = text;
  badge.title = title;
}

/** Ask the controlling service worker for its version and whether its cache is complete. */
function swStatus() {
  return new Promise((ok, bad) => {
    const timer = setTimeout(() => bad(new Error('the service worker did not answer')), 10_000);
    navigator.serviceWorker.addEventListener('message', function on(e) {
      if (e.data?.type !== 'sw-status') return;
      navigator.serviceWorker.removeEventListener('message', on);
      clearTimeout(timer);
      ok(e.data);
    });
    navigator.serviceWorker.controller.postMessage({ type: 'status' });
  });
}

async function setupOffline() {
  if (!('serviceWorker' in navigator)) {
    offlineBadge('off', 'no offline mode', 'this browser (or this address) offers no service workers');
    return;
  }
  try {
    // The first controller (first visit) is no news; a later one is a new version taking over.
    let controlled = !!navigator.serviceWorker.controller;
    navigator.serviceWorker.addEventListener('controllerchange', () => {
      if (controlled) offlineBadge('ready', 'update installed: reload', 'a new version of the app was cached; reload the page to use it');
      controlled = true;
    });
    await navigator.serviceWorker.register('sw.js');
    await navigator.serviceWorker.ready;
    if (!navigator.serviceWorker.controller) {
      await new Promise((ok) => navigator.serviceWorker.addEventListener('controllerchange', ok, { once: true }));
    }
    const status = await swStatus();
    if (status.missing.length) {
      offlineBadge('off', 'offline: incomplete', `version ${status.version}: not cached: ${status.missing.join(', ')}`);
      return;
    }
    let title = `version ${status.version}: the app, the engine and the default model (${status.files} files) are cached`;
    if (navigator.storage?.persist) {
      const persistent = await navigator.storage.persist();
      title += persistent ? '; storage is persistent' : '; the browser may evict the cache under storage pressure';
    }
    offlineBadge('ready', 'works offline', title);
  } catch (err) {
    offlineBadge('off', 'no offline mode', `the service worker failed: ${err.message}`);
    console.warn(`offline mode unavailable: ${err.message}`);
  }
}

// ---- models kept offline on request (keep.js) ----------------------------------------------
const selectedModel = () => state.models.find((x) => x.id === $('model').value);
let keeping = false;

function keepStatus(st, text, stored = '') {
  const el = $('keep-status');
  el.textContent = text;
  el.dataset.state = st;
  el.dataset.stored = stored;
}

/** Say what is stored of the picked model and which of the two buttons apply. */
async function refreshKeep() {
  const m = selectedModel();
  $('keep').hidden = !m;
  if (!m || keeping) return;
  const offline = 'caches' in self && !!navigator.storage?.estimate;
  if (m.precached) {
    $('keep-model').disabled = $('keep-remove').disabled = true;
    keepStatus('precached', 'cached with the app: works offline');
    return;
  }
  if (!offline) {
    $('keep-model').disabled = $('keep-remove').disabled = true;
    keepStatus('unavailable', 'this browser (or this address) cannot store models: no Cache Storage');
    return;
  }
  try {
    const s = await keptState(m, location.href);
    if (selectedModel() !== m) return;
    $('keep-model').disabled = s.state === 'kept';
    $('keep-remove').disabled = s.state === 'none';
    keepStatus(s.state, {
      kept: `kept offline: ${s.files} files, ${formatBytes(s.total)}`,
      partial: `partly downloaded: ${formatBytes(s.stored)} of ${formatBytes(s.total)}; Keep offline continues`,
      none: `not kept offline (${formatBytes(s.total)} to download)`,
    }[s.state], String(s.stored));
  } catch (err) {
    $('keep-model').disabled = $('keep-remove').disabled = true;
    keepStatus('unavailable', err.message);
  }
}

$('model').addEventListener('change', refreshKeep);

$('keep-model').addEventListener('click', async () => {
  const m = selectedModel();
  if (!m || keeping) return;
  clearError();
  keeping = true;
  $('keep-model').disabled = $('keep-remove').disabled = $('model').disabled = true;
  const bar = $('keep-progress');
  let persistNote = '';
  try {
    await keepModel(m, location.href, (r) => {
      if (r.stage === 'persist') {
        persistNote = r.persisted ? 'storage is persistent'
          : 'the browser did not grant persistent storage: it may delete kept models when space runs low';
        $('keep-status').dataset.persisted = r.persisted;
      } else {
        bar.hidden = false;
        bar.max = r.total || 1;
        bar.value = r.done;
        keepStatus('downloading', `downloading ${r.file}: ${formatBytes(r.loaded)} of ${formatBytes(r.bytes)} ` +
          `(${formatBytes(r.done)} of ${formatBytes(r.total)}) · ${persistNote}`);
      }
    });
    keeping = false;
    await refreshKeep();
    $('keep-status').textContent += ` · ${persistNote}`;
  } catch (err) {
    keeping = false;
    await refreshKeep();
    showError(`Could not keep ${m.id} offline: ${err.message}`);
  } finally {
    keeping = false;
    bar.hidden = true;
    $('model').disabled = false;
  }
});

$('keep-remove').addEventListener('click', async () => {
  const m = selectedModel();
  if (!m || keeping) return;
  clearError();
  try {
    await removeKeptModel(m, location.href);
  } catch (err) {
    showError(`Could not remove ${m.id}'s offline copy: ${err.message}`);
  }
  await refreshKeep();
});

// ---- start --------------------------------------------------------------------------------
// `?backend=cpu` skips WebGPU (the fallback path, on purpose).
// `?model=<id>` loads another bundled model than the first (the default).
// `?manifest=<url>` loads an exported model (web format) from its manifest instead.
const query = new URLSearchParams(location.search);
const preferWebgpu = query.get('backend') !== 'cpu';
worker.postMessage({ type: 'init', prefer_webgpu: preferWebgpu });
setupOffline();
await listModels();
if (query.get('model')) {
  if (state.models.some((m) => m.id === query.get('model'))) $('model').value = query.get('model');
  else showError(`No bundled model "${query.get('model')}"; loading the default.`);
}
refreshKeep();
if (query.get('manifest')) loadManifest(query.get('manifest'));
else if (state.models.length) $('load').click();
