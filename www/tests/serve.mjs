// A tiny static server for www/ (no dependencies): `node www/tests/serve.mjs [port]`.
import { createServer } from 'node:http';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const TYPES = {
  '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.json': 'application/json', '.wasm': 'application/wasm', '.png': 'image/png',
  '.webmanifest': 'application/manifest+json', '.jpg': 'image/jpeg', '.svg': 'image/svg+xml', '.txt': 'text/plain; charset=utf-8',
};

export const WWW = resolve(fileURLToPath(new URL('..', import.meta.url)));

/** Chromium's flags for the tests and the bench: WebGPU on SwiftShader, no background traffic. */
export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-background-networking', '--disable-component-update',
  '--disable-sync', '--disable-quic', '--enable-unsafe-webgpu', '--use-webgpu-adapter=swiftshader'];

/**
 * The byte range a `Range` header asks of a `size`-byte file: `{start, end}` (inclusive), null
 * when there is no usable header (the whole file is sent), or 'unsatisfiable' (416). One range
 * only (`bytes=a-b`, `bytes=a-`, `bytes=-n`), as a resuming download sends.
 */
export function byteRange(header, size) {
  const m = /^bytes=(\d*)-(\d*)$/.exec(header?.trim() ?? '');
  if (!m || (m[1] === '' && m[2] === '')) return null;
  let start;
  let end;
  if (m[1] === '') {
    start = Math.max(size - Number(m[2]), 0);
    end = size - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
  }
  return start >= size || start > end ? 'unsatisfiable' : { start, end };
}

/**
 * Serve `root` on 127.0.0.1:`port` (0: any free port); resolves to the listening server.
 * Range requests get 206 with Content-Range (so downloads can resume). `tap(req, res, path)`,
 * if given, sees every request first and answers it itself by returning true (the tests use it
 * to log requests and to cut a download short).
 */
export function serve(root = WWW, port = 0, tap = null) {
  const server = createServer(async (req, res) => {
    try {
      const path = decodeURIComponent(new URL(req.url, 'http://x').pathname);
      if (tap && (await tap(req, res, path))) return;
      let file = normalize(join(root, path));
      if (file !== root && !file.startsWith(root + sep)) throw Object.assign(new Error('outside'), { code: 'ENOENT' });
      if ((await stat(file)).isDirectory()) file = join(file, 'index.html');
      const body = await readFile(file);
      const headers = { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-cache',
        'accept-ranges': 'bytes' };
      const range = byteRange(req.headers.range, body.length);
      if (range === 'unsatisfiable') {
        res.writeHead(416, { ...headers, 'content-range': `bytes */${body.length}` });
        res.end();
      } else if (range) {
        res.writeHead(206, { ...headers, 'content-range': `bytes ${range.start}-${range.end}/${body.length}` });
        res.end(body.subarray(range.start, range.end + 1));
      } else {
        res.writeHead(200, headers);
        res.end(body);
      }
    } catch (err) {
      res.writeHead(err.code === 'ENOENT' || err.code === 'ENOTDIR' ? 404 : 500, { 'content-type': 'text/plain' });
      res.end(err.code === 'ENOENT' ? 'not found' : 'error');
    }
  });
  return new Promise((ok) => server.listen(port, '127.0.0.1', () => ok(server)));
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const server = await serve(WWW, Number(process.argv[2] ?? 8080));
  console.log(`serving ${WWW} on http://127.0.0.1:${server.address().port}/`);
}
