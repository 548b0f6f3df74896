// Browser test of www/: headless Debian chromium with WebGPU on SwiftShader, driven by
// playwright-core. Run `bash www/build.sh` first, then `node www/tests/browser.test.mjs`.
//   CHROMIUM=/path/to/chromium   another chromium binary (default /usr/bin/chromium)
import { chromium } from 'playwright-core';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { serve, WWW } from './serve.mjs';

const ROOT = join(WWW, '..');
const FIXTURE = join(ROOT, 'tests/fixtures/llava-tiny');
const ARGS = ['--no-sandbox', '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-quic', '--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader'];
const TIMEOUT = 180_000;

/** One int64 tensor of a safetensors file, as numbers. */
function safetensorsInt64(path, name) {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const t = header[name];
  assert.equal(t.dtype, 'I64', `${name} dtype`);
  const [start, end] = t.data_offsets;
  const out = [];
  for (let at = 8 + n + start; at < 8 + n + end; at += 8) out.push(Number(buf.readBigInt64LE(at)));
  return out;
}

const expectedIds = safetensorsInt64(join(FIXTURE, 'reference.safetensors'), 'greedy_ids');
const fixturePrompt = readFileSync(join(FIXTURE, 'prompt.txt'), 'utf8');
const question = fixturePrompt.match(/<image>\n([\s\S]*) ASSISTANT:$/)[1];

if (!existsSync(join(WWW, 'pkg/genllava_web_bg.wasm')) || !existsSync(join(WWW, 'models/index.json'))) {
  console.error('www/ is not built: run `bash www/build.sh` first');
  process.exit(1);
}

const results = [];
async function step(name, fn) {
  const t0 = Date.now();
  try {
    await fn();
    results.push({ name, ok: true, ms: Date.now() - t0 });
    console.log(`ok   ${name} (${Date.now() - t0} ms)`);
  } catch (err) {
    results.push({ name, ok: false });
    console.log(`FAIL ${name}\n${err.stack ?? err}`);
    throw err;
  }
}

const server = await serve(WWW, 0);
const origin = `http://127.0.0.1:${server.address().port}`;
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true, args: ARGS });
const foreign = [];
const timings = {};
let failed = false;

async function openPage(query = '') {
  const context = await browser.newContext();
  // Every request not to the page's own origin is recorded and refused.
  await context.route('**/*', (route) => {
    const url = route.request().url();
    if (new URL(url).origin === origin) return route.continue();
    foreign.push(url);
    return route.abort();
  });
  context.on('request', (r) => {
    const url = r.url();
    if (/^https?:/.test(url) && new URL(url).origin !== origin) foreign.push(url);
  });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.on('console', (m) => m.type() === 'error' && console.log(`  [console] ${m.text()}`));
  page.on('pageerror', (e) => console.log(`  [pageerror] ${e.message}`));
  await page.goto(`${origin}/${query}`);
  return page;
}

/** Ask `q` in a fresh conversation; returns the finished assistant message's data. */
async function ask(page, q) {
  await page.click('#new-chat');
  await page.fill('#question', q);
  await page.click('#send:not([disabled])');
  const msg = page.locator('.msg.assistant[data-state]').last();
  await msg.waitFor();
  return {
    ids: JSON.parse(await msg.getAttribute('data-ids')),
    prompt: await msg.getAttribute('data-prompt'),
    text: await msg.textContent(),
    firstTokenMs: Number(await page.getAttribute('#stats', 'data-first-token-ms')),
  };
}

async function expectError(page, pattern) {
  await page.locator('#error:not([hidden])').waitFor();
  const text = await page.textContent('#error-text');
  assert.match(text, pattern);
  await page.click('#error-close');
}

try {
  const page = await openPage();
  await step('WebGPU backend is in use', async () => {
    await page.locator('#backend[data-backend]').waitFor();
    const backend = await page.getAttribute('#backend', 'data-backend');
    const note = await page.getAttribute('#backend', 'title');
    assert.equal(backend, 'webgpu', `backend is ${backend}: ${note}`);
    assert.equal(await page.textContent('#backend'), 'WebGPU');
  });
  await step('the bundled fixture model loads', async () => {
    const t0 = Date.now();
    await page.locator('#model-status[data-loaded="llava-tiny"]').waitFor();
    timings.load_ms = Date.now() - t0;
    assert.match(await page.textContent('#model'), /random weights/);
  });
  await step('greedy answer equals the reference ids (WebGPU)', async () => {
    await page.setInputFiles('#image-file', join(FIXTURE, 'image.png'));
    await page.locator('#preview:not([hidden])').waitFor();
    await page.fill('#temperature', '0');
    await page.fill('#max-tokens', String(expectedIds.length));
    const got = await ask(page, question);
    assert.equal(got.prompt, fixturePrompt);
    assert.deepEqual(got.ids, expectedIds);
    timings.webgpu_first_token_ms = got.firstTokenMs;
  });
  await step('a non-image file gets a visible error and the page still answers', async () => {
    await page.setInputFiles('#image-file', { name: 'notes.txt', mimeType: 'text/plain', buffer: Buffer.from('not an image') });
    await expectError(page, /notes\.txt.*not a PNG or JPEG/);
    const again = await ask(page, question);
    assert.deepEqual(again.ids, expectedIds);
    timings.webgpu_first_token_warm_ms = again.firstTokenMs;
  });
  await step('a corrupt model file gets a visible error and the old model keeps answering', async () => {
    const file = (name, buffer) => ({ name, mimeType: 'application/octet-stream', buffer: buffer ?? readFileSync(join(FIXTURE, name)) });
    await page.setInputFiles('#model-files', [
      file('config.json'), file('tokenizer.json'), file('processor_config.json'),
      file('model.safetensors', readFileSync(join(FIXTURE, 'model.safetensors')).subarray(0, 5000)),
    ]);
    await expectError(page, /Could not load local files: .*model\.safetensors/);
    assert.equal(await page.getAttribute('#model-status', 'data-loaded'), 'llava-tiny');
    assert.deepEqual((await ask(page, question)).ids, expectedIds);
  });
  await step('the CPU path (?backend=cpu) gives the same ids; Stop ends an answer', async () => {
    const cpu = await openPage('?backend=cpu');
    await cpu.locator('#backend[data-backend="cpu"]').waitFor();
    assert.equal(await cpu.textContent('#backend'), 'CPU (no WebGPU)');
    await cpu.locator('#model-status[data-loaded="llava-tiny"]').waitFor();
    await cpu.setInputFiles('#image-file', join(FIXTURE, 'image.png'));
    await cpu.fill('#max-tokens', String(expectedIds.length));
    const got = await ask(cpu, question);
    assert.deepEqual(got.ids, expectedIds);
    timings.cpu_first_token_ms = got.firstTokenMs;

    // Stop: a long answer ends early and the page answers again afterwards.
    await cpu.fill('#max-tokens', '4000');
    await cpu.click('#new-chat');
    await cpu.fill('#question', question);
    await cpu.click('#send:not([disabled])');
    await cpu.locator('.msg.assistant.streaming').waitFor();
    await cpu.waitForFunction(() => document.querySelector('.msg.assistant.streaming')?.textContent.length > 0);
    await cpu.click('#stop:not([disabled])');
    const stopped = cpu.locator('.msg.assistant[data-state]').last();
    await stopped.waitFor({ timeout: 30_000 });
    assert.equal(await stopped.getAttribute('data-state'), 'aborted');
    assert.ok(JSON.parse(await stopped.getAttribute('data-ids')).length < 4000);
    await cpu.fill('#max-tokens', String(expectedIds.length));
    assert.deepEqual((await ask(cpu, question)).ids, expectedIds);
  });
  await step('no request left the page origin', async () => {
    assert.deepEqual(foreign, []);
  });
} catch {
  failed = true;
} finally {
  await browser.close();
  server.close();
}
console.log(JSON.stringify({ passed: results.filter((r) => r.ok).length, failed: results.filter((r) => !r.ok).length, timings }));
process.exit(failed ? 1 : 0);
