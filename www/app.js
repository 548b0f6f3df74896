// The page: model picker, image pick/drop/paste, streamed chat, settings, backend badge.
// All inference runs in worker.js; this file only talks to it by messages.

const $ = (id) => document.getElementById(id);
const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });

const state = {
  models: [],
  loaded: null,      // label of the loaded model
  image: null,       // {bytes: ArrayBuffer, name, url}
  turns: [],         // conversation so far: [{role, text}]
  pending: new Map(),
  nextId: 1,
  chatting: null,    // {id, el, text}
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
    badge.title = m.backend === 'webgpu' ? 'running on the GPU through WebGPU' : m.note;
    if (m.backend !== 'webgpu') console.warn(`WebGPU unavailable: ${m.note}`);
  } else if (m.stage === 'download') {
    const bar = $('progress');
    bar.hidden = false;
    bar.max = m.total || 1;
    bar.value = m.total ? m.loaded : 0;
    $('model-status').textContent = `downloading ${m.file}: ${(m.loaded / 1024).toFixed(0)} KiB`;
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
  $('stop').disabled = !(busy && chatting);
  $('load').disabled = busy;
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
    $('model-status').textContent =
      `${label}: ${i.layers} layers, hidden ${i.hidden_size}, vocab ${i.vocab_size}, ${i.image_tokens} image tokens`;
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
  if (m) loadModel({ type: 'load', label: m.label, path: m.path, files: m.files }, m.id);
});

$('model-files').addEventListener('change', async (e) => {
  const files = [...e.target.files];
  if (!files.length) return;
  const buffers = {};
  for (const f of files) buffers[f.name] = await f.arrayBuffer();
  e.target.value = '';
  loadModel({ type: 'load', label: 'local files', buffers }, 'local files');
});

// ---- image --------------------------------------------------------------------------------
function imageKind(bytes) {
  const b = new Uint8Array(bytes.slice(0, 8));
  if (b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47) return 'image/png';
  if (b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'image/jpeg';
  return null;
}

async function setImage(blob, name) {
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
  if (state.turns.length) newChat('new image: new conversation');
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

function options() {
  const num = (id, dflt) => {
    const v = Number($(id).value);
    return $(id).value === '' || Number.isNaN(v) ? dflt : v;
  };
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

async function ask() {
  const question = $('question').value.trim();
  if (!question || !state.loaded || state.chatting) return;
  clearError();
  const first = state.turns.length === 0;
  if (first && !state.image) addMessage('note', 'no image: asking about text only');
  const text = first && state.image ? `<image>\n${question}` : question;
  const turns = [...state.turns, { role: 'user', text }];
  addMessage('user', question);
  const el = addMessage('assistant streaming', '');
  const id = state.nextId;
  state.chatting = { id, el, text: '' };
  $('question').value = '';
  setBusy(true, true);
  const t0 = performance.now();
  try {
    const image = state.image && turns.some((t) => t.text.includes('<image>')) ? state.image.bytes.slice(0) : null;
    const done = await request(
      { type: 'chat', turns, format: $('format').value, system: $('system').checked, image, options: options() },
      image ? [image] : [],
    );
    el.textContent = done.text;
    el.dataset.ids = JSON.stringify(done.ids);
    el.dataset.prompt = done.prompt;
    el.dataset.state = done.aborted ? 'aborted' : 'done';
    state.turns = [...turns, { role: 'assistant', text: done.text }];
    const secs = done.total_ms / 1000;
    $('stats').textContent = `${done.ids.length} tokens · first token ${done.first_token_ms?.toFixed(0) ?? '–'} ms · ` +
      `${(done.ids.length / secs).toFixed(1)} tokens/s${done.aborted ? ' · stopped' : ''}`;
    $('stats').dataset.firstTokenMs = done.first_token_ms ?? '';
  } catch (err) {
    el.remove();
    showError(`No answer: ${err.message}`);
    $('question').value = question;
    console.debug(`chat failed after ${(performance.now() - t0).toFixed(0)} ms`);
  } finally {
    el.classList.remove('streaming');
    state.chatting = null;
    setBusy(false);
  }
}

$('ask').addEventListener('submit', (e) => {
  e.preventDefault();
  ask();
});
$('question').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey) {
    e.preventDefault();
    ask();
  }
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

// ---- start --------------------------------------------------------------------------------
// `?backend=cpu` skips WebGPU (the fallback path, on purpose).
const preferWebgpu = new URLSearchParams(location.search).get('backend') !== 'cpu';
worker.postMessage({ type: 'init', prefer_webgpu: preferWebgpu });
setupOffline();
await listModels();
if (state.models.length) $('load').click();
