// Benchmark of the page in headless chromium: the same browser run measures WebGPU
// (SwiftShader here; a real GPU elsewhere) and the wasm CPU backend (`?backend=cpu`) with the
// default model, and prints a markdown table with ratios. Run `bash www/build.sh` first, then
//   node www/tests/bench.mjs            (BENCH_STEPS=10 BENCH_TOKENS=24 BENCH_RUNS=2 to change)
// Per backend: load the model, answer a question about the example scene (time to first
// token, then per further token), and draw BENCH_RUNS pictures of BENCH_STEPS steps (the first
// run includes compiling the GPU pipelines; the last is the warm number). Every step's preview
// (a VAE decode and read-back) is part of the drawing time, as a user sees it.
import { chromium } from 'playwright-core';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { CHROMIUM_ARGS, serve, WWW } from './serve.mjs';

const STEPS = Number(process.env.BENCH_STEPS ?? 10);
const TOKENS = Number(process.env.BENCH_TOKENS ?? 24);
const RUNS = Math.max(1, Number(process.env.BENCH_RUNS ?? 2));
const TIMEOUT = 600_000;
const wasmPath = join(WWW, 'pkg/genllava_web_bg.wasm');
const models = JSON.parse(readFileSync(join(WWW, 'models/index.json'), 'utf8'));
const model = models[0];
const modelBytes = model.files.reduce((n, f) => n + statSync(join(WWW, model.path, f)).size, 0);

async function measure(browser, origin, backend) {
  const context = await browser.newContext();
  // Nothing but the page's own origin, as in the tests.
  await context.route('**/*', (r) => (new URL(r.request().url()).origin === origin ? r.continue() : r.abort()));
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const t0 = Date.now();
  await page.goto(`${origin}/?backend=${backend}`);
  await page.locator(`#backend[data-backend="${backend}"]`).waitFor();
  await page.locator(`#model-status[data-loaded="${model.id}"]`).waitFor();
  const out = { load_ms: Date.now() - t0 };

  await page.click('#example');
  await page.locator('#preview:not([hidden])').waitFor();
  await page.fill('#max-tokens', String(TOKENS));
  await page.fill('#question', 'Describe the image briefly.');
  await page.press('#question', 'Enter');
  const answer = page.locator('.msg.assistant[data-state]').last();
  await answer.waitFor();
  const ids = JSON.parse(await answer.getAttribute('data-ids'));
  out.tokens = ids.length;
  out.first_token_ms = Number(await answer.getAttribute('data-first-token-ms'));
  const total = Number(await answer.getAttribute('data-total-ms'));
  out.per_token_ms = ids.length > 1 ? (total - out.first_token_ms) / (ids.length - 1) : NaN;

  await page.fill('#steps', String(STEPS));
  await page.fill('#seed', '3');
  for (let run = 0; run < RUNS; run++) {
    await page.fill('#question', `/imagine ${model.example?.imagine ?? 'a small green square at the center left'}`);
    await page.press('#question', 'Enter');
    const pic = page.locator('.msg.picture[data-state]').nth(run);
    await pic.waitFor();
    const ms = Number(await pic.getAttribute('data-total-ms'));
    if (run === 0) out.first_image_s = ms / 1000;
    out.image_s = ms / 1000;
  }
  out.per_step_ms = (out.image_s * 1000) / STEPS;
  await context.close();
  return out;
}

const server = await serve(WWW, 0);
const origin = `http://127.0.0.1:${server.address().port}`;
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
let gpu;
let cpu;
try {
  gpu = await measure(browser, origin, 'webgpu');
  cpu = await measure(browser, origin, 'cpu');
} finally {
  await browser.close();
  server.close();
}

const wasm = readFileSync(wasmPath);
const kib = (n) => `${(n / 1024).toFixed(0)} KiB`;
const f = (v, digits = 0) => (Number.isFinite(v) ? v.toFixed(digits) : '–');
const ratio = (a, b) => (Number.isFinite(a / b) ? `${(a / b).toFixed(2)}×` : '–');
const rows = [
  ['model load (download + build), ms', gpu.load_ms, cpu.load_ms, 0],
  [`time to first token, ms (image + prompt prefill)`, gpu.first_token_ms, cpu.first_token_ms, 0],
  [`per further token, ms (${gpu.tokens} / ${cpu.tokens} tokens)`, gpu.per_token_ms, cpu.per_token_ms, 1],
  [`first picture, s (${STEPS} steps, pipelines compiled)`, gpu.first_image_s, cpu.first_image_s, 2],
  [`seconds per picture (${STEPS} steps, warm)`, gpu.image_s, cpu.image_s, 2],
  ['per denoising step incl. preview, ms (warm)', gpu.per_step_ms, cpu.per_step_ms, 0],
];
console.log(`\nwasm: ${kib(wasm.length)} raw, ${kib(gzipSync(wasm, { level: 9 }).length)} gzip · ` +
  `model ${model.id}: ${kib(modelBytes)} in ${model.files.length} files\n`);
console.log('| measure | WebGPU | CPU (wasm) | WebGPU / CPU |');
console.log('|---|---|---|---|');
for (const [name, g, c, digits] of rows) console.log(`| ${name} | ${f(g, digits)} | ${f(c, digits)} | ${ratio(g, c)} |`);
