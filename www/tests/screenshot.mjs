// The README's screenshot (www/screenshot.png): the page in use, with understanding, drawing and
// editing in one conversation, on the default model. Run `bash www/build.sh` first, then
//   node www/tests/screenshot.mjs [out.png]        (BACKEND=cpu for the CPU path)
import { chromium } from 'playwright-core';
import { join } from 'node:path';
import { CHROMIUM_ARGS, serve, WWW } from './serve.mjs';

const out = process.argv[2] ?? join(WWW, 'screenshot.png');
const backend = process.env.BACKEND ?? 'webgpu';
const server = await serve(WWW, 0);
const origin = `http://127.0.0.1:${server.address().port}`;
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium', headless: true, args: CHROMIUM_ARGS });
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1280 }, deviceScaleFactor: 1 });
  await context.route('**/*', (r) => (new URL(r.request().url()).origin === origin ? r.continue() : r.abort()));
  const page = await context.newPage();
  page.setDefaultTimeout(600_000);
  await page.goto(`${origin}/?backend=${backend}`);
  await page.locator('#model-status[data-kind="genllava"]').waitFor();
  await page.locator('#offline[data-state]').waitFor();
  const send = async (text, selector) => {
    const before = await page.locator(selector).count();
    await page.fill('#question', text);
    await page.press('#question', 'Enter');
    await page.locator(selector).nth(before).waitFor();
  };
  await page.click('#example');
  await page.locator('#preview:not([hidden])').waitFor();
  await page.fill('#max-tokens', '24');
  await send('What colour is the square?', '.msg.assistant[data-state]');
  await page.fill('#steps', '10');
  await page.fill('#seed', '3');
  await send('/imagine a small green square at the center left', '.msg.picture[data-state]');
  await send('/edit make the square red', '.msg.picture[data-state]');
  await send('Describe the image briefly.', '.msg.assistant[data-state]');
  await page.screenshot({ path: out });
  console.log(`wrote ${out}`);
} finally {
  await browser.close();
  server.close();
}
