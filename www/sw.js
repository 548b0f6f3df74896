// The service worker of the offline PWA. On install it precaches everything the page needs —
// the shell, the wasm engine and its glue, the default model — listed in precache.js, which
// `www/build.sh` writes with a version that is a hash of those files' contents.
//
// Cache versioning: the cache is named `genllava-<version>`. A rebuild that changes any
// precached byte changes precache.js; the browser's update check compares imported scripts
// byte for byte, so it installs this worker again, which fills a new cache, takes over at
// once (skipWaiting + clients.claim) and deletes every older `genllava-*` cache.
//
// Requests: precached files are answered from the cache (then the network is never asked),
// then the files of models the page kept offline on request (cache `kept-models`, filled by
// keep.js, which survives new versions); other same-origin GETs go to the network. Range
// requests (keep.js resuming a download) always go to the network. Navigations (any query
// string) fall back to the cached page. Nothing here ever contacts another origin.
importScripts('precache.js');

const { version, files } = self.PRECACHE;
const CACHE = `genllava-${version}`;
const KEPT = 'kept-models';

self.addEventListener('install', (event) => {
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      // `reload`: fill the cache from the network, not from the HTTP cache.
      await cache.addAll(files.map((f) => new Request(f, { cache: 'reload' })));
      await self.skipWaiting();
    })(),
  );
});

self.addEventListener('activate', (event) => {
  event.waitUntil(
    (async () => {
      for (const key of await caches.keys()) {
        if (key.startsWith('genllava-') && key !== CACHE) await caches.delete(key);
      }
      await self.clients.claim();
    })(),
  );
});

self.addEventListener('fetch', (event) => {
  const req = event.request;
  if (req.method !== 'GET' || new URL(req.url).origin !== self.location.origin || req.headers.has('range')) return;
  event.respondWith(
    (async () => {
      const cache = await caches.open(CACHE);
      const navigate = req.mode === 'navigate';
      // (caches.match with a cacheName never creates the cache.)
      const hit = (await cache.match(req, { ignoreSearch: navigate })) ??
        (navigate ? undefined : await caches.match(req, { cacheName: KEPT }));
      if (hit) return hit;
      try {
        return await fetch(req);
      } catch (err) {
        if (navigate) {
          const page = await cache.match('./', { ignoreSearch: true });
          if (page) return page;
        }
        throw err;
      }
    })(),
  );
});

// The page asks which version is active and whether its cache is complete.
self.addEventListener('message', (event) => {
  if (event.data?.type !== 'status') return;
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      const missing = [];
      for (const f of files) if (!(await cache.match(f))) missing.push(f);
      event.source.postMessage({ type: 'sw-status', version, files: files.length, missing });
    })(),
  );
});
