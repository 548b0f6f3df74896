#!/usr/bin/env bash
# Build the browser app into www/: the wasm engine (release, wasm32), its JS glue
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

echo "== cargo build (release, wasm32)"
cargo build -q --release -p genllava-web --target wasm32-unknown-unknown
rm -rf www/pkg
"$WB" --target web --no-typescript --remove-name-section --out-dir www/pkg "$CARGO_TARGET_DIR/wasm32-unknown-unknown/release/genllava_web.wasm"

echo "== models"
rm -rf www/models
mkdir -p www/models/llava-tiny
src=tests/fixtures/llava-tiny
files=()
for f in config.json generation_config.json model.safetensors tokenizer.json tokenizer_config.json \
         processor_config.json preprocessor_config.json; do
    if [ -f "$src/$f" ]; then cp "$src/$f" www/models/llava-tiny/ && files+=("\"$f\""); fi
done
cp "$src/image.png" www/models/llava-tiny/example.png
file_list=$(IFS=,; echo "${files[*]}")
cat > www/models/index.json <<JSON
[
  {
    "id": "llava-tiny",
    "label": "llava-tiny — random weights (test fixture: answers are noise)",
    "path": "models/llava-tiny/",
    "files": [$file_list],
    "example": { "image": "example.png", "question": "What colour is the circle?" }
  }
]
JSON

size=$(stat -c %s www/pkg/genllava_web_bg.wasm)
gz=$(gzip -9 -c www/pkg/genllava_web_bg.wasm | wc -c)
echo "== done: www/pkg/genllava_web_bg.wasm $((size / 1024)) KiB raw, $((gz / 1024)) KiB gzip"
