#!/usr/bin/env bash
# Build the browser app into www/: the wasm engine (profile `wasm`, wasm32), its JS glue
# (wasm-bindgen pinned to Cargo.lock's version) and the bundled model(s).
# Serve afterwards with: python3 -m http.server -d www 8080   (or: node www/tests/serve.mjs 8080)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/genllava-target}"
TOOLS="${GENLLAVA_TOOLS:-$HOME/.cache/genllava-tools}"

WB_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
WB="$TOOLS/bin/wasm-bindgen"
if ! [ -x "$WB" ] || [ "$("$WB" --version | awk '{print $2}')" != "$WB_VERSION" ]; then
    echo "== installing wasm-bindgen-cli $WB_VERSION into $TOOLS"
    cargo install -q --force wasm-bindgen-cli --version "$WB_VERSION" --root "$TOOLS"
fi

rustup target list --installed | grep -q wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown >/dev/null

echo "== cargo build (profile wasm: release with opt-level z, fat LTO, one codegen unit; wasm32)"
cargo build -q --profile wasm -p genllava-web --target wasm32-unknown-unknown
rm -rf www/pkg
"$WB" --target web --remove-name-section --out-dir www/pkg "$CARGO_TARGET_DIR/wasm32-unknown-unknown/wasm/genllava_web.wasm"

# wasm-opt: binaryen from npm (pinned in www/tests/package-lock.json; Debian's binaryen 108 breaks
# the bundle). GENLLAVA_WASM_OPT: its flags (default below), or "off". The features are the
# ones rustc's target_features section lists for this bundle. The result is cached under
# $CARGO_TARGET_DIR by a hash of the input, the flags and the binaryen version, so a rebuild
# with an unchanged engine does not pay for it again.
WASM_OPT_FLAGS=${GENLLAVA_WASM_OPT:-"-Oz"}
if [ "$WASM_OPT_FLAGS" != off ]; then
    WASM_OPT=www/tests/node_modules/binaryen/bin/wasm-opt
    if ! [ -f "$WASM_OPT" ]; then
        echo "== installing www/tests' npm packages (binaryen's wasm-opt)"
        (cd www/tests && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)
    fi
    features=(--enable-bulk-memory --enable-bulk-memory-opt --enable-call-indirect-overlong --enable-multivalue
              --enable-mutable-globals --enable-nontrapping-float-to-int --enable-reference-types --enable-sign-ext
              --enable-simd)
    wasm=www/pkg/genllava_web_bg.wasm
    key=$( { sha256sum < "$wasm"; echo "$WASM_OPT_FLAGS ${features[*]}"; node "$WASM_OPT" --version; } | sha256sum | cut -c1-32)
    cached="$CARGO_TARGET_DIR/wasm-opt-cache/$key.wasm"
    before=$(stat -c %s "$wasm")
    if [ -f "$cached" ]; then
        echo "== wasm-opt $WASM_OPT_FLAGS: unchanged input, the cached result"
    else
        echo "== wasm-opt $WASM_OPT_FLAGS (binaryen $(node "$WASM_OPT" --version | awk '{print $3}'); minutes on 2 cores)"
        t0=$(date +%s)
        # shellcheck disable=SC2086 # the flags are words
        node "$WASM_OPT" $WASM_OPT_FLAGS "${features[@]}" "$wasm" -o "$wasm.opt"
        rm -rf "$CARGO_TARGET_DIR/wasm-opt-cache"
        mkdir -p "$CARGO_TARGET_DIR/wasm-opt-cache"
        mv "$wasm.opt" "$cached"
        echo "   took $(( $(date +%s) - t0 )) s"
    fi
    cp "$cached" "$wasm"
    echo "   $((before / 1024)) KiB → $(( $(stat -c %s "$wasm") / 1024 )) KiB raw"
fi

echo "== npm package (www/npm): the engine and the worker, for npm pack"
rm -rf www/npm/pkg
mkdir -p www/npm/pkg
cp www/pkg/genllava_web.js www/pkg/genllava_web.d.ts www/pkg/genllava_web_bg.wasm www/npm/pkg/
cp www/worker.js www/npm/worker.js

echo "== models"
rm -rf www/models
mkdir -p www/models/llava-tiny www/models/genllava-shapes
json_list() { local IFS=,; echo "$*"; }
# `"file": {"bytes": N, "sha256": "hex"}, …` for the files of model folder $1 named by the rest:
# what the page checks a model kept offline on request against (www/keep.js).
integrity() {
    local dir=$1 f entries=()
    shift
    for f in "$@"; do
        entries+=("\"$f\": {\"bytes\": $(stat -c %s "$dir/$f"), \"sha256\": \"$(sha256sum < "$dir/$f" | cut -d' ' -f1)\"}")
    done
    json_list "${entries[@]}"
}

# The default: the shipped shapes-world GenLLaVA (understands, draws and edits), every file of
# its folder but the READMEs, sub-folders kept (gen_head/, sd/…).
src=train-native/assets/genllava-shapes
gen_files=()
gen_names=()
while IFS= read -r f; do
    mkdir -p "www/models/genllava-shapes/$(dirname "$f")"
    cp "$src/$f" "www/models/genllava-shapes/$f"
    gen_files+=("\"$f\"")
    gen_names+=("$f")
done < <(cd "$src" && find . -type f ! -name README.md | sed 's|^\./||' | LC_ALL=C sort)
# A test scene of the shapes world (see tests/fixtures/web-ref/make.sh), to ask about and edit.
cp tests/fixtures/web-ref/scene.png www/models/genllava-shapes/example.png

# The random-weights LLaVA fixture: the browser tests compare its answers with golden ids. Not
# precached (its answers are noise, no user needs it offline by default): it is the model the
# page keeps offline on request ("Keep offline"), checked against the sizes and hashes below.
src=tests/fixtures/llava-tiny
files=()
names=()
for f in config.json generation_config.json model.safetensors tokenizer.json tokenizer_config.json \
         processor_config.json preprocessor_config.json; do
    if [ -f "$src/$f" ]; then cp "$src/$f" www/models/llava-tiny/ && files+=("\"$f\"") && names+=("$f"); fi
done
cp "$src/image.png" www/models/llava-tiny/example.png

# The same fixture in the web format (train-native export-web) in every mode (and q4 with f16
# block scales), in 64 KiB shards so that the page loads several, one by one; the browser test
# compares each with the f32 model. The debug binary: `cargo test --workspace` (tests/run.sh) has
# built it already.
web_entries=()
for mode in q4 q8 f16 f32 q4-f16-scales; do
    quant=${mode%%-*}
    scales=f32
    what=$quant
    if [ "$mode" = q4-f16-scales ]; then scales=f16 && what="q4 with f16 scales"; fi
    cargo run -q -p train-native -- export-web --model www/models/llava-tiny --quant "$quant" --scales "$scales" \
        --out "www/models/llava-tiny-web-$mode" --shard-limit 65536 >/dev/null
    web_entries+=("$(cat <<JSON
  {
    "id": "llava-tiny-web-$mode",
    "label": "llava-tiny, web format $what — random weights (test fixture, train-native export-web)",
    "path": "models/llava-tiny-web-$mode/",
    "manifest": "manifest.json",
    "example": { "image": "example.png", "question": "What colour is the circle?" }
  }
JSON
)")
done
# The shipped GenLLaVA in the web format, q4 in 1 MiB shards: the whole model (LLM, head, UNet,
# VAE, text encoder) from shards, its linears kept quantized on WebGPU.
cargo run -q -p train-native -- export-web --model train-native/assets/genllava-shapes --quant q4 \
    --out www/models/genllava-shapes-web-q4 --shard-limit 1048576 >/dev/null
cp tests/fixtures/web-ref/scene.png www/models/genllava-shapes-web-q4/example.png
web_entries+=("$(cat <<'JSON'
  {
    "id": "genllava-shapes-web-q4",
    "label": "genllava-shapes, web format q4 (train-native export-web; linears stay q4 on WebGPU)",
    "path": "models/genllava-shapes-web-q4/",
    "manifest": "manifest.json",
    "shapes_world": true,
    "example": { "image": "example.png", "question": "What colour is the square?",
                 "imagine": "a small green square at the center left", "edit": "make the square green" }
  }
JSON
)")
cat > www/models/index.json <<JSON
[
  {
    "id": "genllava-shapes",
    "label": "genllava-shapes — the shipped shapes-world GenLLaVA (understands, draws, edits)",
    "path": "models/genllava-shapes/",
    "shapes_world": true,
    "precached": true,
    "files": [$(json_list "${gen_files[@]}")],
    "integrity": {$(integrity www/models/genllava-shapes "${gen_names[@]}")},
    "example": { "image": "example.png", "question": "What colour is the square?",
                 "imagine": "a small green square at the center left", "edit": "make the square green" }
  },
  {
    "id": "llava-tiny",
    "label": "llava-tiny — random weights (test fixture: answers are noise)",
    "path": "models/llava-tiny/",
    "precached": false,
    "files": [$(json_list "${files[@]}")],
    "integrity": {$(integrity www/models/llava-tiny "${names[@]}")},
    "example": { "image": "example.png", "question": "What colour is the circle?" }
  },
$(json_list "${web_entries[@]}")
]
JSON

echo "== offline: precache list for the service worker (www/precache.js)"
# Everything the page needs offline; the version is a hash of all of it (see sw.js).
# Of the models: the default one's files and every model's example image (the others are kept
# offline on request by the page, see keep.js).
precache=(index.html app.js keep.js worker.js style.css manifest.webmanifest icons/icon-192.png icons/icon-512.png
          pkg/genllava_web.js pkg/genllava_web_bg.wasm models/index.json)
while IFS= read -r f; do precache+=("${f#www/}"); done < <(
    { find www/models/genllava-shapes -type f; find www/models -mindepth 2 -maxdepth 2 -name example.png; } | LC_ALL=C sort -u)
version=$(cd www && for f in sw.js "${precache[@]}"; do printf '%s\n' "$f"; sha256sum < "$f"; done | sha256sum | cut -c1-16)
{
    echo "// Written by www/build.sh: what sw.js precaches, and the cache version (a hash of those files)."
    echo "self.PRECACHE = {"
    echo "  version: '$version',"
    echo "  files: ["
    echo "    './',"
    for f in "${precache[@]}"; do echo "    '$f',"; done
    echo "  ],"
    echo "};"
} > www/precache.js

size=$(stat -c %s www/pkg/genllava_web_bg.wasm)
gz=$(gzip -9 -c www/pkg/genllava_web_bg.wasm | wc -c)
echo "== done: www/pkg/genllava_web_bg.wasm $((size / 1024)) KiB raw, $((gz / 1024)) KiB gzip"
