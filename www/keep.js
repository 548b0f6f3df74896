// Models kept offline on request. The service worker precaches only the app and the default
// model; any other model of models/index.json can be kept with "Keep offline":
//
//   - the quota comes first: navigator.storage.estimate() against the bytes still to store;
//   - then navigator.storage.persist() (the page shows whether the browser granted it);
//   - each file downloads resumably: what arrives is stored in pieces (cache PARTIAL, one entry
//     per piece, keyed by the file's URL plus the piece's offset and length), and a download
//     that broke off continues with an HTTP Range request from the bytes already stored;
//   - a complete file is checked against the size and sha256 that build.sh wrote into
//     models/index.json (`integrity`); a mismatch discards the file and names it;
//   - verified files go to cache KEPT under their own URL, where sw.js answers the worker's
//     requests from (so the model loads with the network gone);
//   - "Remove offline copy" deletes them (and any partial pieces).
//
// Nothing here touches browser globals at import time: `quotaCheck` and `formatBytes` are pure
// (the Node side of the tests imports them).

export const KEPT = 'kept-models';
export const PARTIAL = 'kept-models-partial';
/** Bytes of a download held in memory before they are stored as one piece. */
export const PIECE = 1 << 20;

/** `n` bytes for people: 310 KB, 6.4 MB, 1.2 GB (powers of 1000, as storage is sold). */
export function formatBytes(n) {
  if (n < 1000) return `${n} bytes`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n;
  let u = -1;
  do {
    v /= 1000;
    u += 1;
  } while (v >= 1000 && u < units.length - 1);
  return `${v < 10 ? v.toFixed(1) : v.toFixed(0)} ${units[u]}`;
}

/**
 * Does storing `needed` more bytes fit what `navigator.storage.estimate()` reported
 * (`{quota, usage}`)? Returns `{ok, free, needed, message}`; `message` says plainly why not.
 */
export function quotaCheck(estimate, needed, what = 'the model') {
  const quota = Number(estimate?.quota);
  const usage = Number(estimate?.usage) || 0;
  if (!Number.isFinite(quota)) {
    return { ok: false, free: 0, needed, message: `The browser reports no storage quota, so ${what} cannot be kept offline.` };
  }
  const free = Math.max(quota - usage, 0);
  const ok = needed <= free;
  const message = ok ? '' : `${what} needs ${formatBytes(needed)} more storage, but this site has only ${formatBytes(free)} ` +
    `free (quota ${formatBytes(quota)}, ${formatBytes(usage)} used). Free space (or remove other kept models) and try again.`;
  return { ok, free, needed, message };
}

/** The files to keep for `model` (an entry of models/index.json) with their URLs, sizes and hashes. */
export function modelFiles(model, base) {
  return model.files.map((name) => {
    const info = model.integrity?.[name];
    if (!info || !Number.isInteger(info.bytes) || !/^[0-9a-f]{64}$/.test(info.sha256 ?? '')) {
      throw new Error(`models/index.json lists no size and sha256 for ${model.id}'s ${name}: it cannot be kept offline`);
    }
    return { name, url: new URL(model.path + name, base).href, bytes: info.bytes, sha256: info.sha256 };
  });
}

/** An existing cache, or null (opening would create it). */
async function existing(name) {
  return (await caches.has(name)) ? caches.open(name) : null;
}

function pieceKey(url, offset, length) {
  const u = new URL(url);
  u.searchParams.set('kept-piece', `${offset}+${length}`);
  return u.href;
}

/** The stored pieces of `url`, in order: [{key, offset, length}]. */
async function piecesOf(partial, url) {
  if (!partial) return [];
  const pieces = [];
  for (const req of await partial.keys()) {
    const u = new URL(req.url);
    const tag = u.searchParams.get('kept-piece');
    if (!tag) continue;
    u.searchParams.delete('kept-piece');
    if (u.href !== url) continue;
    const [offset, length] = tag.split('+').map(Number);
    pieces.push({ key: req.url, offset, length });
  }
  return pieces.sort((a, b) => a.offset - b.offset);
}

/** Bytes stored contiguously from the start by `pieces` (a gap ends the count). */
function contiguous(pieces) {
  let at = 0;
  for (const p of pieces) {
    if (p.offset !== at) break;
    at += p.length;
  }
  return at;
}

async function dropPieces(partial, pieces) {
  for (const p of pieces) await partial.delete(p.key);
}

/**
 * What is stored of `model`: `{state: 'kept'|'partial'|'none', stored, total, keptFiles}`
 * (stored: bytes of verified files plus downloaded pieces).
 */
export async function keptState(model, base) {
  const files = modelFiles(model, base);
  const kept = await existing(KEPT);
  const partial = await existing(PARTIAL);
  let stored = 0;
  let keptFiles = 0;
  for (const f of files) {
    if (kept && (await kept.match(f.url))) {
      stored += f.bytes;
      keptFiles += 1;
    } else {
      stored += contiguous(await piecesOf(partial, f.url));
    }
  }
  const total = files.reduce((s, f) => s + f.bytes, 0);
  const state = keptFiles === files.length ? 'kept' : stored > 0 ? 'partial' : 'none';
  return { state, stored, total, keptFiles, files: files.length };
}

function hex(buffer) {
  return [...new Uint8Array(buffer)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/**
 * Download `f` ({name, url, bytes, sha256}) into the PARTIAL pieces, continuing after what is
 * stored; then verify it and move it into KEPT. `progress(loaded)` reports the file's bytes so far.
 */
async function keepFile(f, progress) {
  const kept = await caches.open(KEPT);
  if (await kept.match(f.url)) return;
  const partial = await caches.open(PARTIAL);
  let pieces = await piecesOf(partial, f.url);
  let stored = contiguous(pieces);
  if (stored !== pieces.reduce((s, p) => s + p.length, 0) || stored > f.bytes) {
    // Pieces with a gap, or more than the file: start this file over.
    await dropPieces(partial, pieces);
    pieces = [];
    stored = 0;
  }
  progress(stored);

  if (stored < f.bytes) {
    let res;
    try {
      res = await fetch(f.url, { cache: 'no-store', headers: stored ? { range: `bytes=${stored}-` } : {} });
    } catch (err) {
      throw new Error(`${f.name}: cannot download it (offline, or the server is unreachable: ${err.message})` +
        (stored ? `; ${formatBytes(stored)} of it are stored and the next try continues from there` : ''));
    }
    if (stored && res.status === 200) {
      // The server ignored the Range header and sends the whole file: start this file over.
      await dropPieces(partial, pieces);
      stored = 0;
    } else if (stored && res.status === 206) {
      const start = Number(/^bytes (\d+)-/.exec(res.headers.get('content-range') ?? '')?.[1]);
      if (start !== stored) {
        throw new Error(`${f.name}: asked the server for the bytes from ${stored} on, it sent ` +
          `"${res.headers.get('content-range')}"`);
      }
    } else if (!res.ok) {
      throw new Error(`${f.name}: HTTP ${res.status} ${res.statusText}`);
    }

    const reader = res.body.getReader();
    let held = [];
    let heldBytes = 0;
    const store = async () => {
      if (!heldBytes) return;
      await partial.put(pieceKey(f.url, stored, heldBytes), new Response(new Blob(held)));
      stored += heldBytes;
      held = [];
      heldBytes = 0;
    };
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        held.push(value);
        heldBytes += value.length;
        progress(stored + heldBytes);
        if (heldBytes >= PIECE) await store();
        if (stored + heldBytes > f.bytes) break;
      }
      await store();
    } catch (err) {
      await store();
      throw new Error(`${f.name}: the download broke off at ${stored} of ${f.bytes} bytes (${err.message}); ` +
        '"Keep offline" again continues from there');
    }
  }

  pieces = await piecesOf(partial, f.url);
  stored = contiguous(pieces);
  if (stored < f.bytes) {
    throw new Error(`${f.name}: the server ended the file at ${stored} of ${f.bytes} bytes; "Keep offline" again continues from there`);
  }
  const blob = new Blob(await Promise.all(pieces.map(async (p) => (await partial.match(p.key)).blob())));
  if (blob.size !== f.bytes) {
    await dropPieces(partial, pieces);
    throw new Error(`${f.name}: ${blob.size} bytes arrived, models/index.json says ${f.bytes}; the download was discarded`);
  }
  const sha256 = hex(await crypto.subtle.digest('SHA-256', await blob.arrayBuffer()));
  if (sha256 !== f.sha256) {
    await dropPieces(partial, pieces);
    throw new Error(`${f.name}: sha256 ${sha256} does not match models/index.json's ${f.sha256}; the download was discarded`);
  }
  await kept.put(f.url, new Response(blob, {
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(f.bytes) },
  }));
  await dropPieces(partial, pieces);
}

/**
 * Keep `model` offline. `report({stage, …})` hears: 'persist' {persisted}, 'file' {file,
 * loaded, bytes, done, total} (done: bytes of the whole model so far). Throws with a plain
 * message (quota, network, size or hash, naming the file). Resolves to {persisted}.
 */
export async function keepModel(model, base, report = () => {}) {
  const files = modelFiles(model, base);
  const before = await keptState(model, base);
  const estimate = await navigator.storage.estimate();
  const check = quotaCheck(estimate, before.total - before.stored, model.id);
  if (!check.ok) throw new Error(check.message);
  const persisted = navigator.storage.persist ? await navigator.storage.persist() : false;
  report({ stage: 'persist', persisted });
  let done = 0;
  const total = before.total;
  for (const f of files) {
    await keepFile(f, (loaded) => report({ stage: 'file', file: f.name, loaded, bytes: f.bytes, done: done + loaded, total }));
    done += f.bytes;
  }
  return { persisted };
}

/** Delete every stored byte of `model` (verified files and partial pieces). */
export async function removeKeptModel(model, base) {
  const kept = await existing(KEPT);
  const partial = await existing(PARTIAL);
  for (const f of modelFiles(model, base)) {
    if (kept) await kept.delete(f.url);
    if (partial) await dropPieces(partial, await piecesOf(partial, f.url));
  }
}
